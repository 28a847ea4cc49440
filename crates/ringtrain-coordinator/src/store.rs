//! The coordinator's durable state: one SQLite file (WAL journal, `synchronous = FULL`, so a
//! committed transaction survives a power cut or `kill -9`). The shell writes the effects of each
//! state-machine event in one transaction ([`Store::apply`]) before it answers the RPC that caused
//! them, so an acknowledged transition is never lost.
//!
//! Tables: `jobs` (one row per job: spec, state, reason, ranks, progress, result), `transitions`
//! (every state change with its time), `job_logs` (each job's log lines), `workers` (every
//! worker ever registered; rows are never deleted, so ids are never reused, also across
//! restarts) and `secrets` (the random key worker credentials and session tokens are derived
//! from, so they stay valid across restarts; see [`Store::credential_key`]). The file is marked with `PRAGMA application_id` and versioned with
//! `PRAGMA user_version`: a file of another application, a newer schema or a non-database file is
//! refused with an error saying which.

use crate::machine::{
    Effect, Elastic, Job, JobResultData, JobState, LogEntry, LogLevel, Machine, RankSlot,
    Resources, Transition, Worker,
};
use ringtrain_core::{JobId, WorkerId};
use ringtrain_spec::SpecFormat;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `PRAGMA application_id` of a ringtrain state database ("RTrn").
pub const APPLICATION_ID: i32 = 0x5254_726e;

/// Schema version this build reads and writes (`PRAGMA user_version`). Version 1 files (before
/// `jobs.max_restarts`), version 2 files (before `secrets`) and version 3 files (before
/// `jobs.owner`), version 4 files (before the sweep tables) and version 5 files (before
/// `jobs.elastic`) are migrated in place when opened.
pub const SCHEMA_VERSION: i32 = 6;

/// Upgrades a version 1 file: jobs submitted before restarts existed get none.
const MIGRATE_1_TO_2: &str = "BEGIN;
ALTER TABLE jobs ADD COLUMN max_restarts INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;
COMMIT;";

/// Upgrades a version 2 file: adds the `secrets` table (its key is drawn on first use, so
/// workers registered before the upgrade have no credential and register again).
const MIGRATE_2_TO_3: &str = "BEGIN;
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
PRAGMA user_version = 3;
COMMIT;";

/// Upgrades a version 3 file: jobs submitted before owners were recorded have none (only an
/// admin may cancel them when the coordinator has client tokens).
const MIGRATE_3_TO_4: &str = "BEGIN;
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
PRAGMA user_version = 4;
COMMIT;";

/// Upgrades a version 5 file: jobs submitted before elastic jobs existed are not elastic.
const MIGRATE_5_TO_6: &str = "BEGIN;
ALTER TABLE jobs ADD COLUMN elastic TEXT NOT NULL DEFAULT '';
PRAGMA user_version = 6;
COMMIT;";

/// Name of the credential key's row in `secrets`.
const CREDENTIAL_KEY: &str = "credential_key";

/// The hyperparameter sweep tables (schema 5; `IF NOT EXISTS` since the same text migrates a
/// schema 4 file). Written and read by the sweep module's `store`.
pub(crate) const SWEEP_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sweeps (
    num INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    spec TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    sweep_num INTEGER NOT NULL REFERENCES sweeps(num),
    idx INTEGER NOT NULL,
    params TEXT NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL,
    value REAL,
    reason TEXT NOT NULL,
    finished_seq INTEGER,
    pruned_at INTEGER,
    PRIMARY KEY (sweep_num, idx)
);
CREATE TABLE IF NOT EXISTS trial_metrics (
    sweep_num INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (sweep_num, idx, epoch)
);
";

/// Rows another module writes in the transaction of [`Store::apply_with`].
pub(crate) type ExtraRows<'a> = &'a dyn Fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Why the state database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (IO error, disk full, locked, ...).
    #[error("state database {path}: {error}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: rusqlite::Error,
    },
    /// The file exists but is not a ringtrain state database.
    #[error("{path} is not a ringtrain state database ({detail})")]
    NotRingtrain {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The database was written by a newer ringtrain.
    #[error(
        "state database {path} has schema version {found}; this coordinator supports version {supported} (upgrade ringtrain)"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: i32,
        /// Version this build supports.
        supported: i32,
    },
    /// Another process (a second coordinator) has the database open.
    #[error(
        "state database {path} is in use by another coordinator ({holder}); two coordinators on one state file would overwrite each other's decisions"
    )]
    InUse {
        /// The database file.
        path: PathBuf,
        /// What the lock file says about the holder (its pid), or that it could not be read.
        holder: String,
    },
    /// The lock file beside the database cannot be created or locked.
    #[error("state database lock {path}: {error}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Underlying error. Part of the message, and for that reason not the error's
        /// `source()`: a printer of the cause chain (the CLI's) then shows it once, not twice.
        error: std::io::Error,
    },
    /// A stored value cannot be read back.
    #[error("state database {path}: corrupt {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which value, and why.
        what: String,
    },
}

/// Everything a store holds, for [`Machine::restore`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// Every job, oldest first, with its history.
    pub jobs: Vec<Job>,
    /// Every worker, in registration order.
    pub workers: Vec<Worker>,
}

/// An open state database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// `<path>.lock`, exclusively locked while the store is open (released when dropped).
    _lock: std::fs::File,
    /// Commits still to fail on purpose (tests of the rollback path).
    #[cfg(any(test, feature = "fault-injection"))]
    failing_commits: std::sync::Arc<std::sync::atomic::AtomicU32>,
    /// Log lines kept per job (see [`Store::set_log_retention`]).
    log_retention: u64,
    /// Bytes of log text kept per job (see [`Store::set_log_byte_retention`]).
    log_byte_retention: u64,
    /// Bytes of log text each job has in `job_logs`, for the jobs written since the store was
    /// opened (read from the table on first use). Updated only after a commit, so a rolled back
    /// transaction leaves it true.
    log_bytes: std::collections::HashMap<i64, u64>,
}

/// Log lines kept per job unless [`Store::set_log_retention`] says otherwise.
pub const DEFAULT_LOG_RETENTION: u64 = 10_000;
/// Bytes of log text kept per job unless [`Store::set_log_byte_retention`] says otherwise:
/// 16 MiB, so 10,000 lines of the longest kind (64 KiB each) cannot take 640 MiB per job.
pub const DEFAULT_LOG_BYTE_RETENTION: u64 = 16 << 20;

/// Largest size the WAL file is truncated back to after a checkpoint (`journal_size_limit`), so
/// one large transaction does not leave a large file behind.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// How long [`Store::open`] waits for another holder of the lock to let go.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the exclusive lock of the database at `path` (`<path>.lock`, holding the owner's pid),
/// so that a second coordinator on the same file fails at once instead of interleaving its
/// writes with the first one's.
fn lock(path: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let lock_path = PathBuf::from(format!("{}.lock", path.display()));
    let io = |source| StoreError::Lock {
        path: lock_path.clone(),
        error: source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io)?;
    // A coordinator that was just stopped (or an in-process one being dropped) may still be
    // letting go: wait briefly before calling the file taken.
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut attempt = file.try_lock();
    while matches!(attempt, Err(std::fs::TryLockError::WouldBlock))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        attempt = file.try_lock();
    }
    match attempt {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let holder = match file.read_to_string(&mut holder) {
                Ok(_) if !holder.trim().is_empty() => holder.trim().to_string(),
                _ => "holder unknown".to_string(),
            };
            return Err(StoreError::InUse {
                path: path.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "pid {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

const SCHEMA: &str = "
CREATE TABLE jobs (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    spec_format TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    world INTEGER NOT NULL,
    workers TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    session TEXT NOT NULL,
    submitted_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    ranks TEXT NOT NULL,
    result TEXT,
    max_restarts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT '',
    elastic TEXT NOT NULL DEFAULT ''
);
CREATE TABLE transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_num INTEGER NOT NULL REFERENCES jobs(num),
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX transitions_by_job ON transitions(job_num, seq);
CREATE TABLE job_logs (
    job_num INTEGER NOT NULL REFERENCES jobs(num),
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (job_num, seq)
);
CREATE TABLE workers (
    num INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    peer_address TEXT NOT NULL,
    metrics_address TEXT NOT NULL,
    version TEXT NOT NULL,
    threads INTEGER NOT NULL,
    gpus INTEGER NOT NULL,
    memory_bytes INTEGER NOT NULL,
    registered_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    lost_ms INTEGER,
    lost_reason TEXT
);
CREATE TABLE secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

impl Store {
    /// Opens (creating when absent) the state database at `path`: WAL journal, `synchronous =
    /// FULL`, schema created in a fresh file, a version 1 schema migrated; holds the exclusive
    /// lock `<path>.lock` until dropped (waiting up to 3 s for a previous holder to let go).
    ///
    /// # Errors
    /// [`StoreError::InUse`] when another coordinator holds the lock, [`StoreError::Lock`] when
    /// the lock file cannot be used, [`StoreError::NotRingtrain`] for a file that is not SQLite
    /// or belongs to another application, [`StoreError::NewerSchema`] for a newer schema,
    /// [`StoreError::Sqlite`] for IO errors.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            error: source,
        };
        let lock = lock(path)?;
        let conn = Connection::open(path).map_err(sql)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            _lock: lock,
            #[cfg(any(test, feature = "fault-injection"))]
            failing_commits: Default::default(),
            log_retention: DEFAULT_LOG_RETENTION,
            log_byte_retention: DEFAULT_LOG_BYTE_RETENTION,
            log_bytes: Default::default(),
        };
        // The first read of the header tells a non-database file apart.
        let app_id: i32 = match store
            .conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
        {
            Ok(v) => v,
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                return Err(StoreError::NotRingtrain {
                    path: path.to_path_buf(),
                    detail: "not an SQLite database".into(),
                });
            }
            Err(e) => return Err(sql(e)),
        };
        let version: i32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(sql)?;
        let tables: i64 = store
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(sql)?;
        if app_id == 0 && version == 0 && tables == 0 {
            store.create()?;
        } else if app_id != APPLICATION_ID {
            return Err(StoreError::NotRingtrain {
                path: path.to_path_buf(),
                detail: format!(
                    "an SQLite database with application_id {app_id:#x} and {tables} schema objects"
                ),
            });
        } else if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        } else if (1..SCHEMA_VERSION).contains(&version) {
            if version == 1 {
                store.conn.execute_batch(MIGRATE_1_TO_2).map_err(sql)?;
                tracing::info!(path = %path.display(), "state database migrated from schema 1 to 2");
            }
            if version <= 2 {
                store.conn.execute_batch(MIGRATE_2_TO_3).map_err(sql)?;
                tracing::info!(path = %path.display(), "state database migrated from schema 2 to 3");
            }
            if version <= 3 {
                store.conn.execute_batch(MIGRATE_3_TO_4).map_err(sql)?;
                tracing::info!(path = %path.display(), "state database migrated from schema 3 to 4");
            }
            if version <= 4 {
                // Version 4 to 5 adds the hyperparameter sweep tables (empty: no sweep existed).
                let migrate_4_to_5 =
                    format!("BEGIN; {} PRAGMA user_version = 5; COMMIT;", SWEEP_SCHEMA);
                store.conn.execute_batch(&migrate_4_to_5).map_err(sql)?;
                tracing::info!(path = %path.display(), "state database migrated from schema 4 to 5");
            }
            store.conn.execute_batch(MIGRATE_5_TO_6).map_err(sql)?;
            tracing::info!(path = %path.display(), "state database migrated from schema 5 to 6");
        } else if version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!("schema version {version} (expected {SCHEMA_VERSION})"),
            });
        }
        let journal: String = store
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(sql)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!("journal mode {journal} (WAL could not be enabled)"),
            });
        }
        store
            .conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        store
            .conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql)?;
        store
            .conn
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(sql)?;
        Ok(store)
    }

    fn create(&self) -> Result<(), StoreError> {
        let batch = format!(
            "BEGIN; {SCHEMA} {} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
            SWEEP_SCHEMA
        );
        self.conn.execute_batch(&batch).map_err(|e| self.err(e))
    }

    /// The counter of commits that [`Store::apply`] fails on purpose: while it is above zero,
    /// each apply runs its statements, then rolls back instead of committing, decrements it and
    /// returns the error an SQLite IO failure gives. For tests of the callers' rollback path.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn failing_commits(&self) -> std::sync::Arc<std::sync::atomic::AtomicU32> {
        self.failing_commits.clone()
    }

    /// Keeps at most `lines` (at least 1) log lines per job from now on: writing a job's log
    /// line deletes its lines older than the newest `lines`.
    pub fn set_log_retention(&mut self, lines: u64) {
        self.log_retention = lines.max(1);
    }

    /// Keeps at most `bytes` of log text (message bytes) per job from now on: writing a job's
    /// log line deletes its oldest lines until the rest fit. A job's newest line is always kept
    /// (a line is at most 64 KiB).
    pub fn set_log_byte_retention(&mut self, bytes: u64) {
        self.log_byte_retention = bytes;
    }

    /// The key worker credentials and session tokens are derived from: the stored one, or
    /// `fresh` (random bytes from the caller), stored now, when the file has none yet. Keeping it
    /// in the state file is what lets a restarted coordinator recognise the workers and sessions
    /// it issued credentials to.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when it cannot be read or written, [`StoreError::Corrupt`] for a
    /// stored key that is not 32 bytes.
    pub fn credential_key(&mut self, fresh: [u8; 32]) -> Result<[u8; 32], StoreError> {
        let stored: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                [CREDENTIAL_KEY],
                |r| r.get(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(|e| self.err(e))?;
        match stored {
            Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                self.corrupt(format!("credential key is {} bytes, not 32", bytes.len()))
            }),
            None => {
                self.conn
                    .execute(
                        "INSERT INTO secrets (name, value) VALUES (?1, ?2)",
                        params![CREDENTIAL_KEY, fresh.as_slice()],
                    )
                    .map_err(|e| self.err(e))?;
                Ok(fresh)
            }
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            error: source,
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    /// Writes the effects of one event in one transaction: job and worker rows as the machine
    /// has them now, transitions and log lines. Other effects need no storage.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the transaction cannot be committed (nothing of it is kept).
    pub fn apply(&mut self, machine: &Machine, effects: &[Effect]) -> Result<(), StoreError> {
        self.apply_with(machine, effects, None)
    }

    /// The connection, for reads of tables other modules own (the sweep tables).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// [`Store::apply`] plus `extra` in the same transaction (the sweep driver's rows with the
    /// jobs it submits, so a trial and its job are committed together or not at all).
    pub(crate) fn apply_with(
        &mut self,
        machine: &Machine,
        effects: &[Effect],
        extra: Option<ExtraRows<'_>>,
    ) -> Result<(), StoreError> {
        if extra.is_none()
            && !effects.iter().any(|e| {
                matches!(
                    e,
                    Effect::SaveJob(_)
                        | Effect::SaveWorker(_)
                        | Effect::Transition { .. }
                        | Effect::Log { .. }
                )
            })
        {
            return Ok(());
        }
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            error: source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        // Job rows first (transitions and log lines reference them), each once per event and
        // as the event left it. A log line alone writes no job row: its row exists since the
        // event that submitted the job.
        let saved_jobs: BTreeSet<&JobId> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::SaveJob(id) | Effect::Transition { job: id, .. } => Some(id),
                _ => None,
            })
            .collect();
        for id in &saved_jobs {
            if let Some(job) = machine.job(id) {
                save_job(&tx, job).map_err(err)?;
            }
        }
        let mut saved_workers = BTreeSet::new();
        // Per job number: the newest log line written, for retention.
        let mut logged: BTreeMap<i64, u64> = BTreeMap::new();
        // Per job: bytes of log text this event adds.
        let mut added: BTreeMap<i64, u64> = BTreeMap::new();
        for effect in effects {
            match effect {
                Effect::SaveJob(_) => {}
                Effect::SaveWorker(id) => {
                    if saved_workers.insert(id.clone())
                        && let Some(w) = machine.worker(id)
                    {
                        save_worker(&tx, w).map_err(err)?;
                    }
                }
                Effect::Transition { job, change, .. } => {
                    let num = machine.job(job).map_or(0, |j| j.num as i64);
                    tx.execute(
                        "INSERT INTO transitions (job_num, state, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
                        params![num, change.state.as_str(), change.reason, change.at_ms],
                    )
                    .map_err(err)?;
                }
                Effect::Log { job, line } => {
                    let num = machine.job(job).map_or(0, |j| j.num as i64);
                    tx.execute(
                        "INSERT INTO job_logs (job_num, seq, at_ms, rank, level, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            num,
                            line.seq as i64,
                            line.at_ms,
                            line.rank,
                            level_str(line.level),
                            line.message
                        ],
                    )
                    .map_err(err)?;
                    let newest = logged.entry(num).or_default();
                    *newest = (*newest).max(line.seq);
                    *added.entry(num).or_default() += line.message.len() as u64;
                }
                Effect::Wake(_) | Effect::Publish { .. } => {}
            }
        }
        // Retention: each job keeps its newest `log_retention` lines (the primary key makes this
        // a range delete), and of those only the newest that fit `log_byte_retention` bytes.
        // Freed pages are reused, so the file stops growing.
        let mut log_bytes = Vec::new();
        for (num, newest) in logged {
            let sum = |cut: i64| -> rusqlite::Result<u64> {
                tx.query_row(
                    "SELECT COALESCE(SUM(length(CAST(message AS BLOB))), 0) FROM job_logs
                     WHERE job_num = ?1 AND seq <= ?2",
                    params![num, cut],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| n.max(0) as u64)
            };
            // What the job holds now, this event's lines included.
            let mut total = match self.log_bytes.get(&num) {
                Some(before) => before + added.get(&num).copied().unwrap_or(0),
                None => sum(i64::MAX).map_err(err)?,
            };
            if let Some(cut) = newest.checked_sub(self.log_retention) {
                let cut = cut.min(i64::MAX as u64) as i64;
                total = total.saturating_sub(sum(cut).map_err(err)?);
                tx.execute(
                    "DELETE FROM job_logs WHERE job_num = ?1 AND seq <= ?2",
                    params![num, cut],
                )
                .map_err(err)?;
            }
            if total > self.log_byte_retention {
                // Oldest first, dropping lines until the rest fit; never the newest line.
                let mut stmt = tx
                    .prepare(
                        "SELECT seq, length(CAST(message AS BLOB)) FROM job_logs
                         WHERE job_num = ?1 AND seq < ?2 ORDER BY seq",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![num, newest.min(i64::MAX as u64) as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .map_err(err)?;
                let mut cut = None;
                for row in rows {
                    let (seq, len) = row.map_err(err)?;
                    total = total.saturating_sub(len.max(0) as u64);
                    cut = Some(seq);
                    if total <= self.log_byte_retention {
                        break;
                    }
                }
                drop(stmt);
                if let Some(cut) = cut {
                    tx.execute(
                        "DELETE FROM job_logs WHERE job_num = ?1 AND seq <= ?2",
                        params![num, cut],
                    )
                    .map_err(err)?;
                }
            }
            log_bytes.push((num, total));
        }
        if let Some(extra) = extra {
            extra(&tx).map_err(err)?;
        }
        #[cfg(any(test, feature = "fault-injection"))]
        if self
            .failing_commits
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok()
        {
            tx.rollback().map_err(err)?;
            return Err(err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected commit failure".into()),
            )));
        }
        tx.commit().map_err(err)?;
        self.log_bytes.extend(log_bytes);
        Ok(())
    }

    /// Reads every job (with history) and worker back.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] on IO errors, [`StoreError::Corrupt`] for values that cannot be
    /// parsed.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let mut history: BTreeMap<i64, Vec<Transition>> = BTreeMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT job_num, state, reason, at_ms FROM transitions ORDER BY seq")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (num, state, reason, at_ms) = row.map_err(|e| self.err(e))?;
                let state = JobState::parse(&state)
                    .ok_or_else(|| self.corrupt(format!("transition state {state:?}")))?;
                history.entry(num).or_default().push(Transition {
                    state,
                    reason,
                    at_ms,
                });
            }
        }
        let mut last_seq: BTreeMap<i64, u64> = BTreeMap::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT job_num, max(seq) FROM job_logs GROUP BY job_num")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (num, seq) = row.map_err(|e| self.err(e))?;
                last_seq.insert(num, seq.max(0) as u64);
            }
        }
        let mut jobs = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT num, id, name, spec, spec_format, base_dir, state, reason, world, workers,
                            attempt, session, submitted_ms, started_ms, finished_ms, ranks, result,
                            max_restarts, owner, elastic
                     FROM jobs ORDER BY num",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(JobRow {
                        num: r.get(0)?,
                        id: r.get(1)?,
                        name: r.get(2)?,
                        spec: r.get(3)?,
                        spec_format: r.get(4)?,
                        base_dir: r.get(5)?,
                        state: r.get(6)?,
                        reason: r.get(7)?,
                        world: r.get(8)?,
                        workers: r.get(9)?,
                        attempt: r.get(10)?,
                        session: r.get(11)?,
                        submitted_ms: r.get(12)?,
                        started_ms: r.get(13)?,
                        finished_ms: r.get(14)?,
                        ranks: r.get(15)?,
                        result: r.get(16)?,
                        max_restarts: r.get(17)?,
                        owner: r.get(18)?,
                        elastic: r.get(19)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let row = row.map_err(|e| self.err(e))?;
                let id = row.id.clone();
                let bad = |what: &str, e: &dyn std::fmt::Display| {
                    self.corrupt(format!("{what} of job {id}: {e}"))
                };
                let state = JobState::parse(&row.state).ok_or_else(|| bad("state", &row.state))?;
                let format = match row.spec_format.as_str() {
                    "toml" => SpecFormat::Toml,
                    "json" => SpecFormat::Json,
                    other => return Err(bad("spec format", &other)),
                };
                let workers: Vec<String> =
                    serde_json::from_str(&row.workers).map_err(|e| bad("workers", &e))?;
                let ranks: Vec<RankSlot> =
                    serde_json::from_str(&row.ranks).map_err(|e| bad("ranks", &e))?;
                let result: Option<JobResultData> = match &row.result {
                    Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("result", &e))?),
                    None => None,
                };
                let elastic: Option<Elastic> = if row.elastic.is_empty() {
                    None
                } else {
                    Some(serde_json::from_str(&row.elastic).map_err(|e| bad("elastic", &e))?)
                };
                jobs.push(Job {
                    num: row.num.max(0) as u64,
                    id: JobId::new(row.id),
                    name: row.name,
                    spec: row.spec,
                    format,
                    base_dir: row.base_dir,
                    world: row.world.clamp(1, u32::MAX as i64) as u32,
                    state,
                    reason: row.reason,
                    workers: workers.into_iter().map(WorkerId::new).collect(),
                    submitted_ms: row.submitted_ms,
                    started_ms: row.started_ms,
                    finished_ms: row.finished_ms,
                    history: history.remove(&row.num).unwrap_or_default(),
                    attempt: row.attempt.clamp(0, u32::MAX as i64) as u32,
                    session: row.session,
                    ranks,
                    result,
                    last_log_seq: last_seq.get(&row.num).copied().unwrap_or(0),
                    recovered: false,
                    max_restarts: row.max_restarts.clamp(0, u32::MAX as i64) as u32,
                    owner: row.owner,
                    progress_saved_ms: 0,
                    elastic,
                    suspects: BTreeSet::new(),
                });
            }
        }
        let mut workers = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT num, id, name, peer_address, metrics_address, version, threads, gpus,
                            memory_bytes, registered_ms, last_seen_ms, lost_ms, lost_reason
                     FROM workers ORDER BY num",
                )
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| {
                    let lost_ms: Option<i64> = r.get(11)?;
                    let lost_reason: Option<String> = r.get(12)?;
                    Ok(Worker {
                        num: r.get::<_, i64>(0)?.max(0) as u64,
                        id: WorkerId::new(r.get::<_, String>(1)?),
                        name: r.get(2)?,
                        peer_address: r.get(3)?,
                        metrics_address: r.get(4)?,
                        version: r.get(5)?,
                        resources: Resources {
                            threads: r.get::<_, i64>(6)?.clamp(0, u32::MAX as i64) as u32,
                            gpus: r.get::<_, i64>(7)?.clamp(0, u32::MAX as i64) as u32,
                            memory_bytes: r.get::<_, i64>(8)?.max(0) as u64,
                        },
                        registered_ms: r.get(9)?,
                        last_seen_ms: r.get(10)?,
                        lost: lost_ms.map(|at| (at, lost_reason.unwrap_or_default())),
                        holding: None,
                        running: Vec::new(),
                        outbox: Vec::new(),
                        draining: BTreeMap::new(),
                    })
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                workers.push(row.map_err(|e| self.err(e))?);
            }
        }
        Ok(Loaded { jobs, workers })
    }

    /// Log lines of a job with `seq > after_seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] on IO errors.
    pub fn logs(&self, job: &Job, after_seq: u64, limit: u32) -> Result<Vec<LogEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, at_ms, rank, level, message FROM job_logs
                 WHERE job_num = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    job.num as i64,
                    after_seq.min(i64::MAX as u64) as i64,
                    limit as i64
                ],
                |r| {
                    Ok(LogEntry {
                        seq: r.get::<_, i64>(0)?.max(0) as u64,
                        at_ms: r.get(1)?,
                        rank: r.get(2)?,
                        level: parse_level(&r.get::<_, String>(3)?),
                        message: r.get(4)?,
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

/// A `jobs` row as read, before parsing.
struct JobRow {
    num: i64,
    id: String,
    name: String,
    spec: String,
    spec_format: String,
    base_dir: String,
    state: String,
    reason: String,
    world: i64,
    workers: String,
    attempt: i64,
    session: String,
    submitted_ms: i64,
    started_ms: i64,
    finished_ms: i64,
    ranks: String,
    result: Option<String>,
    max_restarts: i64,
    owner: String,
    elastic: String,
}

fn save_job(tx: &rusqlite::Transaction<'_>, job: &Job) -> rusqlite::Result<()> {
    let to_json = |v: Result<String, serde_json::Error>| {
        v.map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
    };
    let workers: Vec<&str> = job.workers.iter().map(WorkerId::as_str).collect();
    let workers = to_json(serde_json::to_string(&workers))?;
    let ranks = to_json(serde_json::to_string(&job.ranks))?;
    let result = match &job.result {
        Some(r) => Some(to_json(serde_json::to_string(r))?),
        None => None,
    };
    let format = match job.format {
        SpecFormat::Toml => "toml",
        SpecFormat::Json => "json",
    };
    let elastic = match &job.elastic {
        Some(e) => to_json(serde_json::to_string(e))?,
        None => String::new(),
    };
    tx.execute(
        "INSERT INTO jobs (num, id, name, spec, spec_format, base_dir, state, reason, world, workers,
                           attempt, session, submitted_ms, started_ms, finished_ms, ranks, result,
                           max_restarts, owner, elastic)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
                 ?19, ?20)
         ON CONFLICT(num) DO UPDATE SET state = excluded.state, reason = excluded.reason,
             workers = excluded.workers, attempt = excluded.attempt, session = excluded.session,
             started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
             ranks = excluded.ranks, result = excluded.result, world = excluded.world,
             elastic = excluded.elastic",
        params![
            job.num as i64,
            job.id.as_str(),
            job.name,
            job.spec,
            format,
            job.base_dir,
            job.state.as_str(),
            job.reason,
            job.world,
            workers,
            job.attempt,
            job.session,
            job.submitted_ms,
            job.started_ms,
            job.finished_ms,
            ranks,
            result,
            job.max_restarts,
            job.owner,
            elastic
        ],
    )?;
    Ok(())
}

fn save_worker(tx: &rusqlite::Transaction<'_>, w: &Worker) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO workers (num, id, name, peer_address, metrics_address, version, threads, gpus,
                              memory_bytes, registered_ms, last_seen_ms, lost_ms, lost_reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(num) DO UPDATE SET last_seen_ms = excluded.last_seen_ms,
             lost_ms = excluded.lost_ms, lost_reason = excluded.lost_reason",
        params![
            w.num as i64,
            w.id.as_str(),
            w.name,
            w.peer_address,
            w.metrics_address,
            w.version,
            w.resources.threads,
            w.resources.gpus,
            w.resources.memory_bytes.min(i64::MAX as u64) as i64,
            w.registered_ms,
            w.last_seen_ms,
            w.lost.as_ref().map(|(at, _)| *at),
            w.lost.as_ref().map(|(_, why)| why.as_str()),
        ],
    )?;
    Ok(())
}

fn level_str(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

fn parse_level(text: &str) -> LogLevel {
    match text {
        "debug" => LogLevel::Debug,
        "warn" => LogLevel::Warn,
        "error" => LogLevel::Error,
        _ => LogLevel::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{
        MachineConfig, NewJob, NewWorker, RankOutcome, RankPhase, RankReport, ResultReport,
    };

    fn config() -> MachineConfig {
        MachineConfig {
            lease_ms: 10_000,
            collective_timeout_ms: 1_000,
            checksum_every: 0,
            progress_save_ms: 0,
        }
    }

    fn submit(m: &mut Machine, store: &mut Store, world: u32, now: i64) -> JobId {
        let id = m.submit(
            NewJob {
                name: "t".into(),
                spec: "name = \"t\"".into(),
                format: SpecFormat::Toml,
                base_dir: "/data".into(),
                world,
                max_restarts: 0,
                owner: "alice".into(),
                elastic: None,
            },
            now,
        );
        let effects = m.drain_effects();
        store.apply(m, &effects).unwrap();
        id
    }

    fn register(m: &mut Machine, store: &mut Store, now: i64) -> WorkerId {
        let id = m.register(
            NewWorker {
                name: "n".into(),
                peer_address: "127.0.0.1:1".into(),
                metrics_address: String::new(),
                version: "0.1.0".into(),
                resources: Resources {
                    threads: 2,
                    gpus: 0,
                    memory_bytes: 1 << 30,
                },
            },
            now,
        );
        let effects = m.drain_effects();
        store.apply(m, &effects).unwrap();
        id
    }

    #[test]
    fn jobs_workers_history_results_and_logs_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let mut m = Machine::new(config());
        let w = register(&mut m, &mut store, 1);
        let done = submit(&mut m, &mut store, 1, 2);
        let queued = submit(&mut m, &mut store, 4, 3);
        m.progress(
            crate::machine::ProgressReport {
                worker: w.clone(),
                job: done.clone(),
                attempt: 1,
                rank: 0,
                phase: Some(RankPhase::Training),
                report: RankReport {
                    step: 5,
                    val_loss: f64::NAN,
                    ..RankReport::default()
                },
                logs: vec![(LogLevel::Warn, "slow disk".into())],
            },
            4,
        )
        .unwrap();
        m.result(
            ResultReport {
                worker: w.clone(),
                job: done.clone(),
                attempt: 1,
                rank: 0,
                outcome: RankOutcome::Succeeded(Some(JobResultData {
                    metrics: [("test.mse".to_string(), 0.5)].into_iter().collect(),
                    report_json: "{\"history\": []}".into(),
                    ..JobResultData::default()
                })),
                blamed: None,
            },
            5,
        )
        .unwrap();
        let effects = m.drain_effects();
        store.apply(&m, &effects).unwrap();
        // Confirmation state and the progress write clock are deliberately not stored (ranks
        // are confirmed again after a restart).
        let before: Vec<Job> = m
            .jobs()
            .cloned()
            .map(|mut j| {
                for s in &mut j.ranks {
                    s.confirmed = false;
                    s.unaccounted_since_ms = None;
                }
                j.progress_saved_ms = 0;
                j
            })
            .collect();
        drop(store);

        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        // Compared as text: the NaN validation loss is not equal to itself.
        assert_eq!(format!("{:?}", loaded.jobs), format!("{before:?}"));
        assert_eq!(loaded.workers.len(), 1);
        assert_eq!(loaded.workers[0].id, w);
        assert_eq!(loaded.workers[0].resources.memory_bytes, 1 << 30);
        let done_job = &loaded.jobs[0];
        assert_eq!(done_job.state, JobState::Succeeded);
        assert_eq!(
            done_job.result.as_ref().unwrap().report_json,
            "{\"history\": []}"
        );
        assert_eq!(loaded.jobs[1].id, queued);
        assert_eq!(loaded.jobs[1].state, JobState::Queued);
        let logs = store.logs(done_job, 0, 100).unwrap();
        assert_eq!(
            logs.iter().map(|l| l.seq).collect::<Vec<_>>(),
            (1..=logs.len() as u64).collect::<Vec<_>>()
        );
        assert!(
            logs.iter()
                .any(|l| l.message == "slow disk" && l.rank == 0 && l.level == LogLevel::Warn)
        );
        let tail = store.logs(done_job, 2, 1).unwrap();
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0].seq, 3);

        // Ids continue after a restart.
        let mut m = Machine::restore(config(), loaded.jobs, loaded.workers, 0, 0, 100);
        let mut store = store;
        let next = submit(&mut m, &mut store, 1, 101);
        assert_eq!(next.as_str(), "job-3");
        assert_eq!(register(&mut m, &mut store, 102).as_str(), "w-2");
    }

    #[test]
    fn each_job_keeps_its_newest_log_lines_and_a_failed_commit_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        store.set_log_retention(5);
        let mut m = Machine::new(config());
        let w = register(&mut m, &mut store, 1);
        let job = submit(&mut m, &mut store, 1, 2);
        let report = |logs: Vec<(LogLevel, String)>| crate::machine::ProgressReport {
            worker: w.clone(),
            job: job.clone(),
            attempt: 1,
            rank: 0,
            phase: Some(RankPhase::Training),
            report: RankReport::default(),
            logs,
        };
        let lines = (0..20)
            .map(|i| (LogLevel::Info, format!("line {i}")))
            .collect();
        m.progress(report(lines), 3).unwrap();
        let effects = m.drain_effects();
        store.apply(&m, &effects).unwrap();
        let last = m.job(&job).unwrap().last_log_seq;
        let kept = store.logs(m.job(&job).unwrap(), 0, 100).unwrap();
        assert_eq!(
            kept.iter().map(|l| l.seq).collect::<Vec<_>>(),
            (last - 4..=last).collect::<Vec<_>>()
        );
        assert!(kept.iter().any(|l| l.message == "line 19"), "{kept:?}");

        // A commit made to fail keeps nothing of its event.
        store
            .failing_commits()
            .store(1, std::sync::atomic::Ordering::SeqCst);
        m.progress(report(vec![(LogLevel::Warn, "lost".into())]), 4)
            .unwrap();
        let effects = m.drain_effects();
        let err = store.apply(&m, &effects).unwrap_err();
        assert!(err.to_string().contains("injected commit failure"), "{err}");
        let kept = store.logs(m.job(&job).unwrap(), 0, 100).unwrap();
        assert_eq!(kept.last().unwrap().seq, last);
        drop(store);
        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.jobs[0].last_log_seq, last);
    }

    #[test]
    fn each_job_keeps_at_most_its_log_byte_retention_and_always_its_newest_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        store.set_log_byte_retention(10_000);
        let mut m = Machine::new(config());
        let w = register(&mut m, &mut store, 1);
        let job = submit(&mut m, &mut store, 1, 2);
        let report = |logs: Vec<(LogLevel, String)>| crate::machine::ProgressReport {
            worker: w.clone(),
            job: job.clone(),
            attempt: 1,
            rank: 0,
            phase: Some(RankPhase::Training),
            report: RankReport::default(),
            logs,
        };
        let stored = |store: &Store, m: &Machine| {
            let kept = store.logs(m.job(&job).unwrap(), 0, 10_000).unwrap();
            let bytes: usize = kept.iter().map(|l| l.message.len()).sum();
            (kept, bytes)
        };
        // Many events of 1000-byte lines: the total stays within 10,000 bytes, newest kept.
        for event in 0..30 {
            let lines = (0..3)
                .map(|i| {
                    (
                        LogLevel::Info,
                        format!("{event:02}-{i}:{}", "x".repeat(995)),
                    )
                })
                .collect();
            m.progress(report(lines), 3 + event).unwrap();
            let effects = m.drain_effects();
            store.apply(&m, &effects).unwrap();
            let (kept, bytes) = stored(&store, &m);
            assert!(bytes <= 10_000, "{bytes} bytes after event {event}");
            let newest = format!("{event:02}-2:");
            assert!(kept.iter().any(|l| l.message.starts_with(&newest)));
        }
        let (kept, _) = stored(&store, &m);
        assert!(kept.len() >= 5, "{} lines kept", kept.len());
        // A restarted store (no cached totals) keeps enforcing the bound.
        drop(store);
        let mut store = Store::open(&path).unwrap();
        store.set_log_byte_retention(10_000);
        m.progress(report(vec![(LogLevel::Info, "y".repeat(4000))]), 100)
            .unwrap();
        let effects = m.drain_effects();
        store.apply(&m, &effects).unwrap();
        let (kept, bytes) = stored(&store, &m);
        assert!(bytes <= 10_000, "{bytes}");
        assert_eq!(kept.last().unwrap().message.len(), 4000);
        // One line larger than the whole budget is still kept, alone.
        store.set_log_byte_retention(100);
        m.progress(report(vec![(LogLevel::Warn, "z".repeat(500))]), 101)
            .unwrap();
        let effects = m.drain_effects();
        store.apply(&m, &effects).unwrap();
        let (kept, _) = stored(&store, &m);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message.len(), 500);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(
            &path,
            "this is not SQLite, just some text that is long enough ".repeat(20),
        )
        .unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotRingtrain { .. }), "{err}");
        assert!(err.to_string().contains("not a ringtrain state database"));
    }

    #[test]
    fn another_applications_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER);").unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotRingtrain { .. }), "{err}");
    }

    #[test]
    fn a_newer_schema_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NewerSchema {
                    found: 7,
                    supported: 6,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("schema version 7"));
    }

    #[test]
    fn the_database_uses_wal_and_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_version_1_file_is_migrated_and_its_jobs_get_no_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let mut m = Machine::new(config());
        let job = submit(&mut m, &mut store, 1, 1);
        drop(store);
        // Make the file what a schema 1 coordinator wrote: no max_restarts or owner column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE jobs DROP COLUMN max_restarts; ALTER TABLE jobs DROP COLUMN owner;
             ALTER TABLE jobs DROP COLUMN elastic; PRAGMA user_version = 1;",
        )
        .unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        let version: i32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let jobs = store.load().unwrap().jobs;
        let j = jobs.iter().find(|j| j.id == job).unwrap();
        assert_eq!(j.max_restarts, 0);
        assert_eq!(j.state, JobState::Queued);
    }

    #[test]
    fn a_version_2_file_is_migrated_and_gets_one_credential_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let mut m = Machine::new(config());
        let job = submit(&mut m, &mut store, 1, 1);
        let worker = register(&mut m, &mut store, 2);
        drop(store);
        // Make the file what a schema 2 coordinator wrote: no secrets table, no owner column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TABLE secrets; ALTER TABLE jobs DROP COLUMN owner;
             ALTER TABLE jobs DROP COLUMN elastic; PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let mut store = Store::open(&path).unwrap();
        let version: i32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let loaded = store.load().unwrap();
        assert!(loaded.jobs.iter().any(|j| j.id == job));
        assert!(loaded.workers.iter().any(|w| w.id == worker));
        // The first key offered is kept; later offers (other restarts) get the same one back.
        let key = store.credential_key([7; 32]).unwrap();
        assert_eq!(key, [7; 32]);
        drop(store);
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.credential_key([9; 32]).unwrap(), [7; 32]);
    }

    #[test]
    fn a_version_5_file_is_migrated_and_elastic_bounds_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let mut m = Machine::new(config());
        let old = submit(&mut m, &mut store, 1, 1);
        drop(store);
        // Make the file what a schema 5 coordinator wrote: no elastic column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE jobs DROP COLUMN elastic; PRAGMA user_version = 5;")
            .unwrap();
        drop(conn);
        let mut store = Store::open(&path).unwrap();
        let jobs = store.load().unwrap().jobs;
        assert_eq!(jobs.iter().find(|j| j.id == old).unwrap().elastic, None);
        let elastic = Elastic {
            bounds: ringtrain_spec::ElasticSpec {
                min: 2,
                max: 4,
                commit_every: 5,
            },
            batch: 8,
            grows: 3,
            growing: true,
        };
        let id = m.submit(
            NewJob {
                name: "e".into(),
                spec: "name = \"e\"".into(),
                format: SpecFormat::Toml,
                base_dir: "/tmp".into(),
                world: 4,
                max_restarts: 1,
                owner: String::new(),
                elastic: Some(elastic.clone()),
            },
            5,
        );
        let effects = m.drain_effects();
        store.apply(&m, &effects).unwrap();
        drop(store);
        let jobs = Store::open(&path).unwrap().load().unwrap().jobs;
        let back = jobs.iter().find(|j| j.id == id).unwrap();
        // `growing` is not stored: a stop in flight is not known to have been delivered.
        assert_eq!(
            back.elastic,
            Some(Elastic {
                growing: false,
                ..elastic
            })
        );
    }

    #[test]
    fn a_version_3_file_is_migrated_and_its_jobs_have_no_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let mut m = Machine::new(config());
        let job = submit(&mut m, &mut store, 1, 1);
        assert_eq!(store.load().unwrap().jobs[0].owner, "alice");
        drop(store);
        // Make the file what a schema 3 coordinator wrote: no owner column.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE jobs DROP COLUMN owner; ALTER TABLE jobs DROP COLUMN elastic;
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let mut store = Store::open(&path).unwrap();
        let version: i32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let loaded = store.load().unwrap();
        let j = loaded.jobs.iter().find(|j| j.id == job).unwrap();
        assert_eq!(j.owner, "");
        assert_eq!(j.state, JobState::Queued);
        // Jobs submitted after the upgrade keep their owner.
        let second = submit(&mut m, &mut store, 1, 2);
        let jobs = store.load().unwrap().jobs;
        assert_eq!(jobs.iter().find(|j| j.id == second).unwrap().owner, "alice");
    }

    #[test]
    fn a_second_store_on_the_same_file_is_refused_until_the_first_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = Store::open(&path).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::InUse { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())) && text.contains("state.db"),
            "{text}"
        );
        drop(first);
        Store::open(&path).unwrap();
    }
}
