//! A compressed chunk of one series' points, after Facebook's Gorilla paper: timestamps as
//! delta-of-deltas in variable-width buckets, values as the XOR with the previous value,
//! storing only the meaningful bits. A regular series (a probe every 10 s, a 0/1 "up" value)
//! costs about two bits a point.
//!
//! Layout (version 1): one version byte, the point count as u32 little-endian, then the
//! bit stream, most significant bit first. Decoding never panics: a truncated or corrupt
//! chunk is an error.

/// The layout this code writes and reads.
pub const CHUNK_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("points must be added in time order ({got} ms came after {last} ms)")]
    OutOfOrder { last: i64, got: i64 },
    #[error("chunk is truncated or corrupt")]
    Corrupt,
    #[error("chunk has layout version {0}; this sloguard reads version {CHUNK_VERSION}")]
    UnknownVersion(u8),
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or there is none).
    used: u8,
}

impl BitWriter {
    fn push(&mut self, value: u64, bits: u8) {
        for i in (0..bits).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u8) -> Result<u64, ChunkError> {
        let mut out = 0u64;
        for _ in 0..bits {
            let byte = self.bytes.get(self.pos / 8).ok_or(ChunkError::Corrupt)?;
            let bit = (byte >> (7 - (self.pos % 8))) & 1;
            out = (out << 1) | u64::from(bit);
            self.pos += 1;
        }
        Ok(out)
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

/// Builds one chunk.
#[derive(Default)]
pub struct ChunkEncoder {
    out: BitWriter,
    count: u32,
    last_ts: i64,
    last_delta: i64,
    last_bits: u64,
    leading: u8,
    trailing: u8,
}

impl ChunkEncoder {
    pub fn new() -> ChunkEncoder {
        ChunkEncoder::default()
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a point; timestamps must not go backwards.
    pub fn push(&mut self, ts: i64, value: f64) -> Result<(), ChunkError> {
        let bits = value.to_bits();
        if self.count == 0 {
            self.out.push(ts as u64, 64);
            self.out.push(bits, 64);
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
        let delta = ts.wrapping_sub(self.last_ts);
        let dod = delta.wrapping_sub(self.last_delta);
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
        self.last_ts = ts;

        let xor = bits ^ self.last_bits;
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
        self.count += 1;
        Ok(())
    }

    /// The chunk's bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + self.out.bytes.len());
        out.push(CHUNK_VERSION);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.out.bytes);
        out
    }
}

/// Every point of a chunk, in order.
pub fn decode(chunk: &[u8]) -> Result<Vec<(i64, f64)>, ChunkError> {
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
    // Every point after the first takes at least two bits; reject counts the body cannot hold
    // before allocating for them.
    if count > 1 + body.len() * 4 {
        return Err(ChunkError::Corrupt);
    }
    let mut r = BitReader {
        bytes: body,
        pos: 0,
    };
    let mut out = Vec::with_capacity(count);
    if count == 0 {
        return Ok(out);
    }
    let mut ts = r.read(64)? as i64;
    let mut bits = r.read(64)?;
    out.push((ts, f64::from_bits(bits)));
    let (mut delta, mut leading, mut trailing) = (0i64, 0u8, 0u8);
    for _ in 1..count {
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
    }
    Ok(out)
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
    fn a_regular_up_series_costs_about_two_bits_a_point() {
        let points: Vec<(i64, f64)> = (0..10_000)
            .map(|i| (1_780_000_000_000 + i * 10_000, 1.0))
            .collect();
        let bytes = roundtrip(&points);
        let per_point = bytes.len() as f64 / points.len() as f64;
        assert!(per_point <= 0.26, "{per_point} bytes per point");
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
