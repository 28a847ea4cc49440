//! Sequence-to-sequence metrics: corpus BLEU-4 (Papineni et al. 2002), token accuracy under
//! teacher forcing, and exact match of greedy decodings.
//!
//! BLEU is a corpus statistic: clipped n-gram matches and candidate n-gram counts (n = 1..4)
//! and the candidate and reference lengths are summed over the whole split, then
//! `BLEU = BP · exp(¼ Σ_n log p_n)` with `p_n = matches_n / candidates_n` and the brevity
//! penalty `BP = 1` if `c > r`, else `exp(1 − r/c)` (`c`, `r`: total candidate and reference
//! lengths; one reference per sentence). Any `p_n = 0` gives BLEU 0 (no smoothing, like
//! sacreBLEU's `smooth_method = "none"`). Because the statistics are sums, shards of a split
//! merge exactly ([`TranslationAccumulator::to_flat`] / [`TranslationAccumulator::from_flat`]).

use super::{MetricsError, flat_count};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::Hash;

/// Summed statistics of a split (or a shard of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranslationAccumulator {
    /// Clipped n-gram matches, n = 1..4.
    pub matches: [u64; 4],
    /// Candidate n-grams, n = 1..4.
    pub candidates: [u64; 4],
    /// Total candidate length in tokens.
    pub hyp_len: u64,
    /// Total reference length in tokens.
    pub ref_len: u64,
    /// Teacher-forced target tokens (`<eos>` included) predicted correctly.
    pub tokens_correct: u64,
    /// Teacher-forced target tokens scored.
    pub tokens: u64,
    /// Sentences whose greedy decoding equals the reference.
    pub exact: u64,
    /// Sentences scored.
    pub sentences: u64,
    /// Clipped n-gram matches of the copy-the-source baseline, n = 1..4.
    pub copy_matches: [u64; 4],
    /// Candidate n-grams of the copy-the-source baseline, n = 1..4.
    pub copy_candidates: [u64; 4],
    /// Total length of the copied sources in tokens.
    pub copy_hyp_len: u64,
}

/// The metrics of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TranslationReport {
    /// Corpus BLEU-4 of the decodings (see `decoder`), in `[0, 1]`.
    pub bleu: f64,
    /// Modified n-gram precisions p_1..p_4.
    pub precisions: [f64; 4],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Total candidate length.
    pub hyp_len: u64,
    /// Total reference length.
    pub ref_len: u64,
    /// Fraction of target tokens predicted correctly under teacher forcing.
    pub token_accuracy: f64,
    /// Fraction of sentences decoded exactly (by `decoder`).
    pub exact_match: f64,
    /// Sentences scored.
    pub sentences: u64,
    /// Corpus BLEU-4 of the trivial baseline that outputs each source sentence unchanged
    /// (tokens compared as strings; words the source vocabulary does not know never match).
    /// Missing in reports written before it existed.
    #[serde(default)]
    pub copy_source_bleu: f64,
    /// The decoder that produced `bleu`, `precisions`, the lengths and `exact_match`:
    /// `"greedy"` or `"beam K"`. Reports written before it existed were greedy.
    #[serde(default = "greedy_decoder")]
    pub decoder: String,
    /// With a beam decoder, the greedy decodings' scores on the same sentences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greedy: Option<GreedyScores>,
}

fn greedy_decoder() -> String {
    "greedy".to_owned()
}

/// BLEU-4 and exact match of greedy decoding, reported next to a beam's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GreedyScores {
    /// Corpus BLEU-4 in `[0, 1]`.
    pub bleu: f64,
    /// Fraction of sentences decoded exactly.
    pub exact_match: f64,
}

fn ngrams<T: Eq + Hash>(seq: &[T], n: usize) -> HashMap<&[T], u64> {
    let mut counts = HashMap::new();
    if seq.len() >= n {
        for g in seq.windows(n) {
            *counts.entry(g).or_insert(0) += 1;
        }
    }
    counts
}

impl TranslationAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one decoded sentence and its reference (BLEU statistics and exact match).
    pub fn add_sentence<T: Eq + Hash>(&mut self, hypothesis: &[T], reference: &[T]) {
        add_ngrams(
            &mut self.matches,
            &mut self.candidates,
            hypothesis,
            reference,
        );
        self.hyp_len += hypothesis.len() as u64;
        self.ref_len += reference.len() as u64;
        self.exact += u64::from(hypothesis == reference);
        self.sentences += 1;
    }

    /// Adds the copy-the-source baseline's output for a sentence that [`Self::add_sentence`]
    /// also adds (the reference length is counted there): `source` compared with `reference`.
    pub fn add_copy_baseline<T: Eq + Hash>(&mut self, source: &[T], reference: &[T]) {
        add_ngrams(
            &mut self.copy_matches,
            &mut self.copy_candidates,
            source,
            reference,
        );
        self.copy_hyp_len += source.len() as u64;
    }

    /// Adds teacher-forced token predictions: `correct` of `total` tokens.
    pub fn add_tokens(&mut self, correct: u64, total: u64) {
        self.tokens_correct += correct;
        self.tokens += total;
    }

    /// The statistics as f64 counts (for a sum across ranks), in a fixed order.
    pub fn to_flat(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.matches.iter().map(|&x| x as f64).collect();
        v.extend(self.candidates.iter().map(|&x| x as f64));
        v.extend(
            [
                self.hyp_len,
                self.ref_len,
                self.tokens_correct,
                self.tokens,
                self.exact,
                self.sentences,
            ]
            .map(|x| x as f64),
        );
        v.extend(self.copy_matches.iter().map(|&x| x as f64));
        v.extend(self.copy_candidates.iter().map(|&x| x as f64));
        v.push(self.copy_hyp_len as f64);
        v
    }

    /// Inverse of [`TranslationAccumulator::to_flat`].
    ///
    /// # Errors
    /// [`MetricsError::FlatLength`] or [`MetricsError::FlatCount`] for a buffer that is not
    /// 23 valid counts.
    pub fn from_flat(flat: &[f64]) -> Result<Self, MetricsError> {
        if flat.len() != 23 {
            return Err(MetricsError::FlatLength {
                expected: 23,
                got: flat.len(),
            });
        }
        let c = |i: usize| flat_count(i, flat[i]);
        Ok(TranslationAccumulator {
            matches: [c(0)?, c(1)?, c(2)?, c(3)?],
            candidates: [c(4)?, c(5)?, c(6)?, c(7)?],
            hyp_len: c(8)?,
            ref_len: c(9)?,
            tokens_correct: c(10)?,
            tokens: c(11)?,
            exact: c(12)?,
            sentences: c(13)?,
            copy_matches: [c(14)?, c(15)?, c(16)?, c(17)?],
            copy_candidates: [c(18)?, c(19)?, c(20)?, c(21)?],
            copy_hyp_len: c(22)?,
        })
    }

    /// The report; ratios over nothing are 0.
    pub fn report(&self) -> TranslationReport {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (bleu, precisions, brevity_penalty) =
            bleu_of(&self.matches, &self.candidates, self.hyp_len, self.ref_len);
        let (copy_source_bleu, ..) = bleu_of(
            &self.copy_matches,
            &self.copy_candidates,
            self.copy_hyp_len,
            self.ref_len,
        );
        TranslationReport {
            copy_source_bleu,
            bleu,
            precisions,
            brevity_penalty,
            hyp_len: self.hyp_len,
            ref_len: self.ref_len,
            token_accuracy: ratio(self.tokens_correct, self.tokens),
            exact_match: ratio(self.exact, self.sentences),
            sentences: self.sentences,
            // The caller names another decoder when it used one.
            decoder: greedy_decoder(),
            greedy: None,
        }
    }
}

/// Adds the clipped n-gram matches and candidate n-grams (n = 1..4) of one sentence.
fn add_ngrams<T: Eq + Hash>(
    matches: &mut [u64; 4],
    candidates: &mut [u64; 4],
    hypothesis: &[T],
    reference: &[T],
) {
    for n in 1..=4 {
        let hyp = ngrams(hypothesis, n);
        let refs = ngrams(reference, n);
        let clipped: u64 = hyp
            .iter()
            .map(|(g, &c)| c.min(refs.get(g).copied().unwrap_or(0)))
            .sum();
        matches[n - 1] += clipped;
        candidates[n - 1] += hypothesis.len().saturating_sub(n - 1) as u64;
    }
}

/// BLEU-4, the precisions p_1..p_4 and the brevity penalty of summed statistics (see the
/// module docs); ratios over nothing are 0.
fn bleu_of(
    matches: &[u64; 4],
    candidates: &[u64; 4],
    hyp_len: u64,
    ref_len: u64,
) -> (f64, [f64; 4], f64) {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precisions = [0, 1, 2, 3].map(|i| ratio(matches[i], candidates[i]));
    let brevity_penalty = if hyp_len == 0 {
        0.0
    } else if hyp_len > ref_len {
        1.0
    } else {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    };
    let bleu = if precisions.contains(&0.0) {
        0.0
    } else {
        brevity_penalty * (precisions.iter().map(|p| p.ln()).sum::<f64>() / 4.0).exp()
    };
    (bleu, precisions, brevity_penalty)
}

/// Corpus BLEU-4 of `hypotheses` against one reference each (see the module docs).
pub fn corpus_bleu<T: Eq + Hash>(hypotheses: &[Vec<T>], references: &[Vec<T>]) -> f64 {
    let mut acc = TranslationAccumulator::new();
    for (h, r) in hypotheses.iter().zip(references) {
        acc.add_sentence(h, r);
    }
    acc.report().bleu
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// Worked by hand.
    ///
    /// Sentence 1: hyp "the cat sat on the mat" (6), ref "the cat is on the mat" (6).
    ///   1-grams: the×2, cat, sat, on, mat vs ref the×2, cat, is, on, mat → 5 of 6;
    ///   2-grams: the cat ✓, cat sat ✗, sat on ✗, on the ✓, the mat ✓ → 3 of 5;
    ///   3-grams: the cat sat ✗, cat sat on ✗, sat on the ✗, on the mat ✓ → 1 of 4;
    ///   4-grams: none of 3 match → 0 of 3.
    /// Sentence 2: hyp "a b c d" (4), ref "a b c d e" (5): 4/4, 3/3, 2/2, 1/1.
    /// Corpus: p = 9/10, 6/8, 3/6, 1/4; c = 10, r = 11, BP = exp(1 − 11/10) = exp(−0.1).
    /// BLEU = exp(−0.1) · (0.9 · 0.75 · 0.5 · 0.25)^(1/4) = exp(−0.1) · 0.084375^(1/4)
    ///      = 0.904837 · 0.538956 = 0.487668.
    #[test]
    fn corpus_bleu_matches_a_hand_computed_example() {
        let hyps = vec![words("the cat sat on the mat"), words("a b c d")];
        let refs = vec![words("the cat is on the mat"), words("a b c d e")];
        let mut acc = TranslationAccumulator::new();
        for (h, r) in hyps.iter().zip(&refs) {
            acc.add_sentence(h, r);
        }
        assert_eq!(acc.matches, [9, 6, 3, 1]);
        assert_eq!(acc.candidates, [10, 8, 6, 4]);
        let r = acc.report();
        assert!((r.brevity_penalty - (-0.1f64).exp()).abs() < 1e-12);
        let expected = (-0.1f64).exp() * (0.9f64 * 0.75 * 0.5 * 0.25).powf(0.25);
        assert!((r.bleu - expected).abs() < 1e-12, "{}", r.bleu);
        assert!((r.bleu - 0.487668).abs() < 1e-6, "{}", r.bleu);
        assert_eq!(r.exact_match, 0.0);
        assert_eq!(corpus_bleu(&hyps, &refs), r.bleu);
    }

    #[test]
    fn clipping_identity_and_missing_ngrams() {
        // "the the the the" against "the cat": unigram matches clipped to 1 of 4.
        let mut acc = TranslationAccumulator::new();
        acc.add_sentence(&words("the the the the"), &words("the cat"));
        assert_eq!(acc.matches[0], 1);
        assert_eq!(acc.report().bleu, 0.0);
        let s = words("one two three four five");
        let one = std::slice::from_ref(&s);
        assert!((corpus_bleu(one, one) - 1.0).abs() < 1e-12);
        let mut exact = TranslationAccumulator::new();
        exact.add_sentence(&s, &s);
        exact.add_tokens(3, 4);
        let flat = exact.to_flat();
        assert_eq!(TranslationAccumulator::from_flat(&flat), Ok(exact.clone()));
        assert_eq!(exact.report().exact_match, 1.0);
        assert_eq!(exact.report().token_accuracy, 0.75);
        assert!(TranslationAccumulator::from_flat(&flat[1..]).is_err());
    }

    #[test]
    fn the_copy_baseline_scores_the_source_against_the_reference_and_merges() {
        let mut acc = TranslationAccumulator::new();
        let (src, reference) = (
            words("the cat sat on the mat"),
            words("the cat sat on a mat"),
        );
        acc.add_sentence(&words("x"), &reference);
        acc.add_copy_baseline(&src, &reference);
        // p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, same length: BP = 1.
        let want = (5.0f64 / 6.0 * 3.0 / 5.0 * 2.0 / 4.0 * 1.0 / 3.0).powf(0.25);
        let report = acc.report();
        assert!((report.copy_source_bleu - want).abs() < 1e-12, "{report:?}");
        assert_eq!(report.bleu, 0.0, "the model's own BLEU is separate");
        let back = TranslationAccumulator::from_flat(&acc.to_flat()).unwrap();
        assert_eq!(back, acc);
    }
}
