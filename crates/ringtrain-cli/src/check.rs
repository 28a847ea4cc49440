//! `ringtrain check JOB.toml`: validate a spec and print it with every default filled in.

use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `ringtrain check`.
#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    /// Job spec (TOML, or JSON when the file ends in .json).
    spec: PathBuf,
}

pub(crate) fn run(args: CheckArgs) -> anyhow::Result<()> {
    let spec = ringtrain_spec::load(&args.spec)?;
    let json = serde_json::to_string_pretty(&spec).context("serializing the spec")?;
    println!("{json}");
    Ok(())
}
