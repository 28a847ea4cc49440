//! `init_from` through the public training API: a language model pretrained on the texts of
//! the generated sentiment reviews gives a classifier its vocabulary, embedding and first
//! recurrent layer — exactly those (the other layers keep their seeded values), frozen for the
//! first epoch — and a forecaster initializes another on a different target column. Refusals:
//! a mismatched tokenizer (vocabulary), a mismatched shape, an unknown layer and a missing
//! checkpoint, each with the field and the file named.

use burn::prelude::*;
use ringtrain_data::Fitted;
use ringtrain_models::{Model, flat};
use ringtrain_spec::{JobSpec, SpecFormat, parse_str};
use ringtrain_train::transfer::{Pretrained, layer_params};
use ringtrain_train::{Checkpoint, Silent, TrainOptions, TrainReport, train};
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn options(base: &Path) -> TrainOptions {
    TrainOptions {
        base_dir: base.to_path_buf(),
        resume: None,
        halt_after_steps: None,
        stop: None,
        device: Device::flex(),
        run_id: None,
        commit: None,
        attempt: 1,
    }
}

fn parse(toml: &str) -> JobSpec {
    parse_str(toml, SpecFormat::Toml, "<test>", "t").unwrap_or_else(|e| panic!("{e}"))
}

fn run(spec: &JobSpec, base: &Path) -> Result<TrainReport, String> {
    train(spec, &options(base), &mut Silent).map_err(|e| e.to_string())
}

/// The review texts of the generated sentiment file, one per line: an unlabeled corpus.
fn write_corpus(dir: &Path) -> PathBuf {
    let csv = std::fs::read_to_string(examples().join("data/sentiment-synth.csv")).unwrap();
    let text: String = csv
        .lines()
        .skip(1)
        .filter_map(|l| l.rsplit_once(','))
        .map(|(t, _)| format!("{t}\n"))
        .collect();
    let path = dir.join("reviews.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// A small word-level LSTM language model on `corpus`.
fn lm_spec(corpus: &Path, ckpt: &Path, tokenizer: &str) -> JobSpec {
    parse(&format!(
        r#"
name = "lm"
seed = 3
[model]
cell = "lstm"
hidden = 16
layers = 2
embedding_dim = 8
[task]
kind = "language_model"
bptt = 12
[data]
path = {corpus:?}
tokenizer = "{tokenizer}"
lowercase = true
split = [0.9, 0.1, 0.0]
[train]
epochs = 1
batch_size = 8
max_steps = 30
optimizer = {{ kind = "adam", lr = 0.01 }}
[checkpoint]
dir = {ckpt:?}
"#
    ))
}

/// A classifier with the language model's layer sizes (`embedding_dim` and extra `[init_from]`
/// keys vary).
fn classify_spec(ckpt: &Path, embedding_dim: usize, init: &str) -> JobSpec {
    parse(&format!(
        r#"
name = "clf"
seed = 9
[model]
cell = "lstm"
hidden = 16
layers = 2
embedding_dim = {embedding_dim}
[task]
kind = "classify"
pooling = "mean"
[data]
path = "data/sentiment-synth.csv"
tokenizer = "word"
split = [0.2, 0.1, 0.7]
[train]
epochs = 1
batch_size = 16
max_steps = 6
optimizer = {{ kind = "adamw", lr = 0.01, weight_decay = 0.1 }}
[checkpoint]
dir = {ckpt:?}
[init_from]
{init}
"#
    ))
}

fn slice_of<'a>(params: &'a [f32], model: &Model, name: &str) -> &'a [f32] {
    let layer = layer_params(model)
        .into_iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no layer {name}"));
    &params[layer.range]
}

#[test]
fn a_language_model_gives_a_classifier_exactly_the_named_layers_and_its_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let lm_dir = dir.path().join("lm");
    run(&lm_spec(&corpus, &lm_dir, "word"), dir.path()).unwrap();
    let lm = Checkpoint::load(&lm_dir.join("best.ckpt")).unwrap();
    let Fitted::Corpus { vocab: lm_vocab } = &lm.header.fitted else {
        panic!("a language model checkpoint")
    };
    let lm_model = ringtrain_train::inference::load_model(&lm, &Device::flex()).unwrap();

    // Frozen for the whole (one-epoch) run: the taken layers must still hold the language
    // model's values at the end, bit for bit, while the others have trained.
    let clf_dir = dir.path().join("clf");
    let init = format!(
        "checkpoint = {:?}\nlayers = [\"embedding\", \"lstm0\"]\nfreeze_epochs = 1",
        lm_dir.display().to_string()
    );
    let spec = classify_spec(&clf_dir, 8, &init);
    run(&spec, &examples()).unwrap();
    let tuned = Checkpoint::load(&clf_dir.join("latest.ckpt")).unwrap();
    let Fitted::Text { vocab, .. } = &tuned.header.fitted else {
        panic!("a classifier checkpoint")
    };
    assert_eq!(
        vocab.tokens(),
        lm_vocab.tokens(),
        "the pretrained vocabulary"
    );
    let tuned_model = ringtrain_train::inference::load_model(&tuned, &Device::flex()).unwrap();
    for name in ["embedding", "lstm0"] {
        assert_eq!(
            slice_of(&tuned.params, &tuned_model, name),
            slice_of(&lm.params, &lm_model, name),
            "{name} is the language model's"
        );
    }
    assert_ne!(
        slice_of(&tuned.params, &tuned_model, "lstm1"),
        slice_of(&lm.params, &lm_model, "lstm1"),
        "lstm1 was not taken"
    );

    // Right after loading: the taken layers are the checkpoint's, every other parameter is the
    // seeded initialization's.
    let spec = classify_spec(&clf_dir, 8, &init);
    let init_from = spec.init_from.clone().unwrap();
    let pretrained = Pretrained::open(&init_from, &spec.limits, &Device::flex()).unwrap();
    let fresh = Model::new(
        &spec.model,
        tuned_model_input(&tuned),
        tuned_model_head(&tuned),
        spec.seed,
        &Device::flex(),
    )
    .unwrap();
    let seeded = flat::flatten_params(&fresh);
    let taken = pretrained.select(&init_from, &fresh).unwrap();
    let names: Vec<&str> = taken.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["embedding", "lstm0"]);
    let loaded = pretrained.load(fresh, &taken).unwrap();
    let after = flat::flatten_params(&loaded);
    let layers = layer_params(&loaded);
    for layer in &layers {
        let got = &after[layer.range.clone()];
        if names.contains(&layer.name.as_str()) {
            assert_eq!(
                got,
                slice_of(&lm.params, &lm_model, &layer.name),
                "{}",
                layer.name
            );
        } else {
            assert_eq!(
                got,
                &seeded[layer.range.clone()],
                "{} keeps its seed",
                layer.name
            );
        }
    }

    // The default selection takes every layer both have except the differing head.
    let default = classify_spec(
        &clf_dir,
        8,
        &format!("checkpoint = {:?}", lm_dir.display().to_string()),
    );
    let init_from = default.init_from.clone().unwrap();
    let fresh = ringtrain_train::inference::load_model(&tuned, &Device::flex()).unwrap();
    let taken = pretrained.select(&init_from, &fresh).unwrap();
    let names: Vec<&str> = taken.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["embedding", "lstm0", "lstm1"]);
}

fn tuned_model_input(c: &Checkpoint) -> ringtrain_models::InputKind {
    ringtrain_train::task::model_shape(c).unwrap().0
}

fn tuned_model_head(c: &Checkpoint) -> ringtrain_models::HeadKind {
    ringtrain_train::task::model_shape(c).unwrap().1
}

#[test]
fn refusals_name_the_field_the_layer_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let word = dir.path().join("lm-word");
    let chars = dir.path().join("lm-char");
    run(&lm_spec(&corpus, &word, "word"), dir.path()).unwrap();
    run(&lm_spec(&corpus, &chars, "char"), dir.path()).unwrap();
    let out = dir.path().join("clf");
    let at = |p: &Path| p.display().to_string();

    // A character vocabulary for a word classifier.
    let e = run(
        &classify_spec(&out, 8, &format!("checkpoint = {:?}", at(&chars))),
        &examples(),
    )
    .unwrap_err();
    assert!(
        e.contains("init_from.checkpoint = ")
            && e.contains("lm-char/best.ckpt")
            && e.contains(
                "its vocabulary was built with data.tokenizer = \"char\", data.lowercase = true \
                 but this spec's data uses data.tokenizer = \"word\", data.lowercase = true"
            ),
        "{e}"
    );

    // Another embedding width.
    let e = run(
        &classify_spec(&out, 6, &format!("checkpoint = {:?}", at(&word))),
        &examples(),
    )
    .unwrap_err();
    assert!(
        e.contains("init_from.layers (default): layer \"embedding\" has parameter shapes [[")
            && e.contains(", 6]] in this model but [[")
            && e.contains(", 8]] in checkpoint ")
            && e.contains("lm-word/best.ckpt: model.embedding_dim differs"),
        "{e}"
    );

    // A named recurrent layer of another shape: lstm1 of width 16 vs this model's (with the
    // embedding not taken, the classifier builds its own vocabulary).
    let e = run(
        &parse(&format!(
            r#"
[model]
cell = "lstm"
hidden = 12
layers = 2
embedding_dim = 8
[task]
kind = "classify"
[data]
path = "data/sentiment-synth.csv"
[checkpoint]
dir = {:?}
[init_from]
checkpoint = {:?}
layers = ["lstm1"]
"#,
            at(&out),
            at(&word)
        )),
        &examples(),
    )
    .unwrap_err();
    assert!(
        e.contains(
            "init_from.layers[0]: layer \"lstm1\" has parameter shapes [[12, 48], [12, 48], [48], [48]] \
             in this model but [[16, 64], [16, 64], [64], [64]] in checkpoint"
        ),
        "{e}"
    );

    // A name neither model has.
    let e = run(
        &classify_spec(
            &out,
            8,
            &format!(
                "checkpoint = {:?}\nlayers = [\"embedding\", \"gru0\"]",
                at(&word)
            ),
        ),
        &examples(),
    )
    .unwrap_err();
    assert!(
        e.contains(
            "init_from.layers[1] = \"gru0\": this model has no layer of that name (its layers: \
             embedding, lstm0, lstm1, head; checkpoint "
        ),
        "{e}"
    );

    // No checkpoint there.
    let missing = dir.path().join("nothing-here");
    let e = run(
        &classify_spec(&out, 8, &format!("checkpoint = {:?}", at(&missing))),
        &examples(),
    )
    .unwrap_err();
    assert!(
        e.starts_with("init_from.checkpoint: no checkpoint in ") && e.contains("nothing-here"),
        "{e}"
    );
    assert!(
        !out.join("latest.ckpt").exists(),
        "no refused run wrote a checkpoint"
    );
}

/// A forecaster of one series initializes one of another column with the same shape: every
/// layer, head included, is taken.
#[test]
fn a_forecaster_initializes_another_on_a_different_series() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |target: &str, ckpt: &Path, init: &str| {
        parse(&format!(
            r#"
seed = 4
[model]
cell = "gru"
hidden = 8
[task]
kind = "forecast"
horizon = 2
[data]
path = "data/seasonal.csv"
features = ["demand", "temperature"]
targets = ["{target}"]
window = 12
[train]
epochs = 1
batch_size = 16
max_steps = 5
[checkpoint]
dir = {ckpt:?}
{init}
"#
        ))
    };
    let source = dir.path().join("demand");
    run(&spec("demand", &source, ""), &examples()).unwrap();
    let target = dir.path().join("temperature");
    let init = format!(
        "[init_from]\ncheckpoint = {:?}\nfreeze_epochs = 1",
        source.display().to_string()
    );
    run(&spec("temperature", &target, &init), &examples()).unwrap();
    let a = Checkpoint::load(&source.join("best.ckpt")).unwrap();
    let b = Checkpoint::load(&target.join("latest.ckpt")).unwrap();
    // Every layer taken and frozen for the only epoch: the parameters are the source's.
    assert_eq!(a.params, b.params);
    let Fitted::Series(n) = &b.header.fitted else {
        panic!("a forecaster")
    };
    assert_eq!(
        n.targets.len(),
        1,
        "its own normalizer, fitted on its target"
    );
}

/// A fine-tuning run halted in its frozen first epoch and resumed ends with the parameters of
/// the uninterrupted run, bit for bit: the resume takes the weights and vocabulary from its own
/// checkpoint and re-reads the source only to place the frozen and scaled groups.
#[test]
fn a_resumed_fine_tuning_run_ends_where_the_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = write_corpus(dir.path());
    let lm_dir = dir.path().join("lm");
    run(&lm_spec(&corpus, &lm_dir, "word"), dir.path()).unwrap();
    let spec = |ckpt: &Path| {
        let mut s = classify_spec(
            ckpt,
            8,
            &format!(
                "checkpoint = {:?}\nlayers = [\"embedding\", \"lstm0\"]\nfreeze_epochs = 1\nlr_scale = 0.5",
                lm_dir.display().to_string()
            ),
        );
        // 200 training samples: 13 steps per epoch, so the run crosses into the scaled epoch.
        s.data.split = ringtrain_spec::Split {
            train: 0.1,
            val: 0.1,
            test: 0.8,
        };
        s.train.max_steps = Some(20);
        s.train.epochs = 2;
        s
    };
    let whole = dir.path().join("whole");
    run(&spec(&whole), &examples()).unwrap();
    let parts = dir.path().join("parts");
    let mut opts = options(&examples());
    opts.halt_after_steps = Some(7);
    train(&spec(&parts), &opts, &mut Silent).unwrap();
    let mut opts = options(&examples());
    opts.resume = Some(parts.clone());
    train(&spec(&parts), &opts, &mut Silent).unwrap();
    let a = Checkpoint::load(&whole.join("latest.ckpt")).unwrap();
    let b = Checkpoint::load(&parts.join("latest.ckpt")).unwrap();
    assert_eq!(a.header.progress.step, 20);
    assert_eq!(b.header.progress.step, 20);
    assert_eq!(a.params, b.params);
}
