//! Language models: a corpus as `train.batch_size` sequential streams cut into BPTT chunks,
//! the recurrent state carried from chunk to chunk (truncated BPTT, see [`crate::lm`] for the
//! layout across ranks), next-token cross-entropy, and evaluation stream by stream with the
//! state carried: perplexity, bits per token and accuracy next to the unigram baseline.

use super::{EvalSums, Task};
use crate::error::TrainError;
use crate::lm::token_unit;
use crate::metrics::{LmAccumulator, unigram_logp};
use crate::report::{EvalReport, TaskMetrics, shard_range, split_name};
use crate::tensors::{Targets, corpus_batch, lm_tensors, plain_loss, to_vec};
use burn::prelude::*;
use ringtrain_data::{CorpusData, Fitted, SplitName};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Model, RecurrentState, loss};
use ringtrain_spec::TaskKind;

/// The language-model task over its corpus.
#[derive(Debug)]
pub struct LanguageModel {
    data: CorpusData,
}

impl LanguageModel {
    /// A language model of `data`.
    pub fn new(data: CorpusData) -> LanguageModel {
        LanguageModel { data }
    }
}

/// The model shape of a language-model checkpoint (`None` when `fitted` is not a corpus
/// vocabulary).
pub(super) fn shape(fitted: &Fitted) -> Option<(InputKind, HeadKind)> {
    let Fitted::Corpus { vocab } = fitted else {
        return None;
    };
    Some((
        InputKind::Tokens { vocab: vocab.len() },
        HeadKind::NextToken { vocab: vocab.len() },
    ))
}

impl Task for LanguageModel {
    fn kind(&self) -> TaskKind {
        TaskKind::LanguageModel
    }

    fn len(&self, split: SplitName) -> usize {
        self.data.len(split)
    }

    fn input_kind(&self) -> InputKind {
        InputKind::Tokens {
            vocab: self.data.vocab().len(),
        }
    }

    fn head_kind(&self) -> HeadKind {
        HeadKind::NextToken {
            vocab: self.data.vocab().len(),
        }
    }

    fn carries_state(&self) -> bool {
        true
    }

    fn batch(&self, split: SplitName, indices: &[usize], device: &Device) -> (Batch, Targets) {
        corpus_batch(&self.data, split, indices, device)
    }

    fn loss(&self, output: Tensor<2>, targets: Targets) -> Tensor<1> {
        match targets {
            Targets::Classes(labels) => loss::cross_entropy(output, labels, None),
            other @ (Targets::Regression(_) | Targets::Tokens { .. }) => plain_loss(output, other),
        }
    }

    fn check_split(&self, split: SplitName) -> Result<(), TrainError> {
        if self.data.is_empty(split) {
            return Err(TrainError::EmptySplit {
                split: split_name(split),
                hint: "adjust data.split so this split gets at least two tokens per stream".into(),
            });
        }
        Ok(())
    }

    /// Streams, not batches of samples: rank `r` scores a contiguous block of the split's
    /// streams chunk by chunk with its own state carried (`batch_size` does not apply).
    fn eval_shard(
        &self,
        model: &Model,
        split: SplitName,
        rank: usize,
        world: usize,
        _batch_size: usize,
        device: &Device,
    ) -> Result<EvalSums, TrainError> {
        let corpus = &self.data;
        let streams: Vec<usize> = shard_range(corpus.streams(split), rank, world).collect();
        let mut acc = LmAccumulator::default();
        if !streams.is_empty() {
            let unigram = unigram_logp(&corpus.train_counts());
            let ctx = ForwardCtx::eval();
            let mut state: Option<RecurrentState> = None;
            for chunk in 0..corpus.chunks(split) {
                let b = corpus.chunk(split, chunk, &streams);
                let targets = b.targets.clone();
                let (batch, _) = lm_tensors(b, device);
                let (logits, next) = model.forward_with_state(batch, state.as_ref(), &ctx)?;
                state = Some(next);
                acc.add(&to_vec(logits), &targets, &unigram)?;
            }
        }
        Ok(EvalSums {
            flat: acc.to_flat(),
            forecasts: None,
        })
    }

    fn report(&self, split: SplitName, sums: EvalSums) -> Result<EvalReport, TrainError> {
        let acc = LmAccumulator::from_flat(&sums.flat)?;
        let report = acc.report(token_unit(self.data.vocab().tokenizer().kind));
        Ok(EvalReport {
            split,
            samples: report.tokens as usize,
            loss: report.loss,
            metrics: TaskMetrics::LanguageModel(report),
            forecasts: None,
        })
    }
}
