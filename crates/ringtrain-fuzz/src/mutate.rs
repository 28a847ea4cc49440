//! Generic byte-level mutators and the PRNG that drives them (splitmix64: no dependency, the
//! same sequence on every platform, so a seed reproduces a run).

/// A small deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; the slight modulo bias does not matter here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Numbers that sit on edges: zero, signs, powers of two, integer limits, float specials.
pub const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "1",
    "-0",
    "255",
    "256",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1e309",
    "-1e309",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "0.0",
    "1.5",
    "99999999999999999999999999999",
];

/// Integers written as binary length fields.
const INTERESTING_INT: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 4,
    u64::MAX,
];

/// One to four stacked mutations of `base`, never longer than [`crate::MAX_INPUT`].
pub fn mutate(base: &[u8], corpus: &[Vec<u8>], dict: &[&[u8]], rng: &mut Rng) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(&mut out, corpus, dict, rng);
        // After every step, not only at the end: stacked growths (a line repeated 64 times,
        // then again) would otherwise reach gigabytes.
        out.truncate(crate::MAX_INPUT);
    }
    out
}

fn mutate_once(out: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]], rng: &mut Rng) {
    let len = out.len();
    match rng.below(12) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        // Set one byte to an edge value or random.
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = [
                0, 0xff, 0x7f, 0x80, b'\n', b'"', b',', b'\t', b'\\', b'{', b'[',
            ][rng.below(11)]
                ^ if rng.below(4) == 0 {
                    rng.next_u64() as u8
                } else {
                    0
                };
        }
        // Delete a range.
        2 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            out.drain(i..i + n);
        }
        // Duplicate a range in place.
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(256));
            let piece = out[i..i + n].to_vec();
            let at = rng.below(len + 1);
            out.splice(at..at, piece);
        }
        // Truncate.
        4 => {
            let n = rng.below(len + 1);
            out.truncate(n);
        }
        // Splice: our head, another corpus entry's tail.
        5 => {
            let other = &corpus[rng.below(corpus.len())];
            let a = rng.below(len + 1);
            let b = rng.below(other.len() + 1);
            out.truncate(a);
            out.extend_from_slice(&other[b..]);
        }
        // Insert a dictionary token.
        6 if !dict.is_empty() => {
            let tok = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            out.splice(at..at, tok.iter().copied());
        }
        // Replace a run of ASCII digits with an edge number.
        7 => replace_number(out, rng),
        // Overwrite 1, 2, 4 or 8 bytes with an edge integer (a length field), either endianness.
        8 if len > 0 => {
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let v = INTERESTING_INT[rng.below(INTERESTING_INT.len())];
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            let bytes = if rng.below(2) == 0 {
                &bytes[..width]
            } else {
                &bytes[8 - width..]
            };
            let at = rng.below(len);
            for (k, b) in bytes.iter().enumerate() {
                if let Some(slot) = out.get_mut(at + k) {
                    *slot = *b;
                }
            }
        }
        // Repeat a line many times (long inputs, many rows).
        9 if len > 0 => {
            let i = rng.below(len);
            let start = out[..i]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let end = out[i..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(len, |p| i + p + 1);
            let line = out[start..end].to_vec();
            let room = crate::MAX_INPUT.saturating_sub(len) / line.len().max(1);
            for _ in 0..(1 + rng.below(64)).min(room) {
                out.splice(end..end, line.iter().copied());
            }
        }
        // Insert random bytes.
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
    }
}

/// Replaces one run of ASCII digits (if any) with an entry of [`INTERESTING_TEXT`].
pub fn replace_number(out: &mut Vec<u8>, rng: &mut Rng) {
    let starts: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_digit()))
        .collect();
    if starts.is_empty() {
        return;
    }
    let s = starts[rng.below(starts.len())];
    let e = (s..out.len())
        .find(|&i| !out[i].is_ascii_digit() && out[i] != b'.')
        .unwrap_or(out.len());
    let v = INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())];
    out.splice(s..e, v.bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutants_and_sizes_bounded() {
        let corpus = vec![b"name = \"x\"\nhidden = 32\n".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..500)
                .map(|_| mutate(&corpus[0], &corpus, &[b"[model]"], &mut rng))
                .collect::<Vec<_>>()
        };
        let a = run(9);
        assert_eq!(a, run(9));
        assert_ne!(a, run(10));
        assert!(a.iter().all(|m| m.len() <= crate::MAX_INPUT));
        assert!(a.iter().any(|m| m != &corpus[0]));
    }
}
