//! The sequence-to-sequence task: batches of source/target pairs as tensors, the token-level
//! cross-entropy, the evaluation pass (teacher-forced loss and token accuracy, greedy decoding
//! for exact match and corpus BLEU-4) and translation of raw text with a checkpoint.
//!
//! The loss is the mean over the batch's valid target tokens (`<eos>` included, padding
//! excluded). Because that is a weighted mean with a different weight sum on every
//! data-parallel replica, [`crate::TaskData::sample_weights`] gives the per-token mask and the
//! trainer combines replicas by their token counts, which keeps `N` workers equal to one
//! process.

use crate::checkpoint::Checkpoint;
use crate::error::TrainError;
use crate::evaluate::to_vec;
use crate::metrics::TranslationAccumulator;
use crate::task::{Objective, Targets, TaskData};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::log_softmax;
use ringtrain_data::{BOS, EOS, Fitted, PairBatch, PairData, SplitName, Vocab, detokenize};
use ringtrain_models::{Batch, DecoderConfig, ForwardCtx, Hypothesis, Inputs, Model};
use ringtrain_spec::{Seq2seqAttention, TaskSpec};

/// The decoder settings of `task` over `target` (the target vocabulary).
pub fn decoder_config(task: &TaskSpec, target: &Vocab) -> DecoderConfig {
    let (attention, teacher_forcing) = match task {
        TaskSpec::Seq2seq {
            attention,
            teacher_forcing,
            ..
        } => (*attention, *teacher_forcing),
        _ => (Seq2seqAttention::Bahdanau, 1.0),
    };
    DecoderConfig {
        vocab: target.len(),
        attention,
        teacher_forcing,
        bos: BOS,
        eos: EOS,
    }
}

fn ids_2d(ids: &[u32], rows: usize, cols: usize, device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
    Tensor::from_data(TensorData::new(v, [rows, cols]), device)
}

/// The source half of a pair batch: ids `[B, S]` and mask `[B, S]`.
pub fn source_tensors(b: &PairBatch, device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let s = &b.source;
    (
        ids_2d(&s.ids, s.batch, s.seq_len, device),
        Tensor::from_data(
            TensorData::new(s.mask.clone(), [s.batch, s.seq_len]),
            device,
        ),
    )
}

/// A pair batch as model input (source ids and mask, decoder inputs) and token targets.
pub fn pair_batch(b: PairBatch, device: &Device) -> (Batch, Targets) {
    let (source, mask) = source_tensors(&b, device);
    let n = b.batch * b.target_len;
    let target_in = ids_2d(&b.decoder_input, b.batch, b.target_len, device);
    let ids: Vec<i64> = b.decoder_target.iter().map(|&i| i64::from(i)).collect();
    let targets = Targets::Tokens {
        ids: Tensor::from_data(TensorData::new(ids, [n]), device),
        mask: Tensor::from_data(TensorData::new(b.target_mask.clone(), [n]), device),
        host_mask: b.target_mask,
        steps: b.target_len,
    };
    (
        Batch {
            inputs: Inputs::Pair { source, target_in },
            mask,
        },
        targets,
    )
}

/// Mean cross-entropy of logits `[N, V]` against ids `[N]` over the rows where `mask` is 1.
pub fn token_loss(logits: Tensor<2>, ids: Tensor<1, Int>, mask: Tensor<1>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let nll = log_softmax(logits, 1)
        .gather(1, ids.reshape([n, 1]))
        .reshape([n])
        .neg();
    (nll * mask.clone()).sum() / mask.sum()
}

/// Sums of an evaluation pass over some pairs of a split.
pub(crate) struct PairSums {
    /// Σ batch loss × batch token count.
    pub loss_sum: f64,
    /// Σ batch token count.
    pub loss_weight: f64,
    /// BLEU, token accuracy and exact-match statistics.
    pub acc: TranslationAccumulator,
}

/// Scores the pairs `batches` of `split`: teacher-forced loss and token accuracy, greedy
/// decoding (up to the target vocabulary's maximum length) for exact match and BLEU.
pub(crate) fn accumulate_pairs(
    model: &Model,
    task: &TaskData,
    data: &PairData,
    split: SplitName,
    batches: impl Iterator<Item = std::ops::Range<usize>>,
    device: &Device,
) -> Result<PairSums, TrainError> {
    let ctx = ForwardCtx::eval();
    let max_len = data.target_vocab().max_len();
    let mut sums = PairSums {
        loss_sum: 0.0,
        loss_weight: 0.0,
        acc: TranslationAccumulator::new(),
    };
    for range in batches {
        let idx: Vec<usize> = range.collect();
        let pb = data.batch(split, &idx);
        let (source, mask) = source_tensors(&pb, device);
        let truth = pb.decoder_target.clone();
        let (batch, targets) = pair_batch(pb, device);
        let out = model.try_forward(batch, &ctx)?;
        let v = out.dims()[1];
        let logits = to_vec(out.clone());
        let weights = task.sample_weights(&targets).unwrap_or_default();
        let tokens: f64 = weights.iter().sum();
        sums.loss_sum += f64::from(task.loss(out, targets).into_scalar::<f32>()) * tokens;
        sums.loss_weight += tokens;
        let correct = logits
            .chunks_exact(v)
            .zip(&truth)
            .zip(&weights)
            .filter(|((row, y), w)| **w > 0.0 && crate::evaluate::argmax(row) == **y as usize)
            .count();
        sums.acc.add_tokens(correct as u64, tokens as u64);
        let decoded = model.greedy_decode(source, mask, max_len)?;
        for (h, &i) in decoded.iter().zip(&idx) {
            let reference = data.target(split, i);
            sums.acc.add_sentence(&h.tokens, reference);
            // The trivial baseline: the source sentence as the translation, compared as
            // strings (the vocabularies differ); a word unknown to either side never matches.
            let words = |vocab: &Vocab, ids: &[u32], side: u8| -> Vec<(u8, String)> {
                ids.iter()
                    .map(|&id| match vocab.token(id) {
                        Some(t) if id != ringtrain_data::UNK => (0, t.to_string()),
                        _ => (side, String::new()),
                    })
                    .collect()
            };
            sums.acc.add_copy_baseline(
                &words(data.source_vocab(), data.source(split, i), 1),
                &words(data.target_vocab(), reference, 2),
            );
        }
    }
    Ok(sums)
}

/// One translated line.
#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    /// The output text (tokens joined as [`detokenize`] does).
    pub text: String,
    /// Target token ids (no `<bos>`/`<eos>`).
    pub tokens: Vec<u32>,
    /// The model's log-probability of the output, `<eos>` included.
    pub log_prob: f64,
}

/// Translates `texts` with a seq2seq checkpoint's model: greedy decoding for `beam = 1`, beam
/// search otherwise (`None`: the spec's `task.beam_width`), ranked with the spec's
/// `task.length_penalty`, at most `data.max_target_len` tokens per output.
///
/// # Errors
/// [`TrainError::Input`] when the checkpoint is not a seq2seq model; [`TrainError::Model`]
/// when the model does not fit its vocabularies (a corrupt checkpoint).
pub fn translate(
    model: &Model,
    ckpt: &Checkpoint,
    texts: &[String],
    beam: Option<usize>,
    device: &Device,
) -> Result<Vec<Translation>, TrainError> {
    let Fitted::Pairs { source, target } = &ckpt.header.fitted else {
        return Err(TrainError::Input(
            "this checkpoint is not a seq2seq model (task.kind = \"seq2seq\")".into(),
        ));
    };
    let (width, alpha) = match &ckpt.header.spec.task {
        TaskSpec::Seq2seq {
            beam_width,
            length_penalty,
            ..
        } => (beam.unwrap_or(*beam_width), *length_penalty),
        _ => (beam.unwrap_or(1), 0.0),
    };
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|t| source.encode(t)).collect();
        let empty: Vec<Vec<u32>> = vec![Vec::new(); seqs.len()];
        let pb = PairBatch::new(&seqs, &empty);
        let (ids, mask) = source_tensors(&pb, device);
        let hyps: Vec<Hypothesis> =
            model.beam_decode(ids, mask, width.max(1), alpha, target.max_len())?;
        out.extend(hyps.into_iter().map(|h| Translation {
            text: detokenize(target, &h.tokens),
            log_prob: h.log_prob,
            tokens: h.tokens,
        }));
    }
    Ok(out)
}
