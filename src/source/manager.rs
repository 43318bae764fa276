//! One task per configured item (a probe target, a database): started when it appears,
//! restarted when its configuration changes or when it panics, stopped when it goes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Runs `start(name, plan, token)` for every plan of the current configuration. A plan that
/// changes (by `PartialEq`) is stopped and started again; a task that ends on its own or
/// panics is logged and started again a second later. `what` names the tasks in logs.
pub async fn run_keyed<P, F, Fut>(
    what: &'static str,
    mut config: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
    plans: impl Fn(&Config) -> BTreeMap<String, P>,
    mut start: F,
) -> anyhow::Result<()>
where
    P: PartialEq + Clone,
    F: FnMut(&str, &P, CancellationToken) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Dropping the set (when this task ends or panics) aborts every child.
    let mut set: JoinSet<()> = JoinSet::new();
    let mut running: BTreeMap<String, (P, CancellationToken, tokio::task::Id)> = BTreeMap::new();
    let mut restart_due: Option<Instant> = None;
    loop {
        let cfg = config.borrow_and_update().clone();
        let wanted = plans(&cfg);
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, (plan, _, _))| wanted.get(*name) != Some(plan))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, token, _)) = running.remove(&name) {
                token.cancel();
            }
        }
        for (name, plan) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            let token = shutdown.child_token();
            if let Some(fut) = start(&name, &plan, token.clone()) {
                let id = set.spawn(fut).id();
                running.insert(name, (plan, token, id));
            }
        }
        let restart_in = restart_due
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(ended) = set.join_next_with_id() => {
                let (id, panic) = match ended {
                    Ok((id, ())) => (id, None),
                    Err(e) => (e.id(), Some(e)),
                };
                let name = running.iter().find(|(_, r)| r.2 == id).map(|(n, _)| n.clone());
                if let Some(name) = name
                    && !shutdown.is_cancelled()
                {
                    match panic {
                        Some(e) => tracing::error!(task = what, %name, error = %e, "Task panicked; restarting it"),
                        None => tracing::error!(task = what, %name, "Task stopped unexpectedly; restarting it"),
                    }
                    running.remove(&name);
                    restart_due = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            _ = tokio::time::sleep(restart_in) => {
                restart_due = None;
            }
            _ = shutdown.cancelled() => break,
        }
    }
    for (_, (_, token, _)) in running {
        token.cancel();
    }
    while set.join_next().await.is_some() {}
    Ok(())
}
