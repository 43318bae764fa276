//! Summaries of many values: a [`Bucket`] holds count, sum, min, max and last of the values in
//! one time interval and, for distribution series, a DDSketch of them, so that percentiles over
//! any window are merges of buckets. Rollup tiers and the raw intervals of distribution series
//! are buckets; this module also owns their on-disk encodings.
//!
//! The sketch is `sketches-ddsketch`'s DDSketch with relative accuracy 1 %: a quantile it
//! returns is within 1 % of a value whose rank is the requested one. It is stored in the
//! DataDog binary format that the crate reads and writes (`to_java_bytes`).

use sketches_ddsketch::{Config, DDSketch};

use super::chunk::{self, ChunkEncoder, ChunkError};

/// Relative accuracy of every stored sketch.
pub const SKETCH_ACCURACY: f64 = 0.01;

/// The layout this code writes and reads for a single bucket and for a block of buckets.
const BUCKET_VERSION: u8 = 1;

fn sketch_config() -> Config {
    Config::new(SKETCH_ACCURACY, 2048, 1.0e-9)
}

/// A new, empty sketch with the store's accuracy.
pub fn new_sketch() -> DDSketch {
    DDSketch::new(sketch_config())
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("bucket record is truncated or corrupt")]
    Corrupt,
    #[error("bucket record has layout version {0}; this sloguard reads version {BUCKET_VERSION}")]
    UnknownVersion(u8),
    #[error("a column of a bucket block: {0}")]
    Chunk(#[from] ChunkError),
}

/// A summary of the values of one series in `[start, start + step)`.
#[derive(Clone)]
pub struct Bucket {
    pub start: i64,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// The last value in time order.
    pub last: f64,
    /// For distribution series: every value, to 1 % relative accuracy.
    pub sketch: Option<Box<DDSketch>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("start", &self.start)
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("last", &self.last)
            .field("sketch", &self.sketch.as_ref().map(|s| s.count()))
            .finish()
    }
}

impl Bucket {
    /// An empty bucket; `with_sketch` for distribution series.
    pub fn empty(start: i64, with_sketch: bool) -> Bucket {
        Bucket {
            start,
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: f64::NAN,
            sketch: with_sketch.then(|| Box::new(new_sketch())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0.0
    }

    /// Adds one value (later in time than those already in).
    pub fn observe(&mut self, value: f64) {
        self.count += 1.0;
        self.sum += value;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.last = value;
        if let Some(s) = &mut self.sketch {
            s.add(value);
        }
    }

    /// A distribution bucket of `n` observations of `value`, as `n` calls of `observe` make
    /// it, at the cost of one.
    pub fn repeated(start: i64, value: f64, n: u64) -> Bucket {
        let mut b = Bucket::empty(start, true);
        if n == 0 {
            return b;
        }
        b.count = n as f64;
        b.sum = value * n as f64;
        b.min = value;
        b.max = value;
        b.last = value;
        if let Some(s) = &mut b.sketch {
            s.add_with_count(value, n);
        }
        b
    }

    /// Adds the count, sum, min, max and last of `later`, a bucket of the same series that
    /// comes after this one, leaving the sketch alone.
    pub fn merge_stats(&mut self, later: &Bucket) {
        if later.is_empty() {
            return;
        }
        self.count += later.count;
        self.sum += later.sum;
        self.min = self.min.min(later.min);
        self.max = self.max.max(later.max);
        self.last = later.last;
    }

    /// Adds the values of `later`, a bucket of the same series that comes after this one.
    pub fn merge(&mut self, later: &Bucket) {
        if later.is_empty() {
            return;
        }
        let first = self.is_empty();
        self.merge_stats(later);
        match (&mut self.sketch, &later.sketch) {
            (Some(mine), Some(theirs)) => {
                // Both were made with `sketch_config`, so the merge cannot fail.
                let _ = mine.merge(theirs);
            }
            (None, Some(theirs)) if first => {
                self.sketch = Some(theirs.clone());
            }
            _ => {}
        }
    }

    /// The encoding of one bucket of a distribution series: version, last, then the sketch.
    pub fn encode_single(&self) -> Vec<u8> {
        let mut out = vec![BUCKET_VERSION];
        out.extend_from_slice(&self.last.to_le_bytes());
        if let Some(s) = &self.sketch {
            out.extend_from_slice(&s.to_java_bytes());
        }
        out
    }

    pub fn decode_single(start: i64, bytes: &[u8]) -> Result<Bucket, BucketError> {
        let (&v, rest) = bytes.split_first().ok_or(BucketError::Corrupt)?;
        if v != BUCKET_VERSION {
            return Err(BucketError::UnknownVersion(v));
        }
        let last = f64::from_le_bytes(
            rest.get(..8)
                .ok_or(BucketError::Corrupt)?
                .try_into()
                .map_err(|_| BucketError::Corrupt)?,
        );
        let sketch_bytes = &rest[8..];
        if sketch_bytes.is_empty() {
            return Ok(Bucket::empty(start, true));
        }
        let sketch = decode_sketch(sketch_bytes)?;
        Ok(Bucket {
            start,
            count: sketch.count() as f64,
            sum: sketch.sum().unwrap_or(0.0),
            min: sketch.min().unwrap_or(f64::INFINITY),
            max: sketch.max().unwrap_or(f64::NEG_INFINITY),
            last,
            sketch: Some(Box::new(sketch)),
        })
    }
}

fn decode_sketch(bytes: &[u8]) -> Result<DDSketch, BucketError> {
    // The decoder is third-party code; a corrupt record must not take the store down.
    let decoded = std::panic::catch_unwind(|| DDSketch::from_java_bytes(bytes))
        .map_err(|_| BucketError::Corrupt)?
        .map_err(|_| BucketError::Corrupt)?;
    // Re-home the values in a sketch of our own configuration so that merges always match.
    let mut sketch = new_sketch();
    sketch.merge(&decoded).map_err(|_| BucketError::Corrupt)?;
    Ok(sketch)
}

/// Encodes buckets in time order as a block: version, count, five columns (min, max, sum,
/// count, last) each a chunk of (bucket start, value), then, when any bucket has one, the
/// sketches, each with its length.
pub fn encode_block(buckets: &[Bucket]) -> Result<Vec<u8>, BucketError> {
    let mut builder = BlockBuilder::default();
    for b in buckets {
        builder.push(b)?;
    }
    Ok(builder.finish())
}

/// Builds a block a bucket at a time, knowing its size as it goes.
#[derive(Default)]
pub struct BlockBuilder {
    columns: [ChunkEncoder; 5],
    sketches: Vec<Vec<u8>>,
    sketch_bytes: usize,
    any_sketch: bool,
}

impl BlockBuilder {
    pub fn push(&mut self, b: &Bucket) -> Result<(), BucketError> {
        for (column, value) in self
            .columns
            .iter_mut()
            .zip([b.min, b.max, b.sum, b.count, b.last])
        {
            column.push(b.start, value)?;
        }
        let bytes = b
            .sketch
            .as_ref()
            .map(|s| s.to_java_bytes())
            .unwrap_or_default();
        self.any_sketch |= !bytes.is_empty();
        self.sketch_bytes += 4 + bytes.len();
        self.sketches.push(bytes);
        Ok(())
    }

    /// How many buckets it holds.
    pub fn len(&self) -> u32 {
        self.columns[0].len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The start of its first bucket.
    pub fn first_start(&self) -> i64 {
        self.columns[0].first_ts()
    }

    /// The start of its last bucket.
    pub fn last_start(&self) -> i64 {
        self.columns[0].last_ts()
    }

    /// The size `finish` would return, give or take a few bytes.
    pub fn encoded_len(&self) -> usize {
        6 + self
            .columns
            .iter()
            .map(|c| 4 + c.encoded_len())
            .sum::<usize>()
            + if self.any_sketch {
                self.sketch_bytes
            } else {
                0
            }
    }

    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() + 8);
        out.push(BUCKET_VERSION);
        out.extend_from_slice(&self.len().to_le_bytes());
        for column in self.columns {
            let bytes = column.finish();
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        out.push(u8::from(self.any_sketch));
        if self.any_sketch {
            for bytes in self.sketches {
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        out
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BucketError> {
        if self.0.len() < n {
            return Err(BucketError::Corrupt);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<usize, BucketError> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| BucketError::Corrupt)?;
        Ok(u32::from_le_bytes(b) as usize)
    }
}

pub fn decode_block(bytes: &[u8]) -> Result<Vec<Bucket>, BucketError> {
    decode_block_in(bytes, i64::MIN, i64::MAX)
}

/// The buckets of a block that start in `[from, to)`; sketches of the others are skipped
/// without being decoded.
pub fn decode_block_in(bytes: &[u8], from: i64, to: i64) -> Result<Vec<Bucket>, BucketError> {
    let mut c = Cursor(bytes);
    let v = c.take(1)?[0];
    if v != BUCKET_VERSION {
        return Err(BucketError::UnknownVersion(v));
    }
    let n = c.u32()?;
    let mut columns = Vec::with_capacity(5);
    for _ in 0..5 {
        let len = c.u32()?;
        let points = chunk::decode(c.take(len)?)?;
        if points.len() != n {
            return Err(BucketError::Corrupt);
        }
        columns.push(points);
    }
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            start: columns[0][i].0,
            min: columns[0][i].1,
            max: columns[1][i].1,
            sum: columns[2][i].1,
            count: columns[3][i].1,
            last: columns[4][i].1,
            sketch: None,
        })
        .collect();
    if c.take(1)?[0] == 1 {
        for b in &mut out {
            let len = c.u32()?;
            let bytes = c.take(len)?;
            if !bytes.is_empty() && b.start >= from && b.start < to {
                b.sketch = Some(Box::new(decode_sketch(bytes)?));
            }
        }
    }
    out.retain(|b| b.start >= from && b.start < to);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn a_repeated_value_is_the_same_bucket_as_observing_it_each_time() {
        let mut each = Bucket::empty(10_000, true);
        for _ in 0..1234 {
            each.observe(1.0);
        }
        let once = Bucket::repeated(10_000, 1.0, 1234);
        assert_eq!(once.encode_single(), each.encode_single());
        assert_eq!(
            (once.count, once.sum, once.min, once.max, once.last),
            (each.count, each.sum, each.min, each.max, each.last)
        );
        assert!(Bucket::repeated(0, 1.0, 0).is_empty());
    }

    #[test]
    fn merged_sketches_answer_percentiles_within_one_percent() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut all: Vec<f64> = Vec::new();
        let mut total = Bucket::empty(0, true);
        for i in 0..100 {
            let mut b = Bucket::empty(i * 10_000, true);
            for _ in 0..200 {
                // A long-tailed latency: mostly 50-300 ms, sometimes seconds.
                let v = if rng.random_bool(0.03) {
                    rng.random_range(1000.0..8000.0)
                } else {
                    rng.random_range(50.0..300.0f64).round()
                };
                b.observe(v);
                all.push(v);
            }
            // Through the on-disk form, as the store does.
            let back = Bucket::decode_single(b.start, &b.encode_single()).unwrap();
            total.merge(&back);
        }
        all.sort_by(f64::total_cmp);
        for q in [0.5, 0.95, 0.99] {
            let exact = all[((q * all.len() as f64).ceil() as usize).saturating_sub(1)];
            let got = total.sketch.as_ref().unwrap().quantile(q).unwrap().unwrap();
            assert!(
                (got - exact).abs() <= exact * 0.01 + 1e-9,
                "p{q}: sketch {got}, exact {exact}"
            );
        }
        assert_eq!(total.count, 20_000.0);
        assert_eq!(total.max, all[all.len() - 1]);
        assert_eq!(total.min, all[0]);
    }

    #[test]
    fn blocks_round_trip_with_and_without_sketches() {
        let mut gauge = Vec::new();
        let mut dist = Vec::new();
        for i in 0..1440 {
            let mut g = Bucket::empty(i * 60_000, false);
            let mut d = Bucket::empty(i * 60_000, true);
            for j in 0..6 {
                g.observe(if (i + j) % 97 == 0 { 0.0 } else { 1.0 });
                d.observe((100 + (i * 7 + j) % 50) as f64);
            }
            gauge.push(g);
            dist.push(d);
        }
        let bytes = encode_block(&gauge).unwrap();
        // A steady 0/1 series: a day of one-minute buckets in little space.
        assert!(bytes.len() < 800, "{} bytes", bytes.len());
        let back = decode_block(&bytes).unwrap();
        assert_eq!(back.len(), 1440);
        assert_eq!(back[0].start, 0);
        assert_eq!(back[97].min, 0.0);
        assert_eq!(back[97].sum, gauge[97].sum);
        assert!(back[5].sketch.is_none());
        let back = decode_block(&encode_block(&dist).unwrap()).unwrap();
        assert_eq!(back[10].count, 6.0);
        assert_eq!(back[10].sketch.as_ref().unwrap().count(), 6);
    }

    #[test]
    fn corrupt_records_are_errors_never_panics() {
        let mut b = Bucket::empty(0, true);
        for v in [1.0, 5.0, 300.0] {
            b.observe(v);
        }
        let good = b.encode_single();
        let block = encode_block(&[b.clone(), b]).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for _ in 0..2000 {
            for src in [&good, &block] {
                let mut bad = src.clone();
                let i = rng.random_range(0..bad.len());
                bad[i] ^= 1 << rng.random_range(0..8);
                let cut = rng.random_range(0..bad.len());
                let _ = Bucket::decode_single(0, &bad);
                let _ = Bucket::decode_single(0, &bad[..cut]);
                let _ = decode_block(&bad);
                let _ = decode_block(&bad[..cut]);
            }
        }
    }

    /// Found by the `chunk` fuzz target: a block whose sketch makes the DDSketch decoder
    /// panic. The panic is caught and the record is corrupt.
    #[test]
    fn a_sketch_that_panics_its_decoder_is_a_corrupt_record() {
        let bytes = include_bytes!("../../tests/fixtures/fuzz/chunk/ddsketch-panic-caught");
        let results = [
            decode_block(bytes).map(|_| ()),
            decode_block_in(bytes, 0, i64::MAX).map(|_| ()),
            Bucket::decode_single(1_700_000_000_000, bytes).map(|_| ()),
        ];
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(BucketError::Corrupt))),
            "{results:?}"
        );
    }
}
