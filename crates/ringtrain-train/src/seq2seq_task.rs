//! Sequence-to-sequence tensors and translation: batches of source/target pairs as tensors and
//! translation of raw text with a checkpoint (the task itself, its loss and evaluation, is
//! `crate::task::Seq2seq`).
//!
//! The loss is the mean over the batch's valid target tokens (`<eos>` included, padding
//! excluded). Because that is a weighted mean with a different weight sum on every
//! data-parallel replica, [`crate::TaskData::sample_weights`] gives the per-token mask and the
//! trainer combines replicas by their token counts, which keeps `N` workers equal to one
//! process.

use crate::checkpoint::Checkpoint;
use crate::error::TrainError;
use crate::tensors::Targets;
pub use crate::tensors::token_loss;
use burn::prelude::*;
use burn::tensor::TensorData;
use ringtrain_data::{Fitted, PairBatch, detokenize};
use ringtrain_models::{Batch, Hypothesis, Inputs, Model};
use ringtrain_spec::TaskSpec;

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
    let TaskSpec::Seq2seq {
        beam_width,
        length_penalty,
        ..
    } = &ckpt.header.spec.task
    else {
        return Err(TrainError::Input(
            "this checkpoint is not a seq2seq model (task.kind = \"seq2seq\")".into(),
        ));
    };
    let (width, alpha) = (beam.unwrap_or(*beam_width), *length_penalty);
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
