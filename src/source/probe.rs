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
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{http_probe, postgres, tcp_probe};
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
    /// Rows a SQL probe returned.
    pub rows: Option<usize>,
    /// A SQL probe's first column, when asked for.
    pub value: Option<f64>,
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
        if let Some(rows) = self.rows {
            out.push(Sample {
                series: key("probe_rows"),
                ts_ms,
                value: rows as f64,
                note: None,
            });
        }
        if let Some(value) = self.value {
            out.push(Sample {
                series: key("probe_value"),
                ts_ms,
                value,
                note: Some(Arc::from(format!("the query returned {value}").as_str())),
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
        let RuleKind::Consecutive(r) = &rule.kind else {
            continue;
        };
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
    config: watch::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Vec<Sample>>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // HTTP clients by TLS and redirect settings: targets with the same settings share one
    // client, and so its connection pool.
    let mut clients: HashMap<(Option<CaFile>, bool), reqwest::Client> = HashMap::new();
    let plans = |cfg: &Config| -> BTreeMap<String, Plan> {
        cfg.targets
            .iter()
            .map(|t| {
                let plan = Plan {
                    target: t.clone(),
                    confirm: confirm_for(cfg, &t.name),
                };
                (t.name.clone(), plan)
            })
            .collect()
    };
    let start = |name: &str, plan: &Plan, token: CancellationToken| {
        let client = match &plan.target.check {
            Check::Tcp(_) | Check::Sql(_) => None,
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
                            return None;
                        }
                    },
                }
            }
        };
        Some(probe_loop(client, plan.clone(), tx.clone(), token))
    };
    super::manager::run_keyed("probe", config, shutdown, plans, start).await
}

/// A SQL probe: (re)connects when needed, runs the query, and drops the connection after a
/// failure so that the next probe starts clean.
async fn sql_probe(
    conn: &mut Option<postgres::Connection>,
    check: &crate::config::SqlCheck,
    timeout: Duration,
) -> ProbeResult {
    let started = Instant::now();
    let fail = |reason: String, started: Instant| ProbeResult {
        up: false,
        duration: started.elapsed(),
        status: None,
        reason: Some(reason),
        cert_expiry_days: None,
        rows: None,
        value: None,
    };
    if conn.as_ref().is_none_or(|c| c.is_closed()) {
        let mut db = check.database.clone();
        db.timeout = timeout;
        match postgres::connect(&db).await {
            Ok(c) => *conn = Some(c),
            Err(reason) => return fail(reason, started),
        }
    }
    let Some(c) = conn.as_ref() else {
        return fail("not connected".into(), started);
    };
    // The query's own time, without connecting.
    let query_started = Instant::now();
    let left = timeout.saturating_sub(started.elapsed());
    match postgres::run_check(c, check, left, timeout).await {
        Ok(r) => ProbeResult {
            up: true,
            duration: query_started.elapsed(),
            status: None,
            reason: None,
            cert_expiry_days: None,
            rows: Some(r.rows),
            value: r.value,
        },
        Err(reason) => {
            *conn = None;
            fail(reason, started)
        }
    }
}

/// A random duration in `[0, max]`.
fn random_up_to(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=max.as_millis() as u64))
}

async fn probe_once(
    client: Option<&reqwest::Client>,
    sql: &mut Option<postgres::Connection>,
    target: &Target,
) -> ProbeResult {
    match (&target.check, client) {
        (Check::Http(http), Some(client)) => {
            http_probe::probe(client, http, target.timing.timeout).await
        }
        (Check::Tcp(tcp), _) => tcp_probe::probe(tcp, target.timing.timeout).await,
        (Check::Sql(check), _) => sql_probe(sql, check, target.timing.timeout).await,
        (Check::Http(_), None) => ProbeResult {
            up: false,
            duration: Duration::ZERO,
            status: None,
            reason: Some("no HTTP client for this target".into()),
            cert_expiry_days: None,
            rows: None,
            value: None,
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
    let mut sql: Option<postgres::Connection> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
        let started = Instant::now();
        let ts = now_ms();
        let result = tokio::select! {
            r = probe_once(client.as_ref(), &mut sql, target) => r,
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
