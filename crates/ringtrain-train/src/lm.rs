//! Language models: the layout of streams across ranks, and text generation from a prompt
//! (the task itself, its loss and evaluation, is `crate::task::LanguageModel`).
//!
//! Training layout (see [`ringtrain_data::CorpusData`]): the train split is `B` contiguous
//! streams (`B = train.batch_size`), step `k` feeds chunk `k` of every stream, and rank `r` of
//! `D` owns streams `r·B/D .. (r+1)·B/D` — with the unshuffled shard plan the trainer uses for
//! this task, those are exactly the windows its plan hands it, so each stream's carried state
//! stays on one rank and a `D`-way run computes what one process computes. The state is reset
//! at every epoch start and detached between chunks (truncated BPTT).
//!
//! A checkpoint written mid-epoch holds the carried state of every rank's streams (gathered to
//! the writer, rank-major), so a resumed run — `--resume`, or a cluster job's restarted attempt
//! with the same number of workers — continues its streams exactly; with another number of
//! workers the streams differ and restart from the zero state (with a warning).
//!
//! Evaluation does the same over the val/test streams: rank `r` scores a contiguous block of
//! the streams chunk by chunk (its own state carried), and the sums are added over the ranks,
//! so the report does not depend on the number of ranks.

use crate::error::TrainError;
use crate::tensors::to_vec;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::Rng;
use ringtrain_data::Vocab;
use ringtrain_models::{Batch, ForwardCtx, Inputs, Model, RecurrentState};
use ringtrain_spec::TokenizerKind;

/// `character` or `word`: what one token of a corpus is, for reports.
pub fn token_unit(kind: TokenizerKind) -> &'static str {
    match kind {
        TokenizerKind::Char => "character",
        TokenizerKind::Word => "word",
    }
}

/// How [`generate`] picks each next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Sample only among the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Seed of the sampling stream (ChaCha8): the same seed gives the same text.
    pub seed: u64,
}

/// Continues `prompt` (token ids, at least one) by `n` tokens: the prompt warms the recurrent
/// state in one pass, then each sampled token is fed back. `<pad>` is never produced.
///
/// # Errors
/// [`TrainError::Input`] for an empty prompt, a non-finite or negative temperature or
/// `top_k = 0`; [`TrainError::Model`] when the model is not a next-token model.
pub fn generate(
    model: &Model,
    prompt: &[u32],
    n: usize,
    sampling: Sampling,
    device: &Device,
) -> Result<Vec<u32>, TrainError> {
    if prompt.is_empty() {
        return Err(TrainError::Input(
            "the prompt has no tokens to start from".into(),
        ));
    }
    if !sampling.temperature.is_finite() || sampling.temperature < 0.0 {
        return Err(TrainError::Input(format!(
            "temperature {} must be a finite number >= 0",
            sampling.temperature
        )));
    }
    if sampling.top_k == Some(0) {
        return Err(TrainError::Input("top-k must be at least 1".into()));
    }
    let mut rng = ringtrain_data::chacha(sampling.seed, 0);
    let ctx = ForwardCtx::eval();
    let feed = |ids: &[u32], state: Option<&RecurrentState>| {
        let t = ids.len();
        let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let batch = Batch {
            inputs: Inputs::Tokens(Tensor::<2, Int>::from_data(
                TensorData::new(ids, [1, t]),
                device,
            )),
            mask: Tensor::<2>::ones([1, t], device),
        };
        model.forward_with_state(batch, state, &ctx)
    };
    let (logits, mut state) = feed(prompt, None)?;
    let mut logits = to_vec(logits);
    let vocab = logits.len() / prompt.len();
    // Grown as tokens come: `n` is a caller's number, not a size to trust up front.
    let mut out = Vec::with_capacity(n.min(1 << 16));
    for i in 0..n {
        let last = &logits[logits.len() - vocab..];
        let next = pick(last, sampling, &mut rng);
        out.push(next);
        if i + 1 < n {
            let (l, s) = feed(&[next], Some(&state))?;
            logits = to_vec(l);
            state = s;
        }
    }
    Ok(out)
}

/// One token from `logits` (never id 0, `<pad>`).
fn pick(logits: &[f32], s: Sampling, rng: &mut impl Rng) -> u32 {
    let mut order: Vec<usize> = (1..logits.len()).collect();
    // Descending logit; ties keep the lower id first (stable sort), so greedy is the argmax.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if s.temperature == 0.0 || order.len() <= 1 {
        return order.first().copied().unwrap_or(1) as u32;
    }
    order.truncate(s.top_k.unwrap_or(order.len()).max(1));
    let max = f64::from(logits[order[0]]);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((f64::from(logits[i]) - max) / s.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// Encodes a prompt with a vocabulary's tokenizer (a `word` prompt ending in a newline ends
/// with the end-of-line token). Tokens outside the vocabulary become `<unk>`; the count of
/// those is returned too, so a caller can say so.
pub fn encode_prompt(vocab: &Vocab, prompt: &str) -> (Vec<u32>, usize) {
    let tokens = ringtrain_data::corpus_tokens(vocab.tokenizer(), prompt);
    let mut unknown = 0;
    let ids = tokens
        .iter()
        .map(|t| {
            vocab.id(t).unwrap_or_else(|| {
                unknown += 1;
                ringtrain_data::UNK
            })
        })
        .collect();
    (ids, unknown)
}

/// The text of generated ids (see [`ringtrain_data::join_tokens`]); `<unk>` is spelled out.
pub fn decode(vocab: &Vocab, ids: &[u32]) -> String {
    let tokens: Vec<&str> = ids
        .iter()
        .map(|&i| vocab.token(i).unwrap_or(ringtrain_data::UNK_TOKEN))
        .collect();
    ringtrain_data::join_tokens(vocab.tokenizer().kind, &tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_argmax_and_never_pad() {
        let s = Sampling {
            temperature: 0.0,
            top_k: None,
            seed: 1,
        };
        let mut rng = ringtrain_data::chacha(1, 0);
        assert_eq!(pick(&[9.0, 1.0, 3.0, 3.0], s, &mut rng), 2);
        // top-1 sampling at any temperature is greedy too.
        let s = Sampling {
            temperature: 2.0,
            top_k: Some(1),
            seed: 1,
        };
        for _ in 0..20 {
            assert_eq!(pick(&[9.0, 1.0, 0.5, 3.0], s, &mut rng), 3);
        }
        // Sampling follows the softmax: token 2 (logit ln 3) about 3x as often as token 1.
        let s = Sampling {
            temperature: 1.0,
            top_k: None,
            seed: 1,
        };
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[pick(&[100.0, 0.0, 3f32.ln()], s, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[0], 0);
        let ratio = counts[2] as f64 / counts[1] as f64;
        assert!((2.6..3.4).contains(&ratio), "{counts:?}");
    }
}
