//! Dataset reader target: the first byte picks a spec (series, classify, seq2seq or corpus data
//! in CSV, TSV, JSONL or text form), the rest is the data file, written to a temporary directory
//! and read through `ringtrain_data::load` as a job would read it.

use crate::{Target, class_of};
use ringtrain_spec::{JobSpec, SpecFormat, parse_str};
use std::fmt::Write as _;
use std::path::PathBuf;

/// Fuzzes the dataset readers.
#[derive(Debug)]
pub struct DataTarget {
    dir: tempfile::TempDir,
    /// Each spec with the file name its `data.path` names.
    specs: Vec<(JobSpec, PathBuf)>,
}

const TRAIN: &str =
    "[train]\nepochs = 1\nbatch_size = 2\noptimizer = { kind = \"sgd\", lr = 0.1 }\n";

/// (file name, `[model]`+`[task]`+`[data]` TOML without the path) per data kind and format.
const KINDS: &[(&str, &str)] = &[
    (
        "s.csv",
        "[model]\ncell = \"gru\"\nhidden = 4\n[task]\nkind = \"forecast\"\nhorizon = 1\n[data]\nfeatures = [\"a\", \"b\"]\ntargets = [\"a\"]\nwindow = 4\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "s.tsv",
        "[model]\ncell = \"lstm\"\nhidden = 4\n[task]\nkind = \"forecast\"\nhorizon = 2\nseason = 3\n[data]\nfeatures = [\"a\"]\ntargets = [\"a\"]\nwindow = 3\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "c.csv",
        "[model]\ncell = \"gru\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"classify\"\n[data]\ntokenizer = \"word\"\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "c.tsv",
        "[model]\ncell = \"gru\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"classify\"\n[data]\ntokenizer = \"char\"\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "c.jsonl",
        "[model]\ncell = \"gru\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"classify\"\n[data]\ntokenizer = \"word\"\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "p.tsv",
        "[model]\ncell = \"gru\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"seq2seq\"\n[data]\nsource_column = \"source\"\ntarget_column = \"target\"\ntokenizer = \"char\"\nmax_source_len = 12\nmax_target_len = 12\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "p.jsonl",
        "[model]\ncell = \"gru\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"seq2seq\"\n[data]\nsource_column = \"source\"\ntarget_column = \"target\"\ntokenizer = \"word\"\nsplit = [0.6, 0.2, 0.2]\n",
    ),
    (
        "l.txt",
        "[model]\ncell = \"lstm\"\nhidden = 4\nembedding_dim = 4\n[task]\nkind = \"language_model\"\nbptt = 4\n[data]\ntokenizer = \"char\"\nsplit = [0.8, 0.1, 0.1]\n",
    ),
];

impl DataTarget {
    /// Parses the specs once and makes the temporary directory.
    ///
    /// # Panics
    /// When a built-in spec does not validate (a bug in this file).
    pub fn new() -> DataTarget {
        let dir = tempfile::tempdir().expect("temporary directory");
        let specs = KINDS
            .iter()
            .map(|(file, body)| {
                let body = body.replacen("[data]\n", &format!("[data]\npath = \"{file}\"\n"), 1);
                let text = format!("name = \"fuzz\"\n{body}{TRAIN}");
                let spec = parse_str(&text, SpecFormat::Toml, file, "fuzz")
                    .unwrap_or_else(|e| panic!("fuzz spec for {file} is invalid: {e}"));
                (spec, dir.path().join(file))
            })
            .collect();
        DataTarget { dir, specs }
    }
}

impl Default for DataTarget {
    fn default() -> Self {
        DataTarget::new()
    }
}

/// A generated valid file for `KINDS[kind]`.
fn seed_file(kind: usize) -> String {
    let words = ["good", "bad", "not", "very", "film", "plot", "dull", "fine"];
    let mut s = String::new();
    match kind {
        0 => {
            s.push_str("a,b\n");
            for i in 0..40 {
                let _ = writeln!(s, "{},{}", (i % 7) as f64 * 1.5, i);
            }
        }
        1 => {
            s.push_str("a\tz\n");
            for i in 0..40 {
                let _ = writeln!(s, "{}\tx", (i * 13 % 17) as f64 / 4.0);
            }
        }
        2..=4 => {
            match kind {
                2 => s.push_str("text,label\n"),
                3 => s.push_str("text\tlabel\n"),
                _ => {}
            }
            for i in 0..30 {
                let text = format!(
                    "{} {} {}",
                    words[i % 8],
                    words[(i * 3) % 8],
                    words[(i * 5) % 8]
                );
                let label = if i % 2 == 0 { "pos" } else { "neg" };
                match kind {
                    2 => {
                        let _ = writeln!(s, "\"{text}, really\",{label}");
                    }
                    3 => {
                        let _ = writeln!(s, "{text}\t{label}");
                    }
                    _ => {
                        let _ = writeln!(s, "{{\"text\": \"{text}\\n\", \"label\": \"{label}\"}}");
                    }
                }
            }
        }
        5 | 6 => {
            if kind == 5 {
                s.push_str("source\ttarget\n");
            }
            for i in 0..30u64 {
                let src = format!("{}", i * 7919 % 100_000);
                let tgt: String = src.chars().rev().collect();
                if kind == 5 {
                    let _ = writeln!(s, "{src}\t{tgt}");
                } else {
                    let _ = writeln!(s, "{{\"source\": \"{src} x\", \"target\": \"{tgt} y\"}}");
                }
            }
        }
        _ => {
            for i in 0..30 {
                let _ = writeln!(s, "abc: {} {} = abc", words[i % 8], words[(i * 7) % 8]);
            }
        }
    }
    s
}

impl Target for DataTarget {
    fn name(&self) -> &'static str {
        "data"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        (0..KINDS.len())
            .map(|k| {
                let mut v = vec![k as u8];
                v.extend_from_slice(seed_file(k).as_bytes());
                v
            })
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b",",
            b"\t",
            b"\n",
            b"\r\n",
            b"\"",
            b"\"\"",
            b"{",
            b"}",
            b"[",
            b"]",
            b":",
            b"null",
            b"true",
            b"\\u0000",
            b"\\ud800",
            b"\xef\xbb\xbf",
            b"\0",
            b"\x1b[2J",
            b"NaN",
            b"inf",
            b"-",
            b"e",
            b"label",
            b"text",
            b"source",
            b"target",
            b"{\"text\": ",
            b"\"label\": ",
            b"\xff",
        ]
    }

    fn run(&mut self, input: &[u8]) -> String {
        let Some((&pick, file)) = input.split_first() else {
            return "empty".into();
        };
        let (spec, path) = &self.specs[pick as usize % self.specs.len()];
        if let Err(e) = std::fs::write(path, file) {
            return format!("write failed: {e}");
        }
        match ringtrain_data::load(spec, self.dir.path()) {
            Ok(p) => format!("ok {}", p.len(ringtrain_data::SplitName::Train).min(3)),
            Err(e) => class_of(&e.to_string()),
        }
    }
}
