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
