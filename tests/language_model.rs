//! Language models end to end through the `ringtrain` binary, on a generated corpus with
//! long-range structure (`ringtrain_data::synth::keyed_lines`): a character model beats the
//! bigram model of the same corpus on its test split; `ringtrain local --workers 2` ends within
//! 1e-5 of `ringtrain train` (each rank carries the state of its own streams); `generate` and
//! `predict` continue prompts, deterministically for a seed, with clear errors for bad input.

// Tests report measured numbers on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::{assert_same_training, ringtrain, run_local_any_task, run_train};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Writes the corpus and a char-LM spec into `dir`.
fn lm_spec(dir: &Path, name: &str, lines: usize, extra: &str) -> PathBuf {
    let corpus = dir.join("corpus.txt");
    if !corpus.exists() {
        std::fs::write(&corpus, ringtrain_data::synth::keyed_lines(lines, 3)).unwrap();
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
seed = 11
[model]
cell = "lstm"
hidden = 64
embedding_dim = 16
[task]
kind = "language_model"
bptt = 16
[data]
path = "{corpus}"
split = [0.8, 0.1, 0.1]
[train]
optimizer = {{ kind = "adam", lr = 0.01 }}
clip = {{ norm = 1.0 }}
{extra}
[checkpoint]
dir = "{ckpt}"
"#,
            corpus = corpus.display(),
            ckpt = dir.join(format!("runs-{name}")).display()
        ),
    )
    .unwrap();
    path
}

/// Bits per character of an add-one smoothed bigram model fitted on `train`, scored on `test`.
fn bigram_bits(train: &[char], test: &[char]) -> f64 {
    let alphabet: std::collections::BTreeSet<char> = train.iter().chain(test).copied().collect();
    let v = alphabet.len() as f64;
    let mut pairs: HashMap<(char, char), f64> = HashMap::new();
    let mut firsts: HashMap<char, f64> = HashMap::new();
    for w in train.windows(2) {
        *pairs.entry((w[0], w[1])).or_default() += 1.0;
        *firsts.entry(w[0]).or_default() += 1.0;
    }
    let bits: f64 = test
        .windows(2)
        .map(|w| {
            let p = (pairs.get(&(w[0], w[1])).unwrap_or(&0.0) + 1.0)
                / (firsts.get(&w[0]).unwrap_or(&0.0) + v);
            -p.log2()
        })
        .sum();
    bits / (test.len() - 1) as f64
}

fn generate(ckpt: &Path, extra: &[&str]) -> std::process::Output {
    ringtrain()
        .args(["generate", "--checkpoint", ckpt.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn char_model_beats_the_bigram_model_then_generates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let spec = lm_spec(dir.path(), "char", 500, "epochs = 6\nbatch_size = 8");
    let report = run_train(&spec);
    let test = &report["test"]["metrics"];
    let bpc = test["bits_per_token"].as_f64().unwrap();
    let unigram = test["unigram_bits_per_token"].as_f64().unwrap();
    let text: Vec<char> = ringtrain_data::synth::keyed_lines(500, 3).chars().collect();
    let n = text.len();
    let (a, b) = (
        (n as f64 * 0.8).round() as usize,
        (n as f64 * 0.9).round() as usize,
    );
    let bigram = bigram_bits(&text[..a], &text[b..]);
    eprintln!("test bits/char: model {bpc:.4}, bigram {bigram:.4}, unigram {unigram:.4}");
    assert_eq!(test["unit"], "character");
    assert!(
        bpc < unigram && bpc < bigram - 0.5,
        "bpc {bpc} vs bigram {bigram}"
    );
    let ppl = test["perplexity"].as_f64().unwrap();
    assert!((ppl.ln() / std::f64::consts::LN_2 - bpc).abs() < 1e-9);
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("runs-char/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["test"]["metrics"]["kind"], "language_model");

    // generate: N characters after the prompt, the same for the same seed.
    let ckpt = dir.path().join("runs-char");
    let args = [
        "--prompt", "abc: the", "--tokens", "25", "--seed", "5", "--output", "json",
    ];
    let first = json_of(&generate(&ckpt, &args));
    let again = json_of(&generate(&ckpt, &args));
    assert_eq!(first, again, "same seed, same text");
    let continuation = first["continuation"].as_str().unwrap();
    assert_eq!(continuation.chars().count(), 25, "{first}");
    assert_eq!(first["unknown_prompt_tokens"], 0);
    let table = generate(
        &ckpt,
        &[
            "--prompt",
            "abc: the",
            "--tokens",
            "5",
            "--temperature",
            "0",
        ],
    );
    assert!(table.status.success());
    let shown = String::from_utf8_lossy(&table.stdout);
    assert!(shown.starts_with("abc: the"), "{shown}");
    assert_eq!(
        shown.trim_end_matches('\n').chars().count(),
        "abc: the".len() + 5,
        "{shown:?}"
    );
    // Characters the corpus never had are read as <unk>, and said so.
    let unk = json_of(&generate(
        &ckpt,
        &["--prompt", "XYZ", "--tokens", "3", "--output", "json"],
    ));
    assert_eq!(unk["unknown_prompt_tokens"], 3);

    // Bad input: clear errors, no panic.
    let zero = generate(&ckpt, &["--prompt", "abc", "--tokens", "0"]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--tokens 0 is out of range"));
    let missing = generate(
        &dir.path().join("nope"),
        &["--prompt", "abc", "--tokens", "3"],
    );
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("nope") && !err.contains("panicked"), "{err}");
    let empty = generate(&ckpt, &["--prompt", "", "--tokens", "3"]);
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no tokens"));
    let hot = generate(&ckpt, &["--prompt", "a", "--temperature=-1"]);
    assert!(!hot.status.success());
    assert!(String::from_utf8_lossy(&hot.stderr).contains("temperature"));

    // predict continues every input line (greedy).
    let input = dir.path().join("prompts.txt");
    std::fs::write(&input, "abc: the rain\nhhh: over\n").unwrap();
    let out = ringtrain()
        .args(["predict", "--checkpoint", ckpt.to_str().unwrap()])
        .args([
            "--input",
            input.to_str().unwrap(),
            "--tokens",
            "7",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["text"], "hhh: over");
    assert_eq!(
        lines[1]["continuation"].as_str().unwrap().chars().count(),
        7
    );
}

#[test]
fn two_workers_carry_their_own_streams_and_match_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let train = "epochs = 2\nbatch_size = 8";
    let dp = lm_spec(
        dir.path(),
        "dp2",
        100,
        &format!("{train}\n[parallel]\ndata = 2"),
    );
    let single = lm_spec(dir.path(), "single", 100, train);
    let done = run_local_any_task(&dp, 2, 2, &[]);
    let report = run_train(&single);
    let diff = assert_same_training(
        "language model, 2 workers",
        &dir.path().join("runs-dp2"),
        &done,
        &dir.path().join("runs-single"),
        &report,
    );
    eprintln!("2 workers vs one process: max abs parameter diff {diff:e}");
    let metrics = &done["job"]["result"]["metrics"];
    assert!(
        metrics["test.perplexity"].as_f64().unwrap() > 1.0,
        "{metrics:#}"
    );
}
