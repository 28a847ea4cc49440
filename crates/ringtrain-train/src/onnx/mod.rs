//! ONNX export (`ringtrain export --format onnx`): a trained model as one ONNX graph (opset 17,
//! IR 8) built from the standard operators, so onnxruntime, tract or any ONNX runtime runs it.
//!
//! The graph, with the batch and the time length as dynamic dimensions:
//!
//! - input `input` `[batch, time, features]` `float` (numeric models) or `tokens`
//!   `[batch, time]` `int64` (text models: `Gather` from `embedding.weight`), transposed to
//!   time-major `[time, batch, width]`, the layout of ONNX's recurrent operators;
//! - `projection`: `MatMul` + `Add`; `conv{i}`: `Conv` with the layer's fixed "same"-style
//!   padding `((k − 1) / 2, k / 2)` and stride, then `Relu` / `Tanh`;
//! - each recurrent layer: one `LSTM` / `GRU` / `RNN` operator (`direction = bidirectional` for a
//!   bidirectional layer) whose `Y` `[time, directions, batch, hidden]` is reshaped to
//!   `[time, batch, directions · hidden]`, forward half first. The gate blocks are reordered
//!   from ringtrain's (PyTorch's) order to ONNX's: LSTM i, f, g, o → i, o, f, c; GRU r, z, n →
//!   z, r, h with `linear_before_reset = 1` (PyTorch's GRU applies the reset gate after the
//!   recurrent matrix product); an Elman layer with ReLU sets `activations`;
//! - `attention` / `transformer`: multi-head scaled dot-product self-attention (`MatMul`,
//!   `Softmax`) with its residual, and for the Transformer block the post-norm
//!   `LayerNormalization`s and the ReLU feed-forward layer, as `ringtrain_models::attention`;
//! - the head: the last step (for a bidirectional layer, the forward half of the last step and
//!   the backward half of step 0), the mean or the maximum over steps, then `MatMul` + `Add`
//!   → output `output` `[batch, outputs]` — forecasts in the normalized units of the
//!   `ringtrain.fitted` metadata, or class logits; a next-token head gives `output`
//!   `[batch, time, vocab]` logits at every step.
//!
//! With [`State::Carried`] (`--onnx-state`) each recurrent layer's state is a graph input and
//! output, so a device can stream a sequence one call (one step) at a time.
//!
//! Every step of the input is taken as valid: feed sequences unpadded (a batch of equal
//! lengths, or one sequence at a time). The model's metadata carries `ringtrain.spec`,
//! `ringtrain.fitted` (normalizer or vocabulary) and `ringtrain.layers`, like the safetensors
//! export.
//!
//! Not exported, with the reason in the error: the seq2seq decoder (its autoregressive beam
//! search is a data-dependent loop, which ONNX only offers through `Loop`, and no runtime this
//! project checks against runs one fast) and burn-nn reference layers (a test path no
//! checkpoint is built with).

mod graph;
mod layers;
pub mod proto;

use crate::checkpoint::Checkpoint;
use crate::error::ExportError;
use crate::export::Exported;
use burn::prelude::Device;
use graph::{Attr, Builder, Tensors, value_info};
use layers::{attention, recurrent};
use prost::Message;
use proto::{GraphProto, ModelProto, OperatorSetIdProto, StringStringEntryProto, data_type};
use ringtrain_models::{Layer, Model};
use ringtrain_spec::{ConvActivation, Pooling};
use std::collections::HashMap;
use std::path::Path;

/// The operator set the graph is written against.
pub const OPSET: i64 = 17;

/// The ONNX IR version of [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// `model` with the flat parameters `params` as a serialized ONNX model whose metadata holds
/// `metadata` plus `ringtrain.format` and `ringtrain.layers`.
///
/// # Errors
/// [`ExportError::Onnx`] naming the first layer ONNX export does not cover (see the module
/// documentation) and [`ringtrain_models::ModelError::ParamCount`] (as a
/// [`crate::TrainError`]) when `params` is not `model`'s size.
pub fn serialize(
    model: &Model,
    params: &[f32],
    metadata: HashMap<String, String>,
) -> Result<Exported, crate::TrainError> {
    serialize_with(model, params, metadata, State::Reset)
}

/// Whether the graph starts every call from a zero state or carries it through its inputs and
/// outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Every call starts from zeros (the whole window in one call).
    Reset,
    /// Each recurrent layer `k` has inputs `state_h{k}` (and `state_c{k}` for an LSTM)
    /// `[1, batch, hidden]` and outputs `state_h{k}_out` (`state_c{k}_out`): feed zeros first,
    /// then each call's outputs to the next, to stream a sequence in pieces of any length (one
    /// step at a time on a device). Unidirectional stacks without Conv1d, attention or pooled
    /// heads only.
    Carried,
}

/// [`serialize`] with the recurrent state handled as `state` says.
///
/// # Errors
/// As [`serialize`], plus [`ExportError::Onnx`] for a layer that cannot carry its state
/// (bidirectional, Conv1d, attention, mean or max pooling) under [`State::Carried`].
pub fn serialize_with(
    model: &Model,
    params: &[f32],
    metadata: HashMap<String, String>,
    state: State,
) -> Result<Exported, crate::TrainError> {
    let layout = crate::export::checked_layout(model, params)?;
    let carried = state == State::Carried;
    let mut g = Builder {
        nodes: Vec::new(),
        initializers: Vec::new(),
        next: 0,
        carried,
        state_inputs: Vec::new(),
        state_outputs: Vec::new(),
    };
    let layers = model.layers();
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut x = String::new();
    let mut recurrent_input = 0;
    for (index, layer) in layers.iter().enumerate() {
        let name = layer.name();
        let tensors = Tensors {
            by_key: layout
                .iter()
                .filter(|t| t.layer == name)
                .map(|t| (t.name.as_str(), t))
                .collect(),
            params,
            layer: name.clone(),
        };
        let unsupported = |reason: &str| ExportError::Onnx {
            layer: name.clone(),
            reason: reason.to_string(),
        };
        if index == 0 {
            x = match layer {
                Layer::Embedding(_) => {
                    inputs.push(value_info(
                        "tokens",
                        data_type::INT64,
                        &[Err("batch"), Err("time")],
                        "token ids (the vocabulary is in the ringtrain.fitted metadata)",
                    ));
                    "tokens".to_string()
                }
                Layer::Projection(_)
                | Layer::Conv(_)
                | Layer::Recurrent(_)
                | Layer::Reference(_)
                | Layer::Attention(_)
                | Layer::Head(_)
                | Layer::Decoder(_) => {
                    let features = match layer.input_shape() {
                        ringtrain_models::BoundaryShape::Seq { features } => features,
                        ringtrain_models::BoundaryShape::Tokens
                        | ringtrain_models::BoundaryShape::Out { .. } => 0,
                    };
                    inputs.push(value_info(
                        "input",
                        data_type::FLOAT,
                        &[Err("batch"), Err("time"), Ok(features)],
                        "feature rows in the normalized units of the ringtrain.fitted metadata",
                    ));
                    g.transpose("input", &[1, 0, 2])
                }
            };
        }
        x = match layer {
            Layer::Embedding(_) => {
                let (shape, w) = tensors.ringtrain("embedding.weight")?;
                let w = g.init_f32("embedding.weight", &shape, w);
                let e = g.op("Gather", &[&w, &x], vec![("axis", Attr::Int(0))]);
                g.transpose(&e, &[1, 0, 2])
            }
            Layer::Projection(_) => {
                let (shape, w) = tensors.ringtrain("projection.weight")?;
                let (_, b) = tensors.ringtrain("projection.bias")?;
                g.linear(&x, ("projection.weight", &shape, w), ("projection.bias", b))
            }
            Layer::Conv(_) | Layer::Attention(_) if carried => {
                return Err(unsupported(
                    "it reads a window of steps around each step, so a stream cut into calls \
                     would not see what the whole sequence sees (export without --onnx-state)",
                )
                .into());
            }
            Layer::Head(h) if carried && !h.per_step && h.pooling != Pooling::Last => {
                return Err(unsupported(
                    "mean and max pooling cover the whole sequence, not one call's piece of it \
                     (export without --onnx-state)",
                )
                .into());
            }
            Layer::Conv(c) => {
                let key = |f: &str| format!("{name}.{f}");
                let (shape, w) = tensors.ringtrain(&key("weight"))?;
                let (_, b) = tensors.ringtrain(&key("bias"))?;
                let w = g.init_f32(&key("weight"), &shape, w);
                let b = g.init_f32(&key("bias"), &[b.len()], b);
                let kernel = c.kernel();
                let before = (kernel - 1) / 2;
                // [T, B, F] → [B, F, T], Conv's layout.
                let input = g.transpose(&x, &[1, 2, 0]);
                let y = g.op(
                    "Conv",
                    &[&input, &w, &b],
                    vec![
                        ("kernel_shape", Attr::Ints(vec![kernel as i64])),
                        ("strides", Attr::Ints(vec![c.stride.max(1) as i64])),
                        (
                            "pads",
                            Attr::Ints(vec![before as i64, (kernel - 1 - before) as i64]),
                        ),
                    ],
                );
                let y = match c.activation {
                    ConvActivation::Relu => g.op("Relu", &[&y], Vec::new()),
                    ConvActivation::Tanh => g.op("Tanh", &[&y], Vec::new()),
                    ConvActivation::None => y,
                };
                g.transpose(&y, &[2, 0, 1])
            }
            Layer::Recurrent(r) => {
                if r.position == 0 {
                    recurrent_input = r.input_size;
                }
                recurrent(&mut g, &x, r, &tensors)?
            }
            Layer::Head(h) => {
                let (shape, w) = tensors.ringtrain("head.linear.weight")?;
                let (_, b) = tensors.ringtrain("head.linear.bias")?;
                let width = shape.get(1).copied().unwrap_or(0);
                if h.per_step {
                    // [T, B, W] → [B, T, W] → [B, T, vocab]
                    let steps = g.transpose(&x, &[1, 0, 2]);
                    let y = g.linear(
                        &steps,
                        ("head.linear.weight", &shape, w),
                        ("head.linear.bias", b),
                    );
                    outputs.push(value_info(
                        "output",
                        data_type::FLOAT,
                        &[Err("batch"), Err("time"), Ok(width)],
                        "next-token logits at every step",
                    ));
                    y
                } else {
                    let pooled = match h.pooling {
                        Pooling::Last if h.bidirectional => {
                            let last = g.pick(&x, -1, 0);
                            let first = g.pick(&x, 0, 0);
                            let fwd = g.columns(&last, 0, h.hidden);
                            let bwd = g.columns(&first, h.hidden, 2 * h.hidden);
                            g.op("Concat", &[&fwd, &bwd], vec![("axis", Attr::Int(1))])
                        }
                        Pooling::Last => g.pick(&x, -1, 0),
                        Pooling::Mean => g.op(
                            "ReduceMean",
                            &[&x],
                            vec![("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(0))],
                        ),
                        Pooling::Max => g.op(
                            "ReduceMax",
                            &[&x],
                            vec![("axes", Attr::Ints(vec![0])), ("keepdims", Attr::Int(0))],
                        ),
                    };
                    let y = g.linear(
                        &pooled,
                        ("head.linear.weight", &shape, w),
                        ("head.linear.bias", b),
                    );
                    outputs.push(value_info(
                        "output",
                        data_type::FLOAT,
                        &[Err("batch"), Ok(width)],
                        if h.classifier {
                            "class logits"
                        } else {
                            "forecast in the normalized units of the ringtrain.fitted metadata"
                        },
                    ));
                    y
                }
            }
            Layer::Attention(a) => attention(&mut g, &x, a, &name, &tensors)?,
            Layer::Decoder(_) => {
                return Err(unsupported(
                    "a seq2seq decoder's autoregressive beam search is a data-dependent loop, \
                     which ONNX graphs cannot express without Loop (the safetensors export has \
                     its weights)",
                )
                .into());
            }
            Layer::Reference(_) => {
                return Err(unsupported("burn-nn reference layers are a test path").into());
            }
        };
    }
    // The last node's output is the graph's output.
    if let Some(last) = g.nodes.last_mut() {
        last.output = vec!["output".to_string()];
    }
    let mut props = metadata;
    props.insert(
        "ringtrain.format".to_string(),
        crate::export::FORMAT.to_string(),
    );
    props.insert(
        "ringtrain.layers".to_string(),
        layers.iter().map(Layer::name).collect::<Vec<_>>().join(","),
    );
    let mut metadata_props: Vec<StringStringEntryProto> = props
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
    metadata_props.sort_by(|a, b| a.key.cmp(&b.key));
    let tensors = g.initializers.len();
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "ringtrain".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        doc_string: "exported by ringtrain export --format onnx".to_string(),
        graph: Some(GraphProto {
            node: g.nodes,
            name: "ringtrain".to_string(),
            initializer: g.initializers,
            doc_string: String::new(),
            input: inputs.into_iter().chain(g.state_inputs).collect(),
            output: outputs.into_iter().chain(g.state_outputs).collect(),
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props,
    };
    Ok(Exported {
        bytes: model.encode_to_vec(),
        tensors,
        parameters: params.len(),
        recurrent_input,
    })
}

/// The model in `ckpt` as a serialized ONNX model ([`serialize_with`] at `state`, with the
/// spec, the fitted state and `extra` as metadata); `path` only names the file in errors.
///
/// # Errors
/// As [`serialize`], plus [`crate::TrainError`] when the checkpoint's model cannot be rebuilt.
pub fn to_onnx(
    ckpt: &Checkpoint,
    state: State,
    extra: HashMap<String, String>,
    path: &Path,
    device: &Device,
) -> Result<Exported, crate::TrainError> {
    let model = crate::inference::skeleton(ckpt, device)?;
    let metadata = crate::export::metadata(ckpt, extra, path)?;
    serialize_with(&model, &ckpt.params, metadata, state)
}
