//! Hot reload: watches the scripts dir and the stdlib dir and reloads what a change affects
//! (the script itself, or every script importing a changed module).
//!
//! Changes are debounced, so an editor's save-as-several-writes reloads once. File watchers
//! also report reads and touches (loading a script reads its modules), so a file counts as
//! changed only when its content differs from what was last seen: no reload loops.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};
use tracing::{debug, info, warn};

use super::{ScriptHost, is_script_file_name, script_files};

/// How long a file must be quiet before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches while alive; dropping it stops watching.
pub struct Watcher {
    _debouncer: Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Starts watching `dirs` (those that exist) and reloading into `host`.
pub fn watch(host: Arc<ScriptHost>, dirs: &[PathBuf]) -> Result<Watcher, String> {
    let (tx, rx) = std::sync::mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(DEBOUNCE, tx).map_err(|e| format!("cannot watch files: {e}"))?;
    let mut seen = Seen::default();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        debouncer
            .watcher()
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        for f in script_files(&dir).unwrap_or_default() {
            seen.changed(&f);
        }
        debug!(dir = %dir.display(), "watching");
    }
    std::thread::Builder::new()
        .name("rhaibot-reload".into())
        .spawn(move || {
            for result in rx {
                match result {
                    Ok(events) => {
                        let changed: Vec<PathBuf> =
                            events.into_iter().map(|e| e.path).filter(|p| seen.changed(p)).collect();
                        reload_changed(&host, &changed);
                    }
                    Err(e) => warn!("file watcher: {e}"),
                }
            }
        })
        .map_err(|e| format!("cannot start the reload thread: {e}"))?;
    Ok(Watcher { _debouncer: debouncer })
}

/// Content hashes of the `.rhai` files last seen.
#[derive(Debug, Default)]
struct Seen(HashMap<PathBuf, Option<u64>>);

impl Seen {
    /// Whether `path` is a script file whose content (or existence) differs from last time.
    fn changed(&mut self, path: &Path) -> bool {
        if !is_script_file_name(path) {
            return false;
        }
        let now = std::fs::read(path).ok().map(|bytes| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        });
        self.0.insert(path.to_owned(), now) != Some(now)
    }
}

/// Reloads every script affected by the changed `paths`, each once, each on a thread of its
/// own: a top level that blocks holds up only its own file.
pub fn reload_changed(host: &Arc<ScriptHost>, paths: &[PathBuf]) {
    let mut targets: Vec<PathBuf> = Vec::new();
    for path in paths {
        for t in host.affected_by(path) {
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    for t in targets {
        info!(file = %t.display(), "changed; reloading");
        let h = host.clone();
        let thread = std::thread::Builder::new().name("rhaibot-load".into()).stack_size(super::pool::STACK_SIZE);
        if let Err(e) = thread.spawn(move || h.reload(&t)) {
            warn!("cannot start a reload thread: {e}");
        }
    }
}
