//! Logging setup: `tracing` events to stderr, human-readable or JSON lines, filtered by `-v` or
//! `RUST_LOG`. Colour only when stderr is a terminal and `NO_COLOR` is unset, so log files and
//! pipes get plain text.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Compact text.
    Human,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Installs the global subscriber. `RUST_LOG` wins over `verbose`.
pub(crate) fn init(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_target(false);
    match format {
        LogFormat::Human => builder.compact().init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
