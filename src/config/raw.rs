//! The configuration file as written: every section deserialised on its own, with
//! `deny_unknown_fields` everywhere, and with durations, URLs and secrets still as text.
//!
//! Nothing here is used by the daemon directly; `config::validate` turns these types into the
//! typed [`crate::config::Config`]. Defaults live in `config::defaults`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::fields::RawSelector;

/// `[[maintenance]]`: a recurring window in which matching alerts notify no one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    /// The window's name, shown in logs.
    pub name: String,
    /// When it opens: a crontab line (`0 2 * * SUN`) or a 6/7-field cron expression, in UTC.
    pub schedule: String,
    /// How long it stays open.
    pub duration: String,
    /// Which alerts it silences: `rule` and label equality; empty means every alert.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
}

/// `[[rules]]` with `kind = "consecutive"`: fire after N consecutive breaching samples,
/// resolve after M clear ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsecutive {
    /// The tag, `consecutive`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The metric the rule watches.
    pub metric: Option<String>,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Breach condition applied to each sample, e.g. `< 1` or `> 0.5`.
    pub condition: Option<String>,
    /// A second level: a sample breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Breaching samples in a row needed to fire.
    pub fire_after: Option<i64>,
    /// Clear samples in a row needed to resolve.
    pub resolve_after: Option<i64>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[[rules]]` with `kind = "threshold"`: an aggregate of a window of a series compared with
/// a threshold, evaluated every `every`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreshold {
    /// The tag, `threshold`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// avg, min, max, last, sum, count, rate, increase or a percentile (p95).
    pub agg: String,
    /// How far back each evaluation looks.
    pub window: String,
    /// When the aggregate breaches, e.g. `> 0.05`.
    pub condition: String,
    /// When a firing alert resolves, e.g. `< 0.03`; by default when `condition` no longer
    /// holds.
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    /// How long the condition must hold before the alert fires.
    #[serde(rename = "for")]
    pub hold: Option<String>,
    /// Time between evaluations.
    pub every: Option<String>,
    pub severity: String,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[[rules]]` with `kind = "ratio"`: numerator / denominator over a window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRatio {
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    pub numerator: RawSelector,
    pub denominator: RawSelector,
    /// How each side is aggregated over the window (default `increase`).
    pub agg: Option<String>,
    pub window: String,
    pub condition: String,
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub every: Option<String>,
    /// No evaluation while the denominator is under this.
    pub min_volume: Option<f64>,
    /// Labels that make groups, each its own alert.
    #[serde(default)]
    pub by: Vec<String>,
    pub severity: String,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[[rules]]` with `kind = "growth"`: how much a gauge grew.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrowth {
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `samples` (default: between the two newest points) or `window` (oldest to newest).
    pub between: Option<String>,
    /// How far back points are read (default 1h).
    pub window: Option<String>,
    pub condition: String,
    pub resolve: Option<String>,
    /// A second level: a value breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Figures quoted in the alert, over the same window.
    pub context: Option<Vec<RawContext>>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub every: Option<String>,
    pub severity: String,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A figure an alert quotes: an aggregate of another series over the rule's window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawContext {
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Default `last`.
    pub agg: Option<String>,
}

/// One burn-rate alert of an SLO: the budget burns `factor` times too fast over both windows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBurn {
    pub long: String,
    pub short: String,
    pub factor: f64,
    pub severity: String,
}

/// `[[rules]]` with `kind = "slo"`: an objective over a period, alerting on burn rates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    /// In percent: `99.9`.
    pub objective: f64,
    /// Default 30d.
    pub period: Option<String>,
    /// Bad events (errors) and all events (requests).
    pub bad: Option<RawSelector>,
    pub total: Option<RawSelector>,
    /// Or: a 0/1 series whose average is the availability (`probe_up`).
    pub up: Option<RawSelector>,
    /// Default: 14.4× over 1h and 5m, 6× over 6h and 30m (critical); 1× over 3d and 6h
    /// (warning).
    pub burn: Option<Vec<RawBurn>>,
    pub every: Option<String>,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[[rules]]` with `kind = "stale"`: a series without a new point for `max_age`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStale {
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub max_age: String,
    pub every: Option<String>,
    pub severity: String,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[[rules]]` with `kind = "new_error_type"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNewErrorType {
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    pub name: String,
    /// Only error types of this `[[logs]]` source.
    pub source: Option<String>,
    /// Seen within this long (default 1h)…
    pub window: Option<String>,
    /// …and not in this long before (default 7d).
    pub quiet: Option<String>,
    pub every: Option<String>,
    pub severity: String,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// `[dashboard]`: the page the daemon serves at `/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDashboard {
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
pub struct RawPanel {
    pub title: String,
    /// Shown beside the values, e.g. `ms`, `%`, `MB`, `req/min`.
    pub unit: Option<String>,
    pub series: Vec<RawPanelSeries>,
}

/// One line of a panel: an aggregate of a metric per step, or a ratio of two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPanelSeries {
    /// The legend; the label values of each series follow it.
    pub label: Option<String>,
    pub metric: Option<String>,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `avg` (default for `metric`), `increase` (default for a ratio), `pNN`, `rate`, …
    pub agg: Option<String>,
    pub numerator: Option<RawSelector>,
    pub denominator: Option<RawSelector>,
    /// Every value is multiplied by this: `100` for a percentage, `60` for a rate per minute.
    pub scale: Option<f64>,
    /// `sum`, `max`, `min` or `avg`: one line for all the series `metric` selects, instead of
    /// one line each.
    pub combine: Option<String>,
}

/// `[[reports]]`: a report mailed on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    /// Unique; `sloguard report --name` takes it.
    pub name: String,
    /// The subject and heading; the name when absent.
    pub title: Option<String>,
    /// When it is sent: a crontab line (`0 9 * * MON`) or a 6/7-field cron expression.
    pub schedule: String,
    /// The schedule's time zone (IANA, `Europe/Berlin`); UTC when absent.
    pub timezone: Option<String>,
    /// The email channel whose SMTP server sends it.
    pub channel: String,
    /// Recipients; the channel's when absent.
    pub to: Option<Vec<String>>,
    /// `7d` (any duration) ending when it runs, `last_week` or `last_month` (calendar, in the
    /// time zone).
    pub window: Option<String>,
    /// Which sections, in order: `slo`, `alerts`, `usage`, `database`, `daemon`.
    pub sections: Option<Vec<String>>,
    /// Rules whose compliance is reported; every `slo`, percentile `threshold` and `ratio`
    /// rule when absent.
    pub slos: Option<Vec<String>>,
    /// Alerts resolved within this, unacknowledged, are false-positive candidates.
    pub false_positive_within: Option<String>,
    /// The usage section's lines.
    pub usage: Option<Vec<RawUsage>>,
}

/// `[[reports.usage]]`: a count from events, or a distinct count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    pub title: String,
    pub metric: Option<String>,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// How the window is summed per series: `sum` (default), `count`, `increase`, …
    pub agg: Option<String>,
    /// A label to break the count down by.
    pub by: Option<String>,
    /// Divide the count by the distinct values of a label: "per session".
    pub per: Option<RawDistinct>,
    /// Instead of `metric`: how many distinct values a label had in the window.
    pub distinct: Option<RawDistinct>,
}

/// Distinct values of `label` among the series of `metric` with data in the window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDistinct {
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub label: String,
}
