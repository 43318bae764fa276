//! Probe scheduling, shared by every probe type: one task per target, results turned into
//! samples, and fast confirmation.
//!
//! A target is probed every `interval`. When a result contradicts the target's confirmed
//! state (a failure of an up target, a success of a down one), it is probed again every
//! `retry_interval` until the rules watching it have confirmed the change (their
//! `fire_after` / `resolve_after`) or a result dismisses it; then the normal interval
//! resumes. So a dead endpoint is confirmed in seconds without more false alarms.
//!
//! Each result produces `probe_up` (1/0), `probe_duration_seconds`,
//! `probe_http_status_code` (when there was an answer) and `probe_tls_cert_expiry_days`
//! (HTTPS), labelled `target=<name>`. First probes are spread at random over the interval.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{http_probe, tcp_probe};
use crate::clock::now_ms;
use crate::config::{CaFile, Check, Config, RuleKind, Target};
use crate::series::{Sample, SeriesKey};

/// The outcome of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    pub up: bool,
    pub duration: Duration,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub cert_expiry_days: Option<f64>,
}

impl ProbeResult {
    /// The samples this result becomes.
    pub fn samples(&self, target: &str, ts_ms: i64) -> Vec<Sample> {
        let key = |name: &str| SeriesKey::new(name, &[("target", target)]);
        let note: Option<Arc<str>> = self.reason.as_deref().map(Arc::from);
        let secs = self.duration.as_secs_f64();
        let mut out = vec![
            Sample {
                series: key("probe_up"),
                ts_ms,
                value: if self.up { 1.0 } else { 0.0 },
                note,
            },
            Sample {
                series: key("probe_duration_seconds"),
                ts_ms,
                value: secs,
                // The reason a latency rule quotes.
                note: Some(Arc::from(format!("the probe took {secs:.2}s").as_str())),
            },
        ];
        if let Some(code) = self.status {
            out.push(Sample {
                series: key("probe_http_status_code"),
                ts_ms,
                value: f64::from(code),
                note: None,
            });
        }
        if let Some(days) = self.cert_expiry_days {
            out.push(Sample {
                series: key("probe_tls_cert_expiry_days"),
                ts_ms,
                value: days,
                note: Some(Arc::from(
                    format!("the certificate expires in {days:.1} days").as_str(),
                )),
            });
        }
        out
    }
}

/// How many results in a row confirm a change of a target's state: the largest
/// `fire_after` (down) and `resolve_after` (up) of the rules watching its `probe_up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    pub down_after: u32,
    pub up_after: u32,
}

pub fn confirm_for(cfg: &Config, target: &str) -> Confirm {
    let mut c = Confirm {
        down_after: 1,
        up_after: 1,
    };
    let labels = SeriesKey::new("probe_up", &[("target", target)]);
    for rule in &cfg.rules {
        let RuleKind::Consecutive(r) = &rule.kind;
        if labels.matches(&r.metric, &r.matchers) {
            c.down_after = c.down_after.max(r.fire_after);
            c.up_after = c.up_after.max(r.resolve_after);
        }
    }
    c
}

/// The confirmed state of a target and the run of results contradicting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub up: bool,
    pub contrary: u32,
}

impl Confirmation {
    pub fn new() -> Confirmation {
        Confirmation {
            up: true,
            contrary: 0,
        }
    }

    /// Records a result; returns whether the next probe is a retry (a change is unconfirmed).
    pub fn record(&mut self, up: bool, confirm: Confirm) -> bool {
        if up == self.up {
            self.contrary = 0;
            return false;
        }
        self.contrary += 1;
        let needed = if self.up {
            confirm.down_after
        } else {
            confirm.up_after
        };
        if self.contrary >= needed {
            self.up = up;
            self.contrary = 0;
            false
        } else {
            true
        }
    }
}

impl Default for Confirmation {
    fn default() -> Self {
        Confirmation::new()
    }
}

/// What a probe task runs with; a change restarts the task.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    target: Target,
    confirm: Confirm,
}

/// Runs the probes of the current configuration, restarting a target's task when its
/// configuration changes and when it panics.
pub async fn run(
    mut config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Vec<Sample>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // HTTP clients by TLS and redirect settings: targets with the same settings share one
    // client, and so its connection pool.
    let mut clients: HashMap<(Option<CaFile>, bool), reqwest::Client> = HashMap::new();
    // Dropping the set (when this task ends or panics) aborts every probe task.
    let mut set: JoinSet<()> = JoinSet::new();
    let mut running: BTreeMap<String, (Plan, CancellationToken, tokio::task::Id)> = BTreeMap::new();
    let mut restart_due: Option<Instant> = None;
    loop {
        let cfg = config.borrow_and_update().clone();
        let plans: BTreeMap<String, Plan> = cfg
            .targets
            .iter()
            .map(|t| {
                let plan = Plan {
                    target: t.clone(),
                    confirm: confirm_for(&cfg, &t.name),
                };
                (t.name.clone(), plan)
            })
            .collect();
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, (plan, _, _))| plans.get(*name) != Some(plan))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, token, _)) = running.remove(&name) {
                token.cancel();
            }
        }
        for (name, plan) in plans {
            if running.contains_key(&name) {
                continue;
            }
            let client = match &plan.target.check {
                Check::Tcp(_) => None,
                Check::Http(http) => {
                    let key = (http.ca.clone(), http.follow_redirects);
                    match clients.get(&key) {
                        Some(c) => Some(c.clone()),
                        None => match http_probe::client(http.ca.as_ref(), http.follow_redirects) {
                            Ok(c) => {
                                clients.insert(key, c.clone());
                                Some(c)
                            }
                            Err(e) => {
                                tracing::error!(
                                    target = %name,
                                    error = %e,
                                    "Cannot build the probe's HTTP client; not probing this target"
                                );
                                continue;
                            }
                        },
                    }
                }
            };
            let token = shutdown.child_token();
            let id = set
                .spawn(probe_loop(client, plan.clone(), tx.clone(), token.clone()))
                .id();
            running.insert(name, (plan, token, id));
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
                        Some(e) => tracing::error!(target = %name, error = %e, "Probe task panicked; restarting it"),
                        None => tracing::error!(target = %name, "Probe task stopped unexpectedly; restarting it"),
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

/// A random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max.as_millis() as u64))
}

async fn probe_once(client: Option<&reqwest::Client>, target: &Target) -> ProbeResult {
    match (&target.check, client) {
        (Check::Http(http), Some(client)) => {
            http_probe::probe(client, http, target.timing.timeout).await
        }
        (Check::Tcp(tcp), _) => tcp_probe::probe(tcp, target.timing.timeout).await,
        (Check::Http(_), None) => ProbeResult {
            up: false,
            duration: Duration::ZERO,
            status: None,
            reason: Some("no HTTP client for this target".into()),
            cert_expiry_days: None,
        },
    }
}

async fn probe_loop(
    client: Option<reqwest::Client>,
    plan: Plan,
    tx: mpsc::Sender<Vec<Sample>>,
    stop: CancellationToken,
) {
    let target = &plan.target;
    let timing = target.timing;
    // Spread first probes over the interval, so that targets do not all fire at once.
    let mut next = Instant::now()
        + random_up_to(timing.interval.saturating_sub(Duration::from_millis(1)))
        + random_up_to(timing.jitter);
    let mut state = Confirmation::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        let ts = now_ms();
        let result = tokio::select! {
            r = probe_once(client.as_ref(), target) => r,
            _ = stop.cancelled() => return,
        };
        match &result.reason {
            Some(reason) => tracing::debug!(target = %target.name, %reason, "Probe failed"),
            None => tracing::debug!(
                target = %target.name,
                ms = result.duration.as_millis() as u64,
                "Probe succeeded"
            ),
        }
        let retry = state.record(result.up, plan.confirm);
        if tx.send(result.samples(&target.name, ts)).await.is_err() {
            return;
        }
        next = if retry {
            started + timing.retry_interval
        } else {
            started + timing.interval + random_up_to(timing.jitter)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_until_a_change_is_confirmed_or_dismissed() {
        let confirm = Confirm {
            down_after: 3,
            up_after: 2,
        };
        let mut s = Confirmation::new();
        // up, fail, fail (retrying), success dismisses, fail, fail, fail confirms down.
        let results = [
            true, false, false, true, false, false, false, false, true, true, true,
        ];
        let retries: Vec<bool> = results.iter().map(|up| s.record(*up, confirm)).collect();
        assert_eq!(
            retries,
            vec![
                false, true, true, false, true, true, false, false, true, false, false
            ]
        );
        assert!(s.up);
    }
}
