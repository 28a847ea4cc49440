//! `ringtrain bench train`: samples/s and ms/step of the standard recurrent config, the number
//! `bench/train.sh` puts next to PyTorch's.

use crate::Output;
use burn::prelude::Device;
use ringtrain_spec::CellKind;
use ringtrain_train::bench::{BenchConfig, bench_train};

/// Arguments of `ringtrain bench train`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchTrainArgs {
    /// Recurrent cell.
    #[arg(long, value_enum, default_value_t = Cell::Lstm)]
    cell: Cell,
    /// Compute threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Recurrent layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Input features.
    #[arg(long, default_value_t = 32)]
    input: usize,
    /// Hidden units.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 50)]
    seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Cell {
    Lstm,
    Gru,
    Rnn,
}

pub(crate) fn run(args: BenchTrainArgs, device: Device) -> anyhow::Result<()> {
    crate::set_threads(args.threads);
    let config = BenchConfig {
        cell: match args.cell {
            Cell::Lstm => CellKind::Lstm,
            Cell::Gru => CellKind::Gru,
            Cell::Rnn => CellKind::Rnn,
        },
        layers: args.layers,
        input: args.input,
        hidden: args.hidden,
        batch: args.batch,
        seq: args.seq,
        steps: args.steps,
        warmup: args.warmup,
        bidirectional: false,
    };
    let r = bench_train(&config, &device)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&r)?),
        Output::Table => println!(
            "ringtrain {:?} layers={} input={} hidden={} batch={} seq={} threads={}: {:.1} ms/step, {:.0} samples/s ({} params, median of {} steps)",
            config.cell,
            config.layers,
            config.input,
            config.hidden,
            config.batch,
            config.seq,
            args.threads,
            r.median_ms,
            r.samples_per_sec,
            r.params,
            r.step_ms.len()
        ),
    }
    Ok(())
}
