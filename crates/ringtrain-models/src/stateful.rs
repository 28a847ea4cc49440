//! Running a model with recurrent state carried in and out — what truncated backpropagation
//! through time needs: a long stream is fed in consecutive chunks, each chunk starts from the
//! state the previous one ended with, and no gradient crosses a chunk boundary.
//!
//! The state is plain host data ([`RecurrentState`], per recurrent layer and direction `h`, and
//! `c` for the LSTM): taking it out of the graph is the "detach", and it can be reset, kept per
//! data-parallel rank, or grown for generation without touching a tensor. Both recurrent paths
//! (the whole-sequence kernel and the burn-ops cells) take and give it, with the same values.

use burn::tensor::Tensor;

use crate::error::ModelError;
use crate::head::{embed_steps, project_steps};
use crate::kernel::CellState;
use crate::model::{Batch, ForwardCtx, Inputs, Layer, Model};
use crate::seq::Steps;

/// The recurrent state of a model for a batch of `B` streams: for every recurrent layer (in
/// order), one [`CellState`] per direction, each `[B, H]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentState {
    /// Per recurrent layer, per direction.
    pub layers: Vec<Vec<CellState>>,
    /// Streams (batch rows) the state is for.
    pub batch: usize,
}

impl RecurrentState {
    /// The state as one buffer: per layer, per direction, `h` then `c` (LSTM), each `[B, H]`
    /// row-major — what a checkpoint stores so that a resumed run continues its streams.
    pub fn to_flat(&self) -> Vec<f32> {
        let mut out = Vec::new();
        for cell in self.layers.iter().flatten() {
            out.extend_from_slice(&cell.h);
            if let Some(c) = &cell.c {
                out.extend_from_slice(c);
            }
        }
        out
    }

    /// Fills `self` (a state of the right shape, e.g. [`Model::zero_state`]) from the layout of
    /// [`RecurrentState::to_flat`].
    ///
    /// # Errors
    /// [`ModelError::InvalidLayer`] when `flat` has another length than the state.
    pub fn with_flat(mut self, flat: &[f32]) -> Result<RecurrentState, ModelError> {
        let want: usize = self
            .layers
            .iter()
            .flatten()
            .map(|c| c.h.len() + c.c.as_ref().map_or(0, Vec::len))
            .sum();
        if flat.len() != want {
            return Err(ModelError::InvalidLayer {
                field: "recurrent state".into(),
                value: format!("{} values", flat.len()),
                reason: format!("the state of this model and batch holds {want} values"),
            });
        }
        let mut at = 0;
        for cell in self.layers.iter_mut().flatten() {
            let n = cell.h.len();
            cell.h.copy_from_slice(&flat[at..at + n]);
            at += n;
            if let Some(c) = &mut cell.c {
                let n = c.len();
                c.copy_from_slice(&flat[at..at + n]);
                at += n;
            }
        }
        Ok(self)
    }
}

impl Model {
    /// The full forward pass of [`Model::forward`] from the recurrent state `state` (`None`:
    /// zeros, as `forward` starts), also returning the state after the batch's last step. Feeding
    /// a sequence in two chunks, the second from the first's returned state, gives the outputs
    /// of one run over the whole sequence; gradients stay inside each chunk (the state is data).
    ///
    /// # Errors
    /// [`ModelError::InvalidLayer`] when `state` does not fit the model (layer count, batch,
    /// width) or the model holds burn-nn reference layers (which cannot start from a state);
    /// the errors of [`Model::try_forward`] otherwise.
    pub fn forward_with_state(
        &self,
        batch: Batch,
        state: Option<&RecurrentState>,
        ctx: &ForwardCtx,
    ) -> Result<(Tensor<2>, RecurrentState), ModelError> {
        let rows = batch.mask.dims()[0];
        let recurrent: Vec<usize> = self
            .layers()
            .iter()
            .filter_map(|l| match l {
                Layer::Recurrent(r) => Some(r.hidden),
                _ => None,
            })
            .collect();
        if let Some(s) = state {
            check_state(s, &recurrent, rows, self)?;
        }
        if let Some(l) = self
            .layers()
            .iter()
            .find(|l| matches!(l, Layer::Reference(_)))
        {
            return Err(ModelError::InvalidLayer {
                field: l.name(),
                value: "burn-nn reference".into(),
                reason: "reference layers cannot start from a carried state".into(),
            });
        }
        let mut steps = match batch.inputs {
            Inputs::Tokens(ids) => {
                let Some(Layer::Embedding(e)) = self.layers().first() else {
                    return Err(ModelError::InvalidLayer {
                        field: "input".into(),
                        value: "tokens".into(),
                        reason: "the model's first layer is not an embedding".into(),
                    });
                };
                embed_steps(e, ids, batch.mask)
            }
            Inputs::Numeric(x) => Steps::from_seq(x, batch.mask),
            Inputs::Pair { .. } => {
                return Err(ModelError::InvalidLayer {
                    field: "input".into(),
                    value: "a seq2seq pair batch".into(),
                    reason: "a carried recurrent state is for next-token models; seq2seq decodes with Model::forward".into(),
                });
            }
        };
        let mut finals = Vec::with_capacity(recurrent.len());
        let mut out = None;
        for (index, layer) in self.layers().iter().enumerate() {
            let dropout = ctx.train.then_some((ctx.dropout_seed, index as u64));
            steps = match layer {
                Layer::Embedding(_) if index == 0 => continue,
                Layer::Projection(l) => project_steps(l, steps),
                Layer::Conv(c) => c.forward(steps),
                Layer::Recurrent(r) => {
                    let init = state.map(|s| s.layers[finals.len()].as_slice());
                    let (next, fin) = r.forward_state(steps, dropout, init);
                    finals.push(fin);
                    next
                }
                Layer::Attention(a) => a.forward(steps, dropout),
                Layer::Head(h) => {
                    out = Some(h.forward(steps));
                    break;
                }
                other => {
                    return Err(ModelError::InvalidLayer {
                        field: other.name(),
                        value: format!("layer {index}"),
                        reason: "cannot run in a stateful forward pass".into(),
                    });
                }
            };
        }
        let out = out.ok_or_else(|| ModelError::InvalidLayer {
            field: "head".into(),
            value: "(missing)".into(),
            reason: "the model has no head".into(),
        })?;
        Ok((
            out,
            RecurrentState {
                layers: finals,
                batch: rows,
            },
        ))
    }

    /// The zero state for `batch` streams (what [`Model::forward_with_state`] starts from
    /// without a state), e.g. to reset some streams of a carried state.
    pub fn zero_state(&self, batch: usize) -> RecurrentState {
        RecurrentState {
            layers: self
                .layers()
                .iter()
                .filter_map(|l| match l {
                    Layer::Recurrent(r) => Some(
                        r.directions
                            .iter()
                            .map(|_| CellState {
                                h: vec![0.0; batch * r.hidden],
                                c: (r.cell == ringtrain_spec::CellKind::Lstm)
                                    .then(|| vec![0.0; batch * r.hidden]),
                            })
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            batch,
        }
    }
}

fn check_state(
    s: &RecurrentState,
    hidden: &[usize],
    rows: usize,
    model: &Model,
) -> Result<(), ModelError> {
    let bad = |value: String, reason: String| {
        Err(ModelError::InvalidLayer {
            field: "recurrent state".into(),
            value,
            reason,
        })
    };
    if s.layers.len() != hidden.len() || s.batch != rows {
        return bad(
            format!("{} layers x batch {}", s.layers.len(), s.batch),
            format!(
                "the model has {} recurrent layers and the batch {rows} rows",
                hidden.len()
            ),
        );
    }
    let zero = model.zero_state(rows);
    for (i, (got, want)) in s.layers.iter().zip(&zero.layers).enumerate() {
        let fits = got.len() == want.len()
            && got.iter().zip(want).all(|(g, w)| {
                g.h.len() == w.h.len() && g.c.as_ref().map(Vec::len) == w.c.as_ref().map(Vec::len)
            });
        if !fits {
            return bad(
                format!("layer {i}"),
                format!(
                    "expected {} direction(s) of {} values (hidden {})",
                    want.len(),
                    want.first().map_or(0, |w| w.h.len()),
                    hidden[i]
                ),
            );
        }
    }
    Ok(())
}
