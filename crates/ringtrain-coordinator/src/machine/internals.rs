//! The rules shared by the event methods: job transitions (running, succeeded, failed,
//! restarted, finished), stopping and freeing workers, log lines, and the scheduling pass.

use super::*;

impl Machine {
    pub(super) fn live_worker(&self, id: &WorkerId) -> Result<u64, MachineError> {
        let num = *self
            .worker_nums
            .get(id)
            .ok_or_else(|| MachineError::UnknownWorker(id.clone()))?;
        match &self.workers[&num].lost {
            Some((_, why)) => Err(MachineError::WorkerLost {
                worker: id.clone(),
                why: why.clone(),
            }),
            None => Ok(num),
        }
    }

    /// Why a rank of `attempt` of this job must stop, if it must.
    pub(super) fn stop_reason(&self, job_num: u64, attempt: u32) -> Option<String> {
        let job = &self.jobs[&job_num];
        if job.state.is_final() {
            let why = if job.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", job.reason)
            };
            Some(format!("job {} is {}{why}", job.id, job.state))
        } else if attempt != job.attempt {
            Some(format!(
                "attempt {attempt} of job {} is over (current attempt {})",
                job.id, job.attempt
            ))
        } else {
            None
        }
    }

    pub(super) fn check_holder(
        &self,
        job_num: u64,
        worker: &WorkerId,
        rank: u32,
        attempt: u32,
    ) -> Result<(), MachineError> {
        let job = &self.jobs[&job_num];
        if job.workers.get(rank as usize) == Some(worker) && job.state.is_active() {
            Ok(())
        } else {
            Err(MachineError::NotAssigned {
                worker: worker.clone(),
                job: job.id.clone(),
                rank,
                attempt,
            })
        }
    }

    pub(super) fn maybe_running(&mut self, job_num: u64, now: i64) {
        let job = &self.jobs[&job_num];
        if job.state != JobState::Starting {
            return;
        }
        let all = job.ranks.iter().all(|s| {
            s.phase.is_some_and(|p| p >= RankPhase::Training)
                || matches!(s.outcome, Some(RankOutcome::Succeeded(_)))
        });
        if all {
            let id = job.id.clone();
            self.transition(&id, JobState::Running, String::new(), now);
            self.log(&id, -1, LogLevel::Info, "every rank is training", now);
        }
    }

    pub(super) fn maybe_succeeded(&mut self, job_num: u64, now: i64) {
        let job = &self.jobs[&job_num];
        if !job.state.is_active()
            || !job
                .ranks
                .iter()
                .all(|s| matches!(s.outcome, Some(RankOutcome::Succeeded(_))))
        {
            return;
        }
        let result = match job.ranks.first().and_then(|s| s.outcome.as_ref()) {
            Some(RankOutcome::Succeeded(Some(r))) => r.clone(),
            _ => JobResultData::default(),
        };
        let id = job.id.clone();
        if job.state == JobState::Starting {
            // Keep the documented life cycle: a job that finished before every rank said
            // TRAINING still passes through Running.
            self.transition(&id, JobState::Running, String::new(), now);
        }
        let n = self.job_nums[&id];
        self.jobs.get_mut(&n).expect("exists").result = Some(result);
        self.finish(&id, JobState::Succeeded, String::new(), now);
    }

    /// A rank failed, a worker was lost or a rank went missing: the job is Failed, or — when
    /// it was started and restarts remain — queued again for its next attempt.
    pub(super) fn fail(&mut self, id: &JobId, reason: String, now: i64) {
        let Some(job) = self.job(id).filter(|j| !j.state.is_final()) else {
            return;
        };
        if job.state.is_active() && failed_attempts(job) <= job.max_restarts {
            self.restart(id, reason, now);
        } else {
            self.finish(id, JobState::Failed, reason, now);
        }
    }

    /// Ends the current attempt (its ranks are told to stop, its workers freed once they
    /// confirm) and queues the job again; the next attempt resumes from the job's latest
    /// checkpoint (the workers' side).
    pub(super) fn restart(&mut self, id: &JobId, reason: String, now: i64) {
        let (attempt, restart, max, elastic) = {
            let job = self.jobs.get_mut(&self.job_nums[id]).expect("exists");
            if let Some(e) = &mut job.elastic {
                e.growing = false;
            }
            (
                job.attempt,
                failed_attempts(job),
                job.max_restarts,
                job.elastic.is_some(),
            )
        };
        self.release(id, &format!("attempt {attempt} failed: {reason}"));
        let how = if elastic {
            "re-forming on the remaining workers"
        } else {
            "restarting"
        };
        let why = format!("attempt {attempt} failed, {how} (restart {restart} of {max}): {reason}");
        self.log(id, -1, LogLevel::Warn, why.clone(), now);
        self.transition(id, JobState::Queued, why, now);
    }

    /// A growing elastic job's rank stopped: once every rank has, the attempt is over and the
    /// job is queued again to re-form larger (not a failure).
    pub(super) fn maybe_regrow(&mut self, job_num: u64, now: i64) {
        let job = &self.jobs[&job_num];
        if !job.ranks.iter().all(|s| s.outcome.is_some()) {
            return;
        }
        if job
            .ranks
            .iter()
            .any(|s| matches!(s.outcome, Some(RankOutcome::Succeeded(_))))
        {
            // Some rank finished the run before the stop reached it: the job simply ends.
            return;
        }
        let id = job.id.clone();
        let attempt = job.attempt;
        let grows = {
            let job = self.jobs.get_mut(&job_num).expect("exists");
            let e = job.elastic.as_mut().expect("growing jobs are elastic");
            e.growing = false;
            e.grows += 1;
            e.grows
        };
        self.release(&id, "the job re-forms larger");
        let why = format!(
            "elastic: attempt {attempt} stopped together to re-form with more workers (grow {grows})"
        );
        self.log(&id, -1, LogLevel::Info, why.clone(), now);
        self.transition(&id, JobState::Queued, why, now);
    }

    /// Moves an unfinished job to a final state, freeing (or stopping) its workers.
    pub(super) fn finish(&mut self, id: &JobId, state: JobState, reason: String, now: i64) {
        self.transition(id, state, reason.clone(), now);
        let level = if state == JobState::Failed {
            LogLevel::Error
        } else {
            LogLevel::Info
        };
        let line = if reason.is_empty() {
            format!("job {state}")
        } else {
            format!("job {state}: {reason}")
        };
        self.log(id, -1, level, line, now);
        let stop_why = match state {
            JobState::Cancelled => format!("job cancelled: {reason}"),
            JobState::Failed => format!("job failed: {reason}"),
            _ => format!("job {state}"),
        };
        self.release(id, &stop_why);
    }

    /// Frees the workers of `id`'s current attempt: undelivered starts are withdrawn, ranks
    /// still running are told to stop with `stop_why`.
    pub(super) fn release(&mut self, id: &JobId, stop_why: &str) {
        let num = self.job_nums[id];
        let (workers, ranks_done): (Vec<WorkerId>, Vec<bool>) = {
            let job = &self.jobs[&num];
            (
                job.workers.clone(),
                job.ranks.iter().map(|s| s.outcome.is_some()).collect(),
            )
        };
        for (rank, wid) in workers.iter().enumerate() {
            let Some(&wnum) = self.worker_nums.get(wid) else {
                continue;
            };
            let w = self.workers.get_mut(&wnum).expect("indexed");
            if w.holding.as_ref().is_some_and(|h| &h.job == id) {
                w.holding = None;
            }
            if w.lost.is_some() {
                continue;
            }
            // An undelivered start is simply withdrawn: the worker never knew.
            let before = w.outbox.len();
            w.outbox
                .retain(|c| !matches!(c, Command::Start(a) if &a.job == id));
            let withdrawn = w.outbox.len() != before;
            // A rank that reported its outcome is exiting on its own; the others must stop.
            if !withdrawn && !ranks_done.get(rank).copied().unwrap_or(true) {
                self.push_stop(wnum, id, stop_why);
            }
        }
    }

    pub(super) fn push_stop(&mut self, wnum: u64, job: &JobId, reason: &str) {
        let w = self.workers.get_mut(&wnum).expect("caller checked");
        if w.draining.contains_key(job)
            || w.outbox
                .iter()
                .any(|c| matches!(c, Command::Stop { job: j, .. } if j == job))
        {
            return;
        }
        w.draining.insert(job.clone(), false);
        w.outbox.push(Command::Stop {
            job: job.clone(),
            reason: reason.to_string(),
        });
        self.effects.push(Effect::Wake(w.id.clone()));
    }

    pub(super) fn transition(&mut self, id: &JobId, to: JobState, reason: String, now: i64) {
        let num = self.job_nums[id];
        let job = self.jobs.get_mut(&num).expect("exists");
        let from = job.state;
        job.state = to;
        job.reason = reason.clone();
        if from == JobState::Queued && to != JobState::Queued && job.started_ms == 0 {
            job.started_ms = now;
        }
        if to.is_final() {
            job.finished_ms = now;
        }
        self.effects.push(Effect::SaveJob(id.clone()));
        self.record_transition(id, Some(from), to, reason, now);
    }

    pub(super) fn record_transition(
        &mut self,
        id: &JobId,
        from: Option<JobState>,
        to: JobState,
        reason: String,
        now: i64,
    ) {
        let num = self.job_nums[id];
        let change = Transition {
            state: to,
            reason,
            at_ms: now,
        };
        self.jobs
            .get_mut(&num)
            .expect("exists")
            .history
            .push(change.clone());
        self.effects.push(Effect::Transition {
            job: id.clone(),
            from,
            change,
        });
        self.effects.push(Effect::Publish {
            job: id.clone(),
            change: JobChange::State,
            log: None,
        });
    }

    pub(super) fn log(
        &mut self,
        id: &JobId,
        rank: i32,
        level: LogLevel,
        message: impl Into<String>,
        now: i64,
    ) {
        let num = self.job_nums[id];
        let job = self.jobs.get_mut(&num).expect("exists");
        job.last_log_seq += 1;
        let line = LogEntry {
            seq: job.last_log_seq,
            at_ms: now,
            rank,
            level,
            message: message.into(),
        };
        self.effects.push(Effect::Log {
            job: id.clone(),
            line: line.clone(),
        });
        self.effects.push(Effect::Publish {
            job: id.clone(),
            change: JobChange::Progress,
            log: Some(line),
        });
    }

    /// FIFO with backfill: every queued job, oldest first, starts if enough workers are idle;
    /// the rest get a reason saying what they wait for.
    pub(super) fn schedule(&mut self, now: i64) {
        let queued: Vec<u64> = self
            .jobs
            .values()
            .filter(|j| j.state == JobState::Queued)
            .map(|j| j.num)
            .collect();
        let mut idle: Vec<u64> = self
            .workers
            .values()
            .filter(|w| w.state() == WorkerState::Idle)
            .map(|w| w.num)
            .collect();
        let alive = self.workers.values().filter(|w| w.lost.is_none()).count();
        let mut waiting = Vec::new();
        let mut elastic_waiting: Vec<(u64, String)> = Vec::new();
        for num in queued {
            if self.jobs[&num].elastic.is_some() {
                match self.pick_elastic(num, &idle) {
                    Ok(picked) => {
                        idle.retain(|w| !picked.contains(w));
                        self.start(num, &picked, now);
                    }
                    Err(why) => elastic_waiting.push((num, why)),
                }
                continue;
            }
            let world = self.jobs[&num].world as usize;
            if world <= idle.len() {
                let picked: Vec<u64> = idle.drain(..world).collect();
                self.start(num, &picked, now);
            } else {
                waiting.push(num);
            }
        }
        for (num, why) in &elastic_waiting {
            let attempt = self.jobs[num].attempt;
            let reason = if attempt > 0 {
                format!("elastic: re-forming after attempt {attempt}: {why}")
            } else {
                format!("elastic: {why}")
            };
            self.set_queue_reason(*num, reason);
        }
        if waiting.is_empty() && elastic_waiting.is_empty() {
            self.grow_elastic(&idle, now);
        }
        // Reasons after the pass, so they count the workers left idle by backfilled jobs.
        for num in waiting {
            let job = &self.jobs[&num];
            let world = job.world as usize;
            let mut reason = format!(
                "needs {world} worker{}, {} of {alive} alive {} idle",
                if world == 1 { "" } else { "s" },
                idle.len(),
                if alive == 1 { "is" } else { "are" }
            );
            if job.attempt > 0 {
                // Waiting for a restart: say so, the failure is in the history.
                reason = format!(
                    "restart {} of {} after attempt {} failed: {reason}",
                    job.attempt, job.max_restarts, job.attempt
                );
            }
            self.set_queue_reason(num, reason);
        }
    }

    /// Sets a queued job's reason, saving and publishing it when it changed.
    fn set_queue_reason(&mut self, num: u64, reason: String) {
        let job = self.jobs.get_mut(&num).expect("listed");
        if job.reason != reason {
            job.reason = reason;
            let id = job.id.clone();
            self.effects.push(Effect::SaveJob(id.clone()));
            self.effects.push(Effect::Publish {
                job: id,
                change: JobChange::Progress,
                log: None,
            });
        }
    }

    /// The workers an elastic job starts on now (the previous attempt's first, in their old
    /// rank order), or why it waits.
    fn pick_elastic(&self, num: u64, idle: &[u64]) -> Result<Vec<u64>, String> {
        let job = &self.jobs[&num];
        let e = job.elastic.as_ref().expect("caller checked");
        let previous: Vec<&Worker> = job
            .workers
            .iter()
            .filter_map(|id| self.worker(id))
            .filter(|w| w.lost.is_none())
            .collect();
        // A survivor still leaving the previous attempt holds the commit the ranks continue
        // from: wait for it (bounded: it confirms the stop or its lease expires).
        let leaving: Vec<String> = previous
            .iter()
            .filter(|w| !job.suspects.contains(&w.id))
            .filter(|w| {
                w.holding.as_ref().is_some_and(|h| h.job == job.id)
                    || w.draining.contains_key(&job.id)
                    || w.running.iter().any(|r| r.job == job.id)
            })
            .map(|w| w.id.to_string())
            .collect();
        if !leaving.is_empty() {
            return Err(format!(
                "waiting for {} to leave attempt {} (they hold its in-memory commit)",
                leaving.join(", "),
                job.attempt
            ));
        }
        let Some(world) = e.world_for(idle.len()) else {
            let alive = self.workers.values().filter(|w| w.lost.is_none()).count();
            return Err(format!(
                "needs at least {} workers (parallel.elastic.min), {} of {alive} alive {} idle",
                e.bounds.min,
                idle.len(),
                if alive == 1 { "is" } else { "are" }
            ));
        };
        let mut picked: Vec<u64> = previous
            .iter()
            .filter(|w| !job.suspects.contains(&w.id))
            .map(|w| w.num)
            .filter(|n| idle.contains(n))
            .take(world as usize)
            .collect();
        // Then the other idle workers, suspects last.
        let (clean, suspect): (Vec<u64>, Vec<u64>) = idle
            .iter()
            .copied()
            .filter(|n| !picked.contains(n))
            .partition(|n| !job.suspects.contains(&self.workers[n].id));
        for n in clean.into_iter().chain(suspect) {
            if picked.len() == world as usize {
                break;
            }
            picked.push(n);
        }
        Ok(picked)
    }

    /// Asks the first running elastic job that the `idle` workers could make larger to stop
    /// at a step boundary and re-form (see the module docs).
    fn grow_elastic(&mut self, idle: &[u64], now: i64) {
        let candidate = self.jobs.values().find_map(|j| {
            let e = j.elastic.as_ref()?;
            if j.state != JobState::Running || e.growing {
                return None;
            }
            let larger = e.world_for(j.world as usize + idle.len())?;
            (larger > j.world).then(|| (j.num, j.id.clone(), j.world, larger))
        });
        let Some((num, id, world, larger)) = candidate else {
            return;
        };
        let why = format!(
            "elastic: growing from {world} to {larger} workers: every rank stops after the same \
             step, commits it and the job re-forms"
        );
        let (workers, done): (Vec<WorkerId>, Vec<bool>) = {
            let job = self.jobs.get_mut(&num).expect("found");
            job.elastic.as_mut().expect("found elastic").growing = true;
            (
                job.workers.clone(),
                job.ranks.iter().map(|s| s.outcome.is_some()).collect(),
            )
        };
        self.log(&id, -1, LogLevel::Info, why.clone(), now);
        for (rank, wid) in workers.iter().enumerate() {
            if done.get(rank).copied().unwrap_or(true) {
                continue;
            }
            if let Some(&wnum) = self.worker_nums.get(wid)
                && self.workers[&wnum].lost.is_none()
            {
                self.push_stop(wnum, &id, &why);
            }
        }
        self.effects.push(Effect::SaveJob(id));
    }

    pub(super) fn start(&mut self, num: u64, picked: &[u64], now: i64) {
        let cfg = self.config;
        let worker_ids: Vec<WorkerId> = picked.iter().map(|n| self.workers[n].id.clone()).collect();
        let (id, assignment) = {
            let job = self.jobs.get_mut(&num).expect("queued job");
            job.attempt += 1;
            job.suspects.clear();
            if job.elastic.is_some() {
                job.world = picked.len() as u32;
            }
            // A new attempt's ranks are assigned now, not restored from the store.
            job.recovered = false;
            job.session = format!("{}/{}", job.id, job.attempt);
            job.workers = worker_ids.clone();
            job.ranks = (0..job.world).map(|_| RankSlot::default()).collect();
            let a = Assignment {
                job: job.id.clone(),
                attempt: job.attempt,
                rank: 0,
                world: job.world,
                spec: job.spec.clone(),
                format: job.format,
                base_dir: job.base_dir.clone(),
                workers: worker_ids.clone(),
                session: job.session.clone(),
                collective_timeout_ms: cfg.collective_timeout_ms,
                checksum_every: cfg.checksum_every,
            };
            (job.id.clone(), a)
        };
        self.transition(&id, JobState::Starting, String::new(), now);
        let mut placed = Vec::new();
        for (rank, wnum) in picked.iter().enumerate() {
            let w = self.workers.get_mut(wnum).expect("idle worker");
            w.holding = Some(Holding {
                job: id.clone(),
                rank: rank as u32,
                attempt: assignment.attempt,
            });
            w.outbox.push(Command::Start(Assignment {
                rank: rank as u32,
                ..assignment.clone()
            }));
            placed.push(format!("rank {rank} on {} ({})", w.id, w.peer_address));
            self.effects.push(Effect::Wake(w.id.clone()));
        }
        self.log(
            &id,
            -1,
            LogLevel::Info,
            format!(
                "starting attempt {} (session {}): {}",
                assignment.attempt,
                assignment.session,
                placed.join(", ")
            ),
            now,
        );
    }
}

/// Attempts that failed so far (an elastic job's grows are not failures).
fn failed_attempts(job: &Job) -> u32 {
    job.attempt
        .saturating_sub(job.elastic.as_ref().map_or(0, |e| e.grows))
}
