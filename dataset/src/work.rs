//! A count of the steps the checks take, so tests can prove that a check
//! grows linearly with its input: wall time on a loaded machine proves
//! nothing, a step count proves exactly how the work grows. Outside tests
//! `add` compiles to nothing.

#[cfg(test)]
use std::cell::Cell;

#[cfg(test)]
thread_local! {
    // Per thread, so tests running side by side do not count each other.
    static STEPS: Cell<u64> = const { Cell::new(0) };
}

/// Records `n` steps of work (comparisons, bytes scanned).
#[inline(always)]
pub(crate) fn add(n: usize) {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

/// Runs `f` and returns its result with the steps it recorded.
#[cfg(test)]
pub(crate) fn count<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = STEPS.with(Cell::get);
    let out = f();
    (out, STEPS.with(Cell::get) - before)
}
