//! Distinct counts of a label's values (the users behind an ingest source's events, say) as
//! HyperLogLog++ sketches, one per metric, label and hour. A sketch stays small however many
//! values clients make up (a few bytes per value while there are few, at most about 3 KiB),
//! and the sketches of any whole-hour window merge into one count: a report counts its users
//! without a series per user, so `max_series` bounds memory, not the count.

use std::hash::{BuildHasher, Hasher};

use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use redb::{
    ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::{StoreError, decode, encode};

/// (metric, label, hour start in ms) → one encoded [`Sketch`].
const DISTINCT: TableDefinition<(&str, &str, i64), &[u8]> = TableDefinition::new("distinct");

/// One sketch per hour: a report's window (whole days in its time zone) is whole hours.
pub const HOUR_MS: i64 = 3_600_000;

/// 2¹² registers: about 1.6 % standard error for large counts; counts up to a few thousand
/// are kept in the sparse form, where they are exact but for hash collisions.
const PRECISION: u8 = 12;

/// Rows deleted per transaction when pruning.
const PRUNE_CHUNK: usize = 1000;

/// A stable 64-bit hash of a value: SipHash-1-3 with fixed keys, the same in every build (the
/// standard library's hasher may change between Rust releases, and the sketches outlive it).
fn stable_hash(value: &str) -> u64 {
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x736c_6f67_7561_7264, 0x6469_7374);
    h.write(value.as_bytes());
    h.finish()
}

/// Hands the sketch the value's stable hash unchanged.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;

    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

/// See [`PassThrough`]: only ever given one `u64`.
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The distinct values seen of one label. On disk: in `distinct`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sketch(HyperLogLogPlus<u64, PassThrough>);

impl Default for Sketch {
    fn default() -> Sketch {
        // The precision is a constant within the crate's 4..=18.
        Sketch(HyperLogLogPlus::new(PRECISION, PassThrough).expect("a valid precision"))
    }
}

impl Sketch {
    pub fn insert(&mut self, value: &str) {
        self.0.insert(&stable_hash(value));
    }

    /// Adds what `other` saw.
    pub fn merge(&mut self, other: &Sketch) {
        // Every sketch has the same precision, the only reason a merge can fail.
        let _ = self.0.merge(&other.0);
    }

    /// How many distinct values were seen (estimated).
    pub fn estimate(&mut self) -> u64 {
        let n = self.0.count();
        if n.is_finite() && n > 0.0 {
            n.round() as u64
        } else {
            0
        }
    }

    /// The stored form; pending values are folded into the sketch first.
    fn encode(&mut self) -> Vec<u8> {
        self.0.count();
        encode(self)
    }
}

/// What a log source saw of one label of one metric in one hour.
#[derive(Debug, Clone)]
pub struct DistinctSeen {
    pub metric: String,
    pub label: String,
    pub hour_ms: i64,
    pub sketch: Sketch,
}

pub(super) fn create_table(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DISTINCT)?;
    Ok(())
}

/// Merges each hour's sketch into the stored one.
pub(super) fn write(txn: &WriteTransaction, seen: &[DistinctSeen]) -> Result<(), StoreError> {
    if seen.is_empty() {
        return Ok(());
    }
    let mut table = txn.open_table(DISTINCT)?;
    for s in seen {
        let key = (s.metric.as_str(), s.label.as_str(), s.hour_ms);
        let stored = match table.get(key)? {
            Some(v) => decode::<Sketch>(v.value()).ok(),
            None => None,
        };
        let mut merged = s.sketch.clone();
        if let Some(stored) = stored {
            merged.merge(&stored);
        }
        table.insert(key, merged.encode().as_slice())?;
    }
    Ok(())
}

/// The stored sketches, for a snapshot; `None` in a file that has none yet.
pub(super) type Table = ReadOnlyTable<(&'static str, &'static str, i64), &'static [u8]>;

pub(super) fn open(txn: &ReadTransaction) -> Result<Option<Table>, StoreError> {
    match txn.open_table(DISTINCT) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The distinct values of `label` of `metric` over the hours starting in `[from_ms, to_ms)`
/// (the hour holding `from_ms` included), merged; `None` when no hour of it has a sketch.
pub(super) fn count(
    table: &Table,
    metric: &str,
    label: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<Option<u64>, StoreError> {
    let from = from_ms.div_euclid(HOUR_MS) * HOUR_MS;
    if to_ms <= from {
        return Ok(None);
    }
    let mut all: Option<Sketch> = None;
    for entry in table.range((metric, label, from)..(metric, label, to_ms))? {
        let (_, v) = entry?;
        // A sketch that cannot be read counts nothing rather than failing the report.
        let Ok(sketch) = decode::<Sketch>(v.value()) else {
            continue;
        };
        match &mut all {
            Some(a) => a.merge(&sketch),
            None => all = Some(sketch),
        }
    }
    Ok(all.map(|mut a| a.estimate()))
}

/// Deletes the sketches of hours before `before_ms`, a chunk per transaction; returns how
/// many.
pub(super) fn prune(db: &redb::Database, before_ms: i64) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let old: Vec<(String, String, i64)> = {
            let txn = db.begin_read()?;
            let table = match txn.open_table(DISTINCT) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(removed),
                Err(e) => return Err(e.into()),
            };
            let mut old = Vec::new();
            for entry in table.iter()? {
                let (k, _) = entry?;
                let (metric, label, hour) = k.value();
                if hour < before_ms {
                    old.push((metric.to_string(), label.to_string(), hour));
                    if old.len() >= PRUNE_CHUNK {
                        break;
                    }
                }
            }
            old
        };
        if old.is_empty() {
            return Ok(removed);
        }
        let txn = db.begin_write()?;
        let mut n = 0;
        {
            let mut table = txn.open_table(DISTINCT)?;
            for (metric, label, hour) in &old {
                n += u64::from(
                    table
                        .remove((metric.as_str(), label.as_str(), *hour))?
                        .is_some(),
                );
            }
        }
        txn.commit()?;
        removed += n;
        if n == 0 {
            return Ok(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sketch;

    #[test]
    fn small_counts_are_exact_and_large_ones_close() {
        let mut s = Sketch::default();
        for i in 0..100 {
            s.insert(&format!("user-{i}"));
            s.insert(&format!("user-{i}"));
        }
        assert_eq!(s.estimate(), 100);
        let mut big = Sketch::default();
        for i in 0..100_000 {
            big.insert(&format!("user-{i}"));
        }
        let n = big.estimate() as f64;
        assert!((n - 100_000.0).abs() / 100_000.0 < 0.05, "{n}");
    }

    #[test]
    fn merged_hours_count_a_value_once_and_survive_encoding() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        for i in 0..300 {
            a.insert(&format!("u{i}"));
        }
        for i in 200..500 {
            b.insert(&format!("u{i}"));
        }
        let bytes = b.encode();
        let b: Sketch = super::decode(&bytes).unwrap();
        a.merge(&b);
        assert_eq!(a.estimate(), 500);
        assert!(super::decode::<Sketch>(b"\x01{\"broken\"").is_err());
    }
}
