//! `ringtrain`: the one command-line program. It parses arguments, sets up logging, the thread
//! pool and the Ctrl-C handler (the only crate that touches the process environment), then hands
//! each subcommand to the library crates.

// The binary's stdout/stderr output is its user interface (tables, JSON, progress).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench_allreduce;
mod bench_train;
mod check;
mod cluster;
mod eval;
mod export;
mod fetch;
mod generate;
mod logging;
mod plot;
mod predict;
mod progress;
mod report;
mod runs;
mod train;

use clap::{Parser, Subcommand};

// mimalloc: with glibc malloc the ~1 MiB gRPC message buffers page-fault heavily (BURN.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Train recurrent neural networks (RNN, LSTM, GRU) on one machine or across a cluster.
#[derive(Debug, Parser)]
#[command(name = "ringtrain", version, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Human)]
    log_format: logging::LogFormat,
    /// Compute device: `cpu` (burn's flex backend), or `cuda:N` in a build with `--features cuda`.
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceArg,
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
    /// Write a trained model as safetensors in PyTorch's layout (`nn.LSTM` parameter names).
    Export(export::ExportArgs),
    /// Validate a job spec and print it with every default filled in.
    Check(check::CheckArgs),
    /// Run a whole cluster on this machine: a coordinator and N workers on 127.0.0.1, one job.
    Local(cluster::local::LocalArgs),
    /// Serve the coordinator: job queue, gang scheduler, state database, rendezvous.
    Coordinator(cluster::serve::CoordinatorArgs),
    /// Serve a worker: register with the coordinator and run the ranks it assigns.
    Worker(cluster::serve::WorkerArgs),
    /// Submit a job to a coordinator.
    Submit(cluster::client::SubmitArgs),
    /// List jobs, or show one in detail.
    Status(cluster::client::StatusArgs),
    /// Follow a job until it finishes.
    Watch(cluster::watch::WatchArgs),
    /// Print a job's log.
    Logs(cluster::client::LogsArgs),
    /// Cancel a queued or running job.
    Cancel(cluster::client::CancelArgs),
    /// List the workers the coordinator knows.
    Workers(cluster::client::WorkersArgs),
    /// Hyperparameter search on a coordinator: submit, status, watch, best, cancel.
    #[command(subcommand)]
    Sweep(cluster::sweep::SweepCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Continue a prompt with a trained language model.
    Generate(generate::GenerateArgs),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Training speed of the standard recurrent config (samples/s, ms/step).
    Train(bench_train::BenchTrainArgs),
    /// All-reduce bandwidth across N local processes.
    Allreduce(bench_allreduce::BenchAllreduceArgs),
}

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    logging::init(cli.log_format, cli.verbose);
    let device = || cli.device.resolve();
    let result = match cli.command {
        Command::Train(args) => device().and_then(|d| train::run(args, d)),
        Command::Eval(args) => device().and_then(|d| eval::run(args, d)),
        Command::Predict(args) => device().and_then(|d| predict::run(args, d)),
        Command::Export(args) => device().and_then(|d| export::run(args, d)),
        Command::Check(args) => check::run(args),
        Command::Generate(args) => device().and_then(|d| generate::run(args, d)),
        Command::Bench(BenchCommand::Train(args)) => {
            device().and_then(|d| bench_train::run(args, d))
        }
        Command::Bench(BenchCommand::Allreduce(args)) => bench_allreduce::run(args),
        Command::Coordinator(args) => cluster::serve::coordinator(args),
        Command::Worker(args) => cluster::serve::worker(args),
        Command::Status(args) => cluster::client::status(args),
        Command::Logs(args) => cluster::client::logs(args),
        Command::Cancel(args) => cluster::client::cancel(args),
        Command::Workers(args) => cluster::client::workers(args),
        // These end with a job: exit status 1 when it did not succeed.
        Command::Local(args) => cluster::local::run(args).and_then(job_outcome),
        Command::Submit(args) => cluster::client::submit(args).and_then(job_outcome),
        Command::Watch(args) => cluster::watch::run(args).and_then(job_outcome),
        Command::Sweep(command) => cluster::sweep::run(command).and_then(|succeeded| {
            if succeeded {
                Ok(())
            } else {
                Err(anyhow::anyhow!("the sweep did not succeed"))
            }
        }),
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

/// `ringtrain status | head`: once the reader has gone, `println!` panics with "failed printing
/// to stdout: Broken pipe". Nobody is left to read the rest, which is not an error: exit quietly
/// with status 0, as `head` expects of a producer, instead of printing a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// The absolute directory of a spec file, which its relative paths resolve against. A bare file
/// name ("job.toml") has the empty path as parent, which `absolute` refuses: that is ".".
pub(crate) fn spec_dir(spec: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let parent = spec
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::path::absolute(parent)
        .with_context(|| format!("resolving the directory of {}", spec.display()))
}

/// A followed job that failed or was cancelled makes the command fail (after its report).
fn job_outcome(succeeded: bool) -> anyhow::Result<()> {
    if succeeded {
        Ok(())
    } else {
        anyhow::bail!("the job did not succeed")
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

/// `--device` as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceArg {
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" | "flex" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(DeviceArg::Cuda)
                .ok_or_else(|| format!("{s:?} is not a device: use cpu, cuda or cuda:N")),
        }
    }
}

impl DeviceArg {
    /// The burn device, or an error when this build lacks the backend.
    fn resolve(self) -> anyhow::Result<burn::prelude::Device> {
        match self {
            DeviceArg::Cpu => Ok(burn::prelude::Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceArg::Cuda(i) => Ok(burn::prelude::Device::cuda(i)),
            #[cfg(not(feature = "cuda"))]
            DeviceArg::Cuda(_) => anyhow::bail!(
                "--device cuda needs a build with `cargo build --release -p ringtrain-cli --features cuda` \
                 (burn's CUDA backend; its build downloads LLVM, so CI builds only the CPU backend)"
            ),
        }
    }
}
