//! The script host: loads every `.rhai` file of the scripts dir as an isolated [`Script`],
//! and dispatches events to the scripts that listen for them on a bounded worker [`Pool`].
//!
//! Concurrency: callbacks of one script may run in parallel on different workers. Dispatch
//! itself runs on the adapter's task and only looks up handlers and queues jobs; it never
//! waits for a script.

pub mod context;
pub mod engine;
pub mod host;
pub mod pool;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tracing::{debug, error, info, warn};

pub use engine::Globals;
pub use host::{LoadError, Script};
pub use pool::Pool;

use crate::event::Event;

/// Every loaded script plus the pool their callbacks run on.
#[derive(Debug)]
pub struct ScriptHost {
    scripts: RwLock<Arc<Vec<Arc<Script>>>>,
    pool: Mutex<Pool>,
    accepting: AtomicBool,
    dropped: AtomicU64,
}

impl ScriptHost {
    /// A host with no scripts yet.
    pub fn new(pool: Pool) -> Arc<ScriptHost> {
        Arc::new(ScriptHost {
            scripts: RwLock::new(Arc::new(Vec::new())),
            pool: Mutex::new(pool),
            accepting: AtomicBool::new(true),
            dropped: AtomicU64::new(0),
        })
    }

    /// Loads every `*.rhai` file in `dir` (sorted by name). A script that fails is logged and
    /// skipped; the others load. Returns how many loaded.
    pub fn load_dir(&self, dir: &Path, globals: &Arc<Globals>) -> usize {
        let files = match script_files(dir) {
            Ok(files) => files,
            Err(e) => {
                error!("cannot read scripts dir {}: {e}", dir.display());
                return 0;
            }
        };
        let mut loaded = Vec::new();
        for path in files {
            match Script::load(&path, globals) {
                Ok(script) => {
                    info!(script = %script.name, "loaded");
                    loaded.push(script);
                }
                Err(e) => error!("{e}"),
            }
        }
        let n = loaded.len();
        *self.scripts.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(loaded);
        n
    }

    /// Queues the handlers of every interested script for `ev`. Never blocks.
    pub fn dispatch(&self, ev: Event) {
        if !self.accepting.load(Ordering::Relaxed) {
            debug!(event = %ev.name, "shutting down; event not dispatched");
            return;
        }
        let scripts = self.scripts.read().unwrap_or_else(PoisonError::into_inner).clone();
        let ev = Arc::new(ev);
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        for script in scripts.iter().filter(|s| s.wants(ev.keys())) {
            let (script, job_ev) = (script.clone(), ev.clone());
            if pool.submit(Box::new(move || script.handle(&job_ev))).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(event = %ev.name, dropped = n, queued = pool.queued(), "worker queue full; event dropped");
            }
        }
    }

    /// Runs a due scheduled job on the pool; a full queue skips this run with a warning.
    pub fn submit_job(&self, due: crate::scheduler::Due) {
        let pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let (owner, name) = (due.owner.clone(), due.name.clone());
        if pool.submit(Box::new(move || (due.action)())).is_err() {
            warn!(script = %owner, job = %name, "worker queue full; this run of the job is skipped");
        }
    }

    /// Stops intake and lets queued and running callbacks finish within `deadline`.
    pub fn drain(&self, deadline: Duration) -> bool {
        self.accepting.store(false, Ordering::Relaxed);
        self.pool.lock().unwrap_or_else(PoisonError::into_inner).shutdown(deadline)
    }
}

/// The `.rhai` files directly inside `dir`, sorted.
pub fn script_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rhai") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}
