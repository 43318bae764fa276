//! Configuration: the TOML file is read section by section into raw types (the file as
//! written, `deny_unknown_fields` everywhere), then validated into [`Config`], the only
//! configuration type the rest of the daemon sees.
//!
//! One file per section holds its raw types, its validated types, its checks, its defaults
//! and its tests: `daemon.rs` (`[daemon]`, `[server]`, `[outbox]`), `store.rs`,
//! `routing.rs`, `channels.rs`, `targets.rs`, `databases.rs`, `scrapes.rs`, `logs.rs`,
//! `rules.rs` with `window_rules.rs` and `slo.rs`, `maintenance.rs`, `dashboard.rs` and
//! `reports.rs`. What they share is in `problems.rs` (problems, their places, the reading of
//! tables and tags) and `fields.rs` (durations, secrets, URLs and other common fields);
//! `secret.rs` holds [`Secret`]. This file holds [`Config`], [`load`] and [`parse`], and the
//! order in which the sections are validated.
//!
//! Validation collects every problem it finds, each with its path (`rules[2].fire_after`) and
//! line, instead of stopping at the first. It never touches the network; it does read the
//! environment and secret files, because a secret that cannot be loaded is a configuration
//! error the operator must see before the daemon starts.

mod channels;
mod daemon;
mod dashboard;
mod databases;
mod fields;
mod logs;
mod maintenance;
mod problems;
mod reports;
mod routing;
mod rules;
mod scrapes;
mod secret;
mod slo;
mod store;
mod targets;
#[cfg(test)]
pub(crate) mod testing;
mod window_rules;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use toml::de::DeTable;

pub use crate::vocab::Severity;
pub use channels::{Channel, ChannelKind, EmailChannel, SmtpTls};
pub use daemon::{DaemonConfig, LogFormat, OutboxConfig, ServerConfig};
pub use dashboard::{Combine, DashboardConfig, MAX_RANGE, Panel, PanelInput, PanelSeries};
pub use databases::{Database, SqlMetric, SqlValues, StatementMatcher, TlsMode};
pub use fields::{CaFile, Pattern, parse_duration};
pub use logs::{
    FieldMatch, FieldPath, IngestLimits, LineParse, LogErrors, LogInput, LogMetric, LogMetricKind,
    LogSource, SessionCount, Sessions, StartAt, TimeFormat,
};
pub use problems::{ConfigError, Problem};
pub use reports::{Distinct, Figure, Report, ReportSection, ReportWindow, UsageItem, UsageKind};
pub use routing::{EscalationStep, Route, Routing};
pub use rules::{ConsecutiveRule, Rule, RuleKind};
pub use scrapes::{Scrape, ScrapeAuth};
pub use secret::Secret;
pub use slo::{Burn, SloEvents};
pub use store::StoreConfig;
pub use targets::{Check, HttpCheck, JsonAssert, SqlCheck, SqlParam, Target, TcpCheck, Timing};
pub use window_rules::{Context, ErrorSource, WindowInput, WindowRule};

use problems::{Problems, single};

/// Where the commands look for the file when `--config` is not given.
pub const CONFIG_PATH: &str = "/etc/sloguard/config.toml";

/// Each section's defaults are named functions in the section's file, beside its fields;
/// docs/configuration.md lists them all. This module keeps the path the commands use.
pub mod defaults {
    pub use super::CONFIG_PATH;
}

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

impl Config {
    /// How long an error type not seen again is kept ([`window_rules::error_type_horizon`]).
    pub fn error_type_horizon(&self) -> std::time::Duration {
        window_rules::error_type_horizon(&self.rules, self.store.history_retention)
    }

    /// What is allowed but worth an operator's second look: `sloguard check` prints each as
    /// `warning: …`, the daemon logs them when it starts and on reload.
    pub fn warnings(&self) -> Vec<String> {
        daemon::server_warnings(&self.server)
    }
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
    validate(text, path).map_err(|problems| ConfigError {
        file: path.to_path_buf(),
        problems,
    })
}

/// The sections a file may have.
const SECTIONS: &[&str] = &[
    "daemon",
    "server",
    "store",
    "outbox",
    "routing",
    "channels",
    "targets",
    "databases",
    "scrapes",
    "logs",
    "rules",
    "maintenance",
    "dashboard",
    "reports",
];

/// Validates the sections in a fixed order, each after the ones it refers to (routing and
/// rules after channels, targets after databases, rules after logs and the store, reports
/// after channels and rules). Problems are listed in that order too.
fn validate(text: &str, file: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::new(text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            problems.push(e.span(), "", format!("invalid TOML: {}", e.message()));
            return Err(problems.list);
        }
    };
    let root_span = root.span();
    let root = root.into_inner();

    for key in root.keys() {
        if !SECTIONS.contains(&key.get_ref().as_ref()) {
            problems.push(
                Some(key.span()),
                key.get_ref().to_string(),
                format!("unknown section; expected one of: {}", SECTIONS.join(", ")),
            );
        }
    }

    let section = |name: &str| root.get(name);
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();

    let daemon = daemon::daemon(&mut problems, section("daemon"), &root_span);
    let server = daemon::server(&mut problems, section("server"), &root_span, &base_dir);
    let store = store::store(&mut problems, section("store"), &root_span);
    let outbox = daemon::outbox(&mut problems, section("outbox"), &root_span);
    // [routing] names channels: read here, in the order of the sections, and checked once
    // the channels are known.
    let routing =
        single::<routing::RawRouting>(&mut problems, section("routing"), "routing", &root_span);
    let dashboard = dashboard::dashboard(&mut problems, section("dashboard"), &root_span);

    let (channel_names, channels) =
        channels::channels(&mut problems, section("channels"), &base_dir);

    let routing =
        routing.map(|(raw, site)| routing::routing(&mut problems, raw, &site, &channel_names));

    let databases = databases::databases(&mut problems, section("databases"), &base_dir);
    let scrapes = scrapes::scrapes(&mut problems, section("scrapes"), &base_dir);

    let mut logs = logs::logs(&mut problems, section("logs"), &base_dir);

    let targets = targets::targets(&mut problems, section("targets"), &base_dir, &databases);

    let paging: BTreeSet<String> = channels
        .values()
        .filter(|c| matches!(c.kind, ChannelKind::PagerDuty { .. }))
        .map(|c| c.name.clone())
        .collect();
    let rules = rules::rules(
        &mut problems,
        section("rules"),
        &root_span,
        rules::Known {
            channel_names: &channel_names,
            paging: &paging,
            routing: routing.as_ref(),
            logs: &logs,
            store: &store,
        },
    );

    let maintenance = maintenance::maintenance(&mut problems, section("maintenance"));
    let reports = reports::reports(&mut problems, section("reports"), &channels, &rules);
    reports::sketch_labels(&reports, &mut logs);

    if !problems.list.is_empty() {
        return Err(problems.list);
    }
    Ok(Config {
        maintenance,
        reports,
        path: file.to_path_buf(),
        daemon,
        server,
        store,
        outbox,
        routing: routing.unwrap_or_default(),
        channels,
        targets,
        databases,
        scrapes,
        logs,
        rules,
        dashboard,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use std::path::Path;

    use super::testing::{config, expect};
    use super::{
        Config, DaemonConfig, DashboardConfig, LogFormat, OutboxConfig, Routing, ServerConfig,
        StoreConfig, load,
    };

    #[test]
    fn problems_of_the_file() {
        expect(&[
            (
                "[[rules]]\nname = \"r\nkind = \"consecutive\"\n",
                "",
                2,
                "invalid TOML: ",
            ),
            (
                "[server]\nlisten = \"127.0.0.1:9797\"\n\n[dameon]\nlog_level = \"info\"\n",
                "dameon",
                4,
                "unknown section; expected one of: daemon, server, store, outbox, routing, channels, targets, databases, scrapes, logs, rules, maintenance, dashboard, reports",
            ),
        ]);
    }

    #[test]
    fn a_file_that_cannot_be_read() {
        let e = load(Path::new("/nonexistent/sloguard/config.toml")).unwrap_err();
        assert_eq!(e.file, Path::new("/nonexistent/sloguard/config.toml"));
        assert_eq!(e.problems.len(), 1);
        assert_eq!(e.problems[0].line, None);
        assert_eq!(e.problems[0].path, "");
        assert!(
            e.problems[0]
                .message
                .starts_with("cannot read the file: No such file or directory"),
            "{:?}",
            e.problems
        );
    }

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
                    max_ingest_bytes: 2 << 20,
                    max_connections: 4096,
                    allowed_hosts: Vec::new(),
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
                    max_retry_after: secs(m),
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
