//! Golden metrics: every example in `examples/` whose data is in the repository (fetched data
//! is skipped) and the learning tests' configurations, shortened to a few epochs, trained in
//! this process; their epoch history, final validation and test reports and a hash of the final
//! parameters must equal `tests/golden/train-metrics.json` exactly (f64 values compared through
//! their shortest round-trip decimal, so equal text means equal bits). A model rebuilt from the
//! run's checkpoint (inference's model rebuild) scores the test split again, and that score is part
//! of the record.
//!
//! The file was generated from main before the task-kind refactor (issue 13), so the refactor
//! is checked to change no number. `RINGTRAIN_BLESS=1 cargo test --workspace --test golden`
//! rewrites it (only do that for a change that is meant to change results, and say so).

// A mismatch prints the differing entry so a failure shows what moved.
#![allow(clippy::print_stderr)]

use burn::prelude::*;
use ringtrain_data::SplitName;
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::{
    Checkpoint, Silent, TaskData, TrainOptions, TrainReport, evaluate, inference, train,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn golden_path() -> PathBuf {
    repo().join("tests/golden/train-metrics.json")
}

/// The examples that train from data in the repository or built in, with the epochs (and for
/// large data the steps) cut so the whole test takes a modest time; the rest of each example is
/// its committed config.
const EXAMPLES: &[(&str, u32, Option<u32>)] = &[
    ("airline-lstm", 4, None),
    ("reverse-digits-seq2seq", 2, Some(40)),
    ("seasonal-cnn-gru-attention", 2, None),
    ("seasonal-gru", 3, None),
    ("sentiment-bilstm", 2, None),
    ("tiny-corpus-lm", 2, Some(60)),
    ("vic-elec-lstm", 1, Some(20)),
];

/// An example's spec with `train.epochs` (and `train.max_steps`) replaced, no `[parallel]`
/// section (this is one process) and the checkpoints under `ckpt`.
fn example_spec(name: &str, epochs: u32, max_steps: Option<u32>, ckpt: &Path) -> String {
    let path = repo().join(format!("examples/{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    table.remove("parallel");
    let train = table
        .get_mut("train")
        .and_then(toml::Value::as_table_mut)
        .unwrap();
    train.insert("epochs".into(), toml::Value::Integer(i64::from(epochs)));
    if let Some(steps) = max_steps {
        train.insert("max_steps".into(), toml::Value::Integer(i64::from(steps)));
    }
    let mut checkpoint = toml::Table::new();
    checkpoint.insert(
        "dir".into(),
        toml::Value::String(ckpt.display().to_string()),
    );
    table.insert("checkpoint".into(), toml::Value::Table(checkpoint));
    toml::to_string(&table).unwrap()
}

/// The learning tests' forecast configuration (tests/learning.rs), three epochs.
fn forecast_spec(cell: &str) -> String {
    format!(
        r#"
seed = 3
[model]
cell = "{cell}"
hidden = 32
[task]
kind = "forecast"
horizon = 1
season = 12
[data]
path = "data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["demand"]
window = 24
split = [0.7, 0.15, 0.15]
[train]
epochs = 3
batch_size = 16
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 1.0 }}
"#
    )
}

/// The learning tests' classification configuration, two epochs.
fn classify_spec(cell: &str, pooling: &str) -> String {
    format!(
        r#"
seed = 5
[model]
cell = "{cell}"
hidden = 48
embedding_dim = 32
bidirectional = true
[task]
kind = "classify"
pooling = "{pooling}"
[data]
path = "data/sentiment-synth.csv"
tokenizer = "word"
split = [0.8, 0.1, 0.1]
[train]
epochs = 2
batch_size = 32
optimizer = {{ kind = "adam", lr = 0.005 }}
clip = {{ norm = 1.0 }}
"#
    )
}

/// The language-model test's configuration (tests/language_model.rs) on the repository's keyed
/// corpus, two epochs, with class-free early stopping on the loss.
fn lm_spec() -> String {
    r#"
seed = 4
[model]
cell = "gru"
hidden = 32
embedding_dim = 16
[task]
kind = "language_model"
bptt = 12
[data]
path = "data/keyed-lines.txt"
split = [0.8, 0.1, 0.1]
[train]
epochs = 2
max_steps = 50
batch_size = 8
optimizer = { kind = "adam", lr = 0.01 }
clip = { norm = 1.0 }
early_stopping = { metric = "val_loss", patience = 3 }
"#
    .to_string()
}

/// FNV-1a over the bits of the parameters: any changed bit changes it.
fn param_hash(params: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in params {
        for b in p.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Trains `toml` and returns its golden record.
fn record(toml: &str) -> Value {
    let spec = parse_str(toml, SpecFormat::Toml, "<golden>", "golden").unwrap();
    let device = Device::flex();
    let opts = TrainOptions {
        base_dir: repo().join("examples"),
        resume: None,
        halt_after_steps: None,
        stop: None,
        device: device.clone(),
        run_id: None,
        commit: None,
        attempt: 1,
    };
    let report: TrainReport = train(&spec, &opts, &mut Silent).unwrap();
    // The evaluated parameters come back from the checkpoint through inference's own model
    // rebuild (the checkpoint constructor of a task) and score the test split again.
    let best = if report.checkpoint_dir.join("best.ckpt").exists() {
        "best.ckpt"
    } else {
        "latest.ckpt"
    };
    let ckpt = Checkpoint::load(&report.checkpoint_dir.join(best)).unwrap();
    let model = inference::load_model(&ckpt, &device).unwrap();
    let data =
        ringtrain_data::load_with(&spec, &repo().join("examples"), Some(&ckpt.header.fitted))
            .unwrap();
    let task = TaskData::new(&spec, data).unwrap();
    let rescored = evaluate(
        &model,
        &task,
        SplitName::Test,
        spec.train.batch_size,
        &device,
    )
    .unwrap();
    let test = report.test.as_ref().map(|t| {
        json!({"samples": t.samples, "loss": t.loss, "metrics": t.metrics, "headline": t.headline()})
    });
    let val = report.val.as_ref().map(|t| {
        json!({"samples": t.samples, "loss": t.loss, "metrics": t.metrics, "headline": t.headline()})
    });
    json!({
        "stop": report.stop,
        "steps": report.steps,
        "history": report.history,
        "evaluated_epoch": report.evaluated_epoch,
        "val": val,
        "test": test,
        "params": param_hash(&report.params),
        "checkpoint_params": param_hash(&ckpt.params),
        "rescored_test": {"samples": rescored.samples, "loss": rescored.loss, "metrics": rescored.metrics},
    })
}

#[test]
fn metrics_equal_the_golden_file() {
    let mut all = serde_json::Map::new();
    let tmp = tempfile::tempdir().unwrap();
    for &(name, epochs, steps) in EXAMPLES {
        let dir = tmp.path().join(name);
        let toml = example_spec(name, epochs, steps, &dir);
        all.insert(format!("examples/{name}"), record(&toml));
    }
    let with_dir = |toml: String, name: &str| {
        let dir = tmp.path().join(name);
        format!(
            "{toml}\n[checkpoint]\ndir = {:?}\n",
            dir.display().to_string()
        )
    };
    for cell in ["lstm", "gru", "rnn"] {
        let name = format!("learning/forecast-{cell}");
        let toml = with_dir(forecast_spec(cell), &name);
        all.insert(name, record(&toml));
    }
    for (cell, pooling) in [("lstm", "last"), ("gru", "max"), ("rnn", "mean")] {
        let name = format!("learning/classify-{cell}-{pooling}");
        let toml = with_dir(classify_spec(cell, pooling), &name);
        all.insert(name, record(&toml));
    }
    let toml = with_dir(lm_spec(), "language_model/keyed-gru");
    all.insert("language_model/keyed-gru".into(), record(&toml));

    let actual = Value::Object(all);
    let path = golden_path();
    let actual_text = format!("{}\n", serde_json::to_string_pretty(&actual).unwrap());
    if std::env::var_os("RINGTRAIN_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual_text).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (RINGTRAIN_BLESS=1 cargo test --workspace --test golden writes it)",
            path.display()
        )
    });
    // The authority is the text: serde_json writes an f64 as the shortest decimal that
    // round-trips, so equal text means equal bits (its default parser is not exact in the last
    // bit, so parsed values are only used to name what differs).
    let mut differing = Vec::new();
    if actual_text != text {
        let expected: Value = serde_json::from_str(&text).unwrap();
        let reparsed: Value = serde_json::from_str(&actual_text).unwrap();
        let (Value::Object(exp), Value::Object(act)) = (&expected, &reparsed) else {
            panic!("the golden file is not a JSON object");
        };
        for key in exp
            .keys()
            .chain(act.keys().filter(|k| !exp.contains_key(*k)))
        {
            let (e, a) = (exp.get(key), act.get(key));
            let show = |v: Option<&Value>| {
                v.map_or("(missing)".to_string(), |v| {
                    serde_json::to_string(v).unwrap()
                })
            };
            if show(e) != show(a) {
                eprintln!("{key}:\n  expected {}\n  actual   {}", show(e), show(a));
                differing.push(key.clone());
            }
        }
        if differing.is_empty() {
            differing.push("(a value that differs only in its last bits)".into());
        }
    }
    if !differing.is_empty() {
        // The whole actual record, for a diff against the golden file.
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("golden-actual.json");
        std::fs::write(&out, &actual_text).unwrap();
        panic!(
            "metrics differ from {} for {differing:?} (actual values in {})",
            path.display(),
            out.display()
        );
    }
}

/// A small forecaster's checkpoint in the current format (2), committed: it must keep loading,
/// rebuild its model through inference and score the test split exactly as recorded beside
/// it. `RINGTRAIN_BLESS=1` writes both again (only when the format is meant to change; keep
/// the old file as a second fixture then).
#[test]
fn a_committed_checkpoint_still_loads_and_scores_the_same() {
    let fixture = repo().join("tests/golden/forecast-format2.ckpt");
    let record = repo().join("tests/golden/forecast-format2.json");
    let tmp = tempfile::tempdir().unwrap();
    let toml = format!(
        "{}\n[checkpoint]\ndir = {:?}\n",
        forecast_spec("gru")
            .replace("hidden = 32", "hidden = 8")
            .replace("epochs = 3", "epochs = 1"),
        tmp.path().join("run").display().to_string()
    );
    let spec = parse_str(&toml, SpecFormat::Toml, "<golden>", "format2").unwrap();
    let device = Device::flex();
    if std::env::var_os("RINGTRAIN_BLESS").is_some_and(|v| v == "1") {
        let opts = TrainOptions {
            base_dir: repo().join("examples"),
            resume: None,
            halt_after_steps: None,
            stop: None,
            device: device.clone(),
            run_id: None,
            commit: None,
            attempt: 1,
        };
        train(&spec, &opts, &mut Silent).unwrap();
        std::fs::copy(tmp.path().join("run/latest.ckpt"), &fixture).unwrap();
    }
    let ckpt = Checkpoint::load(&fixture).unwrap();
    assert_eq!(ckpt.header.format_version, 2);
    let model = inference::load_model(&ckpt, &device).unwrap();
    let data = ringtrain_data::load_with(
        &ckpt.header.spec,
        &repo().join("examples"),
        Some(&ckpt.header.fitted),
    )
    .unwrap();
    let task = TaskData::new(&ckpt.header.spec, data).unwrap();
    let test = evaluate(&model, &task, SplitName::Test, 16, &device).unwrap();
    let actual = format!(
        "{}\n",
        serde_json::to_string_pretty(&json!({
            "params": param_hash(&ckpt.params),
            "test": {"samples": test.samples, "loss": test.loss, "metrics": test.metrics},
        }))
        .unwrap()
    );
    if std::env::var_os("RINGTRAIN_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(&record, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&record).unwrap();
    assert_eq!(actual, expected, "{} scores differently", fixture.display());
}
