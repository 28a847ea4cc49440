//! Spec parser target: the bytes as TOML and as JSON through `ringtrain_spec::parse_str`
//! (deserialization and validation, budget included).

use crate::{Rng, Target, class_of};
use ringtrain_spec::{SpecFormat, parse_str};

/// The spec texts of `examples/` plus a JSON one: every section and most keys appear.
pub(crate) const SEEDS: &[&str] = &[
    include_str!("../../../../examples/seasonal-gru.toml"),
    include_str!("../../../../examples/sentiment-bilstm.toml"),
    include_str!("../../../../examples/reverse-digits-seq2seq.toml"),
    include_str!("../../../../examples/tiny-corpus-lm.toml"),
    include_str!("../../../../examples/seasonal-cnn-gru-attention.toml"),
    r#"{"name": "j", "model": {"cell": "lstm", "hidden": 8, "layers": 2},
        "task": {"kind": "forecast", "horizon": 2},
        "data": {"path": "builtin:air-passengers", "window": 12,
                 "features": ["passengers", "month"], "targets": ["passengers"]},
        "train": {"epochs": 1, "batch_size": 4, "optimizer": {"kind": "sgd", "lr": 0.1}},
        "limits": {"max_parameters": 1000000}}"#,
];

/// Fuzzes the spec parser.
#[derive(Debug)]
pub struct SpecTarget;

impl Target for SpecTarget {
    fn name(&self) -> &'static str {
        "spec"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"[model]",
            b"[task]",
            b"[data]",
            b"[train]",
            b"[checkpoint]",
            b"[limits]",
            b"[[model.layers]]",
            b"hidden = ",
            b"layers = ",
            b"bidirectional = true",
            b"cell = \"gru\"",
            b"kind = ",
            b"\"conv\"",
            b"channels = ",
            b"kernel = ",
            b"window = ",
            b"batch_size = ",
            b"vocab_size = ",
            b"max_parameters = ",
            b"max_memory_bytes = ",
            b"bptt = ",
            b"split = [",
            b"]",
            b"{",
            b"}",
            b"=",
            b"\"",
            b"'",
            b"\\u0000",
            b"\n",
            b",",
            b":",
            b"null",
            b"true",
            b"[]",
            b"{}",
            b"\"\"\"",
            b"path = \"../../etc/passwd\"",
            b"dir = \"/\"",
            b"name = \"\\u001b[31m\"",
        ]
    }

    fn run(&mut self, input: &[u8]) -> String {
        let text = String::from_utf8_lossy(input);
        let toml = parse_str(&text, SpecFormat::Toml, "fuzz.toml", "fuzz");
        let json = parse_str(&text, SpecFormat::Json, "fuzz.json", "fuzz");
        // Both formats run on every input; the class is the first that accepts, else both errors.
        match (toml, json) {
            (Ok(_), _) => "ok toml".into(),
            (_, Ok(_)) => "ok json".into(),
            (Err(a), Err(b)) => format!(
                "{} | {}",
                class_of(&a.to_string()),
                class_of(&b.to_string())
            ),
        }
    }

    fn mutate(&mut self, input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
        // Edge numbers in place of real ones reach the range and budget checks with an
        // otherwise valid spec more often than byte flips do.
        let mut out = input.to_vec();
        for _ in 0..1 + rng.below(3) {
            crate::mutate::replace_number(&mut out, rng);
        }
        Some(out)
    }
}
