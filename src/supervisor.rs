//! Supervised tasks: a task that fails or panics is reported and restarted with backoff, so
//! no part of the daemon is ever silently gone.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A task that ran this long before failing starts its backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

pub struct Supervisor {
    set: JoinSet<()>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Marks a task finished however its wrapper ends, aborted included.
struct DoneOnDrop(watch::Sender<bool>);

impl Drop for DoneOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl Supervisor {
    pub fn new(metrics: std::sync::Arc<crate::metrics::Metrics>) -> Supervisor {
        Supervisor {
            set: JoinSet::new(),
            metrics,
        }
    }

    /// Runs `make()` until `stop` is cancelled, restarting it whenever it returns or panics.
    /// The returned receiver turns `true` once the task has finished for good.
    pub fn spawn<F, Fut>(
        &mut self,
        name: &'static str,
        stop: CancellationToken,
        mut make: F,
    ) -> watch::Receiver<bool>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = stop;
        let (done_tx, done_rx) = watch::channel(false);
        let metrics = self.metrics.clone();
        self.set.spawn(async move {
            let _done = DoneOnDrop(done_tx);
            let mut delay = FIRST_DELAY;
            loop {
                let started = Instant::now();
                // Aborting this wrapper (on a shutdown that overran its grace) drops the handle
                // and so aborts the task itself.
                let outcome = AbortOnDropHandle::new(tokio::spawn(make())).await;
                let stopping = shutdown.is_cancelled();
                match outcome {
                    Ok(Ok(())) if stopping => return,
                    Ok(Ok(())) => {
                        tracing::error!(task = name, "Task stopped unexpectedly; restarting it")
                    }
                    Ok(Err(e)) => tracing::error!(
                        task = name,
                        error = format!("{e:#}"),
                        "Task failed; restarting it"
                    ),
                    Err(e) => {
                        tracing::error!(task = name, error = %e, "Task panicked; restarting it")
                    }
                }
                if stopping {
                    return;
                }
                metrics
                    .task_restarts
                    .get_or_create(&crate::metrics::TaskLabels {
                        task: name.to_string(),
                    })
                    .inc();
                if started.elapsed() >= HEALTHY_RUN {
                    delay = FIRST_DELAY;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(MAX_DELAY);
            }
        });
        done_rx
    }

    /// Waits for every task to finish after shutdown, aborting what is left after `grace`.
    pub async fn wait(mut self, grace: Duration) {
        let all = async { while self.set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("Some tasks did not stop in time; aborting them");
            self.set.abort_all();
            while self.set.join_next().await.is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted() {
        let shutdown = CancellationToken::new();
        let mut sup = Supervisor::new(Arc::new(crate::metrics::Metrics::new()));
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let token = shutdown.clone();
        let mut done = sup.spawn("flaky", shutdown.clone(), move || {
            let (r, token) = (r.clone(), token.clone());
            async move {
                let n = r.fetch_add(1, Ordering::SeqCst);
                if n < 2 {
                    panic!("boom {n}");
                }
                token.cancelled().await;
                Ok(())
            }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert!(!*done.borrow());
        shutdown.cancel();
        done.wait_for(|d| *d).await.unwrap();
        sup.wait(Duration::from_secs(1)).await;
    }
}
