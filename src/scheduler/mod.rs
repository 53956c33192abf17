//! Cron jobs and timers.
//!
//! [`Scheduler`] holds every job and decides, for a given instant, which are due
//! ([`Scheduler::take_due`]); it never reads the clock itself, so tests drive it with any time
//! they like. [`Scheduler::spawn`] runs it on its own thread against the real clock (storage
//! writes happen there too, never on the async reactor) and hands due jobs to a submit
//! function: the script host's worker pool, where they run under the same limits as events.
//!
//! A job still running when its next time comes is skipped and logged, never started twice.
//! Cron jobs record their last run in SQLite; with the `run_once` misfire policy a fire time
//! missed while the process was down runs once at start.

pub mod cron_time;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, warn};

pub use cron_time::{CronSpec, Zone};

use crate::storage::Store;

/// What a job does when it fires; runs on a worker thread.
pub type Action = Arc<dyn Fn(i64) + Send + Sync>;

/// When a job fires.
#[derive(Debug, Clone)]
pub enum When {
    /// On a cron schedule.
    Cron(Box<CronSpec>),
    /// Once, after a delay.
    After(Duration),
    /// Repeatedly, every period.
    Every(Duration),
}

impl When {
    /// Human-readable description, as `rhaibot jobs` shows it.
    pub fn describe(&self) -> String {
        match self {
            When::Cron(c) => format!("cron {} ({})", c.expr, c.zone.name()),
            When::After(d) => format!("after {}ms", d.as_millis()),
            When::Every(d) => format!("every {}ms", d.as_millis()),
        }
    }
}

/// What to do about a cron fire time missed while the process was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misfire {
    /// Forget it (default).
    #[default]
    Skip,
    /// Run once at start.
    RunOnce,
}

/// A job to add.
pub struct JobSpec {
    /// Owning script; its jobs go when it unloads.
    pub owner: String,
    /// Name, unique within the owner (a new job of the same name replaces the old one).
    pub name: String,
    /// Schedule.
    pub when: When,
    /// Misfire policy (cron jobs only).
    pub misfire: Misfire,
    /// What to run.
    pub action: Action,
}

/// A job as listed for scripts and the CLI.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// Owning script.
    pub owner: String,
    /// Name.
    pub name: String,
    /// Schedule description.
    pub schedule: String,
    /// Next fire time.
    pub next: Option<DateTime<Utc>>,
    /// Whether it is running now.
    pub running: bool,
    /// Whether its script is quarantined, so it does not fire.
    pub paused: bool,
}

/// A job that is due: run `action` on a worker, then drop the guard.
pub struct Due {
    /// Owning script.
    pub owner: String,
    /// Name.
    pub name: String,
    /// What to run, given `fire_ms`.
    pub action: Action,
    /// When it was due (Unix milliseconds): what cron and timer callbacks receive.
    pub fire_ms: i64,
    /// Clears the job's running flag when dropped (after the action ran, or if it never will).
    pub guard: RunningGuard,
}

/// Marks a job as running while alive.
pub struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

struct Job {
    owner: String,
    name: String,
    when: When,
    action: Action,
    next: Option<DateTime<Utc>>,
    running: Arc<AtomicBool>,
    /// Keeps "skipped" and "late" warnings of a fast job to a few per window.
    warnings: crate::logsafe::RateLimit,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<(String, String), Job>,
    /// Owners whose jobs are paused (their script is quarantined).
    paused: std::collections::HashSet<String>,
    /// Bumped on every change, so the driver re-plans its sleep.
    version: u64,
    stopped: bool,
}

/// Every job of every script.
pub struct Scheduler {
    state: Mutex<State>,
    changed: Condvar,
    store: Option<Arc<Store>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

/// How often expired KV rows are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// A job firing later than this is logged as late.
const LATE: chrono::TimeDelta = chrono::TimeDelta::milliseconds(100);

impl Scheduler {
    /// A scheduler persisting cron runs in `store` (if any).
    pub fn new(store: Option<Arc<Store>>) -> Arc<Scheduler> {
        if let Some(s) = &store
            && let Err(e) = s.jobs_reset()
        {
            warn!("cannot reset the job table: {e}");
        }
        Arc::new(Scheduler { state: Mutex::new(State::default()), changed: Condvar::new(), store })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes every job of `owner` and adds `specs` in one step (a script's new version
    /// replacing the old one).
    pub fn replace_owner(&self, owner: &str, specs: Vec<JobSpec>, now: DateTime<Utc>) {
        let jobs: Vec<Job> = specs.into_iter().map(|spec| self.prepare(spec, now)).collect();
        let removed: Vec<String> = {
            let mut state = self.state();
            let old: Vec<(String, String)> = state.jobs.keys().filter(|(o, _)| o == owner).cloned().collect();
            for key in &old {
                state.jobs.remove(key);
            }
            for job in jobs {
                state.jobs.insert((job.owner.clone(), job.name.clone()), job);
            }
            state.version += 1;
            self.changed.notify_all();
            old.into_iter()
                .map(|(_, n)| n)
                .filter(|n| !state.jobs.contains_key(&(owner.to_owned(), n.clone())))
                .collect()
        };
        for n in removed {
            self.persist(|s| s.job_deactivate(owner, &n));
        }
    }

    /// Adds (or replaces) a job as of `now`.
    pub fn add(&self, spec: JobSpec, now: DateTime<Utc>) {
        let job = self.prepare(spec, now);
        let mut state = self.state();
        state.jobs.insert((job.owner.clone(), job.name.clone()), job);
        state.version += 1;
        self.changed.notify_all();
    }

    /// Plans a job's first fire time (with its misfire policy) and records it.
    fn prepare(&self, spec: JobSpec, now: DateTime<Utc>) -> Job {
        let mut next = first_fire(&spec.when, now);
        if let (When::Cron(cron), Misfire::RunOnce, Some(store)) = (&spec.when, spec.misfire, &self.store) {
            let last = store.job_last_run(&spec.owner, &spec.name).ok().flatten();
            let last = last.and_then(DateTime::<Utc>::from_timestamp_millis);
            if last.is_some_and(|last| cron.fired_between(last, now)) {
                debug!(script = %spec.owner, job = %spec.name, "missed while down; runs once now");
                next = Some(now);
            }
        }
        self.persist(|s| {
            s.job_upsert(&spec.owner, &spec.name, &spec.when.describe(), next.map(|t| t.timestamp_millis()))
        });
        Job {
            owner: spec.owner,
            name: spec.name,
            when: spec.when,
            action: spec.action,
            next,
            running: Arc::new(AtomicBool::new(false)),
            warnings: crate::logsafe::RateLimit::per_connection(),
        }
    }

    /// Pauses (or resumes) every job of `owner`: a paused job is not due and costs no wake-ups.
    /// A resumed job that missed fire times runs once, then keeps its schedule.
    pub fn pause(&self, owner: &str, paused: bool) {
        let mut state = self.state();
        let changed = if paused { state.paused.insert(owner.to_owned()) } else { state.paused.remove(owner) };
        if changed {
            state.version += 1;
            self.changed.notify_all();
        }
    }

    /// How many jobs `owner` has.
    pub fn count(&self, owner: &str) -> usize {
        self.state().jobs.keys().filter(|(o, _)| o == owner).count()
    }

    /// Whether `owner` has a job called `name`.
    pub fn has(&self, owner: &str, name: &str) -> bool {
        self.state().jobs.contains_key(&(owner.to_owned(), name.to_owned()))
    }

    /// Cancels `owner`'s job `name`; true when it existed.
    pub fn cancel(&self, owner: &str, name: &str) -> bool {
        let removed = {
            let mut state = self.state();
            let removed = state.jobs.remove(&(owner.to_owned(), name.to_owned())).is_some();
            state.version += 1;
            removed
        };
        if removed {
            self.persist(|s| s.job_deactivate(owner, name));
        }
        removed
    }

    /// Removes every job of `owner` (its script unloaded).
    pub fn remove_owner(&self, owner: &str) {
        self.replace_owner(owner, Vec::new(), Utc::now());
    }

    /// Jobs of `owner` (or all), by owner and name.
    pub fn list(&self, owner: Option<&str>) -> Vec<JobInfo> {
        let state = self.state();
        state
            .jobs
            .values()
            .filter(|j| owner.is_none_or(|o| o == j.owner))
            .map(|j| JobInfo {
                owner: j.owner.clone(),
                name: j.name.clone(),
                schedule: j.when.describe(),
                next: j.next,
                running: j.running.load(Ordering::Acquire),
                paused: state.paused.contains(&j.owner),
            })
            .collect()
    }

    /// Takes the jobs due at `now` and plans their next times. A due job that is still
    /// running is skipped (and logged). Returns the due jobs and the next wake-up time.
    pub fn take_due(&self, now: DateTime<Utc>) -> (Vec<Due>, Option<DateTime<Utc>>) {
        let mut due = Vec::new();
        let mut ran = Vec::new();
        let mut finished = Vec::new();
        let mut guard = self.state();
        let state = &mut *guard;
        for (key, job) in state.jobs.iter_mut() {
            if state.paused.contains(&job.owner) {
                continue;
            }
            let Some(at) = job.next.filter(|t| *t <= now) else { continue };
            job.next = match &job.when {
                When::Cron(c) => c.next_after(now),
                When::After(_) => None,
                // Keep the cadence: the next period after the one that was due.
                When::Every(p) => {
                    let p = chrono::TimeDelta::from_std(*p).unwrap_or(chrono::TimeDelta::MAX);
                    let mut next = at + p;
                    while next <= now {
                        next += p;
                    }
                    Some(next)
                }
            };
            if job.next.is_none() {
                finished.push(key.clone());
            }
            if job.running.swap(true, Ordering::AcqRel) {
                crate::warn_limited!(job.warnings, script = %job.owner, job = %job.name, "still running from its last time; this run is skipped");
                continue;
            }
            if now - at > LATE {
                let late_ms = (now - at).num_milliseconds();
                crate::warn_limited!(job.warnings, script = %job.owner, job = %job.name, late_ms, "job fired late");
            }
            due.push(Due {
                owner: job.owner.clone(),
                name: job.name.clone(),
                action: job.action.clone(),
                fire_ms: at.timestamp_millis(),
                guard: RunningGuard(job.running.clone()),
            });
            if matches!(job.when, When::Cron(_)) {
                ran.push((job.owner.clone(), job.name.clone(), job.next));
            }
        }
        for key in finished {
            state.jobs.remove(&key);
        }
        let wake = state.jobs.values().filter(|j| !state.paused.contains(&j.owner)).filter_map(|j| j.next).min();
        drop(guard);
        for (owner, name, next) in ran {
            self.persist(|s| s.job_ran(&owner, &name, now.timestamp_millis(), next.map(|t| t.timestamp_millis())));
        }
        (due, wake)
    }

    /// Runs the scheduler on its own thread until [`Scheduler::stop`], handing due jobs to
    /// `submit`. Also purges expired KV rows every minute.
    pub fn spawn(
        self: &Arc<Self>,
        submit: impl Fn(Due) + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let this = self.clone();
        std::thread::Builder::new().name("rhaibot-scheduler".into()).spawn(move || {
            let mut last_purge = std::time::Instant::now();
            loop {
                let (due, wake) = this.take_due(Utc::now());
                for d in due {
                    submit(d);
                }
                if last_purge.elapsed() >= PURGE_EVERY {
                    last_purge = std::time::Instant::now();
                    this.persist(|s| s.kv_purge_expired().map(|_| ()));
                }
                let state = this.state();
                if state.stopped {
                    drop(state);
                    // Nothing is scheduled any more; `rhaibot jobs` should say so.
                    this.persist(|s| s.jobs_reset());
                    return;
                }
                let until_wake = wake.map_or(PURGE_EVERY, |w| (w - Utc::now()).to_std().unwrap_or(Duration::ZERO));
                let version = state.version;
                // Sleep until the next job, a change, or stop; wall-clock jumps are caught within a minute.
                let _unused = this
                    .changed
                    .wait_timeout_while(state, until_wake.min(PURGE_EVERY), |s| s.version == version && !s.stopped)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        })
    }

    /// Stops the thread started by [`Scheduler::spawn`].
    pub fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
    }

    fn persist(&self, write: impl FnOnce(&Store) -> Result<(), crate::storage::StorageError>) {
        if let Some(store) = &self.store
            && let Err(e) = write(store)
        {
            warn!("scheduler: {e}");
        }
    }
}

fn first_fire(when: &When, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let delay = |d: &Duration| now + chrono::TimeDelta::from_std(*d).unwrap_or(chrono::TimeDelta::MAX);
    match when {
        When::Cron(c) => c.next_after(now),
        When::After(d) | When::Every(d) => Some(delay(d)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn counting(n: &Arc<AtomicUsize>) -> Action {
        let n = n.clone();
        Arc::new(move |_| {
            n.fetch_add(1, Ordering::SeqCst);
        })
    }

    fn cron_job(name: &str, expr: &str, misfire: Misfire, action: Action) -> JobSpec {
        let when = When::Cron(Box::new(CronSpec::parse(expr, Zone::parse("UTC").unwrap()).unwrap()));
        JobSpec { owner: "s".into(), name: name.into(), when, misfire, action }
    }

    fn run(due: Vec<Due>) -> usize {
        let n = due.len();
        for d in due {
            (d.action)(d.fire_ms);
        }
        n
    }

    #[test]
    fn cron_jobs_fire_at_their_times_and_plan_the_next() {
        let sched = Scheduler::new(None);
        let n = Arc::new(AtomicUsize::new(0));
        sched.add(cron_job("j", "0 0 8 * * *", Misfire::Skip, counting(&n)), t("2026-01-01T07:00:00Z"));
        let (due, wake) = sched.take_due(t("2026-01-01T07:59:59Z"));
        assert_eq!((due.len(), wake), (0, Some(t("2026-01-01T08:00:00Z"))));
        let (due, wake) = sched.take_due(t("2026-01-01T08:00:00.050Z"));
        assert_eq!(run(due), 1);
        assert_eq!(wake, Some(t("2026-01-02T08:00:00Z")));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_running_job_is_not_started_twice() {
        let sched = Scheduler::new(None);
        let n = Arc::new(AtomicUsize::new(0));
        sched.add(cron_job("j", "* * * * * *", Misfire::Skip, counting(&n)), t("2026-01-01T00:00:00Z"));
        let (first, _) = sched.take_due(t("2026-01-01T00:00:01Z"));
        assert_eq!(first.len(), 1);
        // The first run has not finished (its guard is alive): the next second is skipped.
        let (second, _) = sched.take_due(t("2026-01-01T00:00:02Z"));
        assert!(second.is_empty());
        drop(first);
        let (third, _) = sched.take_due(t("2026-01-01T00:00:03Z"));
        assert_eq!(third.len(), 1);
    }

    #[test]
    fn a_paused_owner_has_nothing_due_and_no_wake_up_until_resumed() {
        let sched = Scheduler::new(None);
        let n = Arc::new(AtomicUsize::new(0));
        let now = t("2026-01-01T00:00:00Z");
        let every = When::Every(Duration::from_millis(100));
        let spec = JobSpec {
            owner: "s".into(),
            name: "tick".into(),
            when: every,
            misfire: Misfire::Skip,
            action: counting(&n),
        };
        sched.add(spec, now);
        sched.pause("s", true);
        let (due, wake) = sched.take_due(t("2026-01-01T00:00:05Z"));
        assert_eq!((due.len(), wake), (0, None));
        sched.pause("s", false);
        let (due, wake) = sched.take_due(t("2026-01-01T00:00:05.050Z"));
        assert_eq!((run(due), wake), (1, Some(t("2026-01-01T00:00:05.100Z"))), "missed runs run once");
    }

    #[test]
    fn timers_fire_once_or_keep_their_cadence_and_cancel() {
        let sched = Scheduler::new(None);
        let n = Arc::new(AtomicUsize::new(0));
        let now = t("2026-01-01T00:00:00Z");
        let job = |name: &str, when| JobSpec {
            owner: "s".into(),
            name: name.into(),
            when,
            misfire: Misfire::Skip,
            action: counting(&n),
        };
        sched.add(job("once", When::After(Duration::from_millis(500))), now);
        sched.add(job("tick", When::Every(Duration::from_secs(1))), now);
        sched.add(job("gone", When::Every(Duration::from_secs(1))), now);
        assert!(sched.cancel("s", "gone"));
        assert_eq!(run(sched.take_due(t("2026-01-01T00:00:00.500Z")).0), 1);
        assert_eq!(run(sched.take_due(t("2026-01-01T00:00:03.200Z")).0), 1, "a late tick runs once");
        let names: Vec<String> = sched.list(None).into_iter().map(|j| j.name).collect();
        assert_eq!(names, ["tick"]);
        assert_eq!(sched.list(None)[0].next, Some(t("2026-01-01T00:00:04Z")));
        sched.remove_owner("s");
        assert!(sched.list(None).is_empty());
    }

    fn store(dir: &tempfile::TempDir) -> Arc<Store> {
        Arc::new(Store::open_in(dir.path()).unwrap())
    }

    #[test]
    fn misfire_policies_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        {
            let sched = Scheduler::new(Some(store(&dir)));
            sched.add(cron_job("skip", "0 0 8 * * *", Misfire::Skip, counting(&n)), t("2026-01-01T07:00:00Z"));
            sched.add(cron_job("once", "0 0 8 * * *", Misfire::RunOnce, counting(&n)), t("2026-01-01T07:00:00Z"));
            assert_eq!(run(sched.take_due(t("2026-01-01T08:00:00Z")).0), 2);
        }
        // Down for three days: 8:00 passed three times.
        let sched = Scheduler::new(Some(store(&dir)));
        let restart = t("2026-01-04T12:00:00Z");
        sched.add(cron_job("skip", "0 0 8 * * *", Misfire::Skip, counting(&n)), restart);
        sched.add(cron_job("once", "0 0 8 * * *", Misfire::RunOnce, counting(&n)), restart);
        let (due, _) = sched.take_due(restart);
        assert_eq!(due.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["once"]);
        drop(due);
        assert!(sched.take_due(t("2026-01-04T13:00:00Z")).0.is_empty(), "and only once");
        let rows = store(&dir).jobs_active().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].last_run, Some(restart.timestamp_millis()));
    }

    #[test]
    fn the_thread_fires_a_due_job_and_stops() {
        let sched = Scheduler::new(None);
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = sched
            .spawn(move |d: Due| {
                (d.action)(d.fire_ms);
                tx.send(d.name.clone()).unwrap();
            })
            .unwrap();
        sched.add(
            JobSpec {
                owner: "s".into(),
                name: "soon".into(),
                when: When::After(Duration::from_millis(10)),
                misfire: Misfire::Skip,
                action: Arc::new(|_| {}),
            },
            Utc::now(),
        );
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "soon");
        sched.stop();
        handle.join().unwrap();
    }
}
