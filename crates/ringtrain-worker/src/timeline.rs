//! Chrome-trace timelines (`chrome://tracing`, Perfetto) of what each rank spent its time on.
//!
//! Every rank writes `<dir>/<job>-rank<r>.trace.json`: `{"traceEvents": [...]}` with one complete
//! event (`"ph": "X"`) per phase — `compute` (forward + backward, and the optimizer update with
//! `args.part = "optimizer"`), `allreduce`, `eval`, `checksum`, `broadcast` — with `ts` and `dur`
//! in microseconds since the Unix epoch, `pid` = rank, `tid` = 0 and `args.step`. Because the
//! clock is absolute, files of several ranks (on one machine, or on machines with synchronised
//! clocks) merge into one timeline with [`merge`], one process row per rank; a straggler shows as
//! a long `compute` next to the others' long `allreduce`.

use ringtrain_train::{Phase, PhaseSpan};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Most events one rank keeps (about 100 bytes each); later ones are dropped and counted, so a
/// very long job cannot exhaust memory through its timeline.
pub const MAX_EVENTS: usize = 1_000_000;

/// Why a timeline could not be written or merged.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// Reading or writing a file failed.
    #[error("timeline {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// A file is not a Chrome trace (`{"traceEvents": [...]}`).
    #[error("timeline {path} is not a Chrome trace: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
}

/// One Chrome trace event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Phase name (`compute`, `allreduce`, ...) or, for metadata, `process_name`.
    pub name: String,
    /// Event type: `X` (complete) or `M` (metadata).
    pub ph: String,
    /// Start, microseconds since the Unix epoch (0 for metadata).
    #[serde(default)]
    pub ts: u64,
    /// Duration in microseconds (complete events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<u64>,
    /// The rank.
    pub pid: u32,
    /// Always 0 (one row per rank).
    #[serde(default)]
    pub tid: u32,
    /// `{"step": n}` (plus `part` for the optimizer update), or `{"name": ...}` for metadata.
    #[serde(default)]
    pub args: serde_json::Value,
}

/// A Chrome trace document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Every event.
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<TraceEvent>,
}

/// The file one rank of one job writes into a timeline directory.
pub fn rank_file(dir: &Path, job: &str, rank: u32) -> PathBuf {
    dir.join(format!("{job}-rank{rank}.trace.json"))
}

/// Collects one rank's events in memory; [`RankTimeline::write`] saves them.
#[derive(Debug)]
pub struct RankTimeline {
    rank: u32,
    events: Vec<TraceEvent>,
    dropped: u64,
}

impl RankTimeline {
    /// An empty timeline for `rank`, labelled `label` in the viewer (e.g. `rank 1 (w-3)`).
    pub fn new(rank: u32, label: &str) -> Self {
        RankTimeline {
            rank,
            events: vec![TraceEvent {
                name: "process_name".into(),
                ph: "M".into(),
                ts: 0,
                dur: None,
                pid: rank,
                tid: 0,
                args: serde_json::json!({ "name": label }),
            }],
            dropped: 0,
        }
    }

    /// Adds a phase of the trainer.
    pub fn add(&mut self, span: &PhaseSpan) {
        if self.events.len() >= MAX_EVENTS {
            self.dropped += 1;
            return;
        }
        let ts = span
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let (name, args) = match span.phase {
            Phase::Update => (
                "compute",
                serde_json::json!({ "step": span.step, "part": "optimizer" }),
            ),
            other => (other.name(), serde_json::json!({ "step": span.step })),
        };
        self.events.push(TraceEvent {
            name: name.into(),
            ph: "X".into(),
            ts,
            dur: Some(span.duration.as_micros() as u64),
            pid: self.rank,
            tid: 0,
            args,
        });
    }

    /// Events kept so far (including the metadata event).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no phase was added yet.
    pub fn is_empty(&self) -> bool {
        self.events.len() <= 1
    }

    /// Events dropped beyond [`MAX_EVENTS`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes the trace to `path` (through a temporary file renamed into place), creating its
    /// directory.
    ///
    /// # Errors
    /// [`TimelineError::Io`].
    pub fn write(&self, path: &Path) -> Result<(), TimelineError> {
        write_trace(
            path,
            &Trace {
                trace_events: self.events.clone(),
            },
        )
    }
}

fn write_trace(path: &Path, trace: &Trace) -> Result<(), TimelineError> {
    let io = |source| TimelineError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = serde_json::to_vec(trace).map_err(|e| io(std::io::Error::other(e)))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Merges the traces in `files` into one written to `out`: metadata events first, then every
/// other event ordered by start time. Returns the number of events written.
///
/// # Errors
/// [`TimelineError::Io`] for a file that cannot be read or the output that cannot be written,
/// [`TimelineError::Format`] for a file that is not a Chrome trace.
pub fn merge(files: &[PathBuf], out: &Path) -> Result<usize, TimelineError> {
    let mut events = Vec::new();
    for path in files {
        let text = std::fs::read(path).map_err(|source| TimelineError::Io {
            path: path.clone(),
            error: source,
        })?;
        let trace: Trace = serde_json::from_slice(&text).map_err(|e| TimelineError::Format {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        events.extend(trace.trace_events);
    }
    // Stable: events of one rank that start at the same microsecond keep their order.
    events.sort_by_key(|e| (e.ph != "M", e.ts));
    let n = events.len();
    write_trace(
        out,
        &Trace {
            trace_events: events,
        },
    )?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn span(phase: Phase, step: u64, at_us: u64, dur_us: u64) -> PhaseSpan {
        PhaseSpan {
            phase,
            step,
            start: UNIX_EPOCH + Duration::from_micros(at_us),
            duration: Duration::from_micros(dur_us),
        }
    }

    #[test]
    fn rank_trace_has_complete_events_in_epoch_microseconds() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = RankTimeline::new(1, "rank 1 (w-2)");
        assert!(t.is_empty());
        t.add(&span(Phase::Compute, 1, 1_000, 30));
        t.add(&span(Phase::AllReduce, 1, 1_030, 20));
        t.add(&span(Phase::Update, 1, 1_050, 5));
        t.add(&span(Phase::Eval, 1, 1_100, 400));
        let path = rank_file(dir.path(), "job-7", 1);
        assert!(path.ends_with("job-7-rank1.trace.json"));
        t.write(&path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let ev = v["traceEvents"].as_array().unwrap();
        assert_eq!(ev.len(), 5);
        assert_eq!(ev[0]["ph"], "M");
        assert_eq!(ev[0]["args"]["name"], "rank 1 (w-2)");
        assert_eq!(ev[2]["name"], "allreduce");
        assert_eq!(ev[2]["ph"], "X");
        assert_eq!(ev[2]["ts"], 1_030);
        assert_eq!(ev[2]["dur"], 20);
        assert_eq!(ev[2]["pid"], 1);
        assert_eq!(ev[2]["tid"], 0);
        assert_eq!(ev[2]["args"]["step"], 1);
        assert_eq!(ev[3]["name"], "compute");
        assert_eq!(ev[3]["args"]["part"], "optimizer");
        assert_eq!(ev[4]["name"], "eval");
    }

    #[test]
    fn real_clock_stamps_are_after_2020() {
        let mut t = RankTimeline::new(0, "rank 0");
        t.add(&PhaseSpan {
            phase: Phase::Checksum,
            step: 5,
            start: SystemTime::now(),
            duration: Duration::from_millis(1),
        });
        let ts = t.events[1].ts;
        assert!(ts > 1_577_836_800_000_000, "{ts}");
        assert_eq!(t.events[1].dur, Some(1_000));
    }

    #[test]
    fn merge_interleaves_ranks_by_time_with_metadata_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for rank in 0..3u32 {
            let mut t = RankTimeline::new(rank, &format!("rank {rank}"));
            for step in 1..=2u64 {
                let at = step * 1_000 + u64::from(rank) * 10;
                t.add(&span(Phase::Compute, step, at, 5));
                t.add(&span(Phase::AllReduce, step, at + 5, 3));
            }
            let path = rank_file(dir.path(), "j", rank);
            t.write(&path).unwrap();
            files.push(path);
        }
        let out = dir.path().join("merged/timeline.json");
        assert_eq!(merge(&files, &out).unwrap(), 3 + 3 * 4);
        let merged: Trace = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let ev = &merged.trace_events;
        assert!(ev[..3].iter().all(|e| e.ph == "M"));
        assert!(ev[3..].windows(2).all(|w| w[0].ts <= w[1].ts));
        let pids: Vec<u32> = ev[3..6].iter().map(|e| e.pid).collect();
        assert_eq!(pids, vec![0, 0, 1], "rank 0's step 1 first, then rank 1's");
        for rank in 0..3 {
            assert_eq!(ev.iter().filter(|e| e.pid == rank).count(), 5);
        }
    }

    #[test]
    fn merge_names_a_file_that_is_not_a_trace() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"events\": 3}").unwrap();
        let err = merge(std::slice::from_ref(&bad), &dir.path().join("out.json")).unwrap_err();
        assert!(
            matches!(&err, TimelineError::Format { path, .. } if *path == bad),
            "{err}"
        );
        let missing = dir.path().join("missing.json");
        let err = merge(&[missing], &dir.path().join("out.json")).unwrap_err();
        assert!(matches!(err, TimelineError::Io { .. }), "{err}");
    }
}
