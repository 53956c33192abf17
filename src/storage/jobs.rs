//! Scheduled jobs as the running process registered them: what `rhaibot jobs` shows, and the
//! last-run times the misfire policy reads after a restart.

use rusqlite::{OptionalExtension, params};

use super::{StorageError, Store};

/// One job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// Owning script.
    pub script: String,
    /// Job name (unique within the script).
    pub name: String,
    /// Human-readable schedule, e.g. `cron 0 0 8 * * * (Asia/Shanghai)`.
    pub spec: String,
    /// Next fire time, Unix ms.
    pub next_fire: Option<i64>,
    /// Last time it ran, Unix ms.
    pub last_run: Option<i64>,
}

impl Store {
    /// Marks every job inactive: a starting runtime registers its jobs afresh.
    pub fn jobs_reset(&self) -> Result<(), StorageError> {
        self.write(|conn| {
            conn.execute("UPDATE jobs SET active = 0, next_fire = NULL", []).map_err(|e| self.query_error(e))
        })?;
        Ok(())
    }

    /// Records a registered job and its next fire time.
    pub fn job_upsert(&self, script: &str, name: &str, spec: &str, next_fire: Option<i64>) -> Result<(), StorageError> {
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO jobs (script, name, spec, next_fire, active) VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (script, name) DO UPDATE SET spec = excluded.spec, next_fire = excluded.next_fire, active = 1",
            )
            .and_then(|mut s| s.execute(params![script, name, spec, next_fire]))
            .map_err(|e| self.query_error(e))
        })?;
        Ok(())
    }

    /// Records that a job ran at `at` and when it fires next.
    pub fn job_ran(&self, script: &str, name: &str, at: i64, next_fire: Option<i64>) -> Result<(), StorageError> {
        self.write(|conn| {
            conn.prepare_cached("UPDATE jobs SET last_run = ?3, next_fire = ?4 WHERE script = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![script, name, at, next_fire]))
                .map_err(|e| self.query_error(e))
        })?;
        Ok(())
    }

    /// Marks a job inactive (cancelled or its script unloaded); its last run is kept.
    pub fn job_deactivate(&self, script: &str, name: &str) -> Result<(), StorageError> {
        self.write(|conn| {
            conn.execute(
                "UPDATE jobs SET active = 0, next_fire = NULL WHERE script = ?1 AND name = ?2",
                params![script, name],
            )
            .map_err(|e| self.query_error(e))
        })?;
        Ok(())
    }

    /// When a job last ran, from any earlier process.
    pub fn job_last_run(&self, script: &str, name: &str) -> Result<Option<i64>, StorageError> {
        self.conn()
            .query_row("SELECT last_run FROM jobs WHERE script = ?1 AND name = ?2", params![script, name], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.query_error(e))
    }

    /// Every active job, by script and name.
    pub fn jobs_active(&self) -> Result<Vec<JobRow>, StorageError> {
        self.jobs_where("WHERE active = 1")
    }

    /// Every job ever registered, active or not (what a stopped bot had scheduled).
    pub fn jobs_all(&self) -> Result<Vec<JobRow>, StorageError> {
        self.jobs_where("")
    }

    fn jobs_where(&self, filter: &str) -> Result<Vec<JobRow>, StorageError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT script, name, spec, next_fire, last_run FROM jobs {filter} ORDER BY script, name"
            ))
            .map_err(|e| self.query_error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JobRow {
                    script: r.get(0)?,
                    name: r.get(1)?,
                    spec: r.get(2)?,
                    next_fire: r.get(3)?,
                    last_run: r.get(4)?,
                })
            })
            .map_err(|e| self.query_error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.query_error(e))
    }
}
