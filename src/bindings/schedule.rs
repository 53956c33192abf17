//! Cron jobs and timers for scripts.
//!
//! ```rhai
//! cron("0 0 8 * * *", || onebot::send_group_msg(123, "早上好"));          // seconds field first
//! cron("report", "0 0 20 * * *", #{ tz: "Asia/Shanghai", misfire: "run_once" }, || report());
//! let t = after(5000, || print("five seconds later"));
//! every(60000, || print("every minute"));
//! cancel(t);
//! for j in jobs() { print(`${j.name}: next ${j.next}`); }
//! ```
//!
//! Jobs belong to the script that made them and stop when it unloads. Job callbacks run on the
//! worker pool under the same limits as event callbacks; their API calls go to the only bot, or
//! to the one chosen with `bot("name")`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, INT, Map};

use super::convert::script_error;
use super::documented;
use crate::scheduler::{CronSpec, JobSpec, Misfire, Scheduler, When, Zone};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Runs a job's callback in its script: `(label, callback)`.
pub type JobRunner = Arc<dyn Fn(&str, &FnPtr, i64) + Send + Sync>;

#[derive(Clone)]
struct Ctx {
    scheduler: Arc<Scheduler>,
    owner: Arc<str>,
    zone: Zone,
    run: JobRunner,
    /// Numbers anonymous jobs: `cron#1`, `after#2`, ...
    counter: Arc<AtomicU64>,
    staged: Staged,
    max_jobs: usize,
    min_period: Duration,
}

/// Jobs a script's top level creates are held back until the load succeeds, then replace the
/// old version's jobs in one step; later ones (from callbacks) go live at once.
#[derive(Clone, Default)]
pub struct Staged(Arc<Mutex<Option<Vec<JobSpec>>>>);

impl Staged {
    fn open() -> Staged {
        Staged(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// Ends staging and returns what the top level created.
    pub fn take(&self) -> Vec<JobSpec> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default()
    }
}

impl Ctx {
    fn add(&self, name: String, when: When, misfire: Misfire, f: FnPtr) -> RhaiResult<String> {
        let (run, label) = (self.run.clone(), format!("job \"{name}\""));
        let action = Arc::new(move |fire_ms| run(&label, &f, fire_ms));
        let spec = JobSpec { owner: self.owner.to_string(), name: name.clone(), when, misfire, action };
        let mut staged = self.staged.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A job replacing one of the same name does not add to the count.
        let (count, replaces) = match staged.as_ref() {
            Some(list) => (list.len(), list.iter().any(|s| s.name == name)),
            None => (self.scheduler.count(&self.owner), self.scheduler.has(&self.owner, &name)),
        };
        if !replaces && count >= self.max_jobs {
            return Err(script_error(format!(
                "cannot add job \"{name}\": the script already has {count} jobs and timers (limits.max_jobs); cancel some first"
            )));
        }
        match staged.as_mut() {
            Some(list) => {
                list.retain(|s| s.name != name);
                list.push(spec);
            }
            None => {
                drop(staged);
                self.scheduler.add(spec, crate::bindings::time::now_utc());
            }
        }
        Ok(name)
    }

    fn anonymous(&self, kind: &str) -> String {
        format!("{kind}#{}", self.counter.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn cron(&self, name: Option<&str>, expr: &str, options: Option<Map>, f: FnPtr) -> RhaiResult<String> {
        let fail = |e: String| script_error(format!("cron(\"{expr}\"): {e}"));
        let options = options.unwrap_or_default();
        let zone = match options.get("tz") {
            Some(tz) => Zone::parse(&tz.to_string()).map_err(fail)?,
            None => self.zone.clone(),
        };
        let misfire = match options.get("misfire").map(|m| m.to_string()).as_deref() {
            None | Some("skip") => Misfire::Skip,
            Some("run_once") => Misfire::RunOnce,
            Some(other) => return Err(fail(format!("misfire must be \"skip\" or \"run_once\", got \"{other}\""))),
        };
        if let Some(unknown) = options.keys().find(|k| !matches!(k.as_str(), "tz" | "misfire")) {
            return Err(fail(format!("unknown option `{unknown}` (expected tz, misfire)")));
        }
        let spec = CronSpec::parse(expr, zone).map_err(fail)?;
        // Anonymous cron jobs are named by their expression so a restart finds their last run.
        let name = name.map_or_else(|| format!("cron {}", spec.expr), str::to_owned);
        self.add(name, When::Cron(Box::new(spec)), misfire, f)
    }

    fn timer(&self, kind: &str, ms: INT, f: FnPtr) -> RhaiResult<String> {
        if ms <= 0 {
            return Err(script_error(format!("{kind}({ms}): the delay must be a positive number of milliseconds")));
        }
        let d = Duration::from_millis(ms as u64);
        if kind == "every" && d < self.min_period {
            return Err(script_error(format!(
                "every({ms}): the period must be at least {} ms (limits.min_timer_ms)",
                self.min_period.as_millis()
            )));
        }
        let when = if kind == "after" { When::After(d) } else { When::Every(d) };
        self.add(self.anonymous(kind), when, Misfire::Skip, f)
    }
}

/// Registers `cron`, `after`, `every`, `cancel` and `jobs` for the script `owner`; the jobs its
/// top level creates wait in the returned [`Staged`].
pub fn register(
    engine: &mut Engine,
    scheduler: Arc<Scheduler>,
    owner: &str,
    zone: Zone,
    limits: &crate::config::Limits,
    run: JobRunner,
) -> Staged {
    let staged = Staged::open();
    let ctx = Ctx {
        scheduler,
        owner: owner.into(),
        zone,
        run,
        counter: Arc::new(AtomicU64::new(0)),
        staged: staged.clone(),
        max_jobs: limits.max_jobs,
        min_period: limits.min_timer,
    };
    let cron_doc =
        "run `callback` on a cron schedule (seconds first: `sec min hour day month weekday`); returns the job's name";
    let c = ctx.clone();
    documented("cron", &["expr: string", "callback: Fn"], cron_doc)
        .register_into_engine(engine, move |expr: &str, f: FnPtr| c.cron(None, expr, None, f));
    let c = ctx.clone();
    documented("cron", &["name: string", "expr: string", "callback: Fn"], cron_doc)
        .register_into_engine(engine, move |name: &str, expr: &str, f: FnPtr| c.cron(Some(name), expr, None, f));
    let c = ctx.clone();
    let options_doc =
        "run `callback` on a cron schedule, optionally named and with `#{tz, misfire: \"skip\"|\"run_once\"}`";
    documented("cron", &["name?: string", "expr: string", "options?: map", "callback: Fn"], options_doc)
        .register_into_engine(engine, move |name: &str, expr: &str, options: Map, f: FnPtr| {
            c.cron(Some(name), expr, Some(options), f)
        });
    let c = ctx.clone();
    documented("after", &["ms: int", "callback: Fn"], "run `callback` once after `ms` milliseconds; returns its name")
        .register_into_engine(engine, move |ms: INT, f: FnPtr| c.timer("after", ms, f));
    let c = ctx.clone();
    documented("every", &["ms: int", "callback: Fn"], "run `callback` every `ms` milliseconds; returns its name")
        .register_into_engine(engine, move |ms: INT, f: FnPtr| c.timer("every", ms, f));
    let c = ctx.clone();
    documented("cancel", &["name: string"], "cancel this script's job or timer `name`; false when there was none")
        .register_into_engine(engine, move |name: &str| c.scheduler.cancel(&c.owner, name));
    let c = ctx;
    documented("jobs", &[], "this script's jobs: `[#{name, schedule, next, running}]`").register_into_engine(
        engine,
        move || -> Array {
            c.scheduler
                .list(Some(&c.owner))
                .into_iter()
                .map(|j| {
                    let mut m = Map::new();
                    m.insert("name".into(), j.name.into());
                    m.insert("schedule".into(), j.schedule.into());
                    m.insert("next".into(), j.next.map_or(Dynamic::UNIT, |t| t.to_rfc3339().into()));
                    m.insert("running".into(), j.running.into());
                    m.into()
                })
                .collect()
        },
    );
    staged
}
