//! Compressed chunks of one series: delta-of-delta timestamps and XOR'd
//! floating-point values, after Pelkonen et al., "Gorilla: A Fast, Scalable,
//! In-Memory Time Series Database" (VLDB 2015), section 4.1.
//!
//! Regular 1 Hz readings cost one bit per timestamp (the delta of deltas is
//! zero) and, for vital signs that move by whole units, around ten bits per
//! value, so a chunk of a few hundred points stays under 2 bytes a sample.
//! The timestamp buckets are widened from the paper's (which assume seconds)
//! because medmesh keeps milliseconds.

use crate::head::Point;

/// Appends bits, most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = the last byte is full or absent).
    used: u8,
}

impl BitWriter {
    fn push(&mut self, value: u64, bits: u8) {
        debug_assert!(bits <= 64);
        let mut remaining = bits;
        while remaining > 0 {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let free = 8 - self.used;
            let take = free.min(remaining);
            // The next `take` bits of `value`, from the most significant unwritten one.
            let chunk = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (free - take);
            self.used = (self.used + take) % 8;
            remaining -= take;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u8) -> Option<u64> {
        if self.pos + usize::from(bits) > self.bytes.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        let mut remaining = usize::from(bits);
        while remaining > 0 {
            let byte = self.bytes[self.pos / 8];
            let avail = 8 - self.pos % 8;
            let take = avail.min(remaining);
            let chunk = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            // `take` < 64 always, and v holds at most 64 - take bits here.
            v = (v << take) | chunk;
            self.pos += take;
            remaining -= take;
        }
        Some(v)
    }

    fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

/// Delta-of-delta buckets: (control prefix, prefix length, value bits).
const DOD_BUCKETS: [(u64, u8, u8); 4] = [
    (0b10, 2, 7),
    (0b110, 3, 10),
    (0b1110, 4, 14),
    (0b11110, 5, 32),
];

fn fits(v: i64, bits: u8) -> bool {
    let half = 1i64 << (bits - 1);
    (-half..half).contains(&v)
}

/// Encodes points (sorted by time, distinct timestamps) into a chunk.
pub(crate) fn encode(points: &[Point]) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.push(points.len() as u64, 32);
    let Some(first) = points.first() else {
        return w.bytes;
    };
    w.push(first.time_ms as u64, 64);
    w.push(first.value.to_bits(), 64);
    let (mut prev_t, mut prev_delta) = (first.time_ms, 0i64);
    let mut prev_v = first.value.to_bits();
    let (mut lead, mut trail) = (u8::MAX, 0u8);
    for p in &points[1..] {
        let delta = p.time_ms.wrapping_sub(prev_t);
        let dod = delta.wrapping_sub(prev_delta);
        if dod == 0 {
            w.push(0, 1);
        } else if let Some((prefix, plen, bits)) =
            DOD_BUCKETS.iter().copied().find(|b| fits(dod, b.2))
        {
            w.push(prefix, plen);
            w.push(dod as u64 & ((1u64 << bits) - 1), bits);
        } else {
            w.push(0b11111, 5);
            w.push(dod as u64, 64);
        }
        (prev_t, prev_delta) = (p.time_ms, delta);

        let bits = p.value.to_bits();
        let xor = bits ^ prev_v;
        prev_v = bits;
        if xor == 0 {
            w.push(0, 1);
            continue;
        }
        let l = (xor.leading_zeros() as u8).min(31);
        let t = xor.trailing_zeros() as u8;
        if lead != u8::MAX && l >= lead && t >= trail {
            // The meaningful bits fit in the previous window.
            w.push(0b10, 2);
            w.push(xor >> trail, 64 - lead - trail);
        } else {
            let meaningful = 64 - l - t;
            w.push(0b11, 2);
            w.push(u64::from(l), 5);
            // 64 meaningful bits do not fit in 6 bits; 0 stands for 64.
            w.push(u64::from(meaningful % 64), 6);
            w.push(xor >> t, meaningful);
            (lead, trail) = (l, t);
        }
    }
    w.bytes
}

/// Decodes a chunk; `None` if the bytes are not a whole chunk.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<Point>> {
    let mut r = BitReader { bytes, pos: 0 };
    let count = r.read(32)? as usize;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    if count == 0 {
        return Some(out);
    }
    let mut t = r.read(64)? as i64;
    let mut v = r.read(64)?;
    out.push(Point {
        time_ms: t,
        value: f64::from_bits(v),
    });
    let mut delta = 0i64;
    let (mut lead, mut trail) = (0u8, 0u8);
    for _ in 1..count {
        let dod = if !r.bit()? {
            0
        } else {
            let mut ones = 1;
            while ones < 5 && r.bit()? {
                ones += 1;
            }
            if ones == 5 {
                r.read(64)? as i64
            } else {
                let bits = DOD_BUCKETS[ones - 1].2;
                let raw = r.read(bits)?;
                // Sign-extend the `bits`-wide two's complement value.
                ((raw << (64 - bits)) as i64) >> (64 - bits)
            }
        };
        delta = delta.wrapping_add(dod);
        t = t.wrapping_add(delta);

        if r.bit()? {
            if r.bit()? {
                lead = r.read(5)? as u8;
                let meaningful = match r.read(6)? as u8 {
                    0 => 64,
                    m => m,
                };
                trail = 64u8.checked_sub(lead + meaningful)?;
            }
            let meaningful = 64 - lead - trail;
            v ^= r.read(meaningful)? << trail;
        }
        out.push(Point {
            time_ms: t,
            value: f64::from_bits(v),
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(points: &[Point]) -> usize {
        let bytes = encode(points);
        assert_eq!(decode(&bytes).unwrap(), points);
        bytes.len()
    }

    fn p(t: i64, v: f64) -> Point {
        Point {
            time_ms: t,
            value: v,
        }
    }

    #[test]
    fn empty_and_single_point_chunks() {
        round_trip(&[]);
        round_trip(&[p(1_700_000_000_000, 72.0)]);
    }

    #[test]
    fn regular_1_hz_vitals_cost_under_two_bytes_a_sample() {
        // Heart rate wandering by whole beats, one reading a second.
        let mut hr = 72.0;
        let points: Vec<_> = (0..240)
            .map(|i| {
                hr += [0.0, 1.0, -1.0, 0.0, 2.0, -2.0][i % 6];
                p(1_700_000_000_000 + i as i64 * 1000, hr)
            })
            .collect();
        let bytes = round_trip(&points);
        assert!((bytes as f64 / 240.0) < 2.0, "{bytes} bytes for 240 points");
    }

    #[test]
    fn irregular_times_and_awkward_values_round_trip_exactly() {
        let mut t = 1_700_000_000_000i64;
        let deltas = [1000, 1003, 997, 60_000, 1, 5_000_000_000, 1000, -3, 1000];
        let values = [
            36.6,
            36.7,
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            1e-300,
            f64::MIN_POSITIVE,
            f64::MAX,
            98.0,
        ];
        let mut points = vec![p(t, values[0])];
        for (i, d) in deltas.iter().enumerate() {
            t += d;
            points.push(p(t, values[i + 1]));
        }
        let bytes = encode(&points);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.len(), points.len());
        for (a, b) in back.iter().zip(&points) {
            assert_eq!(a.time_ms, b.time_ms);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
        }
    }

    #[test]
    fn truncated_chunks_are_rejected_not_misread() {
        let points: Vec<_> = (0..50).map(|i| p(i * 1000, f64::from(i as i32))).collect();
        let bytes = encode(&points);
        for cut in 0..bytes.len() - 1 {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
    }
}
