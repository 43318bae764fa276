//! The configuration file as written: every section deserialised on its own, with
//! `deny_unknown_fields` everywhere, and with durations, URLs and secrets still as text.
//!
//! Nothing here is used by the daemon directly; `config::validate` turns these types into the
//! typed [`crate::config::Config`]. Defaults live in `config::defaults`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[daemon]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Directory holding the data file. Overridden by `--data-dir`.
    pub data_dir: Option<String>,
    /// How long raw points are kept, e.g. `30d`.
    pub retention: Option<String>,
    /// Log line format: `text` or `json`.
    pub log_format: Option<String>,
    /// Log filter in `tracing` syntax, e.g. `info` or `sloguard=debug`.
    pub log_level: Option<String>,
}

/// `[outbox]`: how notifications are retried.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// First retry delay after a retryable failure.
    pub initial_backoff: Option<String>,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Option<String>,
    /// Timeout of one delivery attempt.
    pub timeout: Option<String>,
    /// How long a retryable notification keeps being retried before it is given up.
    pub give_up_after: Option<String>,
}

/// `[routing]`: which channels each severity goes to. `info` is logged only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// Channels for warning alerts.
    #[serde(default)]
    pub warning: Vec<String>,
    /// Channels for critical alerts.
    #[serde(default)]
    pub critical: Vec<String>,
}

/// `[[channels]]`: one notification destination.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawChannel {
    /// A Slack incoming webhook.
    Slack {
        /// Unique channel name used by `[routing]` and rules.
        name: String,
        /// The webhook URL, a secret: a literal, `env:NAME`, or use `webhook_url_file`.
        webhook_url: Option<String>,
        /// A file whose content is the webhook URL.
        webhook_url_file: Option<String>,
    },
    /// A generic JSON webhook.
    Webhook {
        /// Unique channel name used by `[routing]` and rules.
        name: String,
        /// The URL to POST to (a secret, like `webhook_url`).
        url: Option<String>,
        /// A file whose content is the URL.
        url_file: Option<String>,
        /// Extra request headers; values may be `env:NAME` secrets.
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
}

/// `[[targets]]`: one HTTP uptime probe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique target name; becomes the `target` label of the probe series.
    pub name: String,
    /// The URL to probe.
    pub url: String,
    /// HTTP method.
    pub method: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Status codes counted as up. Default: any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// A substring the response body must contain.
    pub body_contains: Option<String>,
    /// Timeout of one probe.
    pub timeout: Option<String>,
    /// Time between probes.
    pub interval: Option<String>,
    /// Random extra delay added to each interval, to spread probes.
    pub jitter: Option<String>,
}

/// `[[rules]]`: one alerting rule.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawRule {
    /// Fire after N consecutive breaching samples, resolve after M clear ones.
    Consecutive {
        /// Unique rule name.
        name: String,
        /// The metric the rule watches.
        metric: Option<String>,
        /// Label equality matchers selecting series of `metric`.
        #[serde(default, rename = "match")]
        matchers: BTreeMap<String, String>,
        /// Breach condition applied to each sample, e.g. `< 1` or `> 0.5`.
        condition: Option<String>,
        /// Breaching samples in a row needed to fire.
        fire_after: Option<i64>,
        /// Clear samples in a row needed to resolve.
        resolve_after: Option<i64>,
        /// `info`, `warning` or `critical`.
        severity: String,
        /// Title of the alert; `{label}` is replaced by the label's value.
        summary: String,
        /// Runbook link shown in notifications.
        runbook_url: Option<String>,
        /// Dashboard link shown in notifications.
        dashboard_url: Option<String>,
        /// Channels for this rule instead of `[routing]`.
        channels: Option<Vec<String>>,
    },
}
