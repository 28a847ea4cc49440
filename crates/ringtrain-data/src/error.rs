//! The one error type of the data pipeline. Every bad-data variant carries what a user needs to
//! find and fix the problem in their file: the file name, the 1-based line, the column (header name
//! and, for CSV/TSV, its 1-based position) and the offending value. Nothing in this crate panics on
//! user data or drops a row silently; it returns one of these instead.

use crate::SplitName;
use ringtrain_spec::error::snippet;
use std::fmt;

/// Identifies a column in error messages: the header name (or JSON key) and, for CSV/TSV, its
/// 1-based position in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    /// Header name or JSON key.
    pub name: String,
    /// 1-based position in the CSV/TSV header; `None` for JSONL keys and builtin series.
    pub index: Option<usize>,
}

impl fmt::Display for ColumnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "column `{}` (#{i})", snippet(&self.name)),
            None => write!(f, "column `{}`", snippet(&self.name)),
        }
    }
}

/// Where a label set came from, so an unknown-label error can say why the label is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOrigin {
    /// The spec's explicit `labels` list.
    Spec,
    /// The labels seen in the training split.
    TrainSplit,
    /// A checkpoint's stored label list.
    Checkpoint,
}

impl fmt::Display for LabelOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabelOrigin::Spec => "the spec's labels list",
            LabelOrigin::TrainSplit => "the training split",
            LabelOrigin::Checkpoint => "the checkpoint's label list",
        })
    }
}

/// Everything that can go wrong while reading, splitting or batching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{file}: cannot read: {error}")]
    Io {
        /// Path of the file.
        file: String,
        /// Underlying IO error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// The file has no content at all (not even a header).
    #[error("{file}: empty file (expected a header row and data rows)")]
    EmptyFile {
        /// Path of the file.
        file: String,
    },
    /// The file has a header but no data rows.
    #[error("{file}:{line}: header found but no data rows follow")]
    NoRows {
        /// Path of the file.
        file: String,
        /// Line of the header.
        line: u64,
    },
    /// A column named by the spec is not in the header (or a JSON object lacks the key).
    #[error(
        "{file}:{line}: no column `{}`; available: {}",
        snippet(column),
        names(available)
    )]
    MissingColumn {
        /// Path of the file.
        file: String,
        /// Line of the header (CSV/TSV) or of the JSON object lacking the key.
        line: u64,
        /// The column the spec asked for.
        column: String,
        /// The header names (or the object's keys) that do exist.
        available: Vec<String>,
    },
    /// A column name appears more than once in the header, so a lookup by name is ambiguous.
    #[error(
        "{file}:{line}: column `{column}` appears more than once in the header (#{first} and #{second})"
    )]
    DuplicateColumn {
        /// Path of the file.
        file: String,
        /// Line of the header.
        line: u64,
        /// The repeated name.
        column: String,
        /// 1-based position of the first occurrence.
        first: usize,
        /// 1-based position of the second occurrence.
        second: usize,
    },
    /// A numeric column holds something that is not a number.
    #[error("{file}:{line}: {column}: `{}` is not a number", snippet(cell))]
    NonNumeric {
        /// Path of the file.
        file: String,
        /// Line of the row.
        line: u64,
        /// The column.
        column: ColumnRef,
        /// The cell as written in the file.
        cell: String,
    },
    /// A numeric cell is NaN or infinite (or too large for f32).
    #[error(
        "{file}:{line}: {column}: `{}` is not a finite number (NaN, infinity and values beyond f32 range are not allowed)",
        snippet(cell)
    )]
    NonFinite {
        /// Path of the file.
        file: String,
        /// Line of the row.
        line: u64,
        /// The column.
        column: ColumnRef,
        /// The cell as written in the file.
        cell: String,
    },
    /// A row has a different number of fields than the header.
    #[error(
        "{file}:{line}: ragged row: expected {expected} fields (as in the header), found {found}"
    )]
    Ragged {
        /// Path of the file.
        file: String,
        /// Line of the row.
        line: u64,
        /// Field count of the header.
        expected: usize,
        /// Field count of this row.
        found: usize,
    },
    /// A JSON value has a type the column cannot hold (e.g. a number where text is expected).
    #[error(
        "{file}:{line}: {column}: expected {expected}, found `{}`",
        snippet(found)
    )]
    WrongType {
        /// Path of the file.
        file: String,
        /// Line of the object.
        line: u64,
        /// The column (JSON key).
        column: ColumnRef,
        /// What the column must hold.
        expected: &'static str,
        /// The value found, as JSON.
        found: String,
    },
    /// A label is not among the known classes.
    #[error(
        "{file}:{line}: {column}: unknown label `{}`; known labels ({origin}): {}",
        snippet(label),
        names(known)
    )]
    UnknownLabel {
        /// Path of the file.
        file: String,
        /// Line of the row.
        line: u64,
        /// The label column.
        column: ColumnRef,
        /// The label found.
        label: String,
        /// The labels that are allowed.
        known: Vec<String>,
        /// Where the known labels come from.
        origin: LabelOrigin,
    },
    /// Bytes that are not valid UTF-8.
    #[error("{file}:{line}: invalid UTF-8{}", column.as_ref().map(|c| format!(" in {c}")).unwrap_or_default())]
    InvalidUtf8 {
        /// Path of the file.
        file: String,
        /// Line containing the bad bytes.
        line: u64,
        /// The column, where known (CSV/TSV).
        column: Option<ColumnRef>,
    },
    /// A JSONL line is not a valid JSON object.
    #[error("{file}:{line}: invalid JSON: {}", snippet(message))]
    InvalidJson {
        /// Path of the file.
        file: String,
        /// Line of the object.
        line: u64,
        /// What the parser reported.
        message: String,
    },
    /// A CSV/TSV record could not be parsed for another reason.
    #[error("{file}:{line}: cannot parse record: {}", snippet(message))]
    Csv {
        /// Path of the file.
        file: String,
        /// Line where parsing failed.
        line: u64,
        /// What the parser reported.
        message: String,
    },
    /// A split of a time series has too few rows for a single window.
    #[error("{file}: the {split} split has {rows} rows but needs at least {needed} ({})", series_need(*split, *window, *horizon))]
    SeriesTooShort {
        /// Path of the file.
        file: String,
        /// The split.
        split: SplitName,
        /// Rows in the split.
        rows: usize,
        /// Rows it needs for one window.
        needed: usize,
        /// Input window length.
        window: usize,
        /// Forecast horizon.
        horizon: usize,
    },
    /// A split requested with a positive fraction would receive no sample.
    #[error(
        "{file}: the {split} split (fraction {fraction}) of {total} samples is empty; raise the fraction or add data"
    )]
    SplitTooSmall {
        /// Path of the file.
        file: String,
        /// The split.
        split: SplitName,
        /// Its fraction in the spec.
        fraction: f64,
        /// Samples in the whole dataset.
        total: usize,
    },
    /// A predict-time file has fewer rows than the model's input window.
    #[error(
        "{file}: {rows} data rows, fewer than the input window of {window} rows the model needs"
    )]
    TooFewRowsToPredict {
        /// Path of the file.
        file: String,
        /// Data rows in the file.
        rows: usize,
        /// The model's input window.
        window: usize,
    },
    /// `builtin:NAME` names no bundled dataset.
    #[error("unknown builtin dataset `{name}`; available: {}", available.join(", "))]
    UnknownBuiltin {
        /// The name after `builtin:`.
        name: String,
        /// The bundled datasets.
        available: Vec<String>,
    },
    /// Fitted state passed to [`crate::load_with`] (e.g. from a checkpoint) does not match the spec.
    #[error("fitted data state does not match the spec: {reason}")]
    FittedMismatch {
        /// What differs.
        reason: String,
    },
    /// A shard plan over zero samples was requested.
    #[error("cannot plan an epoch over 0 samples")]
    EmptyPlan,
    /// A shard plan with zero workers or a zero batch was requested.
    #[error(
        "invalid shard plan: world {world} and per-rank batch {per_rank_batch} must both be at least 1"
    )]
    InvalidPlan {
        /// Number of data-parallel ranks.
        world: usize,
        /// Samples per rank per step.
        per_rank_batch: usize,
    },
    /// A split of a language-model corpus is too short to give every stream two tokens (one
    /// input and its next-token target).
    #[error(
        "{file}: the {split} split has {tokens} tokens, too few for {streams} stream(s) of at least 2 tokens; {hint}"
    )]
    CorpusTooShort {
        /// Path of the file.
        file: String,
        /// The split.
        split: SplitName,
        /// Tokens in the split.
        tokens: usize,
        /// Streams it is cut into (`train.batch_size` for the train split).
        streams: usize,
        /// How to fix it.
        hint: &'static str,
    },
    /// The data path is not a regular file (a device such as `/dev/zero`, a pipe, a directory).
    #[error("{file}: not a regular file (devices, pipes and directories are not datasets)")]
    NotRegular {
        /// Path of the file.
        file: String,
    },
    /// The file is larger than `limits.max_data_mb` allows; checked before reading it.
    #[error(
        "{file}: {bytes} bytes, above the dataset limit of {limit} bytes (raise limits.max_data_mb)"
    )]
    TooLarge {
        /// Path of the file.
        file: String,
        /// Its size.
        bytes: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Every text of a text dataset is empty (nothing to tokenize, nothing to learn).
    #[error("{file}: {column}: all {rows} texts are empty; nothing to train on")]
    AllTextsEmpty {
        /// Path of the file.
        file: String,
        /// The text column.
        column: ColumnRef,
        /// Rows in the file.
        rows: usize,
    },
    /// A plain text file was asked for as a table (only a language model reads plain text).
    #[error("{file}: plain text has no columns; only task.kind = \"language_model\" reads it")]
    NotATable {
        /// Path of the file.
        file: String,
    },
}

/// How many names of a list (labels, columns) an error message shows before `… (N in all)`.
const SHOWN_NAMES: usize = 8;

/// The first few names of a list, each a bounded snippet, and the count when there are more:
/// an error never echoes a whole file's labels or a whole header line.
fn names(list: &[String]) -> String {
    let mut shown: Vec<String> = list.iter().take(SHOWN_NAMES).map(|n| snippet(n)).collect();
    if list.len() > SHOWN_NAMES {
        shown.push(format!("… ({} in all)", list.len()));
    }
    let mut out = shown.join(", ");
    // A bound on the whole list as well: eight names of 80 characters are still a lot.
    if out.chars().count() > 400 {
        out = format!(
            "{} … ({} in all)",
            out.chars().take(400).collect::<String>(),
            list.len()
        );
    }
    out
}

fn series_need(split: SplitName, window: usize, horizon: usize) -> String {
    match split {
        SplitName::Train => format!("window {window} + horizon {horizon}"),
        // Val/test windows may read their input from earlier rows; only targets must be inside.
        _ => format!(
            "horizon {horizon}: its windows take their {window} input rows from earlier data, \
             but their targets must lie inside the split"
        ),
    }
}
