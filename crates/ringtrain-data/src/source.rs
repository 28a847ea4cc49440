//! Where a dataset comes from ([`Source`]: a file, or a series bundled with the binary) and
//! reading its columns from either; above both `table` (the file readers) and `builtin`.

use crate::builtin::Builtin;
use crate::error::DataError;
use crate::table::{Table, read_file};
use ringtrain_spec::DataFormat;
use std::path::{Path, PathBuf};

/// Where a dataset comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// A series bundled with the binary (`builtin:NAME`).
    Builtin(Builtin),
}

impl Source {
    /// Resolves a spec path: `builtin:NAME` selects a bundled dataset, a relative path is joined
    /// to `base_dir` (the spec file's directory), an absolute path is kept.
    ///
    /// # Errors
    /// [`DataError::UnknownBuiltin`] for a `builtin:` name that does not exist.
    pub fn resolve(path: &Path, base_dir: &Path) -> Result<Source, DataError> {
        if let Some(name) = path.to_str().and_then(|p| p.strip_prefix("builtin:")) {
            return Builtin::from_name(name).map(Source::Builtin);
        }
        Ok(Source::File(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }))
    }

    /// The name used in error messages (the path as resolved, or `builtin:NAME`).
    pub fn display_name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Builtin(b) => format!("builtin:{}", b.name()),
        }
    }
}

/// Reads the named columns of `source`. Every row is checked (field count, UTF-8, JSON syntax)
/// even where the requested cells are fine, so a damaged file is never half-read.
pub(crate) fn read_table(
    source: &Source,
    format: DataFormat,
    columns: &[&str],
) -> Result<Table, DataError> {
    let file = source.display_name();
    match source {
        Source::Builtin(b) => b.table(columns),
        Source::File(path) => read_file(file, path, format, columns),
    }
}

/// Checks that a dataset source is a regular file of at most `max_bytes` (from
/// `limits.max_data_mb`) without reading it. `builtin:` sources always pass.
///
/// # Errors
/// [`DataError::Io`] when the file cannot be inspected; [`DataError::NotRegular`] for a
/// device, pipe or directory (`/dev/zero` would never end); [`DataError::TooLarge`] above the
/// limit.
pub fn check_file(source: &Source, max_bytes: u64) -> Result<(), DataError> {
    let Source::File(path) = source else {
        return Ok(());
    };
    let file = source.display_name();
    let meta = std::fs::metadata(path).map_err(|e| DataError::Io {
        file: file.clone(),
        source: e,
    })?;
    if !meta.is_file() {
        return Err(DataError::NotRegular { file });
    }
    if meta.len() > max_bytes {
        return Err(DataError::TooLarge {
            file,
            bytes: meta.len(),
            limit: max_bytes,
        });
    }
    Ok(())
}
