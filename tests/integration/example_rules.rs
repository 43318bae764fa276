//! Every rule of `config.toml.example` (the monitoring plan) against data that must trigger
//! it and data that must not: consecutive rules through the engine's samples, window rules
//! through a real store, `rules::window_values` and the engine's evaluation.

use std::collections::BTreeMap;
use std::time::Duration;

use sloguard::config::{Config, LogMetricKind, RuleKind, WindowInput, WindowRule};
use sloguard::query::Agg;
use sloguard::rules::{Engine, TransitionKind};
use sloguard::series::{Labels, Sample, SeriesKey};
use sloguard::store::bucket::Bucket;
use sloguard::store::logs::ErrorSeen;
use sloguard::store::{Batch, Store};
use sloguard::vocab::{Condition, Op};

/// The example with its `env:` secrets replaced by stand-ins.
fn example() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let mut text = std::fs::read_to_string(path).unwrap();
    for (name, value) in [
        ("SLOGUARD_API_TOKEN", "0123456789abcdef0123456789abcdef"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T000/B000/XXXX",
        ),
        ("SMTP_PASSWORD", "password"),
        ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0000000000000000000001"),
        ("OPS_WEBHOOK_TOKEN", "token"),
        (
            "SUPABASE_DB_URL",
            "postgres://m:pw@db.example.com:5432/postgres",
        ),
        ("SUPABASE_SECRET_KEY", "sb_secret_0000"),
        ("POSTHOG_PROJECT_TOKEN", "phc_example0000"),
    ] {
        text = text.replace(&format!("\"env:{name}\""), &format!("\"{value}\""));
    }
    sloguard::config::parse(&text, std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"))
}

/// A value that breaches `c`, and one that does not, a tenth of the threshold (at least 1)
/// away from it: clear of a sketch's 1 % (0.01 for a ratio's threshold under 0.1).
fn breaching_and_clear(c: &Condition) -> (f64, f64) {
    let t = c.threshold;
    let d = if t.abs() < 0.1 && t != 0.0 {
        t.abs() / 2.0
    } else {
        (t.abs() / 10.0).max(1.0)
    };
    let (bad, good) = match c.op {
        Op::Lt => (t - d, t + d),
        Op::Le => (t, t + d),
        Op::Gt => (t + d, t - d),
        Op::Ge => (t, t - d),
        Op::Eq => (t, t + d),
        Op::Ne => (t + d, t),
    };
    assert!(c.breached(bad) && !c.breached(good), "{c}");
    (bad, good)
}

fn labels(m: &BTreeMap<String, String>) -> Labels {
    m.clone()
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Whether `metric` is a log counter or distribution (stored as events).
fn is_events(cfg: &Config, metric: &str) -> bool {
    cfg.logs
        .iter()
        .flat_map(|l| &l.metrics)
        .any(|m| m.name == metric && m.kind != LogMetricKind::Gauge)
}

/// `n` events of `value` for series `key` at `at`.
fn events(key: &SeriesKey, at: i64, value: f64, n: u64) -> (SeriesKey, Bucket) {
    (key.clone(), Bucket::repeated(at, value, n))
}

/// Writes what a window rule should see at time `te`: breaching (`bad`) or not.
fn write_for(cfg: &Config, store: &Store, th: &WindowRule, te: i64, bad: bool) {
    let (bad_v, good_v) = breaching_and_clear(&th.condition);
    let v = if bad { bad_v } else { good_v };
    let mut samples = Vec::new();
    let mut evs = Vec::new();
    let mut errors = Vec::new();
    match &th.input {
        WindowInput::Series {
            metric,
            matchers,
            agg,
            window,
        } => {
            let key = SeriesKey {
                name: metric.clone(),
                labels: labels(matchers),
            };
            let at = te - ms(*window) / 4;
            match (is_events(cfg, metric), agg) {
                (true, Agg::Increase | Agg::Count) => {
                    evs.push(events(&key, at, 1.0, v.max(0.0).floor() as u64))
                }
                (true, Agg::Quantile(_) | Agg::Avg | Agg::Max | Agg::Min | Agg::Last) => {
                    evs.push(events(&key, at, v, 50))
                }
                (false, Agg::Avg | Agg::Max | Agg::Min | Agg::Last | Agg::Quantile(_)) => {
                    for i in 0..5 {
                        samples.push(Sample {
                            series: key.clone(),
                            ts_ms: at + i,
                            value: v,
                            note: None,
                        });
                    }
                }
                other => panic!("no data recipe for {metric} with {other:?}"),
            }
        }
        WindowInput::Ratio {
            numerator,
            denominator,
            window,
            min_volume,
            ..
        } => {
            // The numerator's events are part of the denominator's (errors are requests).
            let at = te - ms(*window) / 4;
            let total = (min_volume * 2.0).max(100.0);
            let errors_n = (v.clamp(0.0, 1.0) * total).round();
            let num = SeriesKey {
                name: numerator.0.clone(),
                labels: labels(&numerator.1),
            };
            let mut rest = labels(&denominator.1);
            rest.insert("event".into(), "api_segmentation_success".into());
            let den = SeriesKey {
                name: denominator.0.clone(),
                labels: rest,
            };
            evs.push(events(&num, at, 1.0, errors_n as u64));
            evs.push(events(&den, at, 1.0, (total - errors_n) as u64));
        }
        WindowInput::Growth {
            metric, matchers, ..
        } => {
            let key = SeriesKey {
                name: metric.clone(),
                labels: labels(matchers),
            };
            for (i, value) in [(0, 100.0), (1, 100.0 + v)] {
                samples.push(Sample {
                    series: key.clone(),
                    ts_ms: te - 60_000 + i * 30_000,
                    value,
                    note: None,
                });
            }
        }
        WindowInput::Stale {
            metric,
            matchers,
            max_age,
        } => {
            let at = if bad {
                te - ms(*max_age) - 60_000
            } else {
                te - 1_000
            };
            samples.push(Sample {
                series: SeriesKey {
                    name: metric.clone(),
                    labels: labels(matchers),
                },
                ts_ms: at,
                value: 60.0,
                note: None,
            });
        }
        WindowInput::Slo { events: slo, .. } => {
            // Everything failing, or everything fine, over the last minute.
            let at = te - 60_000;
            match slo {
                sloguard::config::SloEvents::Up { metric, matchers } => {
                    for i in 0..5 {
                        samples.push(Sample {
                            series: SeriesKey {
                                name: metric.clone(),
                                labels: labels(matchers),
                            },
                            ts_ms: at + i * 1000,
                            value: if bad { 0.0 } else { 1.0 },
                            note: None,
                        });
                    }
                }
                sloguard::config::SloEvents::Ratio { bad: b, total } => {
                    let errors_n = if bad { 50 } else { 0 };
                    evs.push(events(
                        &SeriesKey {
                            name: b.0.clone(),
                            labels: labels(&b.1),
                        },
                        at,
                        1.0,
                        errors_n,
                    ));
                    let mut ok = labels(&total.1);
                    ok.insert("event".into(), "ok".into());
                    evs.push(events(
                        &SeriesKey {
                            name: total.0.clone(),
                            labels: ok,
                        },
                        at,
                        1.0,
                        100 - errors_n,
                    ));
                }
            }
        }
        WindowInput::NewErrors { source, quiet, .. } => {
            let source = source.clone().unwrap_or_else(|| "app".into());
            let seen = |at: i64| ErrorSeen {
                source: source.clone(),
                id: 42,
                pattern: "Cannot connect to database at #.#.#.#".into(),
                last_message: "Cannot connect to database at 10.0.0.7".into(),
                first_ms: at,
                last_ms: at,
                count: 1,
                windows: vec![(at.div_euclid(3_600_000) * 3_600_000, 1)],
            };
            errors.push(seen(te - 60_000));
            if !bad {
                // Seen two days ago, inside the quiet period: not new.
                assert!(ms(*quiet) > 3 * 86_400_000);
                errors.push(seen(te - 2 * 86_400_000));
            }
        }
    }
    store
        .write(&Batch {
            samples: &samples,
            events: &evs,
            errors: &errors,
            ..Batch::default()
        })
        .unwrap();
}

/// The transitions of `rule` evaluated at `now` and at `now + for`, over data written for
/// both times.
fn window_run(cfg: &Config, rule: &sloguard::config::Rule, bad: bool) -> Vec<TransitionKind> {
    let RuleKind::Window(th) = &rule.kind else {
        unreachable!()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = sloguard::clock::now_ms();
    let times = if th.hold.is_zero() {
        vec![now]
    } else {
        vec![now, now + ms(th.hold)]
    };
    for te in &times {
        write_for(cfg, &store, th, *te, bad);
    }
    let (mut engine, _) = Engine::restore(vec![rule.clone()], vec![], now);
    let mut kinds = Vec::new();
    let mut memory = sloguard::rules::WindowMemory::default();
    for te in times {
        let snap = store.snapshot().unwrap();
        let errors = store.errors().unwrap();
        let values = sloguard::rules::window_values(&errors, &snap, th, te, &mut memory).unwrap();
        kinds.extend(
            engine
                .evaluate(&rule.name, &values, te)
                .into_iter()
                .map(|t| t.kind),
        );
    }
    kinds
}

#[test]
fn every_rule_of_the_example_fires_on_its_trigger_and_not_otherwise() {
    let cfg = example();
    assert!(cfg.rules.len() >= 15, "{} rules", cfg.rules.len());
    for rule in &cfg.rules {
        match &rule.kind {
            RuleKind::Consecutive(c) => {
                let (bad, good) = breaching_and_clear(&c.condition);
                let series = SeriesKey {
                    name: c.metric.clone(),
                    labels: labels(&c.matchers),
                };
                let run = |v: f64, n: u32| {
                    let (mut e, _) = Engine::restore(vec![rule.clone()], vec![], 0);
                    let mut kinds = Vec::new();
                    for i in 0..n {
                        let s = Sample {
                            series: series.clone(),
                            ts_ms: i as i64 * 1000,
                            value: v,
                            note: None,
                        };
                        kinds.extend(e.observe(&s, i as i64 * 1000).into_iter().map(|t| t.kind));
                    }
                    kinds
                };
                assert!(
                    run(bad, c.fire_after).contains(&TransitionKind::Firing),
                    "{} did not fire after {} samples of {bad}",
                    rule.name,
                    c.fire_after
                );
                if c.fire_after > 1 {
                    assert!(
                        !run(bad, c.fire_after - 1).contains(&TransitionKind::Firing),
                        "{} fired before {} samples",
                        rule.name,
                        c.fire_after
                    );
                }
                assert!(
                    run(good, c.fire_after * 3).is_empty(),
                    "{} on {good}",
                    rule.name
                );
            }
            RuleKind::Window(th) => {
                let fired = window_run(&cfg, rule, true);
                assert!(
                    fired.contains(&TransitionKind::Firing),
                    "{} did not fire on its trigger: {fired:?}",
                    rule.name
                );
                let quiet = window_run(&cfg, rule, false);
                assert!(
                    !quiet.contains(&TransitionKind::Firing),
                    "{} fired without its trigger: {quiet:?}",
                    rule.name
                );
                if let WindowInput::Ratio { min_volume, .. } = &th.input {
                    assert!(*min_volume > 0.0, "{}: no minimum volume", rule.name);
                }
                if let Some(critical) = &th.critical {
                    // Past the critical level the alert is critical.
                    let (mut engine, _) = Engine::restore(vec![rule.clone()], vec![], 0);
                    let (bad, _) = breaching_and_clear(critical);
                    let labels = match &th.input {
                        WindowInput::Series { matchers, .. } => labels(matchers),
                        _ => Labels::new(),
                    };
                    let v = sloguard::rules::WindowValue {
                        labels,
                        value: Some(bad),
                        note: None,
                    };
                    engine.evaluate(&rule.name, std::slice::from_ref(&v), 0);
                    engine.evaluate(&rule.name, std::slice::from_ref(&v), ms(th.hold));
                    let alert = engine.alerts().next().expect("an alert");
                    assert_eq!(
                        alert.severity,
                        sloguard::config::Severity::Critical,
                        "{}",
                        rule.name
                    );
                }
            }
        }
    }
}

/// `sloguard backtest` on an edited rule over a data directory: when the seed's "errors per
/// hour" rule would have fired in two days with three bursts, and what it would have sent.
#[test]
fn backtest_replays_an_edited_rule_over_stored_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hour = 3_600_000;
    let to = sloguard::clock::now_ms() / hour * hour;
    let from = to - 48 * hour;
    {
        let store = Store::open(&data).unwrap();
        let key = SeriesKey::new("app_requests", &[("event", "api_segmentation_error")]);
        // 4 errors an hour, and bursts of 15 in three hours.
        let mut evs = Vec::new();
        for h in 0..48 {
            let n = if [5, 20, 40].contains(&h) { 15 } else { 4 };
            evs.push(events(&key, from + h * hour + 60_000, 1.0, n));
        }
        store
            .write(&Batch {
                events: &evs,
                ..Batch::default()
            })
            .unwrap();
    }
    let config = dir.path().join("edited.toml");
    std::fs::write(
        &config,
        r#"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[routing]
warning = ["hook"]

[[rules]]
name = "api_errors_per_hour"
kind = "threshold"
metric = "app_requests"
match = { event = "api_segmentation_error" }
agg = "increase"
window = "1h"
condition = "> 10"
every = "5m"
severity = "warning"
summary = "More than 10 API errors in the last hour"
"#,
    )
    .unwrap();
    let since = format!("{}h", (sloguard::clock::now_ms() - from) / hour + 1);
    let out = crate::util::sloguard(
        &[
            "backtest",
            "--config",
            config.to_str().unwrap(),
            "--rule",
            "api_errors_per_hour",
            "--since",
            &since,
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let firings = report["firings"].as_array().unwrap();
    assert_eq!(firings.len(), 3, "{report}");
    assert_eq!(report["notifications"], 6);
    for f in firings {
        assert!(f["value"].as_f64().unwrap() > 10.0, "{f}");
        assert!(!f["resolved_ms"].is_null(), "{f}");
    }
    // The text form says the same.
    let out = crate::util::sloguard(
        &[
            "backtest",
            "--config",
            config.to_str().unwrap(),
            "--rule",
            "api_errors_per_hour",
            "--since",
            &since,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("fired 3 times, 6 notifications per channel"),
        "{text}"
    );
    // A rule the file does not have is named, with the ones it has.
    let out = crate::util::sloguard(
        &[
            "backtest",
            "--config",
            config.to_str().unwrap(),
            "--rule",
            "nope",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("has no rule `nope`; its rules: api_errors_per_hour"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Window rules that would flap, never fire, or be critical from the start are refused,
/// each with its line and field.
#[test]
fn window_rule_mistakes_are_refused_with_their_field() {
    let text = r#"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[routing]
warning = ["hook"]
critical = ["hook"]

[[rules]]
name = "flaps"
kind = "threshold"
metric = "error_ratio"
agg = "avg"
window = "5m"
condition = "> 0.01"
resolve = "> 0.02"
severity = "warning"
summary = "x"

[[rules]]
name = "critical_from_the_start"
kind = "threshold"
metric = "latency"
agg = "p95"
window = "5m"
condition = "> 500"
critical = "> 500"
severity = "warning"
summary = "x"

[[rules]]
name = "unreachable_burn"
kind = "slo"
objective = 99.9
up = { metric = "probe_up" }
burn = [{ long = "1h", short = "5m", factor = 2000, severity = "critical" }]
summary = "x"

[[rules]]
name = "no_burns"
kind = "slo"
objective = 99.9
up = { metric = "probe_up" }
burn = []
summary = "x"

[[logs]]
name = "app"
files = ["/var/log/app.log"]
[[logs.metric]]
name = "app_requests"
kind = "counter"

[[rules]]
name = "ratio_of_one_interval"
kind = "ratio"
numerator = { metric = "app_requests", match = { event = "error" } }
denominator = { metric = "app_requests" }
window = "15s"
condition = "> 0.5"
every = "5s"
severity = "warning"
summary = "x"

[[rules]]
name = "counts_less_than_it_skips"
kind = "threshold"
metric = "probe_up"
agg = "count"
window = "10s"
condition = "< 1"
every = "1m"
severity = "warning"
summary = "x"
"#;
    let err = sloguard::config::parse(text, std::path::Path::new("bad.toml"))
        .unwrap_err()
        .to_string();
    for want in [
        "bad.toml:18: rules[0].resolve: `> 0.02` must be on the other side of `> 0.01`",
        "bad.toml:29: rules[1].critical: `> 500` must be a level beyond `> 500`",
        "bad.toml:38: rules[2].burn: a factor of 1000 or more can never be reached",
        "bad.toml:46: rules[3].burn: needs at least one burn-rate alert",
        "rules[4].window: `app_requests` is counted per [store].distribution_interval (10s): the window must be at least two of those",
        "rules[5].window: shorter than `every` (1m): what happens between two evaluations would never be counted",
    ] {
        assert!(err.contains(want), "{want}\nnot in\n{err}");
    }
}
