//! Records the data file could not take yet. While the file cannot be written (a full disk,
//! an I/O error), the changes to alert states, the outbox, dead letters, history and report
//! runs are kept here, bounded, read together with the file's own rows, and committed with the
//! next write that succeeds. A page must not need a disk: the outbox workers deliver from here
//! as from the file.
//!
//! Every record change goes through this type: it is applied here, then the whole of it is
//! committed; only when that commit succeeds is it cleared. So the file and this overlay,
//! read together, always show every change in order.

use std::collections::BTreeMap;

use super::{ALERTS, DEAD_LETTERS, HISTORY, META, OUTBOX, REPORT_RUNS, StoreError};

/// The most outbox rows kept in memory while the file cannot be written; a new notification
/// beyond it is lost (and counted).
pub(super) const MAX_OUTBOX: usize = 10_000;
/// The most history events kept in memory; the oldest go first.
pub(super) const MAX_HISTORY: usize = 10_000;

/// A change to one outbox row.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Change {
    /// A new entry, or a new version of one (after a failed attempt, or grouped).
    Put(Vec<u8>),
    /// Delivered (or merged into another entry): gone.
    Remove,
    /// Given up: moved to the dead letters as this record.
    Bury(Vec<u8>),
    /// Unreadable: moved to the dead letters as it is in the file.
    BuryRaw,
}

/// What one operation changes besides series data.
#[derive(Debug, Default)]
pub(super) struct Records {
    /// Alert states by fingerprint: `Some` to put, `None` to delete.
    pub alerts: Vec<(String, Option<Vec<u8>>)>,
    pub outbox: Vec<(u64, Change)>,
    pub history: Vec<((i64, u64), Vec<u8>)>,
    pub report_runs: Vec<(String, i64)>,
}

impl Records {
    fn is_empty(&self) -> bool {
        self.alerts.is_empty()
            && self.outbox.is_empty()
            && self.history.is_empty()
            && self.report_runs.is_empty()
    }
}

/// Counts of what is kept in memory, for `/metrics` and the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnsavedCounts {
    /// Changes waiting for the file: alert states, outbox rows, history events, report runs.
    pub records: u64,
    /// Notifications and history events dropped because the memory bound was reached, since
    /// the store was opened.
    pub lost: u64,
}

#[derive(Debug, Default)]
pub(super) struct Unsaved {
    alerts: BTreeMap<String, Option<Vec<u8>>>,
    outbox: BTreeMap<u64, Change>,
    history: BTreeMap<(i64, u64), Vec<u8>>,
    report_runs: BTreeMap<String, i64>,
    /// The next outbox id: a counter, so an id is never reused (also not between the file and
    /// this overlay).
    pub next_outbox_id: u64,
    /// The next history sequence number.
    pub next_history_seq: u64,
    lost: u64,
}

impl Unsaved {
    /// Nothing kept; ids continue from the file's counters.
    pub fn new(next_outbox_id: u64, next_history_seq: u64) -> Unsaved {
        Unsaved {
            next_outbox_id,
            next_history_seq,
            ..Unsaved::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
            && self.outbox.is_empty()
            && self.history.is_empty()
            && self.report_runs.is_empty()
    }

    /// The kept changes (for a reader), without the counters.
    pub fn copy(&self) -> Unsaved {
        if self.is_empty() {
            return Unsaved::default();
        }
        Unsaved {
            alerts: self.alerts.clone(),
            outbox: self.outbox.clone(),
            history: self.history.clone(),
            report_runs: self.report_runs.clone(),
            ..Unsaved::default()
        }
    }

    pub fn counts(&self) -> UnsavedCounts {
        UnsavedCounts {
            records: (self.alerts.len()
                + self.outbox.len()
                + self.history.len()
                + self.report_runs.len()) as u64,
            lost: self.lost,
        }
    }

    /// Takes the next outbox id.
    pub fn outbox_id(&mut self) -> u64 {
        let id = self.next_outbox_id;
        self.next_outbox_id += 1;
        id
    }

    /// Takes the next history key for an event at `at_ms`.
    pub fn history_key(&mut self, at_ms: i64) -> (i64, u64) {
        let seq = self.next_history_seq;
        self.next_history_seq += 1;
        (at_ms, seq)
    }

    /// Keeps `records` (which the file did not take) until the next commit, within the bounds.
    pub fn keep(&mut self, records: Records) {
        for (fp, state) in records.alerts {
            self.alerts.insert(fp, state);
        }
        for (id, change) in records.outbox {
            if !self.outbox.contains_key(&id) && self.outbox.len() >= MAX_OUTBOX {
                self.lost += 1;
                tracing::error!(
                    id,
                    "A notification is lost: the data file cannot be written and {MAX_OUTBOX} outbox changes are already kept in memory"
                );
                continue;
            }
            // The latest change of a row is what the row becomes.
            self.outbox.insert(id, change);
        }
        for (key, event) in records.history {
            self.history.insert(key, event);
            if self.history.len() > MAX_HISTORY {
                self.history.pop_first();
                self.lost += 1;
            }
        }
        for (name, at) in records.report_runs {
            self.report_runs.insert(name, at);
        }
    }

    /// Forgets what was kept: a commit took it.
    pub fn clear(&mut self) {
        self.alerts.clear();
        self.outbox.clear();
        self.history.clear();
        self.report_runs.clear();
    }

    /// Writes what is kept, then `records`, in `txn`, with the id counters.
    pub fn write(&self, txn: &redb::WriteTransaction, records: &Records) -> Result<(), StoreError> {
        // Most commits carry samples only: they open no record table.
        if self.is_empty() && records.is_empty() {
            return Ok(());
        }
        let mut alerts = txn.open_table(ALERTS)?;
        let alert_changes = self
            .alerts
            .iter()
            .chain(records.alerts.iter().map(|(k, v)| (k, v)));
        for (fp, state) in alert_changes {
            match state {
                Some(bytes) => alerts.insert(fp.as_str(), bytes.as_slice())?,
                None => alerts.remove(fp.as_str())?,
            };
        }
        let mut outbox = txn.open_table(OUTBOX)?;
        let mut dead = txn.open_table(DEAD_LETTERS)?;
        let outbox_changes = self
            .outbox
            .iter()
            .chain(records.outbox.iter().map(|(k, v)| (k, v)));
        for (&id, change) in outbox_changes {
            match change {
                Change::Put(bytes) => {
                    outbox.insert(id, bytes.as_slice())?;
                }
                Change::Remove => {
                    outbox.remove(id)?;
                }
                Change::Bury(bytes) => {
                    outbox.remove(id)?;
                    dead.insert(id, bytes.as_slice())?;
                }
                Change::BuryRaw => {
                    let raw = outbox.remove(id)?.map(|v| v.value().to_vec());
                    if let Some(raw) = raw {
                        dead.insert(id, raw.as_slice())?;
                    }
                }
            }
        }
        let mut history = txn.open_table(HISTORY)?;
        let events = self
            .history
            .iter()
            .chain(records.history.iter().map(|(k, v)| (k, v)));
        for (key, event) in events {
            history.insert(*key, event.as_slice())?;
        }
        let mut runs = txn.open_table(REPORT_RUNS)?;
        let run_changes = self
            .report_runs
            .iter()
            .chain(records.report_runs.iter().map(|(k, v)| (k, v)));
        for (name, at) in run_changes {
            runs.insert(name.as_str(), *at)?;
        }
        // The counters go with the rows that took ids from them (the file's counter is then
        // past every id in it).
        if !(self.outbox.is_empty()
            && records.outbox.is_empty()
            && self.history.is_empty()
            && records.history.is_empty())
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(
                "next_outbox_id",
                self.next_outbox_id.to_le_bytes().as_slice(),
            )?;
            meta.insert(
                "next_history_seq",
                self.next_history_seq.to_le_bytes().as_slice(),
            )?;
        }
        Ok(())
    }

    /// The outbox as the file's rows (`None`: the file cannot be read) with what is kept
    /// applied, in id order.
    pub fn outbox_view(&self, file: Option<Vec<(u64, Vec<u8>)>>) -> Vec<(u64, Vec<u8>)> {
        let mut rows: BTreeMap<u64, Vec<u8>> = file.unwrap_or_default().into_iter().collect();
        for (id, change) in &self.outbox {
            match change {
                Change::Put(bytes) => {
                    rows.insert(*id, bytes.clone());
                }
                Change::Remove | Change::Bury(_) | Change::BuryRaw => {
                    rows.remove(id);
                }
            }
        }
        rows.into_iter().collect()
    }

    /// The dead letters: the file's, and those buried since it could last be written (a raw
    /// burial shows once it is committed).
    pub fn dead_view(&self, file: Vec<(u64, Vec<u8>)>) -> Vec<(u64, Vec<u8>)> {
        let mut rows: BTreeMap<u64, Vec<u8>> = file.into_iter().collect();
        for (id, change) in &self.outbox {
            if let Change::Bury(bytes) = change {
                rows.insert(*id, bytes.clone());
            }
        }
        rows.into_iter().collect()
    }

    /// The alert states: the file's with what is kept applied.
    pub fn alerts_view(&self, file: Vec<(String, Vec<u8>)>) -> Vec<Vec<u8>> {
        let mut rows: BTreeMap<String, Vec<u8>> = file.into_iter().collect();
        for (fp, state) in &self.alerts {
            match state {
                Some(bytes) => rows.insert(fp.clone(), bytes.clone()),
                None => rows.remove(fp),
            };
        }
        rows.into_values().collect()
    }

    /// History events kept, at or after `since_ms`.
    pub fn history_since(
        &self,
        since_ms: i64,
    ) -> impl DoubleEndedIterator<Item = (&(i64, u64), &Vec<u8>)> {
        self.history.range((since_ms, 0u64)..)
    }

    /// Report runs: the file's with what is kept applied.
    pub fn report_runs_view(&self, mut file: BTreeMap<String, i64>) -> BTreeMap<String, i64> {
        for (name, at) in &self.report_runs {
            file.insert(name.clone(), *at);
        }
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(id: u64, b: &str) -> (u64, Change) {
        (id, Change::Put(b.as_bytes().to_vec()))
    }

    #[test]
    fn the_latest_change_of_a_row_is_what_it_becomes() {
        let mut u = Unsaved::default();
        u.keep(Records {
            outbox: vec![put(1, "a"), put(2, "b"), put(3, "c")],
            ..Records::default()
        });
        u.keep(Records {
            outbox: vec![
                (1, Change::Remove),
                put(2, "b2"),
                (3, Change::Bury(b"c-dead".to_vec())),
                (7, Change::Remove),
            ],
            ..Records::default()
        });
        let file = vec![(7, b"on disk".to_vec()), (8, b"kept".to_vec())];
        let view = u.outbox_view(Some(file.clone()));
        assert_eq!(view, vec![(2, b"b2".to_vec()), (8, b"kept".to_vec())]);
        assert_eq!(u.dead_view(Vec::new()), vec![(3, b"c-dead".to_vec())]);
        // The file unreadable: what is kept is still delivered.
        assert_eq!(u.outbox_view(None), vec![(2, b"b2".to_vec())]);
    }

    #[test]
    fn memory_is_bounded_and_what_is_lost_is_counted() {
        let mut u = Unsaved::default();
        let many: Vec<(u64, Change)> = (0..MAX_OUTBOX as u64 + 5).map(|i| put(i, "x")).collect();
        u.keep(Records {
            outbox: many,
            ..Records::default()
        });
        // A change to a row already kept is never refused.
        u.keep(Records {
            outbox: vec![(0, Change::Remove)],
            ..Records::default()
        });
        let history: Vec<((i64, u64), Vec<u8>)> = (0..MAX_HISTORY as u64 + 3)
            .map(|i| ((i as i64, i), vec![1]))
            .collect();
        u.keep(Records {
            history,
            ..Records::default()
        });
        assert_eq!(u.counts().lost, 5 + 3);
        assert_eq!(u.outbox.len(), MAX_OUTBOX);
        assert_eq!(u.outbox.get(&0), Some(&Change::Remove));
        // The oldest events went.
        assert_eq!(u.history.first_key_value().map(|(k, _)| k.0), Some(3));
        u.clear();
        assert!(u.is_empty());
        assert_eq!(u.counts().lost, 8, "what was lost stays counted");
    }
}
