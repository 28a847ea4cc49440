//! Sequence-to-sequence through the public trainer: an attentional decoder learns to reverse
//! and to sort digit strings of 3–12 characters (greedy exact match on the test split), beam
//! search never finds a worse sequence than greedy decoding under the model's own
//! log-probability and finds the exact optimum when it is wide enough, padding never changes a
//! decoding, and teacher forcing below 1 is deterministic and takes effect.

// The measured metrics are printed so a run shows how far above the thresholds each case is.
#![allow(clippy::print_stderr)]

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use ringtrain_data::synth_pairs::{DigitTask, digit_pairs, pairs_tsv};
use ringtrain_data::{Fitted, PairBatch, Vocab};
use ringtrain_models::{ForwardCtx, Model};
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::checkpoint::{Checkpoint, LATEST};
use ringtrain_train::seq2seq_task::{pair_batch, source_tensors};
use ringtrain_train::{Silent, TaskMetrics, TrainOptions, TrainReport, inference, train};
use std::path::{Path, PathBuf};

/// Trains `model_and_task` (TOML of `[model]` and `[task]`) on `n` generated pairs of `task`.
fn run(dir: &Path, task: DigitTask, n: usize, model_and_task: &str, epochs: u32) -> TrainReport {
    run_with(dir, task, n, model_and_task, epochs, None, None)
}

/// [`run`], stopping after `halt` steps or resuming from `resume`.
fn run_with(
    dir: &Path,
    task: DigitTask,
    n: usize,
    model_and_task: &str,
    epochs: u32,
    halt: Option<u64>,
    resume: Option<PathBuf>,
) -> TrainReport {
    std::fs::write(
        dir.join("pairs.tsv"),
        pairs_tsv(&digit_pairs(task, n, 3, 12, 5)),
    )
    .unwrap();
    let toml = format!(
        r#"
seed = 7
{model_and_task}
[data]
path = "pairs.tsv"
tokenizer = "char"
max_source_len = 12
max_target_len = 12
split = [0.9, 0.0, 0.1]
[train]
epochs = {epochs}
batch_size = 32
optimizer = {{ kind = "adam", lr = 0.003 }}
schedule = {{ kind = "cosine", min_lr = 0.0001 }}
clip = {{ norm = 1.0 }}
[checkpoint]
dir = {:?}
"#,
        dir.join("run").display().to_string()
    );
    let spec = parse_str(&toml, SpecFormat::Toml, "<test>", "t").unwrap();
    let opts = TrainOptions {
        base_dir: dir.to_path_buf(),
        resume,
        halt_after_steps: halt,
        stop: None,
        device: Device::flex(),
        run_id: None,
        commit: None,
        attempt: 1,
    };
    train(&spec, &opts, &mut Silent).unwrap()
}

fn exact_match(report: &TrainReport) -> f64 {
    let Some(TaskMetrics::Translation(t)) = report.test.as_ref().map(|t| &t.metrics) else {
        panic!("no translation metrics: {:?}", report.test);
    };
    eprintln!(
        "test: exact match {:.4}, BLEU {:.4}, token accuracy {:.4} over {} sentences",
        t.exact_match, t.bleu, t.token_accuracy, t.sentences
    );
    t.exact_match
}

#[test]
fn learns_to_reverse_digit_strings_with_bahdanau_attention() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        dir.path(),
        DigitTask::Reverse,
        4000,
        "[model]\ncell = \"gru\"\nhidden = 64\nembedding_dim = 16\n\
         [task]\nkind = \"seq2seq\"\nattention = \"bahdanau\"",
        10,
    );
    assert!(exact_match(&report) >= 0.95);
}

#[test]
fn learns_to_sort_digit_strings_with_luong_general_attention() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(
        dir.path(),
        DigitTask::Sort,
        4000,
        "[model]\ncell = \"gru\"\nhidden = 64\nembedding_dim = 16\n\
         [task]\nkind = \"seq2seq\"\nattention = \"luong_general\"",
        12,
    );
    assert!(exact_match(&report) >= 0.95);
}

/// The model and vocabularies of a finished run.
fn load(dir: &Path) -> (Model, Vocab, Vocab) {
    let ckpt = Checkpoint::load(&dir.join("run").join(LATEST)).unwrap();
    let model = inference::load_model(&ckpt, &Device::flex()).unwrap();
    let Fitted::Pairs { source, target } = ckpt.header.fitted.clone() else {
        panic!("not a seq2seq checkpoint");
    };
    (model, source, target)
}

/// `log p(target | source)` of every pair (targets without `<eos>`; `<eos>` is scored),
/// computed by the teacher-forced forward pass — independently of the decoders.
fn log_probs(model: &Model, sources: &[Vec<u32>], targets: &[Vec<u32>]) -> Vec<f64> {
    let device = Device::flex();
    let pb = PairBatch::new(sources, targets);
    let (steps, truth, mask) = (
        pb.target_len,
        pb.decoder_target.clone(),
        pb.target_mask.clone(),
    );
    let (batch, _) = pair_batch(pb, &device);
    let logits = model.forward(batch, &ForwardCtx::eval());
    let v = logits.dims()[1];
    let logp: Vec<f32> = log_softmax(logits, 1).into_data().iter::<f32>().collect();
    (0..sources.len())
        .map(|b| {
            (0..steps)
                .map(|t| b * steps + t)
                .filter(|&r| mask[r] > 0.0)
                .map(|r| f64::from(logp[r * v + truth[r] as usize]))
                .sum()
        })
        .collect()
}

/// A half-trained model (uncertain enough for beam and greedy to disagree), the third
/// attention variant and a bidirectional LSTM encoder.
#[test]
fn beam_search_never_scores_below_greedy_and_is_exact_when_wide() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        DigitTask::Sort,
        1200,
        "[model]\ncell = \"lstm\"\nbidirectional = true\nhidden = 16\nembedding_dim = 8\n\
         [task]\nkind = \"seq2seq\"\nattention = \"luong_dot\"\nbeam_width = 4",
        2,
    );
    let (model, source_vocab, target_vocab) = load(dir.path());
    let device = Device::flex();
    let sources: Vec<Vec<u32>> = digit_pairs(DigitTask::Sort, 200, 3, 12, 99)
        .iter()
        .map(|(s, _)| source_vocab.encode(s))
        .collect();
    let empty = vec![Vec::new(); sources.len()];
    let pb = PairBatch::new(&sources, &empty);
    let decode = |width: usize| {
        let (ids, mask) = source_tensors(&pb, &device);
        model.beam_decode(ids, mask, width, 0.0, 12).unwrap()
    };
    let greedy = {
        let (ids, mask) = source_tensors(&pb, &device);
        model.greedy_decode(ids, mask, 12).unwrap()
    };
    assert_eq!(decode(1), greedy, "beam width 1 is greedy decoding");
    let beam = decode(4);
    let tokens = |h: &[ringtrain_models::Hypothesis]| -> Vec<Vec<u32>> {
        h.iter().map(|h| h.tokens.clone()).collect()
    };
    let greedy_lp = log_probs(&model, &sources, &tokens(&greedy));
    let beam_lp = log_probs(&model, &sources, &tokens(&beam));
    let mut better = 0;
    for i in 0..sources.len() {
        // The decoders' own sums agree with the teacher-forced forward.
        assert!((greedy[i].log_prob - greedy_lp[i]).abs() < 1e-3, "{i}");
        assert!((beam[i].log_prob - beam_lp[i]).abs() < 1e-3, "{i}");
        assert!(
            beam_lp[i] >= greedy_lp[i] - 1e-4,
            "source {i}: beam {} < greedy {}",
            beam_lp[i],
            greedy_lp[i]
        );
        better += usize::from(beam_lp[i] > greedy_lp[i] + 1e-4);
    }
    eprintln!(
        "beam (width 4) beat greedy on {better} of {} sources",
        sources.len()
    );

    // Exhaustive search over every output of at most 2 tokens: a beam as wide as the number of
    // such outputs keeps every prefix, so it must find the most likely one.
    let v = target_vocab.len() as u32;
    let mut all: Vec<Vec<u32>> = vec![Vec::new()];
    for a in 0..v {
        all.push(vec![a]);
        for b in 0..v {
            all.push(vec![a, b]);
        }
    }
    // <eos> inside a sequence would end it: such outputs are not sequences the decoder emits.
    all.retain(|s| !s.contains(&ringtrain_data::EOS));
    for source in sources.iter().take(4) {
        let repeated = vec![source.clone(); all.len()];
        let scores = log_probs(&model, &repeated, &all);
        let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let one = PairBatch::new(std::slice::from_ref(source), &[Vec::<u32>::new()]);
        let (ids, mask) = source_tensors(&one, &device);
        let found = model.beam_decode(ids, mask, all.len(), 0.0, 2).unwrap();
        assert!(
            (found[0].log_prob - best).abs() < 1e-3,
            "wide beam {} vs exhaustive {best}",
            found[0].log_prob
        );
    }
}

#[test]
fn padding_never_changes_a_decoding_and_teacher_forcing_below_one_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let spec = "[model]\ncell = \"gru\"\nhidden = 16\nembedding_dim = 8\n\
                [task]\nkind = \"seq2seq\"\nattention = \"bahdanau\"\nteacher_forcing = 0.5";
    let a = run(dir.path(), DigitTask::Reverse, 600, spec, 1);
    let (model, source_vocab, _) = load(dir.path());
    let b = run(dir.path(), DigitTask::Reverse, 600, spec, 1);
    assert_eq!(a.params, b.params, "same seed, same teacher-forcing draws");
    let forced = run(
        dir.path(),
        DigitTask::Reverse,
        600,
        &spec.replace("teacher_forcing = 0.5", "teacher_forcing = 1.0"),
        1,
    );
    assert_ne!(a.params, forced.params, "the ratio takes effect");

    let device = Device::flex();
    let short = source_vocab.encode("123");
    let long = source_vocab.encode("98765432109");
    let alone = PairBatch::new(std::slice::from_ref(&short), &[Vec::<u32>::new()]);
    let padded = PairBatch::new(&[short.clone(), long], &[Vec::<u32>::new(), Vec::new()]);
    for width in [1, 3] {
        let (ids, mask) = source_tensors(&alone, &device);
        let x = model.beam_decode(ids, mask, width, 0.0, 12).unwrap();
        let (ids, mask) = source_tensors(&padded, &device);
        let y = model.beam_decode(ids, mask, width, 0.0, 12).unwrap();
        assert_eq!(x[0].tokens, y[0].tokens);
        assert!((x[0].log_prob - y[0].log_prob).abs() < 1e-5);
    }
}

/// A run stopped mid-epoch and resumed ends with exactly the parameters of an uninterrupted
/// run: the teacher-forcing draws are a function of (seed, step), like the dropout masks.
#[test]
fn interrupted_and_resumed_run_ends_with_the_same_parameters() {
    let spec = "[model]\ncell = \"lstm\"\nhidden = 16\nembedding_dim = 8\nlayers = 2\ndropout = 0.2\n\
                [task]\nkind = \"seq2seq\"\nattention = \"luong_general\"\nteacher_forcing = 0.6";
    let whole = tempfile::tempdir().unwrap();
    let full = run(whole.path(), DigitTask::Sort, 500, spec, 2);
    let parts = tempfile::tempdir().unwrap();
    let halted = run_with(parts.path(), DigitTask::Sort, 500, spec, 2, Some(20), None);
    assert_eq!(halted.steps, 20);
    let resumed = run_with(
        parts.path(),
        DigitTask::Sort,
        500,
        spec,
        2,
        None,
        Some(parts.path().join("run")),
    );
    assert_eq!(resumed.steps, full.steps);
    assert_eq!(resumed.params, full.params);
}
