//! `checkpoint.record_samples`: every rank appends one line per optimizer step to
//! `<checkpoint.dir>/samples/attempt-<A>-rank-<R>.tsv` — the epoch, the step and the training
//! sample ids (positions in the training split) it took — so a run can be audited for samples
//! trained twice or never. A step an attempt took and a later attempt took again (it resumed
//! from an earlier commit or checkpoint) counts once, from the later attempt.
//!
//! A rank writes a step's line before it takes the step (unbuffered, one `write`): a step
//! completes only once every rank's gradient entered the all-reduce, so every completed step
//! has every rank's line even when a rank is killed right after contributing; a step that no
//! rank completed was taken again by the next attempt, whose lines count.

use crate::checkpoint::CheckpointError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// One rank's sample log.
#[derive(Debug)]
pub(crate) struct SampleLog {
    path: PathBuf,
    file: std::fs::File,
    line: String,
}

impl SampleLog {
    /// Opens (appending) the log of `rank` in `attempt` under `dir/samples`.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming the file.
    pub fn open(dir: &Path, attempt: u32, rank: usize) -> Result<SampleLog, CheckpointError> {
        let path = dir
            .join("samples")
            .join(format!("attempt-{attempt}-rank-{rank}.tsv"));
        let io = |error| CheckpointError::Io {
            path: path.clone(),
            error,
        };
        std::fs::create_dir_all(path.parent().unwrap_or(dir)).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        Ok(SampleLog {
            path,
            file,
            line: String::new(),
        })
    }

    /// Appends `epoch`, `step` and `ids`.
    ///
    /// # Errors
    /// [`CheckpointError::Io`] naming the file.
    pub fn record(&mut self, epoch: u32, step: u64, ids: &[usize]) -> Result<(), CheckpointError> {
        self.line.clear();
        let _ = write!(self.line, "{epoch}\t{step}\t");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            let _ = write!(self.line, "{id}");
        }
        self.line.push('\n');
        self.file
            .write_all(self.line.as_bytes())
            .map_err(|error| CheckpointError::Io {
                path: self.path.clone(),
                error,
            })
    }
}

/// Per (epoch, step): the attempt whose lines count and its ranks' ids.
type Steps = BTreeMap<(u32, u64), (u32, BTreeMap<usize, Vec<usize>>)>;

/// The sample ids each epoch trained, read from the logs under `dir/samples`: for every step,
/// the ranks' ids (in rank order, which is the global batch's order) from the last attempt
/// that took the step — an earlier attempt's steps after its last commit or checkpoint were
/// taken again by the next one and did not count.
///
/// # Errors
/// [`CheckpointError::Io`] when a log cannot be read; [`CheckpointError::Corrupt`] naming the
/// file and line when a name or line is not what [`SampleLog`] writes, or a rank recorded a
/// step twice in one attempt.
pub fn trained_by_epoch(dir: &Path) -> Result<BTreeMap<u32, Vec<usize>>, CheckpointError> {
    let root = dir.join("samples");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| CheckpointError::Io { path, error }
    };
    let mut steps = Steps::new();
    for entry in std::fs::read_dir(&root).map_err(io(&root))? {
        let path = entry.map_err(io(&root))?.path();
        let corrupt = |line: usize, reason: String| CheckpointError::Corrupt {
            path: path.clone(),
            reason: if line == 0 {
                reason
            } else {
                format!("line {line}: {reason}")
            },
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let parsed = name
            .strip_prefix("attempt-")
            .and_then(|n| n.strip_suffix(".tsv"))
            .and_then(|n| n.split_once("-rank-"))
            .and_then(|(a, r)| Some((a.parse::<u32>().ok()?, r.parse::<usize>().ok()?)));
        let Some((attempt, rank)) = parsed else {
            return Err(corrupt(0, "not named attempt-<A>-rank-<R>.tsv".into()));
        };
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        for (i, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = || corrupt(i + 1, "expected `epoch<TAB>step<TAB>id,id,...`".into());
            let [epoch, step, ids] = fields[..] else {
                return Err(bad());
            };
            let key = (
                epoch.parse().map_err(|_| bad())?,
                step.parse().map_err(|_| bad())?,
            );
            let ids = ids
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<usize>, _>>()
                .map_err(|_| bad())?;
            let held = steps.entry(key).or_insert((attempt, BTreeMap::new()));
            if attempt > held.0 {
                *held = (attempt, BTreeMap::new());
            }
            if attempt == held.0 && held.1.insert(rank, ids).is_some() {
                return Err(corrupt(
                    i + 1,
                    format!("step {} of epoch {} recorded twice", key.1, key.0),
                ));
            }
        }
    }
    let mut epochs: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for ((epoch, _), (_, ranks)) in steps {
        epochs
            .entry(epoch)
            .or_default()
            .extend(ranks.into_values().flatten());
    }
    Ok(epochs)
}
