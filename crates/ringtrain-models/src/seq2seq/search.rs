//! Beam search for a trained seq2seq decoder (the entry points on the whole model are in the
//! crate's `decode` module). Beam search keeps, per source, the `width` best live prefixes by
//! log-probability; each step extends every prefix by its `width + 1` most likely tokens (at
//! most one of which is `<eos>`, so the global best `width` continuations are among them);
//! a prefix that emits `<eos>` becomes a finished hypothesis ranked by `log p / len^alpha`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::{Decoder, Hypothesis, Memory, State, host};

impl Decoder {
    /// Beam search over encoder outputs `enc` `[B, S, W]` with mask `[B, S]` (see
    /// [`Model::beam_decode`](crate::Model::beam_decode)): per source, the beam's best
    /// hypothesis when it scores above that source's `greedy` one, else the greedy one.
    pub(crate) fn beam(
        &self,
        enc: Tensor<3>,
        mask: &Tensor<2>,
        greedy: Vec<Hypothesis>,
        width: usize,
        alpha: f64,
        max_len: usize,
    ) -> Vec<Hypothesis> {
        let [b, s, w] = enc.dims();
        let device = enc.device();
        let mut out = Vec::with_capacity(b);
        for (i, greedy) in greedy.into_iter().enumerate() {
            let enc_i = enc.clone().slice([i..i + 1, 0..s, 0..w]);
            let mask_i = mask.clone().slice([i..i + 1, 0..s]);
            let (mem, state) = self.memory(enc_i, &mask_i);
            let best = beam_one(self, &mem, state, width, alpha, max_len, &device);
            out.push(match best {
                Some(h) if h.score(alpha) > greedy.score(alpha) => h,
                _ => greedy,
            });
        }
        out
    }
}

/// Beam search for one source whose memory and initial state have batch 1.
fn beam_one(
    decoder: &Decoder,
    mem: &Memory,
    state: State,
    width: usize,
    alpha: f64,
    max_len: usize,
    device: &Device,
) -> Option<Hypothesis> {
    let v = decoder.vocab();
    let eos = decoder.eos as usize;
    // Live hypotheses (no <eos> yet); row i of `state` belongs to live[i].
    let mut live = vec![Hypothesis::default()];
    let mut state = state;
    let mut mem_rows = mem.clone();
    let mut ended: Vec<Hypothesis> = Vec::new();
    for _ in 0..=max_len {
        let ids: Vec<i64> = live
            .iter()
            .map(|h| {
                h.tokens
                    .last()
                    .map_or(i64::from(decoder.bos), |&t| i64::from(t))
            })
            .collect();
        let k = ids.len();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [k, 1]), device);
        let (y, next) = decoder.step(&mem_rows, input, state);
        let logp = host(log_softmax(y, 1));
        // The best `width + 1` extensions of every hypothesis, best first overall: at most one
        // of a hypothesis' extensions is <eos>, so the global top `width` that continue are
        // among them (and every <eos> ranked above the last of those).
        let mut cand: Vec<(f64, usize, usize)> = Vec::with_capacity(k * (width + 1));
        for (i, h) in live.iter().enumerate() {
            let row = &logp[i * v..(i + 1) * v];
            if h.tokens.len() >= max_len {
                cand.push((h.log_prob + f64::from(row[eos]), i, eos));
                continue;
            }
            let mut order: Vec<usize> = (0..v).collect();
            let keep = (width + 1).min(v);
            if keep < v {
                order.select_nth_unstable_by(keep - 1, |&a, &b| row[b].total_cmp(&row[a]));
                order.truncate(keep);
            }
            cand.extend(
                order
                    .into_iter()
                    .map(|tok| (h.log_prob + f64::from(row[tok]), i, tok)),
            );
        }
        // Ties broken by hypothesis and token so the search is deterministic.
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut parents = Vec::with_capacity(width);
        let mut next_live = Vec::with_capacity(width);
        for (lp, i, tok) in cand {
            if next_live.len() >= width {
                break;
            }
            let mut tokens = live[i].tokens.clone();
            if tok == eos {
                ended.push(Hypothesis {
                    tokens,
                    log_prob: lp,
                });
            } else {
                tokens.push(tok as u32);
                next_live.push(Hypothesis {
                    tokens,
                    log_prob: lp,
                });
                parents.push(i as i64);
            }
        }
        let best_ended = ended
            .iter()
            .map(|h| h.score(alpha))
            .fold(f64::NEG_INFINITY, f64::max);
        // The best score a live hypothesis could still reach: its log-probability only falls as
        // it grows, and (being negative) is divided by at most (max_len + 1)^alpha.
        let reach = ((max_len + 1) as f64).powf(alpha);
        let best_live = next_live
            .iter()
            .map(|h| h.log_prob / reach)
            .fold(f64::NEG_INFINITY, f64::max);
        let done = next_live.is_empty() || best_ended >= best_live;
        if done {
            break;
        }
        let rows =
            Tensor::<1, Int>::from_data(TensorData::new(parents.clone(), [parents.len()]), device);
        state = next.select(rows);
        let zeros = Tensor::<1, Int>::from_data(
            TensorData::new(vec![0i64; parents.len()], [parents.len()]),
            device,
        );
        mem_rows = mem.select(zeros);
        live = next_live;
    }
    ended
        .into_iter()
        .max_by(|a, b| a.score(alpha).total_cmp(&b.score(alpha)))
}
