//! The embedded store: one redb file holding the series registry, the points, the state of
//! pending and firing alerts, and the notification outbox.
//!
//! Only this module imports redb. Keys use redb's fixed-width integer encodings (little-endian,
//! ordered numerically) and UTF-8 strings; records are a one-byte record version followed by
//! JSON, so a record written by an older sloguard is recognised, never misread. The file's
//! format version is written on creation and checked on every open.
//!
//! Every write is one redb transaction committed with `Durability::Immediate`: when a write
//! call returns, what it wrote survives `kill -9` and power loss.

pub mod chunk;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::series::{Labels, Sample, SeriesKey};

/// The data file's name inside the data directory.
pub const FILE_NAME: &str = "sloguard.redb";
/// The layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The version byte in front of every JSON record.
const RECORD_VERSION: u8 = 1;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SERIES_IDS: TableDefinition<&str, u64> = TableDefinition::new("series_ids");
const SERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("series");
const POINTS: TableDefinition<(u64, i64), f64> = TableDefinition::new("points");
const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts");
const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const SILENCES: TableDefinition<u64, &[u8]> = TableDefinition::new("silences");
/// Alert history: (time ms, sequence) → event record.
const HISTORY: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("history");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the data file {path} is in use by another process (is a sloguard daemon already running with this data directory?)"
    )]
    Locked { path: PathBuf },
    #[error("cannot open the data file {path}: {source}")]
    Open { path: PathBuf, source: redb::Error },
    #[error(
        "the data file {path} has format version {found}, but this sloguard reads version {FORMAT_VERSION}; run the sloguard release that wrote it, or move the file away to start afresh"
    )]
    UnknownVersion { path: PathBuf, found: u32 },
    #[error("the data file {path} has no valid format version; it was not written by sloguard")]
    NotOurs { path: PathBuf },
    #[error("data file error: {0}; if it repeats, stop sloguard and check the disk")]
    Db(#[from] redb::Error),
    #[error("a stored record cannot be read: {0}")]
    Record(String),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        StoreError::Db(e.into())
    }
}
impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::Db(e.into())
    }
}

/// Encodes a record as its version byte and JSON.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Serialising plain data structs to a Vec cannot fail.
    serde_json::to_writer(&mut out, value).unwrap_or_default();
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| StoreError::Record(e.to_string()))
        }
        Some((v, _)) => Err(StoreError::Record(format!("unknown record version {v}"))),
        None => Err(StoreError::Record("empty record".into())),
    }
}

#[derive(Serialize, serde::Deserialize)]
struct SeriesRecord {
    name: String,
    labels: Labels,
}

/// What one commit writes: samples, alert state changes and new outbox entries, atomically.
#[derive(Default)]
pub struct Batch<'a> {
    pub samples: &'a [Sample],
    /// Alert states to insert or replace, by fingerprint.
    pub put_alerts: Vec<(String, Vec<u8>)>,
    /// Alert states to delete, by fingerprint.
    pub delete_alerts: Vec<String>,
    /// Outbox entries to append.
    pub outbox: Vec<Vec<u8>>,
    /// History events to append, with their times.
    pub history: Vec<(i64, Vec<u8>)>,
}

impl Batch<'_> {
    pub fn put_alert<T: Serialize>(&mut self, fingerprint: String, state: &T) {
        self.put_alerts.push((fingerprint, encode(state)));
    }
    pub fn push_outbox<T: Serialize>(&mut self, entry: &T) {
        self.outbox.push(encode(entry));
    }
    pub fn push_history<T: Serialize>(&mut self, at_ms: i64, event: &T) {
        self.history.push((at_ms, encode(event)));
    }
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
            && self.put_alerts.is_empty()
            && self.delete_alerts.is_empty()
            && self.outbox.is_empty()
    }
}

/// The next sequence number of a history event (it orders events of the same millisecond).
fn next_history_seq(meta: &redb::Table<&str, &[u8]>) -> Result<u64, StoreError> {
    Ok(match meta.get("next_history_seq")? {
        Some(v) => <[u8; 8]>::try_from(v.value())
            .map(u64::from_le_bytes)
            .unwrap_or(0),
        None => 0,
    })
}

/// A handle to the data file; cheap to share behind an `Arc`.
pub struct Store {
    db: Database,
    path: PathBuf,
    series_ids: Mutex<HashMap<SeriesKey, u64>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) `dir/sloguard.redb`, checking its format version.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked { path });
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path,
                    source: e.into(),
                });
            }
        };
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let found = meta.get("format_version")?.map(|v| v.value().to_vec());
            match found {
                None => {
                    meta.insert("format_version", FORMAT_VERSION.to_le_bytes().as_slice())?;
                }
                Some(bytes) => {
                    let arr: [u8; 4] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| StoreError::NotOurs { path: path.clone() })?;
                    let found = u32::from_le_bytes(arr);
                    if found != FORMAT_VERSION {
                        return Err(StoreError::UnknownVersion { path, found });
                    }
                }
            }
            // Create every table so that readers never meet a missing one.
            txn.open_table(SERIES_IDS)?;
            txn.open_table(SERIES)?;
            txn.open_table(POINTS)?;
            txn.open_table(ALERTS)?;
            txn.open_table(OUTBOX)?;
            txn.open_table(DEAD_LETTERS)?;
            txn.open_table(SILENCES)?;
            txn.open_table(HISTORY)?;
        }
        txn.commit()?;
        let mut ids = HashMap::new();
        {
            let read = db.begin_read()?;
            let series = read.open_table(SERIES)?;
            for entry in series.iter()? {
                let (id, rec) = entry?;
                let rec: SeriesRecord = decode(rec.value())?;
                ids.insert(
                    SeriesKey {
                        name: rec.name,
                        labels: rec.labels,
                    },
                    id.value(),
                );
            }
        }
        Ok(Store {
            db,
            path,
            series_ids: Mutex::new(ids),
        })
    }

    /// The path of the data file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits `batch` in one durable transaction and returns the ids of its outbox entries.
    pub fn write(&self, batch: &Batch<'_>) -> Result<Vec<u64>, StoreError> {
        let mut ids = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
        let mut new_series: Vec<(SeriesKey, u64)> = Vec::new();
        let txn = self.db.begin_write()?;
        let mut outbox_ids = Vec::with_capacity(batch.outbox.len());
        {
            let mut series_ids = txn.open_table(SERIES_IDS)?;
            let mut series = txn.open_table(SERIES)?;
            let mut points = txn.open_table(POINTS)?;
            for s in batch.samples {
                let id = match ids.get(&s.series).copied().or_else(|| {
                    new_series
                        .iter()
                        .find(|(k, _)| *k == s.series)
                        .map(|(_, id)| *id)
                }) {
                    Some(id) => id,
                    None => {
                        let id = series.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                        let canonical = s.series.to_string();
                        series_ids.insert(canonical.as_str(), id)?;
                        let rec = SeriesRecord {
                            name: s.series.name.clone(),
                            labels: s.series.labels.clone(),
                        };
                        series.insert(id, encode(&rec).as_slice())?;
                        new_series.push((s.series.clone(), id));
                        id
                    }
                };
                points.insert((id, s.ts_ms), s.value)?;
            }
            let mut alerts = txn.open_table(ALERTS)?;
            for fp in &batch.delete_alerts {
                alerts.remove(fp.as_str())?;
            }
            for (fp, rec) in &batch.put_alerts {
                alerts.insert(fp.as_str(), rec.as_slice())?;
            }
            let mut outbox = txn.open_table(OUTBOX)?;
            let mut meta = txn.open_table(META)?;
            // A counter, not `last() + 1`: an id is never reused, even after its entry is gone.
            let mut next = match meta.get("next_outbox_id")? {
                Some(v) => <[u8; 8]>::try_from(v.value())
                    .map(u64::from_le_bytes)
                    .unwrap_or(1),
                None => 1,
            };
            for rec in &batch.outbox {
                outbox.insert(next, rec.as_slice())?;
                outbox_ids.push(next);
                next += 1;
            }
            if !batch.outbox.is_empty() {
                meta.insert("next_outbox_id", next.to_le_bytes().as_slice())?;
            }
            if !batch.history.is_empty() {
                let mut history = txn.open_table(HISTORY)?;
                let mut seq = next_history_seq(&meta)?;
                for (at, rec) in &batch.history {
                    history.insert((*at, seq), rec.as_slice())?;
                    seq += 1;
                }
                meta.insert("next_history_seq", seq.to_le_bytes().as_slice())?;
            }
        }
        txn.commit()?;
        ids.extend(new_series);
        Ok(outbox_ids)
    }

    /// Appends samples (one durable commit).
    pub fn append(&self, samples: &[Sample]) -> Result<(), StoreError> {
        self.write(&Batch {
            samples,
            ..Batch::default()
        })
        .map(|_| ())
    }

    /// Every known series.
    pub fn series(&self) -> Vec<SeriesKey> {
        let ids = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<SeriesKey> = ids.keys().cloned().collect();
        out.sort();
        out
    }

    /// The points of `key` with `from_ms <= t < to_ms`, oldest first.
    pub fn points(
        &self,
        key: &SeriesKey,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        let id = {
            let ids = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
            match ids.get(key) {
                Some(id) => *id,
                None => return Ok(Vec::new()),
            }
        };
        let read = self.db.begin_read()?;
        let points = read.open_table(POINTS)?;
        let mut out = Vec::new();
        for entry in points.range((id, from_ms)..(id, to_ms))? {
            let (k, v) = entry?;
            out.push((k.value().1, v.value()));
        }
        Ok(out)
    }

    /// Deletes points older than `before_ms`; returns how many were removed.
    pub fn prune(&self, before_ms: i64) -> Result<u64, StoreError> {
        let ids: Vec<u64> = {
            let ids = self.series_ids.lock().unwrap_or_else(|p| p.into_inner());
            ids.values().copied().collect()
        };
        let txn = self.db.begin_write()?;
        let mut removed = 0u64;
        {
            let mut points = txn.open_table(POINTS)?;
            for id in ids {
                points.retain_in((id, i64::MIN)..(id, before_ms), |_, _| {
                    removed += 1;
                    false
                })?;
            }
            let mut history = txn.open_table(HISTORY)?;
            history.retain_in((i64::MIN, 0u64)..(before_ms, 0u64), |_, _| false)?;
        }
        txn.commit()?;
        Ok(removed)
    }

    /// Number of stored points.
    pub fn point_count(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read()?;
        Ok(read.open_table(POINTS)?.len()?)
    }

    /// Every stored alert state.
    pub fn alerts<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ALERTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Every pending outbox entry, oldest first.
    pub fn outbox<T: DeserializeOwned>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }

    /// Replaces outbox entry `id` (after a failed attempt).
    pub fn outbox_update<T: Serialize>(&self, id: u64, entry: &T) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OUTBOX)?;
            table.insert(id, encode(entry).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Replaces entry `id` and removes `others` in one transaction: several entries become
    /// one grouped message.
    pub fn outbox_merge<T: Serialize>(
        &self,
        id: u64,
        entry: &T,
        others: &[u64],
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OUTBOX)?;
            table.insert(id, encode(entry).as_slice())?;
            for o in others {
                table.remove(*o)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes a delivered outbox entry.
    pub fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OUTBOX)?;
            table.remove(id)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Moves an outbox entry that cannot be delivered to the dead letters, kept for the operator.
    pub fn outbox_bury<T: Serialize>(&self, id: u64, entry: &T) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OUTBOX)?;
            table.remove(id)?;
            let mut dead = txn.open_table(DEAD_LETTERS)?;
            dead.insert(id, encode(entry).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Stores a silence under a new id, which it returns.
    pub fn add_silence<T: Serialize>(
        &self,
        make: impl FnOnce(u64) -> T,
    ) -> Result<u64, StoreError> {
        let txn = self.db.begin_write()?;
        let id;
        {
            let mut table = txn.open_table(SILENCES)?;
            id = table.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            table.insert(id, encode(&make(id)).as_slice())?;
        }
        txn.commit()?;
        Ok(id)
    }

    /// Replaces silence `id` (to expire it).
    pub fn put_silence<T: Serialize>(&self, id: u64, silence: &T) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SILENCES)?;
            table.insert(id, encode(silence).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every silence, oldest first.
    pub fn silences<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(SILENCES)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Appends one history event (outside a pipeline batch).
    pub fn append_history<T: Serialize>(&self, at_ms: i64, event: &T) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.push_history(at_ms, event);
        self.write(&batch).map(|_| ())
    }

    /// History events at or after `since_ms`, oldest first, at most `limit`.
    pub fn history<T: DeserializeOwned>(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(HISTORY)?;
        let mut out = Vec::new();
        for entry in table.range((since_ms, 0u64)..)? {
            let (_, v) = entry?;
            out.push(decode(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every dead letter, oldest first.
    pub fn dead_letters<T: DeserializeOwned>(&self) -> Result<Vec<(u64, T)>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(DEAD_LETTERS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), decode(v.value())?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(target: &str, t: i64, v: f64) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", target)]),
            ts_ms: t,
            value: v,
            note: None,
        }
    }

    #[test]
    fn points_survive_reopen_and_prune_removes_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .append(&[
                    sample("a", 1, 1.0),
                    sample("a", 2, 0.0),
                    sample("b", 1, 1.0),
                ])
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let a = SeriesKey::new("probe_up", &[("target", "a")]);
        assert_eq!(store.points(&a, 0, 10).unwrap(), vec![(1, 1.0), (2, 0.0)]);
        assert_eq!(store.series().len(), 2);
        assert_eq!(store.prune(2).unwrap(), 2);
        assert_eq!(store.points(&a, 0, 10).unwrap(), vec![(2, 0.0)]);
    }

    #[test]
    fn unknown_format_version_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::UnknownVersion { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("format version 99"));
    }

    #[test]
    fn outbox_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut b = Batch::default();
        b.push_outbox(&"one");
        b.push_outbox(&"two");
        let ids = store.write(&b).unwrap();
        assert_eq!(ids, vec![1, 2]);
        store.outbox_remove(2).unwrap();
        store.outbox_bury(1, &"one").unwrap();
        let mut b = Batch::default();
        b.push_outbox(&"three");
        assert_eq!(store.write(&b).unwrap(), vec![3]);
        let pending: Vec<(u64, String)> = store.outbox().unwrap();
        assert_eq!(pending, vec![(3, "three".to_string())]);
    }
}
