//! Wires the parts together: bots, scripts, dispatch, and an orderly shutdown.
//!
//! Shutdown order: stop intake, let in-flight callbacks finish (they may still be calling
//! APIs, so connections stay up meanwhile), then close connections.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::adapter::{self, EventSink};
use crate::admin;
use crate::bindings::Services;
use crate::config::Config;
use crate::event::Dedup;
use crate::scheduler::Scheduler;
use crate::script::{Globals, Pool, ScriptHost, watch};
use crate::storage::Store;

/// A runtime failure that prevents starting.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Worker threads could not be created.
    #[error("cannot start worker threads: {0}")]
    Workers(#[source] std::io::Error),
    /// A receiving transport could not listen.
    #[error("bot `{bot}`: {message}")]
    Listen {
        /// The bot.
        bot: String,
        /// Why.
        message: String,
    },
    /// The database could not be opened.
    #[error("{0}")]
    Storage(String),
    /// Shutdown had to abandon callbacks still running at its deadline.
    #[error(
        "stopped with callbacks still running after {} ms (limits.shutdown_timeout_ms), abandoned: {}",
        deadline.as_millis(),
        callbacks.join(", ")
    )]
    Abandoned {
        /// How long they were given.
        deadline: Duration,
        /// `script callback` of each.
        callbacks: Vec<String>,
    },
    /// Another runtime uses the data dir.
    #[error(
        "data dir {path} is in use by another rhaibot process (lock file {path}/rhaibot.lock); stop it or use another data_dir"
    )]
    Locked {
        /// The data dir.
        path: String,
    },
}

/// Takes the data dir's lock file, so two runtimes never run the same jobs on the same data.
/// The lock goes with the returned file (and with the process).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, RunError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| RunError::Storage(format!("cannot create data dir {}: {e}", dir.display())))?;
    let path = dir.join("rhaibot.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunError::Storage(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => Err(RunError::Locked { path: dir.display().to_string() }),
    }
}

/// Runs the bots of `config` until `shutdown` is cancelled (or the console's input ends).
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let opened: Vec<_> =
        config.bots.iter().map(|b| adapter::open(b, config.limits.call_timeout, &config.data_dir)).collect();
    let _lock = lock_data_dir(&config.data_dir)?;
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open_in(&data_dir))
        .await
        .map_err(|e| RunError::Storage(e.to_string()))?
        .map_err(|e| RunError::Storage(e.to_string()))?;
    let store = Arc::new(store);
    let services = Arc::new(Services {
        bots: opened.iter().map(|o| o.bot.clone()).collect(),
        rt: Some(tokio::runtime::Handle::current()),
        http: Some(crate::bindings::http::Client::new(config.http.clone(), &config.tls)),
        max_wait: config.limits.max_wait,
        commands: config.commands.clone(),
        store: Some(store.clone()),
    });
    let scheduler = Scheduler::new(Some(store.clone()));
    let globals = Globals::new(
        services,
        config.limits.clone(),
        Some(config.stdlib_dir.clone()),
        Some(scheduler.clone()),
        config.timezone,
    );
    let pool = Pool::new(config.limits.workers, config.limits.queue).map_err(RunError::Workers)?;
    let host = ScriptHost::new(globals, config.scripts_dir.clone(), pool);

    // Top-level code may call APIs (which block), so loading runs off the reactor.
    let h = host.clone();
    let loaded = tokio::task::spawn_blocking(move || h.load_all()).await.unwrap_or(0);
    // Before "scripts loaded" is logged: what waits for that line may ask the socket at once.
    if let Err(e) = admin::serve(&config.data_dir, host.clone(), shutdown.clone()) {
        warn!("admin socket unavailable ({e}); `rhaibot status` will not reach this bot");
    }
    info!(scripts = loaded, dir = %config.scripts_dir.display(), "scripts loaded");
    let _watcher = match watch::watch(host.clone(), &[config.scripts_dir.clone(), config.stdlib_dir.clone()]) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!("hot reload is off: {e}");
            None
        }
    };

    let connections = CancellationToken::new();
    let tasks = TaskTracker::new();
    let sink_host = host.clone();
    let dedup = Dedup::new(4096);
    let sink: EventSink = Arc::new(move |ev| {
        if dedup.first_time(&ev) {
            sink_host.dispatch(ev);
        } else {
            debug!(event = %ev.name, bot = %ev.bot.name, "duplicate event dropped");
        }
    });
    for o in opened {
        let name = o.bot.name.clone();
        let start = adapter::Start {
            sink: sink.clone(),
            shutdown: connections.clone(),
            input_done: shutdown.clone(),
            tasks: &tasks,
            subscribed: {
                let host = host.clone();
                Arc::new(move || host.subscribed())
            },
            idle: {
                let host = host.clone();
                Arc::new(move || host.idle())
            },
        };
        o.start(start).map_err(|e| RunError::Listen { bot: name, message: e.to_string() })?;
    }
    tasks.close();
    let job_host = host.clone();
    let scheduler_thread = scheduler.spawn(move |due| job_host.submit_job(due)).map_err(RunError::Workers)?;

    shutdown.cancelled().await;
    info!("shutting down: finishing in-flight callbacks");
    scheduler.stop();
    let _ = tokio::task::spawn_blocking(move || scheduler_thread.join()).await;
    let drain_host = host.clone();
    let deadline = config.limits.shutdown_timeout;
    let abandoned = tokio::task::spawn_blocking(move || drain_host.drain(deadline))
        .await
        .unwrap_or_else(|_| vec!["(the drain task failed)".into()]);
    connections.cancel();
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await.is_err() {
        warn!("some connections did not close in time");
    }
    if !abandoned.is_empty() {
        return Err(RunError::Abandoned { deadline, callbacks: abandoned });
    }
    info!("stopped");
    Ok(())
}
