//! SQLite storage: one database file in the data dir, WAL mode, versioned migrations.
//!
//! Locking and durability: one connection behind a mutex, used only from worker threads and
//! blocking tasks, never from the async reactor, and never held across a script call. With WAL
//! and `synchronous = NORMAL` a committed write is in the OS, so it survives the process being
//! killed. Other processes (`rhaibot kv ...`) may open the same file while the runtime runs.
//!
//! A write is committed before the call returns, except on a thread inside
//! [`Store::group_writes`] (a worker running callbacks): there writes join one open
//! transaction, a [batch](group), committed when the worker runs out of work, when the batch
//! is due, or before anything waits. What must not be seen before the writes are durable (a
//! reply) goes through [`Store::after_commit`].

mod group;
mod jobs;
mod kv;
mod ratelimit;

pub use ratelimit::MAX_USES as MAX_RATE_USES;

pub use group::{Effect, GroupedWrites, callback_begins};
pub use jobs::JobRow;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
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
    /// A batch the running callback wrote into, or read from, was lost (the reason was logged
    /// when it happened).
    #[error("database {path}: the kv writes made before were lost")]
    Lost {
        /// The database file.
        path: PathBuf,
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
    db: Mutex<group::Db>,
    clock: Clock,
    /// A batch is open: read without the lock by every [`Store::after_commit`].
    open: AtomicBool,
    /// Batches lost so far.
    lost: AtomicU64,
    /// Held while a commit's effects run, so that effects run in the order they came.
    releasing: Mutex<()>,
    /// Commits running their effects (or about to).
    releasing_now: AtomicUsize,
    /// How old a batch may grow ([`group::MAX_AGE`]).
    max_age: Duration,
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

    /// Opens `dir/rhaibot.db` only if it exists: tools that read a bot's data never create an
    /// empty database where the bot has none (a wrong directory, a missing `--config`).
    pub fn open_existing(dir: &Path) -> Result<Store, StorageError> {
        let path = dir.join("rhaibot.db");
        if !path.is_file() {
            return Err(StorageError::Open {
                path,
                message: "no database here: run from the bot's directory, or pass --config <the bot's config>".into(),
            });
        }
        Self::open(&path, system_clock())
    }

    /// Opens the database file `path` with `clock`.
    pub fn open(path: &Path, clock: Clock) -> Result<Store, StorageError> {
        let fail = |message: String| StorageError::Open { path: path.to_owned(), message };
        let conn = Connection::open(path).map_err(|e| fail(explain(&e, path, "cannot open")))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(|e| fail(explain(&e, path, "cannot use")))?;
        // Reading the header first turns a corrupt or foreign file into a clear error.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| fail(explain(&e, path, "cannot use")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(fail(format!("cannot switch to WAL mode (got {mode})")));
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| fail(explain(&e, path, "cannot use")))?;
        // Damage past the header shows only when its page is read: find it now rather than as
        // "malformed" errors in scripts later, and before a migration writes to the file.
        // Reads the whole file, which is quick at a bot's sizes.
        let problem = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0))
            .map_err(|e| fail(explain(&e, path, "cannot check")))?;
        if problem != "ok" {
            return Err(fail(corrupt(path, &problem)));
        }
        migrate(&conn, path).map_err(fail)?;
        Ok(Store::with(path, conn, clock))
    }

    fn with(path: &Path, conn: Connection, clock: Clock) -> Store {
        Store {
            path: path.to_owned(),
            db: Mutex::new(group::Db::new(conn)),
            clock,
            open: AtomicBool::new(false),
            lost: AtomicU64::new(0),
            releasing: Mutex::new(()),
            releasing_now: AtomicUsize::new(0),
            max_age: group::MAX_AGE,
        }
    }

    /// A store in memory, gone with the process: for listing the script surface and for tests
    /// of logic, never for a bot's data.
    pub fn in_memory() -> Result<Store, StorageError> {
        let path = Path::new(":memory:");
        let fail = |message: String| StorageError::Open { path: path.to_owned(), message };
        let conn = Connection::open_in_memory().map_err(|e| fail(e.to_string()))?;
        migrate(&conn, path).map_err(fail)?;
        Ok(Store::with(path, conn, system_clock()))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Now, by this store's clock (Unix milliseconds).
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The connection, for reads (which see the open batch's writes) and for writes that
    /// go through [`Store::write`].
    fn conn(&self) -> MutexGuard<'_, group::Db> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn query_error(&self, source: rusqlite::Error) -> StorageError {
        StorageError::Query { path: self.path.clone(), source }
    }
}

fn migrate(conn: &Connection, path: &Path) -> Result<(), String> {
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| explain(&e, path, "cannot read"))?;
    let version = usize::try_from(version).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(format!(
            "schema version {version} is newer than this rhaibot understands ({}); upgrade rhaibot",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let batch = format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1);
        conn.execute_batch(&batch).map_err(|e| explain(&e, path, &format!("migration {} failed", i + 1)))?;
    }
    Ok(())
}

/// What an error while opening means for the user: corrupt and locked files get advice,
/// anything else is `doing: error`.
fn explain(e: &rusqlite::Error, path: &Path, doing: &str) -> String {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(NotADatabase) => corrupt(path, "not a SQLite database: a damaged header or another kind of file"),
        Some(DatabaseCorrupt) => corrupt(path, &e.to_string()),
        Some(DatabaseBusy | DatabaseLocked) => "locked by another process; stop it or use another data_dir".into(),
        _ => format!("{doing}: {e}"),
    }
}

/// The message for a damaged file: the first problem SQLite named, and what to do.
fn corrupt(path: &Path, problem: &str) -> String {
    // quick_check may start with a "*** in database main ***" heading line.
    let first = problem.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("***")).unwrap_or(problem);
    let first = match first.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &first[..cut]),
        None => first.to_owned(),
    };
    format!(
        "corrupt ({first}); restore it from a backup, or move it away to start with an empty store \
         (`sqlite3 {} .recover | sqlite3 recovered.db` may save the data)",
        path.display()
    )
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
    fn damage_inside_the_file_is_found_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in(dir.path()).unwrap();
        let value = format!("\"{}\"", "v".repeat(1000));
        for i in 0..200 {
            store.kv_set("test", &format!("key{i}"), &value, None).unwrap();
        }
        let path = store.path().to_owned();
        drop(store);
        // Everything in the main file, so the damage below is not papered over by the WAL.
        Connection::open(&path).unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 8 * 4096, "the rows span several pages");
        let mut x = 0x2545_f491_u32;
        for b in &mut bytes[4096..5120] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        std::fs::write(&path, bytes).unwrap();
        let e = Store::open_in(dir.path()).unwrap_err().to_string();
        assert!(e.contains("rhaibot.db") && e.contains("corrupt"), "{e}");
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
