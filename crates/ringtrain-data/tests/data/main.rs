//! Integration tests of ringtrain-data through its public API: loading generated files in every
//! format, one test per error kind (checking file, line and column in the message), shard-plan
//! properties, determinism by seed, absence of target leakage, and train-only fitting.

mod errors;
mod malformed;
mod pairs;
mod series;
mod shard;
mod text;

use ringtrain_spec::{JobSpec, SpecFormat, parse_str};
use std::path::Path;

/// A validated spec from TOML text (the same path the CLI takes).
pub fn spec(toml: &str) -> JobSpec {
    parse_str(toml, SpecFormat::Toml, "test.toml", "test").unwrap_or_else(|e| panic!("{e}"))
}

/// A forecast spec over `path` with the given `[data]` and `[task]` extras.
pub fn forecast(path: &str, data: &str, task: &str) -> JobSpec {
    spec(&format!(
        "[model]\ncell = \"lstm\"\n[task]\nkind = \"forecast\"\n{task}\n[data]\npath = {path:?}\n{data}\n"
    ))
}

/// A classify spec over `path` with the given `[data]` extras.
pub fn classify(path: &str, data: &str) -> JobSpec {
    spec(&format!(
        "seed = 5\n[model]\ncell = \"gru\"\n[task]\nkind = \"classify\"\n[data]\npath = {path:?}\n{data}\n"
    ))
}

/// Writes `contents` to `dir/name`.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).unwrap();
}
