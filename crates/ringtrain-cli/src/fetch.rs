//! A dataset that must be fetched before an example can train (third-party data is never
//! committed): when a spec's `data.path` does not exist and a `fetch-*.sh` script beside the spec
//! names that file, training is refused before it starts with a message naming the script,
//! instead of the reader's bare "cannot read".

use std::path::{Path, PathBuf};

/// Largest fetch script read when looking for the file name (they are a few KiB).
const MAX_SCRIPT_BYTES: u64 = 256 * 1024;

/// Checks that the spec's (resolved) data file exists, or names the script that fetches it.
///
/// # Errors
/// When `data.path` is missing and a `fetch-*.sh` in `spec_dir` mentions its file name: a
/// message naming the missing file and the command to run. A missing file that no script names
/// passes here (the reader reports it, naming the file).
pub(crate) fn require_data(spec_dir: &Path, spec: &ringtrain_spec::JobSpec) -> anyhow::Result<()> {
    let path = &spec.data.path;
    if path.to_string_lossy().starts_with("builtin:") || path.exists() {
        return Ok(());
    }
    if let Some(script) = fetch_script(spec_dir, path) {
        anyhow::bail!(
            "data.path {} does not exist: this dataset is downloaded, not shipped; run `bash {}` \
             first",
            path.display(),
            script.display()
        );
    }
    Ok(())
}

/// The first `fetch-*.sh` in `dir` (in name order) whose text mentions `data`'s file name.
fn fetch_script(dir: &Path, data: &Path) -> Option<PathBuf> {
    let name = data.file_name()?.to_str()?;
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("fetch-") && n.ends_with(".sh"))
        })
        .collect();
    scripts.sort();
    scripts.into_iter().find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() <= MAX_SCRIPT_BYTES)
            && std::fs::read_to_string(p).is_ok_and(|text| text.contains(name))
    })
}
