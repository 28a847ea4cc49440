//! Language-model metrics: mean cross-entropy per token (nats), perplexity `exp(loss)`, bits per
//! token `loss / ln 2` (bits per character for a character model), top-1 next-token accuracy,
//! and the same loss for the unigram baseline (the train split's token frequencies, add-one
//! smoothed) — what a model that ignores context scores.

use super::{MetricsError, flat_count};
use serde::{Deserialize, Serialize};

/// Sums over scored tokens; mergeable across ranks through [`LmAccumulator::to_flat`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LmAccumulator {
    /// Σ −ln p(target) of the model.
    pub loss_sum: f64,
    /// Σ −ln q(target) of the unigram baseline.
    pub unigram_sum: f64,
    /// Tokens scored.
    pub tokens: u64,
    /// Tokens whose most likely prediction was the target.
    pub correct: u64,
}

impl LmAccumulator {
    /// Scores one batch: `logits` `[n, vocab]` row-major against `targets` `[n]`, with the
    /// unigram baseline's log-probabilities `unigram_logp` `[vocab]`. The model's
    /// log-probabilities are computed in f64 (a stable log-sum-exp per row).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] when the shapes disagree; a target outside the
    /// vocabulary is reported the same way (as `target id`).
    pub fn add(
        &mut self,
        logits: &[f32],
        targets: &[u32],
        unigram_logp: &[f64],
    ) -> Result<(), MetricsError> {
        let vocab = unigram_logp.len();
        if logits.len() != targets.len() * vocab {
            return Err(MetricsError::LengthMismatch {
                what: "logits",
                expected: targets.len() * vocab,
                got: logits.len(),
            });
        }
        for (row, &target) in logits.chunks_exact(vocab.max(1)).zip(targets) {
            let t = target as usize;
            if t >= vocab {
                return Err(MetricsError::LengthMismatch {
                    what: "target id",
                    expected: vocab,
                    got: t,
                });
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
            let logp = f64::from(row[t] - max) - sum.ln();
            self.loss_sum -= logp;
            self.unigram_sum -= unigram_logp[t];
            self.tokens += 1;
            // The first maximum wins ties, like `evaluate::argmax`.
            let best = row.iter().position(|&v| v == max).unwrap_or(0);
            self.correct += u64::from(best == t);
        }
        Ok(())
    }

    /// The flat form for a summing all-reduce: `[loss_sum, unigram_sum, tokens, correct]`.
    pub fn to_flat(&self) -> Vec<f64> {
        vec![
            self.loss_sum,
            self.unigram_sum,
            self.tokens as f64,
            self.correct as f64,
        ]
    }

    /// Rebuilds an accumulator from a (summed) flat buffer written by [`Self::to_flat`].
    ///
    /// # Errors
    /// [`MetricsError::FlatLength`] for a buffer that is not 4 long,
    /// [`MetricsError::FlatCount`] for counts that are not exact non-negative integers.
    pub fn from_flat(flat: &[f64]) -> Result<LmAccumulator, MetricsError> {
        if flat.len() != 4 {
            return Err(MetricsError::FlatLength {
                expected: 4,
                got: flat.len(),
            });
        }
        Ok(LmAccumulator {
            loss_sum: flat[0],
            unigram_sum: flat[1],
            tokens: flat_count(2, flat[2])?,
            correct: flat_count(3, flat[3])?,
        })
    }

    /// The report; `unit` names what a token is (`character` or `word`).
    pub fn report(&self, unit: &str) -> LanguageModelReport {
        let n = self.tokens.max(1) as f64;
        let loss = self.loss_sum / n;
        let unigram = self.unigram_sum / n;
        LanguageModelReport {
            tokens: self.tokens,
            unit: unit.to_string(),
            loss,
            perplexity: loss.exp(),
            bits_per_token: loss / std::f64::consts::LN_2,
            accuracy: self.correct as f64 / n,
            unigram_loss: unigram,
            unigram_perplexity: unigram.exp(),
            unigram_bits_per_token: unigram / std::f64::consts::LN_2,
        }
    }
}

/// What a language model scored on a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LanguageModelReport {
    /// Next-token predictions scored.
    pub tokens: u64,
    /// What a token is: `character` or `word`.
    pub unit: String,
    /// Mean cross-entropy per token, in nats.
    pub loss: f64,
    /// `exp(loss)`.
    pub perplexity: f64,
    /// `loss / ln 2`: bits per character for a character model.
    pub bits_per_token: f64,
    /// Fraction of tokens whose most likely prediction was right.
    pub accuracy: f64,
    /// The unigram baseline's mean cross-entropy per token (nats).
    pub unigram_loss: f64,
    /// The unigram baseline's perplexity.
    pub unigram_perplexity: f64,
    /// The unigram baseline's bits per token.
    pub unigram_bits_per_token: f64,
}

/// Log-probabilities of the add-one smoothed unigram distribution of `counts`.
pub fn unigram_logp(counts: &[u64]) -> Vec<f64> {
    let total: f64 = counts.iter().map(|&c| c as f64 + 1.0).sum();
    counts
        .iter()
        .map(|&c| ((c as f64 + 1.0) / total).ln())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_perplexity_bits_and_accuracy_by_hand() {
        // Two tokens over a vocabulary of 2: uniform logits (p = 1/2) then a confident right
        // prediction with logits [0, ln 3] (p = 3/4).
        let mut acc = LmAccumulator::default();
        let uniform = unigram_logp(&[0, 2]); // q = [1/4, 3/4]
        acc.add(&[0.0, 0.0, 0.0, 3f32.ln()], &[0, 1], &uniform)
            .unwrap();
        let r = acc.report("character");
        let loss = (2f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        assert!((r.loss - loss).abs() < 1e-6, "{r:?}");
        assert!((r.perplexity - loss.exp()).abs() < 1e-6);
        assert!((r.bits_per_token - loss / 2f64.ln()).abs() < 1e-6);
        assert_eq!(r.accuracy, 1.0); // the tie picks token 0, which was the target
        let unigram = (4f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        assert!((r.unigram_loss - unigram).abs() < 1e-9);
        let back = LmAccumulator::from_flat(&acc.to_flat()).unwrap();
        assert_eq!(back, acc);
        assert!(acc.add(&[0.0; 3], &[0], &uniform).is_err());
        assert!(acc.add(&[0.0, 0.0], &[2], &uniform).is_err());
    }
}
