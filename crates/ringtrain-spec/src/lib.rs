//! The ringtrain job spec. A spec is read in two phases: [`raw`] is the serde form of the TOML or
//! JSON document (unknown keys rejected), then [`validate()`] checks every value and produces the
//! [`JobSpec`] the rest of ringtrain uses. Every error names the field path (`train.optimizer.lr`),
//! the bad value and what is allowed.

pub mod budget;
pub mod error;
pub mod raw;
pub mod sandbox;
pub mod types;
pub mod validate;
mod wire;

pub use budget::{Budget, check_budget, estimate};
pub use error::{FieldError, SpecError};
pub use sandbox::{Roots, SandboxError};
pub use types::*;
pub use validate::{MAX_NAME_LEN, check_validated, layer_count, validate};

use std::path::Path;

/// Document syntax of a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFormat {
    /// TOML (the usual form).
    Toml,
    /// JSON with the same structure.
    Json,
}

/// Parses and validates a spec from text. `origin` names the source in error messages (a file
/// name, or e.g. `<submitted>`); `default_name` is the job name when the spec has none.
///
/// # Errors
/// [`SpecError::Syntax`] for malformed documents, unknown keys and wrongly typed values (with the
/// field path and, for TOML, the line and column); [`SpecError::Invalid`] for invalid values.
pub fn parse_str(
    text: &str,
    format: SpecFormat,
    origin: &str,
    default_name: &str,
) -> Result<JobSpec, SpecError> {
    let raw: raw::RawSpec = match format {
        SpecFormat::Toml => {
            let de = toml::Deserializer::parse(text)
                .map_err(|e| toml_error(origin, text, &e, "(document)"))?;
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                toml_error(origin, text, e.inner(), &path)
            })?
        }
        SpecFormat::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| SpecError::Syntax {
                origin: format!("{origin}:{}:{}", e.inner().line(), e.inner().column()),
                path: e.path().to_string(),
                message: strip_position(&e.inner().to_string()),
            })?;
            // Without this, `{...} garbage` would be accepted: the parser stops after the value.
            de.end().map_err(|e| SpecError::Syntax {
                origin: format!("{origin}:{}:{}", e.line(), e.column()),
                path: "(document)".into(),
                message: format!("{} after the spec object", strip_position(&e.to_string())),
            })?;
            raw
        }
    };
    validate(raw, default_name)
}

/// Largest spec file [`load`] reads (the coordinator takes at most 1 MiB over the wire).
pub const MAX_SPEC_FILE_BYTES: u64 = 1 << 20;

/// Reads a spec file: `.json` files as JSON, anything else as TOML. The job name defaults to the
/// file stem.
///
/// # Errors
/// [`SpecError::Io`] when the file cannot be read, else as [`parse_str`].
pub fn load(path: &Path) -> Result<JobSpec, SpecError> {
    let io = |error| SpecError::Io {
        path: path.to_path_buf(),
        error,
    };
    // Checked before reading, so `/dev/zero` or a huge file is refused instead of read forever.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    if meta.len() > MAX_SPEC_FILE_BYTES {
        return Err(io(std::io::Error::other(format!(
            "{} bytes; a spec file may have at most {MAX_SPEC_FILE_BYTES} bytes",
            meta.len()
        ))));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => SpecFormat::Json,
        _ => SpecFormat::Toml,
    };
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("job");
    parse_str(&text, format, &path.display().to_string(), stem)
}

fn toml_error(origin: &str, text: &str, e: &toml::de::Error, path: &str) -> SpecError {
    let origin = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{origin}:{line}:{col}")
        }
        None => origin.to_string(),
    };
    SpecError::Syntax {
        origin,
        path: path.to_string(),
        message: e.message().to_string(),
    }
}

/// serde_json appends " at line L column C"; the position is already in the origin.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
