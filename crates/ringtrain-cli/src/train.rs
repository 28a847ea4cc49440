//! `ringtrain train JOB.toml`: train in this process, print the metrics table, optionally plot.

use crate::progress::Progress;
use crate::{Output, plot, report};
use anyhow::Context;
use burn::prelude::Device;
use ringtrain_train::{StopReason, TrainOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Arguments of `ringtrain train`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// Job spec (TOML, or JSON when the file ends in .json).
    spec: PathBuf,
    /// Continue from a checkpoint directory (its latest.ckpt) or file.
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Start a fresh run in a checkpoint directory that already holds one (its best.ckpt and
    /// metrics.json are replaced). Without it, `train` refuses such a directory: continue it
    /// with --resume, or choose another checkpoint.dir / --checkpoint-dir.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Override checkpoint.dir of the spec.
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<PathBuf>,
    /// Override init_from.checkpoint of the spec (a checkpoint file or run directory, relative
    /// to the current directory), e.g. where the pretraining run went.
    #[arg(long, value_name = "DIR")]
    init_from: Option<PathBuf>,
    /// Draw the loss curves (and, for forecasts, predicted vs actual on the test split) to a PNG.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
    /// Compute threads (overrides train.threads).
    #[arg(long)]
    threads: Option<usize>,
    /// Stop after this many steps in total, saving a resumable checkpoint (like a preemption).
    #[arg(long, value_name = "STEPS")]
    halt_after_steps: Option<u64>,
    /// Final report format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Hide training progress: the progress bar, the periodic per-step lines and the per-epoch
    /// lines (losses and validation metrics). The start line, warnings, errors and the final
    /// report are still printed.
    #[arg(long, short)]
    quiet: bool,
}

/// A finished (or interrupted) run is never destroyed by accident: a directory holding a
/// checkpoint or metrics.json of an earlier run needs --resume or --overwrite.
fn refuse_existing_run(dir: &std::path::Path) -> anyhow::Result<()> {
    use ringtrain_train::checkpoint::{BEST, LATEST, PREVIOUS};
    let found: Vec<&str> = [LATEST, BEST, PREVIOUS, "metrics.json"]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    if !found.is_empty() {
        anyhow::bail!(
            "checkpoint.dir {} already holds a run ({}): continue it with --resume {}, start over \
             with --overwrite, or choose another checkpoint.dir / --checkpoint-dir",
            dir.display(),
            found.join(", "),
            dir.display()
        );
    }
    Ok(())
}

pub(crate) fn run(args: TrainArgs, device: Device) -> anyhow::Result<()> {
    let mut spec = ringtrain_spec::load(&args.spec)?;
    // Relative paths in a spec resolve against the spec's directory, as on cluster workers (the
    // job's base_dir); --checkpoint-dir is a command-line path, relative to the current one.
    // Recorded absolute, so the checkpoint (and `eval`/`predict` from any directory) find them.
    let spec_dir = crate::spec_dir(&args.spec)?;
    if let Some(dir) = args.checkpoint_dir {
        spec.checkpoint.dir = std::path::absolute(&dir)
            .with_context(|| format!("resolving --checkpoint-dir {}", dir.display()))?;
    } else if !crate::runs::sets_checkpoint_dir(&args.spec)? {
        // Outputs of a spec that does not place them go under the current directory (or
        // $RINGTRAIN_RUNS), not beside the spec: see `runs`.
        spec.checkpoint.dir = crate::runs::default_dir(&spec.name)?;
    }
    if let Some(path) = args.init_from {
        let Some(init) = &mut spec.init_from else {
            anyhow::bail!(
                "--init-from {}: the spec has no [init_from] section to take it",
                path.display()
            );
        };
        init.checkpoint = std::path::absolute(&path)
            .with_context(|| format!("resolving --init-from {}", path.display()))?;
    }
    spec.resolve_paths(&spec_dir);
    crate::fetch::require_data(&spec_dir, &spec)?;
    if args.resume.is_none() && !args.overwrite {
        refuse_existing_run(&spec.checkpoint.dir)?;
    }
    crate::set_threads(args.threads.unwrap_or(spec.train.threads));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // First Ctrl-C: finish the step, save, exit. Second: the default behaviour (kill).
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to abort)");
        })
        .context("installing the Ctrl-C handler")?;
    }
    let base_dir = spec_dir;
    let opts = TrainOptions {
        base_dir,
        resume: args.resume,
        halt_after_steps: args.halt_after_steps,
        stop: Some(stop),
        device,
        run_id: None,
        commit: None,
        attempt: 1,
    };
    let mut progress = Progress::new(args.quiet);
    let result = ringtrain_train::train(&spec, &opts, &mut progress);
    progress.finish();
    let report = result?;
    match report.stop {
        StopReason::Halted | StopReason::Interrupted => {
            tracing::info!(
                step = report.steps,
                checkpoint = %report.checkpoint_dir.display(),
                "stopped early; continue with --resume {}",
                report.checkpoint_dir.display()
            );
        }
        _ => {}
    }
    if let Some(path) = &args.plot {
        let baselines = plot::baseline_lines(&spec, &opts.base_dir);
        plot::training(path, &report, &progress.step_losses, &baselines)
            .with_context(|| format!("drawing {}", path.display()))?;
        tracing::info!(plot = %path.display(), "plot written");
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => report::print_train(&report),
    }
    Ok(())
}
