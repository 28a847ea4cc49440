//! Seeded sequence-to-sequence toy tasks on digit strings: reverse a string, or sort its
//! digits. Both are solvable exactly from the source alone and need attention over every
//! source position, which makes them the classic smoke tests of an attentional decoder.

use crate::order::{below, chacha};
use std::fmt::Write as _;

/// Which transformation maps a source digit string to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitTask {
    /// Target = the source reversed (`"3141"` → `"1413"`).
    Reverse,
    /// Target = the source's digits in ascending order (`"3141"` → `"1134"`).
    Sort,
}

impl DigitTask {
    /// The target of `source` (a string of ASCII digits).
    pub fn apply(self, source: &str) -> String {
        match self {
            DigitTask::Reverse => source.chars().rev().collect(),
            DigitTask::Sort => {
                let mut c: Vec<char> = source.chars().collect();
                c.sort_unstable();
                c.into_iter().collect()
            }
        }
    }
}

/// `n` pairs `(source, target)` of random digit strings with lengths uniform in
/// `min_len..=max_len`, drawn from ChaCha8 seeded by `seed`.
pub fn digit_pairs(
    task: DigitTask,
    n: usize,
    min_len: usize,
    max_len: usize,
    seed: u64,
) -> Vec<(String, String)> {
    let mut rng = chacha(seed, 7);
    let span = (max_len.max(min_len) - min_len + 1) as u64;
    (0..n)
        .map(|_| {
            let len = min_len + below(&mut rng, span) as usize;
            let source: String = (0..len)
                .map(|_| char::from(b'0' + below(&mut rng, 10) as u8))
                .collect();
            let target = task.apply(&source);
            (source, target)
        })
        .collect()
}

/// Pairs as a TSV file with the header `source<TAB>target`.
pub fn pairs_tsv(pairs: &[(String, String)]) -> String {
    let mut out = String::from("source\ttarget\n");
    for (s, t) in pairs {
        let _ = writeln!(out, "{s}\t{t}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_task_and_lengths_span_the_range() {
        let pairs = digit_pairs(DigitTask::Sort, 500, 3, 12, 1);
        let lengths: std::collections::BTreeSet<usize> = pairs.iter().map(|p| p.0.len()).collect();
        assert_eq!(lengths, (3..=12).collect());
        for (s, t) in &pairs {
            let mut c: Vec<char> = s.chars().collect();
            c.sort_unstable();
            assert_eq!(*t, c.into_iter().collect::<String>());
        }
        assert_eq!(DigitTask::Reverse.apply("3141"), "1413");
        assert_eq!(
            digit_pairs(DigitTask::Reverse, 20, 3, 5, 9),
            digit_pairs(DigitTask::Reverse, 20, 3, 5, 9)
        );
    }
}
