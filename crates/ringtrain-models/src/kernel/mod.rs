//! Whole-sequence recurrent layers as custom autodiff operations on burn's `flex` backend.
//!
//! One operation runs one direction of one layer over the whole sequence: input `[T, B, in]`
//! (time-major), weights in the layout of [`crate::recurrent::CellParams`], output `[T, B, H]`.
//! The forward and the hand-written backward (BPTT) work on raw `f32` buffers with the `gemm`
//! crate (see [`cells`] for the algorithm); on an autodiff device the backward step is
//! registered through burn's `extension` feature, on a plain device only the forward runs.
//! Only `f32` tensors on the flex device are handled: [`applies`] says when the caller must use
//! the burn-ops path instead.

mod cells;
mod math;

use std::sync::{Arc, Mutex};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::{Bytes, DType, Device, Shape, Tensor};

pub use cells::CellCode;
use cells::{Dims, Grads, Initial, Need, Saved, Weights};

/// The state of one direction of one layer, `[B, H]` row-major: `h`, and `c` for the LSTM.
#[derive(Debug, Clone, PartialEq)]
pub struct CellState {
    /// Hidden state.
    pub h: Vec<f32>,
    /// LSTM cell state (`None` for RNN and GRU).
    pub c: Option<Vec<f32>>,
}

/// Where a run leaves its final state for the caller (the state is plain data: it leaves the
/// autodiff graph, as truncated BPTT wants).
pub type StateSink = Arc<Mutex<Option<CellState>>>;

/// What one run computes besides its tensors: the cell, the direction and the padding.
#[derive(Debug, Clone)]
pub struct SeqSpec {
    /// The recurrence.
    pub cell: CellCode,
    /// Run from the last step to the first.
    pub reverse: bool,
    /// `valid[t·B + b]` (time-major): whether step `t` of sample `b` is real; `None` when
    /// every step is.
    pub valid: Option<Arc<[bool]>>,
    /// The state before the first step processed; `None`: zeros. A constant: no gradient flows
    /// into it.
    pub initial: Option<Arc<CellState>>,
    /// Receives the state after the last step processed (each sample's last valid step), when
    /// the caller carries it into a next chunk; `None`: not wanted.
    pub final_state: Option<StateSink>,
}

/// The custom operation (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait SequenceOps: Backend {
    /// One direction of one recurrent layer over a whole time-major sequence.
    fn recurrent_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        spec: SeqSpec,
    ) -> FloatTensor<Self>;
}

/// Whether the kernel can run on tensors of this device and dtype (flex, `f32`).
pub(crate) fn applies(device: &Device, dtype: DType) -> bool {
    dtype == DType::F32 && *device == Device::flex()
}

/// Runs one direction: `x [T, B, in]` → `[T, B, H]`. Call only where [`applies`] holds.
pub(crate) fn sequence(
    x: Tensor<3>,
    w_ih: Tensor<2>,
    w_hh: Tensor<2>,
    b_ih: Tensor<1>,
    b_hh: Tensor<1>,
    spec: SeqSpec,
) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as SequenceOps>::recurrent_sequence(
        x.into_dispatch(),
        w_ih.into_dispatch(),
        w_hh.into_dispatch(),
        b_ih.into_dispatch(),
        b_hh.into_dispatch(),
        spec,
    ))
}

/// A contiguous `f32` version of `t` (incoming gradients and swapped inputs are often strided).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "the sequence kernel handles f32 only"
    );
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("contiguous f32 tensor (made so by `contiguous`)")
}

fn from_vec(v: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(v),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}

fn dims(x: &FlexTensor, w_hh: &FlexTensor, cell: CellCode) -> Dims {
    let xs = x.layout().shape().as_slice();
    let ws = w_hh.layout().shape().as_slice();
    assert!(
        xs.len() == 3 && ws.len() == 2 && ws[1] == cell.gates() * ws[0],
        "sequence kernel shapes: x {xs:?}, w_hh {ws:?}"
    );
    Dims {
        time: xs[0],
        batch: xs[1],
        input: xs[2],
        hidden: ws[0],
    }
}

/// Everything the backward pass needs.
#[derive(Debug, Clone)]
struct SeqState {
    spec: SeqSpec,
    dims: Dims,
    /// Contiguous input (read for `dW_ih`).
    x: FlexTensor,
    w_ih: FlexTensor,
    w_hh: FlexTensor,
    saved: Arc<Saved>,
}

/// Forward on flex tensors: (output, contiguous x, contiguous w_ih, w_hh, saved).
fn run_forward(
    x: &FlexTensor,
    w_ih: &FlexTensor,
    w_hh: &FlexTensor,
    b_ih: &FlexTensor,
    b_hh: &FlexTensor,
    spec: &SeqSpec,
) -> (FlexTensor, SeqState) {
    let (x, w_ih, w_hh, b_ih, b_hh) = (
        contiguous(x),
        contiguous(w_ih),
        contiguous(w_hh),
        contiguous(b_ih),
        contiguous(b_hh),
    );
    let d = dims(&x, &w_hh, spec.cell);
    if let Some(v) = &spec.valid {
        assert_eq!(v.len(), d.time * d.batch, "padding mask length");
    }
    if let Some(init) = &spec.initial {
        let bh = d.batch * d.hidden;
        assert!(
            init.h.len() == bh && init.c.as_ref().is_none_or(|c| c.len() == bh),
            "initial state of {} values for batch {} x hidden {}",
            init.h.len(),
            d.batch,
            d.hidden
        );
    }
    let (y, saved) = cells::forward(
        spec.cell,
        spec.reverse,
        spec.valid.as_deref(),
        d,
        slice(&x),
        Weights {
            w_ih: slice(&w_ih),
            w_hh: slice(&w_hh),
            b_ih: slice(&b_ih),
            b_hh: slice(&b_hh),
        },
        spec.initial.as_deref().map(|s| Initial {
            h: &s.h,
            c: s.c.as_deref(),
        }),
    );
    if let Some(sink) = &spec.final_state {
        let (h, c) = saved.final_state(spec.reverse, d);
        let c = c.filter(|_| spec.cell == CellCode::Lstm);
        // A poisoned lock only means another thread panicked mid-write; the value is replaced.
        *sink.lock().unwrap_or_else(|e| e.into_inner()) = Some(CellState { h, c });
    }
    let y = from_vec(y, &[d.time, d.batch, d.hidden]);
    let state = SeqState {
        spec: spec.clone(),
        dims: d,
        x,
        w_ih,
        w_hh,
        saved: Arc::new(saved),
    };
    (y, state)
}

impl SequenceOps for Flex {
    fn recurrent_sequence(
        x: FlexTensor,
        w_ih: FlexTensor,
        w_hh: FlexTensor,
        b_ih: FlexTensor,
        b_hh: FlexTensor,
        spec: SeqSpec,
    ) -> FlexTensor {
        run_forward(&x, &w_ih, &w_hh, &b_ih, &b_hh, &spec).0
    }
}

/// The backward step of [`SequenceOps::recurrent_sequence`]; its data lives in [`SeqState`].
#[derive(Debug)]
struct SequenceBackward;

impl Backward<Flex, 5> for SequenceBackward {
    type State = SeqState;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [nx, nwi, nwh, nbi, nbh] = ops.parents;
        let dy = contiguous(&grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let d = s.dims;
        let need = Need {
            x: nx.is_some(),
            w_ih: nwi.is_some(),
            w_hh: nwh.is_some(),
            b_ih: nbi.is_some(),
            b_hh: nbh.is_some(),
        };
        let Grads {
            x,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
        } = cells::backward(
            s.spec.cell,
            s.spec.reverse,
            s.spec.valid.as_deref(),
            d,
            &s.saved,
            slice(&dy),
            slice(&s.x),
            slice(&s.w_ih),
            slice(&s.w_hh),
            need,
        );
        let gh = s.spec.cell.gates() * d.hidden;
        let parts = [
            (nx, x, vec![d.time, d.batch, d.input]),
            (nwi, w_ih, vec![d.input, gh]),
            (nwh, w_hh, vec![d.hidden, gh]),
            (nbi, b_ih, vec![gh]),
            (nbh, b_hh, vec![gh]),
        ];
        for (node, grad, shape) in parts {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<Flex>(node.id, from_vec(grad, &shape));
            }
        }
    }
}

impl<C: CheckpointStrategy> SequenceOps for Autodiff<Flex, C> {
    fn recurrent_sequence(
        x: FloatTensor<Self>,
        w_ih: FloatTensor<Self>,
        w_hh: FloatTensor<Self>,
        b_ih: FloatTensor<Self>,
        b_hh: FloatTensor<Self>,
        spec: SeqSpec,
    ) -> FloatTensor<Self> {
        // Node guards first, before the primitives are read (see BURN.md).
        let nodes = [x.node(), w_ih.node(), w_hh.node(), b_ih.node(), b_hh.node()];
        let (xp, wi, wh, bi, bh) = (
            x.primitive(),
            w_ih.primitive(),
            w_hh.primitive(),
            b_ih.primitive(),
            b_hh.primitive(),
        );
        match SequenceBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, state) = run_forward(xp, wi, wh, bi, bh, &spec);
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(run_forward(xp, wi, wh, bi, bh, &spec).0),
        }
    }
}
