//! `ringtrain`: the one command-line program. It parses arguments, sets up logging, the thread
//! pool and the Ctrl-C handler (the only crate that touches the process environment), then hands
//! each subcommand to the library crates.

// The binary's stdout/stderr output is its user interface (tables, JSON, progress).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench_allreduce;
mod bench_train;
mod check;
mod eval;
mod logging;
mod plot;
mod predict;
mod progress;
mod report;
mod train;

use clap::{Parser, Subcommand};

// mimalloc: with glibc malloc the ~1 MiB gRPC message buffers page-fault heavily (BURN.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Train recurrent neural networks (RNN, LSTM, GRU) on one machine or across a cluster.
#[derive(Debug, Parser)]
#[command(name = "ringtrain", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Human)]
    log_format: logging::LogFormat,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a job in this process (same numerics as a one-worker cluster job).
    Train(train::TrainArgs),
    /// Evaluate a checkpoint on a split of its dataset (or of another file).
    Eval(eval::EvalArgs),
    /// Forecast past the end of a CSV, or classify lines of text.
    Predict(predict::PredictArgs),
    /// Validate a job spec and print it with every default filled in.
    Check(check::CheckArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Training speed of the standard recurrent config (samples/s, ms/step).
    Train(bench_train::BenchTrainArgs),
    /// All-reduce bandwidth across N local processes.
    Allreduce(bench_allreduce::BenchAllreduceArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(BenchCommand::Train(args)) => bench_train::run(args),
        Command::Bench(BenchCommand::Allreduce(args)) => bench_allreduce::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: "reading x: file y: line 3 ...".
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets the size of the global compute thread pool (burn's CPU backend runs on rayon). One thread
/// per process is fastest at these model sizes (BURN.md) and keeps co-located workers from
/// fighting over cores.
pub(crate) fn set_threads(threads: usize) {
    // A second call (e.g. in tests that run several commands in one process) keeps the first pool.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build_global();
}

/// Output style shared by the reporting subcommands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Human-readable tables.
    Table,
    /// One JSON document on stdout, for scripts.
    Json,
}
