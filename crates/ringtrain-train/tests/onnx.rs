//! The ONNX export against two independent ONNX runtimes: tract (a Rust dev-dependency, always)
//! and onnxruntime (from PyPI, through `RINGTRAIN_PYTHON`; required in CI). For every cell,
//! 1–3 layers, uni- and bidirectional, forecast and classify heads (last, mean, max pooling),
//! over 1,000 steps, plus the token, projection, Conv1d, self-attention, Transformer and
//! next-token front and back ends, the runtimes' outputs are within 1e-5 of the model's own
//! forward pass; a seq2seq decoder is refused by name.

// The tests report their measured differences on stderr.
#![allow(clippy::print_stderr)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use ringtrain_models::{
    Batch, DecoderConfig, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat,
};
use ringtrain_spec::{
    Activation, AttentionKind, AttentionSpec, CellKind, ConvActivation, ConvSpec, ModelSpec,
    Pooling, Seq2seqAttention,
};
use ringtrain_train::onnx::serialize;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use tract_onnx::prelude::{
    DatumExt, Framework, InferenceFact, InferenceModelExt, IntoTValue, TValue,
    Tensor as TractTensor, tvec,
};
use tract_onnx::tract_core::model::IntoRunnable;

const FEATURES: usize = 3;
const HIDDEN: usize = 5;
const BATCH: usize = 2;
const STEPS: usize = 1000;
const VOCAB: usize = 11;

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

/// One model, its input and what it computes.
struct Case {
    what: String,
    onnx: Vec<u8>,
    /// `Ok(numeric [B, T, F])` or `Err(token ids [B, T])`.
    input: Result<Vec<f32>, Vec<i64>>,
    time: usize,
    features: usize,
    expected: Vec<f32>,
}

fn case(what: String, s: &ModelSpec, input: InputKind, head: HeadKind, time: usize) -> Case {
    let device = Device::flex();
    let model = Model::new(s, input, head, 7, &device).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut params = flat::flatten_params(&model);
    if s.activation == Activation::Relu {
        // PyTorch's initialization lets a deep ReLU Elman stack grow without bound over 1,000
        // steps; damped recurrent matrices keep every output finite (and alive).
        for t in ringtrain_train::export::torch_layout(&model) {
            if t.name.contains("weight_hh") {
                params[t.range].iter_mut().for_each(|p| *p *= 0.5);
            }
        }
    }
    let model = flat::load_params(model, &params).unwrap();
    let exported =
        serialize(&model, &params, HashMap::new()).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(exported.parameters, params.len(), "{what}");
    let mask = Tensor::<2>::ones([BATCH, time], &device);
    let (inputs, features, data) = match input {
        InputKind::Numeric { features } => {
            // A slow sine per feature with some structure, inside the cells' working range.
            // The second sample is shifted, so that even pooled outputs tell them apart.
            let x: Vec<f32> = (0..BATCH * time * features)
                .map(|i| {
                    let b = (i / (time * features)) as f32;
                    ((i as f32) * 0.013 + (i % 7) as f32).sin() * 0.8 - 0.4 * b
                })
                .collect();
            let t = Tensor::<3>::from_data(
                TensorData::new(x.clone(), [BATCH, time, features]),
                &device,
            );
            (Inputs::Numeric(t), features, Ok(x))
        }
        InputKind::Tokens { vocab } => {
            let ids: Vec<i64> = (0..BATCH * time)
                .map(|i| ((i * 7 + i / 5) % vocab) as i64)
                .collect();
            let t =
                Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [BATCH, time]), &device);
            (Inputs::Tokens(t), 0, Err(ids))
        }
    };
    let ctx = ForwardCtx {
        train: false,
        dropout_seed: 0,
    };
    let expected = model
        .forward(Batch { inputs, mask }, &ctx)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    assert!(
        expected.iter().all(|v| v.is_finite()),
        "{what}: the model's own output is not finite"
    );
    // A comparison of outputs that do not depend on the input (dead ReLU units leave only the
    // head's bias) would check nothing.
    let half = expected.len() / 2;
    assert!(
        max_diff(&expected[..half], &expected[half..]) > 1e-4,
        "{what}: both samples give the same output"
    );
    Case {
        what,
        onnx: exported.bytes,
        input: data,
        time,
        features,
        expected,
    }
}

/// Every case the parity tests run.
fn cases() -> Vec<Case> {
    let cells = [
        (CellKind::Rnn, Activation::Tanh),
        (CellKind::Rnn, Activation::Relu),
        (CellKind::Lstm, Activation::Tanh),
        (CellKind::Gru, Activation::Tanh),
    ];
    let mut out = Vec::new();
    let mut n = 0;
    for (cell, activation) in cells {
        for layers in [1, 2, 3] {
            for bidirectional in [false, true] {
                let s = spec(cell, activation, layers, bidirectional);
                // Forecast on every combination; classify with each pooling in turn.
                let pooling = [Pooling::Last, Pooling::Mean, Pooling::Max][n % 3];
                n += 1;
                let input = InputKind::Numeric { features: FEATURES };
                let what = format!("{cell:?}/{activation:?} layers={layers} bi={bidirectional}");
                out.push(case(
                    format!("{what} forecast"),
                    &s,
                    input,
                    HeadKind::Regression { outputs: 2 },
                    STEPS,
                ));
                out.push(case(
                    format!("{what} classify {pooling:?}"),
                    &s,
                    input,
                    HeadKind::Classes {
                        classes: 3,
                        pooling,
                    },
                    STEPS,
                ));
            }
        }
    }
    let mut s = spec(CellKind::Gru, Activation::Tanh, 2, true);
    s.projection = Some(6);
    s.conv = vec![
        ConvSpec {
            channels: 4,
            kernel: 3,
            stride: 1,
            activation: ConvActivation::Relu,
        },
        ConvSpec {
            channels: 5,
            kernel: 4,
            stride: 2,
            activation: ConvActivation::Tanh,
        },
    ];
    out.push(case(
        "projection + 2 Conv1d + biGRU forecast".into(),
        &s,
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: 4 },
        STEPS + 1,
    ));
    for (kind, heads) in [
        (AttentionKind::SelfAttention, 2),
        (AttentionKind::Transformer, 1),
    ] {
        let mut s = spec(CellKind::Lstm, Activation::Tanh, 1, true);
        s.attention = Some(AttentionSpec {
            kind,
            heads,
            dropout: 0.0,
            ff_hidden: 8,
        });
        out.push(case(
            format!("biLSTM + {kind:?} forecast"),
            &s,
            InputKind::Numeric { features: FEATURES },
            HeadKind::Regression { outputs: 2 },
            300,
        ));
        out.push(case(
            format!("embedding + biLSTM + {kind:?} classify Max"),
            &s,
            InputKind::Tokens { vocab: VOCAB },
            HeadKind::Classes {
                classes: 3,
                pooling: Pooling::Max,
            },
            300,
        ));
    }
    out.push(case(
        "embedding + biLSTM classify Mean".into(),
        &spec(CellKind::Lstm, Activation::Tanh, 2, true),
        InputKind::Tokens { vocab: VOCAB },
        HeadKind::Classes {
            classes: 2,
            pooling: Pooling::Mean,
        },
        200,
    ));
    out.push(case(
        "embedding + LSTM next-token".into(),
        &spec(CellKind::Lstm, Activation::Tanh, 2, false),
        InputKind::Tokens { vocab: VOCAB },
        HeadKind::NextToken { vocab: VOCAB },
        200,
    ));
    out
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .fold(0.0, f64::max)
}

#[test]
fn tract_runs_every_export_like_the_model() {
    let mut worst = 0.0f64;
    let mut skipped = 0;
    for c in cases() {
        let what = &c.what;
        // tract-onnx 0.23's RNN importer always builds tanh cells (it does not read the
        // `activations` attribute), so a ReLU Elman layer is checked by onnxruntime only.
        if what.starts_with("Rnn/Relu") {
            skipped += 1;
            continue;
        }
        let model = tract_onnx::onnx()
            .model_for_read(&mut c.onnx.as_slice())
            .unwrap_or_else(|e| panic!("{what}: tract refuses the graph: {e:?}"));
        let (fact, input): (InferenceFact, TValue) = match &c.input {
            Ok(x) => (
                f32::fact([BATCH, c.time, c.features]).into(),
                TractTensor::from_shape(&[BATCH, c.time, c.features], x)
                    .unwrap()
                    .into_tvalue(),
            ),
            Err(ids) => (
                i64::fact([BATCH, c.time]).into(),
                TractTensor::from_shape(&[BATCH, c.time], ids)
                    .unwrap()
                    .into_tvalue(),
            ),
        };
        let runnable = model
            .with_input_fact(0, fact)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap_or_else(|e| panic!("{what}: tract cannot plan the graph: {e:?}"));
        let out = runnable
            .run(tvec![input])
            .unwrap_or_else(|e| panic!("{what}: tract run: {e:?}"));
        let got: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(got.len(), c.expected.len(), "{what}: output size");
        let diff = max_diff(&got, &c.expected);
        assert!(diff <= 1e-5, "{what}: tract differs by {diff:e} > 1e-5");
        worst = worst.max(diff);
    }
    assert_eq!(
        skipped, 12,
        "only the ReLU Elman cases are left to onnxruntime"
    );
    eprintln!(
        "tract: worst max abs difference over every export but the {skipped} ReLU Elman ones: \
         {worst:e}"
    );
}

/// The Python with onnxruntime: `RINGTRAIN_PYTHON` (set by `.ci/run`), else `python3`; `None`
/// outside CI when neither imports onnxruntime (the test then says so on stderr).
fn onnxruntime_python() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let explicit = std::env::var("RINGTRAIN_PYTHON").ok();
    let py = explicit.clone().unwrap_or_else(|| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (ok, in_ci || explicit.is_some()) {
        (true, _) => Some(py),
        (false, true) => panic!(
            "{py} cannot import onnxruntime and numpy; install: pip install -r \
             .ci/requirements.txt (.ci/run does this)"
        ),
        (false, false) => None,
    }
}

#[test]
fn onnxruntime_runs_every_export_like_the_model() {
    let Some(python) = onnxruntime_python() else {
        eprintln!(
            "SKIPPED: no Python with onnxruntime (pip install -r .ci/requirements.txt and set \
             RINGTRAIN_PYTHON; required in CI)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        let file = |ext: &str| dir.path().join(format!("{i}.{ext}"));
        std::fs::write(file("onnx"), &c.onnx).unwrap();
        let (bytes, dtype, shape): (Vec<u8>, &str, Vec<usize>) = match &c.input {
            Ok(x) => (
                x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                "float32",
                vec![BATCH, c.time, c.features],
            ),
            Err(ids) => (
                ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
                "int64",
                vec![BATCH, c.time],
            ),
        };
        std::fs::write(file("in"), bytes).unwrap();
        let expected: Vec<u8> = c.expected.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(file("out"), expected).unwrap();
        manifest.push(serde_json::json!({
            "what": c.what,
            "model": file("onnx"),
            "input": file("in"),
            "dtype": dtype,
            "shape": shape,
            "expected": file("out"),
        }));
    }
    let manifest_path = dir.path().join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnxruntime_parity.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(&manifest_path)
        .arg("1e-5")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "onnxruntime parity failed:\n{stdout}\n{}",
        stderr.chars().take(4000).collect::<String>()
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        manifest.len(),
        "every case reported"
    );
}

#[test]
fn a_seq2seq_decoder_is_refused_with_the_layer_named() {
    let device = Device::flex();
    let model = Model::new(
        &spec(CellKind::Gru, Activation::Tanh, 1, false),
        InputKind::Tokens { vocab: VOCAB },
        HeadKind::Decoder(DecoderConfig {
            vocab: VOCAB,
            attention: Seq2seqAttention::LuongDot,
            teacher_forcing: 1.0,
            bos: 1,
            eos: 2,
        }),
        1,
        &device,
    )
    .unwrap();
    let params = flat::flatten_params(&model);
    let err = serialize(&model, &params, HashMap::new())
        .expect_err("a decoder is not exported")
        .to_string();
    assert!(err.contains("layer \"decoder\""), "{err}");
    assert!(err.contains("beam search"), "{err}");
}

/// Runs a tract plan of `onnx` for inputs of the given shapes (the first `f32`).
fn tract_plan(
    onnx: &[u8],
    shapes: &[Vec<usize>],
) -> std::sync::Arc<tract_onnx::prelude::TypedRunnableModel> {
    let mut model = tract_onnx::onnx().model_for_read(&mut &onnx[..]).unwrap();
    for (i, shape) in shapes.iter().enumerate() {
        model = model
            .with_input_fact(i, f32::fact(shape.clone()).into())
            .unwrap();
    }
    model.into_optimized().unwrap().into_runnable().unwrap()
}

fn values(t: &TValue) -> Vec<f32> {
    t.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn a_graph_with_state_inputs_streams_a_sequence_step_by_step_like_the_whole_window() {
    use ringtrain_train::onnx::{State, serialize_with};
    let device = Device::flex();
    let time = 200;
    for cell in [CellKind::Rnn, CellKind::Lstm, CellKind::Gru] {
        let s = spec(cell, Activation::Tanh, 2, false);
        let model = Model::new(
            &s,
            InputKind::Numeric { features: FEATURES },
            HeadKind::Regression { outputs: 2 },
            5,
            &device,
        )
        .unwrap();
        let params = flat::flatten_params(&model);
        let whole = serialize(&model, &params, HashMap::new()).unwrap().bytes;
        let carried = serialize_with(&model, &params, HashMap::new(), State::Carried)
            .unwrap()
            .bytes;
        let x: Vec<f32> = (0..BATCH * time * FEATURES)
            .map(|i| ((i as f32) * 0.021 + (i % 5) as f32).sin() * 0.7)
            .collect();
        let plan = tract_plan(&whole, &[vec![BATCH, time, FEATURES]]);
        let input = TractTensor::from_shape(&[BATCH, time, FEATURES], &x).unwrap();
        let want = values(&plan.run(tvec![input.into_tvalue()]).unwrap()[0]);

        // One call per step, each layer's state fed back: h (and c) per layer.
        let states = 2 * if cell == CellKind::Lstm { 2 } else { 1 };
        let mut shapes = vec![vec![BATCH, 1, FEATURES]];
        shapes.extend((0..states).map(|_| vec![1, BATCH, HIDDEN]));
        let plan = tract_plan(&carried, &shapes);
        let mut state: Vec<TValue> = (0..states)
            .map(|_| {
                TractTensor::from_shape(&[1, BATCH, HIDDEN], &[0.0f32; BATCH * HIDDEN])
                    .unwrap()
                    .into_tvalue()
            })
            .collect();
        let mut got = Vec::new();
        for t in 0..time {
            let step: Vec<f32> = (0..BATCH)
                .flat_map(|b| x[(b * time + t) * FEATURES..][..FEATURES].to_vec())
                .collect();
            let mut inputs = tvec![
                TractTensor::from_shape(&[BATCH, 1, FEATURES], &step)
                    .unwrap()
                    .into_tvalue()
            ];
            inputs.extend(state.drain(..));
            let mut out = plan.run(inputs).unwrap();
            state = out.drain(1..).collect();
            got = values(&out[0]);
        }
        let d = max_diff(&got, &want);
        assert!(
            d <= 1e-5,
            "{cell:?}: streamed {got:?} vs whole window {want:?} ({d:e})"
        );
    }
    // What cannot carry a state is refused by name.
    let bi = spec(CellKind::Lstm, Activation::Tanh, 1, true);
    let model = Model::new(
        &bi,
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: 1 },
        1,
        &device,
    )
    .unwrap();
    let params = flat::flatten_params(&model);
    let e = serialize_with(&model, &params, HashMap::new(), State::Carried)
        .expect_err("bidirectional")
        .to_string();
    assert!(
        e.contains("\"bilstm0\"") && e.contains("no state to carry"),
        "{e}"
    );
}
