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

pub mod proto;

use crate::checkpoint::Checkpoint;
use crate::error::ExportError;
use crate::export::Exported;
use crate::layout::TorchTensor;
use burn::prelude::Device;
use prost::Message;
use proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto, attribute_type, data_type,
};
use ringtrain_models::{Layer, Model};
use ringtrain_spec::{Activation, CellKind, ConvActivation, Pooling};
use std::collections::HashMap;
use std::path::Path;

/// The operator set the graph is written against.
pub const OPSET: i64 = 17;

/// The ONNX IR version of [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// An attribute value.
enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
    Str(&'static str),
    Strs(Vec<&'static str>),
}

/// A graph under construction: nodes in order, initializers, and a counter for fresh names.
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next: usize,
    /// Whether recurrent states are graph inputs and outputs ([`State::Carried`]).
    carried: bool,
    /// State inputs and outputs, in layer order.
    state_inputs: Vec<ValueInfoProto>,
    state_outputs: Vec<ValueInfoProto>,
}

impl Builder {
    fn fresh(&mut self, stem: &str) -> String {
        self.next += 1;
        format!("{stem}_{}", self.next)
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    fn init_i64(&mut self, stem: &str, dims: &[usize], values: &[i64]) -> String {
        let name = self.fresh(stem);
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|d| *d as i64).collect(),
            data_type: data_type::INT64,
            name: name.clone(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name
    }

    /// Appends `op(inputs) -> one fresh output` and returns the output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<(&'static str, Attr)>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.op_into(op, inputs, vec![out.clone()], attrs);
        out
    }

    /// Appends `op(inputs) -> outputs` (named by the caller).
    fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: Vec<String>,
        attrs: Vec<(&'static str, Attr)>,
    ) {
        let name = self.fresh(&op.to_ascii_lowercase());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name,
            op_type: op.to_string(),
            attribute: attrs
                .into_iter()
                .map(|(name, a)| {
                    let mut p = AttributeProto {
                        name: name.to_string(),
                        ..AttributeProto::default()
                    };
                    match a {
                        Attr::Float(f) => {
                            p.f = f;
                            p.r#type = attribute_type::FLOAT;
                        }
                        Attr::Int(i) => {
                            p.i = i;
                            p.r#type = attribute_type::INT;
                        }
                        Attr::Ints(v) => {
                            p.ints = v;
                            p.r#type = attribute_type::INTS;
                        }
                        Attr::Str(s) => {
                            p.s = s.as_bytes().to_vec();
                            p.r#type = attribute_type::STRING;
                        }
                        Attr::Strs(v) => {
                            p.strings = v.iter().map(|s| s.as_bytes().to_vec()).collect();
                            p.r#type = attribute_type::STRINGS;
                        }
                    }
                    p
                })
                .collect(),
        });
    }

    fn transpose(&mut self, x: &str, perm: &[i64]) -> String {
        self.op("Transpose", &[x], vec![("perm", Attr::Ints(perm.to_vec()))])
    }

    /// `x · W + b` over the last axis, with `W` `[in, out]` (ringtrain's `Linear` layout).
    fn linear(&mut self, x: &str, w: (&str, &[usize], &[f32]), b: (&str, &[f32])) -> String {
        let w = self.init_f32(w.0, w.1, w.2);
        let b = self.init_f32(b.0, &[b.1.len()], b.1);
        let y = self.op("MatMul", &[x, &w], Vec::new());
        self.op("Add", &[&y, &b], Vec::new())
    }

    /// `x[index]` along `axis`, that axis removed.
    fn pick(&mut self, x: &str, index: i64, axis: i64) -> String {
        let i = self.init_i64("index", &[], &[index]);
        self.op("Gather", &[x, &i], vec![("axis", Attr::Int(axis))])
    }

    /// `x[:, start..end]` of a 2-D `x`.
    fn columns(&mut self, x: &str, start: usize, end: usize) -> String {
        let s = self.init_i64("start", &[1], &[start as i64]);
        let e = self.init_i64("end", &[1], &[end as i64]);
        let a = self.init_i64("axes", &[1], &[1]);
        self.op("Slice", &[x, &s, &e, &a], Vec::new())
    }
}

/// The file-layout values of each of a layer's tensors, by key.
struct Tensors<'a> {
    by_key: HashMap<&'a str, &'a TorchTensor>,
    params: &'a [f32],
    layer: String,
}

impl Tensors<'_> {
    fn get(&self, key: &str) -> Result<&TorchTensor, ExportError> {
        self.by_key
            .get(key)
            .copied()
            .ok_or_else(|| ExportError::Onnx {
                layer: self.layer.clone(),
                reason: format!("tensor {key:?} is missing from the model's layout"),
            })
    }

    /// The tensor in ringtrain's orientation (a `Linear` weight `[in, out]`).
    fn ringtrain(&self, key: &str) -> Result<(Vec<usize>, &[f32]), ExportError> {
        let t = self.get(key)?;
        Ok((t.shape.clone(), &self.params[t.range.clone()]))
    }

    /// The tensor in PyTorch's orientation (a recurrent matrix `[G·H, in]`).
    fn torch(&self, key: &str) -> Result<(Vec<usize>, Vec<f32>), ExportError> {
        let t = self.get(key)?;
        Ok((t.file_shape(), crate::export::file_values(t, self.params)))
    }
}

/// `values` (`rows` rows of equal width, in `blocks` equal row blocks) with the row blocks
/// in the order `order` (`order[i]` = the source block of output block `i`).
fn reorder_blocks(values: &[f32], blocks: usize, order: &[usize]) -> Vec<f32> {
    let block = values.len() / blocks.max(1);
    order
        .iter()
        .flat_map(|&b| values[b * block..(b + 1) * block].iter().copied())
        .collect()
}

/// A typed graph input or output with named dynamic dimensions.
fn value_info(
    name: &str,
    elem_type: i32,
    dims: &[Result<usize, &str>],
    doc: &str,
) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| match d {
                            Ok(n) => Dimension {
                                dim_value: Some(*n as i64),
                                dim_param: None,
                            },
                            Err(p) => Dimension {
                                dim_value: None,
                                dim_param: Some((*p).to_string()),
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: doc.to_string(),
    }
}

/// Appends one recurrent layer on the time-major sequence `x` and returns its time-major output.
fn recurrent(
    g: &mut Builder,
    x: &str,
    r: &ringtrain_models::recurrent::Recurrent,
    tensors: &Tensors<'_>,
) -> Result<String, ExportError> {
    let (op, order): (&str, &[usize]) = match r.cell {
        // i, f, g, o → i, o, f, c
        CellKind::Lstm => ("LSTM", &[0, 3, 1, 2]),
        // r, z, n → z, r, h
        CellKind::Gru => ("GRU", &[1, 0, 2]),
        CellKind::Rnn => ("RNN", &[0]),
    };
    let gates = order.len();
    let k = r.position;
    let suffixes: &[&str] = if r.bidirectional() {
        &["", "_reverse"]
    } else {
        &[""]
    };
    let (mut w, mut u, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for suffix in suffixes {
        let (_, w_ih) = tensors.torch(&format!("rnn.weight_ih_l{k}{suffix}"))?;
        let (_, w_hh) = tensors.torch(&format!("rnn.weight_hh_l{k}{suffix}"))?;
        let (_, b_ih) = tensors.torch(&format!("rnn.bias_ih_l{k}{suffix}"))?;
        let (_, b_hh) = tensors.torch(&format!("rnn.bias_hh_l{k}{suffix}"))?;
        w.extend(reorder_blocks(&w_ih, gates, order));
        u.extend(reorder_blocks(&w_hh, gates, order));
        // ONNX's B is [Wb (all gates), Rb (all gates)] per direction.
        b.extend(reorder_blocks(&b_ih, gates, order));
        b.extend(reorder_blocks(&b_hh, gates, order));
    }
    let dirs = suffixes.len();
    let gh = gates * r.hidden;
    let name = format!("rnn_l{k}");
    let w = g.init_f32(&format!("{name}.W"), &[dirs, gh, r.input_size], &w);
    let u = g.init_f32(&format!("{name}.R"), &[dirs, gh, r.hidden], &u);
    let b = g.init_f32(&format!("{name}.B"), &[dirs, 2 * gh], &b);
    let mut attrs = vec![
        ("hidden_size", Attr::Int(r.hidden as i64)),
        (
            "direction",
            Attr::Str(if dirs == 2 {
                "bidirectional"
            } else {
                "forward"
            }),
        ),
    ];
    match (r.cell, r.activation) {
        (CellKind::Gru, _) => attrs.push(("linear_before_reset", Attr::Int(1))),
        (CellKind::Rnn, Activation::Relu) => {
            attrs.push(("activations", Attr::Strs(vec!["Relu"; dirs])));
        }
        (CellKind::Rnn | CellKind::Lstm, Activation::Tanh) | (CellKind::Lstm, Activation::Relu) => {
        }
    }
    let y = if g.carried {
        if dirs == 2 {
            return Err(ExportError::Onnx {
                layer: format!("bi{}{k}", op.to_ascii_lowercase()),
                reason: "a bidirectional layer reads the whole sequence, so it has no state to \
                         carry between calls (export without --onnx-state)"
                    .into(),
            });
        }
        let y = g.fresh("y");
        let state_dims = [Ok(1), Err("batch"), Ok(r.hidden)];
        let h_in = format!("state_h{k}");
        let h_out = format!("state_h{k}_out");
        let mut node_inputs = vec![x, &w, &u, &b, "", h_in.as_str()];
        let mut node_outputs = vec![y.clone(), h_out.clone()];
        let doc = format!("hidden state of recurrent layer {k}: zeros first, then the last call's");
        g.state_inputs
            .push(value_info(&h_in, data_type::FLOAT, &state_dims, &doc));
        g.state_outputs
            .push(value_info(&h_out, data_type::FLOAT, &state_dims, &doc));
        let (c_in, c_out) = (format!("state_c{k}"), format!("state_c{k}_out"));
        if r.cell == CellKind::Lstm {
            node_inputs.push(&c_in);
            node_outputs.push(c_out.clone());
            let doc = format!("LSTM cell state of recurrent layer {k}");
            g.state_inputs
                .push(value_info(&c_in, data_type::FLOAT, &state_dims, &doc));
            g.state_outputs
                .push(value_info(&c_out, data_type::FLOAT, &state_dims, &doc));
        }
        g.op_into(op, &node_inputs, node_outputs, attrs);
        y
    } else {
        g.op(op, &[x, &w, &u, &b], attrs)
    };
    // [T, D, B, H] → [T, B, D, H] → [T, B, D·H]
    let y = g.transpose(&y, &[0, 2, 1, 3]);
    let shape = g.init_i64("shape", &[3], &[0, 0, -1]);
    Ok(g.op("Reshape", &[&y, &shape], Vec::new()))
}

/// `LayerNormalization` over the last axis with the norm's gain and bias (`{stem}.gamma`,
/// `{stem}.beta`).
fn layer_norm(
    g: &mut Builder,
    x: &str,
    stem: &str,
    tensors: &Tensors<'_>,
) -> Result<String, ExportError> {
    let (shape, gamma) = tensors.ringtrain(&format!("{stem}.gamma"))?;
    let (_, beta) = tensors.ringtrain(&format!("{stem}.beta"))?;
    let gamma = g.init_f32(&format!("{stem}.gamma"), &shape, gamma);
    let beta = g.init_f32(&format!("{stem}.beta"), &shape, beta);
    Ok(g.op(
        "LayerNormalization",
        &[x, &gamma, &beta],
        vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-5))],
    ))
}

/// Appends a self-attention block (with its residual) or a post-norm Transformer encoder block
/// on the time-major sequence `x` (see `ringtrain_models::attention`), every key valid.
fn attention(
    g: &mut Builder,
    x: &str,
    a: &ringtrain_models::Attention,
    name: &str,
    tensors: &Tensors<'_>,
) -> Result<String, ExportError> {
    let width = a.width();
    let heads = a.heads.max(1);
    let head_dim = width / heads;
    let key = |f: &str| format!("{name}.{f}");
    let (shape, w) = tensors.ringtrain(&key("in_proj"))?;
    let (_, qv_bias) = tensors.ringtrain(&key("in_bias"))?;
    // [q bias | no key bias | v bias], the layout of the fused projection.
    let mut bias = Vec::with_capacity(3 * width);
    bias.extend_from_slice(&qv_bias[..width]);
    bias.extend(std::iter::repeat_n(0.0, width));
    bias.extend_from_slice(&qv_bias[width..2 * width]);
    let xb = g.transpose(x, &[1, 0, 2]);
    let qkv = g.linear(
        &xb,
        (&key("in_proj"), &shape, w),
        (&key("in_bias_qkv"), &bias),
    );
    let split = |g: &mut Builder, i: usize| {
        let s = g.init_i64("start", &[1], &[(i * width) as i64]);
        let e = g.init_i64("end", &[1], &[((i + 1) * width) as i64]);
        let axes = g.init_i64("axes", &[1], &[2]);
        let part = g.op("Slice", &[&qkv, &s, &e, &axes], Vec::new());
        let shape = g.init_i64("shape", &[4], &[0, 0, heads as i64, head_dim as i64]);
        let part = g.op("Reshape", &[&part, &shape], Vec::new());
        // [B, T, heads, d] → [B, heads, T, d]
        g.transpose(&part, &[0, 2, 1, 3])
    };
    let (q, k, v) = (split(g, 0), split(g, 1), split(g, 2));
    let kt = g.transpose(&k, &[0, 1, 3, 2]);
    let scores = g.op("MatMul", &[&q, &kt], Vec::new());
    let scale_name = g.fresh("scale");
    let scale = g.init_f32(&scale_name, &[], &[(1.0 / (head_dim as f64).sqrt()) as f32]);
    let scores = g.op("Mul", &[&scores, &scale], Vec::new());
    let weights = g.op("Softmax", &[&scores], vec![("axis", Attr::Int(-1))]);
    let context = g.op("MatMul", &[&weights, &v], Vec::new());
    let context = g.transpose(&context, &[0, 2, 1, 3]);
    let flat = g.init_i64("shape", &[3], &[0, 0, width as i64]);
    let context = g.op("Reshape", &[&context, &flat], Vec::new());
    let (shape, w) = tensors.ringtrain(&key("out_proj.weight"))?;
    let (_, b) = tensors.ringtrain(&key("out_proj.bias"))?;
    let attended = g.linear(
        &context,
        (&key("out_proj.weight"), &shape, w),
        (&key("out_proj.bias"), b),
    );
    let residual = g.op("Add", &[&xb, &attended], Vec::new());
    let y = match &a.encoder {
        None => residual,
        Some(_) => {
            let u = layer_norm(g, &residual, &key("encoder.norm1"), tensors)?;
            let (shape, w) = tensors.ringtrain(&key("encoder.ff_in.weight"))?;
            let (_, b) = tensors.ringtrain(&key("encoder.ff_in.bias"))?;
            let hidden = g.linear(
                &u,
                (&key("encoder.ff_in.weight"), &shape, w),
                (&key("encoder.ff_in.bias"), b),
            );
            let hidden = g.op("Relu", &[&hidden], Vec::new());
            let (shape, w) = tensors.ringtrain(&key("encoder.ff_out.weight"))?;
            let (_, b) = tensors.ringtrain(&key("encoder.ff_out.bias"))?;
            let ff = g.linear(
                &hidden,
                (&key("encoder.ff_out.weight"), &shape, w),
                (&key("encoder.ff_out.bias"), b),
            );
            let sum = g.op("Add", &[&u, &ff], Vec::new());
            layer_norm(g, &sum, &key("encoder.norm2"), tensors)?
        }
    };
    Ok(g.transpose(&y, &[1, 0, 2]))
}

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
    let (input, head) = crate::task::model_shape(ckpt)?;
    let spec = &ckpt.header.spec;
    let model = Model::new(&spec.model, input, head, spec.seed, device)?;
    let mut metadata = crate::export::metadata(ckpt, path)?;
    metadata.extend(extra);
    serialize_with(&model, &ckpt.params, metadata, state)
}
