//! Background tasks that live as long as the server: started with it,
//! restarted (with back-off) when one fails or panics, and told to stop on
//! SIGTERM, which they get a grace period to honour before being aborted.
//! Long work (sweeps, the job workers) runs here, never inside a request.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A task's view of shutdown: cheap to clone, resolves once stop is asked.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves when the server is stopping.
    pub async fn wait(&mut self) {
        // An error means the supervisor is gone: that is a stop too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }
}

/// Owns the background tasks.
#[derive(Debug)]
pub struct Supervisor {
    stop: Arc<watch::Sender<bool>>,
    tasks: JoinSet<()>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor::new()
    }
}

/// The longest wait before restarting a task that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor {
            stop: Arc::new(watch::channel(false).0),
            tasks: JoinSet::new(),
        }
    }

    /// The signal tasks (and anything else) watch for shutdown.
    pub fn shutdown_signal(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Tells every task to stop now (without waiting: see [`shutdown`](Self::shutdown)).
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let stop = self.stop.clone();
        move || {
            let _ = stop.send(true);
        }
    }

    /// Runs `make(shutdown)` until shutdown: a task that returns or panics
    /// before then is logged and started again, after 1 s, doubling up to
    /// a minute while it keeps failing quickly.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, make: F)
    where
        F: Fn(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shutdown = self.shutdown_signal();
        self.tasks.spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let started = tokio::time::Instant::now();
                // Run in this task (not a detached one) so an abort reaches it.
                let outcome = AssertUnwindSafe(make(shutdown.clone()))
                    .catch_unwind()
                    .await;
                if shutdown.is_stopping() {
                    return;
                }
                match outcome {
                    Ok(()) => tracing::warn!(task = name, "background task ended; restarting"),
                    Err(panic) => {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(task = name, panic = %why, "background task panicked; restarting");
                    }
                }
                if started.elapsed() > MAX_BACKOFF {
                    backoff = Duration::from_secs(1);
                }
                let mut stop = shutdown.clone();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.wait() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Asks every task to stop and waits up to `grace` for them; the rest
    /// are aborted.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = self.tasks.len(),
                "background tasks did not stop in time; aborting them"
            );
            self.tasks.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_and_shutdown_stops_it() {
        let mut sup = Supervisor::new();
        let starts = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let counter = starts.clone();
        sup.spawn("flaky", move |mut shutdown| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
                if n == 0 {
                    panic!("first run fails");
                }
                shutdown.wait().await;
            }
        });
        assert_eq!(rx.recv().await, Some(0));
        // The paused clock jumps over the back-off.
        assert_eq!(rx.recv().await, Some(1));
        sup.shutdown(Duration::from_secs(5)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_shutdown_is_aborted_after_the_grace() {
        let mut sup = Supervisor::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        sup.spawn("stubborn", move |_| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                std::future::pending::<()>().await;
            }
        });
        rx.recv().await;
        sup.shutdown(Duration::from_secs(1)).await;
    }
}
