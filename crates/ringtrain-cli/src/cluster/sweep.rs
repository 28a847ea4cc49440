//! `ringtrain sweep submit|status|watch|best|cancel`: the client side of hyperparameter search,
//! through the public `SweepService` (`proto/ringtrain/v1/sweep.proto`). `submit` validates the
//! sweep file here first (the same validation the coordinator runs, so errors name the file and
//! line), puts the base job spec inline and sends it with the base file's directory.

use super::render::safe;
use super::{CoordinatorArg, request, status_error, stream_request};
use crate::Output;
use anyhow::{Context, Result, bail};
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use ringtrain_proto::v1::sweep_service_client::SweepServiceClient;
use ringtrain_proto::v1::{
    CancelSweepRequest, GetJobRequest, GetSweepRequest, ListSweepsRequest, SubmitSweepRequest,
    Sweep, SweepState, Trial, TrialState,
};
use std::path::PathBuf;
use tonic::transport::Channel;

/// `ringtrain sweep ...`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum SweepCommand {
    /// Submit a sweep (SWEEP.toml) to a coordinator.
    Submit(SubmitArgs),
    /// List sweeps, or show one sweep's trials sorted by the objective.
    Status(StatusArgs),
    /// Follow a sweep until it finishes.
    Watch(WatchArgs),
    /// Write the best trial's full job spec.
    Best(BestArgs),
    /// Cancel a sweep and its running trials.
    Cancel(CancelArgs),
}

/// Arguments of `ringtrain sweep submit`.
#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    /// Sweep spec (TOML). `base = "job.toml"` is read relative to it; the base spec's relative
    /// paths resolve against the base file's directory, which every worker must be able to read.
    sweep: PathBuf,
    /// Follow the sweep until it finishes.
    #[arg(long)]
    watch: bool,
    /// Output style.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain sweep status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One sweep in detail; without it, every sweep (newest first).
    sweep: Option<String>,
    /// Output style.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Also draw the objective per trial and each parameter against the objective (PNGs in
    /// this directory).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain sweep watch`.
#[derive(Debug, clap::Args)]
pub(crate) struct WatchArgs {
    /// Sweep id.
    sweep: String,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain sweep best`.
#[derive(Debug, clap::Args)]
pub(crate) struct BestArgs {
    /// Sweep id.
    sweep: String,
    /// Write the spec here (default: stdout).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain sweep cancel`.
#[derive(Debug, clap::Args)]
pub(crate) struct CancelArgs {
    /// Sweep id.
    sweep: String,
    /// Why (recorded as the sweep's reason).
    #[arg(long, default_value = "cancelled from the command line")]
    reason: String,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Runs a `sweep` subcommand; `Ok(false)` when a followed sweep did not succeed.
pub(crate) fn run(command: SweepCommand) -> Result<bool> {
    match command {
        SweepCommand::Submit(args) => submit(args),
        SweepCommand::Status(args) => status(args).map(|()| true),
        SweepCommand::Watch(args) => {
            args.coordinator.init_token()?;
            super::runtime()?.block_on(follow(&args.coordinator, &args.sweep))
        }
        SweepCommand::Best(args) => best(args).map(|()| true),
        SweepCommand::Cancel(args) => cancel(args).map(|()| true),
    }
}

async fn client(coordinator: &CoordinatorArg) -> Result<SweepServiceClient<Channel>> {
    Ok(SweepServiceClient::new(super::channel(coordinator).await?)
        .max_decoding_message_size(64 << 20))
}

/// The submit request for a sweep file: validated here, base spec inline, base directory
/// absolute.
pub(crate) fn submit_request(path: &std::path::Path) -> Result<SubmitSweepRequest> {
    let spec = ringtrain_sweep::load(path)?;
    let dir = spec.base_dir.clone().unwrap_or_default();
    let dir = std::path::absolute(if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    })
    .with_context(|| format!("resolving the base directory of {}", path.display()))?;
    Ok(SubmitSweepRequest {
        sweep: ringtrain_sweep::to_toml(&spec),
        base_dir: dir.to_string_lossy().into_owned(),
        origin: path.display().to_string(),
    })
}

/// Submits a sweep file; returns the stored sweep.
pub(crate) async fn submit_file(
    coordinator: &CoordinatorArg,
    path: &std::path::Path,
) -> Result<Sweep> {
    let req = submit_request(path)?;
    Ok(client(coordinator)
        .await?
        .submit(request(req))
        .await
        .map_err(|s| status_error(&format!("submitting {}", path.display()), s))?
        .into_inner())
}

fn submit(args: SubmitArgs) -> Result<bool> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let sweep = submit_file(&args.coordinator, &args.sweep).await?;
        if args.watch {
            return follow(&args.coordinator, &sweep.id).await;
        }
        match args.output {
            Output::Json => println!("{}", sweep_json(&sweep)),
            Output::Table => println!(
                "submitted {} ({}): {} trial(s) started",
                safe(&sweep.id),
                safe(&sweep.name),
                sweep.trials_started
            ),
        }
        Ok(true)
    })
}

async fn get(coordinator: &CoordinatorArg, id: &str) -> Result<Sweep> {
    Ok(client(coordinator)
        .await?
        .get(request(GetSweepRequest {
            sweep_id: id.to_string(),
        }))
        .await
        .map_err(|s| status_error(&format!("reading sweep {}", safe(id)), s))?
        .into_inner())
}

fn status(args: StatusArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let Some(id) = &args.sweep else {
            let list = client(&args.coordinator)
                .await?
                .list(request(ListSweepsRequest {}))
                .await
                .map_err(|s| status_error("listing sweeps", s))?
                .into_inner();
            match args.output {
                Output::Json => println!(
                    "{}",
                    serde_json::Value::Array(list.sweeps.iter().map(sweep_value).collect())
                ),
                Output::Table => println!("{}", sweeps_table(&list.sweeps)),
            }
            return Ok(());
        };
        let sweep = get(&args.coordinator, id).await?;
        match args.output {
            Output::Json => println!("{}", sweep_json(&sweep)),
            Output::Table => {
                println!("{}", summary(&sweep));
                println!("{}", trials_table(&sweep));
            }
        }
        if let Some(dir) = &args.plot {
            for path in crate::plot::sweep_plots(&sweep, dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        Ok(())
    })
}

fn best(args: BestArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let sweep = get(&args.coordinator, &args.sweep).await?;
        let Some(trial) = usize::try_from(sweep.best_trial)
            .ok()
            .and_then(|i| sweep.trials.get(i))
        else {
            bail!("{} has no trial with a value yet", safe(&sweep.id));
        };
        let job = super::jobs(&args.coordinator)
            .await?
            .get_job(request(GetJobRequest {
                job_id: trial.job_id.clone(),
            }))
            .await
            .map_err(|s| status_error(&format!("reading job {}", safe(&trial.job_id)), s))?
            .into_inner();
        let header = format!(
            "# Best trial {} of {} ({} = {}), job {}; parameters {}\n",
            trial.index,
            safe(&sweep.id),
            safe(&sweep.metric),
            trial.value,
            safe(&job.id),
            safe(&trial.params_json)
        );
        let text = format!("{header}{}", job.spec);
        match &args.out {
            Some(path) => {
                std::fs::write(path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!(
                    "wrote {} (trial {}, {} = {})",
                    path.display(),
                    trial.index,
                    safe(&sweep.metric),
                    trial.value
                );
            }
            None => print!("{text}"),
        }
        Ok(())
    })
}

fn cancel(args: CancelArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let sweep = client(&args.coordinator)
            .await?
            .cancel(request(CancelSweepRequest {
                sweep_id: args.sweep.clone(),
                reason: args.reason.clone(),
            }))
            .await
            .map_err(|s| status_error(&format!("cancelling {}", safe(&args.sweep)), s))?
            .into_inner();
        println!("{}: {}", safe(&sweep.id), sweep_state(sweep.state));
        Ok(())
    })
}

/// Follows a sweep, one line per change, then prints its trial table. `Ok(true)` when it
/// succeeded.
pub(crate) async fn follow(coordinator: &CoordinatorArg, id: &str) -> Result<bool> {
    let mut stream = client(coordinator)
        .await?
        .watch(stream_request(GetSweepRequest {
            sweep_id: id.to_string(),
        }))
        .await
        .map_err(|s| status_error(&format!("watching sweep {}", safe(id)), s))?
        .into_inner();
    let mut last = None;
    while let Some(sweep) = stream
        .message()
        .await
        .map_err(|s| status_error(&format!("watching sweep {}", safe(id)), s))?
    {
        let line = summary(&sweep);
        if last.as_ref() != Some(&line) {
            eprintln!("{line}");
            last = Some(line);
        }
        if sweep.state != SweepState::Running as i32 {
            println!("{}", trials_table(&sweep));
            return Ok(sweep.state == SweepState::Succeeded as i32);
        }
    }
    bail!(
        "the coordinator ended the watch of {} before the sweep finished",
        safe(id)
    )
}

fn sweep_state(s: i32) -> &'static str {
    match SweepState::try_from(s) {
        Ok(SweepState::Running) => "running",
        Ok(SweepState::Succeeded) => "succeeded",
        Ok(SweepState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn trial_state(s: i32) -> &'static str {
    match TrialState::try_from(s) {
        Ok(TrialState::Queued) => "queued",
        Ok(TrialState::Running) => "running",
        Ok(TrialState::Complete) => "complete",
        Ok(TrialState::Pruned) => "pruned",
        Ok(TrialState::Failed) => "failed",
        Ok(TrialState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

/// One line: state, trials by state, best so far.
fn summary(s: &Sweep) -> String {
    let count = |st: TrialState| s.trials.iter().filter(|t| t.state == st as i32).count();
    let best = usize::try_from(s.best_trial)
        .ok()
        .and_then(|i| s.trials.get(i))
        .map_or(String::new(), |t| {
            format!(
                ", best {} = {:.6} (trial {})",
                safe(&s.metric),
                t.value,
                t.index
            )
        });
    let budget = if s.budget_trials > 0 {
        s.budget_trials.to_string()
    } else {
        "-".into()
    };
    format!(
        "{} ({}, {}): {} — {}/{budget} started, {} running, {} complete, {} pruned, {} failed{best}{}",
        safe(&s.id),
        safe(&s.name),
        s.algorithm,
        sweep_state(s.state),
        s.trials_started,
        count(TrialState::Running) + count(TrialState::Queued),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Failed) + count(TrialState::Cancelled),
        if s.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", safe(&s.reason))
        }
    )
}

/// Trials with a value first, best first (by the sweep's direction), then the rest by index.
pub(crate) fn sorted_trials(s: &Sweep) -> Vec<&Trial> {
    let mut trials: Vec<&Trial> = s.trials.iter().collect();
    let max = s.direction == "max";
    let key = |t: &Trial| {
        if t.has_value && t.value.is_finite() {
            if max { -t.value } else { t.value }
        } else {
            f64::INFINITY
        }
    };
    trials.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.index.cmp(&b.index)));
    trials
}

fn trials_table(s: &Sweep) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![
        "trial".to_string(),
        "state".into(),
        safe(&s.metric),
        "epochs".into(),
        "job".into(),
    ];
    header.extend(s.params.iter().map(|p| safe(p)));
    header.push("reason".into());
    t.set_header(header);
    for trial in sorted_trials(s) {
        let params: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&trial.params_json).unwrap_or_default();
        let mut row = vec![
            trial.index.to_string(),
            trial_state(trial.state).to_string(),
            if trial.has_value {
                format!("{:.6}", trial.value)
            } else {
                "-".into()
            },
            trial.epochs.to_string(),
            safe(&trial.job_id),
        ];
        row.extend(
            s.params
                .iter()
                .map(|p| params.get(p).map_or("-".into(), |v| safe(&v.to_string()))),
        );
        row.push(safe(&trial.reason));
        t.add_row(row);
    }
    t
}

fn sweeps_table(sweeps: &[Sweep]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "sweep",
        "name",
        "state",
        "algorithm",
        "metric",
        "trials",
        "owner",
        "reason",
    ]);
    for s in sweeps {
        t.add_row(vec![
            safe(&s.id),
            safe(&s.name),
            sweep_state(s.state).to_string(),
            s.algorithm.clone(),
            format!("{} ({})", safe(&s.metric), s.direction),
            format!(
                "{}/{}",
                s.trials_started,
                if s.budget_trials > 0 {
                    s.budget_trials.to_string()
                } else {
                    "-".into()
                }
            ),
            safe(&s.owner),
            safe(&s.reason),
        ]);
    }
    t
}

fn sweep_value(s: &Sweep) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "name": s.name,
        "owner": s.owner,
        "state": sweep_state(s.state),
        "reason": s.reason,
        "algorithm": s.algorithm,
        "metric": s.metric,
        "direction": s.direction,
        "budget_trials": s.budget_trials,
        "max_concurrent": s.max_concurrent,
        "trials_started": s.trials_started,
        "best_trial": s.best_trial,
        "params": s.params,
        "trials": s.trials.iter().map(|t| serde_json::json!({
            "index": t.index,
            "state": trial_state(t.state),
            "job_id": t.job_id,
            "value": if t.has_value && t.value.is_finite() { serde_json::json!(t.value) } else { serde_json::Value::Null },
            "epochs": t.epochs,
            "params": serde_json::from_str::<serde_json::Value>(&t.params_json).unwrap_or_default(),
            "curve": t.curve.iter().map(|v| if v.is_finite() { serde_json::json!(v) } else { serde_json::Value::Null }).collect::<Vec<_>>(),
            "reason": t.reason,
        })).collect::<Vec<_>>(),
    })
}

fn sweep_json(s: &Sweep) -> String {
    sweep_value(s).to_string()
}
