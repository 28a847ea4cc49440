//! `ringtrain eval --checkpoint DIR`: score a trained model on a split of its dataset, or on
//! every sample of another file prepared with the checkpoint's normalization/vocabulary; with
//! `--quantize int8`, the weights an int8 export holds.

use crate::{Output, report};
use burn::prelude::Device;
use ringtrain_data::SplitName;
use ringtrain_spec::Split;
use ringtrain_train::checkpoint::{Checkpoint, resolve_for_inference};
use ringtrain_train::{TaskData, evaluate, inference};
use std::path::PathBuf;

/// Arguments of `ringtrain eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Checkpoint directory (best.ckpt, else latest.ckpt) or file.
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Evaluate every sample of this file instead (same columns as the training data).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Split of the training dataset to evaluate (ignored with --data).
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Evaluate the weights an int8 export holds (`ringtrain export --quantize int8`): what
    /// int8 costs, beside the plain evaluation.
    #[arg(long, value_enum)]
    quantize: Option<crate::export::Quantize>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SplitArg {
    Train,
    Val,
    Test,
}

pub(crate) fn run(args: EvalArgs, device: Device) -> anyhow::Result<()> {
    crate::set_threads(1);
    if args.batch_size == 0 || args.batch_size > 1_000_000 {
        anyhow::bail!(
            "--batch-size {} is out of range: must be in 1..=1000000",
            args.batch_size
        );
    }
    let path = resolve_for_inference(&args.checkpoint)?;
    let mut ckpt = Checkpoint::load(&path)?;
    match args.quantize {
        Some(crate::export::Quantize::Int8) => {
            ringtrain_train::export::fake_quantize_checkpoint(&mut ckpt, &device)?;
        }
        None => {}
    }
    let mut spec = ckpt.header.spec.clone();
    let split = match &args.data {
        Some(file) => {
            spec.data.path = file.clone();
            // The whole file is one split; normalization/vocabulary come from the checkpoint.
            spec.data.split = Split {
                train: 1.0,
                val: 0.0,
                test: 0.0,
            };
            SplitName::Train
        }
        None => match args.split {
            SplitArg::Train => SplitName::Train,
            SplitArg::Val => SplitName::Val,
            SplitArg::Test => SplitName::Test,
        },
    };
    let data =
        ringtrain_data::load_with(&spec, &std::env::current_dir()?, Some(&ckpt.header.fitted))?;
    let task = TaskData::new(&spec, data)?;
    let model = inference::load_model(&ckpt, &device)?;
    let report = evaluate(&model, &task, split, args.batch_size, &device)?;
    tracing::info!(checkpoint = %path.display(), step = ckpt.header.progress.step, "evaluated");
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => report::print_eval(&report),
    }
    Ok(())
}
