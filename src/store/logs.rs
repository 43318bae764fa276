//! What log sources keep besides series: how far each file was read (written in the same
//! transaction as the series its lines made, so a restart neither skips nor counts a line
//! twice) and the error types seen, with hourly counts.

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::{Batch, StoreError, decode, encode};

/// (source, device, inode) → checkpoint record.
const CHECKPOINTS: TableDefinition<(&str, u64, u64), &[u8]> =
    TableDefinition::new("log_checkpoints");
/// (source, error type id) → [`ErrorType`] record.
const ERROR_TYPES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("error_types");
/// (source, error type id, hour start) → occurrences.
const ERROR_WINDOWS: TableDefinition<(&str, u64, i64), u64> = TableDefinition::new("error_windows");
/// source → the [`ErrorType`] record of its most recently seen type, so the newest error of a
/// source is one read, not a scan of every type. Built from `error_types` when a file written
/// before it opens for writing.
const ERROR_NEWEST: TableDefinition<&str, &[u8]> = TableDefinition::new("error_newest");

/// Error types stored per source unless the source says otherwise: made-up messages from a
/// public capture path must not fill the file. Past it, occurrences of new patterns count
/// towards one type, [`OTHER_ID`].
pub const MAX_ERROR_TYPES: usize = 1000;
/// The id of the type that takes every new pattern of a source past its cap.
pub const OTHER_ID: u64 = u64::MAX;
/// Error rows deleted per transaction when pruning, so that the writer waits briefly.
const PRUNE_CHUNK: usize = 1000;

/// Error counts are kept per hour.
pub const WINDOW_MS: i64 = 3_600_000;

/// A file of a log source: (source, device, inode).
pub type CheckpointKey = (String, u64, u64);
/// A file of one log source: (device, inode).
pub type FileKey = (u64, u64);

/// One error type as one flush of one source saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorSeen {
    pub source: String,
    /// Stable id of the pattern within its source.
    pub id: u64,
    pub pattern: String,
    /// The newest message of this type, as written.
    pub last_message: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
    /// (hour start, occurrences), by the lines' times.
    pub windows: Vec<(i64, u64)>,
}

impl ErrorSeen {
    /// Counts one more occurrence at `ts`.
    pub fn add(&mut self, message: &str, ts: i64) {
        self.count += 1;
        self.first_ms = self.first_ms.min(ts);
        if ts >= self.last_ms {
            self.last_ms = ts;
            if self.last_message != message {
                message.clone_into(&mut self.last_message);
            }
        }
        let window = ts.div_euclid(WINDOW_MS) * WINDOW_MS;
        match self.windows.iter_mut().rev().find(|(w, _)| *w == window) {
            Some((_, n)) => *n += 1,
            None => self.windows.push((window, 1)),
        }
    }
}

/// An error type as stored: every sighting since it was first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorType {
    pub source: String,
    pub id: u64,
    pub pattern: String,
    pub last_message: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
}

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(CHECKPOINTS)?;
    let types = txn.open_table(ERROR_TYPES)?;
    txn.open_table(ERROR_WINDOWS)?;
    let mut newest = txn.open_table(ERROR_NEWEST)?;
    // A file written before the index: build it once.
    if newest.is_empty()? && !types.is_empty()? {
        for entry in types.iter()? {
            let (_, v) = entry?;
            let Ok(t) = decode::<ErrorType>(v.value()) else {
                continue;
            };
            let newer = match newest.get(t.source.as_str())? {
                Some(old) => {
                    decode::<ErrorType>(old.value()).map_or(true, |o| t.last_ms >= o.last_ms)
                }
                None => true,
            };
            if newer {
                newest.insert(t.source.as_str(), encode(&t).as_slice())?;
            }
        }
    }
    Ok(())
}

pub(super) fn write(txn: &WriteTransaction, batch: &Batch<'_>) -> Result<(), StoreError> {
    if !batch.checkpoints.is_empty() {
        let mut table = txn.open_table(CHECKPOINTS)?;
        for ((source, dev, ino), record) in &batch.checkpoints {
            let key = (source.as_str(), *dev, *ino);
            match record {
                Some(r) => table.insert(key, r.as_slice())?,
                None => table.remove(key)?,
            };
        }
    }
    if !batch.errors.is_empty() {
        let mut types = txn.open_table(ERROR_TYPES)?;
        let mut windows = txn.open_table(ERROR_WINDOWS)?;
        let mut newest = txn.open_table(ERROR_NEWEST)?;
        // Types stored per source, counted once per batch.
        let mut stored_types: std::collections::HashMap<&str, usize> = Default::default();
        for e in batch.errors {
            let mut key = (e.source.as_str(), e.id);
            let mut stored = match types.get(key)? {
                Some(v) => decode::<ErrorType>(v.value()).ok(),
                None => None,
            };
            let mut other = None;
            if stored.is_none() {
                let n = match stored_types.get(e.source.as_str()) {
                    Some(n) => *n,
                    None => types
                        .range((e.source.as_str(), 0u64)..=(e.source.as_str(), u64::MAX))?
                        .count(),
                };
                let cap = batch
                    .max_error_types
                    .iter()
                    .find(|(s, _)| s == &e.source)
                    .map_or(MAX_ERROR_TYPES, |(_, n)| *n);
                if n >= cap {
                    // Full: this pattern counts as the source's `other` type.
                    key = (e.source.as_str(), OTHER_ID);
                    stored = match types.get(key)? {
                        Some(v) => decode::<ErrorType>(v.value()).ok(),
                        None => None,
                    };
                    other = Some(format!(
                        "other error types (past the {cap} this source keeps)"
                    ));
                    stored_types.insert(e.source.as_str(), n + usize::from(stored.is_none()));
                } else {
                    stored_types.insert(e.source.as_str(), n + 1);
                }
            }
            let merged = match stored {
                Some(mut t) => {
                    t.count += e.count;
                    t.first_ms = t.first_ms.min(e.first_ms);
                    if e.last_ms >= t.last_ms {
                        t.last_ms = e.last_ms;
                        t.last_message.clone_from(&e.last_message);
                    }
                    t
                }
                None => ErrorType {
                    source: e.source.clone(),
                    id: key.1,
                    pattern: other.unwrap_or_else(|| e.pattern.clone()),
                    last_message: e.last_message.clone(),
                    first_ms: e.first_ms,
                    last_ms: e.last_ms,
                    count: e.count,
                },
            };
            let record = encode(&merged);
            types.insert(key, record.as_slice())?;
            let newer = match newest.get(e.source.as_str())? {
                Some(old) => {
                    decode::<ErrorType>(old.value()).map_or(true, |o| merged.last_ms >= o.last_ms)
                }
                None => true,
            };
            if newer {
                newest.insert(e.source.as_str(), record.as_slice())?;
            }
            for (hour, n) in &e.windows {
                let wkey = (e.source.as_str(), key.1, *hour);
                let before = windows.get(wkey)?.map(|v| v.value()).unwrap_or(0);
                windows.insert(wkey, before + n)?;
            }
        }
    }
    Ok(())
}

/// The checkpoints of `source`, by (device, inode), as stored records.
pub(super) fn checkpoints(
    txn: &ReadTransaction,
    source: &str,
) -> Result<Vec<(FileKey, Vec<u8>)>, StoreError> {
    let table = match txn.open_table(CHECKPOINTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in table.range((source, 0u64, 0u64)..=(source, u64::MAX, u64::MAX))? {
        let (k, v) = entry?;
        let (_, dev, ino) = k.value();
        out.push(((dev, ino), v.value().to_vec()));
    }
    Ok(out)
}

/// Deletes the checkpoints of sources not in `keep`; returns how many.
pub(super) fn forget_sources(txn: &WriteTransaction, keep: &[String]) -> Result<u64, StoreError> {
    let mut table = txn.open_table(CHECKPOINTS)?;
    let mut removed = 0;
    table.retain(|(source, _, _), _| {
        let kept = keep.iter().any(|k| k == source);
        removed += u64::from(!kept);
        kept
    })?;
    Ok(removed)
}

/// A consistent view of the error types (one read transaction).
pub struct ErrorSnapshot(pub(super) ReadTransaction);

impl ErrorSnapshot {
    /// Every error type (of `source`, when given), most recently seen first.
    pub fn types(&self, source: Option<&str>) -> Result<Vec<ErrorType>, StoreError> {
        error_types(&self.0, source)
    }

    /// The most recently seen error type of each source (of `source`, when given), with
    /// its newest message: one read per source. Files that were only read, never opened for
    /// writing since the index exists, are scanned instead.
    pub fn newest(&self, source: Option<&str>) -> Result<Vec<ErrorType>, StoreError> {
        let table = match self.0.open_table(ERROR_NEWEST) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                let mut all = error_types(&self.0, source)?;
                let mut seen = std::collections::BTreeSet::new();
                all.retain(|t| seen.insert(t.source.clone()));
                return Ok(all);
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        match source {
            Some(s) => {
                if let Some(v) = table.get(s)? {
                    out.push(decode::<ErrorType>(v.value())?);
                }
            }
            None => {
                for entry in table.iter()? {
                    let (_, v) = entry?;
                    out.push(decode::<ErrorType>(v.value())?);
                }
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.last_ms));
        Ok(out)
    }

    /// Hourly counts of one error type with `from_ms <= hour start < to_ms`.
    pub fn windows(
        &self,
        source: &str,
        id: u64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        error_windows(&self.0, source, id, from_ms, to_ms)
    }
}

/// Every error type (of `source`, when given), most recently seen first.
fn error_types(txn: &ReadTransaction, source: Option<&str>) -> Result<Vec<ErrorType>, StoreError> {
    let table = match txn.open_table(ERROR_TYPES) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let rows = match source {
        Some(s) => table.range((s, 0u64)..=(s, u64::MAX))?,
        None => table.range::<(&str, u64)>(..)?,
    };
    for entry in rows {
        let (_, v) = entry?;
        out.push(decode::<ErrorType>(v.value())?);
    }
    out.sort_by(|a, b| b.last_ms.cmp(&a.last_ms).then(a.id.cmp(&b.id)));
    Ok(out)
}

fn error_windows(
    txn: &ReadTransaction,
    source: &str,
    id: u64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<(i64, u64)>, StoreError> {
    let table = match txn.open_table(ERROR_WINDOWS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    if from_ms >= to_ms {
        return Ok(out);
    }
    for entry in table.range((source, id, from_ms)..(source, id, to_ms))? {
        let (k, v) = entry?;
        out.push((k.value().2, v.value()));
    }
    Ok(out)
}

/// Up to `PRUNE_CHUNK` keys of hourly counts older than `before_ms` and of error types last
/// seen before it, found in one read; `None` when there are none left.
pub(super) fn expired(
    txn: &ReadTransaction,
    before_ms: i64,
) -> Result<Option<Expired>, StoreError> {
    let mut out = Expired::default();
    if let Ok(windows) = txn.open_table(ERROR_WINDOWS) {
        for entry in windows.iter()? {
            let (k, _) = entry?;
            let (source, id, hour) = k.value();
            if hour < before_ms {
                out.windows.push((source.to_string(), id, hour));
                if out.windows.len() >= PRUNE_CHUNK {
                    break;
                }
            }
        }
    }
    if let Ok(types) = txn.open_table(ERROR_TYPES) {
        for entry in types.iter()? {
            let (k, v) = entry?;
            if decode::<ErrorType>(v.value()).is_ok_and(|t| t.last_ms < before_ms) {
                let (source, id) = k.value();
                out.types.push((source.to_string(), id));
                if out.types.len() >= PRUNE_CHUNK {
                    break;
                }
            }
        }
    }
    Ok((!out.windows.is_empty() || !out.types.is_empty()).then_some(out))
}

/// Rows of error tables to delete.
#[derive(Default)]
pub(super) struct Expired {
    windows: Vec<(String, u64, i64)>,
    types: Vec<(String, u64)>,
}

/// Deletes what `expired` found; returns how many rows. A source whose every type went also
/// loses its newest-error entry.
pub(super) fn prune(txn: &WriteTransaction, expired: &Expired) -> Result<u64, StoreError> {
    let mut removed = 0;
    let mut windows = txn.open_table(ERROR_WINDOWS)?;
    for (source, id, hour) in &expired.windows {
        removed += u64::from(windows.remove((source.as_str(), *id, *hour))?.is_some());
    }
    let mut types = txn.open_table(ERROR_TYPES)?;
    let mut newest = txn.open_table(ERROR_NEWEST)?;
    for (source, id) in &expired.types {
        removed += u64::from(types.remove((source.as_str(), *id))?.is_some());
        let empty = types
            .range((source.as_str(), 0u64)..=(source.as_str(), u64::MAX))?
            .next()
            .is_none();
        if empty {
            newest.remove(source.as_str())?;
        }
    }
    Ok(removed)
}
