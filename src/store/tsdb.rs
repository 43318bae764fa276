//! The time-series half of the store: how points and distributions are laid out in redb, how
//! they are written, read back through a consistent [`Snapshot`], rolled up into coarser tiers
//! and expired.
//!
//! Layout (format version 2):
//! - a gauge series keeps its newest points in an open chunk (`heads`, rewritten by every commit
//!   that adds to it) and older points in closed chunks (`chunks`, keyed by series and first
//!   time; the value starts with the chunk's last time so that a range scan can skip it);
//! - a distribution series keeps one bucket (count, sum, min, max, last, DDSketch) per interval
//!   (`dists`, keyed by series and interval start);
//! - every series has rollup tiers (`rollups`, keyed by series, tier step and block start; a
//!   block holds up to [`BLOCK_BUCKETS`] buckets) and a watermark per tier (`watermarks`):
//!   every bucket before it has been rolled up, none after it.
//!
//! Nothing here keeps state that the file does not also hold: the in-memory open chunks are a
//! cache of `heads`, dropped whenever a commit fails.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::bucket::{self, Bucket};
use super::chunk::{self, ChunkEncoder};
use super::{StoreError, decode, encode};
use crate::series::{Labels, SeriesKey};

pub(super) const SERIES_IDS: TableDefinition<&str, u64> = TableDefinition::new("series_ids");
pub(super) const SERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("series");
/// Open chunk of each gauge series.
pub(super) const HEADS: TableDefinition<u64, &[u8]> = TableDefinition::new("heads");
/// (series, first time) → last time (i64 LE) followed by the chunk.
pub(super) const CHUNKS: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("chunks");
/// (series, interval start) → one bucket of a distribution series.
pub(super) const DISTS: TableDefinition<(u64, i64), &[u8]> = TableDefinition::new("dists");
/// (series, tier step ms, first bucket start) → the last bucket's start (i64 LE) followed by a
/// block of rollup buckets. A series' blocks of one tier follow each other without overlap.
pub(super) const ROLLUPS: TableDefinition<(u64, u64, i64), &[u8]> = TableDefinition::new("rollups");
/// (series, tier step ms) → the time up to which the tier is complete.
pub(super) const WATERMARKS: TableDefinition<(u64, u64), i64> = TableDefinition::new("watermarks");

/// A redb leaf page is 4 KiB: a chunk or block of up to this size, with its key and the
/// page's own header, fills one page alone; a larger value would take a page twice the
/// size.
pub const VALUE_BYTES: usize = 3960;
/// The open chunk is closed when it holds this many points, reaches [`VALUE_BYTES`]...
pub const CHUNK_POINTS: u32 = 512;
/// ...or spans this long.
pub const CHUNK_SPAN_MS: i64 = 4 * 3600 * 1000;
/// A rollup block holds at most this many buckets (a day of one-minute buckets).
pub const BLOCK_BUCKETS: u32 = 1440;
/// How far ahead of the clock a point may be.
pub const MAX_FUTURE_MS: i64 = 3_600_000;
/// A rollup bucket is made once this long has passed after its end, so that samples a little
/// late (a probe that took its time) are in it.
pub const ROLLUP_GRACE_MS: i64 = 60_000;
/// Closed chunks smaller than half of [`VALUE_BYTES`] are merged into chunks of about
/// [`VALUE_BYTES`]...
pub const MERGED_CHUNK_SPAN_MS: i64 = 86_400_000;
/// ...spanning at most a day (retention deletes whole chunks), once their last point is this
/// old: recent chunks stay small and quick to decode.
pub const MERGE_AFTER_MS: i64 = 2 * 3_600_000;
/// Series handled per compaction transaction: small transactions keep writers waiting little.
pub(super) const COMPACT_GROUP_SIZE: usize = 32;

/// How a series is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// One value per point (probe results, query statistics).
    #[default]
    Gauge,
    /// Many observations summarised per interval (request latencies).
    Distribution,
}

/// A rollup tier: buckets of `step_ms`, kept `retention_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub step_ms: i64,
    pub retention_ms: i64,
}

/// How long data is kept and at which resolutions; recorded in the file so that a reader in
/// another process (`sloguard query`) knows it too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    pub raw_retention_ms: i64,
    pub distribution_interval_ms: i64,
    /// Finest first; each step a multiple of the previous one.
    pub tiers: Vec<Tier>,
}

impl Default for Layout {
    fn default() -> Self {
        const DAY: i64 = 86_400_000;
        Layout {
            raw_retention_ms: 7 * DAY,
            distribution_interval_ms: 10_000,
            tiers: vec![
                Tier {
                    step_ms: 60_000,
                    retention_ms: 90 * DAY,
                },
                Tier {
                    step_ms: 3_600_000,
                    retention_ms: 730 * DAY,
                },
            ],
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct SeriesRecord {
    pub name: String,
    pub labels: Labels,
    #[serde(default)]
    pub kind: Kind,
}

/// One known series.
#[derive(Clone, Debug)]
pub struct SeriesInfo {
    pub id: u64,
    pub key: SeriesKey,
    pub kind: Kind,
}

/// What a write did not keep, for the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Points at or before the newest stored point of their series.
    pub out_of_order: u64,
    /// Samples for a series stored as the other kind, or NaN observations.
    pub invalid: u64,
    /// Stored records (an open chunk, an interval) that could not be read and were started
    /// anew.
    pub corrupt: u64,
    /// Points more than [`MAX_FUTURE_MS`] ahead of the clock.
    pub future: u64,
}

/// The in-memory side of the series data: the registry and the open chunks.
#[derive(Default)]
pub(super) struct Heads {
    pub ids: HashMap<SeriesKey, u64>,
    pub infos: Arc<Vec<SeriesInfo>>,
    pub kinds: HashMap<u64, Kind>,
    pub gauges: HashMap<u64, ChunkEncoder>,
    /// The newest bucket of each distribution series.
    pub dists: HashMap<u64, Bucket>,
    pub layout: Layout,
    pub dropped: Dropped,
    /// Set when a failed commit left the cache unknown and reading it again failed too; the
    /// next write reads it first.
    pub stale: bool,
}

/// `t` rounded down to a multiple of `step` (at least 1), saturating at the ends of time.
pub(crate) fn floor_to(t: i64, step: i64) -> i64 {
    let step = i128::from(step.max(1));
    let v = i128::from(t).div_euclid(step) * step;
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn chunk_value(enc: &ChunkEncoder) -> Vec<u8> {
    let bytes = enc.bytes();
    let mut v = Vec::with_capacity(8 + bytes.len());
    v.extend_from_slice(&enc.last_ts().to_le_bytes());
    v.extend_from_slice(&bytes);
    v
}

fn split_chunk_value(v: &[u8]) -> Result<(i64, &[u8]), StoreError> {
    let (last, chunk) = v.split_at_checked(8).ok_or_else(corrupt)?;
    let last = i64::from_le_bytes(last.try_into().map_err(|_| corrupt())?);
    Ok((last, chunk))
}

fn corrupt() -> StoreError {
    StoreError::Record("a stored chunk is truncated".into())
}

impl Heads {
    pub fn load(txn: &ReadTransaction) -> Result<Heads, StoreError> {
        let mut heads = Heads::default();
        let series = txn.open_table(SERIES)?;
        let mut infos = Vec::new();
        for entry in series.iter()? {
            let (id, rec) = entry?;
            let rec: SeriesRecord = decode(rec.value())?;
            let key = SeriesKey {
                name: rec.name,
                labels: rec.labels,
            };
            heads.ids.insert(key.clone(), id.value());
            heads.kinds.insert(id.value(), rec.kind);
            infos.push(SeriesInfo {
                id: id.value(),
                key,
                kind: rec.kind,
            });
        }
        heads.infos = Arc::new(infos);
        Ok(heads)
    }

    /// The id of `key`, registering it as `kind` if it is new; `None` if it exists as the other
    /// kind.
    fn resolve(
        &mut self,
        txn: &WriteTransaction,
        key: &SeriesKey,
        kind: Kind,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(id) = self.ids.get(key) {
            return Ok((self.kinds.get(id) == Some(&kind)).then_some(*id));
        }
        let mut series = txn.open_table(SERIES)?;
        let id = series.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        txn.open_table(SERIES_IDS)?
            .insert(key.to_string().as_str(), id)?;
        let rec = SeriesRecord {
            name: key.name.clone(),
            labels: key.labels.clone(),
            kind,
        };
        series.insert(id, encode(&rec).as_slice())?;
        self.ids.insert(key.clone(), id);
        self.kinds.insert(id, kind);
        Arc::make_mut(&mut self.infos).push(SeriesInfo {
            id,
            key: key.clone(),
            kind,
        });
        Ok(Some(id))
    }

    /// Adds gauge points and distribution observations inside `txn`. Returns the ids whose
    /// in-memory state changed, to drop if the transaction does not commit.
    pub fn write(
        &mut self,
        txn: &WriteTransaction,
        samples: &[crate::series::Sample],
        observations: &[crate::series::Sample],
        events: &[(SeriesKey, Bucket)],
        now_ms: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let mut touched: Vec<u64> = Vec::new();
        // A point from the future (a wrong clock, a log line dated 2099) would make every
        // later point of its series look out of order; it is refused instead.
        let latest = now_ms.saturating_add(MAX_FUTURE_MS);
        if !samples.is_empty() {
            let mut heads_t = txn.open_table(HEADS)?;
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut dirty: Vec<u64> = Vec::new();
            for s in samples {
                if s.ts_ms > latest {
                    self.dropped.future += 1;
                    continue;
                }
                let Some(id) = self.resolve(txn, &s.series, Kind::Gauge)? else {
                    self.dropped.invalid += 1;
                    continue;
                };
                let enc = match self.gauges.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let enc = match heads_t.get(id)? {
                            Some(v) => ChunkEncoder::resume(v.value()).unwrap_or_else(|e| {
                                // Set aside rather than stop every write to the store.
                                self.dropped.corrupt += 1;
                                tracing::error!(
                                    series = %s.series,
                                    error = %e,
                                    "The open chunk of this series cannot be read; starting a new one"
                                );
                                ChunkEncoder::new()
                            }),
                            None => ChunkEncoder::new(),
                        };
                        e.insert(enc)
                    }
                };
                if !enc.is_empty() && s.ts_ms <= enc.last_ts() {
                    self.dropped.out_of_order += 1;
                    continue;
                }
                if enc.len() >= CHUNK_POINTS
                    || enc.encoded_len() >= VALUE_BYTES - 16
                    || (!enc.is_empty() && s.ts_ms - enc.first_ts() >= CHUNK_SPAN_MS)
                {
                    chunks.insert((id, enc.first_ts()), chunk_value(enc).as_slice())?;
                    *enc = ChunkEncoder::new();
                }
                enc.push(s.ts_ms, s.value)
                    .map_err(|e| StoreError::Record(e.to_string()))?;
                if dirty.last() != Some(&id) {
                    dirty.push(id);
                }
            }
            dirty.sort_unstable();
            dirty.dedup();
            for id in &dirty {
                if let Some(enc) = self.gauges.get(id) {
                    heads_t.insert(*id, enc.bytes().as_slice())?;
                }
            }
            touched.extend(dirty);
        }
        if !observations.is_empty() || !events.is_empty() {
            let interval = self.layout.distribution_interval_ms.max(1);
            let mut dists = txn.open_table(DISTS)?;
            let mut open: BTreeMap<(u64, i64), Bucket> = BTreeMap::new();
            // What this write adds to intervals that the finest tier has rolled up already (a
            // backlog, a client that was offline, a session dated at its last event, a clock
            // that stepped back): compaction rolls up only what comes after a watermark, so
            // these are merged into the rollups here.
            let mut late = Late::new(txn, &self.layout)?;
            for o in observations {
                if o.value.is_nan() {
                    self.dropped.invalid += 1;
                    continue;
                }
                if o.ts_ms > latest {
                    self.dropped.future += 1;
                    continue;
                }
                let Some(id) = self.resolve(txn, &o.series, Kind::Distribution)? else {
                    self.dropped.invalid += 1;
                    continue;
                };
                let start = floor_to(o.ts_ms, interval);
                self.open_bucket(&dists, &mut open, id, start, &o.series)?
                    .observe(o.value);
                if let Some(b) = late.bucket(id, start)? {
                    b.observe(o.value);
                }
            }
            for (key, fragment) in events {
                if fragment.start > latest {
                    self.dropped.future += fragment.count as u64;
                    continue;
                }
                let Some(id) = self.resolve(txn, key, Kind::Distribution)? else {
                    self.dropped.invalid += fragment.count as u64;
                    continue;
                };
                // A fragment made with another interval goes to the interval it starts in.
                let start = floor_to(fragment.start, interval);
                self.open_bucket(&dists, &mut open, id, start, key)?
                    .merge(fragment);
                if let Some(b) = late.bucket(id, start)? {
                    b.merge(fragment);
                }
            }
            late.merge_into_rollups(txn, &self.layout)?;
            for ((id, start), b) in open {
                dists.insert((id, start), b.encode_single().as_slice())?;
                let newer = self.dists.get(&id).is_none_or(|h| h.start <= start);
                if newer {
                    self.dists.insert(id, b);
                }
                touched.push(id);
            }
        }
        Ok(touched)
    }

    /// The interval `start` of distribution series `id`, from this write, the cache or the
    /// file.
    fn open_bucket<'o>(
        &mut self,
        dists: &redb::Table<(u64, i64), &[u8]>,
        open: &'o mut BTreeMap<(u64, i64), Bucket>,
        id: u64,
        start: i64,
        series: &SeriesKey,
    ) -> Result<&'o mut Bucket, StoreError> {
        Ok(match open.entry((id, start)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let b = match self.dists.get(&id) {
                    Some(b) if b.start == start => b.clone(),
                    _ => match dists.get((id, start))? {
                        Some(v) => Bucket::decode_single(start, v.value()).unwrap_or_else(|e| {
                            self.dropped.corrupt += 1;
                            tracing::error!(
                                series = %series,
                                error = %e,
                                "An interval of this series cannot be read; starting it anew"
                            );
                            Bucket::empty(start, true)
                        }),
                        None => Bucket::empty(start, true),
                    },
                };
                e.insert(b)
            }
        })
    }

    /// Forgets the in-memory state of `ids` after a failed commit; it is read again from the
    /// file when next needed.
    pub fn forget(&mut self, ids: &[u64]) {
        for id in ids {
            self.gauges.remove(id);
            self.dists.remove(id);
        }
    }
}

/// A consistent view of the series data at one commit. Cheap to make; holds a redb read
/// transaction, so keep it only as long as a query takes.
pub struct Snapshot {
    series: Arc<Vec<SeriesInfo>>,
    layout: Layout,
    heads: ReadOnlyTable<u64, &'static [u8]>,
    chunks: ReadOnlyTable<(u64, i64), &'static [u8]>,
    dists: ReadOnlyTable<(u64, i64), &'static [u8]>,
    rollups: ReadOnlyTable<(u64, u64, i64), &'static [u8]>,
    watermarks: ReadOnlyTable<(u64, u64), i64>,
    /// Distinct-value sketches; `None` in a file without any yet.
    distinct: Option<super::distinct::Table>,
}

impl Snapshot {
    pub(super) fn new(
        txn: &ReadTransaction,
        series: Option<Arc<Vec<SeriesInfo>>>,
        layout: Layout,
    ) -> Result<Snapshot, StoreError> {
        let series = match series {
            Some(s) => s,
            None => Heads::load(txn)?.infos,
        };
        Ok(Snapshot {
            series,
            layout,
            heads: txn.open_table(HEADS)?,
            chunks: txn.open_table(CHUNKS)?,
            dists: txn.open_table(DISTS)?,
            rollups: txn.open_table(ROLLUPS)?,
            watermarks: txn.open_table(WATERMARKS)?,
            distinct: super::distinct::open(txn)?,
        })
    }

    /// How many distinct values `label` of `metric` had over the hours of `[from_ms, to_ms)`,
    /// from the sketches a log source keeps; `None` when there are none for that span.
    pub fn distinct(
        &self,
        metric: &str,
        label: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        match &self.distinct {
            Some(t) => super::distinct::count(t, metric, label, from_ms, to_ms),
            None => Ok(None),
        }
    }

    /// Bytes held by each table of series data: (table, keys and values, index and
    /// fragmentation).
    pub fn usage(&self) -> Result<Vec<(&'static str, u64, u64)>, StoreError> {
        let mut out = Vec::new();
        for (name, stats) in [
            ("heads", self.heads.stats()?),
            ("chunks", self.chunks.stats()?),
            ("dists", self.dists.stats()?),
            ("rollups", self.rollups.stats()?),
        ] {
            out.push((
                name,
                stats.stored_bytes(),
                stats.metadata_bytes() + stats.fragmented_bytes(),
            ));
        }
        Ok(out)
    }

    /// Every series, in registration order.
    pub fn series(&self) -> &[SeriesInfo] {
        &self.series
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The points of gauge series `id` with `from <= t < to`, oldest first.
    pub fn points(&self, id: u64, from: i64, to: i64) -> Result<Vec<(i64, f64)>, StoreError> {
        let mut out = Vec::new();
        // Closed chunks that may overlap: walk back from `to` until one ends before `from`.
        let mut found: Vec<Vec<u8>> = Vec::new();
        for entry in self.chunks.range((id, i64::MIN)..(id, to))?.rev() {
            let (_, v) = entry?;
            let (last, chunk) = split_chunk_value(v.value())?;
            if last < from {
                break;
            }
            found.push(chunk.to_vec());
        }
        let mut buf = Vec::new();
        for chunk in found.iter().rev() {
            buf.clear();
            chunk::decode_into(chunk, &mut buf).map_err(|e| StoreError::Record(e.to_string()))?;
            out.extend(buf.iter().filter(|(t, _)| *t >= from && *t < to));
        }
        if let Some(v) = self.heads.get(id)? {
            buf.clear();
            chunk::decode_into(v.value(), &mut buf)
                .map_err(|e| StoreError::Record(e.to_string()))?;
            out.extend(buf.iter().filter(|(t, _)| *t >= from && *t < to));
        }
        Ok(out)
    }

    /// The interval buckets of distribution series `id` that start in `[from, to)`.
    pub fn dist_buckets(&self, id: u64, from: i64, to: i64) -> Result<Vec<Bucket>, StoreError> {
        let mut out = Vec::new();
        for entry in self.dists.range((id, from)..(id, to))? {
            let (k, v) = entry?;
            out.push(
                Bucket::decode_single(k.value().1, v.value())
                    .map_err(|e| StoreError::Record(e.to_string()))?,
            );
        }
        Ok(out)
    }

    /// The rollup buckets of tier `step` for series `id` that start in `[from, to)`.
    pub fn rollups(
        &self,
        id: u64,
        step: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        read_blocks(&self.rollups, id, step, from, to)
    }

    /// The start of the first bucket of tier `step` of series `id`.
    pub fn first_rollup(&self, id: u64, step: i64) -> Result<Option<i64>, StoreError> {
        first_block_start(&self.rollups, id, step)
    }

    /// The time before which tier `step` of series `id` is complete (`None`: nothing yet).
    pub fn watermark(&self, id: u64, step: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.watermarks.get((id, step as u64))?.map(|v| v.value()))
    }

    /// The earliest time series `id` has raw data for.
    pub fn first_raw(&self, id: u64, kind: Kind) -> Result<Option<i64>, StoreError> {
        Ok(match kind {
            Kind::Gauge => match self.chunks.range((id, i64::MIN)..=(id, i64::MAX))?.next() {
                Some(e) => Some(e?.0.value().1),
                None => match self.heads.get(id)? {
                    Some(v) => chunk::decode(v.value())
                        .map_err(|e| StoreError::Record(e.to_string()))?
                        .first()
                        .map(|p| p.0),
                    None => None,
                },
            },
            Kind::Distribution => match self.dists.range((id, i64::MIN)..=(id, i64::MAX))?.next() {
                Some(e) => Some(e?.0.value().1),
                None => None,
            },
        })
    }

    /// The buckets of the tier below `tier` (raw data for the first) in `[from, to)`, rolled
    /// into buckets of `step`.
    fn roll(
        &self,
        rollups: &impl ReadableTable<(u64, u64, i64), &'static [u8]>,
        info: &SeriesInfo,
        tier: usize,
        step: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let mut out: Vec<Bucket> = Vec::new();
        let add = |b: &Bucket, out: &mut Vec<Bucket>| bucket_at(out, b.start, step).merge(b);
        if tier > 0 {
            let below = self.layout.tiers[tier - 1].step_ms;
            for b in read_blocks(rollups, info.id, below, from, to)? {
                add(&b, &mut out);
            }
        } else if info.kind == Kind::Distribution {
            for b in self.dist_buckets(info.id, from, to)? {
                add(&b, &mut out);
            }
        } else {
            for (t, v) in self.points(info.id, from, to)? {
                bucket_at(&mut out, t, step).observe(v);
            }
        }
        Ok(out)
    }
}

/// Splits a rollup value into its last bucket's start and its block.
fn split_block_value(v: &[u8]) -> Result<(i64, &[u8]), StoreError> {
    split_chunk_value(v)
}

/// The rollup buckets of tier `step` for series `id` that start in `[from, to)`, from a read
/// or a write transaction's table.
fn read_blocks(
    table: &impl ReadableTable<(u64, u64, i64), &'static [u8]>,
    id: u64,
    step: i64,
    from: i64,
    to: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let s = step as u64;
    let mut blocks: Vec<Vec<Bucket>> = Vec::new();
    // Walk back from `to` until a block ends before `from`.
    for entry in table.range((id, s, i64::MIN)..(id, s, to))?.rev() {
        let (_, v) = entry?;
        let (last, block) = split_block_value(v.value())?;
        if last < from {
            break;
        }
        blocks.push(
            bucket::decode_block_in(block, from, to)
                .map_err(|e| StoreError::Record(e.to_string()))?,
        );
    }
    Ok(blocks.into_iter().rev().flatten().collect())
}

/// What one compaction pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStats {
    pub rollup_buckets: u64,
    pub chunks_removed: u64,
    pub dist_buckets_removed: u64,
    pub blocks_removed: u64,
    pub heads_removed: u64,
    pub chunks_merged: u64,
    /// Series with a record that cannot be decoded.
    pub series_skipped: u64,
}

/// Rolls up and expires the series in `group` inside `txn`, reading through `snap` (taken
/// before the transaction began; compaction is the only writer of rollups, watermarks and old
/// chunks, so it sees everything it changes). A series whose stored data cannot be decoded is
/// logged, counted and skipped; the others go on.
pub(super) fn compact_group(
    txn: &WriteTransaction,
    snap: &Snapshot,
    group: &[SeriesInfo],
    now_ms: i64,
    stats: &mut CompactStats,
) -> Result<(), StoreError> {
    let mut t = Tables {
        rollups: txn.open_table(ROLLUPS)?,
        watermarks: txn.open_table(WATERMARKS)?,
        chunks: txn.open_table(CHUNKS)?,
        dists: txn.open_table(DISTS)?,
    };
    for info in group {
        match compact_series(&mut t, snap, info, now_ms, stats) {
            Ok(()) => {}
            Err(StoreError::Record(why)) => {
                stats.series_skipped += 1;
                tracing::error!(
                    series = %info.key,
                    error = %why,
                    "A stored record of this series cannot be read; compaction skips the series"
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

struct Tables<'t> {
    rollups: redb::Table<'t, (u64, u64, i64), &'static [u8]>,
    watermarks: redb::Table<'t, (u64, u64), i64>,
    chunks: redb::Table<'t, (u64, i64), &'static [u8]>,
    dists: redb::Table<'t, (u64, i64), &'static [u8]>,
}

fn compact_series(
    t: &mut Tables<'_>,
    snap: &Snapshot,
    info: &SeriesInfo,
    now_ms: i64,
    stats: &mut CompactStats,
) -> Result<(), StoreError> {
    let layout = snap.layout();
    let id = info.id;
    // Tiers this series has data in that are no longer configured.
    let mut old_steps = Vec::new();
    for entry in t.watermarks.range((id, 0u64)..=(id, u64::MAX))? {
        let step = entry?.0.value().1 as i64;
        if !layout.tiers.iter().any(|tier| tier.step_ms == step) {
            old_steps.push(step);
        }
    }

    // Roll every tier up to what has closed, finest first; each coarser tier only up to the
    // watermark of the one it reads.
    let mut below: Option<i64> = None;
    for (ti, tier) in layout.tiers.iter().enumerate() {
        let step = tier.step_ms;
        let mut closed = floor_to(now_ms.saturating_sub(ROLLUP_GRACE_MS), step);
        if ti > 0 {
            match below {
                Some(b) => closed = closed.min(floor_to(b, step)),
                None => break,
            }
        }
        let wm = t.watermarks.get((id, step as u64))?.map(|v| v.value());
        let start = match wm {
            Some(w) => Some(w),
            None => {
                // A new tier: seeded from an old tier whose step divides this one (so that
                // changing the tiers keeps history), then filled from the tier below.
                let source_first = if ti == 0 {
                    snap.first_raw(id, info.kind)?
                } else {
                    first_block_start(&t.rollups, id, layout.tiers[ti - 1].step_ms)?
                };
                let seeded = seed_from_old_tier(t, info, &old_steps, step, source_first, stats)?;
                seeded.or(source_first.map(|f| floor_to(f, step)))
            }
        };
        let Some(start) = start else {
            below = None;
            continue;
        };
        if start < closed {
            let new = snap.roll(&t.rollups, info, ti, step, start, closed)?;
            stats.rollup_buckets += new.len() as u64;
            append_buckets(&mut t.rollups, info, step, new)?;
            t.watermarks.insert((id, step as u64), closed)?;
            below = Some(closed);
        } else {
            below = Some(start.min(closed));
        }
    }

    // Old tiers go once every configured tier they could seed has been filled.
    for old in old_steps {
        let still_needed = layout.tiers.iter().any(|tier| {
            tier.step_ms > old
                && tier.step_ms % old == 0
                && t.watermarks
                    .get((id, tier.step_ms as u64))
                    .ok()
                    .flatten()
                    .is_none()
        });
        if !still_needed {
            let s = old as u64;
            t.rollups
                .retain_in((id, s, i64::MIN)..=(id, s, i64::MAX), |_, _| {
                    stats.blocks_removed += 1;
                    false
                })?;
            t.watermarks.remove((id, s))?;
        }
    }

    // Expire, each tier (and raw data) only as far as the tier above has read it.
    let mut needed_until: Vec<i64> = Vec::with_capacity(layout.tiers.len() + 1);
    for tier in &layout.tiers {
        needed_until.push(
            t.watermarks
                .get((id, tier.step_ms as u64))?
                .map(|v| v.value())
                .unwrap_or(i64::MIN),
        );
    }
    for (ti, tier) in layout.tiers.iter().enumerate() {
        let mut cutoff = now_ms.saturating_sub(tier.retention_ms);
        if let Some(next) = needed_until.get(ti + 1)
            && ti + 1 < layout.tiers.len()
        {
            cutoff = cutoff.min(*next);
        }
        let s = tier.step_ms as u64;
        let mut old = Vec::new();
        for entry in t.rollups.range((id, s, i64::MIN)..(id, s, cutoff))? {
            let (k, v) = entry?;
            let (last, _) = split_block_value(v.value())?;
            if last.saturating_add(tier.step_ms) > cutoff {
                break;
            }
            old.push(k.value());
        }
        for k in old {
            t.rollups.remove(k)?;
            stats.blocks_removed += 1;
        }
    }
    if info.kind == Kind::Gauge {
        merge_chunks(&mut t.chunks, id, now_ms, stats)?;
    }
    // Raw data past retention, once the first tier has it: closed chunks that end before the
    // cutoff, old intervals.
    let mut cutoff = now_ms.saturating_sub(layout.raw_retention_ms);
    if let Some(first) = needed_until.first() {
        cutoff = cutoff.min(*first);
    }
    let mut old = Vec::new();
    for entry in t.chunks.range((id, i64::MIN)..(id, cutoff))? {
        let (k, v) = entry?;
        let (last, _) = split_chunk_value(v.value())?;
        if last < cutoff {
            old.push(k.value());
        } else {
            break;
        }
    }
    for k in old {
        t.chunks.remove(k)?;
        stats.chunks_removed += 1;
    }
    t.dists.retain_in((id, i64::MIN)..(id, cutoff), |_, _| {
        stats.dist_buckets_removed += 1;
        false
    })?;
    Ok(())
}

/// Fills a new tier of `step` from an old tier whose step divides it, up to where the tier
/// below starts (`source_first`); returns where the new tier's rolling goes on from.
fn seed_from_old_tier(
    t: &mut Tables<'_>,
    info: &SeriesInfo,
    old_steps: &[i64],
    step: i64,
    source_first: Option<i64>,
    stats: &mut CompactStats,
) -> Result<Option<i64>, StoreError> {
    let Some(old) = old_steps.iter().copied().filter(|o| step % o == 0).max() else {
        return Ok(None);
    };
    let Some(old_first) = first_block_start(&t.rollups, info.id, old)? else {
        return Ok(None);
    };
    let until = floor_to(source_first.unwrap_or(i64::MAX), step);
    let from = floor_to(old_first, step);
    if from >= until {
        return Ok(None);
    }
    let mut out: Vec<Bucket> = Vec::new();
    for b in read_blocks(&t.rollups, info.id, old, from, until)? {
        bucket_at(&mut out, b.start, step).merge(&b);
    }
    stats.rollup_buckets += out.len() as u64;
    append_buckets(&mut t.rollups, info, step, out)?;
    t.watermarks.insert((info.id, step as u64), until)?;
    Ok(Some(until))
}

/// The bucket of `step` that time `t` falls in: the last of `out`, or a new one.
fn bucket_at(out: &mut Vec<Bucket>, t: i64, step: i64) -> &mut Bucket {
    let start = floor_to(t, step);
    if out.last().is_none_or(|l| l.start != start) {
        out.push(Bucket::empty(start, false));
    }
    let last = out.len() - 1;
    &mut out[last]
}

/// Merges runs of small closed chunks of series `id` (those of at most half of
/// [`VALUE_BYTES`], spanning at most a day together) and cuts the run's points again into
/// chunks of about [`VALUE_BYTES`]. A chunk that cannot grow (a day-long chunk of a steady
/// series, a full one) is never in a run, so a pass rewrites only what it shrinks.
fn merge_chunks(
    chunks: &mut redb::Table<(u64, i64), &[u8]>,
    id: u64,
    now_ms: i64,
    stats: &mut CompactStats,
) -> Result<(), StoreError> {
    type Run = Vec<((u64, i64), Vec<u8>)>;
    let mut runs: Vec<Run> = Vec::new();
    let mut run: Run = Vec::new();
    for entry in chunks.range((id, i64::MIN)..=(id, i64::MAX))? {
        let (k, v) = entry?;
        let (last, chunk) = split_chunk_value(v.value())?;
        if last >= now_ms.saturating_sub(MERGE_AFTER_MS) {
            break;
        }
        let key = k.value();
        let small = chunk.len() <= VALUE_BYTES / 2;
        let fits = run
            .first()
            .is_none_or(|f| last.saturating_sub(f.0.1) < MERGED_CHUNK_SPAN_MS);
        if !small || !fits {
            runs.push(std::mem::take(&mut run));
        }
        if small {
            run.push((key, chunk.to_vec()));
        }
    }
    runs.push(run);
    let mut points = Vec::new();
    for run in runs.into_iter().filter(|r| r.len() > 1) {
        points.clear();
        for (key, chunk) in &run {
            chunk::decode_into(chunk, &mut points)
                .map_err(|e| StoreError::Record(e.to_string()))?;
            chunks.remove(*key)?;
        }
        let mut enc = ChunkEncoder::new();
        for (t, v) in &points {
            if enc.encoded_len() >= VALUE_BYTES - 16 {
                chunks.insert((id, enc.first_ts()), chunk_value(&enc).as_slice())?;
                enc = ChunkEncoder::new();
            }
            enc.push(*t, *v)
                .map_err(|e| StoreError::Record(e.to_string()))?;
        }
        if !enc.is_empty() {
            chunks.insert((id, enc.first_ts()), chunk_value(&enc).as_slice())?;
        }
        stats.chunks_merged += run.len() as u64;
    }
    Ok(())
}

fn append_buckets(
    rollups: &mut redb::Table<(u64, u64, i64), &[u8]>,
    info: &SeriesInfo,
    step: i64,
    new: Vec<Bucket>,
) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let s = step as u64;
    let id = info.id;
    // Go on filling the last block, then start new ones as each fills a page.
    let mut builder = bucket::BlockBuilder::default();
    let mut after = i64::MIN;
    let last = match rollups
        .range((id, s, i64::MIN)..=(id, s, i64::MAX))?
        .next_back()
    {
        Some(entry) => {
            let (k, v) = entry?;
            let (_, block) = split_block_value(v.value())?;
            Some((
                k.value(),
                bucket::decode_block(block).map_err(|e| StoreError::Record(e.to_string()))?,
            ))
        }
        None => None,
    };
    if let Some((key, buckets)) = last {
        rollups.remove(key)?;
        for b in &buckets {
            builder
                .push(b)
                .map_err(|e| StoreError::Record(e.to_string()))?;
            after = b.start;
        }
    }
    let mut put = |builder: bucket::BlockBuilder| -> Result<(), StoreError> {
        let key = (id, s, builder.first_start());
        let mut v = builder.last_start().to_le_bytes().to_vec();
        v.extend_from_slice(&builder.finish());
        rollups.insert(key, v.as_slice())?;
        Ok(())
    };
    for b in new.iter().filter(|b| b.start > after) {
        if !builder.is_empty()
            && (builder.len() >= BLOCK_BUCKETS || builder.encoded_len() >= VALUE_BYTES - 24)
        {
            put(std::mem::take(&mut builder))?;
        }
        builder
            .push(b)
            .map_err(|e| StoreError::Record(e.to_string()))?;
    }
    if !builder.is_empty() {
        put(builder)?;
    }
    Ok(())
}

/// Distribution data written below the finest tier's watermark, gathered during one write and
/// merged into every tier that has rolled up its interval.
struct Late<'t> {
    watermarks: Option<redb::Table<'t, (u64, u64), i64>>,
    finest: i64,
    /// The finest tier's watermark per series, read once per write.
    seen: HashMap<u64, Option<i64>>,
    added: BTreeMap<(u64, i64), Bucket>,
}

impl<'t> Late<'t> {
    fn new(txn: &'t WriteTransaction, layout: &Layout) -> Result<Late<'t>, StoreError> {
        let finest = layout.tiers.first().map(|t| t.step_ms);
        Ok(Late {
            watermarks: match finest {
                Some(_) => Some(txn.open_table(WATERMARKS)?),
                None => None,
            },
            finest: finest.unwrap_or(0),
            seen: HashMap::new(),
            added: BTreeMap::new(),
        })
    }

    /// The bucket gathering what this write adds to interval `start` of series `id`, when the
    /// finest tier has rolled that interval up already.
    fn bucket(&mut self, id: u64, start: i64) -> Result<Option<&mut Bucket>, StoreError> {
        let Some(table) = &self.watermarks else {
            return Ok(None);
        };
        let wm = match self.seen.get(&id) {
            Some(wm) => *wm,
            None => {
                let wm = table.get((id, self.finest as u64))?.map(|v| v.value());
                self.seen.insert(id, wm);
                wm
            }
        };
        if wm.is_none_or(|wm| start >= wm) {
            return Ok(None);
        }
        Ok(Some(
            self.added
                .entry((id, start))
                .or_insert_with(|| Bucket::empty(start, true)),
        ))
    }

    /// Merges what was gathered into each tier whose watermark is past it.
    fn merge_into_rollups(self, txn: &WriteTransaction, layout: &Layout) -> Result<(), StoreError> {
        let Some(watermarks) = self.watermarks else {
            return Ok(());
        };
        if self.added.is_empty() {
            return Ok(());
        }
        let mut rollups = txn.open_table(ROLLUPS)?;
        // Per series and tier, the additions by tier bucket.
        let mut per_tier: BTreeMap<(u64, i64), BTreeMap<i64, Bucket>> = BTreeMap::new();
        for ((id, start), b) in &self.added {
            for tier in &layout.tiers {
                let wm = watermarks
                    .get((*id, tier.step_ms as u64))?
                    .map(|v| v.value());
                if wm.is_none_or(|wm| *start >= wm) {
                    break;
                }
                let at = floor_to(*start, tier.step_ms);
                per_tier
                    .entry((*id, tier.step_ms))
                    .or_default()
                    .entry(at)
                    .or_insert_with(|| Bucket::empty(at, true))
                    .merge(b);
            }
        }
        for ((id, step), added) in per_tier {
            merge_buckets(&mut rollups, id, step, added)?;
        }
        Ok(())
    }
}

/// Merges `added` (by bucket start, in order) into the rollup blocks of tier `step` of series
/// `id`: each into the block that holds its start (a bucket of its own where the block has
/// none), or a new block before the first. Each block touched is rewritten once.
fn merge_buckets(
    rollups: &mut redb::Table<(u64, u64, i64), &[u8]>,
    id: u64,
    step: i64,
    added: BTreeMap<i64, Bucket>,
) -> Result<(), StoreError> {
    let s = step as u64;
    let added: Vec<(i64, Bucket)> = added.into_iter().collect();
    let mut i = 0;
    while i < added.len() {
        let at = added[i].0;
        // The block holding `at` (the last that starts at or before it), and where the next
        // block starts.
        let holding = match rollups.range((id, s, i64::MIN)..=(id, s, at))?.next_back() {
            Some(entry) => {
                let (k, v) = entry?;
                let (_, block) = split_block_value(v.value())?;
                Some((
                    k.value().2,
                    bucket::decode_block(block).map_err(|e| StoreError::Record(e.to_string()))?,
                ))
            }
            None => None,
        };
        let next = match at.checked_add(1) {
            Some(after) => match rollups.range((id, s, after)..=(id, s, i64::MAX))?.next() {
                Some(entry) => Some(entry?.0.value().2),
                None => None,
            },
            None => None,
        };
        let (old_key, mut buckets) = match holding {
            Some((k, b)) => (Some(k), b),
            None => (None, Vec::new()),
        };
        while i < added.len() && next.is_none_or(|n| added[i].0 < n) {
            let (at, b) = &added[i];
            match buckets.binary_search_by_key(at, |x| x.start) {
                Ok(j) => buckets[j].merge(b),
                Err(j) => buckets.insert(j, b.clone()),
            }
            i += 1;
        }
        if let Some(k) = old_key {
            rollups.remove((id, s, k))?;
        }
        let mut builder = bucket::BlockBuilder::default();
        for b in &buckets {
            builder
                .push(b)
                .map_err(|e| StoreError::Record(e.to_string()))?;
        }
        let mut v = builder.last_start().to_le_bytes().to_vec();
        let first = builder.first_start();
        v.extend_from_slice(&builder.finish());
        rollups.insert((id, s, first), v.as_slice())?;
    }
    Ok(())
}

/// The start of the first bucket of tier `step` of series `id`.
fn first_block_start(
    rollups: &impl ReadableTable<(u64, u64, i64), &'static [u8]>,
    id: u64,
    step: i64,
) -> Result<Option<i64>, StoreError> {
    let s = step as u64;
    match rollups.range((id, s, i64::MIN)..=(id, s, i64::MAX))?.next() {
        Some(entry) => Ok(Some(entry?.0.value().2)),
        None => Ok(None),
    }
}
