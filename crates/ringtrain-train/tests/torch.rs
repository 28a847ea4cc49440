//! The safetensors export against PyTorch itself (torch from PyPI, through
//! `RINGTRAIN_TORCH_PYTHON`; `.ci/run` installs it with bench/setup-venv.sh and requires it):
//! every cell, 1 and 3 layers, uni- and bidirectional, loaded into `nn.LSTM` / `nn.GRU` /
//! `nn.RNN` + `nn.Linear` with `load_state_dict(strict=True)`, forecasts what the model
//! computes over 1,000 steps within 1e-5; and an `nn.LSTM` trained in PyTorch, read back the
//! way `init_from` reads it, predicts what PyTorch predicts.

// The tests report their measured differences on stderr.
#![allow(clippy::print_stderr)]

use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat};
use ringtrain_spec::{Activation, CellKind, ModelSpec};
use ringtrain_train::export::{TorchFile, serialize};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

const FEATURES: usize = 3;
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

fn forward(model: &Model, x: &[f32], time: usize) -> Vec<f32> {
    let device = Device::flex();
    let batch = Batch {
        inputs: Inputs::Numeric(Tensor::<3>::from_data(
            TensorData::new(x.to_vec(), [BATCH, time, FEATURES]),
            &device,
        )),
        mask: Tensor::<2>::ones([BATCH, time], &device),
    };
    let ctx = ForwardCtx {
        train: false,
        dropout_seed: 0,
    };
    model
        .forward(batch, &ctx)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// The Python with torch: `RINGTRAIN_TORCH_PYTHON`; `None` outside CI when it is not set (the
/// test then says so on stderr). In CI a missing or broken interpreter fails the test.
fn torch_python() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    let Ok(py) = std::env::var("RINGTRAIN_TORCH_PYTHON") else {
        assert!(
            !in_ci,
            "RINGTRAIN_TORCH_PYTHON is not set; .ci/run sets it from bench/setup-venv.sh"
        );
        return None;
    };
    let ok = Command::new(&py)
        .args(["-c", "import torch, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "RINGTRAIN_TORCH_PYTHON={py} cannot import torch and numpy (bench/setup-venv.sh installs them)"
    );
    Some(py)
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torch_parity.py")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn pytorch_loads_every_export_and_computes_what_the_model_computes() {
    let Some(python) = torch_python() else {
        eprintln!("SKIPPED: set RINGTRAIN_TORCH_PYTHON to a Python with torch (required in CI)");
        return;
    };
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let x: Vec<f32> = (0..BATCH * STEPS * FEATURES)
        .map(|i| {
            let b = (i / (STEPS * FEATURES)) as f32;
            ((i as f32) * 0.013 + (i % 7) as f32).sin() * 0.8 - 0.4 * b
        })
        .collect();
    let input = dir.path().join("x.bin");
    std::fs::write(&input, f32_bytes(&x)).unwrap();
    let mut manifest = Vec::new();
    for (cell, activation, name, nonlinearity) in [
        (CellKind::Rnn, Activation::Tanh, "rnn", "tanh"),
        (CellKind::Rnn, Activation::Relu, "rnn", "relu"),
        (CellKind::Lstm, Activation::Tanh, "lstm", "tanh"),
        (CellKind::Gru, Activation::Tanh, "gru", "tanh"),
    ] {
        for layers in [1, 3] {
            for bidirectional in [false, true] {
                let what = format!("{name}/{nonlinearity} layers={layers} bi={bidirectional}");
                let s = spec(cell, activation, layers, bidirectional);
                let model = Model::new(
                    &s,
                    InputKind::Numeric { features: FEATURES },
                    HeadKind::Regression { outputs: 2 },
                    13,
                    &device,
                )
                .unwrap();
                let mut params = flat::flatten_params(&model);
                if activation == Activation::Relu {
                    // Damped recurrent matrices keep a deep ReLU stack finite over 1,000 steps.
                    for t in ringtrain_train::export::torch_layout(&model) {
                        if t.name.contains("weight_hh") {
                            params[t.range].iter_mut().for_each(|p| *p *= 0.5);
                        }
                    }
                }
                let model = flat::load_params(model, &params).unwrap();
                let expected = forward(&model, &x, STEPS);
                assert!(expected.iter().all(|v| v.is_finite()), "{what}");
                let i = manifest.len();
                let file = |ext: &str| dir.path().join(format!("{i}.{ext}"));
                let exported = serialize(&model, &params, HashMap::new(), &file("st")).unwrap();
                std::fs::write(file("st"), &exported.bytes).unwrap();
                std::fs::write(file("out"), f32_bytes(&expected)).unwrap();
                manifest.push(serde_json::json!({
                    "what": what,
                    "model": file("st"),
                    "input": input,
                    "shape": [BATCH, STEPS, FEATURES],
                    "expected": file("out"),
                    "cell": name,
                    "nonlinearity": nonlinearity,
                    "layers": layers,
                    "hidden": HIDDEN,
                    "bidirectional": bidirectional,
                }));
            }
        }
    }
    let path = dir.path().join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = Command::new(&python)
        .arg(script())
        .args(["check", path.to_str().unwrap(), "1e-5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "PyTorch parity failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(4000)
            .collect::<String>()
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        manifest.len()
    );
}

#[test]
fn an_lstm_trained_in_pytorch_predicts_in_ringtrain_what_it_predicts_in_pytorch() {
    let Some(python) = torch_python() else {
        eprintln!("SKIPPED: set RINGTRAIN_TORCH_PYTHON to a Python with torch (required in CI)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trained.safetensors");
    let (input, output) = (dir.path().join("x.bin"), dir.path().join("y.bin"));
    let out = Command::new(&python)
        .arg(script())
        .args(["train", file.to_str().unwrap()])
        .arg(&input)
        .arg(&output)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(4000)
            .collect::<String>()
    );
    let read = |p: &Path| -> Vec<f32> {
        std::fs::read(p)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (x, want) = (read(&input), read(&output));
    // What init_from does with the file: every layer of a matching model taken from it.
    let device = Device::flex();
    let model = Model::new(
        &spec(CellKind::Lstm, Activation::Tanh, 2, false),
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: 2 },
        99,
        &device,
    )
    .unwrap();
    let torch_file = TorchFile::open(&file, 1 << 20).unwrap();
    assert!(torch_file.fitted().is_none(), "a file from elsewhere");
    let (layers, params) = torch_file.layers_for(&model).unwrap();
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["lstm0", "lstm1", "head"]);
    let model = flat::load_params(model, &params).unwrap();
    let got = forward(&model, &x, 50);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("PyTorch-trained LSTM: ringtrain vs PyTorch max abs difference {diff:e}");
    assert!(diff <= 1e-5, "ringtrain {got:?} vs PyTorch {want:?}");
}
