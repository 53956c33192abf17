//! Group commit: the writes of callbacks running together share one transaction.
//!
//! A commit costs more than the write it makes durable (the WAL write and SQLite's file locks,
//! about 20 µs here, against a few for the statement). A worker running callbacks enters
//! [`Store::group_writes`]; its writes then join the open batch (begun at the first of them)
//! and return at once. Whatever must not be seen before those writes are durable, a reply
//! above all, goes through [`Store::after_commit`]: while a batch is open it waits, and runs,
//! in the order it came, when the batch commits. So a reply never reports a write that a
//! crash could still take back, and nothing that would block (a call waiting for its answer,
//! a conversation waiting for the next message) starts before the commit: the worker commits
//! first ([`Store::commit`]).
//!
//! The batch commits when the worker that ran a callback finds no more work queued, when it
//! holds [`MAX_WRITES`] writes or is [`MAX_AGE`] old (checked at each write, by a callback's
//! progress, and between drains), before a callback waits, when a write comes from a thread
//! that does not group its writes, and when the store closes. If the commit fails (a full
//! disk), none of the batch is kept: the effects that waited for it are told so instead of
//! run, and so is everything later from a callback that wrote in it or read what it held
//! (until that callback ends: [`callback_begins`]), and the error is logged.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::{StorageError, Store};
use crate::logsafe::RateLimit;

/// Writes in one batch at most.
pub const MAX_WRITES: usize = 16;

/// How old a batch may grow while its workers have more to do. It is checked at each write, at
/// a callback's progress checks and between drains, so replies waiting for it may also wait
/// for the callbacks running when it falls due (a drain is at most 64 events).
pub const MAX_AGE: Duration = Duration::from_millis(1);

thread_local! {
    /// This thread groups its writes: it commits them when its work runs out.
    static GROUPING: Cell<bool> = const { Cell::new(false) };
    /// The store's count of lost batches when this thread's callback first wrote (or read
    /// what an open batch held); `None` before that. A count that moved since means what the
    /// callback wrote or read may be lost.
    static WROTE: Cell<Option<u64>> = const { Cell::new(None) };
}

/// What runs once the writes made before it are durable; given the error when they were lost.
pub type Effect = Box<dyn FnOnce(Result<(), &StorageError>) + Send>;

/// The connection and the batch open on it.
pub(super) struct Db {
    conn: Connection,
    batch: Option<Batch>,
    /// Failed commits are logged at most this often.
    failures: RateLimit,
}

/// The open transaction of grouped writes.
struct Batch {
    writes: usize,
    opened: Instant,
    /// Effects waiting for the commit, in the order they came.
    held: Vec<Effect>,
}

impl Batch {
    fn due(&self, max_age: Duration) -> bool {
        self.writes >= MAX_WRITES || self.opened.elapsed() >= max_age
    }
}

impl Db {
    pub(super) fn new(conn: Connection) -> Db {
        Db { conn, batch: None, failures: RateLimit::per_connection() }
    }
}

impl Deref for Db {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// While held, the writes this thread makes are grouped; see [`Store::group_writes`].
#[derive(Debug)]
pub struct GroupedWrites {
    was: bool,
}

impl Drop for GroupedWrites {
    fn drop(&mut self) {
        GROUPING.set(self.was);
        WROTE.set(None);
    }
}

/// A new callback begins on this thread: what the previous one wrote or read no longer
/// concerns what this one sends.
pub fn callback_begins() {
    WROTE.set(None);
}

impl Store {
    /// Groups the writes this thread makes until the guard drops. The caller promises to call
    /// [`Store::commit`] (or [`Store::commit_if_due`] while it has more work queued) after its
    /// work, and [`Store::commit`] before anything it runs waits.
    pub fn group_writes(&self) -> GroupedWrites {
        WROTE.set(None);
        GroupedWrites { was: GROUPING.replace(true) }
    }

    /// Runs `write` on the connection: in the open batch if there is one (opening one on a
    /// grouping thread), and committed before it returns on any other thread.
    pub(super) fn write<T>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let grouping = GROUPING.get();
        let mut db = self.conn();
        if grouping {
            // Writing on after earlier writes were lost would keep half of what a callback did.
            // Checked under the lock, which a batch is lost under.
            self.check_mine()?;
        }
        if grouping && db.batch.is_none() {
            db.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.query_error(e))?;
            db.batch = Some(Batch { writes: 0, opened: Instant::now(), held: Vec::new() });
            self.open.store(true, Ordering::SeqCst);
        }
        self.touched(&db);
        let result = write(&mut db.conn);
        if db.batch.is_none() {
            return result;
        }
        if db.conn.is_autocommit() {
            // The error ended the transaction (SQLite does so for a full disk or an I/O error):
            // the whole batch is gone.
            match &result {
                Err(e) => self.end_batch(db, Err(e)),
                Ok(_) => self.end_batch(db, Ok(())),
            }
            return result;
        }
        let commit = match db.batch.as_mut() {
            Some(batch) => {
                batch.writes += 1;
                !grouping || batch.due(self.max_age)
            }
            None => false,
        };
        if commit {
            self.commit_locked(db)?;
        }
        result
    }

    /// Commits the open batch, if any, then runs the effects that waited for it; returns once
    /// the effects of every earlier commit have run too.
    pub fn commit(&self) -> Result<(), StorageError> {
        let committed = if self.open.load(Ordering::SeqCst) { self.commit_locked(self.conn()) } else { Ok(()) };
        // Another thread may have closed the batch and still be running its effects.
        if self.releasing_now.load(Ordering::SeqCst) > 0 {
            drop(self.releasing.lock().unwrap_or_else(PoisonError::into_inner));
        }
        committed
    }

    /// [`Store::commit`] before something leaves that a callback may build from what it wrote
    /// or read (a call, a request): an error when the commit failed or this thread's writes
    /// were lost, so that it does not leave.
    pub fn commit_before_sending(&self) -> Result<(), StorageError> {
        self.commit()?;
        self.check_mine()
    }

    /// Marks this thread's callback as holding what the open batch holds (it wrote, or read
    /// what others wrote): if a batch is lost from now on, the callback sends nothing more.
    /// Called with the db lock held; a batch is lost only under it.
    fn touched(&self, db: &Db) {
        if GROUPING.get() && db.batch.is_some() && WROTE.get().is_none() {
            WROTE.set(Some(self.lost.load(Ordering::Acquire)));
        }
    }

    /// Like [`Store::touched`] for a read: reads see the open batch's writes.
    pub(super) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StorageError>) -> Result<T, StorageError> {
        let db = self.conn();
        self.touched(&db);
        read(&db.conn)
    }

    /// `Err` when a batch may have been lost since this thread's callback first wrote (or read
    /// what the open batch held).
    fn check_mine(&self) -> Result<(), StorageError> {
        match WROTE.get() {
            Some(seen) if seen != self.lost.load(Ordering::Acquire) => {
                Err(StorageError::Lost { path: self.path.clone() })
            }
            _ => Ok(()),
        }
    }

    /// Commits the open batch if it has [`MAX_WRITES`] writes or is [`MAX_AGE`] old.
    pub fn commit_if_due(&self) -> Result<(), StorageError> {
        if !self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        let db = self.conn();
        if db.batch.as_ref().is_some_and(|b| b.due(self.max_age)) { self.commit_locked(db) } else { Ok(()) }
    }

    /// Whether [`Store::after_commit`] would not simply run an effect now: a batch is open, a
    /// commit is running its effects, or this thread's writes were lost. When false, the
    /// caller may run it itself (it comes after every effect held so far) and save building
    /// one.
    pub fn effects_wait(&self) -> bool {
        self.open.load(Ordering::SeqCst) || self.releasing_now.load(Ordering::SeqCst) > 0 || self.check_mine().is_err()
    }

    /// Runs `effect` once every write made before this call is durable: now when no batch is
    /// open, else when it commits. Effects run in the order they were given.
    pub fn after_commit(&self, effect: impl FnOnce(Result<(), &StorageError>) + Send + 'static) {
        {
            let mut db = self.conn();
            if let Err(lost) = self.check_mine() {
                // This callback's writes went with a lost batch: what follows must not claim them.
                drop(db);
                return effect(Err(&lost));
            }
            if let Some(batch) = db.batch.as_mut() {
                batch.held.push(Box::new(effect));
                return;
            }
        }
        // Behind the effects of a commit that is still running them.
        let _order = self.releasing.lock().unwrap_or_else(PoisonError::into_inner);
        effect(Ok(()));
    }

    fn commit_locked(&self, mut db: MutexGuard<'_, Db>) -> Result<(), StorageError> {
        if db.batch.is_none() {
            return Ok(());
        }
        let outcome = db.conn.execute_batch("COMMIT").map_err(|e| self.query_error(e));
        if let Err(e) = &outcome {
            if !db.conn.is_autocommit() {
                // Keep no transaction that nobody will end.
                let _ = db.conn.execute_batch("ROLLBACK");
            }
            crate::warn_limited!(
                db.failures,
                db = %self.path.display(),
                "the last writes were lost, and the replies that followed them are not sent: {e}"
            );
        }
        self.end_batch(db, outcome.as_ref().map(|_| ()));
        outcome
    }

    /// Closes the batch (committed, or lost with `outcome`'s error) and runs its effects in
    /// order: after the lock, so they may take time, but before any later effect.
    fn end_batch(&self, mut db: MutexGuard<'_, Db>, outcome: Result<(), &StorageError>) {
        let held = db.batch.take().map(|b| b.held).unwrap_or_default();
        if outcome.is_err() {
            self.lost.fetch_add(1, Ordering::AcqRel);
        }
        // Taken, and counted, before the batch reads as closed: an effect given after that
        // (`after_commit`, `effects_wait`, `commit`) waits for these to have run.
        let _order = self.releasing.lock().unwrap_or_else(PoisonError::into_inner);
        self.releasing_now.fetch_add(1, Ordering::SeqCst);
        self.open.store(false, Ordering::SeqCst);
        drop(db);
        for effect in held {
            effect(outcome);
        }
        self.releasing_now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Errors are logged by the commit; the effects have been told.
        let _ = self.commit();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn stores() -> (tempfile::TempDir, Store, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut ours = Store::open_in(dir.path()).unwrap();
        // Batches here fall due by their count only: a slow test machine changes nothing.
        ours.max_age = Duration::from_secs(3600);
        let other = Store::open_in(dir.path()).unwrap();
        (dir, ours, other)
    }

    /// What each effect was told, in the order they ran: (its number, whether saved).
    type Seen = Arc<Mutex<Vec<(u32, bool)>>>;

    /// Effects that record, in order, what each was told.
    fn recorder() -> (Seen, impl Fn(u32) -> Effect) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        (seen, move |n| {
            let s = s.clone();
            Box::new(move |saved: Result<(), &StorageError>| s.lock().unwrap().push((n, saved.is_ok())))
        })
    }

    #[test]
    fn grouped_writes_wait_for_the_commit_and_so_do_their_effects() {
        let (_dir, ours, other) = stores();
        let (seen, effect) = recorder();
        ours.after_commit(effect(1));
        assert_eq!(*seen.lock().unwrap(), [(1, true)], "nothing open: an effect runs at once");
        {
            let _grouped = ours.group_writes();
            ours.kv_set("s", "a", "1", None).unwrap();
            ours.after_commit(effect(2));
            assert_eq!(ours.kv_incr("s", "n", 5).unwrap(), 5);
            ours.after_commit(effect(3));
            assert_eq!(ours.kv_get("s", "a").unwrap().as_deref(), Some("1"), "our own writes are visible");
            assert_eq!(other.kv_get("s", "a").unwrap(), None, "nothing is committed yet");
            assert_eq!(seen.lock().unwrap().len(), 1, "the effects wait");
        }
        // Not grouping any more: this write commits the batch along with itself.
        ours.kv_set("s", "b", "2", None).unwrap();
        assert_eq!(*seen.lock().unwrap(), [(1, true), (2, true), (3, true)]);
        assert_eq!(other.kv_get("s", "a").unwrap().as_deref(), Some("1"));
        assert_eq!(other.kv_get("s", "n").unwrap().as_deref(), Some("5"));
        assert_eq!(other.kv_get("s", "b").unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn a_batch_commits_when_told_when_full_and_when_the_store_closes() {
        let (dir, ours, other) = stores();
        let _grouped = ours.group_writes();
        ours.kv_set("s", "k", "0", None).unwrap();
        ours.commit_if_due().unwrap();
        assert_eq!(other.kv_get("s", "k").unwrap(), None, "one write is not due");
        ours.commit().unwrap();
        assert_eq!(other.kv_get("s", "k").unwrap().as_deref(), Some("0"));
        for i in 0..MAX_WRITES {
            ours.kv_set("s", "k", &i.to_string(), None).unwrap();
        }
        assert_eq!(other.kv_get("s", "k").unwrap().as_deref(), Some(&*(MAX_WRITES - 1).to_string()), "a full batch");
        ours.kv_set("s", "last", "1", None).unwrap();
        drop(ours);
        assert_eq!(Store::open_in(dir.path()).unwrap().kv_get("s", "last").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn transactions_inside_a_batch_are_all_or_nothing_and_errors_keep_the_batch() {
        let (_dir, ours, other) = stores();
        let (seen, effect) = recorder();
        let _grouped = ours.group_writes();
        ours.kv_set("s", "x", "1", None).unwrap();
        assert!(!ours.kv_compare_and_set("s", &[("x", Some("2"))], &[("x", Some("3"))]).unwrap());
        assert!(ours.kv_compare_and_set("s", &[("x", Some("1"))], &[("x", Some("3")), ("y", Some("4"))]).unwrap());
        ours.kv_set("s", "name", "\"bob\"", None).unwrap();
        assert!(ours.kv_incr("s", "name", 1).is_err(), "not an integer");
        assert!(ours.allow("s", "cool", 1, 1000).unwrap());
        assert!(!ours.allow("s", "cool", 1, 1000).unwrap());
        ours.after_commit(effect(1));
        ours.commit().unwrap();
        assert_eq!(*seen.lock().unwrap(), [(1, true)]);
        assert_eq!(other.kv_get("s", "x").unwrap().as_deref(), Some("3"));
        assert_eq!(other.kv_get("s", "y").unwrap().as_deref(), Some("4"));
        assert_eq!(other.kv_get("s", "name").unwrap().as_deref(), Some("\"bob\""));
    }

    #[test]
    fn an_effect_is_told_the_writes_before_it_were_lost_exactly_when_they_are_not_on_disk() {
        let (_dir, ours, other) = stores();
        let ours = Arc::new(ours);
        let (seen, effect) = recorder();
        let _grouped = ours.group_writes();
        ours.kv_set("s", "first", "1", None).unwrap();
        ours.after_commit(effect(1));
        // Another callback, on its own thread, reads what the batch holds; it will report it
        // after the batch is gone.
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let (ours, effect) = (ours.clone(), effect(3));
            std::thread::spawn(move || {
                let _grouped = ours.group_writes();
                read_tx.send(ours.kv_get("s", "first").unwrap()).unwrap();
                go_rx.recv().unwrap();
                ours.after_commit(effect);
                callback_begins();
                ours.commit_before_sending().is_ok()
            })
        };
        assert_eq!(read_rx.recv().unwrap().as_deref(), Some("1"), "the reader saw the batch");
        // A full disk, made small: a large value cannot be written.
        let pages: i64 = ours.conn().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        ours.conn().execute_batch(&format!("PRAGMA max_page_count = {pages}")).unwrap();
        let big = format!("\"{}\"", "x".repeat(64 * 1024));
        assert!(ours.kv_set("s", "big", &big, None).is_err(), "the disk is full");
        ours.after_commit(effect(2));
        let _ = ours.commit();
        let kept = other.kv_get("s", "first").unwrap().is_some();
        // SQLite may undo just the failed statement or the whole transaction; either way an
        // effect hears `Ok` only if what was written before it is on disk.
        assert_eq!(*seen.lock().unwrap(), [(1, kept), (2, kept)]);
        assert_eq!(other.kv_get("s", "big").unwrap(), None);
        go_tx.send(()).unwrap();
        assert!(reader.join().unwrap(), "its next callback sends again");
        assert_eq!(seen.lock().unwrap()[2], (3, kept), "what the reader saw went with the batch");
        // After a loss this thread writes and sends nothing more until it groups afresh, so
        // that a callback never keeps half of what it did.
        assert_eq!(ours.kv_set("s", "after", "1", None).is_ok(), kept);
        assert_eq!(ours.commit_before_sending().is_ok(), kept);
        ours.conn().execute_batch("PRAGMA max_page_count = 1000000").unwrap();
        callback_begins();
        ours.kv_set("s", "again", "1", None).unwrap();
        ours.commit_before_sending().unwrap();
        assert_eq!(other.kv_get("s", "again").unwrap().as_deref(), Some("1"));
    }
}
