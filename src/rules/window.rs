//! Window evaluation: what a window rule (`threshold`, `ratio`, `growth`, `stale`, `slo`,
//! `new_error_type`) sees at `now`, read from one store snapshot, and the SLO math the
//! dashboard and reports share. It reads the snapshot it is given and never the clock: `now`
//! is an argument, so a backtest evaluates the past with the same code.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::format::{client_note, client_text, format_value};
use crate::query::equal_selector;
use crate::series::Labels;

/// The share of bad events of an SLO in `[from, to)`: bad / total, or 1 − the average of its
/// `up` series; `None` without events.
pub fn slo_error_ratio(
    snap: &crate::store::Snapshot,
    events: &crate::config::SloEvents,
    from: i64,
    to: i64,
) -> Result<Option<f64>, crate::query::QueryError> {
    use crate::config::SloEvents;
    use crate::query::{Agg, aggregate};
    Ok(match events {
        SloEvents::Ratio { bad, total } => {
            let sum = |(metric, matchers): &(String, BTreeMap<String, String>)| {
                aggregate(
                    snap,
                    &equal_selector(metric, matchers),
                    Agg::Increase,
                    from,
                    to,
                )
                .map(|vs| vs.iter().filter_map(|v| v.value).sum::<f64>())
            };
            let (b, t) = (sum(bad)?, sum(total)?);
            (t > 0.0).then(|| (b / t).clamp(0.0, 1.0))
        }
        SloEvents::Up { metric, matchers } => {
            let vs: Vec<f64> =
                aggregate(snap, &equal_selector(metric, matchers), Agg::Avg, from, to)?
                    .iter()
                    .filter_map(|v| v.value)
                    .collect();
            (!vs.is_empty())
                .then(|| (1.0 - vs.iter().sum::<f64>() / vs.len() as f64).clamp(0.0, 1.0))
        }
    })
}

/// What a rule's previous evaluation saw: for a growth rule between samples, the time of each
/// series' newest point. The next evaluation weighs every pair of samples that came after it,
/// so a jump followed by a flat report before the rule's next turn (a busy machine, a client
/// that sends its reports in batches) still counts.
#[derive(Debug, Default)]
pub struct WindowMemory {
    newest: std::collections::HashMap<crate::series::SeriesKey, i64>,
}

/// What a window rule sees at `now`, per label set. Counting aggregates of a window
/// without data are 0 (no errors is zero errors); others are "no data". `memory` is this
/// rule's own, kept from one evaluation to the next.
pub fn window_values(
    errors: &crate::store::logs::ErrorSnapshot,
    snap: &crate::store::Snapshot,
    th: &crate::config::WindowRule,
    now: i64,
    memory: &mut WindowMemory,
) -> anyhow::Result<Vec<super::WindowValue>> {
    use super::WindowValue;
    use crate::config::WindowInput;
    use crate::query::{Agg, aggregate};
    let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
    let selector = equal_selector;
    let counting = |agg: Agg| matches!(agg, Agg::Count | Agg::Sum | Agg::Increase | Agg::Rate);
    let value = |labels: Labels, value: Option<f64>| WindowValue {
        labels,
        value,
        note: None,
    };
    let mut values = match &th.input {
        WindowInput::Series {
            metric,
            matchers,
            agg,
            window,
        } => aggregate(
            snap,
            &selector(metric, matchers),
            *agg,
            now.saturating_sub(ms(*window)).max(0),
            now,
        )?
        .into_iter()
        .map(|v| value(v.series.labels, v.value.or(counting(*agg).then_some(0.0))))
        .collect(),
        WindowInput::Growth {
            metric,
            matchers,
            window,
            per_sample,
        } => {
            let from = now.saturating_sub(ms(*window)).max(0);
            let mut out = Vec::new();
            let mut newest = std::collections::HashMap::new();
            for info in selector(metric, matchers).select(snap) {
                // Two clients' values alternating in the overflow series are no growth.
                if info.key.is_overflow() {
                    continue;
                }
                let points = snap.points(info.id, from, now.saturating_add(1))?;
                let grown = match (points.first(), points.len()) {
                    (Some(_), n) if n >= 2 && *per_sample => {
                        let seen = memory.newest.get(&info.key).copied();
                        Some(newest_growth(&points, seen))
                    }
                    (Some(first), n) if n >= 2 => Some(points[n - 1].1 - first.1),
                    _ => None,
                };
                if let Some(last) = points.last() {
                    newest.insert(info.key.clone(), last.0);
                }
                out.push(value(info.key.labels.clone(), grown));
            }
            memory.newest = newest;
            out
        }
        WindowInput::Stale {
            metric,
            matchers,
            max_age,
        } => {
            let sel = selector(metric, matchers);
            // A series whose first point is after `now` (a backtest's past) was not there.
            let mut born = std::collections::BTreeMap::new();
            for info in sel.select(snap) {
                born.insert(info.key.clone(), snap.first_raw(info.id, info.kind)?);
            }
            let from = now.saturating_sub(ms(*max_age)).max(0);
            aggregate(snap, &sel, Agg::Count, from, now)?
                .into_iter()
                .filter(|v| {
                    born.get(&v.series)
                        .is_none_or(|b| b.is_none_or(|t| t <= now))
                })
                .map(|v| {
                    let stale = v.value.unwrap_or(0.0) == 0.0;
                    value(v.series.labels, Some(if stale { 1.0 } else { 0.0 }))
                })
                .collect()
        }
        WindowInput::Ratio {
            numerator,
            denominator,
            agg,
            window,
            min_volume,
            by,
            error_sources,
        } => {
            let from = now.saturating_sub(ms(*window)).max(0);
            // Sums per group of `by` labels.
            let mut groups: BTreeMap<Labels, (f64, f64)> = BTreeMap::new();
            let group_of = |labels: &Labels| -> Labels {
                by.iter()
                    .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect()
            };
            for (i, (metric, matchers)) in [numerator, denominator].into_iter().enumerate() {
                for v in aggregate(snap, &selector(metric, matchers), *agg, from, now)? {
                    let g = groups.entry(group_of(&v.series.labels)).or_default();
                    let add = v.value.unwrap_or(0.0);
                    if i == 0 {
                        g.0 += add;
                    } else {
                        g.1 += add;
                    }
                }
            }
            // The newest error message in the window of the logs that feed this ratio: what
            // its errors say (never another source's, whose clients may write anything).
            let mut newest = Vec::new();
            for source in error_sources {
                newest.extend(errors.newest(Some(&source.name))?);
            }
            if newest.iter().any(|t| t.last_ms > now) {
                // A backtest's past: the newest sighting of today says nothing of it.
                newest.clear();
                for source in error_sources {
                    newest.extend(errors.types(Some(&source.name))?);
                }
            }
            let client = |name: &str| error_sources.iter().any(|s| s.name == name && s.client);
            let last_error = newest
                .into_iter()
                .filter(|t| t.last_ms >= from && t.last_ms <= now)
                .max_by_key(|t| t.last_ms)
                .map(|t| {
                    if client(&t.source) {
                        format!("last error: {}", client_note(&t.last_message))
                    } else {
                        format!("last error: {}", t.last_message)
                    }
                });
            groups
                .into_iter()
                .map(|(labels, (num, den))| {
                    // Too few requests to judge: no value, so nothing fires, and a firing
                    // alert resolves for want of data (as `and total > N` in PromQL).
                    let ratio = (den > 0.0 && den >= *min_volume).then(|| num / den);
                    WindowValue {
                        labels,
                        value: ratio,
                        note: last_error.clone(),
                    }
                })
                .collect()
        }
        WindowInput::Slo {
            events,
            objective,
            period,
            burns,
        } => {
            let budget = 1.0 - objective;
            // The error ratio over the last `d`; `None` without events.
            let error_ratio =
                |d: Duration| slo_error_ratio(snap, events, now.saturating_sub(ms(d)).max(0), now);
            let mut level = None;
            let mut worst: Option<(f64, f64, &crate::config::Burn)> = None;
            for b in burns {
                let (Some(long), Some(short)) = (error_ratio(b.long)?, error_ratio(b.short)?)
                else {
                    continue;
                };
                let (bl, bs) = (long / budget, short / budget);
                let lvl = if b.critical { 2.0 } else { 1.0 };
                level = Some(level.unwrap_or(0.0_f64));
                if bl > b.factor && bs > b.factor && level.is_some_and(|l| lvl > l) {
                    level = Some(lvl);
                    worst = Some((bl, bs, b));
                }
            }
            let left = error_ratio(*period)?.map(|r| (1.0 - r / budget) * 100.0);
            let d = crate::format::duration_words;
            let note = worst.map(|(bl, bs, b)| {
                format!(
                    "error budget burning {bl:.1}× over {} and {bs:.1}× over {} (alert at {}×); {} of the {} budget left",
                    d(b.long),
                    d(b.short),
                    b.factor,
                    // Overspent shows as nothing left.
                    left.map(|l| format!("{:.0} %", l.max(0.0))).unwrap_or_else(|| "?".into()),
                    d(*period)
                )
            });
            vec![WindowValue {
                labels: Labels::new(),
                value: level,
                note,
            }]
        }
        WindowInput::NewErrors {
            source,
            window,
            quiet,
            client_sources,
        } => {
            use crate::store::logs::WINDOW_MS;
            let hour = |t: i64| t.div_euclid(WINDOW_MS) * WINDOW_MS;
            let recent_from = hour(now.saturating_sub(ms(*window)).max(0));
            let quiet_from = hour(recent_from.saturating_sub(ms(*quiet)));
            // By the hourly counts up to `now` (not the newest sighting of today: a
            // backtest looks at past times): 2 for a type seen in the window after a quiet
            // period (new), 1 for one seen in the window and before (not new, but a new
            // type's alert goes on firing while it keeps happening), nothing for one not
            // seen in the window (its alert resolves).
            let until = hour(now) + WINDOW_MS;
            let mut out = Vec::new();
            for t in errors.types(source.as_deref())? {
                let count = |from: i64, to: i64| -> Result<u64, crate::store::StoreError> {
                    Ok(errors
                        .windows(&t.source, t.id, from, to)?
                        .iter()
                        .map(|(_, n)| n)
                        .sum())
                };
                if t.first_ms > now || count(recent_from, until)? == 0 {
                    continue;
                }
                let before = count(quiet_from, recent_from)?;
                // A client's type is quoted cut and marked (its identity is `error_type`).
                let client = client_sources.contains(&t.source);
                let (pattern, note) = if client {
                    (client_text(&t.pattern), client_note(&t.last_message))
                } else {
                    (t.pattern.clone(), t.last_message.clone())
                };
                let labels: Labels = [
                    ("source".to_string(), t.source.clone()),
                    ("error_type".to_string(), format!("{:016x}", t.id)),
                    ("pattern".to_string(), pattern),
                ]
                .into();
                out.push(WindowValue {
                    labels,
                    value: Some(if before == 0 { 2.0 } else { 1.0 }),
                    note: (t.last_ms <= now).then_some(note),
                });
            }
            out
        }
    };
    // Figures the alert quotes, over the rule's window.
    if !th.context.is_empty() {
        let window = match &th.input {
            WindowInput::Series { window, .. }
            | WindowInput::Ratio { window, .. }
            | WindowInput::Growth { window, .. } => *window,
            _ => Duration::ZERO,
        };
        let from = now.saturating_sub(ms(window)).max(0);
        let mut figures = Vec::new();
        for c in &th.context {
            let found: Vec<f64> =
                aggregate(snap, &selector(&c.metric, &c.matchers), c.agg, from, now)?
                    .iter()
                    .filter_map(|v| v.value)
                    .collect();
            // The largest across the series it selects.
            if let Some(v) = found.iter().copied().reduce(f64::max) {
                figures.push(format!(
                    "{} {} over {}: {}",
                    c.metric,
                    crate::query::agg_name(c.agg),
                    crate::format::duration_words(window),
                    format_value(v)
                ));
            }
        }
        if !figures.is_empty() {
            let figures = figures.join("; ");
            for v in &mut values {
                v.note = Some(match v.note.take() {
                    Some(n) => format!("{n}; {figures}"),
                    None => figures.clone(),
                });
            }
        }
    }
    Ok(values)
}

/// The growth between consecutive samples: the largest step among the pairs that came after
/// `seen` (the newest point the previous evaluation saw), or the last step when none did or
/// nothing was seen yet (a restart does not replay the window's old jumps).
fn newest_growth(points: &[(i64, f64)], seen: Option<i64>) -> f64 {
    let last = points[points.len() - 1].1 - points[points.len() - 2].1;
    let Some(seen) = seen else { return last };
    points
        .windows(2)
        .filter(|w| w[1].0 > seen)
        .map(|w| w[1].1 - w[0].1)
        .reduce(f64::max)
        .unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, RuleKind};
    use crate::rules::{Engine, TransitionKind};
    use crate::series::{Sample, SeriesKey};
    use crate::store::{Batch, Store};
    use crate::vocab::Severity;

    #[test]
    fn a_new_error_type_fires_once_stays_firing_while_it_happens_and_then_resolves() {
        let text = r#"
[routing]
warning = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[logs]]
name = "app"
files = ["/var/log/app.log"]
[[logs.errors]]
message = "error"
[[rules]]
name = "new_errors"
kind = "new_error_type"
source = "app"
severity = "warning"
summary = "New error"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Window(th) = &cfg.rules[0].kind else {
            panic!()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hour = 3_600_000;
        let start = crate::clock::now_ms() / hour * hour - 10 * hour;
        let seen = |at: i64| crate::store::logs::ErrorSeen {
            source: "app".into(),
            id: 7,
            pattern: "timeout after # ms".into(),
            last_message: format!("timeout after {} ms", at % 1000),
            first_ms: at,
            last_ms: at,
            count: 1,
            windows: vec![(at / hour * hour, 1)],
        };
        // Seen every hour for four hours from `start`, then no more.
        for h in 0..4 {
            store
                .write(&Batch {
                    errors: &[seen(start + h * hour + 60_000)],
                    ..Batch::default()
                })
                .unwrap();
        }
        let (mut engine, _) = Engine::restore(cfg.rules.clone(), vec![], start);
        let mut log = Vec::new();
        let mut memory = WindowMemory::default();
        for step in 0..16 {
            // Every 30 minutes from the first sighting on.
            let t = start + 120_000 + step * hour / 2;
            let values = window_values(
                &store.errors().unwrap(),
                &store.snapshot().unwrap(),
                th,
                t,
                &mut memory,
            )
            .unwrap();
            for tr in engine.evaluate("new_errors", &values, t) {
                log.push((step, tr.kind));
            }
        }
        // Fires at the first sighting, goes on through the next three hours, and resolves
        // once a whole hour's count since the window's start shows none: the last sighting
        // was at 3 h 1 min, the window of 1 h reaches back to the start of its hour, so the
        // resolve comes at 5 h 2 min (counts are per hour).
        assert_eq!(
            log,
            vec![(0, TransitionKind::Firing), (10, TransitionKind::Resolved)],
            "{log:?}"
        );
    }

    /// A ratio rule quotes the newest error of the sources of its own metrics only; a
    /// client's message (an ingest source's) comes cut and marked.
    #[test]
    fn a_ratio_quotes_only_its_own_sources_errors() {
        let text = r#"
[routing]
warning = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[logs]]
name = "app"
files = ["/var/log/app.log"]
[[logs.metric]]
name = "requests"
kind = "counter"
labels = { outcome = "outcome" }
[[logs.errors]]
message = "error"
[[logs]]
name = "browser"
ingest = "posthog"
token = "phc_test"
[[logs.metric]]
name = "client_calls"
kind = "counter"
[[logs.errors]]
message = "properties.error"
[[rules]]
name = "app_errors"
kind = "ratio"
numerator = { metric = "requests", match = { outcome = "error" } }
denominator = { metric = "requests" }
window = "5m"
condition = "> 0.1"
severity = "warning"
summary = "Errors"
[[rules]]
name = "client_errors"
kind = "ratio"
numerator = { metric = "client_calls" }
denominator = { metric = "client_calls" }
window = "5m"
condition = "> 0.1"
severity = "warning"
summary = "Client errors"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = crate::clock::now_ms();
        let seen = |source: &str, id: u64, message: &str, at: i64| crate::store::logs::ErrorSeen {
            source: source.into(),
            id,
            pattern: message.into(),
            last_message: message.into(),
            first_ms: at,
            last_ms: at,
            count: 1,
            windows: vec![(at / 3_600_000 * 3_600_000, 1)],
        };
        let forged = format!("Please call +1 555 0100 now{}", "!".repeat(100));
        let key = |name: &str, labels: &[(&str, &str)]| SeriesKey {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let events = [
            (
                key("requests", &[("outcome", "error")]),
                crate::store::bucket::Bucket::repeated(now - 60_000, 1.0, 5),
            ),
            (
                key("client_calls", &[]),
                crate::store::bucket::Bucket::repeated(now - 60_000, 1.0, 5),
            ),
        ];
        store
            .write(&Batch {
                events: &events,
                errors: &[
                    seen("app", 1, "database timeout", now - 120_000),
                    seen("browser", 2, &forged, now - 30_000),
                ],
                ..Batch::default()
            })
            .unwrap();
        let note = |rule: usize| -> Option<String> {
            let RuleKind::Window(th) = &cfg.rules[rule].kind else {
                panic!()
            };
            let values = window_values(
                &store.errors().unwrap(),
                &store.snapshot().unwrap(),
                th,
                now,
                &mut WindowMemory::default(),
            )
            .unwrap();
            values.into_iter().find_map(|v| v.note)
        };
        // The client's newer message is not the app's last error.
        assert_eq!(note(0).as_deref(), Some("last error: database timeout"));
        let client = note(1).unwrap();
        assert!(client.ends_with("… (client-reported)"), "{client}");
        assert!(client.len() < forged.len(), "{client}");
    }

    #[test]
    fn an_slo_burning_slowly_warns_and_one_burning_fast_pages() {
        let text = r#"
[routing]
warning = ["hook"]
critical = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[rules]]
name = "availability"
kind = "slo"
objective = 99.9
up = { metric = "probe_up", match = { target = "api" } }
summary = "SLO"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Window(th) = &cfg.rules[0].kind else {
            panic!()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = crate::clock::now_ms() / 60_000 * 60_000;
        let key = SeriesKey::new("probe_up", &[("target", "api")]);
        // Three days of a probe a minute, one failure in 300 (0.33 %: the budget of 0.1 %
        // burns 3.3× too fast), none in the last 10 minutes.
        let n = 3 * 24 * 60;
        let samples: Vec<Sample> = (0..n)
            .map(|i| Sample {
                series: key.clone(),
                ts_ms: now - (n - i) * 60_000,
                value: if i % 300 == 150 && i < n - 10 {
                    0.0
                } else {
                    1.0
                },
                note: None,
            })
            .collect();
        store.append(&samples).unwrap();
        let values = |at: i64| {
            window_values(
                &store.errors().unwrap(),
                &store.snapshot().unwrap(),
                th,
                at,
                &mut Default::default(),
            )
            .unwrap()
        };
        let slow = values(now);
        assert_eq!(slow[0].value, Some(1.0), "{slow:?}");
        let note = slow[0].note.clone().unwrap();
        assert!(note.contains("over 3 days and"), "{note}");
        assert!(note.contains("budget left"), "{note}");
        let (mut engine, _) = Engine::restore(cfg.rules.clone(), vec![], now);
        let t = engine.evaluate("availability", &slow, now);
        assert_eq!(t[0].alert.severity, Severity::Warning);
        // Then the API fails for five minutes: 14.4× over 1h and 5m pages.
        let down: Vec<Sample> = (0..5)
            .map(|i| Sample {
                series: key.clone(),
                ts_ms: now + i * 60_000,
                value: 0.0,
                note: None,
            })
            .collect();
        store.append(&down).unwrap();
        let fast = values(now + 5 * 60_000);
        assert_eq!(fast[0].value, Some(2.0), "{fast:?}");
        engine.evaluate("availability", &fast, now + 5 * 60_000);
        assert_eq!(engine.alerts().next().unwrap().severity, Severity::Critical);
    }

    /// Two users' heaps alternating in the overflow series look like growth; it is skipped.
    #[test]
    fn a_growth_rule_skips_the_overflow_series() {
        let text = r#"
[[rules]]
name = "heap_growth"
kind = "growth"
metric = "heap_mb"
between = "samples"
window = "1h"
condition = "> 50"
severity = "info"
summary = "Heap grew"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Window(th) = &cfg.rules[0].kind else {
            panic!("a growth rule is a window rule")
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = crate::clock::now_ms() - 60_000;
        let mut samples = Vec::new();
        for (i, v) in [10.0, 100.0, 10.0, 100.0].into_iter().enumerate() {
            for user in ["u1", crate::series::OVERFLOW] {
                samples.push(Sample {
                    series: SeriesKey::new("heap_mb", &[("user", user)]),
                    ts_ms: t0 + i as i64 * 1000,
                    value: if user == "u1" { 10.0 + i as f64 } else { v },
                    note: None,
                });
            }
        }
        store
            .write(&Batch {
                samples: &samples,
                ..Batch::default()
            })
            .unwrap();
        let values = window_values(
            &store.errors().unwrap(),
            &store.snapshot().unwrap(),
            th,
            t0 + 10_000,
            &mut Default::default(),
        )
        .unwrap();
        assert_eq!(values.len(), 1, "{values:?}");
        assert_eq!(values[0].labels["user"], "u1");
        assert_eq!(values[0].value, Some(1.0));
    }

    /// A jump followed by a flat report before the rule's next turn still fires; the turn
    /// after, with no new report, keeps it, and the next report that does not grow resolves.
    #[test]
    fn a_growth_between_samples_counts_every_step_since_the_last_turn() {
        let text = r#"
[[rules]]
name = "heap_growth"
kind = "growth"
metric = "heap_mb"
between = "samples"
window = "1h"
condition = "> 50"
severity = "info"
summary = "Heap grew"
"#;
        let cfg = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let RuleKind::Window(th) = &cfg.rules[0].kind else {
            panic!("a growth rule is a window rule")
        };
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SeriesKey::new("heap_mb", &[("user", "u1")]);
        let t0 = crate::clock::now_ms() - 60_000;
        let write = |at: i64, value: f64| {
            let sample = Sample {
                series: key.clone(),
                ts_ms: t0 + at * 1000,
                value,
                note: None,
            };
            store.append(&[sample]).unwrap();
        };
        let mut memory = WindowMemory::default();
        let mut at = |s: i64| {
            let snap = store.snapshot().unwrap();
            let v = window_values(
                &store.errors().unwrap(),
                &snap,
                th,
                t0 + s * 1000,
                &mut memory,
            );
            v.unwrap()[0].value
        };
        write(0, 100.0);
        write(1, 101.0);
        assert_eq!(at(1), Some(1.0));
        // Two reports before the next turn: the jump, then a flat one.
        write(2, 182.0);
        write(3, 182.0);
        assert_eq!(at(3), Some(81.0));
        // No new report: the newest step is still the jump's neighbour, flat.
        assert_eq!(at(4), Some(0.0));
        write(5, 190.0);
        assert_eq!(at(5), Some(8.0));
        // A fresh memory (a restart) weighs only the newest step, never the window's old jumps.
        let snap = store.snapshot().unwrap();
        let fresh = window_values(
            &store.errors().unwrap(),
            &snap,
            th,
            t0 + 6000,
            &mut WindowMemory::default(),
        )
        .unwrap();
        assert_eq!(fresh[0].value, Some(8.0));
    }
}
