//! `sloguard backtest`: replays one rule — as written in a configuration file, loaded by a
//! daemon or not — over the stored history, with the same engine the daemon runs, and says
//! when it would have fired and resolved.
//!
//! A window rule is evaluated at every `every` of the period, reading the store as of now
//! (a window that reaches before the period reads what is stored there); a consecutive rule
//! is fed the points of its series in time order. Notifications are counted as one per
//! firing, one per severity raise (a warning past its rule's `critical` level) and one per
//! resolve; escalations, reminders, silences and grouping are left out.

use std::collections::BTreeMap;

use crate::config::{Rule, RuleKind};
use crate::query::{MatchOp, Matcher, Selector};
use crate::rules::{Engine, TransitionKind};
use crate::series::{Labels, Sample};
use crate::store::Snapshot;
use crate::store::logs::ErrorSnapshot;

/// The most window evaluations one backtest makes; a longer period is stepped coarser.
pub const MAX_EVALUATIONS: i64 = 200_000;

/// One alert the rule would have raised.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Firing {
    pub labels: Labels,
    pub fired_ms: i64,
    /// `None`: still firing at the end of the period.
    pub resolved_ms: Option<i64>,
    /// The value when it fired.
    pub value: f64,
    /// Its severity as it ended (raised from the rule's when it passed `critical`).
    pub severity: crate::config::Severity,
    /// When it was raised to that severity, if it was.
    pub raised_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub rule: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Time between window evaluations (`None` for a consecutive rule).
    pub step_ms: Option<i64>,
    pub evaluations: u64,
    pub firings: Vec<Firing>,
    /// Firings, raises and resolves: one notification each per channel.
    pub notifications: u64,
    /// Time spent firing, all label sets together, within the period.
    pub firing_ms: i64,
}

/// Replays `rule` over `[from_ms, to_ms)`.
pub fn run(
    rule: &Rule,
    snap: &Snapshot,
    errors: &ErrorSnapshot,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Report> {
    let (mut engine, _) = Engine::restore(vec![rule.clone()], Vec::new(), from_ms);
    let mut open: BTreeMap<String, Firing> = BTreeMap::new();
    let mut done: Vec<Firing> = Vec::new();
    let mut notifications = 0;
    let mut evaluations = 0;
    let mut record = |engine: &Engine, ts: Vec<crate::rules::Transition>, at: i64| {
        for t in ts {
            let fp = t.alert.fingerprint();
            match t.kind {
                TransitionKind::Firing => {
                    notifications += 1;
                    open.insert(
                        fp,
                        Firing {
                            labels: t.alert.labels.clone(),
                            fired_ms: t.at_ms,
                            resolved_ms: None,
                            value: t.alert.value,
                            severity: t.alert.severity,
                            raised_ms: None,
                        },
                    );
                }
                TransitionKind::Resolved => {
                    notifications += 1;
                    if let Some(mut f) = open.remove(&fp) {
                        f.resolved_ms = Some(t.at_ms);
                        done.push(f);
                    }
                }
                TransitionKind::Pending | TransitionKind::Cleared => {}
            }
        }
        // A firing alert raised past its critical level is news on its own, as in the daemon.
        for a in engine.alerts() {
            if let Some(f) = open.get_mut(&a.fingerprint())
                && a.severity > f.severity
            {
                f.severity = a.severity;
                f.raised_ms = Some(at);
                notifications += 1;
            }
        }
    };
    let step_ms = match &rule.kind {
        RuleKind::Window(th) => {
            let every = (th.every.as_millis() as i64).max(1_000);
            let span = (to_ms - from_ms).max(0);
            let step = every.max(span / MAX_EVALUATIONS + 1);
            let mut t = from_ms;
            let mut memory = crate::rules::WindowMemory::default();
            while t < to_ms {
                let values = crate::rules::window_values(errors, snap, th, t, &mut memory)?;
                let ts = engine.evaluate(&rule.name, &values, t);
                record(&engine, ts, t);
                evaluations += 1;
                t += step;
            }
            Some(step)
        }
        RuleKind::Consecutive(c) => {
            let matchers = c
                .matchers
                .iter()
                .map(|(k, v)| Matcher {
                    label: k.clone(),
                    op: MatchOp::Eq(v.clone()),
                })
                .collect();
            let mut samples = Vec::new();
            for info in Selector::new(&c.metric, matchers).select(snap) {
                for (ts_ms, value) in snap.points(info.id, from_ms, to_ms)? {
                    samples.push(Sample {
                        series: info.key.clone(),
                        ts_ms,
                        value,
                        note: None,
                    });
                }
            }
            samples.sort_by_key(|s| s.ts_ms);
            for s in &samples {
                let ts = engine.observe(s, s.ts_ms);
                record(&engine, ts, s.ts_ms);
                evaluations += 1;
            }
            None
        }
    };
    done.extend(open.into_values());
    done.sort_by_key(|f| f.fired_ms);
    let firing_ms = done
        .iter()
        .map(|f| f.resolved_ms.unwrap_or(to_ms) - f.fired_ms)
        .sum();
    Ok(Report {
        rule: rule.name.clone(),
        from_ms,
        to_ms,
        step_ms,
        evaluations,
        firings: done,
        notifications,
        firing_ms,
    })
}

/// The report as text: one line per firing, then the totals.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let time = crate::format::rfc3339;
    let span =
        |ms: i64| humantime::format_duration(std::time::Duration::from_secs((ms / 1000) as u64));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} to {}, {} evaluations{}",
        r.rule,
        time(r.from_ms),
        time(r.to_ms),
        r.evaluations,
        r.step_ms
            .map(|s| format!(" every {}", span(s)))
            .unwrap_or_default()
    );
    for f in &r.firings {
        let mut labels = String::new();
        let _ = crate::series::write_labels(&mut labels, &f.labels);
        let _ = writeln!(
            out,
            "  fired {}{labels} (value {}), {}",
            time(f.fired_ms),
            crate::format::format_value(f.value),
            match (f.raised_ms, f.resolved_ms) {
                (Some(up), Some(end)) => format!(
                    "raised to {} {}, resolved {} after {}",
                    f.severity,
                    time(up),
                    time(end),
                    span(end - f.fired_ms)
                ),
                (Some(up), None) => format!(
                    "raised to {} {}, still firing at the end",
                    f.severity,
                    time(up)
                ),
                (None, Some(end)) =>
                    format!("resolved {} after {}", time(end), span(end - f.fired_ms)),
                (None, None) => "still firing at the end".to_string(),
            }
        );
    }
    let period = (r.to_ms - r.from_ms).max(1);
    let _ = writeln!(
        out,
        "fired {} times, {} notifications per channel, firing for {} ({:.2} % of the period)",
        r.firings.len(),
        r.notifications,
        span(r.firing_ms),
        r.firing_ms as f64 * 100.0 / period as f64
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::SeriesKey;
    use crate::store::bucket::Bucket;
    use crate::store::{Batch, Store};

    /// The error counter of the seed's log.
    fn errors_key() -> SeriesKey {
        SeriesKey::new("app_requests", &[("event", "api_segmentation_error")])
    }

    /// Backtests an error-burst rule (`extra` adds its fields) over `events` in
    /// `[from, to)` of a fresh store.
    fn backtest(events: &[(SeriesKey, Bucket)], extra: &str, from: i64, to: i64) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write(&Batch {
                events,
                ..Batch::default()
            })
            .unwrap();
        let text = format!(
            r#"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[routing]
warning = ["hook"]
critical = ["hook"]
[[rules]]
name = "errors_burst"
kind = "threshold"
metric = "app_requests"
match = {{ event = "api_segmentation_error" }}
agg = "increase"
window = "10m"
condition = "> 20"
every = "1m"
severity = "warning"
summary = "Error burst"
{extra}
"#
        );
        let cfg = crate::config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let snap = store.snapshot().unwrap();
        let errors = store.errors().unwrap();
        run(&cfg.rules[0], &snap, &errors, from, to).unwrap()
    }

    #[test]
    fn two_days_of_errors_with_three_bursts_fire_three_times() {
        let day = 86_400_000;
        let to = crate::clock::now_ms() / 60_000 * 60_000;
        let from = to - 2 * day;
        let key = errors_key();
        // Two errors every 10 minutes, and three bursts of 30 errors within a minute.
        let mut events = Vec::new();
        let mut t = from;
        while t < to {
            events.push((key.clone(), Bucket::repeated(t, 1.0, 2)));
            t += 600_000;
        }
        for burst in [from + 3_600_000, from + day, to - 7_200_000] {
            events.push((key.clone(), Bucket::repeated(burst, 1.0, 30)));
        }
        let r = backtest(&events, "", from, to);
        assert_eq!(r.firings.len(), 3, "{}", render(&r));
        assert_eq!(r.notifications, 6);
        assert_eq!(r.evaluations, 2 * 24 * 60);
        // Each burst stays in the 10-minute window for 10 evaluations.
        for f in &r.firings {
            assert_eq!(f.resolved_ms.map(|e| e - f.fired_ms), Some(600_000));
        }
        assert_eq!(r.firing_ms, 3 * 600_000);
        let text = render(&r);
        assert!(
            text.contains("fired 3 times, 6 notifications per channel"),
            "{text}"
        );
    }

    #[test]
    fn a_warning_raised_past_its_critical_level_counts_the_raise() {
        let to = crate::clock::now_ms() / 60_000 * 60_000;
        let from = to - 3_600_000;
        let key = errors_key();
        // 30 errors, then 30 more a minute later: warning (> 20), then critical (> 50).
        let burst = from + 600_000;
        let events = vec![
            (key.clone(), Bucket::repeated(burst, 1.0, 30)),
            (key, Bucket::repeated(burst + 60_000, 1.0, 30)),
        ];
        let r = backtest(&events, r#"critical = "> 50""#, from, to);
        assert_eq!(r.firings.len(), 1, "{}", render(&r));
        let f = &r.firings[0];
        assert_eq!(f.severity, crate::config::Severity::Critical);
        // Windows end before their evaluation time: the second minute counts from the
        // evaluation after it.
        assert_eq!(f.raised_ms, Some(burst + 120_000));
        assert_eq!(r.notifications, 3, "firing, raise, resolve");
        assert!(render(&r).contains("raised to critical"), "{}", render(&r));
    }
}
