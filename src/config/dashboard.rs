//! `[dashboard]`: the page the daemon serves at `/` and its panels, as written, validated
//! and defaulted.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::fields::{RawSelector, agg_field, duration_field, metric_name};
use super::problems::{Keyword, Problems, Site, keywords, single, sub_sites};

// Defaults; docs/configuration.md lists the same.

fn dashboard_title() -> String {
    "sloguard".to_string()
}

/// The dashboard's range when none is picked: the plan's "last 24 hours".
fn dashboard_range() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// How often an open dashboard reloads itself.
fn dashboard_refresh() -> Duration {
    Duration::from_secs(60)
}

/// `[dashboard]`: the page the daemon serves at `/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDashboard {
    /// The page's title.
    pub title: Option<String>,
    /// The range shown when none is picked: `1h`, `24h` (default), `7d`, `30d` or any duration.
    pub default_range: Option<String>,
    /// How often an open page reloads itself; `0s` never.
    pub refresh: Option<String>,
    /// The charts, in order.
    pub panel: Option<Vec<RawPanel>>,
}

/// `[[dashboard.panel]]`: one chart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPanel {
    /// The chart's title.
    pub title: String,
    /// Shown beside the values, e.g. `ms`, `%`, `MB`, `req/min`.
    pub unit: Option<String>,
    /// The lines of the chart.
    pub series: Vec<RawPanelSeries>,
}

/// One line of a panel: an aggregate of a metric per step, or a ratio of two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPanelSeries {
    /// The legend; the label values of each series follow it.
    pub label: Option<String>,
    /// The metric drawn: one line per series, or one with `combine`.
    pub metric: Option<String>,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `avg` (default for `metric`), `increase` (default for a ratio), `pNN`, `rate`, …
    pub agg: Option<String>,
    /// Instead of `metric`: the series above the line of a ratio per step.
    pub numerator: Option<RawSelector>,
    /// The series below the line of the ratio.
    pub denominator: Option<RawSelector>,
    /// Every value is multiplied by this: `100` for a percentage, `60` for a rate per minute.
    pub scale: Option<f64>,
    /// `sum`, `max`, `min` or `avg`: one line for all the series `metric` selects, instead of
    /// one line each.
    pub combine: Option<String>,
}

/// The longest range the dashboard shows (its `default_range`, or a range asked for).
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 24 * 3600);

/// `[dashboard]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardConfig {
    pub title: String,
    pub default_range: Duration,
    /// `None`: the page does not reload itself.
    pub refresh: Option<Duration>,
    pub panels: Vec<Panel>,
}

/// One chart of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub unit: String,
    pub series: Vec<PanelSeries>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PanelSeries {
    pub label: Option<String>,
    pub input: PanelInput,
    pub agg: crate::query::Agg,
    pub scale: f64,
    /// One line for all selected series, their values per step combined this way.
    pub combine: Option<Combine>,
}

keywords! {
    /// How the series of a panel line are combined into one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Combine {
        Sum = "sum",
        Max = "max",
        Min = "min",
        Avg = "avg",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PanelInput {
    /// `agg` per step of every series the selector matches.
    Metric {
        metric: String,
        matchers: BTreeMap<String, String>,
    },
    /// `agg` of the numerator over `agg` of the denominator per step, each summed over its
    /// series.
    Ratio {
        numerator: (String, BTreeMap<String, String>),
        denominator: (String, BTreeMap<String, String>),
    },
}

/// `[dashboard]`, validated; the defaults when it is absent (or broken, with a problem).
pub(super) fn dashboard(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
) -> DashboardConfig {
    single::<RawDashboard>(problems, value, "dashboard", root_span)
        .map(|(raw, site)| dashboard_config(problems, raw, &site))
        .unwrap_or_else(default_dashboard)
}

fn default_dashboard() -> DashboardConfig {
    DashboardConfig {
        title: dashboard_title(),
        default_range: dashboard_range(),
        refresh: Some(dashboard_refresh()),
        panels: Vec::new(),
    }
}

fn dashboard_config(
    problems: &mut Problems<'_>,
    raw: RawDashboard,
    site: &Site<'_, '_>,
) -> DashboardConfig {
    let mut cfg = default_dashboard();
    if let Some(t) = raw.title {
        cfg.title = t;
    }
    cfg.default_range = duration_field(
        problems,
        site,
        "default_range",
        raw.default_range.as_ref(),
        dashboard_range(),
        Duration::from_secs(60),
    );
    if cfg.default_range > MAX_RANGE {
        problems.push(
            Some(site.span_of("default_range")),
            site.field("default_range"),
            "must be at most 400d",
        );
    }
    let refresh = duration_field(
        problems,
        site,
        "refresh",
        raw.refresh.as_ref(),
        dashboard_refresh(),
        Duration::ZERO,
    );
    cfg.refresh = (!refresh.is_zero()).then_some(refresh);
    let panel_sites = sub_sites(site, "panel");
    for (raw, psite) in raw.panel.unwrap_or_default().into_iter().zip(&panel_sites) {
        let series_sites = sub_sites(psite, "series");
        if raw.series.is_empty() {
            problems.push(
                Some(psite.span_of("series")),
                psite.field("series"),
                "a panel needs at least one series",
            );
        }
        let mut series = Vec::new();
        for (s, ssite) in raw.series.into_iter().zip(&series_sites) {
            if let Some(s) = panel_series(problems, s, ssite) {
                series.push(s);
            }
        }
        cfg.panels.push(Panel {
            title: raw.title,
            unit: raw.unit.unwrap_or_default(),
            series,
        });
    }
    cfg
}

fn panel_series(
    problems: &mut Problems<'_>,
    raw: RawPanelSeries,
    site: &Site<'_, '_>,
) -> Option<PanelSeries> {
    let before = problems.list.len();
    let (input, default_agg) = match (raw.metric, raw.numerator, raw.denominator) {
        (Some(metric), None, None) => {
            metric_name(problems, site, &metric);
            (
                PanelInput::Metric {
                    metric,
                    matchers: raw.matchers,
                },
                crate::query::Agg::Avg,
            )
        }
        (None, Some(n), Some(d)) => {
            if !raw.matchers.is_empty() {
                problems.push(
                    Some(site.key_span("match")),
                    site.field("match"),
                    "a ratio has its `match` in `numerator` and `denominator`",
                );
            }
            metric_name(problems, site, &n.metric);
            metric_name(problems, site, &d.metric);
            (
                PanelInput::Ratio {
                    numerator: (n.metric, n.matchers),
                    denominator: (d.metric, d.matchers),
                },
                crate::query::Agg::Increase,
            )
        }
        _ => {
            problems.push(
                Some(site.span.clone()),
                site.field("metric"),
                "give `metric` (an aggregate per step) or both `numerator` and `denominator` (a ratio)",
            );
            return None;
        }
    };
    let agg = match raw.agg.as_deref() {
        Some(text) => agg_field(problems, site, text),
        None => Some(default_agg),
    };
    let combine = match raw.combine.as_deref() {
        None => None,
        Some(text) => {
            let combine = Combine::parse(text);
            if combine.is_none() {
                problems.push(
                    Some(site.span_of("combine")),
                    site.field("combine"),
                    format!("`{text}` is not a way to combine series; use sum, max, min or avg"),
                );
            }
            combine
        }
    };
    if combine.is_some() && matches!(input, PanelInput::Ratio { .. }) {
        problems.push(
            Some(site.key_span("combine")),
            site.field("combine"),
            "a ratio is one line already",
        );
    }
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        problems.push(
            Some(site.span_of("scale")),
            site.field("scale"),
            "must be a finite number other than 0",
        );
    }
    if problems.list.len() > before {
        return None;
    }
    Some(PanelSeries {
        label: raw.label,
        input,
        agg: agg?,
        scale,
        combine,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::{Combine, Panel, PanelInput, PanelSeries};
    use crate::config::testing::{config, expect};
    use crate::query::Agg;

    #[test]
    fn panels_as_written_with_their_defaults() {
        let c = config(
            r#"[dashboard]
title = "Shop"
default_range = "7d"
refresh = "0s"

[[dashboard.panel]]
title = "Latency"
unit = "ms"
series = [
  { label = "p95", metric = "http_ms", agg = "p95", combine = "max" },
  { label = "errors", numerator = { metric = "errors" }, denominator = { metric = "requests" }, scale = 100.0 },
]
"#,
        );
        let d = &c.dashboard;
        assert_eq!(
            (d.title.as_str(), d.default_range, d.refresh),
            ("Shop", Duration::from_secs(7 * 86400), None)
        );
        assert_eq!(
            d.panels,
            [Panel {
                title: "Latency".into(),
                unit: "ms".into(),
                series: vec![
                    PanelSeries {
                        label: Some("p95".into()),
                        input: PanelInput::Metric {
                            metric: "http_ms".into(),
                            matchers: BTreeMap::new(),
                        },
                        agg: Agg::Quantile(0.95),
                        scale: 1.0,
                        combine: Some(Combine::Max),
                    },
                    PanelSeries {
                        label: Some("errors".into()),
                        input: PanelInput::Ratio {
                            numerator: ("errors".into(), BTreeMap::new()),
                            denominator: ("requests".into(), BTreeMap::new()),
                        },
                        agg: Agg::Increase,
                        scale: 100.0,
                        combine: None,
                    },
                ],
            }]
        );
        // A metric line is averaged per step unless it says otherwise.
        let c = config("[[dashboard.panel]]\ntitle = \"CPU\"\nseries = [{ metric = \"cpu\" }]\n");
        assert_eq!(c.dashboard.panels[0].series[0].agg, Agg::Avg);
        assert_eq!(c.dashboard.panels[0].unit, "");
    }

    #[test]
    fn problems() {
        let panel = |series: &str| {
            format!("[[dashboard.panel]]\ntitle = \"P\"\nseries = [\n  {series},\n]\n")
        };
        expect(&[
            (
                "[dashboard]\ndefault_range = \"401d\"\n",
                "dashboard.default_range",
                2,
                "must be at most 400d",
            ),
            (
                "[dashboard]\ndefault_range = \"30s\"\n",
                "dashboard.default_range",
                2,
                "must be at least 1m",
            ),
            (
                "[dashboard]\nrefresh = \"often\"\n",
                "dashboard.refresh",
                2,
                "`often` is not a duration",
            ),
            (
                "[[dashboard.panel]]\ntitle = \"P\"\nseries = []\n",
                "dashboard.panel[0].series",
                3,
                "a panel needs at least one series",
            ),
            (
                &panel(
                    "{ numerator = { metric = \"a\" }, denominator = { metric = \"b\" }, match = { x = \"1\" } }",
                ),
                "dashboard.panel[0].series[0].match",
                4,
                "a ratio has its `match` in `numerator` and `denominator`",
            ),
            (
                &panel("{ numerator = { metric = \"a\" } }"),
                "dashboard.panel[0].series[0].metric",
                4,
                "give `metric` (an aggregate per step) or both `numerator` and `denominator` (a ratio)",
            ),
            (
                &panel("{ metric = \"cpu\", combine = \"median\" }"),
                "dashboard.panel[0].series[0].combine",
                4,
                "`median` is not a way to combine series; use sum, max, min or avg",
            ),
            (
                &panel(
                    "{ numerator = { metric = \"a\" }, denominator = { metric = \"b\" }, combine = \"sum\" }",
                ),
                "dashboard.panel[0].series[0].combine",
                4,
                "a ratio is one line already",
            ),
            (
                &panel("{ metric = \"cpu\", scale = 0.0 }"),
                "dashboard.panel[0].series[0].scale",
                4,
                "must be a finite number other than 0",
            ),
            (
                &panel("{ metric = \"cpu\", scale = inf }"),
                "dashboard.panel[0].series[0].scale",
                4,
                "must be a finite number other than 0",
            ),
            (
                &panel("{ metric = \"cpu load\" }"),
                "dashboard.panel[0].series[0].metric",
                4,
                "`cpu load` is not a metric name",
            ),
            (
                &panel("{ metric = \"cpu\", agg = \"p101\" }"),
                "dashboard.panel[0].series[0].agg",
                4,
                "`p101` is not an aggregation",
            ),
        ]);
    }
}
