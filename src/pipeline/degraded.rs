//! While the store cannot write its file: the data of the commits that failed, kept (bounded)
//! and written first by the next commit, and the built-in alert that tells the critical route.
//! The records of those commits (alert states, notifications, history) are the store's to keep
//! meanwhile; see `store::unsaved`.

use crate::metrics::LogCounts;
use crate::notify::{Notification, Status};
use crate::series::{Sample, SeriesKey};
use crate::store::bucket::Bucket;
use crate::store::distinct::DistinctSeen;
use crate::store::logs::{CheckpointKey, ErrorSeen};
use crate::vocab::Severity;

/// The most samples kept while the file cannot be written; beyond it the oldest are dropped
/// (and counted). Probe results cannot wait: rules must go on seeing them.
pub(super) const MAX_KEPT_SAMPLES: usize = 100_000;

/// The most log items (interval summaries, error types, sketches, positions) kept; at this
/// many the pipeline stops taking log batches, so log sources wait (and read on later, from
/// where they are) and capture requests are answered 503 (their clients send them again).
pub(super) const MAX_KEPT_LOG_ITEMS: usize = 50_000;

/// The built-in alert's rule name; its fingerprint carries the data file's path.
pub const STORE_ALERT: &str = "sloguard_data_file_unwritable";

/// A commit's data, flattened from its samples and log batches.
#[derive(Default)]
pub(super) struct Flat {
    pub samples: Vec<Sample>,
    pub events: Vec<(SeriesKey, Bucket)>,
    pub errors: Vec<ErrorSeen>,
    pub distinct: Vec<DistinctSeen>,
    pub checkpoints: Vec<(CheckpointKey, Option<Vec<u8>>)>,
    /// Lines per log source, counted in `/metrics` once committed.
    pub counted: Vec<(String, LogCounts)>,
}

/// Where a [`Flat`]'s data ended at one moment, to take back what was appended after it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    samples: usize,
    events: usize,
    errors: usize,
    distinct: usize,
    checkpoints: usize,
    counted: usize,
}

impl Flat {
    /// Moves a log batch's data here.
    pub fn take_batch(&mut self, b: &mut crate::source::log::LogBatch) {
        self.counted
            .push((b.source.clone(), std::mem::take(&mut b.data.counts)));
        self.checkpoints.extend(b.checkpoint_records());
        self.samples.append(&mut b.data.gauges);
        self.events.append(&mut b.data.events);
        self.errors.append(&mut b.data.errors);
        self.distinct.append(&mut b.data.distinct);
    }

    pub fn mark(&self) -> Mark {
        Mark {
            samples: self.samples.len(),
            events: self.events.len(),
            errors: self.errors.len(),
            distinct: self.distinct.len(),
            checkpoints: self.checkpoints.len(),
            counted: self.counted.len(),
        }
    }

    /// Drops everything appended after `mark` was taken.
    pub fn truncate(&mut self, mark: Mark) {
        self.samples.truncate(mark.samples);
        self.events.truncate(mark.events);
        self.errors.truncate(mark.errors);
        self.distinct.truncate(mark.distinct);
        self.checkpoints.truncate(mark.checkpoints);
        self.counted.truncate(mark.counted);
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty() && self.log_items() == 0 && self.counted.is_empty()
    }

    pub fn log_items(&self) -> usize {
        self.events.len() + self.errors.len() + self.distinct.len() + self.checkpoints.len()
    }

    /// Appends `later`'s data after this one's (positions and points keep their order).
    pub fn append(&mut self, mut later: Flat) {
        self.samples.append(&mut later.samples);
        self.events.append(&mut later.events);
        self.errors.append(&mut later.errors);
        self.distinct.append(&mut later.distinct);
        self.checkpoints.append(&mut later.checkpoints);
        self.counted.append(&mut later.counted);
    }
}

/// What the pipeline holds while the file cannot be written.
#[derive(Default)]
pub struct Degraded {
    pub(super) kept: Flat,
    /// The built-in alert while it fires: what it said and where it went.
    pub(super) alert: Option<(Notification, Vec<String>)>,
}

impl Degraded {
    /// Keeps the data of a commit that failed; drops the oldest samples beyond the bound and
    /// answers how many.
    pub(super) fn keep(&mut self, flat: Flat) -> u64 {
        let mut all = std::mem::take(&mut self.kept);
        all.append(flat);
        let over = all.samples.len().saturating_sub(MAX_KEPT_SAMPLES);
        all.samples.drain(..over);
        self.kept = all;
        over as u64
    }

    /// Whether log batches can be taken: their data would be kept too.
    pub(super) fn takes_logs(&self) -> bool {
        self.kept.log_items() < MAX_KEPT_LOG_ITEMS
    }
}

/// The built-in alert: sloguard cannot write its data file.
pub(super) fn store_alert(path: &str, reason: &str, since_ms: i64, now: i64) -> Notification {
    let labels = crate::series::Labels::from([("path".to_string(), path.to_string())]);
    Notification {
        status: Status::Firing,
        rule: STORE_ALERT.into(),
        fingerprint: crate::series::SeriesKey {
            name: STORE_ALERT.into(),
            labels: labels.clone(),
        }
        .to_string(),
        severity: Severity::Critical,
        summary: format!("sloguard cannot write its data file: {reason}"),
        labels,
        value_text: format!(
            "Data file {path} not writable since {}; alerts and notifications are kept in memory, new data is held back",
            crate::format::rfc3339(since_ms)
        ),
        reason: Some(reason.to_string()),
        note: None,
        started_at_ms: since_ms,
        fired_at_ms: now,
        ended_at_ms: None,
        runbook_url: None,
        dashboard_url: None,
        grouped: Vec::new(),
    }
}

/// What the built-in alert's firing or resolve writes: one outbox entry per channel, and its
/// history event.
pub(super) fn store_alert_plan(
    n: &Notification,
    channels: &[String],
    event: crate::history::Event,
    now: i64,
) -> super::Plan {
    super::Plan {
        outbox: channels
            .iter()
            .map(|c| crate::notify::outbox::Entry::new(c, n.clone(), now))
            .collect(),
        history: vec![event],
        ..super::Plan::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: i64) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", "api")]),
            ts_ms: t,
            value: 1.0,
            note: None,
        }
    }

    #[test]
    fn kept_samples_are_bounded_and_the_oldest_go() {
        let mut d = Degraded::default();
        let first = Flat {
            samples: (0..MAX_KEPT_SAMPLES as i64).map(sample).collect(),
            ..Flat::default()
        };
        assert_eq!(d.keep(first), 0);
        let more = Flat {
            samples: (0..10).map(|i| sample(1_000_000 + i)).collect(),
            ..Flat::default()
        };
        assert_eq!(d.keep(more), 10);
        assert_eq!(d.kept.samples.len(), MAX_KEPT_SAMPLES);
        assert_eq!(d.kept.samples[0].ts_ms, 10);
        assert_eq!(d.kept.samples.last().map(|s| s.ts_ms), Some(1_000_009));
        assert!(d.takes_logs());
    }

    /// Data appended after a mark (capture requests told to send again) is taken back whole;
    /// what came before it stays.
    #[test]
    fn truncating_at_a_mark_takes_back_only_what_came_after() {
        let mut flat = Flat {
            samples: vec![sample(1)],
            counted: vec![("app".into(), LogCounts::default())],
            ..Flat::default()
        };
        let mark = flat.mark();
        flat.append(Flat {
            samples: vec![sample(2), sample(3)],
            counted: vec![("posthog".into(), LogCounts::default())],
            ..Flat::default()
        });
        assert_eq!(flat.samples.len(), 3);
        flat.truncate(mark);
        assert_eq!(
            flat.samples.iter().map(|s| s.ts_ms).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(flat.counted.len(), 1);
        assert_eq!(flat.counted[0].0, "app");
    }
}
