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

/// A redb leaf page is 4 KiB: a chunk or block of up to this size, with its key, fills one
/// page alone; a larger value would take a page twice the size.
pub const VALUE_BYTES: usize = 3960;
/// The open chunk is closed when it holds this many points, reaches [`VALUE_BYTES`]...
pub const CHUNK_POINTS: u32 = 512;
/// ...or spans this long.
pub const CHUNK_SPAN_MS: i64 = 4 * 3600 * 1000;
/// A rollup block holds at most this many buckets (a day of one-minute buckets).
pub const BLOCK_BUCKETS: u32 = 1440;
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
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
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
    ) -> Result<Vec<u64>, StoreError> {
        let mut touched: Vec<u64> = Vec::new();
        if !samples.is_empty() {
            let mut heads_t = txn.open_table(HEADS)?;
            let mut chunks = txn.open_table(CHUNKS)?;
            let mut dirty: Vec<u64> = Vec::new();
            for s in samples {
                let Some(id) = self.resolve(txn, &s.series, Kind::Gauge)? else {
                    self.dropped.invalid += 1;
                    continue;
                };
                let enc = match self.gauges.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        let enc = match heads_t.get(id)? {
                            Some(v) => ChunkEncoder::resume(v.value())
                                .map_err(|e| StoreError::Record(e.to_string()))?,
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
        if !observations.is_empty() {
            let interval = self.layout.distribution_interval_ms.max(1);
            let mut dists = txn.open_table(DISTS)?;
            let mut open: BTreeMap<(u64, i64), Bucket> = BTreeMap::new();
            for o in observations {
                if o.value.is_nan() {
                    self.dropped.invalid += 1;
                    continue;
                }
                let Some(id) = self.resolve(txn, &o.series, Kind::Distribution)? else {
                    self.dropped.invalid += 1;
                    continue;
                };
                let start = floor_to(o.ts_ms, interval);
                let b = match open.entry((id, start)) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let b = match self.dists.get(&id) {
                            Some(b) if b.start == start => b.clone(),
                            _ => match dists.get((id, start))? {
                                Some(v) => Bucket::decode_single(start, v.value())
                                    .map_err(|e| StoreError::Record(e.to_string()))?,
                                None => Bucket::empty(start, true),
                            },
                        };
                        e.insert(b)
                    }
                };
                b.observe(o.value);
            }
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
        })
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

    /// The time before which tier `step` of series `id` is complete (`None`: nothing yet).
    pub fn watermark(&self, id: u64, step: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.watermarks.get((id, step as u64))?.map(|v| v.value()))
    }

    /// The earliest time series `id` has raw data for.
    fn first_raw(&self, id: u64, kind: Kind) -> Result<Option<i64>, StoreError> {
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
        // The bucket of `step` that time `t` falls in: the last one, or a new one.
        fn at(out: &mut Vec<Bucket>, t: i64, step: i64) -> &mut Bucket {
            let start = floor_to(t, step);
            if out.last().is_none_or(|l| l.start != start) {
                out.push(Bucket::empty(start, false));
            }
            let last = out.len() - 1;
            &mut out[last]
        }
        let add = |b: &Bucket, out: &mut Vec<Bucket>| at(out, b.start, step).merge(b);
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
                at(&mut out, t, step).observe(v);
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
}

/// Rolls up and expires the series in `group` inside `txn`, reading through `snap` (taken
/// before the transaction began; compaction is the only writer of rollups, watermarks and old
/// chunks, so it sees everything it changes).
pub(super) fn compact_group(
    txn: &WriteTransaction,
    snap: &Snapshot,
    group: &[SeriesInfo],
    now_ms: i64,
    stats: &mut CompactStats,
) -> Result<(), StoreError> {
    let layout = snap.layout().clone();
    let mut rollups = txn.open_table(ROLLUPS)?;
    let mut watermarks = txn.open_table(WATERMARKS)?;
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut dists = txn.open_table(DISTS)?;
    let configured: Vec<u64> = layout.tiers.iter().map(|t| t.step_ms as u64).collect();
    for info in group {
        // A tier no longer configured: its rollups and watermark go.
        let mut dropped = Vec::new();
        for entry in watermarks.range((info.id, 0u64)..=(info.id, u64::MAX))? {
            let step = entry?.0.value().1;
            if !configured.contains(&step) {
                dropped.push(step);
            }
        }
        for step in dropped {
            rollups.retain_in(
                (info.id, step, i64::MIN)..=(info.id, step, i64::MAX),
                |_, _| {
                    stats.blocks_removed += 1;
                    false
                },
            )?;
            watermarks.remove((info.id, step))?;
        }
        let mut below: Option<i64> = None;
        for (ti, tier) in layout.tiers.iter().enumerate() {
            let step = tier.step_ms;
            let mut closed = floor_to(now_ms - ROLLUP_GRACE_MS, step);
            if let Some(b) = below {
                closed = closed.min(floor_to(b, step));
            } else if ti > 0 {
                break;
            }
            let wm = snap.watermark(info.id, step)?;
            let start = match wm {
                Some(w) => w,
                None => {
                    let first = if ti == 0 {
                        snap.first_raw(info.id, info.kind)?
                    } else {
                        let prev = layout.tiers[ti - 1].step_ms;
                        first_block_start(&rollups, info.id, prev)?
                    };
                    match first {
                        Some(f) => floor_to(f, step),
                        None => {
                            below = None;
                            continue;
                        }
                    }
                }
            };
            let start = start.max(floor_to(now_ms - tier.retention_ms, step));
            if start < closed {
                let new = snap.roll(&rollups, info, ti, step, start, closed)?;
                stats.rollup_buckets += new.len() as u64;
                append_buckets(&mut rollups, info, step, new)?;
                watermarks.insert((info.id, step as u64), closed)?;
                below = Some(closed);
            } else {
                below = Some(wm.unwrap_or(start).min(closed));
            }
            // Expire whole blocks that end before the tier's retention.
            let cutoff = now_ms - tier.retention_ms;
            let s = step as u64;
            let mut old = Vec::new();
            for entry in rollups.range((info.id, s, i64::MIN)..(info.id, s, cutoff))? {
                let (k, v) = entry?;
                let (last, _) = split_block_value(v.value())?;
                if last + step > cutoff {
                    break;
                }
                old.push(k.value());
            }
            for k in old {
                rollups.remove(k)?;
                stats.blocks_removed += 1;
            }
        }
        if info.kind == Kind::Gauge {
            merge_chunks(&mut chunks, info.id, now_ms, stats)?;
        }
        // Raw data past retention: closed chunks that end before the cutoff, old intervals.
        let cutoff = now_ms - layout.raw_retention_ms;
        let mut old = Vec::new();
        for entry in chunks.range((info.id, i64::MIN)..(info.id, cutoff))? {
            let (k, v) = entry?;
            let (last, _) = split_chunk_value(v.value())?;
            if last < cutoff {
                old.push(k.value());
            } else {
                break;
            }
        }
        for k in old {
            chunks.remove(k)?;
            stats.chunks_removed += 1;
        }
        dists.retain_in((info.id, i64::MIN)..(info.id, cutoff), |_, _| {
            stats.dist_buckets_removed += 1;
            false
        })?;
    }
    Ok(())
}

/// Merges runs of small closed chunks of series `id` (those of at most half of
/// [`VALUE_BYTES`]) into chunks of about [`VALUE_BYTES`].
fn merge_chunks(
    chunks: &mut redb::Table<(u64, i64), &[u8]>,
    id: u64,
    now_ms: i64,
    stats: &mut CompactStats,
) -> Result<(), StoreError> {
    // Runs of consecutive small chunks: (key, chunk bytes).
    type Run = Vec<((u64, i64), Vec<u8>)>;
    let mut runs: Vec<Run> = Vec::new();
    let mut run: Run = Vec::new();
    for entry in chunks.range((id, i64::MIN)..=(id, i64::MAX))? {
        let (k, v) = entry?;
        let (last, chunk) = split_chunk_value(v.value())?;
        if last >= now_ms - MERGE_AFTER_MS {
            break;
        }
        if chunk.len() > VALUE_BYTES / 2 {
            runs.push(std::mem::take(&mut run));
            continue;
        }
        run.push((k.value(), chunk.to_vec()));
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
            if enc.encoded_len() >= VALUE_BYTES - 16
                || (!enc.is_empty() && t - enc.first_ts() >= MERGED_CHUNK_SPAN_MS)
            {
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
