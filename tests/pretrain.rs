//! Pretraining → fine-tuning end to end through the `ringtrain` binary: `ringtrain train` on a
//! language-model spec, then on a classifier spec with `[init_from]` (relative path, and the
//! `--init-from` override), the classifier ending with the language model's vocabulary; a
//! refused `init_from` names the field and the file; and the same fine-tuning job run by
//! `ringtrain local` on 2 real worker processes — data parallel, and as 2 pipeline stages —
//! ends within 1e-5 of one process.

// Tests report measured numbers on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::{assert_same_training, examples, run_fail, run_local_any_task, run_ok, run_train};
use ringtrain_data::Fitted;
use ringtrain_train::Checkpoint;
use std::path::{Path, PathBuf};

/// Writes the review texts of the generated sentiment file into `dir/reviews.txt` (an
/// unlabeled corpus) and a word-level language model spec on it; its run goes to `dir/runs/lm`.
fn lm_spec(dir: &Path) -> PathBuf {
    let csv = std::fs::read_to_string(examples().join("data/sentiment-synth.csv")).unwrap();
    let text: String = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(','))
        .map(|(t, _)| format!("{t}\n"))
        .collect();
    std::fs::write(dir.join("reviews.txt"), text).unwrap();
    let path = dir.join("lm.toml");
    std::fs::write(
        &path,
        r#"name = "lm"
seed = 2
[model]
cell = "lstm"
hidden = 16
embedding_dim = 8
[task]
kind = "language_model"
bptt = 12
[data]
path = "reviews.txt"
tokenizer = "word"
lowercase = true
split = [0.9, 0.1, 0.0]
[train]
epochs = 1
batch_size = 8
max_steps = 20
optimizer = { kind = "adam", lr = 0.01 }
[checkpoint]
dir = "runs/lm"
"#,
    )
    .unwrap();
    path
}

/// A classifier spec in `dir` taking `layers` of `runs/lm` (relative to the spec), with
/// `parallel` settings; its run goes to `dir/runs/<name>`.
fn finetune_spec(dir: &Path, name: &str, parallel: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 6
[model]
cell = "lstm"
hidden = 16
embedding_dim = 8
dropout = 0.0
layers = 2
[task]
kind = "classify"
pooling = "max"
[data]
path = "{data}"
tokenizer = "word"
split = [0.1, 0.1, 0.8]
[train]
epochs = 2
batch_size = 16
max_steps = 20
optimizer = {{ kind = "adamw", lr = 0.01, weight_decay = 0.01 }}
clip = {{ norm = 1.0 }}
[parallel]
{parallel}
[checkpoint]
dir = "runs/{name}"
[init_from]
checkpoint = "runs/lm"
layers = ["embedding", "lstm0"]
freeze_epochs = 1
lr_scale = 0.5
{extra}
"#,
            data = examples().join("data/sentiment-synth.csv").display()
        ),
    )
    .unwrap();
    path
}

fn vocab_tokens(dir: &Path) -> Vec<String> {
    let path = ringtrain_train::checkpoint::resolve_for_inference(dir).unwrap();
    match Checkpoint::load(&path).unwrap().header.fitted {
        Fitted::Text { vocab, .. } | Fitted::Corpus { vocab } => vocab.tokens().to_vec(),
        other => panic!("{}: {other:?}", dir.display()),
    }
}

#[test]
fn train_a_language_model_then_fine_tune_a_classifier_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let lm = lm_spec(dir.path());
    run_ok(&["train", lm.to_str().unwrap(), "--quiet"]);
    let lm_vocab = vocab_tokens(&dir.path().join("runs/lm"));

    let spec = finetune_spec(dir.path(), "ft", "", "");
    let report = run_train(&spec);
    let accuracy = report["test"]["metrics"]["accuracy"].as_f64();
    assert!(accuracy.is_some_and(|a| a > 0.0), "{report:#}");
    assert_eq!(vocab_tokens(&dir.path().join("runs/ft")), lm_vocab);

    // --init-from overrides the spec's path (relative to the current directory).
    let moved = dir.path().join("pretrained");
    std::fs::rename(dir.path().join("runs/lm"), &moved).unwrap();
    let e = run_fail(&["train", spec.to_str().unwrap(), "--overwrite", "--quiet"]);
    assert!(
        e.contains("init_from.checkpoint: no checkpoint in ") && e.contains("runs/lm"),
        "{e}"
    );
    run_ok(&[
        "train",
        spec.to_str().unwrap(),
        "--overwrite",
        "--quiet",
        "--init-from",
        moved.to_str().unwrap(),
    ]);
    assert_eq!(vocab_tokens(&dir.path().join("runs/ft")), lm_vocab);

    // A refused layer names the field, the layer lists and the file; nothing is trained.
    let bad = finetune_spec(dir.path(), "bad", "", "");
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("\"lstm0\"]", "\"lstm0\", \"attention\"]");
    std::fs::write(&bad, text).unwrap();
    let e = run_fail(&[
        "train",
        bad.to_str().unwrap(),
        "--init-from",
        moved.to_str().unwrap(),
    ]);
    assert!(
        e.contains(
            "init_from.layers[2] = \"attention\": this model has no layer of that name (its \
             layers: embedding, lstm0, lstm1, head; checkpoint "
        ) && e.contains("pretrained/best.ckpt"),
        "{e}"
    );
    assert!(!dir.path().join("runs/bad/latest.ckpt").exists());
    // A spec without [init_from] cannot take --init-from.
    let e = run_fail(&[
        "train",
        lm.to_str().unwrap(),
        "--init-from",
        "x",
        "--overwrite",
    ]);
    assert!(
        e.contains("--init-from x: the spec has no [init_from] section"),
        "{e}"
    );
}

/// The fine-tuning job on 2 worker processes — 2 data-parallel replicas, then 2 pipeline
/// stages — against `ringtrain train` of the same spec: each rank reads the pretrained
/// checkpoint, and the frozen first epoch (13 steps) and the scaled learning rate after it
/// apply to every rank's slice. (No dropout: with `dropout = 0.1` the same 2-worker job ends
/// about 0.1 away from one process, with or without `init_from`.)
#[test]
fn fine_tuning_on_two_workers_matches_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let lm = lm_spec(dir.path());
    run_ok(&["train", lm.to_str().unwrap(), "--quiet"]);
    for (name, parallel) in [("dp", "data = 2"), ("pp", "pipeline = 2\nmicrobatches = 2")] {
        let single = finetune_spec(dir.path(), &format!("{name}-single"), "", "");
        let report = run_train(&single);
        let spec = finetune_spec(dir.path(), &format!("{name}-cluster"), parallel, "");
        let done = run_local_any_task(&spec, 2, 2, &[]);
        let what = format!("init_from, {}", parallel.replace('\n', ", "));
        let diff = assert_same_training(
            &what,
            &dir.path().join(format!("runs/{name}-cluster")),
            &done,
            &dir.path().join(format!("runs/{name}-single")),
            &report,
        );
        eprintln!("{what}: max abs diff to one process {diff:e}");
    }
}

/// `init_from.checkpoint` in the job sandbox, through a real coordinator and worker started with
/// `--data-root` / `--checkpoint-root`: a path outside both is refused at submit naming the
/// field; a symlink inside the data root that leads outside is refused by the worker, which
/// resolves it; a pretrained run under the checkpoint root is read, and the job trains.
#[cfg(unix)]
#[test]
fn init_from_is_confined_to_the_sandbox_roots() {
    use common::services::{Cluster, Flags};
    let dir = tempfile::tempdir().unwrap();
    let lm = lm_spec(dir.path());
    run_ok(&["train", lm.to_str().unwrap(), "--quiet"]);
    let (data, runs) = (dir.path().join("data"), dir.path().join("runs"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        examples().join("data/sentiment-synth.csv"),
        data.join("sentiment-synth.csv"),
    )
    .unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(runs.join("lm/best.ckpt"), outside.join("best.ckpt")).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();
    let roots: Vec<String> = vec![
        "--data-root".into(),
        data.display().to_string(),
        "--checkpoint-root".into(),
        runs.display().to_string(),
    ];
    let cluster = Cluster::start_with(
        1,
        Flags {
            coordinator: roots.clone(),
            worker: roots,
            client: Vec::new(),
        },
    );
    // A fine-tuning spec in the data root reading `init`, writing under the checkpoint root.
    let write = |name: &str, init: &str| -> PathBuf {
        let text = std::fs::read_to_string(finetune_spec(dir.path(), name, "", ""))
            .unwrap()
            .replace(
                &examples()
                    .join("data/sentiment-synth.csv")
                    .display()
                    .to_string(),
                "sentiment-synth.csv",
            )
            .replace(
                &format!("dir = \"runs/{name}\""),
                &format!("dir = {:?}", runs.join(name).display().to_string()),
            )
            .replace(
                "checkpoint = \"runs/lm\"",
                &format!("checkpoint = {init:?}"),
            );
        let path = data.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    };

    let out = cluster.cli(&["submit", write("far", "../outside").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("init_from.checkpoint = \"../outside\" resolves to ")
            && err.contains("outside the allowed data or checkpoint roots")
            && err.contains("(InvalidArgument)"),
        "{err}"
    );

    let id = cluster.submit(&write("linked", "link"));
    let job = cluster.wait_job(&id, 60, |j| j["state"] == "failed");
    let reason = job["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("refused by the worker's sandbox")
            && reason.contains("init_from.checkpoint = \"link\""),
        "{job:#}"
    );

    let inside = runs.join("lm").display().to_string();
    let id = cluster.submit(&write("inside", &inside));
    let job = cluster.wait_job(&id, 120, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(job["state"], "succeeded", "{job:#}\n{}", cluster.logs());
    assert_eq!(
        vocab_tokens(&runs.join("inside").join(&id)),
        vocab_tokens(&runs.join("lm"))
    );
}
