//! SQLite storage: one database file in the data dir, WAL mode, versioned migrations.
//!
//! Locking and durability: one connection behind a mutex, used only from worker threads and
//! blocking tasks, never from the async reactor, and never held across a script call. Each
//! write is its own transaction; with WAL and `synchronous = NORMAL` a committed write is in
//! the OS before the call returns, so it survives the process being killed. Other processes
//! (`rhaibot kv ...`) may open the same file while the runtime runs.

mod jobs;
mod kv;

pub use jobs::JobRow;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

/// Milliseconds since the Unix epoch; injectable so tests control expiry.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

/// A storage failure, naming the database file.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file could not be opened or is not a usable database (locked, unreadable, corrupt).
    #[error("database {path}: {message}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// A query failed.
    #[error("database {path}: {source}")]
    Query {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A key's value has the wrong type for the operation.
    #[error("key `{key}` holds {found}, not an integer")]
    NotInteger {
        /// The key.
        key: String,
        /// What it holds.
        found: String,
    },
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: key-value store and scheduled jobs.
    "CREATE TABLE kv (
        ns TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    CREATE INDEX kv_expiry ON kv (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE jobs (
        script TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        next_fire INTEGER,
        last_run INTEGER,
        active INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (script, name)
    ) WITHOUT ROWID;",
];

/// The database.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `dir/rhaibot.db` and migrates it.
    pub fn open_in(dir: &Path) -> Result<Store, StorageError> {
        let path = dir.join("rhaibot.db");
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Open {
            path: path.clone(),
            message: format!("cannot create the data dir: {e}"),
        })?;
        Self::open(&path, system_clock())
    }

    /// Opens the database file `path` with `clock`.
    pub fn open(path: &Path, clock: Clock) -> Result<Store, StorageError> {
        let fail = |message: String| StorageError::Open { path: path.to_owned(), message };
        let conn = Connection::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| fail(e.to_string()))?;
        // Reading the header first turns a corrupt or foreign file into a clear error.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| {
            fail(match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => {
                    "not a SQLite database (corrupt or foreign file); move it away to start fresh".into()
                }
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    "locked by another process; stop it or use another data_dir".into()
                }
                _ => format!("cannot use: {e}"),
            })
        })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!("cannot switch to WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| fail(e.to_string()))?;
        migrate(&conn).map_err(fail)?;
        Ok(Store { path: path.to_owned(), conn: Mutex::new(conn), clock })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Now, by this store's clock (Unix milliseconds).
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn query_error(&self, source: rusqlite::Error) -> StorageError {
        StorageError::Query { path: self.path.clone(), source }
    }
}

fn migrate(conn: &Connection) -> Result<(), String> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(format!(
            "schema version {version} is newer than this rhaibot understands ({}); upgrade rhaibot",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let batch = format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1);
        conn.execute_batch(&batch).map_err(|e| format!("migration {} failed: {e}", i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rhaibot.db");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = Store::open(&path, system_clock()).unwrap_err().to_string();
        assert!(e.contains("rhaibot.db") && e.contains("not a SQLite database"), "{e}");
    }

    #[test]
    fn migrations_run_once_and_record_the_version() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open_in(dir.path()).unwrap());
        let store = Store::open_in(dir.path()).unwrap();
        let v: i64 = store.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rhaibot.db");
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
        let e = Store::open(&path, system_clock()).unwrap_err().to_string();
        assert!(e.contains("schema version 99"), "{e}");
    }
}
