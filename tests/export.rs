//! `ringtrain export` through the binary: a trained forecaster written as safetensors in
//! PyTorch's layout (the `nn.LSTM` constructor printed), then taken back with
//! `init_from.format = "safetensors"`: fine-tuning from the export ends bit-identical to
//! fine-tuning from the checkpoint itself, and a file of another cell type is refused naming
//! the layer, both shapes and the file; and the small inference runtime (`ringtrain-infer`),
//! fed the last window of raw CSV rows one step at a time, forecasts what `ringtrain predict`
//! prints, as does the `--format onnx` export run by tract; a forecaster's export stores its
//! one-step-ahead validation residuals for `ringtrain-infer --anomaly`.

mod common;

use common::{examples, max_abs_diff, params, run_fail, run_ok, run_train};
use std::path::{Path, PathBuf};

fn spec(dir: &Path, name: &str, cell: &str, init_from: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 4
[model]
cell = "{cell}"
hidden = 8
layers = 2
dropout = 0.0
[task]
kind = "forecast"
horizon = 2
[data]
path = "{data}"
features = ["demand", "temperature"]
targets = ["demand"]
window = 12
split = [0.7, 0.15, 0.15]
[train]
epochs = 2
batch_size = 16
max_steps = 15
optimizer = {{ kind = "adam", lr = 0.01 }}
[checkpoint]
dir = "runs/{name}"
{init_from}
"#,
            data = examples().join("data/seasonal.csv").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn export_to_safetensors_and_fine_tune_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = spec(d, "source", "lstm", "");
    run_ok(&["train", source.to_str().unwrap(), "--quiet"]);

    let out = d.join("source.safetensors");
    let printed = run_ok(&[
        "export",
        "--checkpoint",
        d.join("runs/source").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains(
            "nn.LSTM(input_size=2, hidden_size=8, num_layers=2, bidirectional=False, \
             batch_first=True)"
        ) && stdout.contains("tensors"),
        "{stdout}"
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut keys = st.names();
    keys.sort();
    assert_eq!(
        keys,
        [
            "head.linear.bias",
            "head.linear.weight",
            "rnn.bias_hh_l0",
            "rnn.bias_hh_l1",
            "rnn.bias_ih_l0",
            "rnn.bias_ih_l1",
            "rnn.weight_hh_l0",
            "rnn.weight_hh_l1",
            "rnn.weight_ih_l0",
            "rnn.weight_ih_l1",
        ]
    );
    assert_eq!(st.tensor("rnn.weight_ih_l0").unwrap().shape(), [32, 2]);
    assert_eq!(st.tensor("head.linear.weight").unwrap().shape(), [2, 8]);

    // int8: smaller, refused by init_from (f32 only), and `eval --quantize int8` measures it.
    let int8 = d.join("source-int8.safetensors");
    let printed = run_ok(&[
        "export",
        "--checkpoint",
        d.join("runs/source").to_str().unwrap(),
        "--out",
        int8.to_str().unwrap(),
        "--quantize",
        "int8",
    ]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains("int8: ") && stdout.contains("x smaller than the f32 export's"),
        "{stdout}"
    );
    assert!(std::fs::metadata(&int8).unwrap().len() < bytes.len() as u64);
    let eval = |extra: &[&str]| -> f64 {
        let mut args = vec![
            "eval",
            "--checkpoint",
            d.join("runs/source").to_str().unwrap(),
            "--output",
            "json",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_ok(&refs);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["loss"]
            .as_f64()
            .unwrap_or_else(|| panic!("{report:#}"))
    };
    let (plain, quantized) = (eval(&[]), eval(&["--quantize", "int8"]));
    assert!(plain != quantized, "int8 changed nothing");
    assert!(
        (plain - quantized).abs() <= 0.05 * plain,
        "test loss {plain} -> {quantized}"
    );

    // The same fine-tuning from the checkpoint and from its export: the same run, bit for bit.
    let layers = "layers = [\"lstm0\", \"lstm1\"]\nfreeze_epochs = 1";
    let from_ckpt = spec(
        d,
        "from_ckpt",
        "lstm",
        &format!("[init_from]\ncheckpoint = \"runs/source\"\n{layers}"),
    );
    let from_st = spec(
        d,
        "from_st",
        "lstm",
        &format!("[init_from]\ncheckpoint = \"source.safetensors\"\n{layers}"),
    );
    run_train(&from_ckpt);
    run_train(&from_st);
    let a = params(&d.join("runs/from_ckpt"));
    let b = params(&d.join("runs/from_st"));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // ... and the frozen layers are still the source's (the first epoch froze them, the second
    // trained them: compare against a run that never took them instead).
    let fresh = spec(d, "fresh", "lstm", "");
    run_train(&fresh);
    assert!(max_abs_diff(&params(&d.join("runs/fresh")), &b) > 0.0);

    // A file of another cell type: refused with the layer, both shapes and the file.
    let gru = spec(
        d,
        "gru",
        "gru",
        "[init_from]\ncheckpoint = \"source.safetensors\"\nlayers = [\"gru0\"]",
    );
    let e = run_fail(&["train", gru.to_str().unwrap(), "--quiet"]);
    assert!(
        e.contains("init_from.layers[0]: layer \"gru0\" has parameter shapes [[2, 24], [8, 24], [24], [24]]")
            && e.contains("[[2, 32], [8, 32], [32], [32]]")
            && e.contains("source.safetensors"),
        "{e}"
    );
}

#[test]
fn the_inference_runtime_streams_the_export_to_what_predict_prints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = spec(d, "source", "gru", "");
    run_ok(&["train", source.to_str().unwrap(), "--quiet"]);
    let run = d.join("runs/source");
    let out = d.join("m.safetensors");
    let printed = run_ok(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains("validation residuals (val split, ")
            && stdout.contains("bytes per stream (state and scratch)"),
        "{stdout}"
    );
    let printed = run_ok(&[
        "predict",
        "--checkpoint",
        run.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let rows: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let want: Vec<f32> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["demand"].as_f64().unwrap() as f32)
        .collect();
    assert_eq!(want.len(), 2, "{rows}");

    let net = ringtrain_infer::Network::from_safetensors(&std::fs::read(&out).unwrap()).unwrap();
    let scaling = net.scaling().expect("an export carries its normalizer");
    let csv = std::fs::read_to_string(examples().join("data/seasonal.csv")).unwrap();
    // step,demand,temperature → the spec's features [demand, temperature].
    let raw: Vec<[f32; 2]> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<f32> = l.split(',').map(|v| v.parse().unwrap()).collect();
            [c[1], c[2]]
        })
        .collect();
    let mut stream = ringtrain_infer::Stream::new(&net).unwrap();
    let mut x = [0.0f32; 2];
    let mut got = Vec::new();
    for row in &raw[raw.len() - 12..] {
        scaling.normalize(row, &mut x).unwrap();
        got = stream.step(&x).unwrap().to_vec();
    }
    scaling.denormalize(&mut got, &[]).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "runtime {got:?} vs predict {want:?}"
        );
    }

    // The residuals stored for --anomaly: one target, measured on the validation windows.
    let residuals = net
        .residuals()
        .expect("a forecaster's export stores its residuals");
    assert_eq!(residuals.split, "val");
    assert_eq!(residuals.targets(), 1);
    assert!(
        residuals.samples > 10 && residuals.std[0] > 0.0,
        "{residuals:?}"
    );

    // The ONNX export of the same checkpoint, run by tract on the normalized last window,
    // forecasts what predict prints once mapped back to raw units.
    let onnx = d.join("m.onnx");
    let printed = run_ok(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
        "--format",
        "onnx",
    ]);
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.contains("ONNX opset 17: input \"input\" float [batch, time, 2]"),
        "{stdout}"
    );
    let mut window = Vec::new();
    for row in &raw[raw.len() - 12..] {
        scaling.normalize(row, &mut x).unwrap();
        window.extend_from_slice(&x);
    }
    let mut y = onnx_forecast(&onnx, &window, 12, 2);
    scaling.denormalize(&mut y, &[]).unwrap();
    for (g, w) in y.iter().zip(&want) {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "onnx {y:?} vs predict {want:?}"
        );
    }
    let e = run_fail(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        onnx.to_str().unwrap(),
        "--format",
        "onnx",
        "--quantize",
        "int8",
    ]);
    assert!(e.contains("the ONNX export is f32"), "{e}");
}

/// The ONNX model at `path` run by tract on one window `[time, features]`.
fn onnx_forecast(path: &Path, window: &[f32], time: usize, features: usize) -> Vec<f32> {
    use tract_onnx::prelude::{DatumExt, Framework, InferenceModelExt, IntoTValue, Tensor, tvec};
    use tract_onnx::tract_core::model::IntoRunnable;
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.with_input_fact(0, f32::fact([1, time, features]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap();
    let input = Tensor::from_shape(&[1, time, features], window).unwrap();
    let out = model.run(tvec![input.into_tvalue()]).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}
