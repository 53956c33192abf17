//! One loaded script: its engine, its compiled AST and the handlers it registered.
//!
//! A script registers callbacks with `on("event", |ev| ...)` at its top level, or by defining
//! `fn on_<event>(ev)` (dots written as underscores). Every callback runs under the limits of
//! [`Globals`]; errors, stopped runaways and host panics are logged with the script, the
//! callback, file:line and the reason, and never escape.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Instant, SystemTime};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext, ParseError, Position, Scope};
use tracing::{error, warn};

use super::command;
use super::context;
use super::engine::Globals;
use super::lane::Lane;
use super::supervise::{Outcome, Quarantine, Supervisor};
use crate::bindings::convert::script_error;
use crate::bindings::documented;
use crate::bindings::event::EventRef;
use crate::event::{Event, normalize_name};
use crate::scheduler::{Due, JobSpec};

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {message}")]
    Read {
        /// The script file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A syntax error.
    #[error("{path}:{line}:{column}: syntax error: {message}")]
    Syntax {
        /// The script file.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The top level threw, was stopped, or imported a module that failed.
    #[error("{message}")]
    TopLevel {
        /// The script file.
        path: String,
        /// Where it happened (1-based), when known.
        line: Option<usize>,
        /// Column (1-based), when known.
        column: Option<usize>,
        /// `file:line:col: in top level: reason`.
        message: String,
    },
}

impl LoadError {
    /// The offending source line with a caret under the column, or empty when unknown.
    pub fn snippet(&self) -> String {
        let (path, line, column) = match self {
            LoadError::Read { .. } => return String::new(),
            LoadError::Syntax { path, line, column, .. } => (path, Some(*line), Some(*column)),
            LoadError::TopLevel { path, line, column, .. } => (path, *line, *column),
        };
        let Some(line) = line.filter(|l| *l > 0) else { return String::new() };
        let Some(text) = std::fs::read_to_string(path).ok().and_then(|s| s.lines().nth(line - 1).map(str::to_owned))
        else {
            return String::new();
        };
        let gutter = line.to_string().len();
        let caret = column.filter(|c| *c > 0).map_or(String::new(), |c| format!("\n{:gutter$} | {:>c$}", "", "^"));
        format!("{line} | {text}{caret}")
    }
}

/// What a script's lane carries.
pub enum Work {
    /// An event for the script's handlers.
    Event(EventRef),
    /// A due run of one of its jobs.
    Job(Due),
}

enum Handler {
    /// `on("event", |ev| ...)`.
    Closure(FnPtr),
    /// `fn on_event(ev)`.
    Function(String),
    /// `command("name", #{options}, |ev, rest, args| ...)`: runs on messages `/name rest`.
    Command { names: Vec<String>, options: command::Options, f: FnPtr },
}

/// A handler with what names it in logs: its label and where it was registered or defined
/// (used when an error carries no position of its own, as a stopped runaway does).
struct Registered {
    label: String,
    /// `script label`, for logs written on the callback's behalf after it returned (a failed
    /// reply); made once here, not per call.
    who: Arc<str>,
    at: Position,
    handler: Handler,
}

impl Registered {
    fn new(script: &str, label: String, at: Position, handler: Handler) -> Registered {
        Registered { who: who(script, &label), label, at, handler }
    }
}

/// The kv namespace of command cooldowns (beside the scripts' own, which end in `.rhai`-less names).
const COOLDOWNS: &str = "__cooldowns";

/// How a callback registered as `label` may be written, for the error when it takes more.
fn closure_shapes(label: &str) -> &'static str {
    if label.starts_with("command(") {
        "|ev| ..., |ev, rest| ... or |ev, rest, args| ... (rest: the text after the command; args: it split into words)"
    } else if label.starts_with("job ") {
        "|| ... or |fired_at| ... (the time it was due, in milliseconds)"
    } else {
        "|ev| ..."
    }
}

/// A callback's name in logs written on its behalf after it returned.
fn who(script: &str, label: &str) -> Arc<str> {
    format!("{script} {label}").into()
}

impl Registered {
    /// Whether this handler runs for `ev`: a command only for its own name, where the bot is
    /// @-mentioned if it must be, and (when refusals are silent) for users it permits.
    fn matches(&self, ev: &Event, settings: &command::Settings) -> bool {
        match &self.handler {
            Handler::Command { names, options, .. } => {
                command::args_of(&ev.text, names, settings).is_some()
                    && (!options.need_at || ev.group_id.is_null() || ev.at_me)
                    && (!settings.refuse_message.is_empty() || options.permits(ev))
            }
            Handler::Closure(_) | Handler::Function(_) => true,
        }
    }
}

/// A script's handlers by normalised event name.
type Handlers = foldhash::HashMap<String, Vec<Registered>>;

/// A compiled, initialised script.
pub struct Script {
    /// Counters and quarantine.
    pub supervisor: Supervisor,
    /// Events and job runs waiting for this script, keyed by conversation.
    pub lane: Lane<Work>,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// File name, e.g. `hello.rhai`; names the script in logs.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    engine: Engine,
    ast: AST,
    globals: Arc<Globals>,
    /// Looked up for each of an event's names by every script at dispatch, with a hasher
    /// several times cheaper than SipHash on short names. The names come from the script.
    handlers: Handlers,
    /// Module paths imported at the top level (`import "args" as args;` -> `args`).
    pub imports: Vec<String>,
    /// Parameters of each script function and closure, by name.
    arity: foldhash::HashMap<String, usize>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).field("handlers", &self.handlers.len()).finish()
    }
}

/// Handlers by normalised event name, in registration order.
type Registrations = Vec<(String, Registered)>;

/// Handlers registered by the top level while it runs; closed (None) once loading ends.
#[derive(Clone, Default)]
struct Registry {
    list: Arc<Mutex<Option<Registrations>>>,
    script: Arc<str>,
}

impl Registry {
    fn open(script: &str) -> Registry {
        Registry { list: Arc::new(Mutex::new(Some(Vec::new()))), script: script.into() }
    }

    fn add(&self, event: &str, registered: Registered) -> Result<(), Box<EvalAltResult>> {
        match self.list.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(list) => {
                list.push((normalize_name(event), registered));
                Ok(())
            }
            None => Err(script_error(format!(
                "{}: handlers can only be registered at the top level of a script",
                registered.label
            ))),
        }
    }

    fn close(&self) -> Registrations {
        self.list.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default()
    }

    /// Registers `on` and `command` on `engine`.
    fn install(&self, engine: &mut Engine) {
        let reg = self.clone();
        let doc = "run `callback(ev)` for every event named `event` or under it (`message`, `notice.group_ban`, ...); top level only";
        documented("on", &["event: string", "callback: Fn"], doc).register_into_engine(
            engine,
            move |ctx: NativeCallContext, event: &str, f: FnPtr| {
                let label = format!("on(\"{event}\")");
                reg.add(event, Registered::new(&reg.script, label, ctx.call_position(), Handler::Closure(f)))
            },
        );
        let doc = "run `callback(ev, rest, args)` for messages `/name rest` (one name, or an array of aliases); \
                   the callback may take just `|ev|` or `|ev, rest|`; top level only";
        let opts_doc = "like command(name, callback), with #{permission: \"admin\"|\"owner\"|\"superuser\", \
                        cooldown_ms, per: \"user\"|\"group\"|\"global\", need_at}";
        let reg = self.clone();
        documented("command", &["name_or_names: string", "callback: Fn"], doc).register_into_engine(
            engine,
            move |ctx: NativeCallContext, name: &str, f: FnPtr| {
                reg.add_command(vec![name.to_owned()], None, ctx.call_position(), f)
            },
        );
        let reg = self.clone();
        documented("command", &["name_or_names: array", "callback: Fn"], doc).register_into_engine(
            engine,
            move |ctx: NativeCallContext, names: rhai::Array, f: FnPtr| {
                let names = names.iter().map(|n| n.to_string()).collect();
                reg.add_command(names, None, ctx.call_position(), f)
            },
        );
        let reg = self.clone();
        documented("command", &["name_or_names: string", "options: map", "callback: Fn"], opts_doc)
            .register_into_engine(engine, move |ctx: NativeCallContext, name: &str, options: rhai::Map, f: FnPtr| {
                reg.add_command(vec![name.to_owned()], Some(options), ctx.call_position(), f)
            });
        let reg = self.clone();
        documented("command", &["name_or_names: array", "options: map", "callback: Fn"], opts_doc)
            .register_into_engine(
                engine,
                move |ctx: NativeCallContext, names: rhai::Array, options: rhai::Map, f: FnPtr| {
                    let names = names.iter().map(|n| n.to_string()).collect();
                    reg.add_command(names, Some(options), ctx.call_position(), f)
                },
            );
    }

    fn add_command(
        &self,
        names: Vec<String>,
        options: Option<rhai::Map>,
        at: Position,
        f: FnPtr,
    ) -> Result<(), Box<EvalAltResult>> {
        if names.is_empty() || names.iter().any(|n| n.is_empty() || n.contains(char::is_whitespace)) {
            return Err(script_error(format!("command names must be non-empty words, got {names:?}")));
        }
        let label = format!("command(\"{}\")", names[0]);
        let options = match options {
            Some(m) => command::Options::from_map(&m).map_err(|e| script_error(format!("{label}: {e}")))?,
            None => command::Options::default(),
        };
        self.add("message", Registered::new(&self.script, label, at, Handler::Command { names, options, f }))
    }
}

impl Script {
    /// Compiles `path` and runs its top level, collecting the handlers it registers. The jobs
    /// the top level created are returned, not yet scheduled: the caller swaps them in.
    pub fn load(path: &Path, globals: &Arc<Globals>) -> Result<(Arc<Script>, Vec<JobSpec>), LoadError> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| LoadError::Read { path: path.display().to_string(), message: e.to_string() })?;
        Self::load_source(path, &source, globals)
    }

    /// Like [`Script::load`], with the file's text already read.
    pub fn load_source(
        path: &Path,
        source: &str,
        globals: &Arc<Globals>,
    ) -> Result<(Arc<Script>, Vec<JobSpec>), LoadError> {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let shown = path.display().to_string();
        let mut engine = globals.engine(&name, path.parent().map(Path::to_path_buf));
        let registry = Registry::open(&name);
        registry.install(&mut engine);
        // Jobs outlive the top-level run; they find their script through this cell.
        let this: Arc<OnceLock<Weak<Script>>> = Arc::new(OnceLock::new());
        let staged = globals.install_script_services(&mut engine, &name, job_runner(&this));
        let imports = preload_imports(&mut engine, source, &shown)?;

        let mut ast = engine.compile(source).map_err(|e| syntax_error(&shown, e))?;
        ast.set_source(shown.as_str());
        let mut top = Scope::new();
        {
            let l = &globals.limits;
            let _running = context::enter(l.callback_timeout, l.callback_total, None, Some(who(&name, "top level")));
            engine.run_ast_with_scope(&mut top, &ast).map_err(|e| {
                let pos = locate(&e, Position::NONE);
                LoadError::TopLevel {
                    path: shown.clone(),
                    line: pos.line(),
                    column: pos.position(),
                    message: describe(&shown, "top level", Position::NONE, &e, &globals.limits),
                }
            })?;
        }

        // The top level's constants are seen by every callback, `fn` handlers included, as
        // `NAME` or `global::NAME` (Rhai functions otherwise see no outer variable).
        let mut constants = rhai::Module::new();
        for (name, is_constant, value) in top.iter_raw() {
            if is_constant {
                constants.set_var(name, value.clone());
            }
        }
        if !constants.is_empty() {
            let constants = rhai::Shared::new(constants);
            engine.register_global_module(constants.clone());
            engine.register_static_module("global", constants);
        }
        let mut handlers = Handlers::default();
        for (key, registered) in registry.close() {
            handlers.entry(key).or_default().push(registered);
        }
        for f in ast.iter_functions() {
            if let (Some(event), 1) = (f.name.strip_prefix("on_"), f.params.len()) {
                let label = format!("fn {}", f.name);
                let at = line_of(source, &format!("fn {}", f.name));
                let handler = Handler::Function(f.name.to_owned());
                handlers.entry(normalize_name(event)).or_default().push(Registered::new(&name, label, at, handler));
            }
        }
        // How many parameters each closure takes, so callbacks get as many arguments as they
        // are written with.
        let arity: foldhash::HashMap<String, usize> =
            ast.iter_functions().map(|f| (f.name.to_owned(), f.params.len())).collect();
        let l = &globals.limits;
        let policy = Quarantine { failures: l.quarantine_failures, window: l.quarantine_window };
        let script = Arc::new(Script {
            supervisor: Supervisor::new(policy),
            lane: Lane::new(l.script_concurrency, l.script_queue),
            loaded_at: SystemTime::now(),
            name,
            path: path.to_owned(),
            engine,
            ast,
            globals: globals.clone(),
            handlers,
            imports,
            arity,
        });
        let _ = this.set(Arc::downgrade(&script));
        Ok((script, staged.take()))
    }

    /// The store this script's `kv::` writes to, if any.
    pub fn store(&self) -> Option<&Arc<crate::storage::Store>> {
        self.globals.store()
    }

    /// The (normalised) event names this script has handlers for.
    pub fn subscribed(&self) -> impl Iterator<Item = &String> {
        self.handlers.keys()
    }

    /// Whether a handler of this script would run for `ev`. Commands are matched here, at
    /// dispatch, so a script whose commands do not match costs no worker hand-off.
    pub fn wants(&self, ev: &Event) -> bool {
        let settings = &self.globals.services.commands;
        ev.keys().iter().any(|k| self.handlers.get(k).is_some_and(|hs| hs.iter().any(|h| h.matches(ev, settings))))
    }

    /// Runs every handler this script has for `ev`, most specific name first.
    pub fn handle(&self, ev: &EventRef) {
        for key in ev.keys() {
            let settings = &self.globals.services.commands;
            for registered in self.handlers.get(key).into_iter().flatten().filter(|r| r.matches(ev, settings)) {
                if let Handler::Command { names, options, .. } = &registered.handler
                    && !self.command_allowed(ev, &names[0], options)
                {
                    continue;
                }
                let arg = || Dynamic::from(ev.clone());
                self.invoke(&registered.label, &registered.who, registered.at, Some(ev), |s| {
                    match &registered.handler {
                        Handler::Closure(f) => s.call_closure(f, &registered.label, vec![arg()]),
                        Handler::Command { names, f, .. } => match command::args_of(&ev.text, names, settings) {
                            Some(rest) => {
                                let words: rhai::Array =
                                    super::command::split_args(rest).into_iter().map(Dynamic::from).collect();
                                s.call_closure(f, &registered.label, vec![arg(), rest.into(), words.into()])
                            }
                            None => Ok(Dynamic::UNIT),
                        },
                        Handler::Function(name) => {
                            let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
                            s.engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &s.ast, name, (arg(),))
                        }
                    }
                });
            }
        }
    }

    /// Runs a scheduled job's callback (not while quarantined); a callback with a parameter
    /// gets the time it was due (Unix milliseconds).
    pub fn run_job(&self, label: &str, f: &FnPtr, fire_ms: i64) {
        if self.supervisor.is_quarantined() {
            return;
        }
        self.invoke(label, &who(&self.name, label), Position::NONE, None, |s| {
            s.call_closure(f, label, vec![Dynamic::from_int(fire_ms)])
        });
    }

    /// Whether `ev`'s sender may run the command now: permitted, and not cooling down (a use
    /// is recorded when it may). A refusal is said when the config gives a message for it.
    fn command_allowed(&self, ev: &EventRef, name: &str, options: &command::Options) -> bool {
        let settings = &self.globals.services.commands;
        let say = |text: String| {
            if text.is_empty() {
                return;
            }
            if let Ok((action, params)) = crate::adapter::reply_call(ev, serde_json::Value::String(text)) {
                self.globals.services.send_logged(&ev.bot, action, params, ev.conversation());
            }
        };
        if !options.permits(ev) {
            say(settings.refuse_message.clone());
            return false;
        }
        let (Some((every, per)), Some(store)) = (options.cooldown, self.globals.store()) else { return true };
        let whose = match per {
            command::Per::User => format!("user:{}", ev.user_id),
            // By the chat's own ids (a restart keeps them; an in-memory key would not).
            command::Per::Group if ev.group_id.is_null() => format!("private:{}:{}", ev.bot.name, ev.user_id),
            command::Per::Group => format!("group:{}:{}", ev.bot.name, ev.group_id),
            command::Per::Global => "all".to_owned(),
        };
        let key = format!("{}:{name}:{whose}", self.name);
        let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        match store.allow(COOLDOWNS, &key, 1, every_ms) {
            Ok(true) => true,
            Ok(false) => {
                let secs = every.as_secs().max(1);
                say(settings.cooldown_message.replace("{secs}", &secs.to_string()));
                false
            }
            Err(e) => {
                warn!(script = %self.name, "cooldown of /{name} unavailable ({e}); the command runs");
                true
            }
        }
    }

    /// Calls a closure with as many of `args` as it takes (`|| ..`, `|a| ..`, `|a, b| ..`).
    fn call_closure(&self, f: &FnPtr, label: &str, mut args: Vec<Dynamic>) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Some(&params) = self.arity.get(f.fn_name()) {
            let takes = params.saturating_sub(f.curry().len());
            if takes > args.len() {
                return Err(script_error(format!(
                    "{label}: the callback takes {takes} parameters, but gets at most {}: write it as {}",
                    args.len(),
                    closure_shapes(label)
                )));
            }
            args.truncate(takes);
        }
        f.call::<Dynamic>(&self.engine, &self.ast, args)
    }

    /// Handles queued work until the lane has nothing ready, or until `budget` items were
    /// handled (then returns false so the caller can yield the worker to other scripts).
    pub fn drain(&self, budget: usize) -> bool {
        let mut held = None;
        for _ in 0..budget {
            let Some((key, work)) = self.lane.next(held) else { return true };
            held = Some(key);
            let _item = super::wait::Item::begin();
            match work {
                Work::Event(ev) if !self.supervisor.is_quarantined() => self.handle(&ev),
                Work::Event(_) => {}
                // The job's guard drops after its run: it is never started twice at once.
                Work::Job(due) => (due.action)(due.fire_ms),
            }
        }
        if let Some(key) = held {
            self.lane.release(key);
        }
        false
    }

    /// Runs one callback under the limits, catching errors and panics and logging them with
    /// the script, the callback, file:line and the reason.
    fn invoke(
        &self,
        label: &str,
        who: &Arc<str>,
        at: Position,
        ev: Option<&EventRef>,
        call: impl FnOnce(&Self) -> Result<Dynamic, Box<EvalAltResult>>,
    ) {
        let l = &self.globals.limits;
        let _running = context::enter(l.callback_timeout, l.callback_total, ev.cloned(), Some(who.clone()));
        let _active = self.supervisor.enter(who);
        let event = ev.map_or("", |e| e.name.as_str());
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| call(self)));
        let outcome = match &result {
            Ok(Ok(_)) => Outcome::Ok,
            // The event, not the script, was at fault: logged, not counted towards quarantine.
            Ok(Err(e)) if error_kind(e) == Some("no_target") => Outcome::Ok,
            Ok(Err(e)) if is_limit(e) => Outcome::Timeout,
            _ => Outcome::Error,
        };
        if self.supervisor.record(outcome, started.elapsed()) {
            if let Some(scheduler) = &self.globals.scheduler {
                scheduler.pause(&self.name, true);
            }
            error!(
                script = %self.name,
                "quarantined: {} failed callbacks within {}s; its callbacks and jobs stop until the file changes or `rhaibot resume {}`",
                l.quarantine_failures,
                l.quarantine_window.as_secs(),
                self.name
            );
        }
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let what = describe(&self.path.display().to_string(), label, at, &e, &self.globals.limits);
                error!(script = %self.name, callback = label, event, "{what}");
            }
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                error!(script = %self.name, callback = label, event, "host panic in callback: {reason}");
            }
        }
    }
}

fn job_runner(this: &Arc<OnceLock<Weak<Script>>>) -> crate::bindings::schedule::JobRunner {
    let this = this.clone();
    Arc::new(move |label: &str, f: &FnPtr, fire_ms: i64| {
        if let Some(script) = this.get().and_then(Weak::upgrade) {
            script.run_job(label, f, fire_ms);
        }
    })
}

/// The error an error wraps, looking through nested function calls.
fn innermost(e: &EvalAltResult) -> &EvalAltResult {
    let mut inner = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, next, _) = inner {
        inner = next;
    }
    inner
}

/// Whether an error is a script being stopped at one of its limits.
fn is_limit(e: &EvalAltResult) -> bool {
    matches!(innermost(e), EvalAltResult::ErrorTerminated(..) | EvalAltResult::ErrorTooManyOperations(_))
}

/// The `kind` of a call error (see [`crate::bindings::convert::call_error`]), if it is one.
fn error_kind(e: &EvalAltResult) -> Option<&'static str> {
    let EvalAltResult::ErrorRuntime(value, _) = innermost(e) else { return None };
    let map = value.read_lock::<rhai::Map>()?;
    let kind = map.get("kind")?.clone().into_immutable_string().ok()?;
    ["no_target"].into_iter().find(|k| *k == kind.as_str())
}

fn syntax_error(path: &str, e: ParseError) -> LoadError {
    let pos = e.position();
    LoadError::Syntax {
        path: path.to_owned(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message: e.err_type().to_string(),
    }
}

/// An engine with everything a script's engine has (registrations, kv, scheduling, `on`,
/// `command`), for listing and checking the script surface. `globals` should have a store and
/// a scheduler, or `kv::` and the scheduling functions are missing.
pub fn full_engine(globals: &Arc<Globals>) -> Engine {
    let mut engine = globals.engine("listing", globals.stdlib_dir.clone());
    Registry::open("listing").install(&mut engine);
    let _ = globals.install_script_services(&mut engine, "listing", Arc::new(|_: &str, _: &FnPtr, _: i64| {}));
    engine
}

/// One line for a script error: `file:line:col: in <callback>: <reason>`, looking through
/// nested function calls to the place the error really happened.
pub fn describe(
    path: &str,
    callback: &str,
    fallback: Position,
    e: &EvalAltResult,
    limits: &crate::config::Limits,
) -> String {
    let pos = locate(e, Position::NONE);
    let reason = match innermost(e) {
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == context::TOTAL_TOKEN => format!(
            "stopped: took longer than its total budget of {} ms, time blocked in calls included (limits.callback_total_ms)",
            limits.callback_total.as_millis()
        ),
        EvalAltResult::ErrorTerminated(..) => format!(
            "stopped: ran past its deadline of {} ms (limits.callback_timeout_ms)",
            limits.callback_timeout.as_millis()
        ),
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("stopped: exceeded its budget of {} operations (limits.max_operations)", limits.max_operations)
        }
        EvalAltResult::ErrorFunctionNotFound(signature, _) => not_found(signature),
        EvalAltResult::ErrorRuntime(value, _) => match value.read_lock::<rhai::Map>() {
            Some(map) if map.contains_key("message") => format!("uncaught error: {}", map["message"]),
            _ => format!("uncaught error: {value}"),
        },
        other => {
            // Display appends " (line l, position c)"; the location is already up front.
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            text.strip_suffix(&suffix).map(str::to_owned).unwrap_or(text)
        }
    };
    if pos.is_none() && !fallback.is_none() && !is_limit(e) {
        // Rhai gives no position for some errors (stack overflow, size limits).
        return format!(
            "{}: in {callback} (which starts here; Rhai gives no line for this error): {reason}",
            location(path, fallback)
        );
    }
    format!("{}: in {callback}: {reason}", location(path, if pos.is_none() { fallback } else { pos }))
}

/// Rhai's "Function not found: rand::int (&str | ImmutableString | String, i64)" in a script's
/// words: the types given, and where the ones the function takes are listed. Most often the
/// name is right and an argument's type is not.
fn not_found(signature: &str) -> String {
    let (name, args) = match signature.split_once(" (") {
        Some((name, args)) => (name, args.strip_suffix(')').unwrap_or(args)),
        None => (signature, ""),
    };
    let given = split_types(args).into_iter().map(script_type).collect::<Vec<_>>().join(", ");
    // An operator (`+`, `==`) has nothing to list.
    if !name.starts_with(|c: char| c.is_alphabetic() || c == '_') {
        return format!("no operator `{name}` takes ({given})");
    }
    format!(
        "no function `{name}` takes ({given}): check the name and the arguments' types (`rhaibot api list {name}` lists what it takes)"
    )
}

/// Rhai's argument types, split at the commas between them (not those inside `<..>`).
fn split_types(args: &str) -> Vec<&str> {
    let (mut types, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in args.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                types.push(args[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = args[start..].trim();
    if !last.is_empty() {
        types.push(last);
    }
    types
}

/// The name a script knows a Rust type by, as Rhai prints it.
fn script_type(rust: &str) -> String {
    let named = match rust {
        "&str | ImmutableString | String" | "ImmutableString" | "String" | "&str" => "string",
        "i64" | "i32" | "u64" | "u32" | "usize" | "isize" => "int",
        "f64" | "f32" => "float",
        "bool" => "bool",
        "char" => "char",
        "()" => "()",
        "Array" | "rhai::Array" | "Vec<Dynamic>" => "array",
        "Map" | "rhai::Map" | "Object map" => "map",
        "FnPtr" | "Fn" => "function",
        "Blob" | "Vec<u8>" => "blob",
        other => return other.rsplit("::").next().unwrap_or(other).to_owned(),
    };
    named.to_owned()
}

/// Resolves the top-level `import "path" as alias;` lines of `source` and registers each module
/// under its alias, so closures and functions see it too (Rhai scopes a top-level import to the
/// top-level run only). Returns the imported paths.
fn preload_imports(engine: &mut Engine, source: &str, shown: &str) -> Result<Vec<String>, LoadError> {
    let mut paths = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let Some((path, alias)) = parse_import(line) else { continue };
        let pos = Position::new(i as u16 + 1, 1);
        let module =
            engine.module_resolver().resolve(engine, Some(shown), path, pos).map_err(|e| LoadError::TopLevel {
                path: shown.to_owned(),
                line: Some(i + 1),
                column: Some(1),
                message: format!("{shown}:{}:1: cannot import \"{path}\": {e}", i + 1),
            })?;
        engine.register_static_module(alias, module);
        paths.push(path.to_owned());
    }
    Ok(paths)
}

/// `import "path" as alias;` at the start of a line, in its plain form (more code may follow).
fn parse_import(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("import")?.trim_start().strip_prefix('"')?;
    let (path, rest) = rest.split_once('"')?;
    let rest = rest.trim_start().strip_prefix("as")?;
    let rest = rest.strip_prefix(char::is_whitespace)?.trim_start();
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
    let (alias, after) = rest.split_at(end);
    (!alias.is_empty() && after.trim_start().starts_with(';')).then_some((path, alias))
}

/// Where an error really happened, looking through nested function calls; `fallback` when the
/// error carries no position (a stopped runaway).
fn locate(e: &EvalAltResult, fallback: Position) -> Position {
    let mut inner = e;
    let mut pos = if e.position().is_none() { fallback } else { e.position() };
    while let EvalAltResult::ErrorInFunctionCall(_, _, next, p) = inner {
        if !p.is_none() {
            pos = *p;
        }
        inner = next;
        if !inner.position().is_none() {
            pos = inner.position();
        }
    }
    pos
}

/// The position of the first line of `source` containing `needle`.
pub(crate) fn line_of(source: &str, needle: &str) -> Position {
    source.lines().position(|l| l.contains(needle)).map_or(Position::NONE, |i| Position::new(i as u16 + 1, 1))
}

fn location(path: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{path}:{l}:{c}"),
        (Some(l), None) => format!("{path}:{l}"),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_function_is_told_in_a_scripts_types() {
        assert_eq!(
            not_found("rand::int (&str | ImmutableString | String, i64)"),
            "no function `rand::int` takes (string, int): check the name and the arguments' types \
             (`rhaibot api list rand::int` lists what it takes)"
        );
        assert!(
            not_found("f (HashMap<String, Dynamic>, f64)")
                .starts_with("no function `f` takes (HashMap<String, Dynamic>, float)")
        );
        assert!(not_found("now ()").starts_with("no function `now` takes ()"));
        assert_eq!(not_found("- (Map, i64)"), "no operator `-` takes (map, int)");
        assert!(not_found("registry (my::Registry)").contains("takes (Registry)"), "not a string");
    }

    #[test]
    fn top_level_imports_are_recognised() {
        assert_eq!(parse_import(r#"import "args" as args;"#), Some(("args", "args")));
        assert_eq!(parse_import(r#"import "lib/util"  as  u ;"#), Some(("lib/util", "u")));
        assert_eq!(parse_import(r#"    import "x" as y;"#), None, "indented: not top level");
        assert_eq!(parse_import(r#"import "x";"#), None);
        assert_eq!(parse_import(r#"import "g" as g; on("m", |ev| ());"#), Some(("g", "g")));
        assert_eq!(parse_import(r#"import "g" asg;"#), None);
    }

    #[test]
    fn commands_match_whole_words_after_the_prefix() {
        let names = vec!["echo".to_owned(), "e".to_owned()];
        for (text, expected) in [
            ("/echo hi there ", Some("hi there")),
            ("/echo", Some("")),
            ("  /e x", Some("x")),
            ("/echoes x", None),
            ("echo x", None),
            ("/other", None),
        ] {
            assert_eq!(command::args_of(text, &names, &command::Settings::default()), expected, "{text:?}");
        }
    }
}
