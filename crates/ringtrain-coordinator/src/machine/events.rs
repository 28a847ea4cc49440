//! The event methods of [`Machine`]: each input the shell feeds in (a submitted or cancelled
//! job, a worker registering, heartbeating, taking its commands, reporting progress or a
//! result, the clock ticking), applying the rules of the module docs and collecting effects.

use super::*;

impl Machine {
    /// Stores a new job in state Queued and schedules. Returns its id.
    pub fn submit(&mut self, new: NewJob, now: i64) -> JobId {
        let num = self.next_job;
        self.next_job += 1;
        let id = JobId::new(format!("job-{num}"));
        let job = Job {
            num,
            id: id.clone(),
            name: new.name,
            spec: new.spec,
            format: new.format,
            base_dir: new.base_dir,
            world: new.world.max(1),
            state: JobState::Queued,
            reason: String::new(),
            workers: Vec::new(),
            submitted_ms: now,
            started_ms: 0,
            finished_ms: 0,
            history: Vec::new(),
            attempt: 0,
            session: String::new(),
            ranks: Vec::new(),
            result: None,
            last_log_seq: 0,
            recovered: false,
            max_restarts: new.max_restarts,
            elastic: new.elastic,
            suspects: BTreeSet::new(),
            owner: new.owner,
            progress_saved_ms: 0,
        };
        self.job_nums.insert(id.clone(), num);
        self.jobs.insert(num, job);
        self.effects.push(Effect::SaveJob(id.clone()));
        self.record_transition(&id, None, JobState::Queued, String::new(), now);
        let world = self.jobs[&num].world;
        self.log(
            &id,
            -1,
            LogLevel::Info,
            format!("submitted; needs {world} worker(s)"),
            now,
        );
        self.schedule(now);
        id
    }

    /// Cancels a job: Queued, Starting and Running jobs become Cancelled at once and their ranks
    /// are told to stop. Cancelling a cancelled job changes nothing.
    ///
    /// # Errors
    /// [`MachineError::UnknownJob`]; [`MachineError::JobFinished`] for a Succeeded or Failed job.
    pub fn cancel(&mut self, id: &JobId, reason: &str, now: i64) -> Result<(), MachineError> {
        let job = self
            .job(id)
            .ok_or_else(|| MachineError::UnknownJob(id.clone()))?;
        match job.state {
            JobState::Cancelled => return Ok(()),
            JobState::Succeeded | JobState::Failed => {
                return Err(MachineError::JobFinished {
                    job: id.clone(),
                    state: job.state,
                });
            }
            _ => {}
        }
        let reason = if reason.trim().is_empty() {
            "cancelled by a client".to_string()
        } else {
            reason.trim().to_string()
        };
        self.finish(id, JobState::Cancelled, reason, now);
        self.schedule(now);
        Ok(())
    }

    /// Registers a worker (Idle, lease from `now`) and schedules. Returns its id.
    pub fn register(&mut self, new: NewWorker, now: i64) -> WorkerId {
        let num = self.next_worker;
        self.next_worker += 1;
        let id = WorkerId::new(format!("w-{num}"));
        self.workers.insert(
            num,
            Worker {
                num,
                id: id.clone(),
                name: new.name,
                peer_address: new.peer_address,
                metrics_address: new.metrics_address,
                version: new.version,
                resources: new.resources,
                registered_ms: now,
                last_seen_ms: now,
                lost: None,
                holding: None,
                running: Vec::new(),
                outbox: Vec::new(),
                draining: BTreeMap::new(),
            },
        );
        self.worker_nums.insert(id.clone(), num);
        self.effects.push(Effect::SaveWorker(id.clone()));
        self.schedule(now);
        id
    }

    /// A heartbeat: renews the lease and reconciles the ranks the worker says it runs with what
    /// it was given (confirming ranks, noticing vanished ones, telling it to stop ranks of jobs
    /// it should not run), then schedules.
    ///
    /// # Errors
    /// [`MachineError::UnknownWorker`], [`MachineError::WorkerLost`].
    pub fn heartbeat(
        &mut self,
        worker: &WorkerId,
        running: Vec<RunningRank>,
        now: i64,
    ) -> Result<(), MachineError> {
        let num = self.live_worker(worker)?;
        let mut stray: Vec<(JobId, String)> = Vec::new();
        let mut vanished_restored: Vec<(JobId, u32)> = Vec::new();
        {
            let w = self.workers.get_mut(&num).expect("live_worker checked");
            w.last_seen_ms = now;
            let listed: BTreeSet<&JobId> = running.iter().map(|r| &r.job).collect();
            // A delivered stop is done once a heartbeat no longer lists the job.
            w.draining
                .retain(|job, delivered| !*delivered || listed.contains(job));
            // The rank this worker holds: confirmed when listed, unaccounted when it vanished.
            if let Some(h) = w.holding.clone()
                && let Some(job) = self.job_nums.get(&h.job).and_then(|n| self.jobs.get_mut(n))
                && let Some(slot) = job.ranks.get_mut(h.rank as usize)
                && slot.outcome.is_none()
            {
                let listed_here = running
                    .iter()
                    .any(|r| r.job == h.job && r.rank == h.rank && r.attempt == h.attempt);
                if listed_here {
                    slot.confirmed = true;
                    slot.unaccounted_since_ms = None;
                } else if slot.confirmed {
                    slot.unaccounted_since_ms.get_or_insert(now);
                } else if job.recovered && job.attempt == h.attempt {
                    // After a restart there is no assignment in flight: not listed = not running.
                    vanished_restored.push((h.job.clone(), h.rank));
                }
            }
            for r in &running {
                let held = w
                    .holding
                    .as_ref()
                    .is_some_and(|h| h.job == r.job && h.attempt == r.attempt && h.rank == r.rank);
                let job = self.job_nums.get(&r.job).and_then(|n| self.jobs.get(n));
                // A rank that already reported its outcome is just exiting: no stop needed.
                let finishing = job.is_some_and(|j| {
                    j.attempt == r.attempt
                        && j.workers.get(r.rank as usize) == Some(&w.id)
                        && j.ranks
                            .get(r.rank as usize)
                            .is_some_and(|s| s.outcome.is_some())
                });
                if !held && !finishing && !w.draining.contains_key(&r.job) {
                    let why = match job {
                        Some(j) if j.state.is_final() => format!("job {} is {}", j.id, j.state),
                        Some(j) => format!(
                            "rank {} attempt {} of {} is not assigned to {}",
                            r.rank, r.attempt, j.id, w.id
                        ),
                        None => format!("job {} is unknown to this coordinator", r.job),
                    };
                    stray.push((r.job.clone(), why));
                }
            }
            w.running = running;
        }
        for (job, why) in stray {
            self.push_stop(num, &job, &why);
        }
        for (job, rank) in vanished_restored {
            let label = self.workers[&num].label();
            self.fail(
                &job,
                format!(
                    "coordinator restarted; rank {rank} ({label}) is no longer running the job"
                ),
                now,
            );
        }
        self.schedule(now);
        Ok(())
    }

    /// Takes the commands waiting for a worker (called at `now` when answering its heartbeat).
    /// A delivered assignment must be confirmed within one lease from now; delivered stops stay
    /// in the worker's drain list until a heartbeat shows the job gone.
    ///
    /// # Errors
    /// [`MachineError::UnknownWorker`], [`MachineError::WorkerLost`].
    pub fn take_commands(&mut self, worker: &WorkerId, now: i64) -> Result<Commands, MachineError> {
        let num = self.live_worker(worker)?;
        let w = self.workers.get_mut(&num).expect("live_worker checked");
        let mut out = Commands::default();
        for cmd in std::mem::take(&mut w.outbox) {
            match cmd {
                Command::Start(a) => out.start.push(a),
                Command::Stop { job, reason } => {
                    w.draining.insert(job.clone(), true);
                    out.stop.push(Stop {
                        job,
                        reason,
                        abort: false,
                    });
                }
            }
        }
        for stop in &mut out.stop {
            // Failed, or back in the queue / running a newer attempt: this worker's attempt is
            // over for good. Cancelled and succeeded jobs stop at a step boundary.
            // A growing elastic job's ranks stop together at a step boundary, committing it.
            stop.abort = self.job_nums.get(&stop.job).is_some_and(|n| {
                let job = &self.jobs[n];
                let growing = job.elastic.as_ref().is_some_and(|e| e.growing);
                job.state == JobState::Failed
                    || job.state == JobState::Queued
                    || (job.state.is_active() && !growing)
            });
        }
        // The confirmation clock starts at delivery, not at assignment: a worker that dies
        // before taking its assignment is reported by its own lease expiry ("lost"), which
        // names the cause better than "did not start".
        for a in &out.start {
            if let Some(slot) = self
                .job_nums
                .get(&a.job)
                .and_then(|n| self.jobs.get_mut(n))
                .filter(|j| j.attempt == a.attempt)
                .and_then(|j| j.ranks.get_mut(a.rank as usize))
                && !slot.confirmed
            {
                slot.unaccounted_since_ms = Some(now);
            }
        }
        Ok(out)
    }

    /// Progress of one rank: records it (confirming the rank), appends its log lines, and moves
    /// a Starting job to Running once every rank reported TRAINING or later. The answer says
    /// whether the rank must stop.
    ///
    /// # Errors
    /// [`MachineError::UnknownJob`], [`MachineError::UnknownWorker`],
    /// [`MachineError::WorkerLost`], [`MachineError::NotAssigned`] for a rank of this attempt
    /// held by another worker.
    pub fn progress(
        &mut self,
        report: ProgressReport,
        now: i64,
    ) -> Result<ProgressAck, MachineError> {
        let num = self.live_worker(&report.worker)?;
        self.workers
            .get_mut(&num)
            .expect("live_worker checked")
            .last_seen_ms = now;
        let job_num = *self
            .job_nums
            .get(&report.job)
            .ok_or_else(|| MachineError::UnknownJob(report.job.clone()))?;
        if let Some(stop) = self.stop_reason(job_num, report.attempt) {
            return Ok(ProgressAck { stop: Some(stop) });
        }
        self.check_holder(job_num, &report.worker, report.rank, report.attempt)?;
        let job = self.jobs.get_mut(&job_num).expect("looked up above");
        let slot = &mut job.ranks[report.rank as usize];
        slot.confirmed = true;
        slot.unaccounted_since_ms = None;
        let phase_changed = report.phase.is_some_and(|p| slot.phase != Some(p));
        if let Some(p) = report.phase {
            slot.phase = Some(p);
        }
        let mut r = report.report;
        r.reported_ms = now;
        slot.report = Some(r);
        // Progress is kept in memory at every report but written at a bounded rate: a rank
        // (or a forged client) reporting thousands of times a second must not turn into
        // thousands of row writes. A phase change is written at once.
        let save = phase_changed
            || now.saturating_sub(job.progress_saved_ms) >= self.config.progress_save_ms;
        if save {
            job.progress_saved_ms = now;
        }
        let id = job.id.clone();
        for (level, text) in report.logs {
            self.log(&id, report.rank as i32, level, text, now);
        }
        if save {
            self.effects.push(Effect::SaveJob(id.clone()));
        }
        self.effects.push(Effect::Publish {
            job: id.clone(),
            change: JobChange::Progress,
            log: None,
        });
        self.maybe_running(job_num, now);
        Ok(ProgressAck { stop: None })
    }

    /// Final outcome of one rank: the first failure (or unrequested stop) fails the job; the
    /// last success makes it Succeeded with rank 0's result. Reports about a finished job or an
    /// older attempt are recorded in the log and otherwise ignored.
    ///
    /// # Errors
    /// As [`Machine::progress`].
    pub fn result(&mut self, report: ResultReport, now: i64) -> Result<(), MachineError> {
        let num = self.live_worker(&report.worker)?;
        self.workers
            .get_mut(&num)
            .expect("live_worker checked")
            .last_seen_ms = now;
        let job_num = *self
            .job_nums
            .get(&report.job)
            .ok_or_else(|| MachineError::UnknownJob(report.job.clone()))?;
        let id = report.job.clone();
        if self.stop_reason(job_num, report.attempt).is_some() {
            let what = match &report.outcome {
                RankOutcome::Succeeded(_) => "finished".to_string(),
                RankOutcome::Failed(m) => format!("failed: {m}"),
                RankOutcome::Stopped(m) => format!("stopped: {m}"),
            };
            self.log(
                &id,
                report.rank as i32,
                LogLevel::Debug,
                format!(
                    "rank {} (attempt {}) {what} after the job ended",
                    report.rank, report.attempt
                ),
                now,
            );
            self.schedule(now);
            return Ok(());
        }
        self.check_holder(job_num, &report.worker, report.rank, report.attempt)?;
        let rank = report.rank;
        {
            let job = self.jobs.get_mut(&job_num).expect("looked up above");
            let slot = &mut job.ranks[rank as usize];
            if slot.outcome.is_some() {
                // A repeated report (e.g. a retried RPC): the first one counts.
                return Ok(());
            }
            slot.confirmed = true;
            slot.unaccounted_since_ms = None;
            slot.outcome = Some(report.outcome.clone());
        }
        // The worker no longer holds an unfinished rank.
        let w = self.workers.get_mut(&num).expect("live_worker checked");
        if w.holding.as_ref().is_some_and(|h| h.job == id) {
            w.holding = None;
        }
        self.effects.push(Effect::SaveJob(id.clone()));
        match report.outcome {
            RankOutcome::Failed(message) => {
                if let Some(blamed) = report.blamed {
                    let job = self.jobs.get_mut(&job_num).expect("looked up above");
                    if let Some(w) = job.workers.get(blamed as usize).cloned() {
                        job.suspects.insert(w);
                    }
                }
                let prefix = format!("rank {rank}:");
                let reason = if message.starts_with(&prefix) {
                    message
                } else {
                    format!("rank {rank}: {message}")
                };
                self.fail(&id, reason, now);
            }
            RankOutcome::Stopped(why) => {
                let growing = self.jobs[&job_num]
                    .elastic
                    .as_ref()
                    .is_some_and(|e| e.growing);
                if growing {
                    self.log(
                        &id,
                        rank as i32,
                        LogLevel::Info,
                        format!("rank {rank} stopped to re-form: {why}"),
                        now,
                    );
                    self.maybe_regrow(job_num, now);
                } else {
                    self.fail(&id, format!("rank {rank} stopped unexpectedly: {why}"), now);
                }
            }
            RankOutcome::Succeeded(_) => {
                self.log(
                    &id,
                    rank as i32,
                    LogLevel::Info,
                    format!("rank {rank} finished"),
                    now,
                );
                self.maybe_running(job_num, now);
                self.maybe_succeeded(job_num, now);
            }
        }
        self.schedule(now);
        Ok(())
    }

    /// The clock advanced to `now`: expires leases (failing their workers' jobs), fails jobs with
    /// ranks unaccounted for over a lease, and schedules.
    pub fn tick(&mut self, now: i64) {
        let lease = self.config.lease_ms;
        let expired: Vec<u64> = self
            .workers
            .values()
            .filter(|w| w.lost.is_none() && now - w.last_seen_ms >= lease)
            .map(|w| w.num)
            .collect();
        for num in expired {
            let (label, holding, why) = {
                let w = self.workers.get_mut(&num).expect("listed above");
                let why = format!("no heartbeat for {} s", secs(now - w.last_seen_ms));
                w.lost = Some((now, why.clone()));
                w.outbox.clear();
                w.draining.clear();
                w.running.clear();
                (w.label(), w.holding.take(), why)
            };
            self.effects
                .push(Effect::SaveWorker(self.workers[&num].id.clone()));
            if let Some(h) = holding {
                let recovered = self.job(&h.job).is_some_and(|j| j.recovered);
                let reason = if recovered
                    && self
                        .job(&h.job)
                        .and_then(|j| j.ranks.get(h.rank as usize))
                        .is_some_and(|s| !s.confirmed)
                {
                    format!(
                        "coordinator restarted; rank {} ({label}) did not report within the lease ({} s)",
                        h.rank,
                        secs(lease)
                    )
                } else {
                    format!("rank {} ({label}) lost: {why}", h.rank)
                };
                self.fail(&h.job, reason, now);
            }
        }
        // Ranks unaccounted for over a lease.
        let mut overdue: Vec<(JobId, String)> = Vec::new();
        for job in self.jobs.values().filter(|j| j.state.is_active()) {
            for (rank, slot) in job.ranks.iter().enumerate() {
                let Some(since) = slot.unaccounted_since_ms else {
                    continue;
                };
                if slot.outcome.is_some() || now - since < lease {
                    continue;
                }
                let label = job
                    .workers
                    .get(rank)
                    .and_then(|id| self.worker(id))
                    .map_or_else(|| "worker unknown".to_string(), Worker::label);
                let reason = if slot.confirmed {
                    format!("rank {rank} ({label}) stopped running without reporting a result")
                } else if job.recovered {
                    format!(
                        "coordinator restarted; rank {rank} ({label}) did not report within the lease ({} s)",
                        secs(lease)
                    )
                } else {
                    format!(
                        "rank {rank} ({label}) did not start within the lease ({} s)",
                        secs(lease)
                    )
                };
                overdue.push((job.id.clone(), reason));
                break;
            }
        }
        for (job, reason) in overdue {
            self.fail(&job, reason, now);
        }
        self.schedule(now);
    }
}
