//! The dashboard: what is firing, each SLO's compliance and budget, the configured panels
//! (the plan's latency percentiles, error rate, volume, memory and database time), uptime per
//! probe target, alert history and silences, over a range (1 h, 24 h, 7 d, 30 d or any).
//!
//! [`build`] reads everything from one store snapshot into a [`Dashboard`], which
//! `GET /api/v1/dashboard` returns as JSON and [`html::page`] renders as one HTML page with
//! server-drawn SVG charts: no script, no front-end build, nothing fetched from elsewhere.

pub mod html;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, PanelInput, RuleKind, WindowInput};
use crate::pipeline::AlertView;
use crate::query::equal_selector;
use crate::query::{Agg, stepped};
use crate::rules::slo_error_ratio;
use crate::series::Labels;
use crate::store::Snapshot;

/// The ranges the page offers.
pub const RANGES: [(&str, Duration); 4] = [
    ("1h", Duration::from_secs(3600)),
    ("24h", Duration::from_secs(24 * 3600)),
    ("7d", Duration::from_secs(7 * 24 * 3600)),
    ("30d", Duration::from_secs(30 * 24 * 3600)),
];

/// Alert history entries shown.
const HISTORY_LIMIT: usize = 100;

/// Everything the page shows.
#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub title: String,
    /// The range as asked (`24h`).
    pub range: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Each point of a panel covers this long.
    pub step_ms: i64,
    pub generated_at: String,
    pub alerts: Vec<AlertView>,
    pub slos: Vec<SloStatus>,
    pub panels: Vec<PanelData>,
    pub uptime: Vec<Uptime>,
    /// Newest first.
    pub history: Vec<crate::history::Event>,
    pub silences: Vec<SilenceView>,
    /// Seconds between reloads of the page; none when it does not reload.
    pub refresh_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SloStatus {
    pub rule: String,
    pub summary: Option<String>,
    /// Percent, e.g. 99.9.
    pub objective: f64,
    pub period: String,
    /// The share of good events over the period, percent; none without events.
    pub attained: Option<f64>,
    /// Percent of the period's error budget not yet spent (negative when overspent).
    pub budget_left: Option<f64>,
    /// Whether the rule has a firing alert now.
    pub firing: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PanelData {
    pub title: String,
    pub unit: String,
    pub series: Vec<Line>,
}

/// One line of a chart: (time ms, value) per step with data, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub label: String,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Uptime {
    pub target: String,
    /// Percent of successful probes in the range; none without probes.
    pub uptime: Option<f64>,
    /// The last probe's result.
    pub up: Option<bool>,
    /// The average probe duration in the range, ms.
    pub latency_ms: Option<f64>,
    /// The share of successful probes per step, 0..1.
    pub steps: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SilenceView {
    pub id: u64,
    pub matchers: crate::silence::Matchers,
    pub starts_at: String,
    pub ends_at: String,
    pub active: bool,
    pub reason: String,
    pub by: String,
}

/// Reads a range: a duration from 1 minute to 400 days (`24h`, `7d`).
pub fn parse_range(text: &str) -> Result<Duration, String> {
    let d = crate::config::parse_duration(text)?;
    if d < Duration::from_secs(60) || d > crate::config::MAX_RANGE {
        return Err(format!(
            "`{text}` is not a range between 1m and 400d; the page offers 1h, 24h, 7d and 30d"
        ));
    }
    Ok(d)
}

/// How a range is shown: its name on the page (`24h`) when it is one, else its duration.
pub fn range_name(range: Duration) -> String {
    RANGES
        .iter()
        .find(|(_, d)| *d == range)
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| humantime::format_duration(range).to_string())
}

/// The step of a range: about 300 points a line, on a round duration.
pub fn step_for(range: Duration) -> i64 {
    const STEPS: [i64; 15] = [
        1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000,
        3_600_000, 7_200_000, 21_600_000, 86_400_000,
    ];
    let want = range.as_millis() as i64 / 300;
    STEPS
        .iter()
        .copied()
        .find(|s| *s >= want)
        .unwrap_or(86_400_000)
}

/// `name="value", …` of the labels, or nothing.
fn label_text(labels: &Labels) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Per-step values of one panel series (also the charts of reports).
pub fn panel_lines(
    snap: &Snapshot,
    s: &crate::config::PanelSeries,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<Line>, crate::query::QueryError> {
    let name = |default: String, labels: &Labels| {
        let base = s.label.clone().unwrap_or(default);
        let extra = label_text(labels);
        if extra.is_empty() {
            base
        } else {
            format!("{base} {{{extra}}}")
        }
    };
    match &s.input {
        PanelInput::Metric { metric, matchers } => {
            let default = format!("{metric} {}", crate::query::agg_name(s.agg));
            let found = stepped(
                snap,
                &equal_selector(metric, matchers),
                s.agg,
                from,
                to,
                step,
            )?;
            if let Some(how) = s.combine {
                use crate::config::Combine;
                // (combined value, series counted) per step.
                let mut by_time: BTreeMap<i64, (f64, u32)> = BTreeMap::new();
                for (t, v) in found.iter().flat_map(|sp| &sp.points) {
                    if !v.is_finite() {
                        continue;
                    }
                    let e = by_time.entry(*t).or_insert((*v, 0));
                    if e.1 > 0 {
                        e.0 = match how {
                            Combine::Sum | Combine::Avg => e.0 + v,
                            Combine::Max => e.0.max(*v),
                            Combine::Min => e.0.min(*v),
                        };
                    }
                    e.1 += 1;
                }
                let points = by_time
                    .into_iter()
                    .map(|(t, (v, n))| {
                        let v = if how == Combine::Avg {
                            v / f64::from(n)
                        } else {
                            v
                        };
                        (t, v * s.scale)
                    })
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                return Ok(vec![Line {
                    label: name(default, &Labels::new()),
                    points,
                }]);
            }
            let mut out = Vec::new();
            for sp in found {
                // Labels the selector fixed say nothing about the line.
                let labels: Labels = sp
                    .series
                    .labels
                    .iter()
                    .filter(|(k, _)| !matchers.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                out.push(Line {
                    label: name(default.clone(), &labels),
                    points: sp
                        .points
                        .iter()
                        .map(|(t, v)| (*t, v * s.scale))
                        .filter(|(_, v)| v.is_finite())
                        .collect(),
                });
            }
            Ok(out)
        }
        PanelInput::Ratio {
            numerator,
            denominator,
        } => {
            let sum = |(metric, matchers): &(String, BTreeMap<String, String>)| {
                let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
                for sp in stepped(
                    snap,
                    &equal_selector(metric, matchers),
                    s.agg,
                    from,
                    to,
                    step,
                )? {
                    for (t, v) in sp.points {
                        if v.is_finite() {
                            *by_time.entry(t).or_default() += v;
                        }
                    }
                }
                Ok::<_, crate::query::QueryError>(by_time)
            };
            let (num, den) = (sum(numerator)?, sum(denominator)?);
            let points = den
                .iter()
                .filter(|(_, d)| **d > 0.0)
                .map(|(t, d)| (*t, num.get(t).copied().unwrap_or(0.0) / d * s.scale))
                .filter(|(_, v)| v.is_finite())
                .collect();
            Ok(vec![Line {
                label: s
                    .label
                    .clone()
                    .unwrap_or_else(|| format!("{} / {}", numerator.0, denominator.0)),
                points,
            }])
        }
    }
}

/// What the page shows that is not read from the series: the alerts and silences the
/// pipeline holds, and the alert history.
pub struct Held {
    pub alerts: Vec<AlertView>,
    pub silences: Vec<crate::silence::Silence>,
    pub history: Vec<crate::history::Event>,
}

/// The dashboard of the range `range_text` (`range` long) ending at `now`, its series read
/// from `snap`.
pub fn build(
    cfg: &Config,
    snap: &Snapshot,
    held: Held,
    (range_text, range): (&str, Duration),
    now: i64,
) -> Result<Dashboard, crate::query::QueryError> {
    let Held {
        alerts,
        silences,
        history,
    } = held;
    let step = step_for(range);
    let to = now;
    let from = now.saturating_sub(range.as_millis() as i64).max(0);

    let firing: std::collections::BTreeSet<&str> = alerts
        .iter()
        .filter(|a| a.status == "firing")
        .map(|a| a.rule.as_str())
        .collect();
    let mut slos = Vec::new();
    for rule in &cfg.rules {
        let RuleKind::Window(th) = &rule.kind else {
            continue;
        };
        let WindowInput::Slo {
            events,
            objective,
            period,
            ..
        } = &th.input
        else {
            continue;
        };
        let since = now.saturating_sub(period.as_millis() as i64).max(0);
        let ratio = slo_error_ratio(snap, events, since, now)?;
        let budget = 1.0 - objective;
        slos.push(SloStatus {
            rule: rule.name.clone(),
            summary: Some(rule.summary.clone()).filter(|s| !s.is_empty()),
            objective: objective * 100.0,
            period: crate::format::duration_words(*period),
            attained: ratio.map(|r| (1.0 - r) * 100.0),
            budget_left: ratio.map(|r| (1.0 - r / budget) * 100.0),
            firing: firing.contains(rule.name.as_str()),
        });
    }

    let mut panels = Vec::new();
    let configured: Vec<crate::config::Panel>;
    let panel_cfgs = if cfg.dashboard.panels.is_empty() && !cfg.targets.is_empty() {
        // Without configured panels: how long each target takes to answer.
        configured = vec![crate::config::Panel {
            title: "Probe duration".into(),
            unit: "ms".into(),
            series: vec![crate::config::PanelSeries {
                label: Some("probe".into()),
                input: PanelInput::Metric {
                    metric: "probe_duration_seconds".into(),
                    matchers: BTreeMap::new(),
                },
                agg: Agg::Avg,
                scale: 1000.0,
                combine: None,
            }],
        }];
        &configured
    } else {
        &cfg.dashboard.panels
    };
    for p in panel_cfgs {
        let mut series = Vec::new();
        for s in &p.series {
            series.extend(panel_lines(snap, s, from, to, step)?);
        }
        panels.push(PanelData {
            title: p.title.clone(),
            unit: p.unit.clone(),
            series,
        });
    }

    let mut uptime = Vec::new();
    for t in &cfg.targets {
        let m: BTreeMap<String, String> = [("target".to_string(), t.name.clone())].into();
        let up_sel = equal_selector("probe_up", &m);
        let value = |agg: Agg, sel: &crate::query::Selector| {
            crate::query::aggregate(snap, sel, agg, from, to)
                .map(|v| v.first().and_then(|v| v.value))
        };
        let avg = value(Agg::Avg, &up_sel)?;
        let last = value(Agg::Last, &up_sel)?;
        let latency = value(Agg::Avg, &equal_selector("probe_duration_seconds", &m))?;
        let steps = stepped(snap, &up_sel, Agg::Avg, from, to, step)?
            .into_iter()
            .next()
            .map(|s| s.points)
            .unwrap_or_default();
        uptime.push(Uptime {
            target: t.name.clone(),
            uptime: avg.map(|a| a * 100.0),
            up: last.map(|l| l >= 1.0),
            latency_ms: latency.map(|s| s * 1000.0),
            steps,
        });
    }

    let silences = silences
        .iter()
        .filter(|s| s.ends_ms >= from)
        .map(|s| SilenceView {
            id: s.id,
            matchers: s.matchers.clone(),
            starts_at: crate::format::rfc3339(s.starts_ms),
            ends_at: crate::format::rfc3339(s.ends_ms),
            active: s.active(now),
            reason: s.reason.clone(),
            by: s.by.clone(),
        })
        .collect();

    Ok(Dashboard {
        title: cfg.dashboard.title.clone(),
        range: range_text.to_string(),
        from_ms: from,
        to_ms: to,
        step_ms: step,
        generated_at: crate::format::rfc3339(now),
        alerts,
        slos,
        panels,
        uptime,
        history,
        silences,
        refresh_seconds: cfg.dashboard.refresh.map(|d| d.as_secs().max(1)),
    })
}

/// The history shown for a range.
pub fn history(
    store: &crate::store::Store,
    from: i64,
) -> Result<Vec<crate::history::Event>, crate::store::StoreError> {
    store.history_newest(from, HISTORY_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::{Sample, SeriesKey};
    use crate::store::{Batch, Store};

    const MIN: i64 = 60_000;

    fn config(panels: &str) -> Config {
        let text = format!(
            r#"
[[targets]]
name = "web"
url = "http://127.0.0.1:9/health"

[dashboard]
refresh = "0s"
{panels}
"#
        );
        crate::config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    fn held() -> Held {
        Held {
            alerts: Vec::new(),
            silences: Vec::new(),
            history: Vec::new(),
        }
    }

    /// Three users' heaps every minute for an hour, user `u` at 100 + 10·u (+1 at odd minutes);
    /// the target up but for minutes 10..15.
    fn store(dir: &std::path::Path, now: i64) -> Store {
        let store = Store::open(dir).unwrap();
        let mut samples = Vec::new();
        for m in 0..60 {
            let ts = now - HOUR_MS + m * MIN;
            for u in 0..3 {
                samples.push(Sample {
                    series: SeriesKey::new("heap_mb", &[("user", &format!("u{u}"))]),
                    ts_ms: ts,
                    value: 100.0 + 10.0 * u as f64 + (m % 2) as f64,
                    note: None,
                });
            }
            samples.push(Sample {
                series: SeriesKey::new("probe_up", &[("target", "web")]),
                ts_ms: ts,
                value: if (10..15).contains(&m) { 0.0 } else { 1.0 },
                note: None,
            });
        }
        store
            .write(&Batch {
                samples: &samples,
                ..Batch::default()
            })
            .unwrap();
        store
    }

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn a_panel_combines_its_series_or_draws_each() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_790_000_000_000 / MIN * MIN;
        let store = store(dir.path(), now);
        let snap = store.snapshot().unwrap();
        let range = ("1h", Duration::from_secs(3600));
        let cfg = config(
            r#"
[[dashboard.panel]]
title = "Heap"
unit = "MB"
series = [
  { label = "largest", metric = "heap_mb", agg = "max", combine = "max" },
  { label = "mean", metric = "heap_mb", agg = "avg", combine = "avg" },
  { label = "total", metric = "heap_mb", agg = "last", combine = "sum", scale = 2 },
  { metric = "heap_mb", agg = "max" },
]
"#,
        );
        let d = build(&cfg, &snap, held(), range, now).unwrap();
        let lines = &d.panels[0].series;
        assert_eq!(lines.len(), 3 + 3, "{lines:?}");
        let at = |label: &str| -> Vec<f64> {
            lines
                .iter()
                .find(|l| l.label == label)
                .unwrap_or_else(|| panic!("no {label} in {lines:?}"))
                .points
                .iter()
                .map(|p| p.1)
                .collect()
        };
        // Steps of 30 s: one minute's point each, every other step empty.
        let largest = at("largest");
        assert_eq!(largest.len(), 60);
        assert_eq!(largest[0], 120.0);
        assert_eq!(largest[1], 121.0);
        assert_eq!(at("mean")[0], 110.0);
        assert_eq!(at("total")[1], 2.0 * (101.0 + 111.0 + 121.0));
        assert_eq!(at("heap_mb max {user=u1}")[0], 110.0);
        assert_eq!(d.step_ms, 30_000);

        // Uptime: 55 of 60 probes succeeded; the last one did.
        let u = &d.uptime[0];
        assert_eq!(u.target, "web");
        assert!(
            (u.uptime.unwrap() - 100.0 * 55.0 / 60.0).abs() < 1e-9,
            "{u:?}"
        );
        assert_eq!(u.up, Some(true));
        assert_eq!(u.steps.iter().filter(|(_, v)| *v == 0.0).count(), 5);
    }

    #[test]
    fn ranges_and_steps() {
        assert!(parse_range("30s").is_err());
        assert!(parse_range("2y").is_err());
        assert_eq!(parse_range("7d").unwrap(), Duration::from_secs(7 * 86400));
        assert_eq!(step_for(Duration::from_secs(3600)), 30_000);
        assert_eq!(step_for(Duration::from_secs(86400)), 300_000);
        assert_eq!(step_for(Duration::from_secs(7 * 86400)), 3_600_000);
        assert_eq!(step_for(Duration::from_secs(30 * 86400)), 21_600_000);
        assert_eq!(step_for(Duration::from_secs(120)), 1000);
        assert_eq!(range_name(Duration::from_secs(86400)), "24h");
        assert_eq!(range_name(Duration::from_secs(120)), "2m");
    }
}
