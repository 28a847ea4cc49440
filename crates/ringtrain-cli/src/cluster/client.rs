//! The client commands: `submit`, `status`, `logs`, `cancel`, `workers`. Each is one or two
//! unary calls with a deadline; `submit --watch` hands over to [`super::watch`].

use super::render::{self, is_final, state_name};
use super::{CoordinatorArg, request, status_error};
use crate::Output;
use anyhow::{Context, Result};
use ringtrain_proto::v1::{
    CancelJobRequest, GetJobLogsRequest, GetJobRequest, Job, ListJobsRequest, ListWorkersRequest,
    SpecFormat, SubmitJobRequest,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `ringtrain submit`.
#[derive(Debug, clap::Args)]
pub(crate) struct SubmitArgs {
    /// Job spec (TOML, or JSON when the file ends in .json). Relative paths in it resolve against
    /// its directory, which every worker must be able to read.
    spec: PathBuf,
    /// Follow the job until it finishes (progress, then the final metrics).
    #[arg(long)]
    watch: bool,
    /// Output style.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain status`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// One job in detail; without it, every job (newest first).
    job: Option<String>,
    /// Output style.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// Job id.
    job: String,
    /// Keep printing new lines until the job finishes.
    #[arg(long, short)]
    follow: bool,
    /// Output style (json: one object per line).
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain cancel`.
#[derive(Debug, clap::Args)]
pub(crate) struct CancelArgs {
    /// Job id.
    job: String,
    /// Why (recorded in the job's history).
    #[arg(long, default_value = "cancelled from the command line")]
    reason: String,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// Arguments of `ringtrain workers`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkersArgs {
    /// Output style.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(flatten)]
    coordinator: CoordinatorArg,
}

/// The submit request for a spec file: its text, format by extension, and its absolute
/// directory as the base every worker resolves relative paths against.
pub(crate) fn submit_request(spec: &Path) -> Result<SubmitJobRequest> {
    let text =
        std::fs::read_to_string(spec).with_context(|| format!("reading {}", spec.display()))?;
    let format = if spec.extension().is_some_and(|e| e == "json") {
        SpecFormat::Json
    } else {
        SpecFormat::Toml
    };
    let dir = crate::spec_dir(spec)?;
    Ok(SubmitJobRequest {
        spec: text,
        format: format as i32,
        base_dir: dir.to_string_lossy().into_owned(),
        origin: spec.display().to_string(),
    })
}

/// Submits the spec file to the coordinator and returns the stored (queued) job.
pub(crate) async fn submit_file(coordinator: &CoordinatorArg, spec: &Path) -> Result<Job> {
    submit_prepared(coordinator, spec, submit_request(spec)?).await
}

/// Submits a prepared request for the spec file `spec` (named in errors).
pub(crate) async fn submit_prepared(
    coordinator: &CoordinatorArg,
    spec: &Path,
    req: SubmitJobRequest,
) -> Result<Job> {
    super::jobs(coordinator)
        .await?
        .submit_job(request(req))
        .await
        .map_err(|s| status_error(&format!("submitting {}", spec.display()), s))?
        .into_inner()
        .job
        .context("the coordinator answered without a job")
}

pub(crate) fn submit(args: SubmitArgs) -> Result<bool> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let job = submit_file(&args.coordinator, &args.spec).await?;
        if args.watch {
            let end = super::watch::follow(
                &args.coordinator,
                &job.id,
                super::watch::WatchMode::from_output(args.output),
                None,
            )
            .await?;
            return Ok(end.succeeded());
        }
        match args.output {
            Output::Json => println!("{}", render::job_json(&job, false)),
            Output::Table => println!(
                "submitted {} ({}): {}{}",
                render::safe(&job.id),
                render::safe(&job.name),
                state_name(job.state),
                if job.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", render::safe(&job.reason))
                }
            ),
        }
        Ok(true)
    })
}

pub(crate) fn status(args: StatusArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let mut client = super::jobs(&args.coordinator).await?;
        match &args.job {
            Some(id) => {
                let job = client
                    .get_job(request(GetJobRequest { job_id: id.clone() }))
                    .await
                    .map_err(|s| status_error(&format!("job {id}"), s))?
                    .into_inner();
                match args.output {
                    Output::Json => println!("{}", render::job_json(&job, true)),
                    Output::Table => render::print_job(&job),
                }
            }
            None => {
                let jobs = list_all_jobs(&mut client).await?;
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::Value::Array(
                            jobs.iter().map(|j| render::job_json(j, false)).collect()
                        )
                    ),
                    Output::Table if jobs.is_empty() => println!("no jobs"),
                    Output::Table => println!("{}", render::jobs_table(&jobs)),
                }
            }
        }
        Ok(())
    })
}

/// Every job, newest first, following ListJobs pages (each page is bounded in jobs and bytes by
/// the coordinator, so any number of jobs lists within the message limits).
pub(crate) async fn list_all_jobs(
    client: &mut ringtrain_proto::v1::job_service_client::JobServiceClient<
        tonic::transport::Channel,
    >,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_jobs(request(ListJobsRequest {
                page_token: page_token.clone(),
                ..ListJobsRequest::default()
            }))
            .await
            .map_err(|s| status_error("listing jobs", s))?
            .into_inner();
        jobs.extend(page.jobs);
        // A token that does not change would loop forever: stop on it.
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            return Ok(jobs);
        }
        page_token = page.next_page_token;
    }
}

/// Every worker the coordinator knows, following ListWorkers pages.
pub(crate) async fn list_all_workers(
    client: &mut ringtrain_proto::v1::cluster_service_client::ClusterServiceClient<
        tonic::transport::Channel,
    >,
) -> Result<Vec<ringtrain_proto::v1::WorkerInfo>> {
    let mut workers = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_workers(request(ListWorkersRequest {
                page_token: page_token.clone(),
                ..ListWorkersRequest::default()
            }))
            .await
            .map_err(|s| status_error("listing workers", s))?
            .into_inner();
        workers.extend(page.workers);
        // A token that does not change would loop forever: stop on it.
        if page.next_page_token.is_empty() || page.next_page_token == page_token {
            return Ok(workers);
        }
        page_token = page.next_page_token;
    }
}

pub(crate) fn logs(args: LogsArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let mut client = super::jobs(&args.coordinator).await?;
        let mut after = 0;
        // When following: after the job is seen finished, one last read catches the lines
        // recorded between the two calls.
        let mut last_read = false;
        loop {
            let lines = client
                .get_job_logs(request(GetJobLogsRequest {
                    job_id: args.job.clone(),
                    after_seq: after,
                    limit: 0,
                }))
                .await
                .map_err(|s| status_error(&format!("logs of job {}", args.job), s))?
                .into_inner()
                .lines;
            if let Some(first) = lines.first()
                && first.seq > after + 1
                && args.output == Output::Table
            {
                eprintln!(
                    "({} earlier line(s) of this job are no longer kept by the coordinator)",
                    first.seq - after - 1
                );
            }
            for l in &lines {
                match args.output {
                    Output::Json => println!("{}", render::log_json(l)),
                    Output::Table => println!("{}", render::log_text(l)),
                }
                after = after.max(l.seq);
            }
            if !args.follow || last_read {
                return Ok(());
            }
            if lines.is_empty() {
                let job = client
                    .get_job(request(GetJobRequest {
                        job_id: args.job.clone(),
                    }))
                    .await
                    .map_err(|s| status_error(&format!("job {}", args.job), s))?
                    .into_inner();
                last_read = is_final(job.state);
                if !last_read {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    })
}

pub(crate) fn cancel(args: CancelArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let mut client = super::jobs(&args.coordinator).await?;
        let job = client
            .cancel_job(request(CancelJobRequest {
                job_id: args.job.clone(),
                reason: args.reason,
            }))
            .await
            .map_err(|s| status_error(&format!("cancelling job {}", args.job), s))?
            .into_inner();
        println!(
            "{} ({}): {}",
            render::safe(&job.id),
            render::safe(&job.name),
            state_name(job.state)
        );
        Ok(())
    })
}

pub(crate) fn workers(args: WorkersArgs) -> Result<()> {
    args.coordinator.init_token()?;
    super::runtime()?.block_on(async {
        let mut client = super::cluster(&args.coordinator).await?;
        let workers = list_all_workers(&mut client).await?;
        match args.output {
            Output::Json => println!(
                "{}",
                serde_json::Value::Array(workers.iter().map(render::worker_json).collect())
            ),
            Output::Table if workers.is_empty() => println!("no workers registered"),
            Output::Table => println!("{}", render::workers_table(&workers)),
        }
        Ok(())
    })
}
