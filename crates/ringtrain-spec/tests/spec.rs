//! Spec parsing through the public API: every invalid fixture produces the errors its
//! `# expect:` lines name; valid fixtures parse to the documented values and defaults.

use ringtrain_spec::*;
use std::path::{Path, PathBuf};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("toml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// Expected substrings: `# expect:` lines of a TOML fixture, or of the `.expect` file beside a
/// JSON fixture (JSON has no comments).
fn expectations(path: &Path) -> Vec<String> {
    let text = if path.extension().unwrap() == "json" {
        std::fs::read_to_string(path.with_extension("expect")).unwrap()
    } else {
        std::fs::read_to_string(path).unwrap()
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_invalid_fixture_fails_with_its_message() {
    let files = fixtures("invalid");
    assert!(files.len() >= 40, "fixtures missing: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let expected = expectations(path);
        assert!(
            !expected.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        match load(path) {
            Ok(spec) => failures.push(format!("{}: parsed OK: {spec:?}", path.display())),
            Err(e) => {
                let msg = e.to_string();
                for want in &expected {
                    if !msg.contains(want.as_str()) {
                        failures.push(format!(
                            "{}:\n  expected to contain: {want}\n  got: {msg}",
                            path.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn toml_and_json_forms_are_the_same_spec() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
    let a = load(&dir.join("full.toml")).unwrap();
    let b = load(&dir.join("full.json")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.name, "full-example");
    assert_eq!(a.model.cell, CellKind::Rnn);
    assert_eq!(a.model.activation, Activation::Relu);
    assert_eq!(a.model.projection, Some(16));
    assert!(matches!(
        a.task,
        TaskSpec::Forecast {
            horizon: 3,
            loss: ForecastLoss::Mae,
            season: Some(12),
            ..
        }
    ));
    assert_eq!(
        a.train.optimizer,
        OptimizerSpec::Sgd {
            lr: 0.05,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-4
        }
    );
    assert_eq!(
        a.train.schedule.kind,
        ScheduleKind::Step {
            step_size: 20,
            gamma: 0.5
        }
    );
    assert_eq!(a.parallel.schedule, PipelineSchedule::OneFOneB);
    assert_eq!(a.parallel.stages, Some(vec![vec![0, 1], vec![2, 3, 4]]));
    assert_eq!(a.parallel.fusion_bytes, 0);
    assert_eq!(layer_count(&a.model, &a.task), 5);
}

#[test]
fn defaults_are_documented_values() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal-classify.toml");
    let s = load(&path).unwrap();
    assert_eq!(s.name, "minimal-classify");
    assert_eq!(s.seed, 42);
    assert_eq!(
        (s.model.layers, s.model.hidden, s.model.embedding_dim),
        (1, 64, 64)
    );
    assert_eq!(s.data.format, DataFormat::Jsonl);
    assert_eq!(
        s.data.split,
        Split {
            train: 0.8,
            val: 0.1,
            test: 0.1
        }
    );
    let TaskSpec::Classify { text: t, .. } = &s.task else {
        panic!("text data expected")
    };
    assert_eq!(
        (t.text_column.as_str(), t.label_column.as_str()),
        ("text", "label")
    );
    assert_eq!(
        (t.tokenizer, t.lowercase, t.min_freq, t.max_vocab, t.max_len),
        (TokenizerKind::Word, true, 1, 20_000, 256)
    );
    assert_eq!(
        s.train.optimizer,
        OptimizerSpec::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0
        }
    );
    assert_eq!(
        (s.train.epochs, s.train.batch_size, s.train.threads),
        (10, 32, 1)
    );
    assert_eq!(s.parallel.fusion_bytes, 64 << 20);
    assert_eq!(s.checkpoint.dir, PathBuf::from("runs/minimal-classify"));
    assert_eq!(layer_count(&s.model, &s.task), 3);
    assert_eq!(s.init_from, None);
}

#[test]
fn init_from_parses_resolves_and_round_trips() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/finetune-classify.toml");
    let mut s = load(&path).unwrap();
    let init = s.init_from.clone().unwrap();
    assert_eq!(
        init,
        InitFrom {
            checkpoint: PathBuf::from("runs/lm"),
            format: InitFormat::Ringtrain,
            layers: Some(vec!["embedding".into(), "lstm0".into()]),
            freeze_epochs: 1,
            lr_scale: 0.5,
        }
    );
    s.resolve_paths(Path::new("/specs"));
    assert_eq!(
        s.init_from.as_ref().unwrap().checkpoint,
        PathBuf::from("/specs/runs/lm")
    );
    // The serialized form (checkpoint headers, cluster jobs) keeps it; a spec without it
    // serializes without the key, as before.
    let json = serde_json::to_string(&s).unwrap();
    let back: JobSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    let plain = load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal-classify.toml"),
    )
    .unwrap();
    assert!(!serde_json::to_string(&plain).unwrap().contains("init_from"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = "[model]\ncell = \"lstm\"\nlayers = 0\nhidden = -3\n[task]\nkind = \"forecast\"\n[data]\npath = \"a.csv\"\nfeatures = [\"x\"]\nwindow = 0\n";
    let err = parse_str(text, SpecFormat::Toml, "<t>", "job").unwrap_err();
    let paths: Vec<&str> = err.field_errors().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["model.layers", "model.hidden", "data.window"]);
}

#[test]
fn validated_spec_round_trips_through_json() {
    // The coordinator stores the validated spec; it must survive serialization unchanged.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.toml");
    let spec = load(&path).unwrap();
    let text = serde_json::to_string(&spec).unwrap();
    let back: JobSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(spec, back);
}

#[test]
fn serialized_spec_keeps_the_file_layout_and_refuses_a_task_with_another_kinds_data() {
    // In memory the task carries its data settings; serialized (checkpoint headers, cluster
    // jobs) they stay under `data.kind`, as before the fold, so older checkpoints load.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/full.toml");
    let spec = load(&path).unwrap();
    let mut v = serde_json::to_value(&spec).unwrap();
    assert_eq!(v["task"]["kind"], "forecast");
    assert_eq!(v["task"]["horizon"], 3);
    assert!(v["task"].get("series").is_none());
    assert!(v["data"]["kind"]["Series"]["window"].is_u64());
    v["task"] = serde_json::json!({"kind": "language_model", "bptt": 8});
    let err = serde_json::from_value::<JobSpec>(v)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("task.kind = \"language_model\" cannot use data.kind = \"Series\""),
        "{err}"
    );
}

#[test]
fn seq2seq_defaults_and_round_trip() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/minimal-seq2seq.toml");
    let s = load(&path).unwrap();
    assert_eq!(s.data.format, DataFormat::Tsv);
    assert_eq!(
        s.task,
        TaskSpec::Seq2seq {
            attention: Seq2seqAttention::Bahdanau,
            teacher_forcing: 1.0,
            beam_width: 1,
            length_penalty: 0.0,
            pairs: PairSpec {
                source_column: "source".into(),
                target_column: "target".into(),
                tokenizer: TokenizerKind::Word,
                lowercase: true,
                min_freq: 1,
                max_vocab: 20_000,
                max_source_len: 100,
                max_target_len: 100,
            },
        }
    );
    // embedding, one recurrent layer, the decoder
    assert_eq!(layer_count(&s.model, &s.task), 3);
    let text = serde_json::to_string(&s).unwrap();
    let back: JobSpec = serde_json::from_str(&text).unwrap();
    assert_eq!(s, back);
    let luong = parse_str(
        "[model]\ncell = \"gru\"\n[task]\nkind = \"seq2seq\"\nattention = \"luong_dot\"\n\
         teacher_forcing = 0.25\nbeam_width = 5\nlength_penalty = 0.7\n\
         [data]\npath = \"p.jsonl\"\nsource_column = \"en\"\ntarget_column = \"es\"\n\
         tokenizer = \"char\"\nmax_source_len = 7\nmax_target_len = 9\n\
         [train]\nearly_stopping = { metric = \"val_bleu\" }",
        SpecFormat::Toml,
        "<t>",
        "t",
    )
    .unwrap();
    assert!(matches!(
        luong.task,
        TaskSpec::Seq2seq {
            attention: Seq2seqAttention::LuongDot,
            beam_width: 5,
            ..
        }
    ));
    let TaskSpec::Seq2seq { pairs: p, .. } = &luong.task else {
        panic!("pairs expected")
    };
    assert_eq!((p.max_source_len, p.max_target_len), (7, 9));
    assert!(MonitorMetric::ValBleu.higher_is_better());
}

#[test]
fn language_model_spec_reads_a_text_corpus_with_its_defaults() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid/language_model.toml");
    let spec = load(&path).unwrap();
    assert_eq!(
        spec.task,
        TaskSpec::LanguageModel {
            bptt: 24,
            corpus: CorpusSpec {
                tokenizer: TokenizerKind::Word,
                lowercase: false,
                min_freq: 2,
                max_vocab: 50_000,
            },
        }
    );
    assert_eq!(spec.data.format, DataFormat::Text);
    // embedding, two recurrent layers, head
    assert_eq!(layer_count(&spec.model, &spec.task), 4);
    let back: JobSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(spec, back);
    // bptt defaults to 64 and the tokenizer to char.
    let text =
        "[model]\ncell = \"gru\"\n[task]\nkind = \"language_model\"\n[data]\npath = \"c.txt\"\n";
    let spec = parse_str(text, SpecFormat::Toml, "<t>", "job").unwrap();
    assert!(matches!(
        &spec.task,
        TaskSpec::LanguageModel { bptt: 64, corpus } if corpus.tokenizer == TokenizerKind::Char
    ));
}

#[test]
fn every_example_spec_fits_the_default_budget() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // `sweep-*.toml` are sweep specs, checked by ringtrain-sweep's tests (their base job
        // specs are examples here too).
        let sweep = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("sweep-"));
        if path.extension().and_then(|e| e.to_str()) != Some("toml") || sweep {
            continue;
        }
        let spec = load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let est = estimate(&spec);
        assert!(
            est.parameters > 0.0 && est.memory_bytes < spec.limits.max_memory_bytes as f64,
            "{}: {est:?}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 5, "examples missing: {n}");
}

#[test]
fn a_spec_file_that_is_not_a_regular_file_or_too_large_is_refused_before_reading() {
    let e = load(Path::new("/dev/zero")).unwrap_err().to_string();
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    let dir = std::env::temp_dir().join(format!("rt-spec-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 2 << 20]).unwrap();
    let e = load(&big).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        e.contains("big.toml") && e.contains("at most 1048576 bytes"),
        "{e}"
    );
}

#[test]
fn check_validated_accepts_validated_specs_and_refuses_crafted_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let spec = load(&dir.join("seasonal-cnn-gru-attention.toml")).unwrap();
    check_validated(&spec, &spec.limits).unwrap();
    // (mutation, expected substring)
    type Mutation = fn(&mut JobSpec);
    let cases: &[(Mutation, &str)] = &[
        (
            |s| s.model.hidden = 1_000_000_000,
            "model.hidden = 1000000000",
        ),
        (|s| s.model.layers = 0, "model.layers = 0"),
        (|s| s.model.conv[0].kernel = 1 << 20, "model.conv[0].kernel"),
        (|s| s.model.conv[0].stride = 0, "model.conv[0].stride = 0"),
        (|s| s.train.batch_size = 0, "train.batch_size = 0"),
        (|s| s.name = "x".repeat(500), "name"),
        (|s| s.name = "../x".into(), "name"),
        (|s| s.checkpoint.dir = "/".into(), "checkpoint.dir"),
        (|s| s.parallel.data = 0, "parallel.data = 0"),
        (|s| s.limits.max_parameters = 1, "limits.max_parameters"),
        (
            |s| {
                if let Some(a) = s.model.attention.as_mut() {
                    a.heads = 7
                }
            },
            "model.attention.heads",
        ),
        (
            |s| {
                if let TaskSpec::Forecast { series: d, .. } = &mut s.task {
                    d.window = 0
                }
            },
            "data.window = 0",
        ),
    ];
    for (mutate, want) in cases {
        let mut s = spec.clone();
        mutate(&mut s);
        let e = check_validated(&s, &s.limits).unwrap_err().to_string();
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn elastic_bounds_default_from_parallel_data_and_pick_worlds_dividing_the_batch() {
    let base = "[model]\ncell = \"gru\"\n[task]\nkind = \"forecast\"\n[data]\npath = \"s.csv\"\nfeatures = [\"a\"]\nwindow = 4\n[train]\nbatch_size = 12\n";
    let spec = parse_str(
        &format!("{base}[parallel]\ndata = 4\nelastic = {{ min = 2 }}\n"),
        SpecFormat::Toml,
        "<test>",
        "e",
    )
    .unwrap();
    let e = spec.parallel.elastic.unwrap();
    assert_eq!((e.min, e.max, e.commit_every), (2, 4, 10));
    assert_eq!(e.world_for(12, 5), Some(4));
    assert_eq!(e.world_for(12, 1), None);
    // 12 workers, but at most 4: and 4 divides 12.
    assert_eq!(e.world_for(12, 12), Some(4));
    assert!(e.allows(12, 3) && !e.allows(12, 1) && !e.allows(12, 5));
    // Without parallel.data the job asks for `max` workers.
    let spec = parse_str(
        &format!("{base}[parallel.elastic]\nmin = 1\nmax = 3\ncommit_every = 5\n"),
        SpecFormat::Toml,
        "<test>",
        "e",
    )
    .unwrap();
    assert_eq!(spec.parallel.data, 3);
    assert_eq!(spec.parallel.elastic.unwrap().commit_every, 5);
    // It survives the JSON form checkpoints store, and check_validated accepts it.
    let back: JobSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    check_validated(&back, &back.limits).unwrap();
}
