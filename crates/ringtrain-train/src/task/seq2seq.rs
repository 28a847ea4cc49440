//! Sequence to sequence: source tokens in, target tokens out through an attentional decoder,
//! the token-level cross-entropy (a mean over the valid target tokens, so its sample weights
//! are the token mask and replicas combine by their token counts), teacher-forced token
//! accuracy and BLEU-4 and exact match next to the copy-the-source baseline. Validation decodes
//! greedily (it runs every epoch); the test split decodes with the configured beam
//! (`task.beam_width`, greedy when 1) and, with a beam, also greedily for comparison; the
//! report names the decoder of every number.

use super::{EvalSums, LossSums, Task};
use crate::error::TrainError;
use crate::metrics::{GreedyScores, TranslationAccumulator};
use crate::report::{EvalReport, TaskMetrics, shard_range};
use crate::seq2seq_task::{pair_batch, source_tensors, token_loss};
use crate::tensors::{Targets, argmax, plain_loss, to_vec};
use burn::prelude::*;
use ringtrain_data::{BOS, EOS, Fitted, PairData, SplitName, Vocab, sequential_batches};
use ringtrain_models::{Batch, DecoderConfig, ForwardCtx, HeadKind, InputKind, Model};
use ringtrain_spec::{Seq2seqAttention, TaskKind};

/// The seq2seq task over its source/target pairs.
#[derive(Debug)]
pub struct Seq2seq {
    data: PairData,
    attention: Seq2seqAttention,
    teacher_forcing: f64,
    /// Beam width of the test split's decoding (1 = greedy).
    beam_width: usize,
    /// Length normalization of the beam.
    length_penalty: f64,
}

impl Seq2seq {
    /// Seq2seq over `data` with the decoder's `attention` and `teacher_forcing` ratio.
    pub fn new(data: PairData, attention: Seq2seqAttention, teacher_forcing: f64) -> Seq2seq {
        Seq2seq {
            data,
            attention,
            teacher_forcing,
            beam_width: 1,
            length_penalty: 0.0,
        }
    }

    /// The same task decoding its test split with beam search of `width` hypotheses ranked
    /// with length normalization `length_penalty` (greedy when `width` is 1).
    pub fn with_beam(mut self, width: usize, length_penalty: f64) -> Seq2seq {
        self.beam_width = width.max(1);
        self.length_penalty = length_penalty;
        self
    }

    /// The beam width `split` is decoded with, when it is not greedy.
    fn beam_for(&self, split: SplitName) -> Option<usize> {
        (split == SplitName::Test && self.beam_width > 1).then_some(self.beam_width)
    }
}

fn decoder(attention: Seq2seqAttention, teacher_forcing: f64, target: &Vocab) -> DecoderConfig {
    DecoderConfig {
        vocab: target.len(),
        attention,
        teacher_forcing,
        bos: BOS,
        eos: EOS,
    }
}

/// The model shape of a seq2seq checkpoint (`None` when `fitted` is not a vocabulary pair).
pub(super) fn shape(
    attention: Seq2seqAttention,
    teacher_forcing: f64,
    fitted: &Fitted,
) -> Option<(InputKind, HeadKind)> {
    let Fitted::Pairs { source, target } = fitted else {
        return None;
    };
    Some((
        InputKind::Tokens {
            vocab: source.len(),
        },
        HeadKind::Decoder(decoder(attention, teacher_forcing, target)),
    ))
}

impl Task for Seq2seq {
    fn kind(&self) -> TaskKind {
        TaskKind::Seq2seq
    }

    fn len(&self, split: SplitName) -> usize {
        self.data.len(split)
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Tokens {
            vocab: self.data.source_vocab().len(),
        }
    }

    fn head_kind(&self) -> HeadKind {
        HeadKind::Decoder(decoder(
            self.attention,
            self.teacher_forcing,
            self.data.target_vocab(),
        ))
    }

    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        pair_batch(self.data.batch(split, indices), device)
    }

    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match targets {
            Targets::Tokens { ids, mask, .. } => token_loss(output, ids, mask),
            other @ (Targets::Regression(_) | Targets::Classes(_)) => plain_loss(output, other),
        }
    }

    /// Per token, in the `[B·T]` order of [`Targets::Tokens`]: 1 valid, 0 padding.
    fn sample_weights(&self, targets: &Targets) -> Option<Vec<f64>> {
        let Targets::Tokens { host_mask, .. } = targets else {
            return None;
        };
        Some(host_mask.iter().map(|&m| f64::from(m)).collect())
    }

    /// Teacher-forced loss and token accuracy, decoding (up to the target vocabulary's maximum
    /// length) for exact match and BLEU: greedy, or on the test split with a configured beam
    /// the beam (and greedy alongside).
    fn eval_shard(
        &self,
        model: &Model,
        split: SplitName,
        rank: usize,
        world: usize,
        batch_size: usize,
        device: &Device,
    ) -> Result<EvalSums, TrainError> {
        let data = &self.data;
        let range = shard_range(self.len(split), rank, world);
        let offset = range.start;
        let ctx = ForwardCtx::eval();
        let max_len = data.target_vocab().max_len();
        let mut sums = LossSums::default();
        let mut acc = TranslationAccumulator::new();
        let beam = self.beam_for(split);
        // With a beam: the greedy decodings' statistics, reported alongside.
        let mut greedy_acc = TranslationAccumulator::new();
        for r in sequential_batches(range.len(), batch_size) {
            let idx: Vec<usize> = ((r.start + offset)..(r.end + offset)).collect();
            let pb = data.batch(split, &idx);
            let (source, mask) = source_tensors(&pb, device);
            let truth = pb.decoder_target.clone();
            let (batch, targets) = pair_batch(pb, device);
            let out = model.try_forward(batch, &ctx)?;
            let v = out.dims()[1];
            let logits = to_vec(out.clone());
            let weights = self.sample_weights(&targets).unwrap_or_default();
            let tokens: f64 = weights.iter().sum();
            sums.add(self, out, targets, idx.len());
            let correct = logits
                .chunks_exact(v)
                .zip(&truth)
                .zip(&weights)
                .filter(|((row, y), w)| **w > 0.0 && argmax(row) == **y as usize)
                .count();
            acc.add_tokens(correct as u64, tokens as u64);
            let greedy = model.greedy_decode(source.clone(), mask.clone(), max_len)?;
            let decoded = match beam {
                Some(width) => {
                    for (h, &i) in greedy.iter().zip(&idx) {
                        greedy_acc.add_sentence(&h.tokens, data.target(split, i));
                    }
                    model.beam_decode(source, mask, width, self.length_penalty, max_len)?
                }
                None => greedy,
            };
            for (h, &i) in decoded.iter().zip(&idx) {
                let reference = data.target(split, i);
                acc.add_sentence(&h.tokens, reference);
                // The trivial baseline: the source sentence as the translation, compared as
                // strings (the vocabularies differ); a word unknown to either side never
                // matches.
                let words = |vocab: &Vocab, ids: &[u32], side: u8| -> Vec<(u8, String)> {
                    ids.iter()
                        .map(|&id| match vocab.token(id) {
                            Some(t) if id != ringtrain_data::UNK => (0, t.to_string()),
                            _ => (side, String::new()),
                        })
                        .collect()
                };
                acc.add_copy_baseline(
                    &words(data.source_vocab(), data.source(split, i), 1),
                    &words(data.target_vocab(), reference, 2),
                );
            }
        }
        let mut flat = acc.to_flat();
        if beam.is_some() {
            flat.extend(greedy_acc.to_flat());
        }
        Ok(EvalSums {
            flat: sums.flat(flat),
            forecasts: None,
        })
    }

    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError> {
        let (loss, rest) = LossSums::parse(&sums.flat)?;
        let report = match self.beam_for(split) {
            Some(width) => {
                let half = rest.len() / 2;
                let mut report = TranslationAccumulator::from_flat(&rest[..half])?.report();
                let greedy = TranslationAccumulator::from_flat(&rest[half..])?.report();
                report.decoder = format!("beam {width}");
                report.greedy = Some(GreedyScores {
                    bleu: greedy.bleu,
                    exact_match: greedy.exact_match,
                });
                report
            }
            None => TranslationAccumulator::from_flat(rest)?.report(),
        };
        Ok(EvalReport {
            split,
            samples: loss.samples,
            loss: loss.mean(),
            metrics: TaskMetrics::Translation(report),
            forecasts: None,
        })
    }
}
