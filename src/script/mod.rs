//! The script host: every `.rhai` file of the scripts dir is an isolated [`Script`]; events
//! are dispatched to the scripts that listen for them, and files are reloaded as they change.
//!
//! Concurrency: each script has a [`lane::Lane`], a bounded queue with a concurrency limit
//! (`limits.script_concurrency`, `limits.script_queue`). Callbacks of one script may run in
//! parallel on the worker pool, up to that limit, so a callback blocked in a slow API call never
//! stalls the script's other callbacks, and the limit keeps one busy script from taking every
//! worker. Dispatch runs on the adapter's task: it only matches keys and queues; it never waits
//! for a script.
//!
//! Reload: a changed file is compiled and its top level run first; only when that succeeds do
//! its handlers and jobs replace the old version's (jobs in one scheduler step, handlers in one
//! snapshot swap). Callbacks of the old version already running finish. On failure the old
//! version keeps running and the error is logged with the offending source line.

pub mod check;
pub mod command;
pub mod context;
pub mod engine;
pub mod host;
pub mod lane;
pub mod pool;
pub mod supervise;
pub mod wait;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tracing::{debug, error, info, warn};

pub use engine::Globals;
pub use host::{LoadError, Script, Work, full_engine};
pub use pool::Pool;

use crate::bindings::event::EventRef;
use crate::event::Event;
use lane::Pushed;

/// Threads that load scripts at start.
const LOADERS: usize = 8;

/// Events one drainer handles before it yields its worker to other scripts.
const DRAIN_BATCH: usize = 64;

/// Every loaded script, the pool their callbacks run on, and what failed to load.
#[derive(Debug)]
pub struct ScriptHost {
    globals: Arc<Globals>,
    scripts_dir: PathBuf,
    scripts: RwLock<Arc<Vec<Arc<Script>>>>,
    /// Scripts whose latest version failed to load, by file name: when and why.
    failed: Mutex<BTreeMap<String, (SystemTime, String)>>,
    /// One lock per file: loads of one file never overlap, loads of different files run side
    /// by side (a script whose top level blocks holds up only itself).
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Serialises the swaps themselves (short: no script code runs under it).
    swapping: Mutex<()>,
    pool: Arc<Pool>,
    accepting: AtomicBool,
    /// Replaced or unloaded versions with callbacks still waiting for an answer: the answers
    /// still reach them (a save in the middle of a conversation does not lose it).
    retired: Mutex<Vec<Arc<Script>>>,
    /// How many versions `retired` holds, read by dispatch without the lock (almost always 0).
    retired_count: AtomicUsize,
}

/// One script as `rhaibot status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptStatus {
    /// File name.
    pub name: String,
    /// `running`, `quarantined`, `failed` (no version runs) or `stale` (the last edit failed;
    /// the previous version runs).
    pub state: &'static str,
    /// When the running version was loaded (Unix ms).
    pub loaded_at: Option<i64>,
    /// The last load error, if the latest edit failed.
    pub error: Option<String>,
    /// Counters of the running version.
    pub counters: Option<supervise::Counters>,
    /// Events waiting.
    pub queued: usize,
}

impl ScriptHost {
    /// A host for the scripts of `scripts_dir`, running callbacks on `pool`.
    pub fn new(globals: Arc<Globals>, scripts_dir: PathBuf, pool: Pool) -> Arc<ScriptHost> {
        // File events name absolute paths; compare like with like.
        let scripts_dir = std::fs::canonicalize(&scripts_dir).unwrap_or(scripts_dir);
        Arc::new(ScriptHost {
            globals,
            scripts_dir,
            scripts: RwLock::new(Arc::new(Vec::new())),
            failed: Mutex::new(BTreeMap::new()),
            loading: Mutex::new(HashMap::new()),
            swapping: Mutex::new(()),
            pool: Arc::new(pool),
            accepting: AtomicBool::new(true),
            retired: Mutex::default(),
            retired_count: AtomicUsize::new(0),
        })
    }

    /// The runtime's bots and reactor.
    pub fn services(&self) -> &crate::bindings::Services {
        &self.globals.services
    }

    /// The scripts directory.
    pub fn scripts_dir(&self) -> &Path {
        &self.scripts_dir
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Script>>> {
        self.scripts.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every event name some loaded script has a handler for (normalised, sorted, once each):
    /// what a protocol that subscribes to events asks for.
    pub fn subscribed(&self) -> Vec<String> {
        let mut names: Vec<String> =
            self.snapshot().iter().flat_map(|s| s.subscribed().cloned().collect::<Vec<_>>()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Loads every script file of the scripts dir, side by side; returns how many loaded.
    pub fn load_all(&self) -> usize {
        let files = match script_files(&self.scripts_dir) {
            Ok(files) => files,
            Err(e) => {
                error!("cannot read scripts dir {}: {e}", self.scripts_dir.display());
                return 0;
            }
        };
        // A few loader threads share the files: a top level that blocks holds up one of them,
        // not the others' files.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let loaded = std::sync::atomic::AtomicUsize::new(0);
        let load_next = || {
            while let Some(f) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                if self.reload(f) {
                    loaded.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..files.len().min(LOADERS) {
                // Top levels recurse on the native stack like callbacks: give them a worker's room.
                let thread = std::thread::Builder::new().name("rhaibot-load".into()).stack_size(pool::STACK_SIZE);
                if thread.spawn_scoped(scope, load_next).is_err() {
                    break;
                }
            }
            load_next();
        });
        loaded.into_inner()
    }

    /// (Re)loads one script file, or unloads it when the file is gone. Returns true when a new
    /// version now runs.
    pub fn reload(&self, path: &Path) -> bool {
        let name = file_name(path);
        let file_lock =
            self.loading.lock().unwrap_or_else(PoisonError::into_inner).entry(name.clone()).or_default().clone();
        let _this_file = file_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let Ok(source) = std::fs::read_to_string(path) else {
            self.unload(&name);
            return false;
        };
        let running = self.snapshot().iter().any(|s| s.name == name);
        if running && source.trim().is_empty() {
            // Editors that truncate and then write leave an empty file for a moment.
            warn!(script = %name, "the file is empty; the previous version keeps running until it has content");
            return false;
        }
        let (script, jobs) = match Script::load_source(path, &source, &self.globals) {
            Ok(loaded) => loaded,
            Err(e) => {
                let keeps = if running { "; the previous version keeps running" } else { "" };
                error!("{e}{keeps}\n{}", e.snippet());
                self.failed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(name, (SystemTime::now(), e.to_string()));
                return false;
            }
        };
        let _swap = self.swapping.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(scheduler) = &self.globals.scheduler {
            scheduler.replace_owner(&name, jobs, crate::bindings::time::now_utc());
            // A new version starts out of quarantine.
            scheduler.pause(&name, false);
        }
        {
            let mut scripts = self.scripts.write().unwrap_or_else(PoisonError::into_inner);
            self.retire(scripts.iter().filter(|s| s.name == name));
            let mut next: Vec<Arc<Script>> = scripts.iter().filter(|s| s.name != name).cloned().collect();
            next.push(script);
            next.sort_by(|a, b| a.name.cmp(&b.name));
            *scripts = Arc::new(next);
        }
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).remove(&name);
        info!(script = %name, "loaded");
        true
    }

    fn unload(&self, name: &str) {
        let _swap = self.swapping.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(scheduler) = &self.globals.scheduler {
            scheduler.remove_owner(name);
        }
        let mut scripts = self.scripts.write().unwrap_or_else(PoisonError::into_inner);
        if scripts.iter().any(|s| s.name == name) {
            self.retire(scripts.iter().filter(|s| s.name == name));
            *scripts = Arc::new(scripts.iter().filter(|s| s.name != name).cloned().collect());
            info!(script = %name, "unloaded (file removed)");
        }
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).remove(name);
    }

    /// The script files a change to `changed` affects: the file itself when it is a script,
    /// and every script that imports it as a module.
    pub fn affected_by(&self, changed: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let is_script = changed.parent() == Some(self.scripts_dir.as_path()) && is_script_file_name(changed);
        if is_script {
            out.push(changed.to_path_buf());
        }
        if let Some(module) = changed.file_stem().map(|s| s.to_string_lossy().into_owned()) {
            for s in self.snapshot().iter() {
                let imports_it =
                    s.imports.iter().any(|i| Path::new(i).file_stem().is_some_and(|st| st == module.as_str()));
                if imports_it && !out.contains(&s.path) {
                    out.push(s.path.clone());
                }
            }
        }
        out
    }

    /// Keeps the versions going away that still have callbacks waiting for an answer.
    fn retire<'a>(&self, old: impl Iterator<Item = &'a Arc<Script>>) {
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        retired.retain(|s| s.lane.has_waiters());
        retired.extend(old.filter(|s| s.lane.has_waiters()).cloned());
        self.retired_count.store(retired.len(), Ordering::Release);
    }

    /// Queues `ev` for every interested script. Never blocks.
    pub fn dispatch(&self, ev: Event) {
        if !self.accepting.load(Ordering::Relaxed) {
            debug!(event = %ev.name, "shutting down; event not dispatched");
            return;
        }
        let ev: EventRef = Arc::new(ev);
        let scripts = self.snapshot();
        let mut conversation = None;
        // An answer a replaced version waits for goes to it, and not to the new version too.
        let mut answered: Vec<String> = Vec::new();
        if self.retired_count.load(Ordering::Acquire) > 0 {
            let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
            // Versions whose conversations ended are let go.
            retired.retain(|s| s.lane.has_waiters());
            self.retired_count.store(retired.len(), Ordering::Release);
            for old in retired.iter() {
                if old.lane.offer(Work::Event(ev.clone())).is_ok() {
                    answered.push(old.name.clone());
                }
            }
        }
        for script in scripts.iter().filter(|s| !s.supervisor.is_quarantined() && !answered.contains(&s.name)) {
            if script.wants(&ev) {
                let key = *conversation.get_or_insert_with(|| ev.lane());
                self.push(script, key, Work::Event(ev.clone()));
            } else if script.lane.has_waiters() {
                // A callback of this script may be waiting for it (a conversation's answer),
                // or be about to: queued behind the running callback of its chat, it can still
                // be claimed when the wait begins.
                let key = *conversation.get_or_insert_with(|| ev.lane());
                if let Err(Work::Event(ev)) = script.lane.offer(Work::Event(ev.clone()))
                    && script.lane.holds(key)
                {
                    self.push(script, key, Work::Event(ev));
                }
            } else {
                let key = *conversation.get_or_insert_with(|| ev.lane());
                if ev.keys().iter().any(|k| k == "message") && script.lane.holds(key) {
                    self.push(script, key, Work::Event(ev.clone()));
                }
            }
        }
    }

    fn push(&self, script: &Arc<Script>, key: u64, work: Work) {
        match script.lane.push(key, work) {
            Pushed::Queued => self.pool.handed_on(),
            Pushed::Taken => {}
            Pushed::StartDrainer => start_drainer(script, &self.pool),
            Pushed::Full => {
                let n = script.supervisor.dropped();
                if n.is_power_of_two() {
                    warn!(script = %script.name, dropped = n, "script queue full; events and job runs dropped");
                }
            }
        }
    }

    /// Queues a due job run in its script's lane, so jobs count against the script's
    /// concurrency like its events; runs of one job never overlap (its guard lives as long as
    /// the run). A quarantined or unloaded script's run is dropped.
    pub fn submit_job(&self, due: crate::scheduler::Due) {
        let scripts = self.snapshot();
        let Some(script) = scripts.iter().find(|s| s.name == due.owner) else { return };
        if script.supervisor.is_quarantined() {
            return;
        }
        let key = job_key(&due.name);
        self.push(script, key, Work::Job(due));
    }

    /// Every script with its state and counters.
    pub fn status(&self) -> Vec<ScriptStatus> {
        let failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut out: Vec<ScriptStatus> = self
            .snapshot()
            .iter()
            .map(|s| ScriptStatus {
                name: s.name.clone(),
                state: match (s.supervisor.is_quarantined(), failed.contains_key(&s.name)) {
                    (true, _) => "quarantined",
                    (false, true) => "stale",
                    (false, false) => "running",
                },
                loaded_at: s.loaded_at.duration_since(SystemTime::UNIX_EPOCH).ok().map(|d| d.as_millis() as i64),
                error: failed.get(&s.name).map(|(_, e)| e.clone()),
                counters: Some(s.supervisor.counters()),
                queued: s.lane.waiting(),
            })
            .collect();
        for (name, (_, e)) in failed {
            if !out.iter().any(|s| s.name == name) {
                out.push(ScriptStatus {
                    name,
                    state: "failed",
                    loaded_at: None,
                    error: Some(e),
                    counters: None,
                    queued: 0,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Lifts a script's quarantine; false when no such script runs.
    pub fn resume(&self, name: &str) -> bool {
        let name = if name.ends_with(".rhai") { name.to_owned() } else { format!("{name}.rhai") };
        match self.snapshot().iter().find(|s| s.name == name) {
            Some(s) => {
                s.supervisor.resume();
                if let Some(scheduler) = &self.globals.scheduler {
                    scheduler.pause(&s.name, false);
                }
                info!(script = %name, "resumed");
                true
            }
            None => false,
        }
    }

    /// Whether every script is idle: nothing queued, no callback running or about to.
    pub fn idle(&self) -> bool {
        // Replies held for a commit are work not yet done: the drainer commits them as it ends.
        let held = self.globals.store().is_some_and(|s| s.effects_wait());
        !held && self.pool.queued() == 0 && self.snapshot().iter().all(|s| s.lane.is_idle())
    }

    /// Waits until every script is idle twice in a row (a callback may queue another's work as
    /// it ends), at most `limit`. For tools that read a bot's answers (`rhaibot test`, a piped
    /// console), not for the event path.
    pub fn settle(idle: &dyn Fn() -> bool, limit: Duration) {
        let until = std::time::Instant::now() + limit;
        let mut quiet = 0;
        while quiet < 2 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
            quiet = if idle() { quiet + 1 } else { 0 };
        }
    }

    /// Every scheduled job with its next fire time.
    pub fn jobs(&self) -> Vec<crate::scheduler::JobInfo> {
        self.globals.scheduler.as_ref().map_or_else(Vec::new, |s| s.list(None))
    }

    /// Stops intake and lets queued and running callbacks finish within `deadline`. Returns the
    /// callbacks still running at the deadline (`script callback`), which are abandoned.
    pub fn drain(&self, deadline: Duration) -> Vec<String> {
        self.accepting.store(false, Ordering::Relaxed);
        // Conversations end now: nothing more will come for them.
        for script in self.snapshot().iter() {
            script.lane.cancel_waiters();
        }
        for script in self.retired.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            script.lane.cancel_waiters();
        }
        self.retired_count.store(0, Ordering::Release);
        if self.pool.shutdown(deadline) {
            return Vec::new();
        }
        let running: Vec<String> =
            self.snapshot().iter().flat_map(|s| s.supervisor.running()).map(|who| who.to_string()).collect();
        if running.is_empty() { vec!["(a worker between callbacks)".into()] } else { running }
    }
}

/// Starts a drainer the lane already counts as running; undoes the count when the pool is full.
/// From an adapter's task ([`ScriptHost::dispatch`]) the worker is woken once the reactor has
/// handed on the events that came with this one ([`Pool::submit_soon`]).
fn start_drainer(script: &Arc<Script>, pool: &Arc<Pool>) {
    let (again, p) = (script.clone(), pool.clone());
    if pool.submit_soon(Box::new(move || drain(again, p))).is_err() {
        script.lane.drainer_not_started();
        warn!(script = %script.name, queued = pool.queued(), "worker queue full; the script's events wait");
    }
}

/// A drainer: handles a batch of the script's events, then yields the worker by queueing
/// itself again (or keeps going here when the pool queue is full).
fn drain(script: Arc<Script>, pool: Arc<Pool>) {
    let _draining = wait::Draining::enter(script.clone(), pool.clone());
    let _grouped = script.store().map(|store| Grouped { _writes: store.group_writes(), store, pool: &pool });
    loop {
        if script.drain(DRAIN_BATCH) {
            return;
        }
        let (again, p) = (script.clone(), pool.clone());
        if pool.requeue(Box::new(move || drain(again, p))).is_ok() {
            return;
        }
    }
}

/// A drainer's kv writes share commits with those of the callbacks running beside it: the
/// batch commits when the drainer ends with no more work queued (the workers would go idle),
/// or once it is due while they have more to do. See [`crate::storage::GroupedWrites`].
struct Grouped<'a> {
    _writes: crate::storage::GroupedWrites,
    store: &'a crate::storage::Store,
    pool: &'a Pool,
}

impl Drop for Grouped<'_> {
    fn drop(&mut self) {
        // A failed commit is logged by the store, and the replies that waited for it are told.
        let _ = if self.pool.has_queued() { self.store.commit_if_due() } else { self.store.commit() };
    }
}

/// The lane key of a job's runs: one job's runs are serialised, different jobs run in parallel.
fn job_key(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    ("job", name).hash(&mut h);
    h.finish()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether `path` names a script or module: `*.rhai`, but not an editor's hidden or temporary
/// file (`.x.rhai`, `.#x.rhai`, `#x.rhai#`, `x.rhai~`, `.x.rhai.swp`), which would otherwise load
/// as a second copy of the script.
pub fn is_script_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    name.ends_with(".rhai") && name.len() > ".rhai".len() && !name.starts_with(['.', '#', '~'])
}

/// The script files directly inside `dir`, sorted.
pub fn script_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_script_file_name(p) && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
