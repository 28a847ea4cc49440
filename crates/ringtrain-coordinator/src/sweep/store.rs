//! The sweep tables of the state database (schema 5, `crate::store::SWEEP_SCHEMA`): `sweeps` (one row per sweep with its
//! spec), `trials` (parameters as JSON, job, state, objective, completion order) and
//! `trial_metrics` (the objective after each epoch). Rows are written by
//! [`crate::shared::Shared::apply_sweep`] in the same transaction as the jobs the driver
//! submitted, and read back whole at start-up.

use super::{Book, Sweep, SweepState, Trial, TrialState, Write};
use crate::store::{Store, StoreError};
use ringtrain_core::JobId;
use ringtrain_sweep::Point;
use rusqlite::{Transaction, params};

/// Writes the rows named by `writes` as the book has them now.
pub(crate) fn write(tx: &Transaction<'_>, book: &Book, writes: &[Write]) -> rusqlite::Result<()> {
    for w in writes {
        match *w {
            Write::Sweep(num) => {
                let Some(s) = book.sweeps.get(&num) else {
                    continue;
                };
                tx.execute(
                    "INSERT INTO sweeps (num, owner, spec, base_dir, state, reason, submitted_ms, finished_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT(num) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                     finished_ms = excluded.finished_ms",
                    params![num as i64, s.owner, s.text, s.base_dir, s.state.as_str(), s.reason, s.submitted_ms, s.finished_ms],
                )?;
            }
            Write::Trial(num, idx) => {
                let Some(t) = book
                    .sweeps
                    .get(&num)
                    .and_then(|s| s.trials.get(idx as usize))
                else {
                    continue;
                };
                let params_json = serde_json::to_string(&t.point).unwrap_or_default();
                tx.execute(
                    "INSERT OR REPLACE INTO trials (sweep_num, idx, params, job_id, state, value, reason, finished_seq, pruned_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        num as i64,
                        idx as i64,
                        params_json,
                        t.job.as_ref().map(|j| j.as_str().to_string()),
                        t.state.as_str(),
                        t.value,
                        t.reason,
                        t.finished_seq.map(|s| s as i64),
                        t.pruned_at.map(i64::from),
                    ],
                )?;
                // The curve only grows: epochs already stored are left alone.
                for (epoch, v) in t.curve.iter().enumerate() {
                    tx.execute(
                        "INSERT OR IGNORE INTO trial_metrics (sweep_num, idx, epoch, value) VALUES (?1, ?2, ?3, ?4)",
                        params![num as i64, idx as i64, epoch as i64 + 1, v],
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Reads every sweep and trial back. A stored sweep spec that no longer validates (written by
/// another build) is an error naming the sweep: the coordinator does not guess.
pub(crate) fn load(store: &Store) -> Result<Book, StoreError> {
    let conn = store.conn();
    let err = |error| StoreError::Sqlite {
        path: store.path().to_path_buf(),
        error,
    };
    let corrupt = |what: String| StoreError::Corrupt {
        path: store.path().to_path_buf(),
        what,
    };
    let mut book = Book::default();
    let mut stmt = conn
        .prepare("SELECT num, owner, spec, base_dir, state, reason, submitted_ms, finished_ms FROM sweeps ORDER BY num")
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(err)?;
    for row in rows {
        let (num, owner, text, base_dir, state, reason, submitted_ms, finished_ms) =
            row.map_err(err)?;
        let num = num as u64;
        let id = format!("sweep-{num}");
        let spec = ringtrain_sweep::parse_str(&text, &id, &id)
            .map_err(|e| corrupt(format!("{id}: stored sweep spec does not validate: {e}")))?;
        let state = SweepState::parse(&state)
            .ok_or_else(|| corrupt(format!("{id}: sweep state {state:?}")))?;
        book.next = book.next.max(num + 1);
        book.sweeps.insert(
            num,
            Sweep {
                num,
                id,
                owner,
                text,
                spec,
                base_dir,
                state,
                reason,
                submitted_ms,
                finished_ms,
                trials: vec![],
            },
        );
    }
    drop(stmt);
    let mut stmt = conn
        .prepare(
            "SELECT sweep_num, idx, params, job_id, state, value, reason, finished_seq, pruned_at FROM trials ORDER BY sweep_num, idx",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<f64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<i64>>(7)?,
                r.get::<_, Option<i64>>(8)?,
            ))
        })
        .map_err(err)?;
    for row in rows {
        let (num, idx, params_json, job, state, value, reason, finished_seq, pruned_at) =
            row.map_err(err)?;
        let sweep = book
            .sweeps
            .get_mut(&(num as u64))
            .ok_or_else(|| corrupt(format!("trial {idx} of unknown sweep {num}")))?;
        let point: Point = serde_json::from_str(&params_json)
            .map_err(|e| corrupt(format!("{}: trial {idx} parameters: {e}", sweep.id)))?;
        if point.0.len() != sweep.spec.params.len() || idx as usize != sweep.trials.len() {
            return Err(corrupt(format!(
                "{}: trial {idx} does not fit the sweep",
                sweep.id
            )));
        }
        let state = TrialState::parse(&state)
            .ok_or_else(|| corrupt(format!("{}: trial state {state:?}", sweep.id)))?;
        sweep.trials.push(Trial {
            index: idx as u64,
            point,
            job: job.map(JobId::new),
            state,
            value,
            reason,
            curve: vec![],
            finished_seq: finished_seq.map(|s| s as u64),
            pruned_at: pruned_at.map(|e| e as u32),
            log_seq: 0,
            judged: 0,
        });
    }
    drop(stmt);
    let mut stmt = conn
        .prepare(
            "SELECT sweep_num, idx, epoch, value FROM trial_metrics ORDER BY sweep_num, idx, epoch",
        )
        .map_err(err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<f64>>(3)?,
            ))
        })
        .map_err(err)?;
    for row in rows {
        let (num, idx, epoch, value) = row.map_err(err)?;
        if let Some(t) = book
            .sweeps
            .get_mut(&(num as u64))
            .and_then(|s| s.trials.get_mut(idx as usize))
            && epoch as usize == t.curve.len() + 1
        {
            t.curve.push(value.unwrap_or(f64::NAN));
            t.judged = t.curve.len();
        }
    }
    Ok(book)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Machine, MachineConfig};
    use ringtrain_sweep::ParamValue;

    const SWEEP: &str = r#"
name = "s"
algorithm = "random"
objective = { metric = "val_loss" }
budget = { trials = 3 }
[[param]]
path = "model.hidden"
kind = "int"
low = 4
high = 8
[job.model]
cell = "gru"
hidden = 8
[job.task]
kind = "forecast"
horizon = 1
[job.data]
path = "x.csv"
features = ["y"]
targets = ["y"]
window = 4
split = [0.6, 0.2, 0.2]
[job.train]
epochs = 2
batch_size = 4
optimizer = { kind = "adam", lr = 0.01 }
"#;

    #[test]
    fn a_version_4_file_gets_the_sweep_tables_and_a_book_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        // What a schema 4 coordinator wrote: no sweep tables.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE trial_metrics; DROP TABLE trials; DROP TABLE sweeps;
             ALTER TABLE jobs DROP COLUMN elastic; PRAGMA user_version = 4;",
        )
        .unwrap();
        drop(conn);
        let mut store = Store::open(&path).unwrap();
        assert!(load(&store).unwrap().sweeps.is_empty());

        let spec = ringtrain_sweep::parse_str(SWEEP, "<test>", "s").unwrap();
        let text = ringtrain_sweep::to_toml(&spec);
        let trial = |index: u64, state, value, curve: Vec<f64>, seq| Trial {
            index,
            point: Point(vec![ParamValue::Int(4 + index as i64)]),
            job: Some(JobId::new(format!("job-{}", index + 1))),
            state,
            value,
            reason: String::new(),
            curve,
            finished_seq: seq,
            pruned_at: None,
            log_seq: 9,
            judged: 0,
        };
        let mut book = Book::default();
        book.sweeps.insert(
            1,
            Sweep {
                num: 1,
                id: "sweep-1".into(),
                owner: "alice".into(),
                text,
                spec,
                base_dir: "/data".into(),
                state: SweepState::Running,
                reason: String::new(),
                submitted_ms: 5,
                finished_ms: 0,
                trials: vec![
                    trial(0, TrialState::Complete, Some(0.5), vec![0.9, 0.5], Some(0)),
                    trial(1, TrialState::Running, None, vec![0.8], None),
                ],
            },
        );
        book.next = 2;
        let writes = [Write::Sweep(1), Write::Trial(1, 0), Write::Trial(1, 1)];
        let machine = Machine::new(MachineConfig {
            lease_ms: 1000,
            collective_timeout_ms: 1000,
            checksum_every: 0,
            progress_save_ms: 0,
        });
        let rows = |tx: &Transaction<'_>| write(tx, &book, &writes);
        store.apply_with(&machine, &[], Some(&rows)).unwrap();
        drop(store);

        let back = load(&Store::open(&path).unwrap()).unwrap();
        assert_eq!(back.next, 2);
        let s = &back.sweeps[&1];
        assert_eq!(
            (s.owner.as_str(), s.base_dir.as_str(), s.state),
            ("alice", "/data", SweepState::Running)
        );
        assert_eq!(s.spec, book.sweeps[&1].spec);
        assert_eq!(s.trials.len(), 2);
        for (a, b) in s.trials.iter().zip(&book.sweeps[&1].trials) {
            assert_eq!(
                (a.index, &a.point, &a.job, a.state, a.value),
                (b.index, &b.point, &b.job, b.state, b.value)
            );
            assert_eq!((&a.curve, a.finished_seq), (&b.curve, b.finished_seq));
            // Read back: the log is read again from the start, but epochs already stored are
            // not judged again.
            assert_eq!((a.log_seq, a.judged), (0, a.curve.len()));
        }
    }
}
