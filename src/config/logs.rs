//! `[[logs]]`: lines read from files, a command or PostHog capture requests, and the series
//! and error types made from them; as written, validated and defaulted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::fields::{Pattern, check_name, duration_field, secret_field};
use super::problems::{Keyword, Problems, Site, keywords, named_elements, sub_sites};

// Defaults; docs/configuration.md lists the same.

fn log_poll_interval() -> Duration {
    Duration::from_millis(250)
}
const LOG_MAX_LINE_BYTES: usize = 64 * 1024;
const LOG_MAX_SERIES: usize = 100;
const INGEST_EVENTS_PER_SECOND: u32 = 1_000;
const INGEST_BYTES_PER_SECOND: u64 = 1 << 20;
fn ingest_max_event_age() -> Duration {
    Duration::from_secs(3600)
}

keywords! {
    /// What a source with `ingest` receives.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum IngestProtocol {
        Posthog = "posthog",
    }
}

keywords! {
    /// A source's `format`: how a line becomes fields.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum LineFormat {
        Json = "json",
        Text = "text",
    }
}

/// `[[logs]]`, validated; then the checks across sources: one kind per metric name, one
/// project token per ingest source.
pub(super) fn logs(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    base_dir: &Path,
) -> Vec<LogSource> {
    let logs: Vec<LogSource> = named_elements::<RawLog, _>(
        problems,
        value,
        ("logs", "log source"),
        |problems, raw, site| log_source(problems, raw, site, base_dir),
        |l| &l.name,
    );
    log_metric_kinds(problems, &logs, value);
    ingest_tokens(problems, &logs, value);
    logs
}

/// `[[logs]]`: JSON or text lines read from files or from a command's output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// Unique name; names the source in checkpoints, metrics and our own log.
    pub name: String,
    /// Glob patterns of the files to follow.
    pub files: Option<Vec<String>>,
    /// Glob patterns of files to leave alone (rotated, compressed copies).
    pub exclude: Option<Vec<String>>,
    /// `end` (default) or `beginning`: where a file is first read when the source has no
    /// checkpoint yet.
    pub start_at: Option<String>,
    /// How often files are checked for new lines, rotation and new matches of the globs.
    pub poll_interval: Option<String>,
    /// Whether a matched path that is a symbolic link is read (default: skipped).
    pub follow_symlinks: Option<bool>,
    /// A command (program and arguments) whose standard output is read line by line.
    pub command: Option<Vec<String>>,
    /// `posthog`: events the PostHog SDKs send to the daemon's capture endpoints.
    pub ingest: Option<String>,
    /// For `ingest`: the project token the SDKs send, a secret (`env:NAME`), or `token_file`.
    pub token: Option<String>,
    /// For `ingest`: a file whose content is the project token.
    pub token_file: Option<String>,
    /// For `ingest`: events a second the source takes on average (bursts of ten seconds'
    /// worth); more are answered 429 with `Retry-After`.
    pub max_events_per_second: Option<u32>,
    /// For `ingest`: decompressed body bytes a second, as `max_events_per_second`.
    pub max_bytes_per_second: Option<u64>,
    /// For `ingest`: an event dated further back than this before its arrival counts at its
    /// arrival.
    pub max_event_age: Option<String>,
    /// `json` (default) or `text`.
    pub format: Option<String>,
    /// For `text`: a regex whose named captures become the line's fields.
    pub pattern: Option<String>,
    /// A field whose string holds the JSON document to read (journald's `MESSAGE`).
    pub json_in: Option<String>,
    /// The field holding the event time; the arrival time when absent.
    pub timestamp: Option<String>,
    /// `auto` (default), `rfc3339`, `unix_s`, `unix_ms`, `unix_us` or `unix_ns`.
    pub timestamp_format: Option<String>,
    /// Longer lines are counted and skipped.
    pub max_line_bytes: Option<usize>,
    /// Error types stored for this source; the rest count as one `other` type.
    pub max_error_types: Option<usize>,
    /// Series made from the lines (`[[logs.metric]]`).
    pub metric: Option<Vec<RawLogMetric>>,
    /// Error types kept from the lines (`[[logs.errors]]`).
    pub errors: Option<Vec<RawLogErrors>>,
    /// Sessions of the events (`[logs.sessions]`).
    pub sessions: Option<RawSessions>,
}

/// `[logs.sessions]`: events grouped into sessions by a session id field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    /// The metric name of the session count, and the prefix of the other series.
    pub name: String,
    /// The field holding the session id; `properties.$session_id` for `ingest` sources.
    pub id: Option<String>,
    /// A session ends after this long without an event of it.
    pub idle: Option<String>,
    /// A session is cut at this length (a new one starts with its next event).
    pub max_length: Option<String>,
    /// Sessions followed at once; beyond it the least recently active ends early.
    pub max_open: Option<usize>,
    /// Events of a kind counted per session (`[[logs.sessions.count]]`).
    pub count: Option<Vec<RawSessionCount>>,
}

/// `[[logs.sessions.count]]`: the events of a session that match, counted per session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessionCount {
    /// The series is `SESSIONS_NAME_NAME` (`app_sessions_refreshes`).
    pub name: String,
    #[serde(rename = "match")]
    pub equals: Option<BTreeMap<String, RawMatchValue>>,
    pub match_regex: Option<BTreeMap<String, String>>,
}

/// A value a field is compared with: strings, numbers and booleans compare as text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMatchValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// `[[logs.metric]]`: a series made from the lines that match.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogMetric {
    /// The metric name.
    pub name: String,
    /// `counter`, `distribution` or `gauge`.
    pub kind: String,
    /// Field path → value: every one must be equal.
    #[serde(rename = "match")]
    pub equals: Option<BTreeMap<String, RawMatchValue>>,
    /// Field path → regex: every one must match (unanchored).
    pub match_regex: Option<BTreeMap<String, String>>,
    /// The numeric field observed (distribution, gauge) or added (counter).
    pub value: Option<String>,
    /// Label name → field path.
    pub labels: Option<BTreeMap<String, String>>,
    /// The most label sets kept; later ones go to one overflow series.
    pub max_series: Option<usize>,
}

/// `[[logs.errors]]`: lines whose message is kept as an error fingerprint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogErrors {
    /// Field path → value: every one must be equal.
    #[serde(rename = "match")]
    pub equals: Option<BTreeMap<String, RawMatchValue>>,
    /// Field path → regex: every one must match (unanchored).
    pub match_regex: Option<BTreeMap<String, String>>,
    /// The field holding the error message.
    pub message: String,
}

/// `[[logs]]`: lines read from files or a command and turned into series.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSource {
    pub name: String,
    pub input: LogInput,
    pub parse: LineParse,
    /// A field whose string value is the JSON document to read (journald's `MESSAGE`).
    pub json_in: Option<FieldPath>,
    /// Where the event time comes from; the arrival time when `None`.
    pub timestamp: Option<(FieldPath, TimeFormat)>,
    pub max_line_bytes: usize,
    /// Error types stored for this source; the rest count as one `other` type.
    pub max_error_types: usize,
    pub metrics: Vec<LogMetric>,
    pub errors: Vec<LogErrors>,
    pub sessions: Option<Sessions>,
}

/// `[logs.sessions]`, validated: what a session is and what is recorded when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Sessions {
    /// The count of ended sessions; `NAME_duration_seconds`, `NAME_events` and
    /// `NAME_COUNT` are distributions with one observation per session.
    pub name: String,
    pub id: FieldPath,
    pub idle: Duration,
    pub max_length: Duration,
    pub max_open: usize,
    pub counts: Vec<SessionCount>,
}

/// Events of a kind counted per session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCount {
    pub name: String,
    pub matches: Vec<FieldMatch>,
}

impl Sessions {
    /// The series names a session's end writes: the count, its duration, its events, and
    /// each `count`.
    pub fn series_names(&self) -> Vec<String> {
        let mut names = vec![
            self.name.clone(),
            format!("{}_duration_seconds", self.name),
            format!("{}_events", self.name),
        ];
        names.extend(
            self.counts
                .iter()
                .map(|c| format!("{}_{}", self.name, c.name)),
        );
        names
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogInput {
    Files {
        include: Vec<String>,
        exclude: Vec<String>,
        start_at: StartAt,
        poll_interval: Duration,
        /// Whether a matched path that is a symbolic link is read.
        follow_symlinks: bool,
    },
    Command {
        argv: Vec<String>,
    },
    /// Events posted to the PostHog-compatible capture endpoints with this project token.
    Posthog {
        token: Secret,
        limits: IngestLimits,
    },
}

/// What one ingest source takes from its (public) clients.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestLimits {
    /// Events a second on average; a client may burst ten seconds' worth.
    pub events_per_second: u32,
    /// Decompressed body bytes a second on average, bursts as for events.
    pub bytes_per_second: u64,
    /// An event dated further back than this before its arrival counts at its arrival.
    pub max_event_age: Duration,
}

impl Default for IngestLimits {
    fn default() -> IngestLimits {
        IngestLimits {
            events_per_second: INGEST_EVENTS_PER_SECOND,
            bytes_per_second: INGEST_BYTES_PER_SECOND,
            max_event_age: ingest_max_event_age(),
        }
    }
}

keywords! {
    /// Where a file is first read when its source has no checkpoint yet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum StartAt {
        Beginning = "beginning",
        End = "end",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum LineParse {
    Json,
    /// Named captures of the regex become the fields.
    Text(Pattern),
}

keywords! {
    /// How a line's timestamp field is read.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TimeFormat {
        /// RFC 3339 text or a number of seconds, milliseconds, microseconds or nanoseconds
        /// since 1970, told apart by magnitude.
        Auto = "auto",
        Rfc3339 = "rfc3339",
        UnixS = "unix_s",
        UnixMs = "unix_ms",
        UnixUs = "unix_us",
        UnixNs = "unix_ns",
    }
}

/// A field by its path of keys (`a.b.c`); a numeric key also indexes an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(pub Vec<String>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// One condition on a line's field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldMatch {
    Equals(FieldPath, String),
    /// A number in the TOML: equal to the field read as a number (`1.0` matches `1`).
    EqualsNumber(FieldPath, f64),
    Regex(FieldPath, Pattern),
}

keywords! {
    /// What a `[[logs.metric]]` records.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum LogMetricKind {
        /// Counts matching lines (or adds `value`); stored as events, so windows count
        /// exactly.
        Counter = "counter",
        /// One observation of `value` per matching line.
        Distribution = "distribution",
        /// The newest `value`.
        Gauge = "gauge",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogMetric {
    pub name: String,
    pub kind: LogMetricKind,
    pub matches: Vec<FieldMatch>,
    pub value: Option<FieldPath>,
    /// (label name, field).
    pub labels: Vec<(String, FieldPath)>,
    pub max_series: usize,
    /// Labels (places in `labels`) whose distinct values are sketched per hour, for the
    /// reports that count them: set from `[[reports.usage]]`, not written by the operator.
    pub sketch: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogErrors {
    pub matches: Vec<FieldMatch>,
    pub message: FieldPath,
}

/// An ingest source's rate limits and event age, checked.
fn ingest_limits(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    raw: (Option<u32>, Option<u64>, Option<&String>),
) -> IngestLimits {
    let (events, bytes, age) = raw;
    let mut limits = IngestLimits::default();
    if let Some(n) = events {
        if n == 0 {
            problems.push(
                Some(site.span_of("max_events_per_second")),
                site.field("max_events_per_second"),
                "must be at least 1",
            );
        } else {
            limits.events_per_second = n;
        }
    }
    if let Some(n) = bytes {
        if !(1024..=1 << 30).contains(&n) {
            problems.push(
                Some(site.span_of("max_bytes_per_second")),
                site.field("max_bytes_per_second"),
                "must be between 1024 and 1073741824",
            );
        } else {
            limits.bytes_per_second = n;
        }
    }
    limits.max_event_age = duration_field(
        problems,
        site,
        "max_event_age",
        age,
        ingest_max_event_age(),
        Duration::from_secs(1),
    );
    limits
}

fn log_source(
    problems: &mut Problems<'_>,
    raw: RawLog,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<LogSource> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let has = |key: &str| site.table.is_some_and(|t| t.get(key).is_some());
    if raw.ingest.is_none() {
        for key in [
            "token",
            "token_file",
            "max_events_per_second",
            "max_bytes_per_second",
            "max_event_age",
        ] {
            if has(key) {
                problems.push(
                    Some(site.key_span(key)),
                    site.field(key),
                    "applies to `ingest` sources only",
                );
            }
        }
    }
    let input = match (raw.files, raw.command, raw.ingest) {
        (None, None, Some(kind)) => {
            // An unknown protocol is a problem; the rest is checked as for PostHog.
            let protocol = IngestProtocol::parse(&kind).unwrap_or_else(|| {
                problems.push(
                    Some(site.span_of("ingest")),
                    site.field("ingest"),
                    format!("`{kind}` is not an ingest protocol; use `posthog`"),
                );
                IngestProtocol::Posthog
            });
            for key in [
                "exclude",
                "start_at",
                "poll_interval",
                "follow_symlinks",
                "format",
                "pattern",
                "json_in",
                "timestamp",
                "timestamp_format",
            ] {
                if has(key) {
                    problems.push(
                        Some(site.key_span(key)),
                        site.field(key),
                        "does not apply to `ingest`: events are JSON and carry their own time",
                    );
                }
            }
            let token = secret_field(
                problems,
                site,
                "token",
                raw.token.as_deref(),
                raw.token_file.as_deref(),
                base_dir,
            )?;
            if token.expose().trim().is_empty() {
                problems.push(
                    Some(site.span_of("token")),
                    site.field("token"),
                    "the project token is empty",
                );
            }
            let limits = ingest_limits(
                problems,
                site,
                (
                    raw.max_events_per_second,
                    raw.max_bytes_per_second,
                    raw.max_event_age.as_ref(),
                ),
            );
            match protocol {
                IngestProtocol::Posthog => LogInput::Posthog { token, limits },
            }
        }
        (Some(include), None, None) => {
            for (key, globs) in [
                ("files", &include),
                ("exclude", raw.exclude.as_ref().unwrap_or(&Vec::new())),
            ] {
                for (i, g) in globs.iter().enumerate() {
                    if let Err(e) = glob::Pattern::new(g) {
                        problems.push(
                            Some(site.span_of(key)),
                            site.field(&format!("{key}[{i}]")),
                            format!("`{g}` is not a valid glob pattern: {e}"),
                        );
                    } else if !Path::new(g).is_absolute() {
                        problems.push(
                            Some(site.span_of(key)),
                            site.field(&format!("{key}[{i}]")),
                            format!("`{g}` must be an absolute path"),
                        );
                    }
                }
            }
            if include.is_empty() {
                problems.push(
                    Some(site.span_of("files")),
                    site.field("files"),
                    "needs at least one glob pattern",
                );
            }
            let start_at = match raw.start_at.as_deref() {
                None => StartAt::End,
                Some(text) => StartAt::parse(text).unwrap_or_else(|| {
                    problems.push(
                        Some(site.span_of("start_at")),
                        site.field("start_at"),
                        format!("`{text}` is not a start position; use `end` or `beginning`"),
                    );
                    StartAt::End
                }),
            };
            let poll_interval = duration_field(
                problems,
                site,
                "poll_interval",
                raw.poll_interval.as_ref(),
                log_poll_interval(),
                Duration::from_millis(10),
            );
            LogInput::Files {
                include,
                exclude: raw.exclude.unwrap_or_default(),
                start_at,
                poll_interval,
                follow_symlinks: raw.follow_symlinks.unwrap_or(false),
            }
        }
        (None, Some(argv), None) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                problems.push(
                    Some(site.span_of("command")),
                    site.field("command"),
                    "needs a program, e.g. [\"journalctl\", \"-f\", \"-o\", \"json\"]",
                );
            }
            for key in ["exclude", "start_at", "poll_interval", "follow_symlinks"] {
                if site.table.is_some_and(|t| t.get(key).is_some()) {
                    problems.push(
                        Some(site.key_span(key)),
                        site.field(key),
                        "applies to `files` only",
                    );
                }
            }
            LogInput::Command { argv }
        }
        (None, None, None) => {
            problems.push(
                Some(site.span.clone()),
                site.field("files"),
                "missing: give `files` (glob patterns), `command` (a program and its arguments) or `ingest = \"posthog\"`",
            );
            return None;
        }
        (files, command, _) => {
            let key = if files.is_some() && command.is_some() {
                "command"
            } else {
                "ingest"
            };
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                "give one of `files`, `command` or `ingest`",
            );
            return None;
        }
    };
    let format = match raw.format.as_deref() {
        None => Some(LineFormat::Json),
        Some(text) => LineFormat::parse(text),
    };
    let parse = match (format, raw.pattern) {
        (Some(LineFormat::Json), None) => LineParse::Json,
        (Some(LineFormat::Text), Some(p)) => match regex::Regex::new(&p) {
            Ok(r) if r.capture_names().flatten().next().is_some() => LineParse::Text(Pattern(r)),
            Ok(_) => {
                problems.push(
                    Some(site.span_of("pattern")),
                    site.field("pattern"),
                    "needs named captures, like `(?P<status>\\d+)`; they become the line's fields",
                );
                LineParse::Json
            }
            Err(e) => {
                problems.push(
                    Some(site.span_of("pattern")),
                    site.field("pattern"),
                    format!("not a valid regex: {e}"),
                );
                LineParse::Json
            }
        },
        (Some(LineFormat::Text), None) => {
            problems.push(
                Some(site.span_of("format")),
                site.field("pattern"),
                "missing: `format = \"text\"` needs a `pattern` with named captures",
            );
            LineParse::Json
        }
        (Some(LineFormat::Json), Some(_)) => {
            problems.push(
                Some(site.span_of("pattern")),
                site.field("pattern"),
                "applies to `format = \"text\"` only",
            );
            LineParse::Json
        }
        (None, _) => {
            problems.push(
                Some(site.span_of("format")),
                site.field("format"),
                format!(
                    "`{}` is not a line format; use `json` or `text`",
                    raw.format.unwrap_or_default()
                ),
            );
            LineParse::Json
        }
    };
    let json_in = raw
        .json_in
        .as_deref()
        .map(|f| field_path(problems, site, "json_in", f));
    let format = match raw.timestamp_format.as_deref() {
        None => TimeFormat::Auto,
        Some(text) => TimeFormat::parse(text).unwrap_or_else(|| {
            problems.push(
                Some(site.span_of("timestamp_format")),
                site.field("timestamp_format"),
                format!("`{text}` is not a time format; use auto, rfc3339, unix_s, unix_ms, unix_us or unix_ns"),
            );
            TimeFormat::Auto
        }),
    };
    let timestamp = raw
        .timestamp
        .as_deref()
        .map(|f| (field_path(problems, site, "timestamp", f), format));
    let max_line_bytes = raw.max_line_bytes.unwrap_or(LOG_MAX_LINE_BYTES);
    if !(64..=16 << 20).contains(&max_line_bytes) {
        problems.push(
            Some(site.span_of("max_line_bytes")),
            site.field("max_line_bytes"),
            "must be between 64 and 16777216",
        );
    }
    let max_error_types = raw
        .max_error_types
        .unwrap_or(crate::store::logs::MAX_ERROR_TYPES);
    if !(1..=100_000).contains(&max_error_types) {
        problems.push(
            Some(site.span_of("max_error_types")),
            site.field("max_error_types"),
            "must be between 1 and 100000",
        );
    }
    let mut metrics = Vec::new();
    let metric_sites = sub_sites(site, "metric");
    for (raw, msite) in raw
        .metric
        .unwrap_or_default()
        .into_iter()
        .zip(&metric_sites)
    {
        if let Some(m) = log_metric(problems, raw, msite)
            && !metrics.iter().any(|o: &LogMetric| {
                o.name == m.name
                    && o.labels == m.labels
                    && o.kind == m.kind
                    && o.matches == m.matches
            })
        {
            metrics.push(m);
        }
    }
    let mut errors = Vec::new();
    let error_sites = sub_sites(site, "errors");
    for (raw, esite) in raw.errors.unwrap_or_default().into_iter().zip(&error_sites) {
        let matches = field_matches(problems, esite, raw.equals, raw.match_regex);
        let message = field_path(problems, esite, "message", &raw.message);
        errors.push(LogErrors { matches, message });
    }
    let ingest = matches!(input, LogInput::Posthog { .. });
    let sessions = raw
        .sessions
        .and_then(|r| sessions(problems, r, &sub_site(site, "sessions"), ingest));
    if metrics.is_empty()
        && errors.is_empty()
        && sessions.is_none()
        && problems.list.len() == before
    {
        problems.push(
            Some(site.span.clone()),
            site.field("metric"),
            "a log source needs at least one `[[logs.metric]]`, `[[logs.errors]]` or `[logs.sessions]`",
        );
    }
    if problems.list.len() > before {
        return None;
    }
    Some(LogSource {
        name: raw.name,
        input,
        parse,
        json_in,
        timestamp,
        max_line_bytes,
        max_error_types,
        metrics,
        errors,
        sessions,
    })
}

/// A nested table's site (`logs[0].sessions`).
fn sub_site<'a, 'i>(site: &Site<'a, 'i>, key: &str) -> Site<'a, 'i> {
    let value = site.table.and_then(|t| t.get(key));
    Site {
        path: site.field(key),
        span: value.map(|v| v.span()).unwrap_or_else(|| site.span.clone()),
        table: value.and_then(|v| v.get_ref().as_table()),
    }
}

/// A `name` that becomes a metric name.
fn name_field(problems: &mut Problems<'_>, site: &Site<'_, '_>, name: &str) {
    if !crate::series::valid_metric_name(name) {
        problems.push(
            Some(site.span_of("name")),
            site.field("name"),
            format!("`{name}` is not a valid metric name; use letters, digits, `_` and `:`"),
        );
    }
}

/// The most sessions a source may follow at once.
const MAX_OPEN_SESSIONS: usize = 1_000_000;

/// `[logs.sessions]`, validated.
fn sessions(
    problems: &mut Problems<'_>,
    raw: RawSessions,
    site: &Site<'_, '_>,
    ingest: bool,
) -> Option<Sessions> {
    let before = problems.list.len();
    name_field(problems, site, &raw.name);
    let id = match (raw.id, ingest) {
        (Some(id), _) => field_path(problems, site, "id", &id),
        (None, true) => FieldPath(vec!["properties".into(), "$session_id".into()]),
        (None, false) => {
            problems.push(
                Some(site.span.clone()),
                site.field("id"),
                "missing: the field holding the session id, like `session_id`",
            );
            FieldPath(Vec::new())
        }
    };
    let minute = Duration::from_secs(60);
    let idle = duration_field(
        problems,
        site,
        "idle",
        raw.idle.as_ref(),
        30 * minute,
        Duration::from_secs(1),
    );
    let max_length = duration_field(
        problems,
        site,
        "max_length",
        raw.max_length.as_ref(),
        24 * 60 * minute,
        Duration::from_secs(1),
    );
    let max_open = raw.max_open.unwrap_or(10_000);
    if !(1..=MAX_OPEN_SESSIONS).contains(&max_open) {
        problems.push(
            Some(site.span_of("max_open")),
            site.field("max_open"),
            format!("must be between 1 and {MAX_OPEN_SESSIONS}"),
        );
    }
    let mut counts: Vec<SessionCount> = Vec::new();
    let count_sites = sub_sites(site, "count");
    for (raw, csite) in raw.count.unwrap_or_default().into_iter().zip(&count_sites) {
        if !crate::series::valid_metric_name(&raw.name) || raw.name.contains(':') {
            problems.push(
                Some(csite.span_of("name")),
                csite.field("name"),
                format!(
                    "`{}` is not a valid name; use letters, digits and `_`",
                    raw.name
                ),
            );
        } else if ["duration_seconds", "events"].contains(&raw.name.as_str())
            || counts.iter().any(|c| c.name == raw.name)
        {
            problems.push(
                Some(csite.span_of("name")),
                csite.field("name"),
                format!("`{}` is used already", raw.name),
            );
        }
        let matches = field_matches(problems, csite, raw.equals, raw.match_regex);
        if matches.is_empty() {
            problems.push(
                Some(csite.span.clone()),
                csite.field("match"),
                "missing: `match` or `match_regex`, the events to count",
            );
        }
        counts.push(SessionCount {
            name: raw.name,
            matches,
        });
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Sessions {
        name: raw.name,
        id,
        idle,
        max_length,
        max_open,
        counts,
    })
}

fn log_metric(
    problems: &mut Problems<'_>,
    raw: RawLogMetric,
    site: &Site<'_, '_>,
) -> Option<LogMetric> {
    let before = problems.list.len();
    name_field(problems, site, &raw.name);
    let kind = LogMetricKind::parse(&raw.kind).unwrap_or_else(|| {
        problems.push(
            Some(site.span_of("kind")),
            site.field("kind"),
            format!(
                "`{}` is not a metric kind; use counter, distribution or gauge",
                raw.kind
            ),
        );
        LogMetricKind::Counter
    });
    let matches = field_matches(problems, site, raw.equals, raw.match_regex);
    let value = raw
        .value
        .as_deref()
        .map(|v| field_path(problems, site, "value", v));
    if value.is_none() && kind != LogMetricKind::Counter {
        problems.push(
            Some(site.span.clone()),
            site.field("value"),
            "missing: a distribution or gauge needs `value`, the numeric field it records",
        );
    }
    let mut labels = Vec::new();
    for (name, field) in raw.labels.unwrap_or_default() {
        if !crate::series::valid_metric_name(&name) || name.contains(':') || name.starts_with("__")
        {
            problems.push(
                Some(site.span_of("labels")),
                site.field(&format!("labels.{name}")),
                format!("`{name}` is not a valid label name; use letters, digits and `_`"),
            );
        }
        labels.push((name, field_path(problems, site, "labels", &field)));
    }
    let max_series = raw.max_series.unwrap_or(LOG_MAX_SERIES);
    if !(1..=100_000).contains(&max_series) {
        problems.push(
            Some(site.span_of("max_series")),
            site.field("max_series"),
            "must be between 1 and 100000",
        );
    }
    if problems.list.len() > before {
        return None;
    }
    Some(LogMetric {
        name: raw.name,
        kind,
        matches,
        value,
        labels,
        max_series,
        sketch: Vec::new(),
    })
}

/// A dotted field path (`a.b.c`).
fn field_path(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    text: &str,
) -> FieldPath {
    let parts: Vec<String> = text.split('.').map(str::to_string).collect();
    if parts.iter().any(|p| p.is_empty()) {
        problems.push(
            Some(site.span_of(key)),
            site.field(key),
            format!("`{text}` is not a field path; write keys separated by dots, like `request.duration_ms`"),
        );
    }
    FieldPath(parts)
}

/// The `match` and `match_regex` tables of a log rule.
fn field_matches(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    equals: Option<BTreeMap<String, RawMatchValue>>,
    regexes: Option<BTreeMap<String, String>>,
) -> Vec<FieldMatch> {
    let mut out = Vec::new();
    for (field, value) in equals.unwrap_or_default() {
        let path = field_path(problems, site, "match", &field);
        out.push(match value {
            RawMatchValue::Text(t) => FieldMatch::Equals(path, t),
            RawMatchValue::Integer(i) => FieldMatch::EqualsNumber(path, i as f64),
            RawMatchValue::Float(f) => FieldMatch::EqualsNumber(path, f),
            RawMatchValue::Bool(b) => FieldMatch::Equals(path, b.to_string()),
        });
    }
    for (field, pattern) in regexes.unwrap_or_default() {
        let path = field_path(problems, site, "match_regex", &field);
        match regex::Regex::new(&pattern) {
            Ok(r) => out.push(FieldMatch::Regex(path, Pattern(r))),
            Err(e) => problems.push(
                Some(site.span_of("match_regex")),
                site.field(&format!("match_regex.{field}")),
                format!("not a valid regex: {e}"),
            ),
        }
    }
    out
}

/// Each ingest source has its own project token: the token says which source an event is for.
fn ingest_tokens(
    problems: &mut Problems<'_>,
    logs: &[LogSource],
    value: Option<&Spanned<DeValue<'_>>>,
) {
    // Where a source's token is written, by the source's name.
    let place = |name: &str| {
        let items = value.and_then(|v| v.get_ref().as_array());
        for (i, item) in items.into_iter().flat_map(|a| a.iter()).enumerate() {
            let Some(t) = item.get_ref().as_table() else {
                continue;
            };
            if t.get("name").and_then(|n| n.get_ref().as_str()) == Some(name) {
                let (key, span) = match (t.get("token"), t.get("token_file")) {
                    (Some(v), _) => ("token", v.span()),
                    (None, Some(v)) => ("token_file", v.span()),
                    (None, None) => ("token", item.span()),
                };
                return (Some(span), format!("logs[{i}].{key}"));
            }
        }
        (value.map(|v| v.span()), "logs".to_string())
    };
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for l in logs {
        if let LogInput::Posthog { token, .. } = &l.input {
            if let Some((_, other)) = seen.iter().find(|(t, _)| *t == token.expose()) {
                let (span, path) = place(&l.name);
                problems.push(
                    span,
                    path,
                    format!(
                        "the same project token as log source `{other}`; give each ingest source its own"
                    ),
                );
            }
            seen.push((token.expose(), &l.name));
        }
    }
}

/// One metric name is one kind, whichever log source or rule makes it: the store keeps a
/// series as either points or events.
fn log_metric_kinds(
    problems: &mut Problems<'_>,
    logs: &[LogSource],
    value: Option<&Spanned<DeValue<'_>>>,
) {
    let mut kinds: BTreeMap<&str, LogMetricKind> = BTreeMap::new();
    for (i, l) in logs.iter().enumerate() {
        for m in &l.metrics {
            let event = |k: LogMetricKind| k != LogMetricKind::Gauge;
            match kinds.get(m.name.as_str()) {
                Some(k) if event(*k) != event(m.kind) => problems.push(
                    value.map(|v| v.span()),
                    format!("logs[{i}].metric"),
                    format!(
                        "`{}` is both a gauge and a counter or distribution; give them different names",
                        m.name
                    ),
                ),
                _ => {
                    kinds.insert(&m.name, m.kind);
                }
            }
        }
    }
    // Session series are counters and distributions too.
    for (i, l) in logs.iter().enumerate() {
        let Some(s) = &l.sessions else { continue };
        for name in s.series_names() {
            if kinds.get(name.as_str()) == Some(&LogMetricKind::Gauge) {
                problems.push(
                    value.map(|v| v.span()),
                    format!("logs[{i}].sessions"),
                    format!(
                        "`{name}` is a session series and a gauge of `[[logs.metric]]`; give them different names"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{
        FieldMatch, FieldPath, LineParse, LogErrors, LogInput, LogMetric, LogMetricKind, LogSource,
        SessionCount, Sessions, StartAt, TimeFormat,
    };
    use crate::config::Secret;
    use crate::config::testing::{config, expect};

    const METRIC: &str = "[[logs.metric]]\nname = \"app_lines\"\nkind = \"counter\"\n";

    /// A file source with `extra` from line 4 and one counter.
    fn files(extra: &str) -> String {
        format!("[[logs]]\nname = \"app\"\nfiles = [\"/var/log/app.log\"]\n{extra}\n{METRIC}")
    }

    /// A PostHog source with `extra` from line 5 and one counter.
    fn ingest(extra: &str) -> String {
        format!(
            "[[logs]]\nname = \"ph\"\ningest = \"posthog\"\ntoken = \"phc_x\"\n{extra}\n{METRIC}"
        )
    }

    fn path(p: &str) -> FieldPath {
        FieldPath(p.split('.').map(str::to_string).collect())
    }

    #[test]
    fn sessions_as_written_with_their_defaults() {
        // An ingest source: the session id is PostHog's `$session_id` unless given.
        let c = config(
            "[[logs]]\nname = \"ph\"\ningest = \"posthog\"\ntoken = \"phc_x\"\n\n\
             [logs.sessions]\nname = \"app_sessions\"\n\n\
             [[logs.sessions.count]]\nname = \"refreshes\"\nmatch = { event = \"refresh\" }\n",
        );
        assert_eq!(
            c.logs[0].sessions,
            Some(Sessions {
                name: "app_sessions".into(),
                id: path("properties.$session_id"),
                idle: Duration::from_secs(1800),
                max_length: Duration::from_secs(86_400),
                max_open: 10_000,
                counts: vec![SessionCount {
                    name: "refreshes".into(),
                    matches: vec![FieldMatch::Equals(path("event"), "refresh".into())],
                }],
            })
        );
        assert_eq!(
            c.logs[0].sessions.as_ref().unwrap().series_names(),
            [
                "app_sessions",
                "app_sessions_duration_seconds",
                "app_sessions_events",
                "app_sessions_refreshes"
            ]
        );
        let c = config(&files(
            "[logs.sessions]\nname = \"s\"\nid = \"session\"\nidle = \"10m\"\nmax_length = \"2h\"\nmax_open = 5\n",
        ));
        let s = c.logs[0].sessions.as_ref().unwrap();
        assert_eq!(
            (&s.id, s.idle, s.max_length, s.max_open),
            (
                &path("session"),
                Duration::from_secs(600),
                Duration::from_secs(7200),
                5
            )
        );
    }

    #[test]
    fn problems_of_sessions() {
        expect(&[
            (
                &files("[logs.sessions]\nname = \"s\"\n"),
                "logs[0].sessions.id",
                4,
                "missing: the field holding the session id, like `session_id`",
            ),
            (
                &ingest("[logs.sessions]\nname = \"app sessions\"\n"),
                "logs[0].sessions.name",
                6,
                "`app sessions` is not a valid metric name",
            ),
            (
                &ingest("[logs.sessions]\nname = \"s\"\nmax_open = 0\n"),
                "logs[0].sessions.max_open",
                7,
                "must be between 1 and 1000000",
            ),
            (
                &ingest("[logs.sessions]\nname = \"s\"\nidle = \"soon\"\n"),
                "logs[0].sessions.idle",
                7,
                "",
            ),
            (
                &ingest(
                    "[logs.sessions]\nname = \"s\"\n[[logs.sessions.count]]\nname = \"events\"\nmatch = { event = \"x\" }\n",
                ),
                "logs[0].sessions.count[0].name",
                8,
                "`events` is used already",
            ),
            (
                &ingest("[logs.sessions]\nname = \"s\"\n[[logs.sessions.count]]\nname = \"r\"\n"),
                "logs[0].sessions.count[0].match",
                7,
                "missing: `match` or `match_regex`, the events to count",
            ),
        ]);
    }

    #[test]
    fn sources_as_written_with_their_defaults() {
        let c = config(&format!(
            r#"{}
[[logs]]
name = "journal"
command = ["journalctl", "-f", "-o", "json"]
json_in = "MESSAGE"
timestamp = "ts"
timestamp_format = "unix_ms"
format = "json"

[[logs.metric]]
name = "req_ms"
kind = "distribution"
match = {{ "req.method" = "GET", status = 200, ok = true }}
match_regex = {{ path = "^/api" }}
value = "req.ms"
labels = {{ route = "req.route" }}
max_series = 50

[[logs.errors]]
match = {{ level = "error" }}
message = "msg"

[[logs]]
name = "nginx"
files = ["/var/log/nginx/*.log"]
exclude = ["/var/log/nginx/*.gz"]
start_at = "beginning"
poll_interval = "1s"
format = "text"
pattern = '(?P<status>\d+) (?P<ms>\d+)'
max_line_bytes = 4096

[[logs.metric]]
name = "nginx_ms"
kind = "gauge"
value = "ms"
"#,
            ingest("")
        ));
        let [ph, journal, nginx] = &c.logs[..] else {
            panic!("{:?}", c.logs);
        };
        assert_eq!(
            *ph,
            LogSource {
                name: "ph".into(),
                input: LogInput::Posthog {
                    token: Secret::literal("phc_x"),
                    limits: super::IngestLimits::default(),
                },
                parse: LineParse::Json,
                json_in: None,
                timestamp: None,
                max_line_bytes: 64 * 1024,
                max_error_types: 1000,
                metrics: vec![LogMetric {
                    name: "app_lines".into(),
                    kind: LogMetricKind::Counter,
                    matches: Vec::new(),
                    value: None,
                    labels: Vec::new(),
                    max_series: 100,
                    sketch: Vec::new(),
                }],
                errors: Vec::new(),
                sessions: None,
            }
        );
        assert_eq!(
            journal.input,
            LogInput::Command {
                argv: ["journalctl", "-f", "-o", "json"]
                    .map(String::from)
                    .to_vec()
            }
        );
        assert_eq!(journal.json_in, Some(path("MESSAGE")));
        assert_eq!(journal.timestamp, Some((path("ts"), TimeFormat::UnixMs)));
        let m = &journal.metrics[0];
        assert_eq!(m.kind, LogMetricKind::Distribution);
        assert_eq!(
            &m.matches[..3],
            &[
                FieldMatch::Equals(path("ok"), "true".into()),
                FieldMatch::Equals(path("req.method"), "GET".into()),
                FieldMatch::EqualsNumber(path("status"), 200.0),
            ]
        );
        assert!(
            matches!(&m.matches[3], FieldMatch::Regex(p, r) if *p == path("path") && r.0.as_str() == "^/api")
        );
        assert_eq!((m.value.clone(), m.max_series), (Some(path("req.ms")), 50));
        assert_eq!(m.labels, [("route".to_string(), path("req.route"))]);
        assert_eq!(
            journal.errors,
            [LogErrors {
                matches: vec![FieldMatch::Equals(path("level"), "error".into())],
                message: path("msg"),
            }]
        );
        assert_eq!(
            nginx.input,
            LogInput::Files {
                include: vec!["/var/log/nginx/*.log".into()],
                exclude: vec!["/var/log/nginx/*.gz".into()],
                start_at: StartAt::Beginning,
                poll_interval: Duration::from_secs(1),
                follow_symlinks: false,
            }
        );
        assert!(
            matches!(&nginx.parse, LineParse::Text(p) if p.0.as_str() == r"(?P<status>\d+) (?P<ms>\d+)")
        );
        assert_eq!(nginx.max_line_bytes, 4096);
        let c = config(&files(""));
        assert_eq!(
            c.logs[0].input,
            LogInput::Files {
                include: vec!["/var/log/app.log".into()],
                exclude: Vec::new(),
                start_at: StartAt::End,
                poll_interval: Duration::from_millis(250),
                follow_symlinks: false,
            }
        );
    }

    #[test]
    fn problems_of_the_input() {
        expect(&[
            (
                &files("token = \"phc_x\""),
                "logs[0].token",
                4,
                "applies to `ingest` sources only",
            ),
            (
                &files("token_file = \"token\""),
                "logs[0].token_file",
                4,
                "applies to `ingest` sources only",
            ),
            (
                &ingest("").replace("\"posthog\"", "\"segment\""),
                "logs[0].ingest",
                3,
                "`segment` is not an ingest protocol; use `posthog`",
            ),
            (
                &ingest("start_at = \"end\""),
                "logs[0].start_at",
                5,
                "does not apply to `ingest`: events are JSON and carry their own time",
            ),
            (
                &ingest("timestamp = \"ts\""),
                "logs[0].timestamp",
                5,
                "does not apply to `ingest`: events are JSON and carry their own time",
            ),
            (
                &ingest("").replace("\"phc_x\"", "\" \""),
                "logs[0].token",
                4,
                "the project token is empty",
            ),
            (
                "[[logs]]\nname = \"ph\"\ningest = \"posthog\"\n",
                "logs[0].token",
                1,
                "missing: set `token` (a value or `env:NAME`) or `token_file`",
            ),
            (
                &files("").replace("/var/log/app.log", "/var/log/[app.log"),
                "logs[0].files[0]",
                3,
                "`/var/log/[app.log` is not a valid glob pattern: ",
            ),
            (
                &files("exclude = [\"*.gz\"]"),
                "logs[0].exclude[0]",
                4,
                "`*.gz` must be an absolute path",
            ),
            (
                &files("").replace("[\"/var/log/app.log\"]", "[]"),
                "logs[0].files",
                3,
                "needs at least one glob pattern",
            ),
            (
                &files("start_at = \"middle\""),
                "logs[0].start_at",
                4,
                "`middle` is not a start position; use `end` or `beginning`",
            ),
            (
                &files("poll_interval = \"1ms\""),
                "logs[0].poll_interval",
                4,
                "must be at least 10ms",
            ),
            (
                &format!("[[logs]]\nname = \"j\"\ncommand = []\n\n{METRIC}"),
                "logs[0].command",
                3,
                "needs a program, e.g. [\"journalctl\", \"-f\", \"-o\", \"json\"]",
            ),
            (
                &format!(
                    "[[logs]]\nname = \"j\"\ncommand = [\"journalctl\"]\nstart_at = \"end\"\n\n{METRIC}"
                ),
                "logs[0].start_at",
                4,
                "applies to `files` only",
            ),
            (
                &format!("[[logs]]\nname = \"app\"\n\n{METRIC}"),
                "logs[0].files",
                1,
                "missing: give `files` (glob patterns), `command` (a program and its arguments) or `ingest = \"posthog\"`",
            ),
            (
                &files("command = [\"tail\"]"),
                "logs[0].command",
                4,
                "give one of `files`, `command` or `ingest`",
            ),
            (
                &ingest("command = [\"tail\"]"),
                "logs[0].ingest",
                3,
                "give one of `files`, `command` or `ingest`",
            ),
        ]);
    }

    #[test]
    fn problems_of_the_lines() {
        expect(&[
            (
                &files("format = \"text\"\npattern = '\\d+'"),
                "logs[0].pattern",
                5,
                "needs named captures, like `(?P<status>\\d+)`; they become the line's fields",
            ),
            (
                &files("format = \"text\"\npattern = '(?P<s>\\d+'"),
                "logs[0].pattern",
                5,
                "not a valid regex: regex parse error:",
            ),
            (
                &files("format = \"text\""),
                "logs[0].pattern",
                4,
                "missing: `format = \"text\"` needs a `pattern` with named captures",
            ),
            (
                &files("pattern = '(?P<s>\\d+)'"),
                "logs[0].pattern",
                4,
                "applies to `format = \"text\"` only",
            ),
            (
                &files("format = \"csv\""),
                "logs[0].format",
                4,
                "`csv` is not a line format; use `json` or `text`",
            ),
            (
                &files("timestamp = \"ts\"\ntimestamp_format = \"iso\""),
                "logs[0].timestamp_format",
                5,
                "`iso` is not a time format; use auto, rfc3339, unix_s, unix_ms, unix_us or unix_ns",
            ),
            (
                &files("json_in = \"MESSAGE.\""),
                "logs[0].json_in",
                4,
                "`MESSAGE.` is not a field path; write keys separated by dots, like `request.duration_ms`",
            ),
            (
                &files("max_line_bytes = 63"),
                "logs[0].max_line_bytes",
                4,
                "must be between 64 and 16777216",
            ),
            (
                "[[logs]]\nname = \"app\"\nfiles = [\"/var/log/app.log\"]\n",
                "logs[0].metric",
                1,
                "a log source needs at least one `[[logs.metric]]`, `[[logs.errors]]` or `[logs.sessions]`",
            ),
        ]);
    }

    #[test]
    fn problems_of_metrics_and_errors() {
        let source = "[[logs]]\nname = \"app\"\nfiles = [\"/var/log/app.log\"]\n\n";
        let metric = |m: &str| format!("{source}[[logs.metric]]\n{m}\n");
        expect(&[
            (
                &metric("name = \"app lines\"\nkind = \"counter\""),
                "logs[0].metric[0].name",
                6,
                "`app lines` is not a valid metric name; use letters, digits, `_` and `:`",
            ),
            (
                &metric("name = \"app_ms\"\nkind = \"histogram\""),
                "logs[0].metric[0].kind",
                7,
                "`histogram` is not a metric kind; use counter, distribution or gauge",
            ),
            (
                &metric("name = \"app_ms\"\nkind = \"gauge\""),
                "logs[0].metric[0].value",
                5,
                "missing: a distribution or gauge needs `value`, the numeric field it records",
            ),
            (
                &metric("name = \"app_ms\"\nkind = \"counter\"\nlabels = { __route = \"route\" }"),
                "logs[0].metric[0].labels.__route",
                8,
                "`__route` is not a valid label name; use letters, digits and `_`",
            ),
            (
                &metric(
                    "name = \"app_ms\"\nkind = \"counter\"\nlabels = { route = \"req..route\" }",
                ),
                "logs[0].metric[0].labels",
                8,
                "`req..route` is not a field path",
            ),
            (
                &metric("name = \"app_ms\"\nkind = \"counter\"\nmax_series = 0"),
                "logs[0].metric[0].max_series",
                8,
                "must be between 1 and 100000",
            ),
            (
                &metric("name = \"app_ms\"\nkind = \"counter\"\nmatch_regex = { path = \"(api\" }"),
                "logs[0].metric[0].match_regex.path",
                8,
                "not a valid regex: regex parse error:",
            ),
            (
                &metric(
                    "name = \"app_ms\"\nkind = \"counter\"\nmatch = { \".level\" = \"error\" }",
                ),
                "logs[0].metric[0].match",
                8,
                "`.level` is not a field path",
            ),
            (
                &format!("{source}[[logs.errors]]\nmessage = \"\"\n"),
                "logs[0].errors[0].message",
                6,
                "`` is not a field path",
            ),
        ]);
    }

    #[test]
    fn problems_across_sources() {
        expect(&[
            (
                &format!("{}{}", ingest(""), ingest("").replace("\"ph\"", "\"ph2\"")),
                "logs[1].token",
                12,
                "the same project token as log source `ph`; give each ingest source its own",
            ),
            // Named by the second source but placed at the first [[logs]]: the metrics are
            // compared once every source is validated, and the line is the array's.
            (
                &format!(
                    "{}[[logs]]\nname = \"b\"\ncommand = [\"x\"]\n[[logs.metric]]\nname = \"app_lines\"\nkind = \"gauge\"\nvalue = \"v\"\n",
                    files("")
                ),
                "logs[1].metric",
                1,
                "`app_lines` is both a gauge and a counter or distribution; give them different names",
            ),
        ]);
    }
}
