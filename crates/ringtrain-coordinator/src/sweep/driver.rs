//! The sweep driver: one pass over a sweep follows its trials' jobs in the machine (recording
//! outcomes and per-epoch objective values), then starts trials while the budget and
//! `max_concurrent` allow, each suggested by `ringtrain_sweep::suggest` from the trials in
//! completion order and submitted to the machine as an ordinary job; a sweep whose budget is
//! spent and whose trials have all finished succeeds. A pass runs inside
//! [`crate::shared::Shared::apply_sweep`], so the trials it creates and the jobs it submits are
//! committed together.

use super::{Book, Sweep, SweepState, Trial, TrialState, Write};
use crate::machine::{JobState, Machine, NewJob};
use crate::store::Store;
use ringtrain_core::JobId;
use ringtrain_spec::{MonitorMetric, Roots, SpecFormat};
use ringtrain_sweep::{Finished, History, Outcome, Pending, SweepSpec};
use std::path::Path;

/// The name of an objective metric in a job result (`split.metric`, as the worker reports
/// them).
pub(crate) fn result_metric(m: MonitorMetric) -> &'static str {
    match m {
        MonitorMetric::ValLoss => "val.loss",
        MonitorMetric::ValAccuracy => "val.accuracy",
        MonitorMetric::ValF1 => "val.macro_f1",
        MonitorMetric::ValRmse => "val.rmse",
        MonitorMetric::ValMae => "val.mae",
        MonitorMetric::ValBleu => "val.bleu",
    }
}

/// Stores a new sweep and runs its first pass (which submits its first trials). Returns its id.
pub(crate) fn submit(
    book: &mut Book,
    machine: &mut Machine,
    store: &Store,
    now: i64,
    roots: &Roots,
    new: NewSweep,
) -> String {
    let num = book.next.max(1);
    book.next = num + 1;
    let id = format!("sweep-{num}");
    book.sweeps.insert(
        num,
        Sweep {
            num,
            id: id.clone(),
            owner: new.owner,
            text: new.text,
            spec: new.spec,
            base_dir: new.base_dir,
            state: SweepState::Running,
            reason: String::new(),
            submitted_ms: now,
            finished_ms: 0,
            trials: vec![],
        },
    );
    book.writes.push(Write::Sweep(num));
    drive_one(book, machine, store, now, roots, num);
    id
}

/// A sweep to store (validated by the caller).
pub(crate) struct NewSweep {
    pub(crate) owner: String,
    pub(crate) text: String,
    pub(crate) spec: SweepSpec,
    pub(crate) base_dir: String,
}

/// One pass over every running sweep.
pub(crate) fn drive(
    book: &mut Book,
    machine: &mut Machine,
    store: &Store,
    now: i64,
    roots: &Roots,
) {
    let running: Vec<u64> = book
        .sweeps
        .values()
        .filter(|s| s.state == SweepState::Running)
        .map(|s| s.num)
        .collect();
    for num in running {
        drive_one(book, machine, store, now, roots, num);
    }
}

/// Cancels a sweep: no trial starts any more, active trials' jobs are cancelled.
pub(crate) fn cancel(book: &mut Book, machine: &mut Machine, now: i64, num: u64, reason: &str) {
    let Some(sweep) = book.sweeps.get_mut(&num) else {
        return;
    };
    if sweep.state != SweepState::Running {
        return;
    }
    let why = if reason.is_empty() {
        "sweep cancelled".to_string()
    } else {
        format!("sweep cancelled: {reason}")
    };
    let first = sweep.next_finished_seq();
    let active = sweep.trials.iter_mut().filter(|t| t.state.is_active());
    for (seq, t) in (first..).zip(active) {
        if let Some(job) = &t.job {
            // A job that already finished is followed on the next pass instead.
            let _ = machine.cancel(job, &why, now);
        }
        t.state = TrialState::Cancelled;
        t.reason = why.clone();
        t.finished_seq = Some(seq);
        book.writes.push(Write::Trial(num, t.index));
    }
    sweep.state = SweepState::Cancelled;
    sweep.reason = why;
    sweep.finished_ms = now;
    book.writes.push(Write::Sweep(num));
}

fn drive_one(
    book: &mut Book,
    machine: &mut Machine,
    store: &Store,
    now: i64,
    roots: &Roots,
    num: u64,
) {
    let Some(sweep) = book.sweeps.get_mut(&num) else {
        return;
    };
    read_epochs(sweep, machine, store, &mut book.writes);
    prune(sweep, machine, now, &mut book.writes);
    follow_jobs(sweep, machine, &mut book.writes);
    if sweep.state != SweepState::Running {
        return;
    }
    let spec = &sweep.spec;
    let wall_spent = spec
        .budget
        .wall_time_s
        .is_some_and(|s| now.saturating_sub(sweep.submitted_ms) >= (s as i64).saturating_mul(1000));
    let mut exhausted = None;
    // At most max_concurrent new trials per pass: a space whose every point fails at once must
    // not spin here under the lock (a wall-time budget alone does not bound it).
    for _ in 0..spec.max_concurrent {
        let active = sweep.trials.iter().filter(|t| t.state.is_active()).count();
        if active >= spec.max_concurrent as usize {
            break;
        }
        let started = sweep.trials.len() as u64;
        if let Some(b) = spec.budget.trials
            && started >= u64::from(b)
        {
            exhausted = Some(format!("budget spent: {b} trials"));
            break;
        }
        if wall_spent {
            exhausted = Some(format!(
                "budget spent: {} s of wall time",
                spec.budget.wall_time_s.unwrap_or(0)
            ));
            break;
        }
        let (finished, pending) = history(sweep);
        let Some(point) = ringtrain_sweep::suggest(
            spec,
            started,
            History {
                finished: &finished,
                pending: &pending,
            },
        ) else {
            exhausted = Some(format!("grid exhausted after {started} trials"));
            break;
        };
        let mut trial = Trial {
            index: started,
            point,
            job: None,
            state: TrialState::Queued,
            value: None,
            reason: String::new(),
            curve: vec![],
            finished_seq: None,
            pruned_at: None,
            log_seq: 0,
            judged: 0,
        };
        match new_job(sweep, &trial, roots) {
            Ok(new) => {
                let job = machine.submit(new, now);
                tracing::info!(sweep = %sweep.id, trial = started, job = %job, "trial submitted");
                trial.job = Some(job);
            }
            Err(reason) => {
                tracing::warn!(sweep = %sweep.id, trial = started, %reason, "trial has no valid job");
                trial.state = TrialState::Failed;
                trial.reason = reason;
                trial.finished_seq = Some(sweep.next_finished_seq());
            }
        }
        sweep.trials.push(trial);
        book.writes.push(Write::Trial(num, started));
    }
    if sweep.trials.len() as u64 >= spec.budget.trials.map_or(u64::MAX, u64::from) {
        exhausted.get_or_insert_with(|| format!("budget spent: {} trials", sweep.trials.len()));
    }
    if wall_spent {
        exhausted.get_or_insert_with(|| "budget spent: wall time".into());
    }
    if let Some(reason) = exhausted
        && !sweep.trials.iter().any(|t| t.state.is_active())
    {
        let best = sweep.best().map_or(String::new(), |t| {
            format!("; best trial {} = {}", t.index, t.value.unwrap_or(f64::NAN))
        });
        sweep.state = SweepState::Succeeded;
        sweep.reason = format!("{reason}{best}");
        sweep.finished_ms = now;
        book.writes.push(Write::Sweep(num));
        tracing::info!(sweep = %sweep.id, reason = %sweep.reason, "sweep finished");
    }
}

/// Finished trials in completion order and the active ones, as the algorithms take them.
fn history(sweep: &Sweep) -> (Vec<Finished>, Vec<Pending>) {
    let mut done: Vec<&Trial> = sweep
        .trials
        .iter()
        .filter(|t| t.finished_seq.is_some())
        .collect();
    done.sort_by_key(|t| t.finished_seq);
    let finished = done
        .into_iter()
        .map(|t| Finished {
            index: t.index,
            point: t.point.clone(),
            outcome: match (t.state, t.value) {
                (TrialState::Complete, Some(v)) => Outcome::Complete(v),
                (TrialState::Pruned, Some(v)) => Outcome::Pruned {
                    // The epoch judged, not the last one reported before the stop arrived.
                    epochs: t.pruned_at.unwrap_or(t.curve.len() as u32),
                    value: v,
                },
                _ => Outcome::Failed,
            },
        })
        .collect();
    let pending = sweep
        .trials
        .iter()
        .filter(|t| t.state.is_active())
        .map(|t| Pending {
            index: t.index,
            point: t.point.clone(),
        })
        .collect();
    (finished, pending)
}

/// The trial's job, or why its point gives none (validated again here: a combination of values
/// can be invalid although every corner was valid).
fn new_job(sweep: &Sweep, trial: &Trial, roots: &Roots) -> Result<NewJob, String> {
    let (text, spec) = ringtrain_sweep::trial_spec(&sweep.spec, trial.index, &trial.point)
        .map_err(|e| e.to_string())?;
    // A searched path (`data.path`, `checkpoint.dir`) must stay inside the roots too.
    ringtrain_spec::sandbox::check(&spec, Path::new(&sweep.base_dir), roots)
        .map_err(|e| format!("job sandbox: {e}"))?;
    let world = spec
        .parallel
        .data
        .checked_mul(spec.parallel.pipeline)
        .and_then(|w| u32::try_from(w).ok())
        .filter(|w| *w >= 1)
        .ok_or_else(|| {
            "parallel.data × parallel.pipeline is not a usable number of workers".to_string()
        })?;
    Ok(NewJob {
        name: spec.name.clone(),
        spec: text,
        format: SpecFormat::Toml,
        base_dir: sweep.base_dir.clone(),
        world,
        max_restarts: spec.checkpoint.max_restarts,
        owner: sweep.owner.clone(),
        elastic: crate::machine::Elastic::of(&spec),
    })
}

/// Follows each active trial's job: its state, and once final the trial's outcome.
fn follow_jobs(sweep: &mut Sweep, machine: &Machine, writes: &mut Vec<Write>) {
    let metric = sweep.spec.objective.metric;
    let mut seq = sweep.next_finished_seq();
    for t in sweep.trials.iter_mut().filter(|t| t.state.is_active()) {
        let before = (t.state, t.curve.len());
        let job = t.job.as_ref().and_then(|id| machine.job(id));
        let Some(job) = job else {
            t.state = TrialState::Failed;
            t.reason = format!(
                "its job {} is gone",
                t.job.as_ref().map_or("(none)", JobId::as_str)
            );
            t.finished_seq = Some(seq);
            seq += 1;
            writes.push(Write::Trial(sweep.num, t.index));
            continue;
        };
        match job.state {
            JobState::Queued => t.state = TrialState::Queued,
            JobState::Starting | JobState::Running => t.state = TrialState::Running,
            JobState::Succeeded => {
                let value = job
                    .result
                    .as_ref()
                    .and_then(|r| r.metrics.get(result_metric(metric)).copied());
                match value {
                    Some(v) => {
                        t.state = TrialState::Complete;
                        t.value = Some(v);
                    }
                    None => {
                        t.state = TrialState::Failed;
                        t.reason = format!("its job's result has no {}", result_metric(metric));
                    }
                }
            }
            JobState::Failed => {
                t.state = TrialState::Failed;
                t.reason = job.reason.clone();
            }
            JobState::Cancelled => match t.pruned_at {
                Some(epoch) => {
                    t.state = TrialState::Pruned;
                    t.value = t.curve.get(epoch as usize - 1).copied();
                    t.reason = format!("pruned at epoch {epoch}");
                }
                None => {
                    t.state = TrialState::Cancelled;
                    t.reason = job.reason.clone();
                }
            },
        }
        if !t.state.is_active() {
            t.finished_seq = Some(seq);
            seq += 1;
            tracing::info!(sweep = %sweep.id, trial = t.index, state = t.state.as_str(), "trial finished");
        }
        if (t.state, t.curve.len()) != before {
            writes.push(Write::Trial(sweep.num, t.index));
        }
    }
}

/// The value of `metric` in rank 0's per-epoch log line (`epoch E: step S, train loss L, val
/// loss V, val rmse R, ...`, written by the worker after every epoch's evaluation): the 1-based
/// count of epochs done and the value.
pub(crate) fn epoch_value(message: &str, metric: MonitorMetric) -> Option<(u32, f64)> {
    let rest = message.strip_prefix("epoch ")?;
    let (epoch, rest) = rest.split_once(':')?;
    let epoch: u32 = epoch.parse().ok()?;
    let name = result_metric(metric).strip_prefix("val.")?;
    let key = format!(", val {name} ");
    let at = rest.find(&key)? + key.len();
    let value = rest[at..].split(',').next()?.trim().parse::<f64>().ok()?;
    Some((epoch + 1, value))
}

/// Appends the epochs rank 0 logged since the last pass to each active trial's curve.
fn read_epochs(sweep: &mut Sweep, machine: &Machine, store: &Store, writes: &mut Vec<Write>) {
    let metric = sweep.spec.objective.metric;
    for t in sweep.trials.iter_mut().filter(|t| t.state.is_active()) {
        let Some(job) = t.job.as_ref().and_then(|id| machine.job(id)) else {
            continue;
        };
        let lines = match store.logs(job, t.log_seq, 1000) {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(sweep = %sweep.id, trial = t.index, error = %e, "trial log not read");
                continue;
            }
        };
        let before = t.curve.len();
        for line in lines {
            t.log_seq = t.log_seq.max(line.seq);
            if line.rank != 0 {
                continue;
            }
            if let Some((epoch, value)) = epoch_value(&line.message, metric)
                && epoch as usize == t.curve.len() + 1
            {
                t.curve.push(value);
            }
        }
        if t.curve.len() != before {
            writes.push(Write::Trial(sweep.num, t.index));
        }
    }
}

/// Runs the pruner over each active trial's epochs not judged yet; a pruned trial's job is
/// cancelled with the reason `pruned at epoch E`: the cancel reaches every rank through the
/// stop flag voted with the gradients, so all ranks stop after the same step, and the workers
/// are freed for the next trial.
fn prune(sweep: &mut Sweep, machine: &mut Machine, now: i64, writes: &mut Vec<Write>) {
    let Some(pruner) = sweep.spec.pruner else {
        return;
    };
    let direction = sweep.spec.objective.direction;
    for i in 0..sweep.trials.len() {
        let t = &sweep.trials[i];
        if !t.state.is_active() || t.pruned_at.is_some() || t.judged >= t.curve.len() {
            continue;
        }
        let mut verdict = None;
        for epochs in t.judged + 1..=t.curve.len() {
            let others: Vec<ringtrain_sweep::Curve<'_>> = sweep
                .trials
                .iter()
                .filter(|o| o.index != t.index)
                .map(|o| ringtrain_sweep::Curve {
                    values: &o.curve,
                    complete: o.state == TrialState::Complete,
                })
                .collect();
            if ringtrain_sweep::decide(&pruner, direction, &t.curve[..epochs], &others)
                == ringtrain_sweep::Verdict::Prune
            {
                verdict = Some(epochs as u32);
                break;
            }
        }
        let t = &mut sweep.trials[i];
        t.judged = t.curve.len();
        if let (Some(epoch), Some(job)) = (verdict, t.job.clone()) {
            let reason = format!("pruned at epoch {epoch}");
            tracing::info!(sweep = %sweep.id, trial = t.index, job = %job, %reason, "trial pruned");
            t.pruned_at = Some(epoch);
            // A job that just finished cannot be cancelled; it is then followed as complete.
            let _ = machine.cancel(&job, &reason, now);
            writes.push(Write::Trial(sweep.num, t.index));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_lines_give_the_objective() {
        let line = "epoch 2: step 30, train loss 0.500000, val loss 0.400000, val rmse 12.500000, val mae 10.000000";
        assert_eq!(epoch_value(line, MonitorMetric::ValRmse), Some((3, 12.5)));
        assert_eq!(epoch_value(line, MonitorMetric::ValLoss), Some((3, 0.4)));
        assert_eq!(epoch_value(line, MonitorMetric::ValMae), Some((3, 10.0)));
        assert_eq!(epoch_value(line, MonitorMetric::ValAccuracy), None);
        assert_eq!(epoch_value("checkpoint /x", MonitorMetric::ValLoss), None);
        let cls = "epoch 0: step 5, train loss 1.0, val loss 0.9, val accuracy 0.750000, val macro_f1 0.700000";
        assert_eq!(epoch_value(cls, MonitorMetric::ValF1), Some((1, 0.7)));
    }
}
