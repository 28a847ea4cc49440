//! The ONNX nodes of the layers that take more than one operator: a recurrent layer (one
//! `LSTM` / `GRU` / `RNN` node with its gate blocks reordered, optionally with its state as graph
//! input and output) and a self-attention or Transformer block.

use crate::error::ExportError;
use crate::onnx::graph::{Attr, Builder, Tensors, reorder_blocks, value_info};
use crate::onnx::proto::data_type;
use ringtrain_spec::{Activation, CellKind};

/// Appends one recurrent layer on the time-major sequence `x` and returns its time-major output.
pub(super) fn recurrent(
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
pub(super) fn layer_norm(
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
pub(super) fn attention(
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
