//! Checkpoint reader target: the bytes as a checkpoint file, read by
//! `ringtrain_train::Checkpoint::load` (magic, lengths, JSON header, checksums, the stored spec's
//! re-validation). Seeds are real checkpoints written by `Checkpoint::save`; the structure-aware
//! mutator edits a header field or the arrays and then repairs the lengths and checksums, so
//! mutants get past the CRC to the parsing and validation behind it.

use crate::{Rng, Target, class_of};
use ringtrain_spec::{SpecFormat, parse_str};
use ringtrain_train::checkpoint::{EarlyStopState, Header, Progress};
use ringtrain_train::optim::{OptimizerKind, OptimizerState};
use ringtrain_train::{Checkpoint, EpochRecord};
use serde_json::Value;
use std::path::PathBuf;

/// Fuzzes the checkpoint reader.
#[derive(Debug)]
pub struct CheckpointTarget {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl CheckpointTarget {
    /// Makes the temporary directory the inputs are written to.
    pub fn new() -> CheckpointTarget {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("latest.ckpt");
        CheckpointTarget { dir, path }
    }

    /// A checkpoint of `spec_text` (fitted on its data) with `n` parameters, as file bytes.
    fn seed(&self, spec_text: &str, n: usize, kind: OptimizerKind) -> Vec<u8> {
        let spec = parse_str(spec_text, SpecFormat::Toml, "seed.toml", "seed").expect("seed spec");
        let fitted = ringtrain_data::load(&spec, self.dir.path())
            .expect("seed data")
            .fitted();
        let params: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 0.3).collect();
        let moments = if kind == OptimizerKind::Sgd {
            vec![]
        } else {
            params.clone()
        };
        let ckpt = Checkpoint {
            header: Header {
                format_version: ringtrain_train::checkpoint::FORMAT_VERSION,
                writer: "fuzz".into(),
                spec,
                fitted,
                progress: Progress {
                    step: 12,
                    epoch: 1,
                    batch_in_epoch: 2,
                    epoch_loss_sum: 1.5,
                    epoch_loss_batches: 2,
                    finished: false,
                },
                early_stop: EarlyStopState {
                    best: Some(0.5),
                    best_epoch: Some(0),
                    bad_epochs: 0,
                },
                history: vec![EpochRecord {
                    epoch: 0,
                    step: 6,
                    train_loss: 0.9,
                    val_loss: Some(0.5),
                    val_metrics: vec![("val_rmse".into(), 0.5)],
                    lr: 0.1,
                }],
                optimizer_kind: kind,
                optimizer_step: 12,
                arrays: vec![],
                crc32: 0,
                run_id: Some("job-1".into()),
            },
            params: params.clone(),
            optimizer: OptimizerState {
                kind,
                step: 12,
                n_params: n,
                momentum_buffer: vec![],
                exp_avg: moments.clone(),
                exp_avg_sq: moments,
            },
            carried: vec![],
        };
        ckpt.save(&self.path).expect("seed checkpoint");
        std::fs::read(&self.path).expect("seed checkpoint bytes")
    }
}

impl Default for CheckpointTarget {
    fn default() -> Self {
        CheckpointTarget::new()
    }
}

/// Splits a format-2 file into its JSON header and arrays (ignoring its lengths' truth only
/// as far as needed), or `None` when it does not look like one.
fn split(input: &[u8]) -> Option<(Value, &[u8])> {
    if input.len() < 20 || &input[..8] != b"RTCKPT02" {
        return None;
    }
    let len = u64::from_le_bytes(input[8..16].try_into().ok()?) as usize;
    let header = input.get(16..16usize.checked_add(len)?)?;
    let arrays = input.get(16 + len..input.len() - 4)?;
    Some((serde_json::from_slice(header).ok()?, arrays))
}

/// Reassembles a format-2 file with a correct header length and trailer (and, when `fix_inner`,
/// a correct header `crc32` over the arrays).
fn assemble(mut header: Value, arrays: &[u8], fix_inner: bool) -> Vec<u8> {
    if let Some(crc) = header.get_mut("crc32").filter(|_| fix_inner) {
        *crc = Value::from(crc32fast::hash(arrays));
    }
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let mut out = b"RTCKPT02".to_vec();
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(arrays);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Replaces a random leaf of `v` with an edge value.
fn edit_leaf(v: &mut Value, rng: &mut Rng) {
    match v {
        Value::Object(m) if !m.is_empty() && rng.below(8) != 0 => {
            let k = m
                .keys()
                .nth(rng.below(m.len()))
                .cloned()
                .unwrap_or_default();
            if let Some(child) = m.get_mut(&k) {
                edit_leaf(child, rng);
            }
        }
        Value::Array(a) if !a.is_empty() && rng.below(8) != 0 => {
            let i = rng.below(a.len());
            edit_leaf(&mut a[i], rng);
        }
        _ => {
            *v = match rng.below(12) {
                0 => Value::Null,
                1 => Value::from(-1),
                2 => Value::from(0),
                3 => Value::from(u64::MAX),
                4 => Value::from(u32::MAX as u64 + 1),
                5 => Value::from(1e300),
                6 => Value::from(""),
                7 => Value::from("\u{1b}[31mx"),
                8 => Value::Array(vec![]),
                9 => Value::from(1_000_000_000u64),
                10 => Value::from(-1e-300),
                _ => Value::from(rng.next_u64() % 100_000),
            };
        }
    }
}

impl Target for CheckpointTarget {
    fn name(&self) -> &'static str {
        "checkpoint"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        let series = "name = \"s\"\n[model]\ncell = \"gru\"\nhidden = 4\n[task]\nkind = \"forecast\"\n\
                      horizon = 1\n[data]\npath = \"builtin:air-passengers\"\nwindow = 12\n\
                      features = [\"passengers\"]\ntargets = [\"passengers\"]\n";
        let text = "name = \"t\"\n[model]\ncell = \"lstm\"\nhidden = 4\nembedding_dim = 4\n[task]\n\
                    kind = \"classify\"\n[data]\npath = \"t.tsv\"\ntokenizer = \"word\"\n\
                    split = [0.6, 0.2, 0.2]\n[train]\noptimizer = { kind = \"sgd\", lr = 0.1 }\n";
        let rows: String = (0..20)
            .map(|i| format!("w{} good x\t{}\n", i % 5, ["a", "b"][i % 2]))
            .collect();
        std::fs::write(
            self.dir.path().join("t.tsv"),
            format!("text\tlabel\n{rows}"),
        )
        .expect("seed data");
        vec![
            self.seed(series, 40, OptimizerKind::Adam),
            self.seed(text, 24, OptimizerKind::Sgd),
        ]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"RTCKPT01",
            b"RTCKPT02",
            b"\"arrays\"",
            b"\"params\"",
            b"\"spec\"",
            b"\"hidden\"",
            b"null",
            b"[]",
            b"{}",
            b",",
            b"-1",
            b"1e999",
        ]
    }

    fn run(&mut self, input: &[u8]) -> String {
        if let Err(e) = std::fs::write(&self.path, input) {
            return format!("write failed: {e}");
        }
        match Checkpoint::load(&self.path) {
            Ok(c) => format!("ok {}", c.params.len().min(3)),
            // The path leads every message: without it the class is the error path.
            Err(e) => class_of(&e.to_string().replace(&*self.path.to_string_lossy(), "FILE")),
        }
    }

    fn mutate(&mut self, input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
        let (mut header, arrays) = split(input)?;
        let mut arrays = arrays.to_vec();
        match rng.below(4) {
            // A header field (spec, fitted state, array list, progress) set to an edge value.
            0 | 1 => {
                for _ in 0..1 + rng.below(3) {
                    edit_leaf(&mut header, rng);
                }
            }
            // An array length in the list changed.
            2 => {
                if let Some(list) = header
                    .get_mut("arrays")
                    .and_then(Value::as_array_mut)
                    .filter(|l| !l.is_empty())
                {
                    let i = rng.below(list.len());
                    if let Some(n) = list[i].get_mut(1) {
                        *n = Value::from(
                            [0u64, 1, 3, u64::MAX / 4, u64::MAX / 2, u64::MAX][rng.below(6)],
                        );
                    }
                }
            }
            // The arrays cut or extended.
            _ => {
                let n = rng.below(arrays.len() + 9);
                arrays.resize(n, 0x3f);
            }
        }
        Some(assemble(header, &arrays, rng.below(4) != 0))
    }
}
