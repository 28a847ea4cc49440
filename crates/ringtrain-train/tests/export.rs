//! The safetensors export against PyTorch's documented equations: for every cell, 1 and 3
//! layers, uni- and bidirectional, a reference written here from `torch.nn.LSTM` / `GRU` / `RNN`
//! semantics reads only the exported tensors (by their PyTorch keys and `[out, in]`
//! orientation) and reproduces the model's forecast over 1,000 steps within 1e-5; reading the
//! file back for `init_from` returns the model's own values; and a truncated or partial file
//! is refused with the file and key named.

// The parity test reports its measured difference on stderr.
#![allow(clippy::print_stderr)]

use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat};
use ringtrain_spec::{Activation, CellKind, ModelSpec};
use ringtrain_train::export::{
    ExportError, METADATA_ALLOWANCE, TorchFile, serialize, torch_layout,
};
use safetensors::SafeTensors;
use std::collections::HashMap;

const FEATURES: usize = 3;
const OUTPUTS: usize = 2;
const HIDDEN: usize = 5;
const BATCH: usize = 2;
const STEPS: usize = 1000;

fn spec(cell: CellKind, activation: Activation, layers: usize, bidirectional: bool) -> ModelSpec {
    ModelSpec {
        cell,
        activation,
        layers,
        hidden: HIDDEN,
        bidirectional,
        dropout: 0.0,
        embedding_dim: 4,
        projection: None,
        conv: Vec::new(),
        attention: None,
    }
}

/// A tensor of the file as `f64` with its shape.
fn get(st: &SafeTensors, key: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{key}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    (t.shape().to_vec(), v)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `W x + b` for `W: [rows, cols]` row-major.
fn affine(w: &[f64], b: &[f64], x: &[f64]) -> Vec<f64> {
    let cols = x.len();
    b.iter()
        .enumerate()
        .map(|(r, bias)| {
            bias + w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum::<f64>()
        })
        .collect()
}

/// One direction of layer `l` of PyTorch's module over `xs` (one sample), in time order.
fn direction(
    st: &SafeTensors,
    cell: CellKind,
    activation: Activation,
    l: usize,
    suffix: &str,
    xs: &[Vec<f64>],
) -> Vec<Vec<f64>> {
    let (w_shape, w_ih) = get(st, &format!("rnn.weight_ih_l{l}{suffix}"));
    let (u_shape, w_hh) = get(st, &format!("rnn.weight_hh_l{l}{suffix}"));
    let (_, b_ih) = get(st, &format!("rnn.bias_ih_l{l}{suffix}"));
    let (_, b_hh) = get(st, &format!("rnn.bias_hh_l{l}{suffix}"));
    let gates = match cell {
        CellKind::Lstm => 4,
        CellKind::Gru => 3,
        CellKind::Rnn => 1,
    };
    assert_eq!(
        w_shape,
        vec![gates * HIDDEN, xs[0].len()],
        "weight_ih_l{l}{suffix}"
    );
    assert_eq!(
        u_shape,
        vec![gates * HIDDEN, HIDDEN],
        "weight_hh_l{l}{suffix}"
    );
    let h_ = HIDDEN;
    let mut h = vec![0.0; h_];
    let mut c = vec![0.0; h_];
    let mut out = Vec::with_capacity(xs.len());
    for x in xs {
        let gi = affine(&w_ih, &b_ih, x);
        let gh = affine(&w_hh, &b_hh, &h);
        match cell {
            // i, f, g, o
            CellKind::Lstm => {
                for k in 0..h_ {
                    let i = sigmoid(gi[k] + gh[k]);
                    let f = sigmoid(gi[h_ + k] + gh[h_ + k]);
                    let g = (gi[2 * h_ + k] + gh[2 * h_ + k]).tanh();
                    let o = sigmoid(gi[3 * h_ + k] + gh[3 * h_ + k]);
                    c[k] = f * c[k] + i * g;
                    h[k] = o * c[k].tanh();
                }
            }
            // r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
            CellKind::Gru => {
                for k in 0..h_ {
                    let r = sigmoid(gi[k] + gh[k]);
                    let z = sigmoid(gi[h_ + k] + gh[h_ + k]);
                    let n = (gi[2 * h_ + k] + r * gh[2 * h_ + k]).tanh();
                    h[k] = (1.0 - z) * n + z * h[k];
                }
            }
            CellKind::Rnn => {
                for k in 0..h_ {
                    let a = gi[k] + gh[k];
                    h[k] = match activation {
                        Activation::Tanh => a.tanh(),
                        Activation::Relu => a.max(0.0),
                    };
                }
            }
        }
        out.push(h.clone());
    }
    out
}

/// The forecast PyTorch computes from the file: the recurrent module, then
/// `head.linear` (`nn.Linear`) on the forward direction's last output and the backward
/// direction's first (`h_n` of each direction).
fn reference(st: &SafeTensors, s: &ModelSpec, x: &[f32]) -> Vec<f64> {
    let mut result = Vec::new();
    for b in 0..BATCH {
        let mut seq: Vec<Vec<f64>> = (0..STEPS)
            .map(|t| {
                x[(b * STEPS + t) * FEATURES..][..FEATURES]
                    .iter()
                    .map(|v| f64::from(*v))
                    .collect()
            })
            .collect();
        let mut last = Vec::new();
        for l in 0..s.layers {
            let fwd = direction(st, s.cell, s.activation, l, "", &seq);
            if s.bidirectional {
                let reversed: Vec<_> = seq.iter().rev().cloned().collect();
                let mut bwd = direction(st, s.cell, s.activation, l, "_reverse", &reversed);
                bwd.reverse();
                last = [fwd[STEPS - 1].clone(), bwd[0].clone()].concat();
                seq = fwd
                    .into_iter()
                    .zip(bwd)
                    .map(|(f, b)| [f, b].concat())
                    .collect();
            } else {
                last = fwd[STEPS - 1].clone();
                seq = fwd;
            }
        }
        let (w_shape, w) = get(st, "head.linear.weight");
        let (_, bias) = get(st, "head.linear.bias");
        assert_eq!(
            w_shape,
            vec![OUTPUTS, last.len()],
            "head.linear.weight is [out, in]"
        );
        result.extend(affine(&w, &bias, &last));
    }
    result
}

fn inputs(device: &Device) -> (Vec<f32>, Batch) {
    // A slow sine per feature with a little structure, well inside the cells' working range.
    let x: Vec<f32> = (0..BATCH * STEPS * FEATURES)
        .map(|i| ((i as f32) * 0.013 + (i % 7) as f32).sin() * 0.8)
        .collect();
    let batch = Batch {
        inputs: Inputs::Numeric(Tensor::<3>::from_data(
            TensorData::new(x.clone(), [BATCH, STEPS, FEATURES]),
            device,
        )),
        mask: Tensor::<2>::ones([BATCH, STEPS], device),
    };
    (x, batch)
}

#[test]
fn pytorch_equations_on_the_exported_tensors_reproduce_every_cell() {
    let device = Device::flex();
    let cells = [
        (CellKind::Rnn, Activation::Tanh),
        (CellKind::Rnn, Activation::Relu),
        (CellKind::Lstm, Activation::Tanh),
        (CellKind::Gru, Activation::Tanh),
    ];
    let mut worst = 0.0f64;
    for (cell, activation) in cells {
        for layers in [1, 3] {
            for bidirectional in [false, true] {
                let s = spec(cell, activation, layers, bidirectional);
                let what = format!("{cell:?}/{activation:?} layers={layers} bi={bidirectional}");
                let model = Model::new(
                    &s,
                    InputKind::Numeric { features: FEATURES },
                    HeadKind::Regression { outputs: OUTPUTS },
                    11,
                    &device,
                )
                .unwrap();
                let params = flat::flatten_params(&model);
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("m.safetensors");
                let exported = serialize(&model, &params, HashMap::new(), &path).unwrap();
                assert_eq!(exported.parameters, params.len(), "{what}");
                assert_eq!(exported.recurrent_input, FEATURES, "{what}");
                let st = SafeTensors::deserialize(&exported.bytes).unwrap();
                let (x, batch) = inputs(&device);
                let ctx = ForwardCtx {
                    train: false,
                    dropout_seed: 0,
                };
                let ours: Vec<f32> = model
                    .forward(batch, &ctx)
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap();
                let theirs = reference(&st, &s, &x);
                assert_eq!(ours.len(), theirs.len(), "{what}");
                let diff = ours
                    .iter()
                    .zip(&theirs)
                    .map(|(a, b)| (f64::from(*a) - b).abs())
                    .fold(0.0, f64::max);
                assert!(diff <= 1e-5, "{what}: max abs difference {diff:e} > 1e-5");
                worst = worst.max(diff);

                // Read back for init_from: the model's own layers, values and orientation.
                std::fs::write(&path, &exported.bytes).unwrap();
                let file = TorchFile::open(&path, 1 << 20).unwrap();
                let (layers, values) = file.layers_for(&model).unwrap();
                assert_eq!(values, params, "{what}");
                assert_eq!(
                    layers,
                    ringtrain_train::transfer::layer_params(&model),
                    "{what}"
                );
            }
        }
    }
    eprintln!("worst max abs difference to the PyTorch equations over {STEPS} steps: {worst:e}");
}

#[test]
fn keys_follow_pytorch_names() {
    let device = Device::flex();
    let s = spec(CellKind::Lstm, Activation::Tanh, 2, true);
    let model = Model::new(
        &s,
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        1,
        &device,
    )
    .unwrap();
    let keys: Vec<(String, Vec<usize>)> = torch_layout(&model)
        .into_iter()
        .map(|t| (t.name.clone(), t.file_shape()))
        .collect();
    let h4 = 4 * HIDDEN;
    let expect = |k: &str, shape: &[usize]| (k.to_string(), shape.to_vec());
    assert_eq!(
        keys,
        vec![
            expect("rnn.weight_ih_l0", &[h4, FEATURES]),
            expect("rnn.weight_hh_l0", &[h4, HIDDEN]),
            expect("rnn.bias_ih_l0", &[h4]),
            expect("rnn.bias_hh_l0", &[h4]),
            expect("rnn.weight_ih_l0_reverse", &[h4, FEATURES]),
            expect("rnn.weight_hh_l0_reverse", &[h4, HIDDEN]),
            expect("rnn.bias_ih_l0_reverse", &[h4]),
            expect("rnn.bias_hh_l0_reverse", &[h4]),
            expect("rnn.weight_ih_l1", &[h4, 2 * HIDDEN]),
            expect("rnn.weight_hh_l1", &[h4, HIDDEN]),
            expect("rnn.bias_ih_l1", &[h4]),
            expect("rnn.bias_hh_l1", &[h4]),
            expect("rnn.weight_ih_l1_reverse", &[h4, 2 * HIDDEN]),
            expect("rnn.weight_hh_l1_reverse", &[h4, HIDDEN]),
            expect("rnn.bias_ih_l1_reverse", &[h4]),
            expect("rnn.bias_hh_l1_reverse", &[h4]),
            expect("head.linear.weight", &[OUTPUTS, 2 * HIDDEN]),
            expect("head.linear.bias", &[OUTPUTS]),
        ]
    );
}

#[test]
fn a_broken_or_partial_file_is_refused_naming_file_and_key() {
    let device = Device::flex();
    let bi = Model::new(
        &spec(CellKind::Gru, Activation::Tanh, 1, true),
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        1,
        &device,
    )
    .unwrap();
    let uni = Model::new(
        &spec(CellKind::Gru, Activation::Tanh, 1, false),
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        1,
        &device,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uni.safetensors");
    let exported = serialize(&uni, &flat::flatten_params(&uni), HashMap::new(), &path).unwrap();
    std::fs::write(&path, &exported.bytes).unwrap();

    // A unidirectional file for a bidirectional model: the layer is only partly there.
    let file = TorchFile::open(&path, 1 << 20).unwrap();
    let e = file.layers_for(&bi).unwrap_err().to_string();
    assert!(
        e.contains("uni.safetensors")
            && e.contains("\"bigru0\"")
            && e.contains("rnn.weight_ih_l0_reverse"),
        "{e}"
    );

    // Truncated: the reader's offset check, with the file named.
    std::fs::write(&path, &exported.bytes[..exported.bytes.len() - 3]).unwrap();
    let e = TorchFile::open(&path, 1 << 20).unwrap_err();
    assert!(matches!(e, ExportError::Format { .. }), "{e}");
    assert!(e.to_string().contains("uni.safetensors"), "{e}");

    // Larger than the limit allows: refused before it is read (a sparse file, nothing written).
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(8 * 1000 + METADATA_ALLOWANCE + 1).unwrap();
    let e = TorchFile::open(&path, 1000).unwrap_err();
    assert!(matches!(e, ExportError::TooLarge { .. }), "{e}");
}

#[test]
fn int8_is_within_half_a_scale_per_output_channel() {
    use ringtrain_train::export::{fake_quantize_int8, quantize_rows};
    // Two rows of very different magnitude: each gets its own scale.
    let values = [0.5f32, -1.0, 0.25, 0.001, -0.002, 0.0005];
    let (q, scales) = quantize_rows(&values, 2);
    assert_eq!(q[1], -127);
    assert_eq!(q[4], -127);
    assert!((scales[0] - 1.0 / 127.0).abs() < 1e-9 && (scales[1] - 0.002 / 127.0).abs() < 1e-9);
    for (i, v) in values.iter().enumerate() {
        let back = f32::from(q[i]) * scales[i / 3];
        assert!(
            (back - v).abs() <= scales[i / 3] / 2.0 + 1e-9,
            "{i}: {v} -> {back}"
        );
    }
    // An all-zero row keeps scale 1 and zeros.
    assert_eq!(quantize_rows(&[0.0, 0.0], 1), (vec![0, 0], vec![1.0]));

    // On a model: every matrix moves by at most half a scale, every vector stays exact.
    let device = Device::flex();
    let model = Model::new(
        &spec(CellKind::Lstm, Activation::Tanh, 2, true),
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        3,
        &device,
    )
    .unwrap();
    let params = flat::flatten_params(&model);
    let mut q = params.clone();
    fake_quantize_int8(&model, &mut q).unwrap();
    let mut moved = 0;
    for t in torch_layout(&model) {
        let (a, b) = (&params[t.range.clone()], &q[t.range.clone()]);
        if t.shape.len() < 2 {
            assert_eq!(a, b, "{}", t.name);
            continue;
        }
        // Largest magnitude of the tensor bounds every row's scale.
        let bound = a.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0 / 2.0 + 1e-7;
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst <= bound, "{}: moved {worst} > {bound}", t.name);
        moved += a.iter().zip(b).filter(|(x, y)| x != y).count();
    }
    assert!(moved > 0, "quantization changed nothing");
}
