//! Checkpoints: everything needed to resume a run bit-exactly or to evaluate and predict later —
//! the spec, fitted normalization or vocabulary, flat parameters, optimizer state, schedule and
//! data position, early-stopping state and the metric history.
//!
//! One file per checkpoint (`latest.ckpt`, `best.ckpt`). Format 2 (magic `RTCKPT02`): the
//! magic, a little-endian u64 header length, a JSON header, the f32 arrays the header lists
//! (little-endian), then a CRC-32 of every byte before it — so an edited header (a normalizer
//! changed by hand) is detected like truncation and bit rot. Format 1 (`RTCKPT01`, no trailer;
//! its header's `crc32` covers the arrays only) still loads. Every length is checked against the
//! file before it is used, and the spec inside is re-validated (ranges and budget) before
//! anything is sized by it.
//!
//! Files are written to a temporary name, synced and renamed over the old one, and the directory
//! is synced after the rename: a crash leaves either the old or the new checkpoint, never a torn
//! one. Before `latest.ckpt` is replaced, a copy that still verifies becomes `previous.ckpt`, and
//! [`Checkpoint::load_latest`] falls back to it (with a warning naming both files) when the
//! latest fails its check.

use crate::optim::{OptimizerKind, OptimizerState};
use ringtrain_data::Fitted;
use ringtrain_spec::{JobSpec, LimitsSpec};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Magic of format 1: CRC over the arrays only, in the header.
const MAGIC_V1: &[u8; 8] = b"RTCKPT01";
/// Magic of format 2: a trailing CRC over the whole file.
const MAGIC: &[u8; 8] = b"RTCKPT02";
/// Newest version of the header layout; bumped on incompatible changes. Format 1 files carry 1;
/// format 2 files carry 2, or 3 when their meaning needs a reader that knows target scaling
/// (a series normalizer with residual scales): a reader from before scaling refuses those
/// instead of ignoring the scales and forecasting in the wrong units. Everything else is still
/// written as 2, so older readers keep reading it.
pub const FORMAT_VERSION: u32 = 3;
/// Header version of format 2 files that need nothing newer.
const FORMAT_VERSION_PLAIN: u32 = 2;
/// Largest JSON header read (it holds the spec, the fitted vocabulary and the history; the
/// arrays are outside it).
pub const MAX_HEADER_BYTES: u64 = 256 << 20;
/// File name of the last checkpoint that verified before `latest.ckpt` was replaced.
pub const PREVIOUS: &str = "previous.ckpt";
/// File name of the checkpoint written every `checkpoint.every_steps`, per epoch and at the end.
pub const LATEST: &str = "latest.ckpt";
/// Name of the optional array holding a language model's carried recurrent state.
const CARRIED: &str = "carried_state";
/// File name of the checkpoint with the best monitored validation metric.
pub const BEST: &str = "best.ckpt";

/// Why a checkpoint could not be written or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File system error.
    #[error("checkpoint {path}: {error}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// Not a checkpoint, truncated, or its contents fail the checksum.
    #[error("checkpoint {path} is corrupt: {reason}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The checkpoint was written for another model, task or dataset than the spec describes.
    #[error(
        "checkpoint {path} does not match the spec: {field} is {in_checkpoint} in the checkpoint \
         but {in_spec} in the spec"
    )]
    Mismatch {
        /// File involved.
        path: PathBuf,
        /// Spec field path that differs.
        field: String,
        /// Value recorded in the checkpoint.
        in_checkpoint: String,
        /// Value in the spec.
        in_spec: String,
    },
    /// The spec stored in the checkpoint fails validation (a crafted or foreign file).
    #[error("checkpoint {path} holds a spec that fails validation: {source}")]
    InvalidSpec {
        /// File involved.
        path: PathBuf,
        /// The validation errors.
        #[source]
        source: ringtrain_spec::SpecError,
    },
    /// No checkpoint file in the directory.
    #[error(
        "no checkpoint in {dir}: expected {LATEST} or {BEST} (train with checkpoint.dir = {dir:?} first)"
    )]
    Missing {
        /// Directory searched.
        dir: PathBuf,
    },
}

/// Where a run stands: enough to continue exactly where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps taken.
    pub step: u64,
    /// Current epoch (0-based).
    pub epoch: u32,
    /// Batches of `epoch` already trained.
    pub batch_in_epoch: usize,
    /// Sum and count of the current epoch's batch losses (for the epoch's mean train loss).
    pub epoch_loss_sum: f64,
    /// Batches counted in `epoch_loss_sum`.
    pub epoch_loss_batches: u64,
    /// The run has ended (completed, max steps or early stopping).
    pub finished: bool,
}

/// Early-stopping bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopState {
    /// Best monitored value so far.
    pub best: Option<f64>,
    /// Epoch (0-based) that produced it.
    pub best_epoch: Option<u32>,
    /// Evaluations since the last improvement.
    pub bad_epochs: u32,
}

/// One epoch's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch (0-based).
    pub epoch: u32,
    /// Optimizer steps taken at the end of the epoch.
    pub step: u64,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f64,
    /// Validation loss, when there is a validation split.
    pub val_loss: Option<f64>,
    /// The monitored/primary validation metrics by name (`val_accuracy`, `val_rmse`, …).
    pub val_metrics: Vec<(String, f64)>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
}

/// Header of a checkpoint file (everything but the large arrays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// ringtrain version that wrote it.
    pub writer: String,
    /// The job's validated spec.
    pub spec: JobSpec,
    /// Normalization or vocabulary fitted on the training split.
    pub fitted: Fitted,
    /// Position of the run.
    pub progress: Progress,
    /// Early-stopping state.
    pub early_stop: EarlyStopState,
    /// Epoch summaries so far.
    pub history: Vec<EpochRecord>,
    /// Optimizer kind and step count (its buffers are arrays).
    pub optimizer_kind: OptimizerKind,
    /// Optimizer steps taken (bias correction uses it).
    pub optimizer_step: u64,
    /// Arrays following the header, in order: name and element count.
    pub arrays: Vec<(String, usize)>,
    /// CRC-32 of all array bytes.
    pub crc32: u32,
    /// The run that wrote it ([`crate::TrainOptions::run_id`]; a cluster job's id), so a
    /// restarted attempt resumes only from its own job's checkpoint. Absent for runs without an
    /// id and in checkpoints written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Everything but the arrays (its `arrays` and `crc32` are filled in by [`Checkpoint::save`]).
    pub header: Header,
    /// Flat parameters in the model's visit order.
    pub params: Vec<f32>,
    /// Optimizer state.
    pub optimizer: OptimizerState,
    /// A language model's recurrent state when the checkpoint was written mid-epoch (truncated
    /// BPTT carries it from chunk to chunk): every data-parallel rank's streams, rank-major,
    /// each rank's part in [`ringtrain_models::RecurrentState::to_flat`] layout; empty when
    /// there is none (other tasks, epoch boundaries, checkpoints written before it existed).
    pub carried: Vec<f32>,
}

impl Checkpoint {
    /// The checkpoint as the bytes of its file: magic, header length, JSON header, arrays and
    /// the CRC-32 trailer over all of them. [`Checkpoint::from_bytes`] reads them back with every
    /// check a file gets (an elastic job's in-memory commit travels in this form).
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming `path` when the header cannot be serialized.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, CheckpointError> {
        let mut arrays: Vec<(&str, &[f32])> = vec![
            ("params", &self.params),
            ("momentum_buffer", &self.optimizer.momentum_buffer),
            ("exp_avg", &self.optimizer.exp_avg),
            ("exp_avg_sq", &self.optimizer.exp_avg_sq),
        ];
        if !self.carried.is_empty() {
            arrays.push((CARRIED, &self.carried));
        }
        let mut payload = Vec::with_capacity(arrays.iter().map(|(_, a)| a.len() * 4).sum());
        for (_, a) in &arrays {
            for x in *a {
                payload.extend_from_slice(&x.to_le_bytes());
            }
        }
        let mut header = self.header.clone();
        header.arrays = arrays
            .iter()
            .map(|(n, a)| (n.to_string(), a.len()))
            .collect();
        header.crc32 = crc32fast::hash(&payload);
        header.optimizer_kind = self.optimizer.kind;
        header.optimizer_step = self.optimizer.step;
        header.format_version = if header.fitted.scales_targets() {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_PLAIN
        };
        let json = serde_json::to_vec(&header).map_err(|e| CheckpointError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e),
        })?;
        let mut bytes = Vec::with_capacity(16 + json.len() + payload.len() + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(&payload);
        let trailer = crc32fast::hash(&bytes).to_le_bytes();
        bytes.extend_from_slice(&trailer);
        Ok(bytes)
    }

    /// Writes the checkpoint to `path` atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let bytes = self.to_bytes(path)?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            // Keep the last good latest: a copy that verifies becomes previous.ckpt (a corrupt
            // one is not kept, so previous.ckpt stays the last one that was good).
            if path.file_name() == Some(std::ffi::OsStr::new(LATEST))
                && Checkpoint::load(path).is_ok()
            {
                std::fs::rename(path, dir.join(PREVIOUS))?;
            }
            std::fs::rename(&tmp, path)?;
            sync_dir(dir)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    /// Loads `dir`'s [`LATEST`]; when that file fails its check (corrupt, invalid spec) and
    /// [`PREVIOUS`] loads, uses that instead with a warning naming both files. Returns the
    /// checkpoint and the path it came from. Specs are checked as by [`Checkpoint::load_within`].
    ///
    /// # Errors
    /// The latest file's error when neither loads.
    pub fn load_latest(
        dir: &Path,
        ceiling: &LimitsSpec,
    ) -> Result<(Checkpoint, PathBuf), CheckpointError> {
        let latest = dir.join(LATEST);
        match Checkpoint::load_within(&latest, ceiling) {
            Ok(c) => Ok((c, latest)),
            Err(e @ (CheckpointError::Corrupt { .. } | CheckpointError::InvalidSpec { .. })) => {
                let previous = dir.join(PREVIOUS);
                match Checkpoint::load_within(&previous, ceiling) {
                    Ok(c) => {
                        tracing::warn!(
                            latest = %latest.display(),
                            previous = %previous.display(),
                            error = %e,
                            "{} fails its check; using {} instead",
                            latest.display(),
                            previous.display()
                        );
                        Ok((c, previous))
                    }
                    Err(_) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `dir`'s [`LATEST`] checkpoint when the run `run_id` wrote it; `None` when there is no
    /// such file or another run wrote it. Reads only the header.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when the file exists but cannot be read;
    /// [`CheckpointError::Corrupt`] when its header cannot be parsed.
    pub fn latest_of_run(dir: &Path, run_id: &str) -> Result<Option<PathBuf>, CheckpointError> {
        let path = dir.join(LATEST);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CheckpointError::Io {
                    path,
                    error: source,
                });
            }
        };
        // A latest that fails its check does not end the job: the previous good one of the
        // same run is used (with a warning), so restarts do not retry a corrupt file forever.
        let checked = read_header(&mut file, &path).and_then(|h| {
            Checkpoint::load(&path)?;
            Ok(h)
        });
        match checked {
            Ok(header) => Ok((header.run_id.as_deref() == Some(run_id)).then_some(path)),
            Err(e @ (CheckpointError::Corrupt { .. } | CheckpointError::InvalidSpec { .. })) => {
                let previous = dir.join(PREVIOUS);
                match Checkpoint::load(&previous) {
                    Ok(c) if c.header.run_id.as_deref() == Some(run_id) => {
                        tracing::warn!(
                            latest = %path.display(),
                            previous = %previous.display(),
                            error = %e,
                            "{} fails its check; resuming from {} instead",
                            path.display(),
                            previous.display()
                        );
                        Ok(Some(previous))
                    }
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Reads and verifies a checkpoint file.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] when unreadable; [`CheckpointError::Corrupt`] when the magic,
    /// lengths, header or checksum are wrong.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::load_unchecked_spec(path).and_then(|c| {
            c.check_spec(path, &c.header.spec.limits)?;
            Ok(c)
        })
    }

    /// As [`Checkpoint::load`], with the stored spec's budget checked against the lower of its
    /// own `[limits]` and `ceiling` (a resumed run passes its submitted spec's limits, so a
    /// checkpoint cannot raise them).
    ///
    /// # Errors
    /// As [`Checkpoint::load`].
    pub fn load_within(path: &Path, ceiling: &LimitsSpec) -> Result<Checkpoint, CheckpointError> {
        let c = Checkpoint::load_unchecked_spec(path)?;
        c.check_spec(path, &c.header.spec.limits.capped_by(ceiling))?;
        Ok(c)
    }

    fn check_spec(&self, path: &Path, limits: &LimitsSpec) -> Result<(), CheckpointError> {
        ringtrain_spec::check_validated(&self.header.spec, limits).map_err(|source| {
            CheckpointError::InvalidSpec {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Reads the file and checks magic, lengths and checksums; the spec is not re-validated.
    fn load_unchecked_spec(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let io = |source| CheckpointError::Io {
            path: path.to_path_buf(),
            error: source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            return Err(corrupt("not a regular file".into()));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Checkpoint::from_bytes_unchecked_spec(&bytes, path)
    }

    /// Reads a checkpoint from the bytes of its file ([`Checkpoint::to_bytes`]) with every check
    /// [`Checkpoint::load_within`] makes; `origin` names it in errors.
    ///
    /// # Errors
    /// As [`Checkpoint::load_within`].
    pub fn from_bytes_within(
        bytes: &[u8],
        origin: &Path,
        ceiling: &LimitsSpec,
    ) -> Result<Checkpoint, CheckpointError> {
        let c = Checkpoint::from_bytes_unchecked_spec(bytes, origin)?;
        c.check_spec(origin, &c.header.spec.limits.capped_by(ceiling))?;
        Ok(c)
    }

    fn from_bytes_unchecked_spec(bytes: &[u8], path: &Path) -> Result<Checkpoint, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < 16 {
            return Err(corrupt(format!(
                "not a ringtrain checkpoint ({} bytes, shorter than its prefix)",
                bytes.len()
            )));
        }
        let v2 = match &bytes[..8] {
            m if m == MAGIC => true,
            m if m == MAGIC_V1 => false,
            _ => {
                return Err(corrupt(
                    "not a ringtrain checkpoint (bad magic bytes)".into(),
                ));
            }
        };
        // Format 2: the trailer covers everything, header included; checked before parsing.
        let body = if v2 {
            let Some(split) = bytes.len().checked_sub(4).filter(|&n| n >= 16) else {
                return Err(corrupt(
                    "truncated: no room for the checksum trailer".into(),
                ));
            };
            let (body, trailer) = bytes.split_at(split);
            let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
            let crc = crc32fast::hash(body);
            if crc != stored {
                return Err(corrupt(format!(
                    "checksum mismatch over header and arrays (stored {stored:08x}, contents \
                     {crc:08x}): the file was truncated, damaged or edited"
                )));
            }
            body
        } else {
            bytes
        };
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&body[8..16]);
        let header_len = u64::from_le_bytes(len8);
        let available = body.len() as u64 - 16;
        if header_len > available || header_len > MAX_HEADER_BYTES {
            return Err(corrupt(format!(
                "header length {header_len} exceeds the {available} bytes present (limit \
                 {MAX_HEADER_BYTES})"
            )));
        }
        let header_end = 16 + header_len as usize;
        let header: Header = serde_json::from_slice(&body[16..header_end])
            .map_err(|e| corrupt(format!("unreadable header: {e}")))?;
        let known = if v2 {
            FORMAT_VERSION_PLAIN..=FORMAT_VERSION
        } else {
            1..=1
        };
        if !known.contains(&header.format_version) {
            return Err(corrupt(format!(
                "format version {} in a format {} file (this ringtrain reads versions 1 to \
                 {FORMAT_VERSION})",
                header.format_version,
                if v2 { 2 } else { 1 }
            )));
        }
        let payload = &body[header_end..];
        // Every count is checked with overflow in mind before any slice or allocation.
        let mut expected: usize = 0;
        for (name, n) in &header.arrays {
            let bytes_of = n
                .checked_mul(4)
                .and_then(|b| expected.checked_add(b))
                .ok_or_else(|| corrupt(format!("array {name:?} length {n} overflows")))?;
            expected = bytes_of;
        }
        if payload.len() != expected {
            return Err(corrupt(format!(
                "truncated or padded: {} array bytes, header lists {expected}",
                payload.len()
            )));
        }
        let crc = crc32fast::hash(payload);
        if crc != header.crc32 {
            return Err(corrupt(format!(
                "checksum mismatch (header {:08x}, contents {crc:08x})",
                header.crc32
            )));
        }
        let mut arrays = std::collections::BTreeMap::new();
        let mut offset = 0;
        for (name, n) in &header.arrays {
            let end = offset + n * 4;
            let v: Vec<f32> = payload[offset..end]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            offset = end;
            if arrays.insert(name.clone(), v).is_some() {
                return Err(corrupt(format!("array {name:?} listed twice")));
            }
        }
        let mut take = |name: &str| {
            arrays
                .remove(name)
                .ok_or_else(|| corrupt(format!("array {name:?} missing")))
        };
        let params = take("params")?;
        let optimizer = OptimizerState {
            kind: header.optimizer_kind,
            step: header.optimizer_step,
            n_params: params.len(),
            momentum_buffer: take("momentum_buffer")?,
            exp_avg: take("exp_avg")?,
            exp_avg_sq: take("exp_avg_sq")?,
        };
        for (name, buf) in [
            ("momentum_buffer", &optimizer.momentum_buffer),
            ("exp_avg", &optimizer.exp_avg),
            ("exp_avg_sq", &optimizer.exp_avg_sq),
        ] {
            if !buf.is_empty() && buf.len() != params.len() {
                return Err(corrupt(format!(
                    "array {name:?} has {} values for {} parameters",
                    buf.len(),
                    params.len()
                )));
            }
        }
        let carried = arrays.remove(CARRIED).unwrap_or_default();
        Ok(Checkpoint {
            header,
            params,
            optimizer,
            carried,
        })
    }

    /// Checks that this checkpoint was trained for the same model, task and data preparation as
    /// `spec` (training-loop settings such as epochs may differ).
    ///
    /// # Errors
    /// [`CheckpointError::Mismatch`] naming the first differing field.
    pub fn check_compatible(&self, spec: &JobSpec, path: &Path) -> Result<(), CheckpointError> {
        let ours = serde_json::to_value(&self.header.spec).unwrap_or_default();
        let theirs = serde_json::to_value(spec).unwrap_or_default();
        for section in ["model", "task", "data", "seed"] {
            if let Some((field, a, b)) = first_difference(section, &ours[section], &theirs[section])
            {
                return Err(CheckpointError::Mismatch {
                    path: path.to_path_buf(),
                    field,
                    in_checkpoint: a,
                    in_spec: b,
                });
            }
        }
        Ok(())
    }
}

/// The checkpoint file to use in `dir` for evaluation or prediction: `best.ckpt` when present
/// (best validation metric), else `latest.ckpt`. A path to a file is returned as is.
///
/// # Errors
/// [`CheckpointError::Missing`] when neither exists.
pub fn resolve_for_inference(dir: &Path) -> Result<PathBuf, CheckpointError> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    [BEST, LATEST]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| CheckpointError::Missing {
            dir: dir.to_path_buf(),
        })
}

fn first_difference(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        _ if a == b => None,
        _ => Some((path.to_string(), a.to_string(), b.to_string())),
    }
}

/// The header of the checkpoint `file` (at `path`, for errors), without reading the arrays.
fn read_header(file: &mut std::fs::File, path: &Path) -> Result<Header, CheckpointError> {
    use std::io::Read;
    let corrupt = |reason: String| CheckpointError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut prefix = [0u8; 16];
    file.read_exact(&mut prefix)
        .map_err(|_| corrupt("not a ringtrain checkpoint (shorter than its prefix)".into()))?;
    if &prefix[..8] != MAGIC && &prefix[..8] != MAGIC_V1 {
        return Err(corrupt(
            "not a ringtrain checkpoint (bad magic bytes)".into(),
        ));
    }
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&prefix[8..16]);
    let header_len = u64::from_le_bytes(len8);
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(format!(
            "header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes"
        )));
    }
    let mut json = Vec::new();
    file.take(header_len)
        .read_to_end(&mut json)
        .map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            error: source,
        })?;
    if json.len() as u64 != header_len {
        return Err(corrupt(format!(
            "truncated: header of {header_len} bytes but only {} present",
            json.len()
        )));
    }
    serde_json::from_slice(&json).map_err(|e| corrupt(format!("unreadable header: {e}")))
}

/// Syncs a directory so a rename inside it survives a crash (a no-op where directories cannot
/// be opened for syncing).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}
