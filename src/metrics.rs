//! The daemon's own metrics, served at `/metrics` in the OpenMetrics text format (which
//! Prometheus scrapes): the latest probe results, alerts by state, notifications by channel
//! and result, rule evaluation time, samples written, the outbox backlog, the data file's
//! size, configuration reloads and task restarts.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub channel: String,
    /// `delivered`, `retried` or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    pub task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceReasonLabels {
    pub source: String,
    pub reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric; one instance per daemon, shared behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub probe_up: Family<TargetLabels, FloatGauge>,
    pub probe_duration_seconds: Family<TargetLabels, FloatGauge>,
    pub probe_http_status_code: Family<TargetLabels, FloatGauge>,
    pub probe_tls_cert_expiry_days: Family<TargetLabels, FloatGauge>,
    pub alerts: Family<StateLabels, Gauge>,
    pub notifications: Family<NotificationLabels, Counter>,
    pub rule_evaluation_seconds: Counter<f64, AtomicU64>,
    pub samples: Counter,
    pub outbox_pending: Gauge,
    pub store_size_bytes: Gauge,
    pub store_dropped: Family<ReasonLabels, Counter>,
    pub compactions: Counter,
    pub compaction_seconds: Counter<f64, AtomicU64>,
    pub rollup_buckets: Counter,
    pub reloads: Family<ResultLabels, Counter>,
    pub last_reload_success: FloatGauge,
    pub task_restarts: Family<TaskLabels, Counter>,
    pub log_lines: Family<SourceLabels, Counter>,
    pub log_lines_rejected: Family<SourceReasonLabels, Counter>,
    pub log_field_errors: Family<SourceReasonLabels, Counter>,
    pub log_series_overflow: Family<SourceLabels, Counter>,
    pub log_series_evicted: Family<SourceLabels, Counter>,
    pub log_sessions_evicted: Family<SourceLabels, Counter>,
    pub log_sessions_open: Family<SourceLabels, Gauge>,
    pub log_files: Family<SourceLabels, Gauge>,
    pub log_rotations: Family<SourceReasonLabels, Counter>,
    pub log_command_restarts: Family<SourceLabels, Counter>,
    pub ingest_requests: Family<ResultLabels, Counter>,
    pub ingest_duplicates: Family<SourceLabels, Counter>,
    pub connections_refused: Counter,
    pub store_commits: Counter,
    pub store_commit_seconds: Counter<f64, AtomicU64>,
    pub store_write_errors: Counter,
    pub store_writable: Gauge,
    pub store_unsaved_records: Gauge,
    pub store_records_lost: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            probe_up: Family::default(),
            probe_duration_seconds: Family::default(),
            probe_http_status_code: Family::default(),
            probe_tls_cert_expiry_days: Family::default(),
            alerts: Family::default(),
            notifications: Family::default(),
            rule_evaluation_seconds: Counter::default(),
            samples: Counter::default(),
            outbox_pending: Gauge::default(),
            store_size_bytes: Gauge::default(),
            store_dropped: Family::default(),
            compactions: Counter::default(),
            compaction_seconds: Counter::default(),
            rollup_buckets: Counter::default(),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            task_restarts: Family::default(),
            log_lines: Family::default(),
            log_lines_rejected: Family::default(),
            log_field_errors: Family::default(),
            log_series_overflow: Family::default(),
            log_series_evicted: Family::default(),
            log_sessions_evicted: Family::default(),
            log_sessions_open: Family::default(),
            log_files: Family::default(),
            log_rotations: Family::default(),
            log_command_restarts: Family::default(),
            ingest_requests: Family::default(),
            ingest_duplicates: Family::default(),
            connections_refused: Counter::default(),
            store_commits: Counter::default(),
            store_commit_seconds: Counter::default(),
            store_write_errors: Counter::default(),
            store_writable: Gauge::default(),
            store_unsaved_records: Gauge::default(),
            store_records_lost: Counter::default(),
        };
        // Metrics are handles onto shared values: the registry holds clones, the fields stay
        // usable for updates.
        let mut r = Registry::default();
        r.register(
            "sloguard_build",
            "The running sloguard's version",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        r.register(
            "probe_up",
            "1 when the target's last probe succeeded",
            m.probe_up.clone(),
        );
        r.register(
            "probe_duration_seconds",
            "How long the target's last probe took",
            m.probe_duration_seconds.clone(),
        );
        r.register(
            "probe_http_status_code",
            "The status code of the target's last answer",
            m.probe_http_status_code.clone(),
        );
        r.register(
            "probe_tls_cert_expiry_days",
            "Days until the target's certificate expires",
            m.probe_tls_cert_expiry_days.clone(),
        );
        r.register("sloguard_alerts", "Alerts by state", m.alerts.clone());
        r.register(
            "sloguard_notifications",
            "Delivery attempts by channel and result",
            m.notifications.clone(),
        );
        r.register(
            "sloguard_rule_evaluation_seconds",
            "Time spent evaluating rules",
            m.rule_evaluation_seconds.clone(),
        );
        r.register(
            "sloguard_samples",
            "Samples committed to the store",
            m.samples.clone(),
        );
        r.register(
            "sloguard_outbox_pending",
            "Notifications waiting in the outbox",
            m.outbox_pending.clone(),
        );
        r.register(
            "sloguard_store_samples_dropped",
            "Samples the store did not keep: out_of_order (not newer than the series' last point), invalid (NaN observation, or a series written as the other kind), corrupt, future, or unwritable (held back while the data file could not be written, the oldest dropped past 100000)",
            m.store_dropped.clone(),
        );
        r.register(
            "sloguard_store_write_errors",
            "Store operations that failed with an I/O error (a full disk); after one the data file is opened again",
            m.store_write_errors.clone(),
        );
        r.register(
            "sloguard_store_writable",
            "1 while the data file can be written, 0 while it cannot (see /healthz for the reason)",
            m.store_writable.clone(),
        );
        r.register(
            "sloguard_store_unsaved_records",
            "Alert states, notifications and history events kept in memory because the data file could not be written",
            m.store_unsaved_records.clone(),
        );
        r.register(
            "sloguard_store_records_lost",
            "Notifications and history events dropped because the data file could not be written and the memory bound was reached",
            m.store_records_lost.clone(),
        );
        r.register(
            "sloguard_ingest_duplicate_events",
            "Events skipped because an event with the same uuid was committed lately (an SDK's retry)",
            m.ingest_duplicates.clone(),
        );
        r.register(
            "sloguard_store_commits",
            "Transactions the pipeline committed (samples, log events, alert changes, notifications)",
            m.store_commits.clone(),
        );
        r.register(
            "sloguard_store_commit_seconds",
            "Time spent committing, fsync included",
            m.store_commit_seconds.clone(),
        );
        r.register(
            "sloguard_ingest_requests",
            "Requests to the PostHog-compatible capture endpoints by result: accepted, bad_request, unauthorized, too_large, rate_limited, timeout, unavailable",
            m.ingest_requests.clone(),
        );
        r.register(
            "sloguard_http_connections_refused",
            "Connections closed on arrival because [server].max_connections were open",
            m.connections_refused.clone(),
        );
        r.register(
            "sloguard_store_compactions",
            "Background compaction passes",
            m.compactions.clone(),
        );
        r.register(
            "sloguard_store_compaction_seconds",
            "Time spent in background compaction",
            m.compaction_seconds.clone(),
        );
        r.register(
            "sloguard_store_rollup_buckets",
            "Rollup buckets made by compaction",
            m.rollup_buckets.clone(),
        );
        r.register(
            "sloguard_store_size_bytes",
            "Size of the data file",
            m.store_size_bytes.clone(),
        );
        r.register(
            "sloguard_config_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        r.register(
            "sloguard_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully",
            m.last_reload_success.clone(),
        );
        r.register(
            "sloguard_task_restarts",
            "Supervised tasks restarted after a failure",
            m.task_restarts.clone(),
        );
        r.register(
            "sloguard_log_lines",
            "Log lines read, by source (rejected ones included)",
            m.log_lines.clone(),
        );
        r.register(
            "sloguard_log_lines_rejected",
            "Log lines skipped: too_long, not_utf8, not_json or no_pattern_match",
            m.log_lines_rejected.clone(),
        );
        r.register(
            "sloguard_log_field_errors",
            "Log lines with a bad_timestamp (the arrival time was used), a bad_value (that metric skipped the line), or an error type past the 1000 distinct ones of one flush (error_types_dropped)",
            m.log_field_errors.clone(),
        );
        r.register(
            "sloguard_log_series_overflow",
            "Log lines whose label set went to a metric's overflow series",
            m.log_series_overflow.clone(),
        );
        r.register(
            "sloguard_log_series_evicted",
            "Label sets of log metrics forgotten, least recently seen first, to make room for new ones in a full metric (max_series)",
            m.log_series_evicted.clone(),
        );
        r.register(
            "sloguard_log_sessions_evicted",
            "Sessions ended early, least recently active first, because a source followed max_open at once",
            m.log_sessions_evicted.clone(),
        );
        r.register(
            "sloguard_log_sessions_open",
            "Sessions a log source follows now",
            m.log_sessions_open.clone(),
        );
        r.register(
            "sloguard_log_files",
            "Files a log source follows",
            m.log_files.clone(),
        );
        r.register(
            "sloguard_log_rotations",
            "Followed files rotated (renamed or gone) or truncated",
            m.log_rotations.clone(),
        );
        r.register(
            "sloguard_log_command_restarts",
            "Times a log source's command was started again",
            m.log_command_restarts.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// Records a probe sample, if it is one.
    pub fn observe(&self, sample: &crate::series::Sample) {
        let Some(target) = sample.series.labels.get("target") else {
            return;
        };
        let family = match sample.series.name.as_str() {
            "probe_up" => &self.probe_up,
            "probe_duration_seconds" => &self.probe_duration_seconds,
            "probe_http_status_code" => &self.probe_http_status_code,
            "probe_tls_cert_expiry_days" => &self.probe_tls_cert_expiry_days,
            _ => return,
        };
        family
            .get_or_create(&TargetLabels {
                target: target.clone(),
            })
            .set(sample.value);
    }

    /// Forgets every probe series (after a reload that removed targets); the next probes
    /// fill them again.
    pub fn forget_probes(&self) {
        for family in [
            &self.probe_up,
            &self.probe_duration_seconds,
            &self.probe_http_status_code,
            &self.probe_tls_cert_expiry_days,
        ] {
            family.clear();
        }
    }

    pub fn notification(&self, channel: &str, result: &str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                channel: channel.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    pub fn set_alerts(&self, pending: i64, firing: i64) {
        for (state, n) in [("pending", pending), ("firing", firing)] {
            self.alerts
                .get_or_create(&StateLabels {
                    state: state.to_string(),
                })
                .set(n);
        }
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Why a line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    TooLong,
    NotUtf8,
    NotJson,
    NoPatternMatch,
}

impl Reject {
    pub const ALL: [Reject; 4] = [
        Reject::TooLong,
        Reject::NotUtf8,
        Reject::NotJson,
        Reject::NoPatternMatch,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TooLong => "too_long",
            Reject::NotUtf8 => "not_utf8",
            Reject::NotJson => "not_json",
            Reject::NoPatternMatch => "no_pattern_match",
        }
    }
}

/// LogCounts since the last flush.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogCounts {
    pub lines: u64,
    pub rejected: [u64; 4],
    /// Timestamps that could not be read (the arrival time was used).
    pub bad_timestamps: u64,
    /// Values that were missing or not numbers (that metric skipped the line).
    pub bad_values: u64,
    /// Lines whose label set went to a metric's overflow series.
    pub overflowed: u64,
    /// Label sets forgotten to make room for a new one in a full metric.
    pub evicted: u64,
    /// Occurrences of error types not kept because a flush had too many distinct ones.
    pub errors_dropped: u64,
    /// Sessions ended early because the source followed `max_open` at once.
    pub sessions_evicted: u64,
    /// Sessions open at the flush, for a source with `[logs.sessions]`.
    pub sessions_open: Option<u64>,
}

impl LogCounts {
    pub fn reject(&mut self, why: Reject) {
        self.rejected[why as usize] += 1;
    }
    pub fn rejected(&self, why: Reject) -> u64 {
        self.rejected[why as usize]
    }
}

impl Metrics {
    /// Adds a log source's counts since its last flush.
    pub fn log_counts(&self, source: &str, c: &LogCounts) {
        let src = SourceLabels {
            source: source.to_string(),
        };
        self.log_lines.get_or_create(&src).inc_by(c.lines);
        for why in Reject::ALL {
            let n = c.rejected(why);
            if n > 0 {
                self.log_lines_rejected
                    .get_or_create(&SourceReasonLabels {
                        source: source.to_string(),
                        reason: why.as_str().to_string(),
                    })
                    .inc_by(n);
            }
        }
        for (reason, n) in [
            ("bad_timestamp", c.bad_timestamps),
            ("bad_value", c.bad_values),
            ("error_types_dropped", c.errors_dropped),
        ] {
            if n > 0 {
                self.log_field_errors
                    .get_or_create(&SourceReasonLabels {
                        source: source.to_string(),
                        reason: reason.to_string(),
                    })
                    .inc_by(n);
            }
        }
        if c.overflowed > 0 {
            self.log_series_overflow
                .get_or_create(&src)
                .inc_by(c.overflowed);
        }
        if c.evicted > 0 {
            self.log_series_evicted
                .get_or_create(&src)
                .inc_by(c.evicted);
        }
        if c.sessions_evicted > 0 {
            self.log_sessions_evicted
                .get_or_create(&src)
                .inc_by(c.sessions_evicted);
        }
        if let Some(open) = c.sessions_open {
            self.log_sessions_open
                .get_or_create(&src)
                .set(open.min(i64::MAX as u64) as i64);
        }
    }
}
