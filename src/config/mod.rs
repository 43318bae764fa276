//! Configuration: the TOML file is parsed into `raw` types, then validated into [`Config`],
//! the only configuration type the rest of the daemon sees.
//!
//! Validation collects every problem it finds, each with its path (`rules[2].fire_after`) and
//! line, instead of stopping at the first. It never touches the network; it does read the
//! environment and secret files, because a secret that cannot be loaded is a configuration
//! error the operator must see before the daemon starts.

mod channels;
mod daemon;
mod databases;
pub mod defaults;
mod fields;
mod logs;
mod problems;
mod raw;
mod routing;
mod rules;
mod scrapes;
mod secret;
mod slo;
mod store;
mod targets;
#[cfg(test)]
pub(crate) mod testing;
mod validate;
mod window_rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::vocab::Severity;
pub use channels::{Channel, ChannelKind, EmailChannel, SmtpTls};
pub use daemon::{DaemonConfig, LogFormat, OutboxConfig, ServerConfig};
pub use databases::{Database, StatementMatcher, TlsMode};
pub use fields::{CaFile, Pattern, parse_duration};
pub use logs::{
    FieldMatch, FieldPath, LineParse, LogErrors, LogInput, LogMetric, LogMetricKind, LogSource,
    StartAt, TimeFormat,
};
pub use problems::{ConfigError, Problem};
pub use routing::{EscalationStep, Route, Routing};
pub use rules::{ConsecutiveRule, Rule, RuleKind};
pub use scrapes::{Scrape, ScrapeAuth};
pub use secret::Secret;
pub use slo::{Burn, SloEvents};
pub use store::StoreConfig;
pub use targets::{Check, HttpCheck, JsonAssert, SqlCheck, SqlParam, Target, TcpCheck, Timing};
pub use window_rules::{Context, ThresholdRule, WindowInput};

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::testing::config;
    use super::{
        Config, DaemonConfig, DashboardConfig, LogFormat, OutboxConfig, Routing, ServerConfig,
        StoreConfig,
    };

    #[test]
    fn an_empty_file_is_every_default() {
        let (s, m, h, d) = (1, 60, 3600, 86400);
        let secs = Duration::from_secs;
        assert_eq!(
            config(""),
            Config {
                path: PathBuf::from("config.toml"),
                daemon: DaemonConfig {
                    data_dir: PathBuf::from("/var/lib/sloguard"),
                    log_format: LogFormat::Text,
                    log_level: "info".into(),
                },
                server: ServerConfig {
                    listen: ([127, 0, 0, 1], 9797).into(),
                    token: None,
                    max_ingest_bytes: 20 << 20,
                },
                store: StoreConfig {
                    raw_retention: secs(7 * d),
                    distribution_interval: secs(10 * s),
                    history_retention: secs(400 * d),
                    compact_interval: secs(m),
                    rollups: vec![(secs(m), secs(90 * d)), (secs(h), secs(730 * d))],
                },
                outbox: OutboxConfig {
                    initial_backoff: secs(1),
                    max_backoff: secs(5 * m),
                    timeout: secs(10),
                    give_up_after: secs(d),
                },
                routing: Routing::default(),
                channels: Default::default(),
                targets: Vec::new(),
                databases: Vec::new(),
                scrapes: Vec::new(),
                logs: Vec::new(),
                rules: Vec::new(),
                maintenance: Vec::new(),
                dashboard: DashboardConfig {
                    title: "sloguard".into(),
                    default_range: secs(d),
                    refresh: Some(secs(m)),
                    panels: Vec::new(),
                },
                reports: Vec::new(),
            }
        );
    }
}

/// The longest range the dashboard shows (its `default_range`, or a range asked for).
pub const MAX_RANGE: Duration = Duration::from_secs(400 * 24 * 3600);

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub outbox: OutboxConfig,
    pub routing: Routing,
    /// Channels by name.
    pub channels: BTreeMap<String, Channel>,
    pub targets: Vec<Target>,
    pub databases: Vec<Database>,
    pub scrapes: Vec<Scrape>,
    pub logs: Vec<LogSource>,
    pub rules: Vec<Rule>,
    pub maintenance: Vec<crate::silence::MaintenanceWindow>,
    pub dashboard: DashboardConfig,
    pub reports: Vec<Report>,
}

/// `[[reports]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub title: String,
    pub schedule: crate::silence::Schedule,
    pub timezone: chrono_tz::Tz,
    /// An email channel's name.
    pub channel: String,
    /// Recipients; empty: the channel's.
    pub to: Vec<String>,
    pub window: ReportWindow,
    pub sections: Vec<ReportSection>,
    /// Rules reported on; `None`: every `slo`, percentile `threshold` and `ratio` rule.
    pub slos: Option<Vec<String>>,
    pub false_positive_within: Duration,
    pub usage: Vec<UsageItem>,
}

/// What a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWindow {
    /// This long, ending when the report runs.
    Last(Duration),
    /// The calendar week (Monday to Monday) before the one the report runs in.
    LastWeek,
    /// The calendar month before the one the report runs in.
    LastMonth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportSection {
    Slo,
    Alerts,
    Usage,
    Database,
    Daemon,
}

impl ReportSection {
    pub const ALL: [ReportSection; 5] = [
        ReportSection::Slo,
        ReportSection::Alerts,
        ReportSection::Usage,
        ReportSection::Database,
        ReportSection::Daemon,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReportSection::Slo => "slo",
            ReportSection::Alerts => "alerts",
            ReportSection::Usage => "usage",
            ReportSection::Database => "database",
            ReportSection::Daemon => "daemon",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageItem {
    pub title: String,
    pub kind: UsageKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UsageKind {
    /// `agg` over the window, summed over the selected series; broken down by a label;
    /// divided by a distinct count.
    Count {
        metric: String,
        matchers: BTreeMap<String, String>,
        agg: crate::query::Agg,
        by: Option<String>,
        per: Option<Distinct>,
    },
    Distinct(Distinct),
}

/// Distinct values of `label` among the series of `metric` with data in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Distinct {
    pub metric: String,
    pub matchers: BTreeMap<String, String>,
    pub label: String,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    Sum,
    Max,
    Min,
    Avg,
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

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        problems: vec![Problem {
            line: None,
            path: String::new(),
            message: format!("cannot read the file: {e}"),
        }],
    })?;
    parse(&text, path)
}

/// Validates configuration `text`; `path` names the file in problems and resolves relative
/// secret files.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::validate(text, path).map_err(|problems| ConfigError {
        file: path.to_path_buf(),
        problems,
    })
}
