//! `[daemon]`, `[server]` and `[outbox]`: the process's own settings (its data directory and
//! log, its HTTP API, the retries of notifications), each as written, validated and
//! defaulted.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::fields::{duration_field, secret_field};
use super::problems::{Keyword, Problems, Site, keywords, single};

// Defaults; docs/configuration.md lists the same.

const DATA_DIR: &str = "/var/lib/sloguard";
const LISTEN: &str = "127.0.0.1:9797";
/// PostHog's own limit for its one-event endpoints; the SDKs' batches are far smaller (see
/// docs/security.md), and posthog-node halves its batch when answered 413.
const MAX_INGEST_BYTES: usize = 2 << 20;
/// Connections served at once; the unit's `LimitNOFILE` leaves room for them.
const MAX_CONNECTIONS: usize = 4096;
fn log_level() -> String {
    "info".to_string()
}
fn outbox_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn outbox_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn outbox_timeout() -> Duration {
    Duration::from_secs(10)
}
fn outbox_give_up_after() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn outbox_max_retry_after() -> Duration {
    Duration::from_secs(60)
}

/// `[daemon]`: process-wide settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    /// Directory holding the data file. Overridden by `--data-dir`.
    pub data_dir: Option<String>,
    /// Log line format: `text` or `json`.
    pub log_format: Option<String>,
    /// Log filter in `tracing` syntax, e.g. `info` or `sloguard=debug`.
    pub log_level: Option<String>,
}

/// `[server]`: the daemon's HTTP API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Address to listen on, e.g. `127.0.0.1:9797`.
    pub listen: Option<String>,
    /// Token required by write endpoints (ack), a secret (`env:NAME`), or use `token_file`.
    pub token: Option<String>,
    /// A file whose content is the token.
    pub token_file: Option<String>,
    /// The largest body an ingest request may have, compressed and decompressed, in bytes.
    pub max_ingest_bytes: Option<usize>,
    /// Connections served at once; more are closed as they come.
    pub max_connections: Option<usize>,
    /// Host names (besides IP addresses and `localhost`) the dashboard and API answer to.
    pub allowed_hosts: Option<Vec<String>>,
}

/// `[outbox]`: how notifications are retried.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    /// First retry delay after a retryable failure.
    pub initial_backoff: Option<String>,
    /// Upper bound of the exponential backoff.
    pub max_backoff: Option<String>,
    /// Timeout of one delivery attempt.
    pub timeout: Option<String>,
    /// How long a retryable notification keeps being retried before it is given up.
    pub give_up_after: Option<String>,
    /// The longest `Retry-After` of a receiver that is honoured.
    pub max_retry_after: Option<String>,
}

keywords! {
    /// How the daemon writes its log lines.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LogFormat {
        Text = "text",
        Json = "json",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub listen: std::net::SocketAddr,
    /// Required by write endpoints; `None` disables them.
    pub token: Option<Secret>,
    /// The largest ingest body, compressed and decompressed.
    pub max_ingest_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Host names the routes other than capture answer to, besides IP addresses and
    /// `localhost`.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    pub give_up_after: Duration,
    /// A receiver's `Retry-After` is honoured up to this; a longer one (a day, say) would
    /// hold the entry, and only it, that long.
    pub max_retry_after: Duration,
}

impl OutboxConfig {
    /// The longest an entry is ever held back before its next attempt: the longest backoff
    /// (with its jitter) or `Retry-After`.
    pub fn longest_wait(&self) -> Duration {
        self.max_backoff
            .max(self.max_retry_after)
            .saturating_add(Duration::from_secs(1))
    }
}

/// `[daemon]`, validated; the defaults when it is absent (or broken, with a problem).
pub(super) fn daemon(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
) -> DaemonConfig {
    single::<RawDaemon>(problems, value, "daemon", root_span)
        .map(|(raw, site)| daemon_config(problems, raw, &site))
        .unwrap_or_else(default_daemon)
}

/// `[server]`, validated; the defaults when it is absent (or broken, with a problem).
pub(super) fn server(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
    base_dir: &Path,
) -> ServerConfig {
    single::<RawServer>(problems, value, "server", root_span)
        .map(|(raw, site)| server_config(problems, raw, &site, base_dir))
        .unwrap_or_else(default_server)
}

/// `[outbox]`, validated; the defaults when it is absent (or broken, with a problem).
pub(super) fn outbox(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
) -> OutboxConfig {
    single::<RawOutbox>(problems, value, "outbox", root_span)
        .map(|(raw, site)| outbox_config(problems, raw, &site))
        .unwrap_or_else(default_outbox)
}

fn default_daemon() -> DaemonConfig {
    DaemonConfig {
        data_dir: PathBuf::from(DATA_DIR),
        log_format: LogFormat::Text,
        log_level: log_level(),
    }
}

fn default_server() -> ServerConfig {
    ServerConfig {
        listen: LISTEN
            .parse()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 9797).into()),
        token: None,
        max_ingest_bytes: MAX_INGEST_BYTES,
        max_connections: MAX_CONNECTIONS,
        allowed_hosts: Vec::new(),
    }
}

fn default_outbox() -> OutboxConfig {
    OutboxConfig {
        initial_backoff: outbox_initial_backoff(),
        max_backoff: outbox_max_backoff(),
        timeout: outbox_timeout(),
        give_up_after: outbox_give_up_after(),
        max_retry_after: outbox_max_retry_after(),
    }
}

fn daemon_config(problems: &mut Problems<'_>, raw: RawDaemon, site: &Site<'_, '_>) -> DaemonConfig {
    let log_format = match raw.log_format.as_deref() {
        None => LogFormat::Text,
        Some(text) => LogFormat::parse(text).unwrap_or_else(|| {
            problems.push(
                Some(site.span_of("log_format")),
                site.field("log_format"),
                format!("`{text}` is not a log format; use `text` or `json`"),
            );
            LogFormat::Text
        }),
    };
    let log_level = raw.log_level.unwrap_or_else(log_level);
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.push(
            Some(site.span_of("log_level")),
            site.field("log_level"),
            format!("`{log_level}` is not a log filter; use e.g. `info` or `sloguard=debug`"),
        );
    }
    DaemonConfig {
        data_dir: raw
            .data_dir
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DATA_DIR)),
        log_format,
        log_level,
    }
}

fn server_config(
    problems: &mut Problems<'_>,
    raw: RawServer,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> ServerConfig {
    let mut cfg = default_server();
    if let Some(text) = &raw.listen {
        match text.parse() {
            Ok(addr) => cfg.listen = addr,
            Err(_) => problems.push(
                Some(site.span_of("listen")),
                site.field("listen"),
                format!("`{text}` is not an address and port, e.g. `127.0.0.1:9797`"),
            ),
        }
    }
    if raw.token.is_some() || raw.token_file.is_some() {
        cfg.token = secret_field(
            problems,
            site,
            "token",
            raw.token.as_deref(),
            raw.token_file.as_deref(),
            base_dir,
        );
        if cfg.token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            problems.push(
                Some(site.span_of("token")),
                site.field("token"),
                "the token is shorter than 16 characters; use a long random one (`openssl rand -hex 32`)",
            );
        }
    }
    if let Some(n) = raw.max_ingest_bytes {
        if (1024..=1 << 30).contains(&n) {
            cfg.max_ingest_bytes = n;
        } else {
            problems.push(
                Some(site.span_of("max_ingest_bytes")),
                site.field("max_ingest_bytes"),
                "must be between 1024 and 1073741824",
            );
        }
    }
    if let Some(n) = raw.max_connections {
        if (16..=1 << 20).contains(&n) {
            cfg.max_connections = n;
        } else {
            problems.push(
                Some(site.span_of("max_connections")),
                site.field("max_connections"),
                "must be between 16 and 1048576",
            );
        }
    }
    for (i, host) in raw
        .allowed_hosts
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if valid {
            cfg.allowed_hosts
                .push(host.trim_end_matches('.').to_string());
        } else {
            problems.push(
                Some(site.span_of("allowed_hosts")),
                format!("{}[{i}]", site.field("allowed_hosts")),
                format!("`{host}` is not a host name (without port), e.g. `sloguard.example.com`"),
            );
        }
    }
    cfg
}

/// `[server]`'s warnings: a listen address other than loopback publishes the dashboard and
/// API (read-only without the token, but readable) along with the capture paths.
pub(super) fn server_warnings(server: &ServerConfig) -> Vec<String> {
    if server.listen.ip().is_loopback() {
        return Vec::new();
    }
    vec![format!(
        "server.listen: {} is not a loopback address: the dashboard, the API and /metrics are open to whoever reaches it; listen on 127.0.0.1 and publish only the capture paths through a proxy (docs/security.md)",
        server.listen
    )]
}

fn outbox_config(problems: &mut Problems<'_>, raw: RawOutbox, site: &Site<'_, '_>) -> OutboxConfig {
    let ms = Duration::from_millis(10);
    let cfg = OutboxConfig {
        initial_backoff: duration_field(
            problems,
            site,
            "initial_backoff",
            raw.initial_backoff.as_ref(),
            outbox_initial_backoff(),
            ms,
        ),
        max_backoff: duration_field(
            problems,
            site,
            "max_backoff",
            raw.max_backoff.as_ref(),
            outbox_max_backoff(),
            ms,
        ),
        timeout: duration_field(
            problems,
            site,
            "timeout",
            raw.timeout.as_ref(),
            outbox_timeout(),
            ms,
        ),
        give_up_after: duration_field(
            problems,
            site,
            "give_up_after",
            raw.give_up_after.as_ref(),
            outbox_give_up_after(),
            Duration::from_secs(1),
        ),
        max_retry_after: duration_field(
            problems,
            site,
            "max_retry_after",
            raw.max_retry_after.as_ref(),
            outbox_max_retry_after(),
            Duration::from_secs(1),
        ),
    };
    if cfg.max_backoff < cfg.initial_backoff {
        problems.push(
            Some(site.span_of("max_backoff")),
            site.field("max_backoff"),
            "must not be shorter than initial_backoff",
        );
    }
    cfg
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::{DaemonConfig, LogFormat, OutboxConfig};
    use crate::config::Secret;
    use crate::config::testing::{config, expect};

    #[test]
    fn settings_as_written() {
        let c = config(
            r#"[daemon]
data_dir = "/srv/sloguard"
log_format = "json"
log_level = "sloguard=debug"

[server]
listen = "0.0.0.0:8080"
token = "0123456789abcdef"
max_ingest_bytes = 1024

[outbox]
initial_backoff = "10ms"
max_backoff = "10ms"
timeout = "1s"
give_up_after = "1h"
"#,
        );
        assert_eq!(
            c.daemon,
            DaemonConfig {
                data_dir: PathBuf::from("/srv/sloguard"),
                log_format: LogFormat::Json,
                log_level: "sloguard=debug".into(),
            }
        );
        assert_eq!(c.server.listen, ([0, 0, 0, 0], 8080).into());
        assert_eq!(c.server.token, Some(Secret::literal("0123456789abcdef")));
        assert_eq!(c.server.max_ingest_bytes, 1024);
        let ms = Duration::from_millis;
        assert_eq!(
            c.outbox,
            OutboxConfig {
                initial_backoff: ms(10),
                max_backoff: ms(10),
                timeout: ms(1000),
                give_up_after: ms(3_600_000),
                max_retry_after: ms(60_000),
            }
        );
    }

    #[test]
    fn problems() {
        expect(&[
            (
                "[daemon]\nlog_format = \"logfmt\"\n",
                "daemon.log_format",
                2,
                "`logfmt` is not a log format; use `text` or `json`",
            ),
            (
                "[daemon]\nlog_level = \"sloguard=loud\"\n",
                "daemon.log_level",
                2,
                "`sloguard=loud` is not a log filter; use e.g. `info` or `sloguard=debug`",
            ),
            (
                "[server]\nlisten = \"localhost\"\n",
                "server.listen",
                2,
                "`localhost` is not an address and port, e.g. `127.0.0.1:9797`",
            ),
            (
                "[server]\ntoken = \"0123456789abcde\"\n",
                "server.token",
                2,
                "the token is shorter than 16 characters; use a long random one (`openssl rand -hex 32`)",
            ),
            (
                "[server]\nmax_ingest_bytes = 1023\n",
                "server.max_ingest_bytes",
                2,
                "must be between 1024 and 1073741824",
            ),
            (
                "[server]\nmax_ingest_bytes = 1073741825\n",
                "server.max_ingest_bytes",
                2,
                "must be between 1024 and 1073741824",
            ),
            (
                "[outbox]\ninitial_backoff = \"1m\"\nmax_backoff = \"30s\"\n",
                "outbox.max_backoff",
                3,
                "must not be shorter than initial_backoff",
            ),
            (
                "[outbox]\ngive_up_after = \"500ms\"\n",
                "outbox.give_up_after",
                2,
                "must be at least 1s",
            ),
        ]);
    }
}
