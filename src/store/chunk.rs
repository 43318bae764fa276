//! A compressed chunk of one series' points, after Facebook's Gorilla paper: timestamps as
//! delta-of-deltas in variable-width buckets, values as the XOR with the previous value,
//! storing only the meaningful bits. Points that repeat both the previous interval and the
//! previous value are written as runs, so a regular series that does not change (a probe
//! every 10 s, a 0/1 "up" value) costs a few bytes per chunk.
//!
//! Layout (version 1): one version byte, the point count as u32 little-endian, then the
//! bit stream, most significant bit first: the first timestamp and value in 64 bits each,
//! then for every further point either `0` and a run length, or `1`, the delta-of-delta and
//! the XOR-encoded value. Decoding never panics: a truncated or corrupt
//! chunk is an error.

/// The layout this code writes and reads.
pub const CHUNK_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("points must be added in time order ({got} ms came after {last} ms)")]
    OutOfOrder { last: i64, got: i64 },
    #[error("a chunk holds at most {MAX_POINTS} points")]
    Full,
    #[error("chunk is truncated or corrupt")]
    Corrupt,
    #[error("chunk has layout version {0}; this sloguard reads version {CHUNK_VERSION}")]
    UnknownVersion(u8),
}

#[derive(Default, Clone)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits not yet moved to `bytes`, most significant first.
    acc: u64,
    /// How many bits of `acc` are used.
    used: u8,
}

impl BitWriter {
    /// Appends the low `bits` bits of `value` (1 to 64).
    fn push(&mut self, value: u64, bits: u8) {
        if bits == 0 {
            return;
        }
        let value = if bits == 64 {
            value
        } else {
            value & ((1u64 << bits) - 1)
        };
        let free = 64 - self.used;
        if bits < free {
            self.acc |= value << (free - bits);
            self.used += bits;
        } else {
            let over = bits - free;
            self.acc |= value >> over;
            self.bytes.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if over == 0 { 0 } else { value << (64 - over) };
            self.used = over;
        }
    }

    /// The bytes written so far, the last one padded with zero bits.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        let tail = usize::from(self.used).div_ceil(8);
        out.extend_from_slice(&self.acc.to_be_bytes()[..tail]);
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    /// Reads `bits` bits (0 to 64), most significant first.
    fn read(&mut self, bits: u8) -> Result<u64, ChunkError> {
        if bits == 0 {
            return Ok(0);
        }
        let end = self.pos + usize::from(bits);
        if end > self.bytes.len() * 8 {
            return Err(ChunkError::Corrupt);
        }
        let first = self.pos / 8;
        let mut buf = [0u8; 16];
        let avail = &self.bytes[first..self.bytes.len().min(first + 16)];
        buf[..avail.len()].copy_from_slice(avail);
        let word = u128::from_be_bytes(buf) << (self.pos % 8);
        self.pos = end;
        Ok((word >> (128 - u32::from(bits))) as u64)
    }

    fn bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.read(1)? == 1)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The most points one chunk holds.
pub const MAX_POINTS: u32 = 1 << 20;

/// The longest run of repeated points one run record holds.
const MAX_RUN: u32 = 1 << 16;

/// Writes a run of `n` (1 to `MAX_RUN`) points that repeat the previous interval and value:
/// `0` and a length in one of three widths.
fn push_run(out: &mut BitWriter, n: u32) {
    let n = u64::from(n - 1);
    out.push(0, 1);
    if n < 8 {
        out.push(0, 1);
        out.push(n, 3);
    } else if n < 128 {
        out.push(0b10, 2);
        out.push(n, 7);
    } else {
        out.push(0b11, 2);
        out.push(n, 16);
    }
}

/// Builds one chunk. Points are appended in time order; [`ChunkEncoder::bytes`] gives the chunk
/// at any moment, so an open chunk can be stored after every commit and appended to later.
#[derive(Default, Clone)]
pub struct ChunkEncoder {
    out: BitWriter,
    count: u32,
    first_ts: i64,
    last_ts: i64,
    last_delta: i64,
    last_bits: u64,
    leading: u8,
    trailing: u8,
    /// Points that repeat the previous interval and value, not yet written.
    run: u32,
}

impl ChunkEncoder {
    pub fn new() -> ChunkEncoder {
        ChunkEncoder::default()
    }

    /// An encoder holding the points of `chunk`, ready to take more.
    pub fn resume(chunk: &[u8]) -> Result<ChunkEncoder, ChunkError> {
        let mut e = ChunkEncoder::new();
        for (t, v) in decode(chunk)? {
            e.push(t, v)?;
        }
        Ok(e)
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The time of the first point (0 when empty).
    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    /// The time of the last point (0 when empty).
    pub fn last_ts(&self) -> i64 {
        self.last_ts
    }

    /// Adds a point; timestamps must not go backwards.
    pub fn push(&mut self, ts: i64, value: f64) -> Result<(), ChunkError> {
        let bits = value.to_bits();
        if self.count == 0 {
            self.out.push(ts as u64, 64);
            self.out.push(bits, 64);
            self.first_ts = ts;
            self.last_ts = ts;
            self.last_bits = bits;
            self.leading = u8::MAX;
            self.count = 1;
            return Ok(());
        }
        if ts < self.last_ts {
            return Err(ChunkError::OutOfOrder {
                last: self.last_ts,
                got: ts,
            });
        }
        if self.count == MAX_POINTS {
            return Err(ChunkError::Full);
        }
        let delta = ts.wrapping_sub(self.last_ts);
        let dod = delta.wrapping_sub(self.last_delta);
        let xor = bits ^ self.last_bits;
        self.count += 1;
        self.last_ts = ts;
        if dod == 0 && xor == 0 {
            self.run += 1;
            if self.run == MAX_RUN {
                push_run(&mut self.out, self.run);
                self.run = 0;
            }
            return Ok(());
        }
        if self.run > 0 {
            push_run(&mut self.out, self.run);
            self.run = 0;
        }
        self.out.push(1, 1);
        match dod {
            0 => self.out.push(0, 1),
            -64..=63 => {
                self.out.push(0b10, 2);
                self.out.push(zigzag(dod), 7);
            }
            -256..=255 => {
                self.out.push(0b110, 3);
                self.out.push(zigzag(dod), 9);
            }
            -2048..=2047 => {
                self.out.push(0b1110, 4);
                self.out.push(zigzag(dod), 12);
            }
            _ => {
                self.out.push(0b1111, 4);
                self.out.push(zigzag(dod), 64);
            }
        }
        self.last_delta = delta;

        if xor == 0 {
            self.out.push(0, 1);
        } else {
            let leading = (xor.leading_zeros() as u8).min(31);
            let trailing = xor.trailing_zeros() as u8;
            if self.leading != u8::MAX && leading >= self.leading && trailing >= self.trailing {
                // Fits in the previous window.
                self.out.push(0b10, 2);
                let len = 64 - self.leading - self.trailing;
                self.out.push(xor >> self.trailing, len);
            } else {
                let len = 64 - leading - trailing;
                self.out.push(0b11, 2);
                self.out.push(u64::from(leading), 5);
                // A length of 64 is written as 0.
                self.out.push(u64::from(len % 64), 6);
                self.out.push(xor >> trailing, len);
                self.leading = leading;
                self.trailing = trailing;
            }
        }
        self.last_bits = bits;
        Ok(())
    }

    /// The size of [`ChunkEncoder::bytes`], give or take two bytes, without building it.
    pub fn encoded_len(&self) -> usize {
        5 + self.out.bytes.len()
            + usize::from(self.out.used).div_ceil(8)
            + if self.run > 0 { 3 } else { 0 }
    }

    /// The chunk's bytes as they stand; the encoder can go on taking points.
    pub fn bytes(&self) -> Vec<u8> {
        let mut body = self.out.clone();
        if self.run > 0 {
            push_run(&mut body, self.run);
        }
        let mut out = Vec::with_capacity(6 + body.bytes.len() + 8);
        out.push(CHUNK_VERSION);
        out.extend_from_slice(&self.count.to_le_bytes());
        body.write_to(&mut out);
        out
    }

    /// The chunk's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes()
    }
}

/// Every point of a chunk, in order.
pub fn decode(chunk: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
    let mut out = Vec::new();
    decode_into(chunk, &mut out)?;
    Ok(out)
}

/// Appends every point of a chunk to `out`, in order.
pub fn decode_into(chunk: &[u8], out: &mut Vec<(i64, f64)>) -> Result<(), ChunkError> {
    let (&version, rest) = chunk.split_first().ok_or(ChunkError::Corrupt)?;
    if version != CHUNK_VERSION {
        return Err(ChunkError::UnknownVersion(version));
    }
    let count_bytes: [u8; 4] = rest
        .get(..4)
        .ok_or(ChunkError::Corrupt)?
        .try_into()
        .map_err(|_| ChunkError::Corrupt)?;
    let count = u32::from_le_bytes(count_bytes) as usize;
    let body = &rest[4..];
    // A run record of 5 to 19 bits holds at most MAX_RUN points; reject counts the body cannot
    // hold, and counts no encoder writes, before allocating for them.
    if count > MAX_POINTS as usize || count > 1 + (body.len() * 8 / 5 + 1) * MAX_RUN as usize {
        return Err(ChunkError::Corrupt);
    }
    let mut r = BitReader {
        bytes: body,
        pos: 0,
    };
    if count == 0 {
        return Ok(());
    }
    out.reserve(count.min(1 << 16));
    let mut ts = r.read(64)? as i64;
    let mut bits = r.read(64)?;
    out.push((ts, f64::from_bits(bits)));
    let (mut delta, mut leading, mut trailing) = (0i64, 0u8, 0u8);
    let mut left = count - 1;
    while left > 0 {
        if !r.bit()? {
            let n = if !r.bit()? {
                r.read(3)?
            } else if !r.bit()? {
                r.read(7)?
            } else {
                r.read(16)?
            } as usize
                + 1;
            if n > left {
                return Err(ChunkError::Corrupt);
            }
            for _ in 0..n {
                ts = ts.wrapping_add(delta);
                out.push((ts, f64::from_bits(bits)));
            }
            left -= n;
            continue;
        }
        let dod = if !r.bit()? {
            0
        } else if !r.bit()? {
            unzigzag(r.read(7)?)
        } else if !r.bit()? {
            unzigzag(r.read(9)?)
        } else if !r.bit()? {
            unzigzag(r.read(12)?)
        } else {
            unzigzag(r.read(64)?)
        };
        delta = delta.wrapping_add(dod);
        ts = ts.wrapping_add(delta);
        if r.bit()? {
            if r.bit()? {
                leading = r.read(5)? as u8;
                let len = match r.read(6)? as u8 {
                    0 => 64,
                    n => n,
                };
                if u16::from(leading) + u16::from(len) > 64 {
                    return Err(ChunkError::Corrupt);
                }
                trailing = 64 - leading - len;
            }
            let len = 64u8
                .checked_sub(leading + trailing)
                .ok_or(ChunkError::Corrupt)?;
            let xor = r
                .read(len)?
                .checked_shl(u32::from(trailing))
                .ok_or(ChunkError::Corrupt)?;
            bits ^= xor;
        }
        out.push((ts, f64::from_bits(bits)));
        left -= 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn roundtrip(points: &[(i64, f64)]) -> Vec<u8> {
        let mut e = ChunkEncoder::new();
        for (t, v) in points {
            e.push(*t, *v).unwrap();
        }
        let bytes = e.finish();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), points.len());
        for (a, b) in back.iter().zip(points) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "{} vs {}", a.1, b.1);
        }
        bytes
    }

    #[test]
    fn every_kind_of_series_comes_back_bit_for_bit() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let start = 1_780_000_000_000i64;
        // Regular 0/1, latencies with noise, float gauges, specials, irregular and huge gaps.
        let up: Vec<(i64, f64)> = (0..1000)
            .map(|i| (start + i * 10_000, if i % 300 == 7 { 0.0 } else { 1.0 }))
            .collect();
        let latency: Vec<(i64, f64)> = (0..1000)
            .map(|i| {
                (
                    start + i * 10_000 + rng.random_range(-30..30),
                    (400.0 * rng.random_range(0.8..1.2f64)).round(),
                )
            })
            .collect();
        let gauge: Vec<(i64, f64)> = (0..1000)
            .map(|i| (start + i * 10_000, rng.random::<f64>() * 1e6 - 5e5))
            .collect();
        let special = vec![
            (start, f64::NAN),
            (start, f64::INFINITY),
            (start + 1, -0.0),
            (start + 5_000_000_000, f64::MIN_POSITIVE),
            (start + 5_000_000_001, f64::MAX),
            (i64::MAX, -1.0),
        ];
        roundtrip(&up);
        roundtrip(&latency);
        roundtrip(&gauge);
        roundtrip(&special);
        roundtrip(&[]);
        roundtrip(&[(-5, 1.5)]);
    }

    #[test]
    fn bucket_edges_of_delta_of_deltas_round_trip() {
        // Regression: a delta-of-delta of +64 overflowed the 7-bit bucket and shifted time.
        let mut points = vec![(0i64, 1.0), (1000, 1.0)];
        let mut t = 1000;
        let mut delta = 1000;
        for dod in [
            64, -64, 63, -65, 255, -256, 256, 2047, -2048, 2048, -2049, 0,
        ] {
            delta += dod;
            t += delta;
            points.push((t, 1.0));
        }
        roundtrip(&points);
    }

    #[test]
    fn a_regular_up_series_costs_a_few_bytes_a_chunk() {
        let points: Vec<(i64, f64)> = (0..10_000)
            .map(|i| {
                (
                    1_780_000_000_000 + i * 10_000,
                    if i == 5000 { 0.0 } else { 1.0 },
                )
            })
            .collect();
        let bytes = roundtrip(&points);
        assert!(bytes.len() <= 40, "{} bytes", bytes.len());
    }

    #[test]
    fn runs_of_every_length_round_trip() {
        for n in [
            1usize, 2, 8, 9, 127, 128, 129, 65_535, 65_536, 65_537, 140_000,
        ] {
            let mut points: Vec<(i64, f64)> = (0..n as i64).map(|i| (i * 1000, 2.5)).collect();
            // A change after the run, then another run with a different interval.
            points.push((n as i64 * 1000 + 7, 3.0));
            for i in 1..10 {
                points.push((n as i64 * 1000 + 7 + i * 500, 3.0));
            }
            roundtrip(&points);
        }
    }

    #[test]
    fn an_open_chunk_can_be_stored_resumed_and_extended() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let points: Vec<(i64, f64)> = (0..500)
            .map(|i| (i * 10_000, if rng.random_bool(0.9) { 1.0 } else { 0.0 }))
            .collect();
        let mut whole = ChunkEncoder::new();
        let mut resumed = ChunkEncoder::new();
        for (i, (t, v)) in points.iter().enumerate() {
            whole.push(*t, *v).unwrap();
            resumed.push(*t, *v).unwrap();
            if i % 37 == 0 {
                resumed = ChunkEncoder::resume(&resumed.bytes()).unwrap();
            }
        }
        assert_eq!(whole.bytes(), resumed.bytes());
        assert_eq!(decode(&resumed.finish()).unwrap(), points);
    }

    #[test]
    fn out_of_order_points_are_refused() {
        let mut e = ChunkEncoder::new();
        e.push(10, 1.0).unwrap();
        assert_eq!(
            e.push(9, 1.0),
            Err(ChunkError::OutOfOrder { last: 10, got: 9 })
        );
    }

    #[test]
    fn corrupt_or_truncated_chunks_are_errors_never_panics() {
        let points: Vec<(i64, f64)> = (0..200)
            .map(|i| (i * 1000, (i % 7) as f64 * 1.25))
            .collect();
        let good = roundtrip(&points);
        for cut in 0..good.len() {
            // Truncated: an error, or (when the cut is at a point boundary) fewer points.
            if let Ok(p) = decode(&good[..cut]) {
                assert!(p.len() <= points.len());
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..2000 {
            let mut bad = good.clone();
            let i = rng.random_range(0..bad.len());
            bad[i] ^= 1 << rng.random_range(0..8);
            let _ = decode(&bad);
            let noise: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            let _ = decode(&noise);
        }
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(ChunkError::UnknownVersion(9)));
    }
}
