//! `ringtrain export` through the binary: a trained forecaster written as safetensors in
//! PyTorch's layout (the `nn.LSTM` constructor printed), then taken back with
//! `init_from.format = "safetensors"`: fine-tuning from the export ends bit-identical to
//! fine-tuning from the checkpoint itself, and a file of another cell type is refused naming
//! the layer, both shapes and the file.

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
