//! The model as a stack of layers — input block, Conv1d layers, recurrent layers, attention
//! block, head (the Conv1d layers and the attention block optional) — that a pipeline can cut
//! into contiguous stages, each run with [`Model::forward_range`].

use std::fmt;
use std::ops::Range;

use burn::module::Module;
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Int, Tensor};
use ringtrain_spec::{AttentionKind, ModelSpec, Pooling};

use crate::attention::Attention;
use crate::conv::Conv;
use crate::error::ModelError;
pub use crate::forward::ForwardCtx;
use crate::head::{Head, embed_steps, new_embedding, new_linear, project_steps};
use crate::init::Init;
use crate::recurrent::Recurrent;
use crate::reference::ReferenceRecurrent;
use crate::seq::Steps;
use crate::seq2seq::{Decoder, DecoderConfig};
pub use crate::shape::BoundaryShape;

/// What the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// `features` numeric values per step (`[B, T, features]`).
    Numeric {
        /// Values per step.
        features: usize,
    },
    /// Token ids in `0..vocab` (`[B, T]`), id 0 being `<pad>`.
    Tokens {
        /// Vocabulary size including `<pad>` and `<unk>`.
        vocab: usize,
    },
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// `outputs` real values from the last valid step.
    Regression {
        /// Values predicted per sample (horizon × targets).
        outputs: usize,
    },
    /// Logits over `classes`, from the steps pooled by `pooling`.
    Classes {
        /// Number of classes.
        classes: usize,
        /// Pooling over valid steps.
        pooling: Pooling,
    },
    /// An attentional decoder over the target vocabulary (seq2seq): logits `[B·T, vocab]`.
    Decoder(DecoderConfig),
    /// Logits over the next token at every step, `[B·T, vocab]` (row `b·T + t`): a language
    /// model. Needs causal layers only (no bidirectional layer, Conv1d or attention).
    NextToken {
        /// Vocabulary size.
        vocab: usize,
    },
}

impl HeadKind {
    /// Whether the head predicts the next token at every step (a language model), which makes
    /// every layer before it causal. Spelled out per kind so that a new head must answer.
    pub fn is_next_token(self) -> bool {
        match self {
            HeadKind::NextToken { .. } => true,
            HeadKind::Regression { .. } | HeadKind::Classes { .. } | HeadKind::Decoder(_) => false,
        }
    }
}

/// Model input for one batch.
// One per batch in flight: the size difference of the pair variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Inputs {
    /// `[B, T, F]` numeric features.
    Numeric(Tensor<3>),
    /// `[B, T]` token ids.
    Tokens(Tensor<2, Int>),
    /// A seq2seq batch: source ids `[B, S]` (the batch mask is theirs) and decoder inputs
    /// `[B, T]` (`<bos> y_1 …`, padded).
    Pair {
        /// Source token ids.
        source: Tensor<2, Int>,
        /// Decoder input ids.
        target_in: Tensor<2, Int>,
    },
}

/// One batch: inputs plus the validity mask `[B, T]` (1.0 valid, 0.0 padding, padding only at
/// the end of each sequence).
#[derive(Debug, Clone)]
pub struct Batch {
    /// The inputs.
    pub inputs: Inputs,
    /// Validity mask `[B, T]`.
    pub mask: Tensor<2>,
}

/// The value that flows between layers and across stage boundaries.
#[derive(Debug, Clone)]
pub enum Boundary {
    /// Token ids `[B, T]` with their mask (the input of an embedding layer).
    Tokens {
        /// Token ids.
        ids: Tensor<2, Int>,
        /// Validity mask `[B, T]`.
        mask: Tensor<2>,
    },
    /// A sequence `[B, T, F]` with its mask.
    Seq {
        /// Step values.
        x: Tensor<3>,
        /// Validity mask `[B, T]`.
        mask: Tensor<2>,
    },
    /// The head's output `[B, outputs]`.
    Out(Tensor<2>),
}

impl From<Batch> for Boundary {
    fn from(b: Batch) -> Boundary {
        match b.inputs {
            Inputs::Numeric(x) => Boundary::Seq { x, mask: b.mask },
            Inputs::Tokens(ids) => Boundary::Tokens { ids, mask: b.mask },
            // What enters the first layer is the source; the decoder inputs join at the end.
            Inputs::Pair { source, .. } => Boundary::Tokens {
                ids: source,
                mask: b.mask,
            },
        }
    }
}

impl Boundary {
    fn describe(&self) -> String {
        match self {
            Boundary::Tokens { ids, .. } => format!("tokens {:?}", ids.dims()),
            Boundary::Seq { x, .. } => format!("seq {:?}", x.dims()),
            Boundary::Out(y) => format!("out {:?}", y.dims()),
        }
    }
}

/// Description of one layer for stage planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Position in the stack.
    pub index: usize,
    /// Name (`embedding`, `projection`, `conv0`, `lstm0`, `bigru1`, `attention`, `transformer`,
    /// `head`).
    pub name: String,
    /// Number of scalar parameters.
    pub params: usize,
    /// What the layer takes.
    pub input: BoundaryShape,
    /// What the layer gives.
    pub output: BoundaryShape,
}

/// Which implementation computes the recurrent layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecurrentImpl {
    /// Whole-sequence custom autodiff operations on the flex device (the default); other
    /// devices and dtypes fall back to [`RecurrentImpl::BurnOps`] automatically.
    Kernel,
    /// Our fused per-timestep cells on plain burn ops, on any device.
    BurnOps,
    /// burn-nn's stock modules with the same weights (reference and benchmark baseline).
    BurnNnReference,
}

/// One layer of the stack.
// A model holds a handful of these, and burn's Module derive has no Box support, so the
// size difference between variants costs nothing worth an indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// Token embedding `[vocab, dim]`.
    Embedding(Embedding),
    /// Linear projection of numeric features.
    Projection(Linear),
    /// A Conv1d layer over the time axis (may shorten the sequence, see [`Conv`]).
    Conv(Conv),
    /// A recurrent layer (kernel or burn-ops path, see [`RecurrentImpl`]).
    Recurrent(Recurrent),
    /// A burn-nn recurrent layer (see [`RecurrentImpl::BurnNnReference`]).
    Reference(ReferenceRecurrent),
    /// Self-attention or a Transformer encoder block over the recurrent outputs.
    Attention(Attention),
    /// Pooling + linear output.
    Head(Head),
    /// The attentional decoder of a seq2seq model (in place of the head).
    Decoder(Decoder),
}

fn cell_name(cell: ringtrain_spec::CellKind) -> &'static str {
    match cell {
        ringtrain_spec::CellKind::Rnn => "rnn",
        ringtrain_spec::CellKind::Lstm => "lstm",
        ringtrain_spec::CellKind::Gru => "gru",
    }
}

impl Layer {
    /// The layer's name in error messages and stage plans.
    pub fn name(&self) -> String {
        let bi = |b: bool| if b { "bi" } else { "" };
        match self {
            Layer::Embedding(_) => "embedding".into(),
            Layer::Projection(_) => "projection".into(),
            Layer::Conv(c) => format!("conv{}", c.position),
            Layer::Recurrent(r) => format!(
                "{}{}{}",
                bi(r.bidirectional()),
                cell_name(r.cell),
                r.position
            ),
            Layer::Reference(r) => format!(
                "{}{}{}",
                bi(r.bidirectional()),
                cell_name(r.cell),
                r.position
            ),
            Layer::Attention(a) => match a.kind {
                AttentionKind::SelfAttention => "attention".into(),
                AttentionKind::Transformer => "transformer".into(),
            },
            Layer::Head(_) => "head".into(),
            Layer::Decoder(_) => "decoder".into(),
        }
    }

    /// What the layer takes.
    pub fn input_shape(&self) -> BoundaryShape {
        match self {
            Layer::Embedding(_) => BoundaryShape::Tokens,
            Layer::Projection(l) => BoundaryShape::Seq {
                features: l.weight.dims()[0],
            },
            Layer::Conv(c) => BoundaryShape::Seq {
                features: c.input_size(),
            },
            Layer::Recurrent(r) => BoundaryShape::Seq {
                features: r.input_size,
            },
            Layer::Reference(r) => BoundaryShape::Seq {
                features: r.input_size,
            },
            Layer::Attention(a) => BoundaryShape::Seq {
                features: a.width(),
            },
            Layer::Head(h) => BoundaryShape::Seq {
                features: h.input_size(),
            },
            Layer::Decoder(d) => BoundaryShape::Seq {
                features: d.input_size(),
            },
        }
    }

    /// What the layer gives.
    pub fn output_shape(&self) -> BoundaryShape {
        match self {
            Layer::Embedding(e) => BoundaryShape::Seq {
                features: e.weight.dims()[1],
            },
            Layer::Projection(l) => BoundaryShape::Seq {
                features: l.weight.dims()[1],
            },
            Layer::Conv(c) => BoundaryShape::Seq {
                features: c.channels(),
            },
            Layer::Recurrent(r) => BoundaryShape::Seq {
                features: r.output_size(),
            },
            Layer::Reference(r) => BoundaryShape::Seq {
                features: r.hidden * if r.bidirectional() { 2 } else { 1 },
            },
            Layer::Attention(a) => BoundaryShape::Seq {
                features: a.width(),
            },
            Layer::Head(h) => BoundaryShape::Out {
                width: h.output_size(),
            },
            Layer::Decoder(d) => BoundaryShape::Out { width: d.vocab() },
        }
    }
}

/// The in-stage form of a [`Boundary`].
enum Flow {
    Tokens(Tensor<2, Int>, Tensor<2>),
    Steps(Steps),
    Out(Tensor<2>),
}

/// A recurrent network as a stack of layers (see the crate docs for the layout).
#[derive(Module, Debug)]
pub struct Model {
    layers: Vec<Layer>,
}

fn invalid(field: &'static str, value: impl fmt::Display, reason: &'static str) -> ModelError {
    ModelError::InvalidSpec {
        field,
        value: value.to_string(),
        reason,
    }
}

impl Model {
    /// Builds the model for `spec`, reading `input` and predicting `head`, with parameters drawn
    /// deterministically from `seed` (same seed → bit-identical parameters).
    ///
    /// # Errors
    /// [`ModelError::InvalidSpec`] for zero sizes, a projection on token inputs, or a dropout
    /// outside `[0, 1)`; [`ModelError::InvalidLayer`] for a Conv1d layer with a zero size or
    /// stride, or attention whose heads do not divide the recurrent output width, whose
    /// dropout is outside `[0, 1)` or whose Transformer feed-forward width is zero.
    pub fn new(
        spec: &ModelSpec,
        input: InputKind,
        head: HeadKind,
        seed: u64,
        device: &Device,
    ) -> Result<Model, ModelError> {
        if spec.layers == 0 {
            return Err(invalid(
                "model.layers",
                spec.layers,
                "at least 1 recurrent layer",
            ));
        }
        if spec.hidden == 0 {
            return Err(invalid("model.hidden", spec.hidden, "at least 1 unit"));
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(invalid(
                "model.dropout",
                spec.dropout,
                "a probability in [0, 1)",
            ));
        }
        check_hybrids(spec)?;
        if head.is_next_token() {
            check_causal(spec)?;
        }
        let mut init = Init::new(seed);
        let mut layers = Vec::new();
        let mut width = match input {
            InputKind::Numeric { features } => {
                if features == 0 {
                    return Err(invalid("input.features", features, "at least 1 feature"));
                }
                match spec.projection {
                    Some(0) => return Err(invalid("model.projection", 0, "at least 1 unit")),
                    Some(p) => {
                        layers.push(Layer::Projection(new_linear(
                            features, p, &mut init, device,
                        )));
                        p
                    }
                    None => features,
                }
            }
            InputKind::Tokens { vocab } => {
                if vocab < 2 {
                    return Err(invalid(
                        "input.vocab",
                        vocab,
                        "at least 2 tokens (<pad> and one more)",
                    ));
                }
                if let Some(p) = spec.projection {
                    return Err(invalid(
                        "model.projection",
                        p,
                        "token inputs use model.embedding_dim",
                    ));
                }
                if spec.embedding_dim == 0 {
                    return Err(invalid("model.embedding_dim", 0, "at least 1"));
                }
                layers.push(Layer::Embedding(new_embedding(
                    vocab,
                    spec.embedding_dim,
                    &mut init,
                    device,
                )));
                spec.embedding_dim
            }
        };
        for (position, conv) in spec.conv.iter().enumerate() {
            let c = Conv::new(conv, width, position, &mut init, device);
            width = c.channels();
            layers.push(Layer::Conv(c));
        }
        for position in 0..spec.layers {
            let dropout = if position == 0 { 0.0 } else { spec.dropout };
            let r = Recurrent::new(
                spec.cell,
                spec.activation,
                width,
                spec.hidden,
                spec.bidirectional,
                dropout,
                position,
                &mut init,
                device,
            );
            width = r.output_size();
            layers.push(Layer::Recurrent(r));
        }
        if let Some(a) = &spec.attention {
            layers.push(Layer::Attention(Attention::new(
                a, width, &mut init, device,
            )));
        }
        let (outputs, pooling, classifier) = match head {
            HeadKind::Regression { outputs } => (outputs, Pooling::Last, false),
            HeadKind::Classes { classes, pooling } => (classes, pooling, true),
            HeadKind::Decoder(config) => {
                let decoder = Decoder::new(spec, &config, width, &mut init, device)?;
                layers.push(Layer::Decoder(decoder));
                return Ok(Model { layers });
            }
            HeadKind::NextToken { vocab } => (vocab, Pooling::Last, true),
        };
        if outputs == 0 {
            return Err(invalid("head.outputs", outputs, "at least 1 output"));
        }
        layers.push(Layer::Head(Head {
            linear: new_linear(width, outputs, &mut init, device),
            pooling,
            hidden: spec.hidden,
            // After attention a step's halves no longer are the two directions: pool like a
            // unidirectional layer (every step has seen the whole sequence anyway).
            bidirectional: spec.bidirectional && spec.attention.is_none(),
            classifier,
            per_step: head.is_next_token(),
        }));
        Ok(Model { layers })
    }

    /// The same model with its recurrent layers computed by `imp`. Switching to or from
    /// [`RecurrentImpl::BurnNnReference`] copies the weights into new leaf parameters (new
    /// ids); switching between [`RecurrentImpl::Kernel`] and [`RecurrentImpl::BurnOps`] keeps
    /// the parameters. Other layers are kept as they are.
    pub fn with_recurrent_impl(self, imp: RecurrentImpl) -> Model {
        let layers = self
            .layers
            .into_iter()
            .map(|l| match (l, imp) {
                (Layer::Recurrent(r), RecurrentImpl::BurnNnReference) => {
                    Layer::Reference(ReferenceRecurrent::from_fused(&r))
                }
                (Layer::Recurrent(mut r), kind) => {
                    r.sequence_kernel = kind == RecurrentImpl::Kernel;
                    Layer::Recurrent(r)
                }
                (Layer::Reference(r), RecurrentImpl::BurnNnReference) => Layer::Reference(r),
                (Layer::Reference(r), kind) => {
                    let mut r = r.to_fused();
                    r.sequence_kernel = kind == RecurrentImpl::Kernel;
                    Layer::Recurrent(r)
                }
                (l, _) => l,
            })
            .collect();
        Model { layers }
    }

    /// The same model with the output head's weights and bias set to zero (parameter ids and
    /// trainability kept; other layers untouched). A regressor trained on scaled corrections to
    /// a reference forecast then starts at "no correction", so before its first step it is
    /// exactly as good as that reference; the head's weights still get gradients (its inputs
    /// are not zero), so learning starts at the first step.
    pub fn with_zero_head(self) -> Model {
        struct Zero;
        impl burn::module::ModuleMapper for Zero {
            fn map_float<const D: usize>(
                &mut self,
                param: burn::module::Param<Tensor<D>>,
            ) -> burn::module::Param<Tensor<D>> {
                param.map(|t| {
                    let require_grad = t.is_require_grad();
                    t.zeros_like().set_require_grad(require_grad)
                })
            }
        }
        let layers = self
            .layers
            .into_iter()
            .map(|l| match l {
                Layer::Head(mut h) => {
                    h.linear = h.linear.map(&mut Zero);
                    Layer::Head(h)
                }
                other => other,
            })
            .collect();
        Model { layers }
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Number of layers (input block, Conv1d layers, recurrent layers, attention, head).
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Name, parameter count and boundary shapes of every layer.
    pub fn layer_infos(&self) -> Vec<LayerInfo> {
        self.layers
            .iter()
            .enumerate()
            .map(|(index, l)| LayerInfo {
                index,
                name: l.name(),
                params: l.num_params(),
                input: l.input_shape(),
                output: l.output_shape(),
            })
            .collect()
    }

    /// The validity mask of the sequence entering layer `layer` (leaving layer `layer - 1`),
    /// given the mask `[B, T]` of the model's input. Equal to `mask` unless a strided Conv1d
    /// layer comes before `layer`: each one shortens the sequence to `ceil(T / stride)` steps
    /// and a sample with `L` valid steps to `ceil(L / stride)`. A pipeline stage that receives
    /// a `Boundary::Seq` uses it for the boundary's shape (`[B, mask.dims()[1], features]`) and
    /// mask. Reads the mask back to the host once per strided layer.
    ///
    /// # Errors
    /// [`ModelError::Range`] if `layer` is past the last layer.
    pub fn mask_at(&self, layer: usize, mask: Tensor<2>) -> Result<Tensor<2>, ModelError> {
        if layer > self.layers.len() {
            return Err(ModelError::Range {
                start: layer,
                end: layer,
                layers: self.layers.len(),
            });
        }
        Ok(self.layers[..layer].iter().fold(mask, |m, l| match l {
            Layer::Conv(c) => c.mask_after(&m),
            _ => m,
        }))
    }

    /// Full forward pass: `[B, outputs]` predictions or `[B, classes]` logits.
    ///
    /// # Panics
    /// If the batch does not fit the model (token ids for a numeric model, wrong feature width,
    /// mask shape not `[B, T]`); [`Model::try_forward`] returns that as an error instead.
    pub fn forward(&self, batch: Batch, ctx: &ForwardCtx) -> Tensor<2> {
        match self.try_forward(batch, ctx) {
            Ok(y) => y,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`Model::forward`] with shape errors returned.
    ///
    /// # Errors
    /// [`ModelError::Boundary`] naming the first layer whose input does not fit.
    pub fn try_forward(&self, batch: Batch, ctx: &ForwardCtx) -> Result<Tensor<2>, ModelError> {
        if let Inputs::Pair { source, target_in } = batch.inputs {
            return self.forward_pair(source, target_in, batch.mask, ctx);
        }
        match self.forward_range(0..self.layers.len(), batch.into(), ctx)? {
            Boundary::Out(y) => Ok(y),
            other => Err(ModelError::Boundary {
                layer: self.layers.len(),
                name: "output".into(),
                expected: BoundaryShape::Out { width: 0 },
                got: other.describe(),
            }),
        }
    }

    /// Runs layers `range` on `input` (a stage of a pipeline). Splitting `0..n` into
    /// `0..k` and `k..n` gives exactly the unsplit result (dropout included: its masks depend on
    /// the absolute layer index, not on the stage).
    ///
    /// Cost notes: the mask is read back to the host once per call to learn whether the batch
    /// has padding (an unpadded batch then skips all masking arithmetic); a `Seq` input is taken
    /// as a time-major view (no copy); only the burn-ops fallback cuts it into per-step tensors,
    /// which for a tracked boundary leaf adds a backward cost of order `T² · B · F`.
    ///
    /// # Errors
    /// [`ModelError::Range`] for an empty or out-of-bounds range; [`ModelError::Boundary`]
    /// naming the layer whose input has the wrong kind or width.
    pub fn forward_range(
        &self,
        range: Range<usize>,
        input: Boundary,
        ctx: &ForwardCtx,
    ) -> Result<Boundary, ModelError> {
        if range.start >= range.end || range.end > self.layers.len() {
            return Err(ModelError::Range {
                start: range.start,
                end: range.end,
                layers: self.layers.len(),
            });
        }
        let first = &self.layers[range.start];
        let mismatch = |got: String| ModelError::Boundary {
            layer: range.start,
            name: first.name(),
            expected: first.input_shape(),
            got,
        };
        let mut flow = match (input, first.input_shape()) {
            (Boundary::Tokens { ids, mask }, BoundaryShape::Tokens) => {
                if ids.dims() != mask.dims() {
                    return Err(mismatch(format!(
                        "tokens {:?} with mask {:?}",
                        ids.dims(),
                        mask.dims()
                    )));
                }
                Flow::Tokens(ids, mask)
            }
            (Boundary::Seq { x, mask }, BoundaryShape::Seq { features }) => {
                let [b, t, f] = x.dims();
                if f != features || mask.dims() != [b, t] {
                    return Err(mismatch(format!(
                        "seq {:?} with mask {:?}",
                        x.dims(),
                        mask.dims()
                    )));
                }
                Flow::Steps(Steps::from_seq(x, mask))
            }
            (other, _) => return Err(mismatch(other.describe())),
        };
        for index in range.clone() {
            let dropout = ctx.train.then_some((ctx.dropout_seed, index as u64));
            flow = match (&self.layers[index], flow) {
                (Layer::Embedding(e), Flow::Tokens(ids, mask)) => {
                    Flow::Steps(embed_steps(e, ids, mask))
                }
                (Layer::Projection(l), Flow::Steps(s)) => Flow::Steps(project_steps(l, s)),
                (Layer::Conv(c), Flow::Steps(s)) => Flow::Steps(c.forward(s)),
                (Layer::Recurrent(r), Flow::Steps(s)) => Flow::Steps(r.forward(s, dropout)),
                (Layer::Reference(r), Flow::Steps(s)) => Flow::Steps(r.forward(s, dropout)),
                (Layer::Attention(a), Flow::Steps(s)) => Flow::Steps(a.forward(s, dropout)),
                (Layer::Head(h), Flow::Steps(s)) => Flow::Out(h.forward(s)),
                // Only reachable for a hand-assembled stack; Model::new chains layers correctly.
                (layer, _) => {
                    return Err(ModelError::Boundary {
                        layer: index,
                        name: layer.name(),
                        expected: layer.input_shape(),
                        got: "the previous layer's output".into(),
                    });
                }
            };
        }
        Ok(match flow {
            Flow::Tokens(ids, mask) => Boundary::Tokens { ids, mask },
            Flow::Steps(s) => {
                let (x, mask) = s.into_seq();
                Boundary::Seq { x, mask }
            }
            Flow::Out(y) => Boundary::Out(y),
        })
    }
}

impl Model {
    /// The seq2seq forward: encoder layers on the source, then the decoder on `target_in`.
    fn forward_pair(
        &self,
        source: Tensor<2, Int>,
        target_in: Tensor<2, Int>,
        mask: Tensor<2>,
        ctx: &ForwardCtx,
    ) -> Result<Tensor<2>, ModelError> {
        let n = self.layers.len();
        let Some(Layer::Decoder(decoder)) = self.layers.last() else {
            return Err(ModelError::Boundary {
                layer: n.saturating_sub(1),
                name: self.layers.last().map_or_else(String::new, Layer::name),
                expected: BoundaryShape::Tokens,
                got: "a seq2seq batch (source and target ids) for a model without a decoder".into(),
            });
        };
        let enc = match self.forward_range(0..n - 1, Boundary::Tokens { ids: source, mask }, ctx)? {
            Boundary::Seq { x, mask } => (x, mask),
            other => {
                return Err(ModelError::Boundary {
                    layer: n - 1,
                    name: "decoder".into(),
                    expected: BoundaryShape::Seq {
                        features: decoder.input_size(),
                    },
                    got: other.describe(),
                });
            }
        };
        Ok(decoder.forward(enc.0, &enc.1, target_in, ctx))
    }
}

/// A next-token model may only look back: the model-side twin of the spec's language-model
/// checks.
fn check_causal(spec: &ModelSpec) -> Result<(), ModelError> {
    if spec.bidirectional {
        return Err(invalid(
            "model.bidirectional",
            true,
            "a next-token model must be unidirectional",
        ));
    }
    if !spec.conv.is_empty() {
        return Err(invalid(
            "model.conv",
            spec.conv.len(),
            "a next-token model has no Conv1d layers (their padding reads later steps)",
        ));
    }
    if spec.attention.is_some() {
        return Err(invalid(
            "model.attention",
            "set",
            "a next-token model has no attention block (it reads later steps)",
        ));
    }
    Ok(())
}

/// Model-side checks of the hybrid layers (the spec validator reports the same problems with
/// their field paths; this guards hand-built [`ModelSpec`]s).
fn check_hybrids(spec: &ModelSpec) -> Result<(), ModelError> {
    let bad = |field: String, value: String, reason: &str| {
        Err(ModelError::InvalidLayer {
            field,
            value,
            reason: reason.to_string(),
        })
    };
    for (i, c) in spec.conv.iter().enumerate() {
        for (key, v) in [
            ("channels", c.channels),
            ("kernel", c.kernel),
            ("stride", c.stride),
        ] {
            if v == 0 {
                return bad(format!("model.conv[{i}].{key}"), "0".into(), "at least 1");
            }
        }
    }
    if let Some(a) = &spec.attention {
        let width = spec.hidden * if spec.bidirectional { 2 } else { 1 };
        if a.heads == 0 || !width.is_multiple_of(a.heads) {
            return bad(
                "model.attention.heads".into(),
                a.heads.to_string(),
                &format!("must divide the recurrent output width {width}"),
            );
        }
        if !(0.0..1.0).contains(&a.dropout) {
            return bad(
                "model.attention.dropout".into(),
                a.dropout.to_string(),
                "a probability in [0, 1)",
            );
        }
        if a.kind == AttentionKind::Transformer && a.ff_hidden == 0 {
            return bad(
                "model.attention.ff_hidden".into(),
                "0".into(),
                "at least 1 for the transformer block",
            );
        }
    }
    Ok(())
}
