//! Unit tests of the pure state machine: every rule of the module docs, driven by explicit times.

use super::*;

const LEASE: i64 = 10_000;

fn machine() -> Machine {
    Machine::new(MachineConfig {
        lease_ms: LEASE,
        collective_timeout_ms: 60_000,
        checksum_every: 50,
        progress_save_ms: 0,
    })
}

fn new_job(world: u32) -> NewJob {
    NewJob {
        name: format!("j{world}"),
        spec: "name = \"x\"".into(),
        format: SpecFormat::Toml,
        base_dir: "/tmp".into(),
        world,
        max_restarts: 0,
        owner: String::new(),
        elastic: None,
    }
}

fn new_worker(port: u16) -> NewWorker {
    NewWorker {
        name: format!("host:{port}"),
        peer_address: format!("127.0.0.1:{port}"),
        metrics_address: String::new(),
        version: "0.1.0".into(),
        resources: Resources::default(),
    }
}

fn workers(m: &mut Machine, n: u16, now: i64) -> Vec<WorkerId> {
    (0..n)
        .map(|i| m.register(new_worker(40_000 + i), now))
        .collect()
}

fn running(job: &JobId, attempt: u32, rank: u32) -> RunningRank {
    RunningRank {
        job: job.clone(),
        attempt,
        rank,
    }
}

fn phase(
    m: &mut Machine,
    w: &WorkerId,
    job: &JobId,
    rank: u32,
    p: RankPhase,
    now: i64,
) -> ProgressAck {
    m.progress(
        ProgressReport {
            worker: w.clone(),
            job: job.clone(),
            attempt: 1,
            rank,
            phase: Some(p),
            report: RankReport {
                step: 3,
                loss: 0.5,
                samples_per_sec: 100.0,
                val_loss: f64::NAN,
                ..RankReport::default()
            },
            logs: vec![(LogLevel::Info, format!("rank {rank} says hi"))],
        },
        now,
    )
    .expect("progress accepted")
}

fn outcome(m: &mut Machine, w: &WorkerId, job: &JobId, rank: u32, o: RankOutcome, now: i64) {
    m.result(
        ResultReport {
            worker: w.clone(),
            job: job.clone(),
            attempt: 1,
            rank,
            outcome: o,
            blamed: None,
        },
        now,
    )
    .expect("result accepted");
}

fn success(rank: u32) -> RankOutcome {
    RankOutcome::Succeeded((rank == 0).then(|| JobResultData {
        metrics: [("test.mse".to_string(), 0.25)].into_iter().collect(),
        report_json: "{}".into(),
        steps: 10,
        stop_reason: "completed".into(),
        ..JobResultData::default()
    }))
}

fn states(m: &Machine, job: &JobId) -> Vec<JobState> {
    m.job(job)
        .expect("job")
        .history
        .iter()
        .map(|t| t.state)
        .collect()
}

/// Starts a job of `world` ranks on fresh workers and brings it to Running.
fn running_job(m: &mut Machine, world: u16) -> (JobId, Vec<WorkerId>) {
    let ws = workers(m, world, 0);
    let job = m.submit(new_job(world as u32), 0);
    for (r, w) in ws.iter().enumerate() {
        let cmds = m.take_commands(w, 0).unwrap();
        assert_eq!(cmds.start.len(), 1);
        m.heartbeat(w, vec![running(&job, 1, r as u32)], 10)
            .unwrap();
        phase(m, w, &job, r as u32, RankPhase::Training, 20);
    }
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);
    (job, ws)
}

#[test]
fn ids_are_sequential_and_never_reused() {
    let mut m = machine();
    let a = m.submit(new_job(1), 0);
    let b = m.submit(new_job(1), 0);
    assert_eq!((a.as_str(), b.as_str()), ("job-1", "job-2"));
    let ws = workers(&mut m, 2, 0);
    assert_eq!(ws[0].as_str(), "w-1");
    assert_eq!(ws[1].as_str(), "w-2");
}

#[test]
fn a_job_waits_with_a_reason_until_enough_workers_are_idle() {
    let mut m = machine();
    workers(&mut m, 2, 0);
    let job = m.submit(new_job(3), 0);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.reason, "needs 3 workers, 2 of 2 alive are idle");
    assert!(j.workers.is_empty());
    m.register(new_worker(50_000), 5);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting);
    assert_eq!(j.reason, "");
    assert_eq!(j.workers.len(), 3);
    assert_eq!(j.started_ms, 5);
    assert_eq!(j.session, "job-1/1");
}

#[test]
fn assignments_carry_rank_world_session_and_settings() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    let job = m.submit(new_job(2), 1);
    let effects = m.drain_effects();
    assert!(effects.contains(&Effect::Wake(ws[0].clone())));
    assert!(effects.contains(&Effect::Wake(ws[1].clone())));
    for (r, w) in ws.iter().enumerate() {
        let cmds = m.take_commands(w, 0).unwrap();
        assert!(cmds.stop.is_empty());
        let a = &cmds.start[0];
        assert_eq!(a.job, job);
        assert_eq!((a.rank, a.world, a.attempt), (r as u32, 2, 1));
        assert_eq!(a.workers, ws);
        assert_eq!(a.session, "job-1/1");
        assert_eq!(a.collective_timeout_ms, 60_000);
        assert_eq!(a.checksum_every, 50);
        // Taken once.
        assert!(m.take_commands(w, 0).unwrap().start.is_empty());
    }
}

#[test]
fn running_needs_every_rank_training_and_success_needs_every_rank() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    let job = m.submit(new_job(2), 0);
    phase(&mut m, &ws[0], &job, 0, RankPhase::Starting, 1);
    phase(&mut m, &ws[0], &job, 0, RankPhase::Training, 2);
    assert_eq!(m.job(&job).unwrap().state, JobState::Starting);
    phase(&mut m, &ws[1], &job, 1, RankPhase::Training, 3);
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);

    outcome(&mut m, &ws[1], &job, 1, success(1), 4);
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);
    outcome(&mut m, &ws[0], &job, 0, success(0), 5);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Succeeded);
    assert_eq!(j.finished_ms, 5);
    let result = j.result.as_ref().expect("result");
    assert_eq!(result.metrics["test.mse"], 0.25);
    assert_eq!(result.stop_reason, "completed");
    assert_eq!(
        states(&m, &job),
        [
            JobState::Queued,
            JobState::Starting,
            JobState::Running,
            JobState::Succeeded
        ]
    );
}

#[test]
fn a_job_finishing_before_reporting_training_still_passes_through_running() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let job = m.submit(new_job(1), 0);
    outcome(&mut m, &ws[0], &job, 0, success(0), 1);
    assert_eq!(
        states(&m, &job),
        [
            JobState::Queued,
            JobState::Starting,
            JobState::Running,
            JobState::Succeeded
        ]
    );
}

#[test]
fn first_failure_fails_the_job_naming_the_rank_and_stops_the_others() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 3);
    m.drain_effects();
    outcome(&mut m, &ws[1], &job, 1, failed("dataset missing"), 30);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.reason, "rank 1: dataset missing");
    // Ranks 0 and 2 are told to stop, rank 1 (which failed) is not.
    for (r, w) in ws.iter().enumerate() {
        let stops = m.take_commands(w, 0).unwrap().stop;
        if r == 1 {
            assert!(stops.is_empty());
        } else {
            assert_eq!(stops.len(), 1);
            assert!(
                stops[0].reason.contains("rank 1: dataset missing"),
                "{:?}",
                stops[0]
            );
            // A failed attempt's ranks drop collectives in flight: a peer may be gone.
            assert!(stops[0].abort, "{:?}", stops[0]);
        }
    }
    // A later failure of another rank changes nothing.
    outcome(&mut m, &ws[2], &job, 2, failed("peer gone"), 31);
    assert_eq!(m.job(&job).unwrap().reason, "rank 1: dataset missing");
}

fn failed(m: &str) -> RankOutcome {
    RankOutcome::Failed(m.to_string())
}

#[test]
fn a_failure_message_already_naming_the_rank_is_not_prefixed_twice() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    outcome(
        &mut m,
        &ws[0],
        &job,
        0,
        failed("rank 0: collective all_reduce: rank 1 lost"),
        30,
    );
    assert_eq!(
        m.job(&job).unwrap().reason,
        "rank 0: collective all_reduce: rank 1 lost"
    );
}

#[test]
fn cancel_is_immediate_and_workers_stay_busy_until_they_stopped() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    m.cancel(&job, "not needed", 40).unwrap();
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(j.reason, "not needed");
    // A new job must not land on the still-running workers.
    let next = m.submit(new_job(1), 41);
    assert_eq!(m.job(&next).unwrap().state, JobState::Queued);
    for w in &ws {
        assert_eq!(m.worker(w).unwrap().state(), WorkerState::Busy);
        let cmds = m.take_commands(w, 0).unwrap();
        assert_eq!(cmds.stop.len(), 1);
        assert_eq!(cmds.stop[0].job, job);
        // A cancel stops the ranks together at a step boundary.
        assert!(!cmds.stop[0].abort, "{:?}", cmds.stop[0]);
    }
    // Still listed by the first heartbeat after the stop: still busy.
    m.heartbeat(&ws[0], vec![running(&job, 1, 0)], 42).unwrap();
    assert_eq!(m.worker(&ws[0]).unwrap().state(), WorkerState::Busy);
    assert_eq!(m.job(&next).unwrap().state, JobState::Queued);
    // Gone from the heartbeat: idle, and the queued job takes it.
    m.heartbeat(&ws[0], vec![], 43).unwrap();
    assert_eq!(m.job(&next).unwrap().state, JobState::Starting);
    assert_eq!(m.job(&next).unwrap().workers, vec![ws[0].clone()]);
    // Progress of the cancelled job is answered with stop.
    let ack = m
        .progress(
            ProgressReport {
                worker: ws[1].clone(),
                job: job.clone(),
                attempt: 1,
                rank: 1,
                phase: Some(RankPhase::Training),
                report: RankReport::default(),
                logs: vec![],
            },
            44,
        )
        .unwrap();
    assert!(ack.stop.unwrap().contains("cancelled"));
}

#[test]
fn cancel_of_a_queued_job_and_finished_jobs() {
    let mut m = machine();
    let job = m.submit(new_job(2), 0);
    m.cancel(&job, "", 1).unwrap();
    assert_eq!(m.job(&job).unwrap().state, JobState::Cancelled);
    assert_eq!(m.job(&job).unwrap().reason, "cancelled by a client");
    // Cancelling again is a no-op.
    m.cancel(&job, "again", 2).unwrap();
    assert_eq!(m.job(&job).unwrap().history.len(), 2);

    let ws = workers(&mut m, 1, 3);
    let done = m.submit(new_job(1), 3);
    outcome(&mut m, &ws[0], &done, 0, success(0), 4);
    assert_eq!(
        m.cancel(&done, "late", 5),
        Err(MachineError::JobFinished {
            job: done.clone(),
            state: JobState::Succeeded
        })
    );
    assert_eq!(
        m.cancel(&JobId::new("job-99"), "", 5),
        Err(MachineError::UnknownJob(JobId::new("job-99")))
    );
}

#[test]
fn an_undelivered_assignment_is_withdrawn_on_cancel_and_the_worker_is_free_at_once() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let job = m.submit(new_job(1), 0);
    m.cancel(&job, "oops", 1).unwrap();
    let cmds = m.take_commands(&ws[0], 0).unwrap();
    assert!(cmds.start.is_empty() && cmds.stop.is_empty());
    assert_eq!(m.worker(&ws[0]).unwrap().state(), WorkerState::Idle);
}

#[test]
fn lease_expiry_loses_the_worker_and_fails_its_job_naming_rank_worker_and_address() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    // Worker 0 keeps heartbeating; worker 1 goes silent after t=10.
    m.heartbeat(&ws[0], vec![running(&job, 1, 0)], LEASE - 1)
        .unwrap();
    m.tick(LEASE - 1);
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);
    m.tick(LEASE + 20);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.reason,
        "rank 1 (worker w-2, 127.0.0.1:40001) lost: no heartbeat for 10.0 s"
    );
    assert_eq!(m.worker(&ws[1]).unwrap().state(), WorkerState::Lost);
    // The survivor is told to stop.
    let stops = m.take_commands(&ws[0], 0).unwrap().stop;
    assert_eq!(stops.len(), 1);
    // A lost worker must register again.
    assert!(matches!(
        m.heartbeat(&ws[1], vec![], LEASE + 11),
        Err(MachineError::WorkerLost { .. })
    ));
    assert_eq!(m.worker_counts()[&WorkerState::Lost], 1);
}

#[test]
fn an_assignment_never_confirmed_within_a_lease_fails_the_job() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let job = m.submit(new_job(1), 0);
    assert_eq!(m.take_commands(&ws[0], 0).unwrap().start.len(), 1);
    // The worker heartbeats but never lists (or reports) the rank.
    for t in [3_000, 6_000, 9_000] {
        m.heartbeat(&ws[0], vec![], t).unwrap();
        m.tick(t);
    }
    assert_eq!(m.job(&job).unwrap().state, JobState::Starting);
    m.heartbeat(&ws[0], vec![], LEASE).unwrap();
    m.tick(LEASE);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.reason,
        "rank 0 (worker w-1, 127.0.0.1:40000) did not start within the lease (10.0 s)"
    );
}

#[test]
fn a_rank_that_vanishes_without_a_result_fails_the_job_after_a_lease() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 1);
    m.heartbeat(&ws[0], vec![], 100).unwrap();
    m.tick(100 + LEASE - 1);
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);
    m.heartbeat(&ws[0], vec![], 100 + LEASE).unwrap();
    m.tick(100 + LEASE);
    assert_eq!(
        m.job(&job).unwrap().reason,
        "rank 0 (worker w-1, 127.0.0.1:40000) stopped running without reporting a result"
    );
}

#[test]
fn a_result_arriving_after_the_rank_left_the_heartbeat_still_counts() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 1);
    m.heartbeat(&ws[0], vec![], 100).unwrap();
    outcome(&mut m, &ws[0], &job, 0, success(0), 200);
    m.tick(100 + LEASE + 1);
    assert_eq!(m.job(&job).unwrap().state, JobState::Succeeded);
    assert_eq!(m.worker(&ws[0]).unwrap().state(), WorkerState::Idle);
}

#[test]
fn fifo_with_backfill_starts_a_later_smaller_job_and_keeps_the_big_one_queued() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    let big = m.submit(new_job(3), 0);
    let small = m.submit(new_job(2), 1);
    assert_eq!(m.job(&big).unwrap().state, JobState::Queued);
    assert_eq!(m.job(&small).unwrap().state, JobState::Starting);
    assert_eq!(
        m.job(&big).unwrap().reason,
        "needs 3 workers, 0 of 2 alive are idle"
    );
    assert_eq!(m.job(&small).unwrap().workers, ws);
}

#[test]
fn two_jobs_run_at_once_on_disjoint_workers_in_submission_order() {
    let mut m = machine();
    let ws = workers(&mut m, 4, 0);
    let a = m.submit(new_job(2), 0);
    let b = m.submit(new_job(2), 0);
    assert_eq!(m.job(&a).unwrap().workers, ws[..2]);
    assert_eq!(m.job(&b).unwrap().workers, ws[2..]);
    assert_eq!(m.job_counts()[&JobState::Starting], 2);
    assert_eq!(m.worker_counts()[&WorkerState::Busy], 4);
    assert_eq!(m.worker_counts()[&WorkerState::Idle], 0);
}

#[test]
fn reports_from_workers_that_do_not_hold_the_rank_are_refused() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    let job = m.submit(new_job(1), 0);
    let err = m
        .result(
            ResultReport {
                worker: ws[1].clone(),
                job: job.clone(),
                attempt: 1,
                rank: 0,
                outcome: success(0),
                blamed: None,
            },
            1,
        )
        .unwrap_err();
    assert!(matches!(err, MachineError::NotAssigned { .. }));
    assert_eq!(
        m.heartbeat(&WorkerId::new("w-77"), vec![], 1),
        Err(MachineError::UnknownWorker(WorkerId::new("w-77")))
    );
}

#[test]
fn a_heartbeat_listing_a_stray_job_gets_a_stop_and_the_worker_stays_busy() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let ghost = JobId::new("job-42");
    m.heartbeat(&ws[0], vec![running(&ghost, 1, 0)], 1).unwrap();
    assert_eq!(m.worker(&ws[0]).unwrap().state(), WorkerState::Busy);
    let job = m.submit(new_job(1), 2);
    assert_eq!(m.job(&job).unwrap().state, JobState::Queued);
    let stops = m.take_commands(&ws[0], 0).unwrap().stop;
    assert_eq!(stops.len(), 1);
    assert!(stops[0].reason.contains("unknown"), "{}", stops[0].reason);
    // One stop only, however often it is listed.
    m.heartbeat(&ws[0], vec![running(&ghost, 1, 0)], 3).unwrap();
    assert!(m.take_commands(&ws[0], 0).unwrap().stop.is_empty());
    m.heartbeat(&ws[0], vec![], 4).unwrap();
    assert_eq!(m.job(&job).unwrap().state, JobState::Starting);
}

#[test]
fn progress_is_recorded_and_logs_are_numbered() {
    let mut m = machine();
    let (job, _ws) = running_job(&mut m, 2);
    let j = m.job(&job).unwrap();
    let r = j.ranks[1].report.as_ref().unwrap();
    assert_eq!(r.step, 3);
    assert_eq!(r.reported_ms, 20);
    assert!(r.val_loss.is_nan());
    let effects = m.drain_effects();
    let seqs: Vec<u64> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Log { line, .. } => Some(line.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(effects.iter().any(|e| matches!(e,
        Effect::Log { line, .. } if line.rank == 1 && line.message == "rank 1 says hi")));
}

#[test]
fn every_transition_is_an_effect_in_order() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let job = m.submit(new_job(1), 0);
    phase(&mut m, &ws[0], &job, 0, RankPhase::Training, 1);
    outcome(&mut m, &ws[0], &job, 0, success(0), 2);
    let recorded: Vec<(Option<JobState>, JobState)> = m
        .drain_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Transition { from, change, .. } => Some((from, change.state)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (None, JobState::Queued),
            (Some(JobState::Queued), JobState::Starting),
            (Some(JobState::Starting), JobState::Running),
            (Some(JobState::Running), JobState::Succeeded),
        ]
    );
}

fn restored(m: &Machine, now: i64) -> Machine {
    Machine::restore(
        m.config(),
        m.jobs().cloned().collect(),
        m.workers().cloned().collect(),
        0,
        0,
        now,
    )
}

#[test]
fn restore_keeps_queued_jobs_and_continues_ids() {
    let mut m = machine();
    let q = m.submit(new_job(5), 0);
    workers(&mut m, 1, 0);
    let mut r = restored(&m, 1_000);
    assert_eq!(r.job(&q).unwrap().state, JobState::Queued);
    assert_eq!(r.submit(new_job(1), 1_001).as_str(), "job-2");
    assert_eq!(r.register(new_worker(1), 1_001).as_str(), "w-2");
}

#[test]
fn restore_keeps_a_running_job_whose_workers_keep_reporting() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    let mut r = restored(&m, 50_000);
    for (rank, w) in ws.iter().enumerate() {
        r.heartbeat(w, vec![running(&job, 1, rank as u32)], 50_000 + 1_000)
            .unwrap();
        r.heartbeat(w, vec![running(&job, 1, rank as u32)], 50_000 + LEASE)
            .unwrap();
    }
    r.tick(50_000 + LEASE);
    assert_eq!(r.job(&job).unwrap().state, JobState::Running);
    r.tick(50_000 + 2 * LEASE - 1_000);
    assert_eq!(r.job(&job).unwrap().state, JobState::Running);
    for (rank, w) in ws.iter().enumerate() {
        r.heartbeat(
            w,
            vec![running(&job, 1, rank as u32)],
            50_000 + 2 * LEASE - 1_000,
        )
        .unwrap();
        r.result(
            ResultReport {
                worker: w.clone(),
                job: job.clone(),
                attempt: 1,
                rank: rank as u32,
                outcome: success(rank as u32),
                blamed: None,
            },
            50_000 + 2 * LEASE,
        )
        .unwrap();
    }
    assert_eq!(r.job(&job).unwrap().state, JobState::Succeeded);
}

#[test]
fn restore_fails_a_job_whose_worker_does_not_report_within_the_lease() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    let mut r = restored(&m, 50_000);
    r.heartbeat(&ws[0], vec![running(&job, 1, 0)], 51_000)
        .unwrap();
    r.tick(50_000 + LEASE);
    let j = r.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.reason,
        "coordinator restarted; rank 1 (worker w-2, 127.0.0.1:40001) did not report within the lease (10.0 s)"
    );
}

#[test]
fn restore_fails_a_job_at_once_when_its_worker_no_longer_runs_it() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 1);
    let mut r = restored(&m, 50_000);
    r.heartbeat(&ws[0], vec![], 50_100).unwrap();
    let j = r.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(
        j.reason
            .starts_with("coordinator restarted; rank 0 (worker w-1"),
        "{}",
        j.reason
    );
}

#[test]
fn restore_keeps_rank_outcomes_reported_before_the_restart() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 2);
    outcome(&mut m, &ws[1], &job, 1, success(1), 30);
    let mut r = restored(&m, 50_000);
    // Rank 1 finished before the restart: its worker lists nothing and that is fine.
    r.heartbeat(&ws[1], vec![], 50_100).unwrap();
    r.heartbeat(&ws[0], vec![running(&job, 1, 0)], 50_100)
        .unwrap();
    assert_eq!(r.job(&job).unwrap().state, JobState::Running);
    assert_eq!(r.worker(&ws[1]).unwrap().state(), WorkerState::Idle);
    r.result(
        ResultReport {
            worker: ws[0].clone(),
            job: job.clone(),
            attempt: 1,
            rank: 0,
            outcome: success(0),
            blamed: None,
        },
        50_200,
    )
    .unwrap();
    assert_eq!(r.job(&job).unwrap().state, JobState::Succeeded);
}

#[test]
fn nan_floats_survive_json() {
    let r = RankReport {
        loss: f64::NAN,
        val_loss: f64::INFINITY,
        step: 2,
        ..RankReport::default()
    };
    let text = serde_json::to_string(&r).unwrap();
    let back: RankReport = serde_json::from_str(&text).unwrap();
    assert!(back.loss.is_nan() && back.val_loss.is_nan());
    assert_eq!(back.step, 2);
    let res = JobResultData {
        metrics: [("a".to_string(), f64::NAN), ("b".to_string(), 1.5)]
            .into_iter()
            .collect(),
        ..JobResultData::default()
    };
    let back: JobResultData = serde_json::from_str(&serde_json::to_string(&res).unwrap()).unwrap();
    assert!(back.metrics["a"].is_nan());
    assert_eq!(back.metrics["b"], 1.5);
}

#[test]
fn a_failed_attempt_is_restarted_on_idle_workers_while_restarts_remain() {
    let mut m = machine();
    let ws = workers(&mut m, 3, 0);
    let job = m.submit(
        NewJob {
            max_restarts: 1,
            owner: String::new(),
            elastic: None,
            ..new_job(2)
        },
        0,
    );
    for (r, w) in ws.iter().take(2).enumerate() {
        assert_eq!(m.take_commands(w, 0).unwrap().start.len(), 1);
        m.heartbeat(w, vec![running(&job, 1, r as u32)], 10)
            .unwrap();
        phase(&mut m, w, &job, r as u32, RankPhase::Training, 20);
    }
    // Worker 1 dies: its lease expires while worker 0 and the spare keep heartbeating.
    m.heartbeat(&ws[0], vec![running(&job, 1, 0)], LEASE)
        .unwrap();
    m.heartbeat(&ws[2], vec![], LEASE).unwrap();
    m.tick(LEASE + 20);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Queued, "{}", j.reason);
    let cause = &j.history.last().unwrap().reason;
    assert!(
        cause.starts_with("attempt 1 failed, restarting (restart 1 of 1): rank 1 (worker w-2"),
        "{cause}"
    );
    // While it waits, the reason says what for.
    assert_eq!(
        j.reason,
        "restart 1 of 1 after attempt 1 failed: needs 2 workers, 1 of 2 alive are idle"
    );
    // The survivor is told to stop and stays busy until it did; the restart waits for it.
    let stops = m.take_commands(&ws[0], LEASE + 20).unwrap().stop;
    assert_eq!(stops.len(), 1);
    assert!(
        stops[0].reason.contains("attempt 1 failed"),
        "{:?}",
        stops[0]
    );
    assert!(stops[0].abort, "{:?}", stops[0]);
    m.heartbeat(&ws[0], vec![running(&job, 1, 0)], LEASE + 30)
        .unwrap();
    assert_eq!(m.job(&job).unwrap().state, JobState::Queued);
    m.heartbeat(&ws[0], vec![], LEASE + 40).unwrap();
    // Attempt 2 runs on the survivor and the spare, with a new session.
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting);
    assert_eq!(j.attempt, 2);
    assert_eq!(j.session, format!("{job}/2"));
    assert_eq!(j.workers, vec![ws[0].clone(), ws[2].clone()]);
    let start = m.take_commands(&ws[2], LEASE + 40).unwrap().start;
    assert_eq!(start[0].attempt, 2);
    assert_eq!(
        states(&m, &job),
        vec![
            JobState::Queued,
            JobState::Starting,
            JobState::Running,
            JobState::Queued,
            JobState::Starting
        ]
    );
}

#[test]
fn the_attempt_after_the_last_restart_fails_the_job_for_good() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    let job = m.submit(
        NewJob {
            max_restarts: 1,
            owner: String::new(),
            elastic: None,
            ..new_job(1)
        },
        0,
    );
    for attempt in 1..=2u32 {
        assert_eq!(m.take_commands(&ws[0], 0).unwrap().start.len(), 1);
        m.result(
            ResultReport {
                worker: ws[0].clone(),
                job: job.clone(),
                attempt,
                rank: 0,
                outcome: failed("out of memory"),
                blamed: None,
            },
            attempt as i64 * 10,
        )
        .unwrap();
    }
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.reason, "rank 0: out of memory");
    assert_eq!(j.attempt, 2);
    // A report of an earlier attempt arriving late is only logged.
    assert!(
        m.result(
            ResultReport {
                worker: ws[0].clone(),
                job: job.clone(),
                attempt: 1,
                rank: 0,
                outcome: failed("late"),
                blamed: None,
            },
            40,
        )
        .is_ok()
    );
    assert_eq!(m.job(&job).unwrap().reason, "rank 0: out of memory");
}

#[test]
fn without_restarts_a_failure_is_final_and_cancel_of_a_restarting_job_works() {
    let mut m = machine();
    let (job, ws) = running_job(&mut m, 1);
    outcome(&mut m, &ws[0], &job, 0, failed("boom"), 30);
    assert_eq!(m.job(&job).unwrap().state, JobState::Failed);

    let ws = workers(&mut m, 1, 40);
    let again = m.submit(
        NewJob {
            max_restarts: 3,
            owner: String::new(),
            elastic: None,
            ..new_job(2)
        },
        40,
    );
    // Needs 2 workers, only 1 idle: queued. Give it a second worker, fail attempt 1, cancel
    // while it waits for its restart.
    let more = workers(&mut m, 1, 41);
    assert_eq!(m.job(&again).unwrap().state, JobState::Starting);
    for w in ws.iter().chain(&more) {
        m.take_commands(w, 42).unwrap();
    }
    m.result(
        ResultReport {
            worker: ws[0].clone(),
            job: again.clone(),
            attempt: 1,
            rank: 0,
            outcome: failed("boom"),
            blamed: None,
        },
        43,
    )
    .unwrap();
    assert_eq!(m.job(&again).unwrap().state, JobState::Queued);
    m.cancel(&again, "enough", 44).unwrap();
    assert_eq!(m.job(&again).unwrap().state, JobState::Cancelled);
}

#[test]
fn progress_is_kept_at_every_report_but_saved_at_a_bounded_rate() {
    let mut m = Machine::new(MachineConfig {
        lease_ms: LEASE,
        collective_timeout_ms: 60_000,
        checksum_every: 50,
        progress_save_ms: 1_000,
    });
    let (job, ws) = running_job(&mut m, 2);
    m.drain_effects();
    let saves = |effects: &[Effect]| {
        effects
            .iter()
            .filter(|e| matches!(e, Effect::SaveJob(j) if *j == job))
            .count()
    };
    // 10,000 reports from each rank within 2.5 s: the job's row is asked for once per second
    // (last written at 20 ms by the TRAINING reports: again at 1020 and 2020 ms), while every
    // report is in memory at once.
    let mut saved = 0;
    for i in 0..10_000i64 {
        for (rank, w) in ws.iter().enumerate() {
            let now = 100 + i / 4;
            m.progress(
                ProgressReport {
                    worker: w.clone(),
                    job: job.clone(),
                    attempt: 1,
                    rank: rank as u32,
                    phase: Some(RankPhase::Training),
                    report: RankReport {
                        step: i as u64,
                        ..RankReport::default()
                    },
                    logs: Vec::new(),
                },
                now,
            )
            .unwrap();
            saved += saves(&m.drain_effects());
            let slot = &m.job(&job).unwrap().ranks[rank];
            assert_eq!(slot.report.as_ref().unwrap().step, i as u64);
        }
    }
    assert_eq!(saved, 2);
    // A phase change is saved at once.
    phase(&mut m, &ws[0], &job, 0, RankPhase::Evaluating, 2_600);
    assert_eq!(saves(&m.drain_effects()), 1);
}

#[test]
fn a_rollback_delivers_committed_starts_again_but_not_the_failed_events() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    // Committed: job-1 assigned to w-1, its start not yet taken by a heartbeat.
    let committed = m.submit(new_job(1), 10);
    let before: Vec<Job> = m.jobs().cloned().collect();
    let before_workers: Vec<Worker> = m.workers().cloned().collect();
    // The failed event: job-2 submitted and assigned to w-2 (its commit failed).
    m.submit(new_job(1), 20);
    assert_eq!(m.worker(&ws[1]).unwrap().outbox.len(), 1);
    // The rollback: restore what the store holds, carry the stale machine's pending starts.
    let (stored_jobs, stored_workers) = (before.clone(), before_workers.clone());
    let mut r = Machine::restore(m.config(), before, before_workers, 0, 0, 30);
    r.carry_undelivered_starts(&m);
    assert!(r.job(&JobId::new("job-2")).is_none());
    assert!(r.worker(&ws[1]).unwrap().outbox.is_empty());
    // w-1 takes its start and runs the job as if nothing had happened.
    r.heartbeat(&ws[0], vec![], 40).unwrap();
    let cmds = r.take_commands(&ws[0], 40).unwrap();
    assert_eq!(cmds.start.len(), 1);
    assert_eq!(cmds.start[0].job, committed);
    assert_eq!(r.job(&committed).unwrap().state, JobState::Starting);
    r.heartbeat(&ws[0], vec![running(&committed, 1, 0)], 50)
        .unwrap();
    phase(&mut r, &ws[0], &committed, 0, RankPhase::Training, 60);
    assert_eq!(r.job(&committed).unwrap().state, JobState::Running);
    // Without carrying the start, the restore fails the job at the worker's next heartbeat.
    let mut plain = Machine::restore(m.config(), stored_jobs, stored_workers, 0, 0, 30);
    plain.heartbeat(&ws[0], vec![], 40).unwrap();
    assert_eq!(plain.job(&committed).unwrap().state, JobState::Failed);
}

fn elastic_job(min: u32, max: u32, batch: u64, max_restarts: u32) -> NewJob {
    NewJob {
        max_restarts,
        elastic: Some(Elastic {
            bounds: ringtrain_spec::ElasticSpec {
                min: min as usize,
                max: max as usize,
                commit_every: 10,
            },
            batch: batch as usize,
            grows: 0,
            growing: false,
        }),
        ..new_job(max)
    }
}

/// Takes `w`'s start command for `job` and brings that rank to Training in `attempt`.
fn train_rank(m: &mut Machine, w: &WorkerId, job: &JobId, attempt: u32, now: i64) -> u32 {
    let start = m.take_commands(w, now).unwrap().start;
    assert_eq!(start.len(), 1, "{start:?}");
    assert_eq!(start[0].attempt, attempt);
    let rank = start[0].rank;
    m.heartbeat(w, vec![running(job, attempt, rank)], now)
        .unwrap();
    m.progress(
        ProgressReport {
            worker: w.clone(),
            job: job.clone(),
            attempt,
            rank,
            phase: Some(RankPhase::Training),
            report: RankReport::default(),
            logs: vec![],
        },
        now,
    )
    .unwrap();
    rank
}

fn report(m: &mut Machine, w: &WorkerId, job: &JobId, attempt: u32, rank: u32, o: RankOutcome) {
    m.result(
        ResultReport {
            worker: w.clone(),
            job: job.clone(),
            attempt,
            rank,
            outcome: o,
            blamed: None,
        },
        100,
    )
    .unwrap();
}

#[test]
fn an_elastic_job_takes_the_largest_world_dividing_its_batch_and_waits_below_min() {
    let mut m = machine();
    let ws = workers(&mut m, 1, 0);
    // min 2, max 4, batch 8: 3 workers would not divide the batch.
    let job = m.submit(elastic_job(2, 4, 8, 0), 0);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(
        j.reason,
        "elastic: needs at least 2 workers (parallel.elastic.min), 1 of 1 alive is idle"
    );
    let more = workers(&mut m, 2, 1);
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting, "{}", j.reason);
    assert_eq!(
        j.world, 2,
        "3 idle workers, 3 does not divide the batch of 8"
    );
    assert_eq!(j.workers, vec![ws[0].clone(), more[0].clone()]);
    let start = m.take_commands(&ws[0], 2).unwrap().start;
    assert_eq!(start[0].world, 2);
}

#[test]
fn an_elastic_job_re_forms_on_its_survivors_after_waiting_for_them_to_leave() {
    let mut m = machine();
    let ws = workers(&mut m, 3, 0);
    let job = m.submit(elastic_job(1, 3, 6, 2), 0);
    for w in &ws {
        train_rank(&mut m, w, &job, 1, 10);
    }
    assert_eq!(m.job(&job).unwrap().state, JobState::Running);
    assert_eq!(m.job(&job).unwrap().world, 3);
    // Rank 2 fails (its peer link broke): the survivors must leave attempt 1 first.
    report(&mut m, &ws[2], &job, 1, 2, failed("lost its peers"));
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Queued);
    let cause = &j.history.last().unwrap().reason;
    assert!(
        cause.starts_with(
            "attempt 1 failed, re-forming on the remaining workers (restart 1 of 2): rank 2:"
        ),
        "{cause}"
    );
    assert!(
        j.reason
            .starts_with("elastic: re-forming after attempt 1: waiting for w-1, w-2"),
        "{}",
        j.reason
    );
    for w in &ws[..2] {
        let stops = m.take_commands(w, 20).unwrap().stop;
        assert!(stops[0].abort, "a failed attempt is aborted: {stops:?}");
        m.heartbeat(w, vec![], 30).unwrap();
    }
    // Worker 3 still lists the job in its last heartbeat: the job waits for it too.
    assert_eq!(m.job(&job).unwrap().state, JobState::Queued);
    m.heartbeat(&ws[2], vec![], 40).unwrap();
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting, "{}", j.reason);
    assert_eq!(j.attempt, 2);
    assert_eq!(j.world, 3, "all three are idle again");
    // The previous attempt's workers come first, in their old rank order.
    assert_eq!(j.workers, ws);
}

#[test]
fn an_elastic_job_grows_at_a_step_boundary_and_growing_is_not_a_failure() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    // No restarts allowed: a grow must not use one.
    let job = m.submit(elastic_job(1, 4, 4, 0), 0);
    for w in &ws {
        train_rank(&mut m, w, &job, 1, 10);
    }
    assert_eq!(m.job(&job).unwrap().world, 2);
    // A worker appears: 3 does not divide the batch of 4, so nothing happens.
    let third = workers(&mut m, 1, 20);
    assert!(!m.job(&job).unwrap().elastic.as_ref().unwrap().growing);
    assert!(m.take_commands(&ws[0], 20).unwrap().stop.is_empty());
    // A fourth makes 4 possible: the ranks are asked to stop together, not aborted.
    let fourth = workers(&mut m, 1, 30);
    let j = m.job(&job).unwrap();
    assert!(j.elastic.as_ref().unwrap().growing);
    for (r, w) in ws.iter().enumerate() {
        let stops = m.take_commands(w, 40).unwrap().stop;
        assert_eq!(stops.len(), 1);
        assert!(!stops[0].abort, "{stops:?}");
        assert!(stops[0].reason.contains("growing from 2 to 4"), "{stops:?}");
        report(
            &mut m,
            w,
            &job,
            1,
            r as u32,
            RankOutcome::Stopped("grow (stopped after step 40)".into()),
        );
    }
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Queued, "{}", j.reason);
    assert!(j.history.last().unwrap().reason.contains("grow 1"), "{j:?}");
    for w in &ws {
        m.heartbeat(w, vec![], 50).unwrap();
    }
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting, "{}", j.reason);
    assert_eq!(j.world, 4);
    assert_eq!(
        j.workers,
        vec![
            ws[0].clone(),
            ws[1].clone(),
            third[0].clone(),
            fourth[0].clone()
        ]
    );
    // A failure now is the first failure: with no restarts left it fails the job.
    for w in j.workers.clone().iter() {
        train_rank(&mut m, w, &job, 2, 60);
    }
    report(&mut m, &fourth[0], &job, 2, 3, failed("boom"));
    assert_eq!(m.job(&job).unwrap().state, JobState::Failed);
}

#[test]
fn a_queued_job_keeps_idle_workers_from_an_elastic_grow() {
    let mut m = machine();
    let ws = workers(&mut m, 2, 0);
    let job = m.submit(elastic_job(1, 4, 4, 0), 0);
    for w in &ws {
        train_rank(&mut m, w, &job, 1, 10);
    }
    // A job needing 3 workers waits; two more idle workers must not go to the grow.
    let big = m.submit(new_job(3), 20);
    workers(&mut m, 2, 30);
    assert!(!m.job(&job).unwrap().elastic.as_ref().unwrap().growing);
    assert_eq!(m.job(&big).unwrap().state, JobState::Queued);
}

#[test]
fn an_elastic_job_does_not_wait_for_the_worker_a_failure_blames() {
    let mut m = machine();
    let ws = workers(&mut m, 3, 0);
    let job = m.submit(elastic_job(1, 3, 6, 2), 0);
    for w in &ws {
        train_rank(&mut m, w, &job, 1, 10);
    }
    // Rank 0 loses its link to rank 2 (killed: it will never leave the attempt by itself).
    m.result(
        ResultReport {
            worker: ws[0].clone(),
            job: job.clone(),
            attempt: 1,
            rank: 0,
            outcome: failed("connection to rank 2 lost"),
            blamed: Some(2),
        },
        20,
    )
    .unwrap();
    let stops = m.take_commands(&ws[1], 30).unwrap().stop;
    assert_eq!(stops.len(), 1);
    m.heartbeat(&ws[0], vec![], 40).unwrap();
    m.heartbeat(&ws[1], vec![], 40).unwrap();
    // Worker 3 still lists the job (it is dead), but the job re-forms on the two others now.
    let j = m.job(&job).unwrap();
    assert_eq!(j.state, JobState::Starting, "{}", j.reason);
    assert_eq!(j.world, 2);
    assert_eq!(j.workers, vec![ws[0].clone(), ws[1].clone()]);
}
