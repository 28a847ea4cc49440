//! Elastic data parallelism through the real binaries (issue 16): a coordinator and workers each
//! in a network namespace of their own (`common::netns`), an elastic job
//! (`[parallel.elastic]`), and a worker killed with SIGKILL. The survivors re-form the ring
//! among themselves from their in-memory commit instead of waiting for a full restart, the job
//! grows back when the worker returns, below `min` it waits with its reason in `status`, and
//! the sample ids every rank recorded show each epoch trained exactly its shard plan — no
//! sample twice, none missing.
//!
//! Skipped with a message where namespaces cannot be made (not root); `.ci/run` sets
//! `RINGTRAIN_REQUIRE_NETNS` so that CI fails instead of skipping.

// Tests report timings on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::cluster_spec;
use common::faults::{Fault, now_ms};
use common::services::{Cluster, Flags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An elastic job on the bundled seasonal series: `min..=max` workers, global batch 12, a commit
/// every 20 steps, `steps` steps, every rank's sample ids recorded.
fn elastic_spec(dir: &Path, name: &str, min: u32, max: u32, steps: u64) -> PathBuf {
    let path = cluster_spec(dir, name, max, 12, 100_000, &format!("max_steps = {steps}"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        format!(
            "{text}every_steps = 500\nmax_restarts = 3\nrecord_samples = true\n\
             [parallel.elastic]\nmin = {min}\nmax = {max}\ncommit_every = 20\n"
        ),
    )
    .unwrap();
    path
}

/// The job's checkpoint directory (`runs/NAME/<job id>` beside the spec).
fn run_dir(spec: &Path, id: &str) -> PathBuf {
    spec.parent()
        .unwrap()
        .join("runs")
        .join(spec.file_stem().unwrap())
        .join(id)
}

/// Asserts that every epoch the job trained is exactly a prefix of its shard plan (the whole
/// plan for every epoch but the last): each sample once, plus the plan's own padding. Returns
/// the number of samples trained.
fn assert_exactly_once(dir: &Path) -> usize {
    let epochs = ringtrain_train::trainer::samples::trained_by_epoch(dir).unwrap();
    assert!(epochs.len() >= 2, "{} epochs recorded", epochs.len());
    // Epoch 0 is complete: its distinct ids are the training split.
    let n = epochs[&0].iter().copied().max().unwrap() + 1;
    let last = *epochs.keys().last().unwrap();
    let mut total = 0;
    for (epoch, ids) in &epochs {
        let plan = ringtrain_data::ShardPlan::new(n, 5, ringtrain_core::Epoch(*epoch), 1, 12, true)
            .unwrap();
        if *epoch < last {
            assert_eq!(ids.len(), plan.order().len(), "epoch {epoch} is incomplete");
        }
        assert_eq!(ids.len() % 12, 0, "epoch {epoch}: a partial global batch");
        assert!(
            ids[..] == plan.order()[..ids.len()],
            "epoch {epoch}: the trained samples are not the shard plan's (a sample twice or \
             missing)"
        );
        total += ids.len();
    }
    total
}

/// The job's log lines.
fn log_lines(cluster: &Cluster, id: &str) -> String {
    cluster.cli_ok(&["logs", id])
}

/// Waits until `pred` holds for the job, polling `status`.
fn wait(cluster: &Cluster, id: &str, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
    cluster.wait_job(id, secs, pred)
}

/// One worker of three is killed mid-run: the two others re-form the ring from their
/// in-memory commit (attempt 2, 2 ranks), the job grows back to 3 once the worker is started
/// again (attempt 3, continuing from the step the ranks stopped at together), finishes, and
/// every sample of every epoch was trained exactly once.
#[test]
fn an_elastic_job_re_forms_on_its_survivors_and_grows_back() {
    let test = "an_elastic_job_re_forms_on_its_survivors_and_grows_back";
    let Some(mut cluster) = Cluster::in_namespaces(5, 3, Flags::default(), test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Long enough for both re-forms to land while the job trains (about 1,000 steps a second
    // with 3 ranks here; a re-form waits for the lost worker's 3 s lease).
    let spec = elastic_spec(dir.path(), "elastic", 2, 3, 12_000);
    let id = cluster.submit(&spec);
    let job = wait(&cluster, &id, 90, |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 100
    });
    assert_eq!(job["workers"].as_array().unwrap().len(), 3, "{job:#}");
    let victim = cluster.worker_of(&job, 1);
    let killed = Instant::now();
    cluster.workers[victim].kill9();
    // The survivors re-form without it: attempt 2 on 2 workers.
    let shrunk = wait(&cluster, &id, 60, |j| {
        j["attempt"] == 2 && j["state"] == "running"
    });
    let shrink_s = killed.elapsed().as_secs_f64();
    assert_eq!(shrunk["workers"].as_array().unwrap().len(), 2, "{shrunk:#}");
    let logs = log_lines(&cluster, &id);
    assert!(
        logs.contains("re-forming on the remaining workers"),
        "{logs}"
    );
    assert!(
        logs.contains("resumed at step") && logs.contains("in-memory commit of step"),
        "attempt 2 did not continue from an in-memory commit:\n{logs}"
    );
    // The worker comes back (a new process, a new registration): the job grows to 3.
    let back = Instant::now();
    cluster.restart_worker(victim);
    let grown = wait(&cluster, &id, 60, |j| {
        (j["attempt"] == 3 && j["state"] == "running") || j["state"] == "succeeded"
    });
    let grow_s = back.elapsed().as_secs_f64();
    assert_eq!(
        grown["attempt"], 3,
        "the job finished before it grew: {grown:#}"
    );
    assert_eq!(grown["workers"].as_array().unwrap().len(), 3, "{grown:#}");
    let done = wait(&cluster, &id, 300, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert_eq!(done["result"]["steps"], 12_000);
    let logs = log_lines(&cluster, &id);
    assert!(
        logs.contains("growing from 2 to 3 workers") && logs.contains("grow 1"),
        "{logs}"
    );
    // Attempt 3 continued from the step where attempt 2's ranks stopped together.
    let stopped: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.split("(stopped after step ").nth(1))
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(stopped.len(), 2, "both ranks of attempt 2 stop: {logs}");
    assert_eq!(stopped[0], stopped[1], "{logs}");
    assert!(
        logs.contains(&format!("resumed at step {} from rank", stopped[0])),
        "attempt 3 did not continue from step {}:\n{logs}",
        stopped[0]
    );
    let trained = assert_exactly_once(&run_dir(&spec, &id));
    assert_eq!(trained, 12_000 * 12);
    eprintln!(
        "{test}: kill -> re-formed on 2 workers in {shrink_s:.1} s; worker back -> grown to 3 \
         in {grow_s:.1} s (lease 3 s)"
    );
    cluster.wait_idle_workers(3);
    cluster.stop();
}

/// Below `min` the job waits, queued, saying why; it resumes (from the survivor's commit) once
/// a worker returns, and still trains every sample exactly once.
#[test]
fn an_elastic_job_below_min_waits_with_its_reason_and_resumes() {
    let test = "an_elastic_job_below_min_waits_with_its_reason_and_resumes";
    let Some(mut cluster) = Cluster::in_namespaces(4, 2, Flags::default(), test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = elastic_spec(dir.path(), "patient", 2, 2, 8_000);
    let id = cluster.submit(&spec);
    let job = wait(&cluster, &id, 90, |j| {
        j["state"] == "running" && j["progress"]["step"].as_u64().unwrap_or(0) > 100
    });
    let victim = cluster.worker_of(&job, 0);
    cluster.workers[victim].kill9();
    let waiting = wait(&cluster, &id, 60, |j| {
        j["state"] == "queued"
            && j["reason"]
                .as_str()
                .is_some_and(|r| r.contains("needs at least 2 workers"))
    });
    eprintln!("{test}: waiting: {}", waiting["reason"]);
    // Nothing happens while it waits.
    std::thread::sleep(Duration::from_secs(2));
    let still = cluster.json(&["status", &id]);
    assert_eq!(still["state"], "queued", "{still:#}");
    assert_eq!(still["attempt"], 1, "{still:#}");
    cluster.restart_worker(victim);
    let done = wait(&cluster, &id, 300, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert_eq!(done["attempt"], 2, "{done:#}");
    let logs = log_lines(&cluster, &id);
    assert!(
        logs.contains("in-memory commit of step")
            && logs.contains("(elastic; 1 of 2 ranks held one)"),
        "attempt 2 did not continue from the survivor's commit:\n{logs}"
    );
    assert_eq!(assert_exactly_once(&run_dir(&spec, &id)), 8_000 * 12);
    cluster.wait_idle_workers(2);
    cluster.stop();
}

/// Random faults of five kinds against one elastic job on 3 workers (`min` 2): after each, the
/// survivors re-form on 2 workers, the healed worker comes back and the job grows to 3 again.
/// Prints each fault's shrink time (fault -> training again on 2 workers) and grow time
/// (worker healed -> training again on 3) with p50 / max, and asserts that nothing hangs (every
/// wait is bounded), the job succeeds, and every epoch trained exactly its shard plan.
/// `RINGTRAIN_ELASTIC_SOAK_FAULTS` sets the count (default 3; `bench/elastic_soak.sh` runs 20).
#[test]
fn an_elastic_soak_of_random_faults_trains_every_sample_once() {
    let test = "an_elastic_soak_of_random_faults_trains_every_sample_once";
    let faults: usize = std::env::var("RINGTRAIN_ELASTIC_SOAK_FAULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let Some(mut cluster) = Cluster::in_namespaces(5, 3, Flags::default(), test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Each fault pauses training for about a lease and lets it run on 2 workers while the
    // worker comes back: 8,000 steps a fault leave room on a slow machine.
    let steps = 8_000 * (faults as u64 + 1);
    let spec = elastic_spec(dir.path(), "soak", 2, 3, steps);
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "max_restarts = 3",
            &format!("max_restarts = {}", faults + 1),
        ),
    )
    .unwrap();
    let id = cluster.submit(&spec);
    let kinds = [
        Fault::Kill,
        Fault::Cut,
        Fault::CutOutbound,
        Fault::Stall,
        Fault::CoordinatorCut,
    ];
    let mut seed = 0xe1a5_u64;
    let mut timings: Vec<(Fault, u64, u64)> = Vec::new();
    let mut attempt = 1u64;
    for n in 0..faults {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kind = kinds[(seed % kinds.len() as u64) as usize];
        let job = wait(&cluster, &id, 120, |j| {
            (j["state"] == "running"
                && j["attempt"] == attempt
                && j["workers"].as_array().is_some_and(|w| w.len() == 3)
                && j["progress"]["step"].as_u64().unwrap_or(0) > 0)
                || j["state"] == "succeeded"
        });
        if job["state"] == "succeeded" {
            eprintln!("the job finished after {n} of {faults} faults");
            break;
        }
        let victim = cluster.worker_of(&job, ((seed >> 8) % 3) as usize);
        let at = now_ms();
        kind.inject(&mut cluster, victim);
        let shrunk = wait(&cluster, &id, 120, |j| {
            (j["attempt"] == attempt + 1 && j["state"] == "running") || j["state"] == "succeeded"
        });
        if shrunk["state"] == "succeeded" {
            kind.heal(&mut cluster, victim);
            eprintln!("fault {n}: {kind:?}: the job finished before the fault was noticed");
            break;
        }
        assert_eq!(shrunk["workers"].as_array().unwrap().len(), 2, "{shrunk:#}");
        let shrink = last_running_ms(&shrunk).saturating_sub(at);
        let healed = now_ms();
        kind.heal(&mut cluster, victim);
        let grown = wait(&cluster, &id, 120, |j| {
            (j["attempt"] == attempt + 2 && j["state"] == "running") || j["state"] == "succeeded"
        });
        if grown["state"] == "succeeded" {
            eprintln!("fault {n}: {kind:?}: the job finished before it grew back");
            timings.push((kind, shrink, u64::MAX));
            break;
        }
        assert_eq!(grown["workers"].as_array().unwrap().len(), 3, "{grown:#}");
        let grow = last_running_ms(&grown).saturating_sub(healed);
        eprintln!("fault {n}: {kind:?} of worker {victim}: shrink {shrink} ms, grow {grow} ms");
        timings.push((kind, shrink, grow));
        attempt += 2;
    }
    let done = wait(&cluster, &id, 600, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert!(
        !timings.is_empty(),
        "no fault landed before the job finished"
    );
    assert_eq!(
        assert_exactly_once(&run_dir(&spec, &id)),
        steps as usize * 12
    );
    let stat = |v: Vec<u64>| {
        let mut v: Vec<u64> = v.into_iter().filter(|t| *t != u64::MAX).collect();
        v.sort_unstable();
        v.last().map(|max| (v[v.len() / 2], *max))
    };
    if let Some((s50, smax)) = stat(timings.iter().map(|t| t.1).collect()) {
        let (g50, gmax) = stat(timings.iter().map(|t| t.2).collect()).unwrap_or((0, 0));
        eprintln!(
            "elastic soak of {} faults: shrink p50 {s50} ms, max {smax} ms; grow p50 {g50} ms, \
             max {gmax} ms; every sample trained exactly once",
            timings.len()
        );
        // Bounded by the lease plus the collective deadline, never a hang.
        assert!(smax <= 13_000, "shrink {smax} ms");
    }
    cluster.wait_idle_workers(3);
    cluster.stop();
}

/// When the job last entered `running`.
fn last_running_ms(job: &Value) -> u64 {
    job["history"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|h| h["state"] == "running")
        .and_then(|h| h["at_ms"].as_u64())
        .unwrap()
}
