//! Sequence-to-sequence through the `ringtrain` binary: the data-parallel numerics contract
//! (`local --workers 2` against `train` with the same global batch, teacher forcing below 1
//! and padded batches included), `eval` and `predict` (greedy and `--beam`) on a trained model,
//! and the errors a user sees for bad input.

// Tests report the measured parameter difference on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::{assert_same_training, examples, run_fail, run_local_any_task, run_ok, run_train};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A seq2seq spec on the committed reverse-digits data (or `data`), checkpoints in
/// `dir/runs/NAME`.
fn spec(dir: &Path, name: &str, data: &Path, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
seed = 11
[model]
cell = "gru"
hidden = 16
embedding_dim = 8
bidirectional = true
[task]
kind = "seq2seq"
attention = "luong_general"
beam_width = 3
length_penalty = 0.6
[data]
path = {data:?}
tokenizer = "char"
max_source_len = 12
max_target_len = 12
split = [0.8, 0.1, 0.1]
{body}
[checkpoint]
dir = {ckpt:?}
"#,
            data = data.display().to_string(),
            ckpt = dir.join(format!("runs/{name}")).display().to_string()
        ),
    )
    .unwrap();
    path
}

fn reverse_data() -> PathBuf {
    examples().join("data/reverse-digits.tsv")
}

/// Two workers with 8 pairs each per step end where one process with 16 per step ends: the
/// token-weighted loss is combined by the replicas' valid-token counts, the teacher-forcing
/// draws are the same on every replica, and each replica pads its batch to its own longest
/// pair without changing a result.
#[test]
fn two_workers_match_one_process_on_seq2seq() {
    let dir = tempfile::tempdir().unwrap();
    // SGD with momentum: Adam divides every gradient by its own running magnitude, which turns
    // the float-rounding noise of near-zero gradients (rare tokens' embedding rows) into
    // lr-sized steps; measured here with Adam (lr 0.01, 12 steps): 3.3e-6 with teacher forcing
    // 1.0 and 2.6e-5 with 0.7, against 6e-8 for plain SGD.
    let train = "[train]\nepochs = 1\nmax_steps = 12\nbatch_size = 16\n\
                 optimizer = { kind = \"sgd\", lr = 0.2, momentum = 0.9 }\nclip = { norm = 1.0 }";
    let body = |data: usize| format!("{train}\n[parallel]\ndata = {data}");
    let dp = spec(dir.path(), "dp", &reverse_data(), &body(2));
    let single = spec(dir.path(), "single", &reverse_data(), &body(1));
    for path in [&dp, &single] {
        let text = std::fs::read_to_string(path).unwrap();
        std::fs::write(
            path,
            text.replace("beam_width = 3", "beam_width = 3\nteacher_forcing = 0.7"),
        )
        .unwrap();
    }
    let done = run_local_any_task(&dp, 2, 2, &[]);
    let metrics = &done["job"]["result"]["metrics"];
    assert!(metrics["test.bleu"].as_f64().is_some(), "{metrics:#}");
    let report = run_train(&single);
    let diff = assert_same_training(
        "2 workers (seq2seq)",
        &dir.path().join("runs/dp"),
        &done,
        &dir.path().join("runs/single"),
        &report,
    );
    eprintln!("seq2seq: 2 workers vs one process, max abs param diff {diff:e}");
    // Same BLEU on the test split: every rank decodes its shard, the statistics are summed.
    let single_bleu = report["test"]["metrics"]["bleu"].as_f64().unwrap();
    let dp_bleu = metrics["test.bleu"].as_f64().unwrap();
    assert!(
        (single_bleu - dp_bleu).abs() < 1e-9,
        "{dp_bleu} vs {single_bleu}"
    );
}

/// Train briefly, then `eval` reports BLEU and `predict` prints one line per input line, for
/// greedy decoding and beam search.
#[test]
fn train_eval_and_predict_translate_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = spec(
        dir.path(),
        "rev",
        &reverse_data(),
        "[train]\nepochs = 1\nbatch_size = 32\noptimizer = { kind = \"adam\", lr = 0.01 }",
    );
    run_ok(&["train", path.to_str().unwrap(), "--quiet"]);
    let ckpt = dir.path().join("runs/rev");
    let eval = run_ok(&[
        "eval",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let report: Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(report["metrics"]["kind"], "translation", "{report:#}");
    let bleu = report["metrics"]["bleu"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&bleu), "{report:#}");

    let input = dir.path().join("in.txt");
    std::fs::write(&input, "123\n\n9876543210\n55\n").unwrap();
    for beam in ["1", "4"] {
        let out = run_ok(&[
            "predict",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--beam",
            beam,
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "one translation per non-blank line: {text}");
        for line in lines {
            assert!(
                line.len() <= 12
                    && line.chars().all(|c| c.is_ascii_digit()
                        || c == '<'
                        || c == '>'
                        || c.is_ascii_lowercase()),
                "{line}"
            );
        }
    }
    let json = run_ok(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let first: Value = serde_json::from_str(
        String::from_utf8_lossy(&json.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["source"], "123");
    assert!(first["log_prob"].as_f64().unwrap() <= 0.0);

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let err = run_fail(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--input",
        empty.to_str().unwrap(),
    ]);
    assert!(err.contains("no text to translate"), "{err}");
    let err = run_fail(&[
        "predict",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--beam",
        "0",
    ]);
    assert!(err.contains("--beam"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let train = "[train]\nepochs = 1\nbatch_size = 8";
    // A column the file does not have is named, with the columns that exist.
    let data = dir.path().join("pairs.tsv");
    std::fs::write(&data, "en\tes\nhello\thola\n").unwrap();
    let missing = spec(dir.path(), "missing", &data, train);
    let err = run_fail(&["train", missing.to_str().unwrap()]);
    assert!(err.contains("no column `source`"), "{err}");
    assert!(err.contains("en, es"), "{err}");
    // An empty file.
    let empty = dir.path().join("empty.tsv");
    std::fs::write(&empty, "").unwrap();
    let err = run_fail(&[
        "train",
        spec(dir.path(), "empty", &empty, train).to_str().unwrap(),
    ]);
    assert!(err.contains("empty file"), "{err}");
    // Spec errors name the field.
    let bad = spec(
        dir.path(),
        "bad",
        &reverse_data(),
        &format!("{train}\n[parallel]\npipeline = 2"),
    );
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("luong_general", "luong_concat")
        .replace("length_penalty = 0.6", "length_penalty = -1.0");
    std::fs::write(&bad, text).unwrap();
    let err = run_fail(&["train", bad.to_str().unwrap()]);
    assert!(
        err.contains(
            "task.attention = \"luong_concat\": must be one of bahdanau, luong_dot, luong_general"
        ),
        "{err}"
    );
    assert!(err.contains("task.length_penalty = -1"), "{err}");
    let pipe = spec(
        dir.path(),
        "pipe",
        &reverse_data(),
        &format!("{train}\n[parallel]\npipeline = 2"),
    );
    let err = run_fail(&["train", pipe.to_str().unwrap()]);
    assert!(err.contains("parallel.pipeline = 2: must be 1"), "{err}");
}

/// With `beam_width = 3` the test split is decoded with the beam (greedy alongside) and every
/// label says which decoder produced it; validation stays greedy.
#[test]
fn test_metrics_use_the_configured_beam_and_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = spec(
        dir.path(),
        "beam",
        &reverse_data(),
        "[train]\nepochs = 1\nbatch_size = 32\noptimizer = { kind = \"adam\", lr = 0.01 }",
    );
    let out = run_ok(&["train", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "BLEU-4 (beam 3)",
        "BLEU-4 (greedy)",
        "exact match (beam 3)",
        "exact match (greedy)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/beam/metrics.json")).unwrap(),
    )
    .unwrap();
    let (val, test) = (&metrics["val"]["metrics"], &metrics["test"]["metrics"]);
    assert_eq!(val["decoder"], "greedy", "{val:#}");
    assert!(val["greedy"].is_null(), "{val:#}");
    assert_eq!(test["decoder"], "beam 3", "{test:#}");
    let greedy = test["greedy"]["bleu"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&greedy), "{test:#}");
    eprintln!(
        "test BLEU beam 3: {}, greedy: {greedy}",
        test["bleu"].as_f64().unwrap()
    );
}
