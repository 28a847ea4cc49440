//! `[data]`, including the split fractions.

use super::{Checker, Kind};
use crate::raw::*;
use crate::types::*;

use std::path::PathBuf;

const FORMATS: &[(&str, DataFormat)] = &[
    ("csv", DataFormat::Csv),
    ("tsv", DataFormat::Tsv),
    ("jsonl", DataFormat::Jsonl),
    ("text", DataFormat::Text),
];
const NORMS: &[(&str, Normalization)] = &[
    ("none", Normalization::None),
    ("zscore", Normalization::Zscore),
    ("minmax", Normalization::Minmax),
];
const FORECAST_MODES: &[(&str, ForecastMode)] = &[
    ("level", ForecastMode::Level),
    ("delta", ForecastMode::Delta),
    ("seasonal_delta", ForecastMode::SeasonalDelta),
];
const TOKENIZERS: &[(&str, TokenizerKind)] =
    &[("char", TokenizerKind::Char), ("word", TokenizerKind::Word)];

fn split(c: &mut Checker, s: Option<&RawSplit>) -> Split {
    let (train, val, test) = match s {
        None => (0.8, 0.1, 0.1),
        Some(RawSplit::List(v)) if v.len() == 3 => (v[0], v[1], v[2]),
        Some(RawSplit::List(v)) => {
            c.err(
                "data.split",
                format!("{v:?}"),
                "must be [train, val, test] (three fractions)",
            );
            (0.8, 0.1, 0.1)
        }
        Some(RawSplit::Table { train, val, test }) => (*train, *val, *test),
    };
    let mut ok = true;
    for (name, x) in [("train", train), ("val", val), ("test", test)] {
        let bad = !x.is_finite() || !(0.0..=1.0).contains(&x) || (name == "train" && x == 0.0);
        if bad {
            let allowed = if name == "train" {
                "in (0, 1]"
            } else {
                "in [0, 1]"
            };
            c.err(
                &format!("data.split.{name}"),
                x,
                format!("must be {allowed}"),
            );
            ok = false;
        }
    }
    if ok && ((train + val + test) - 1.0).abs() > 1e-6 {
        c.err(
            "data.split",
            format!("[{train}, {val}, {test}]"),
            format!(
                "fractions must sum to 1 (they sum to {})",
                train + val + test
            ),
        );
    }
    Split { train, val, test }
}

pub(super) fn data(c: &mut Checker, d: Option<&RawData>, kind: Option<Kind>) -> Option<DataSpec> {
    let default = RawData::default();
    let d = match d {
        Some(d) => d,
        None => {
            c.err(
                "data",
                "(missing)",
                "required section: [data] with at least `path`",
            );
            &default
        }
    };
    let path = d.path.clone().unwrap_or_default();
    if d.path.is_some() && path.is_empty() {
        c.err("data.path", "\"\"", "must be a non-empty path");
    } else if d.path.is_none() && !c.errors.iter().any(|e| e.path == "data") {
        c.err(
            "data.path",
            "(missing)",
            "required: a file path or builtin:air-passengers | builtin:vic-elec",
        );
    }
    let inferred = if path.starts_with("builtin:") {
        Some(DataFormat::Csv)
    } else {
        match std::path::Path::new(&path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Some(DataFormat::Csv),
            Some("tsv") | Some("tab") => Some(DataFormat::Tsv),
            Some("jsonl") | Some("ndjson") => Some(DataFormat::Jsonl),
            Some("txt") | Some("text") => Some(DataFormat::Text),
            _ => None,
        }
    };
    let format = match (d.format.as_deref(), inferred) {
        (Some(_), _) => c.choice("data.format", d.format.as_deref(), DataFormat::Csv, FORMATS),
        (None, Some(f)) => f,
        (None, None) => {
            if !path.is_empty() {
                c.err(
                    "data.format",
                    "(missing)",
                    format!(
                        "cannot infer the format of {path:?} from its extension: set csv, tsv, jsonl or text"
                    ),
                );
            }
            DataFormat::Csv
        }
    };
    let split = split(c, d.split.as_ref());
    let kind = kind?;
    let lm = kind == Kind::LanguageModel;
    if lm && format != DataFormat::Text && !path.starts_with("builtin:") {
        let name = format!("{format:?}").to_lowercase();
        c.err(
            "data.format",
            format!("\"{name}\""),
            "a language model reads a plain text corpus: use format = \"text\" (or a .txt file)",
        );
    } else if !lm && format == DataFormat::Text {
        c.err(
            "data.format",
            "\"text\"",
            "plain text is a language model corpus (task.kind = \"language_model\"); use csv, tsv or jsonl",
        );
    }
    if kind != Kind::Seq2seq {
        let why = "only for task.kind = \"seq2seq\"";
        c.forbid("data.source_column", &d.source_column, why);
        c.forbid("data.target_column", &d.target_column, why);
        c.forbid("data.max_source_len", &d.max_source_len, why);
        c.forbid("data.max_target_len", &d.max_target_len, why);
    }
    Some(DataSpec {
        path: PathBuf::from(path),
        format,
        split,
    })
}

/// `[data]` settings of a forecast's numeric series: `data.features`, `data.targets`, the window
/// and its scaling (the other kinds' keys refused).
pub(super) fn series(c: &mut Checker, d: &RawData) -> SeriesSpec {
    let why = "only for task.kind = \"classify\"";
    c.forbid("data.text_column", &d.text_column, why);
    c.forbid("data.label_column", &d.label_column, why);
    c.forbid("data.tokenizer", &d.tokenizer, why);
    c.forbid("data.lowercase", &d.lowercase, why);
    c.forbid("data.min_freq", &d.min_freq, why);
    c.forbid("data.max_vocab", &d.max_vocab, why);
    c.forbid("data.max_len", &d.max_len, why);
    c.forbid("data.labels", &d.labels, why);
    let features = c
        .required("data.features", &d.features, "the input column names")
        .cloned()
        .unwrap_or_default();
    if d.features.is_some() && features.is_empty() {
        c.err("data.features", "[]", "must name at least one column");
    }
    let targets = d.targets.clone().unwrap_or_else(|| features.clone());
    if d.targets.as_ref().is_some_and(|t| t.is_empty()) {
        c.err("data.targets", "[]", "must name at least one column");
    }
    for (field, cols) in [("data.features", &features), ("data.targets", &targets)] {
        let mut seen = std::collections::BTreeSet::new();
        for col in cols {
            if !seen.insert(col) {
                c.err(field, format!("{col:?}"), "column listed twice");
            }
        }
    }
    // Records the error when absent; the range check below reads the value itself.
    c.required("data.window", &d.window, "input window length in steps");
    let forecast_mode = c.choice(
        "data.forecast_mode",
        d.forecast_mode.as_deref(),
        ForecastMode::Level,
        FORECAST_MODES,
    );
    SeriesSpec {
        features,
        targets,
        window: c.int("data.window", d.window, 1, 1, 1_000_000),
        stride: c.int("data.stride", d.stride, 1, 1, 1_000_000),
        normalize: c.choice(
            "data.normalize",
            d.normalize.as_deref(),
            Normalization::Zscore,
            NORMS,
        ),
        forecast_mode,
        scale_targets: d
            .scale_targets
            .unwrap_or(forecast_mode != ForecastMode::Level),
    }
}

/// `[data]` settings of a classifier's labelled text: its columns, tokenizer and vocabulary (the
/// other kinds' keys refused).
pub(super) fn text(c: &mut Checker, d: &RawData) -> TextSpec {
    let path = d.path.clone().unwrap_or_default();
    let why = "only for task.kind = \"forecast\"";
    c.forbid("data.features", &d.features, why);
    c.forbid("data.targets", &d.targets, why);
    c.forbid("data.window", &d.window, why);
    c.forbid("data.stride", &d.stride, why);
    c.forbid("data.normalize", &d.normalize, why);
    c.forbid("data.forecast_mode", &d.forecast_mode, why);
    c.forbid("data.scale_targets", &d.scale_targets, why);
    if path.starts_with("builtin:") {
        c.err(
            "data.path",
            format!("{path:?}"),
            "builtin datasets are numeric series (forecast only)",
        );
    }
    if let Some(labels) = &d.labels {
        let mut seen = std::collections::BTreeSet::new();
        if labels.len() < 2 {
            c.err(
                "data.labels",
                format!("{labels:?}"),
                "needs at least 2 classes",
            );
        }
        for l in labels {
            if !seen.insert(l) {
                c.err("data.labels", format!("{l:?}"), "label listed twice");
            }
        }
    }
    TextSpec {
        text_column: d.text_column.clone().unwrap_or_else(|| "text".into()),
        label_column: d.label_column.clone().unwrap_or_else(|| "label".into()),
        tokenizer: c.choice(
            "data.tokenizer",
            d.tokenizer.as_deref(),
            TokenizerKind::Word,
            TOKENIZERS,
        ),
        lowercase: d.lowercase.unwrap_or(true),
        min_freq: c.int("data.min_freq", d.min_freq, 1, 1, i64::MAX),
        max_vocab: c.int("data.max_vocab", d.max_vocab, 20_000, 3, 10_000_000),
        max_len: c.int("data.max_len", d.max_len, 256, 1, 1_000_000),
        labels: d.labels.clone(),
    }
}

/// `[data]` settings of a seq2seq task's text pairs: source and target columns, tokenizer and
/// lengths (the other kinds' keys refused).
pub(super) fn pairs(c: &mut Checker, d: &RawData) -> PairSpec {
    let path = d.path.clone().unwrap_or_default();
    let why = "only for task.kind = \"forecast\"";
    c.forbid("data.features", &d.features, why);
    c.forbid("data.targets", &d.targets, why);
    c.forbid("data.window", &d.window, why);
    c.forbid("data.stride", &d.stride, why);
    c.forbid("data.normalize", &d.normalize, why);
    c.forbid("data.forecast_mode", &d.forecast_mode, why);
    c.forbid("data.scale_targets", &d.scale_targets, why);
    let why = "only for task.kind = \"classify\"";
    c.forbid("data.text_column", &d.text_column, why);
    c.forbid("data.label_column", &d.label_column, why);
    c.forbid("data.labels", &d.labels, why);
    c.forbid(
        "data.max_len",
        &d.max_len,
        "seq2seq uses data.max_source_len and data.max_target_len",
    );
    if path.starts_with("builtin:") {
        c.err(
                "data.path",
                format!("{path:?}"),
                "builtin datasets are numeric series (forecast only); seq2seq reads a file of text pairs",
            );
    }
    let source_column = d.source_column.clone().unwrap_or_else(|| "source".into());
    let target_column = d.target_column.clone().unwrap_or_else(|| "target".into());
    if source_column.is_empty() {
        c.err("data.source_column", "\"\"", "must name a column");
    }
    if target_column.is_empty() {
        c.err("data.target_column", "\"\"", "must name a column");
    } else if target_column == source_column {
        c.err(
            "data.target_column",
            format!("{target_column:?}"),
            "must differ from data.source_column",
        );
    }
    PairSpec {
        source_column,
        target_column,
        tokenizer: c.choice(
            "data.tokenizer",
            d.tokenizer.as_deref(),
            TokenizerKind::Word,
            TOKENIZERS,
        ),
        lowercase: d.lowercase.unwrap_or(true),
        min_freq: c.int("data.min_freq", d.min_freq, 1, 1, i64::MAX),
        max_vocab: c.int("data.max_vocab", d.max_vocab, 20_000, 5, 10_000_000),
        max_source_len: c.int("data.max_source_len", d.max_source_len, 100, 1, 100_000),
        max_target_len: c.int("data.max_target_len", d.max_target_len, 100, 1, 100_000),
    }
}

/// `[data]` settings of a language model's text corpus: tokenizer and vocabulary (the other
/// kinds' keys refused).
pub(super) fn corpus(c: &mut Checker, d: &RawData) -> CorpusSpec {
    let path = d.path.clone().unwrap_or_default();
    let why = "not used by task.kind = \"language_model\"";
    for (key, set) in [
        ("data.features", d.features.is_some()),
        ("data.targets", d.targets.is_some()),
        ("data.window", d.window.is_some()),
        ("data.stride", d.stride.is_some()),
        ("data.normalize", d.normalize.is_some()),
        ("data.forecast_mode", d.forecast_mode.is_some()),
        ("data.scale_targets", d.scale_targets.is_some()),
        ("data.text_column", d.text_column.is_some()),
        ("data.label_column", d.label_column.is_some()),
        ("data.max_len", d.max_len.is_some()),
        ("data.labels", d.labels.is_some()),
    ] {
        if set {
            c.err(key, "(set)", format!("not allowed: {why}"));
        }
    }
    if path.starts_with("builtin:") {
        c.err(
            "data.path",
            format!("{path:?}"),
            "builtin datasets are numeric series (forecast only)",
        );
    }
    CorpusSpec {
        tokenizer: c.choice(
            "data.tokenizer",
            d.tokenizer.as_deref(),
            TokenizerKind::Char,
            TOKENIZERS,
        ),
        lowercase: d.lowercase.unwrap_or(false),
        min_freq: c.int("data.min_freq", d.min_freq, 1, 1, i64::MAX),
        max_vocab: c.int("data.max_vocab", d.max_vocab, 50_000, 3, 10_000_000),
    }
}
