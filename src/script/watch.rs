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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use super::{ScriptHost, is_script_file_name, script_files};

/// How long a file must be quiet before it is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Watches while alive; dropping it stops watching.
pub struct Watcher {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Starts watching `dirs` (those that exist) and reloading into `host`.
pub fn watch(host: Arc<ScriptHost>, dirs: &[PathBuf]) -> Result<Watcher, String> {
    let (tx, rx) = mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(tx).map_err(|e| format!("cannot watch files: {e}"))?;
    let mut seen = Seen::default();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
        watcher.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        for f in script_files(&dir).unwrap_or_default() {
            seen.changed(&f);
        }
        debug!(dir = %dir.display(), "watching");
    }
    std::thread::Builder::new()
        .name("rhaibot-reload".into())
        .spawn(move || {
            while let Some(paths) = next_batch(&rx) {
                let changed: Vec<PathBuf> = paths.into_iter().filter(|p| seen.changed(p)).collect();
                reload_changed(&host, &changed);
            }
        })
        .map_err(|e| format!("cannot start the reload thread: {e}"))?;
    Ok(Watcher { _watcher: watcher })
}

/// Blocks until a file is written, created, removed or renamed, then collects the paths of
/// such changes until none came for [`DEBOUNCE`]. `None` once the watcher is gone.
///
/// Reads are not changes: loading a script opens it (and its modules), and counting that
/// would reload, read and reload again forever, waking this thread several times a second.
fn next_batch(rx: &mpsc::Receiver<notify::Result<notify::Event>>) -> Option<Vec<PathBuf>> {
    let mut paths = Vec::new();
    while paths.is_empty() {
        collect(rx.recv().ok()?, &mut paths);
    }
    loop {
        match rx.recv_timeout(DEBOUNCE) {
            Ok(event) => collect(event, &mut paths),
            Err(RecvTimeoutError::Timeout) => return Some(paths),
            Err(RecvTimeoutError::Disconnected) => return Some(paths),
        }
    }
}

/// Adds the paths of `event` to `paths` if it is a change.
fn collect(event: notify::Result<notify::Event>, paths: &mut Vec<PathBuf>) {
    match event {
        Ok(event) if is_change(&event.kind) => {
            for path in event.paths {
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        Ok(_) => {}
        Err(e) => warn!("file watcher: {e}"),
    }
}

/// Whether an event can mean a file's content or existence changed (not a read or open).
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(access) => matches!(access, AccessKind::Close(AccessMode::Write)),
        _ => true,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind};

    #[test]
    fn opening_or_reading_a_file_is_not_a_change() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(AccessMode::Any))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(AccessMode::Read))));
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn reads_of_a_watched_file_wake_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.rhai");
        std::fs::write(&file, "1").unwrap();
        let (tx, rx) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx).unwrap();
        watcher.watch(dir.path(), RecursiveMode::NonRecursive).unwrap();
        // Reads first, then one change: the batch that comes is the change alone, and the
        // reads before it (what loading a script does) did not make a batch of their own.
        for _ in 0..3 {
            std::fs::read(&file).unwrap();
        }
        std::fs::write(dir.path().join("b.rhai"), "2").unwrap();
        let (tx, batches) = mpsc::channel();
        std::thread::spawn(move || tx.send(next_batch(&rx)));
        let batch = batches.recv_timeout(Duration::from_secs(10)).expect("no change reported within 10 s").unwrap();
        assert_eq!(batch.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), ["b.rhai"]);
    }
}
