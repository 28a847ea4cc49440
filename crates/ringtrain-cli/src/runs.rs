//! Where runs go when a spec does not say: `$RINGTRAIN_RUNS/<name>` when that variable is set,
//! else `runs/<name>` under the current directory — never beside the spec, so an example trains
//! from a read-only checkout and leaves the source tree as it was. A `checkpoint.dir` written in
//! the spec keeps its meaning (relative to the spec's directory), as on a cluster.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The environment variable naming the directory runs go to.
pub(crate) const RUNS_ENV: &str = "RINGTRAIN_RUNS";

/// The absolute run directory for a spec named `name` that sets no `checkpoint.dir`.
///
/// # Errors
/// When the current directory cannot be read (to make the path absolute).
pub(crate) fn default_dir(name: &str) -> anyhow::Result<PathBuf> {
    let root = match std::env::var_os(RUNS_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from("runs"),
    };
    std::path::absolute(root.join(name))
        .with_context(|| format!("resolving the run directory of {name} (${RUNS_ENV})"))
}

/// Most numbered siblings (`<name>-2`, `<name>-3`, ...) [`fresh_default_dir`] tries.
const MAX_RUN_SUFFIX: u32 = 1000;

/// Like [`default_dir`], for `ringtrain local`: its fresh coordinator numbers jobs from 1, so a
/// second `local` of the same spec would write `job-1` over the first run. When `<name>` already
/// holds anything, the first free `<name>-N` (N = 2, 3, ...) is used instead.
///
/// # Errors
/// When the current directory cannot be read, or `<name>` and its numbered siblings up to
/// `<name>-1000` are all taken.
pub(crate) fn fresh_default_dir(name: &str) -> anyhow::Result<PathBuf> {
    let first = default_dir(name)?;
    if is_free(&first) {
        return Ok(first);
    }
    for n in 2..=MAX_RUN_SUFFIX {
        let dir = default_dir(&format!("{name}-{n}"))?;
        if is_free(&dir) {
            return Ok(dir);
        }
    }
    anyhow::bail!(
        "{} and its numbered siblings up to {name}-{MAX_RUN_SUFFIX} all hold runs; move some \
         away or set ${RUNS_ENV} to another directory",
        first.display()
    )
}

/// Whether a run directory is absent or empty (anything else is an earlier run's).
fn is_free(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Whether the spec file's text sets `checkpoint.dir` (the validated spec cannot tell: it holds
/// the default `runs/<name>` either way). The file was already read and validated by
/// `ringtrain_spec::load`, so it is a regular file of at most 1 MiB that parses.
///
/// # Errors
/// When the file cannot be read again or no longer parses.
pub(crate) fn sets_checkpoint_dir(spec: &Path) -> anyhow::Result<bool> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    Ok(if is_json(spec) {
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", spec.display()))?;
        doc.get("checkpoint").and_then(|c| c.get("dir")).is_some()
    } else {
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not TOML", spec.display()))?;
        doc.get("checkpoint").and_then(|c| c.get("dir")).is_some()
    })
}

/// The spec text with `checkpoint.dir = dir` added (for a spec that sets none), in the spec's
/// own format; used by `local`, whose workers read the spec text.
///
/// # Errors
/// When the text does not parse or the directory is not UTF-8.
pub(crate) fn with_checkpoint_dir(spec: &Path, text: &str, dir: &Path) -> anyhow::Result<String> {
    let dir = dir
        .to_str()
        .with_context(|| format!("run directory {} is not UTF-8", dir.display()))?
        .to_string();
    if is_json(spec) {
        let mut doc: serde_json::Value = serde_json::from_str(text)
            .with_context(|| format!("{} is not JSON", spec.display()))?;
        let obj = doc
            .as_object_mut()
            .with_context(|| format!("{} is not a JSON object", spec.display()))?;
        let checkpoint = obj
            .entry("checkpoint")
            .or_insert_with(|| serde_json::json!({}));
        checkpoint
            .as_object_mut()
            .with_context(|| format!("{}: checkpoint is not an object", spec.display()))?
            .insert("dir".into(), serde_json::Value::String(dir));
        Ok(serde_json::to_string_pretty(&doc)?)
    } else {
        let mut doc: toml::Table =
            toml::from_str(text).with_context(|| format!("{} is not TOML", spec.display()))?;
        let checkpoint = doc
            .entry("checkpoint")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        checkpoint
            .as_table_mut()
            .with_context(|| format!("{}: checkpoint is not a table", spec.display()))?
            .insert("dir".into(), toml::Value::String(dir));
        Ok(toml::to_string(&doc)?)
    }
}

fn is_json(spec: &Path) -> bool {
    spec.extension().is_some_and(|e| e == "json")
}
