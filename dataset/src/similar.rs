//! Exact and near-duplicate detection.
//!
//! Exact: FNV-1a 64 of the example's text with whitespace runs collapsed.
//! Near: MinHash over word 3-gram shingles (words lower-cased, punctuation
//! dropped), 16 hashes of 16 bits. Two examples are near-duplicates when at
//! least [`NEAR_MATCHES`] of the 16 agree — an estimated Jaccard similarity
//! of about 0.8 or more. Candidates come from locality-sensitive hashing
//! (8 bands of 2 hashes), so only likely pairs are compared.

use std::collections::HashMap;

/// Hashes in a signature.
pub const HASHES: usize = 16;
/// Agreeing hashes (of 16) that make two examples near-duplicates.
pub const NEAR_MATCHES: usize = 13;

/// A MinHash signature.
pub type Signature = [u16; HASHES];

/// Examples shorter than this many words are only checked for exact
/// duplicates: a handful of words says little.
pub const MIN_WORDS_FOR_NEAR: usize = 8;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The exact-duplicate key: the same for texts that differ only in
/// whitespace (runs collapsed, ends trimmed).
pub fn exact_key(text: &str) -> u64 {
    keys(text).0
}

/// SplitMix64: a well-mixed 64-bit hash of a 64-bit value (also the split's PRNG).
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Odd multipliers and offsets of the 16 hash functions `a·x + b`
/// (fixed, so signatures are the same everywhere).
const PERMUTATIONS: [(u64, u64); HASHES] = {
    let mut p = [(0u64, 0u64); HASHES];
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut k = 0;
    while k < HASHES {
        // SplitMix64 steps, as in `mix`, in a const context.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let a = (z ^ (z >> 31)) | 1;
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        p[k] = (a, z ^ (z >> 31));
        k += 1;
    }
    p
};

/// The MinHash signature of `text`, or `None` when it is too short to compare.
pub fn signature(text: &str) -> Option<Signature> {
    keys(text).1
}

/// A word hash fed a byte at a time, mixed eight bytes at a time.
#[derive(Clone, Copy)]
struct WordHash {
    h: u64,
    buf: u64,
    n: u32,
    len: u64,
}

impl WordHash {
    const NEW: WordHash = WordHash {
        h: FNV_OFFSET,
        buf: 0,
        n: 0,
        len: 0,
    };

    #[inline]
    fn push(&mut self, b: u8) {
        self.buf |= u64::from(b) << (8 * self.n);
        self.n += 1;
        self.len += 1;
        if self.n == 8 {
            self.h = (self.h ^ self.buf)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
            self.buf = 0;
            self.n = 0;
        }
    }

    fn finish(self) -> u64 {
        mix(self.h ^ self.buf ^ self.len.rotate_left(56))
    }
}

/// Running state of [`keys`].
struct KeyState {
    exact: u64,
    sig: [u64; HASHES],
    window: [u64; 3],
    words: usize,
}

impl KeyState {
    #[inline]
    fn end_word(&mut self, raw: &mut WordHash, norm: &mut WordHash) {
        if raw.len == 0 {
            return;
        }
        self.exact = (self.exact.rotate_left(23) ^ raw.finish()).wrapping_mul(FNV_PRIME);
        *raw = WordHash::NEW;
        if norm.len == 0 {
            return;
        }
        self.window = [self.window[1], self.window[2], norm.finish()];
        *norm = WordHash::NEW;
        self.words += 1;
        if self.words >= 3 {
            let shingle = mix(self.window[0]
                ^ self.window[1].rotate_left(21)
                ^ self.window[2].rotate_left(42));
            for (min, (a, b)) in self.sig.iter_mut().zip(PERMUTATIONS.iter()) {
                *min = (*min).min(shingle.wrapping_mul(*a).wrapping_add(*b));
            }
        }
    }
}

/// Both keys in one pass over the text: the exact key (words as written,
/// whitespace-insensitive) and the MinHash signature (words lower-cased,
/// letters and digits only, in 3-word shingles).
pub fn keys(text: &str) -> (u64, Option<Signature>) {
    let mut st = KeyState {
        exact: FNV_OFFSET,
        sig: [u64::MAX; HASHES],
        window: [0; 3],
        words: 0,
    };
    let mut raw = WordHash::NEW;
    let mut norm = WordHash::NEW;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                st.end_word(&mut raw, &mut norm);
            } else {
                raw.push(b);
                if b.is_ascii_alphanumeric() {
                    norm.push(b.to_ascii_lowercase());
                }
            }
            continue;
        }
        let c = text[i..]
            .chars()
            .next()
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        let width = c.len_utf8();
        if c.is_whitespace() {
            st.end_word(&mut raw, &mut norm);
        } else {
            for &x in &bytes[i..i + width] {
                raw.push(x);
            }
            if c.is_alphanumeric() {
                let mut buf = [0u8; 4];
                for l in c.to_lowercase() {
                    for &x in l.encode_utf8(&mut buf).as_bytes() {
                        norm.push(x);
                    }
                }
            }
        }
        i += width;
    }
    st.end_word(&mut raw, &mut norm);
    let near = (st.words >= MIN_WORDS_FOR_NEAR).then(|| st.sig.map(|v| (v >> 48) as u16));
    (st.exact, near)
}

fn matches(a: &Signature, b: &Signature) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

/// Groups of examples that must stay together: exact and near duplicates.
/// `group[i]` is the smallest index in example `i`'s group.
#[derive(Debug, Default)]
pub struct Groups {
    parent: Vec<u32>,
}

impl Groups {
    fn find(&mut self, mut i: u32) -> u32 {
        while self.parent[i as usize] != i {
            let p = self.parent[i as usize];
            self.parent[i as usize] = self.parent[p as usize];
            i = p;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi as usize] = lo;
    }

    /// The representative (first member) of `i`'s group.
    pub fn of(&mut self, i: u32) -> u32 {
        self.find(i)
    }
}

/// A pair found by [`find`]: `later` repeats `earlier`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub earlier: u32,
    pub later: u32,
    pub exact: bool,
}

/// Finds exact and near duplicates among `keys[i] = (exact, signature)`.
/// Returns the groups and, for each repeated example, the pair that tied it
/// to an earlier one (one per later example).
pub fn find(keys: &[(u64, Option<Signature>)]) -> (Groups, Vec<Pair>) {
    const NONE: u32 = u32::MAX;
    let n = keys.len();
    let mut groups = Groups {
        parent: (0..n as u32).collect(),
    };
    // Exact: each example's first earlier copy.
    let mut exact_of = vec![NONE; n];
    {
        let mut first: HashMap<u64, u32> = HashMap::new();
        for (i, (exact, _)) in keys.iter().enumerate() {
            let seen = *first.entry(*exact).or_insert(i as u32);
            if seen != i as u32 {
                exact_of[i] = seen;
            }
        }
    }
    // Near: band by band, the examples sharing the band's two hashes sit
    // together after sorting by (band value, position); an example's
    // candidates are the latest (at most 64) earlier ones of its run. The
    // first band with a match wins, the latest candidate first — the same
    // result as one sequential scan with a table of every band, in a few
    // bytes per example instead of a hash-map entry per example and band.
    let mut near = vec![NONE; n];
    let mut run: Vec<(u32, u32)> = Vec::new();
    for b in 0..HASHES / 2 {
        run.clear();
        for (i, (_, sig)) in keys.iter().enumerate() {
            if let (Some(sig), NONE) = (sig, exact_of[i]) {
                let value = u32::from(sig[2 * b]) << 16 | u32::from(sig[2 * b + 1]);
                run.push((value, i as u32));
            }
        }
        run.sort_unstable();
        let mut start = 0;
        for k in 0..run.len() {
            let (value, i) = run[k];
            if k > 0 && run[k - 1].0 != value {
                start = k;
            }
            let (Some(sig), NONE) = (&keys[i as usize].1, near[i as usize]) else {
                continue;
            };
            // Bounded work on degenerate inputs: the most recent 64 suffice.
            for &(_, j) in run[start..k].iter().rev().take(64) {
                if keys[j as usize]
                    .1
                    .as_ref()
                    .is_some_and(|other| matches(sig, other) >= NEAR_MATCHES)
                {
                    near[i as usize] = j;
                    break;
                }
            }
        }
    }
    let mut pairs = Vec::new();
    for (i, (&exact, &similar)) in exact_of.iter().zip(&near).enumerate() {
        let (earlier, is_exact) = match (exact, similar) {
            (NONE, NONE) => continue,
            (NONE, j) => (j, false),
            (j, _) => (j, true),
        };
        groups.union(earlier, i as u32);
        pairs.push(Pair {
            earlier,
            later: i as u32,
            exact: is_exact,
        });
    }
    (groups, pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straightforward sequential scan `find` must agree with: one
    /// table of every band, candidates checked as each example arrives.
    fn find_sequential(keys: &[(u64, Option<Signature>)]) -> (Vec<u32>, Vec<Pair>) {
        let mut groups = Groups {
            parent: (0..keys.len() as u32).collect(),
        };
        let mut pairs = Vec::new();
        let mut first_exact: HashMap<u64, u32> = HashMap::new();
        let mut bands: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, (exact, sig)) in keys.iter().enumerate() {
            let i = i as u32;
            if let Some(&first) = first_exact.get(exact) {
                groups.union(first, i);
                pairs.push(Pair {
                    earlier: first,
                    later: i,
                    exact: true,
                });
                continue;
            }
            first_exact.insert(*exact, i);
            let Some(sig) = sig else { continue };
            let band_keys: Vec<u64> = (0..HASHES / 2)
                .map(|b| (b as u64) << 32 | u64::from(sig[2 * b]) << 16 | u64::from(sig[2 * b + 1]))
                .collect();
            let mut matched = None;
            'bands: for key in &band_keys {
                if let Some(candidates) = bands.get(key) {
                    for &j in candidates.iter().rev().take(64) {
                        if let Some(other) = &keys[j as usize].1 {
                            if matches(sig, other) >= NEAR_MATCHES {
                                matched = Some(j);
                                break 'bands;
                            }
                        }
                    }
                }
            }
            if let Some(j) = matched {
                groups.union(j, i);
                pairs.push(Pair {
                    earlier: j,
                    later: i,
                    exact: false,
                });
            }
            for key in band_keys {
                bands.entry(key).or_default().push(i);
            }
        }
        let n = keys.len() as u32;
        ((0..n).map(|i| groups.of(i)).collect(), pairs)
    }

    proptest::proptest! {
        #[test]
        fn banded_search_equals_the_sequential_scan(
            raw in proptest::collection::vec(
                (0u64..400, proptest::option::weighted(0.9, proptest::array::uniform16(0u16..2))),
                0..500,
            )
        ) {
            let (mut groups, pairs) = find(&raw);
            let (want_groups, want_pairs) = find_sequential(&raw);
            let got: Vec<u32> = (0..raw.len() as u32).map(|i| groups.of(i)).collect();
            proptest::prop_assert_eq!(got, want_groups);
            proptest::prop_assert_eq!(pairs, want_pairs);
        }
    }

    #[test]
    fn whitespace_does_not_hide_duplicates() {
        assert_eq!(exact_key("Hello   world\n"), exact_key(" Hello world"));
        assert_ne!(exact_key("Hello world"), exact_key("hello world"));
    }

    #[test]
    fn near_duplicates_are_grouped_and_different_texts_are_not() {
        let a = "How do I reset my password if I no longer have access to the email address on my account";
        let b = "How do I reset my password if I no longer have access to the email address on my account?";
        let c = "Which plans include priority support and how much does the upgrade cost per seat each month";
        let keys: Vec<_> = [a, b, c, a]
            .iter()
            .map(|t| (exact_key(t), signature(t)))
            .collect();
        let (mut groups, pairs) = find(&keys);
        assert_eq!(
            pairs,
            vec![
                Pair {
                    earlier: 0,
                    later: 1,
                    exact: false
                },
                Pair {
                    earlier: 0,
                    later: 3,
                    exact: true
                }
            ]
        );
        assert_eq!(groups.of(1), 0);
        assert_eq!(groups.of(2), 2);
    }
}
