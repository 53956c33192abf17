//! One loaded script: its engine, its compiled AST and the handlers it registered.
//!
//! A script registers callbacks with `on("event", |ev| ...)` at its top level, or by defining
//! `fn on_<event>(ev)` (dots written as underscores). Every callback runs under the limits of
//! [`Globals`]; errors, stopped runaways and host panics are logged with the script, the
//! callback, file:line and the reason, and never escape.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rhai::{AST, CallFnOptions, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext, ParseError, Position, Scope};
use tracing::error;

use super::context;
use super::engine::Globals;
use crate::bindings::event::EventRef;
use crate::event::normalize_name;

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
    /// The top level threw or was stopped.
    #[error("{0}")]
    TopLevel(String),
}

enum Handler {
    Closure(FnPtr),
    Function(String),
}

/// A handler with what names it in logs: its label and where it was registered or defined
/// (used when an error carries no position of its own, as a stopped runaway does).
struct Registered {
    label: String,
    at: Position,
    handler: Handler,
}

/// A compiled, initialised script.
pub struct Script {
    /// File name, e.g. `hello.rhai`; names the script in logs.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    engine: Engine,
    ast: AST,
    globals: Arc<Globals>,
    handlers: HashMap<String, Vec<Registered>>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("name", &self.name).field("handlers", &self.handlers.len()).finish()
    }
}

type Registrations = Arc<Mutex<Option<Vec<(String, FnPtr, Position)>>>>;

impl Script {
    /// Compiles `path` and runs its top level, collecting the handlers it registers.
    pub fn load(path: &Path, globals: &Arc<Globals>) -> Result<Script, LoadError> {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let shown = path.display().to_string();
        let source = std::fs::read_to_string(path)
            .map_err(|e| LoadError::Read { path: shown.clone(), message: e.to_string() })?;
        let mut engine = globals.engine(&name, path.parent().map(Path::to_path_buf));
        let registrations: Registrations = Arc::new(Mutex::new(Some(Vec::new())));
        let reg = registrations.clone();
        engine.register_fn(
            "on",
            move |ctx: NativeCallContext, event: &str, callback: FnPtr| -> Result<(), Box<EvalAltResult>> {
                match reg.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    Some(list) => {
                        list.push((event.to_owned(), callback, ctx.call_position()));
                        Ok(())
                    }
                    None => Err(crate::bindings::convert::script_error(
                        "on() registers handlers only at the top level of a script".into(),
                    )),
                }
            },
        );

        let mut ast = engine.compile(&source).map_err(|e| syntax_error(&shown, e))?;
        ast.set_source(shown.as_str());
        {
            let _running = context::enter(globals.limits.callback_timeout, None);
            engine
                .run_ast(&ast)
                .map_err(|e| LoadError::TopLevel(describe(&shown, "top level", Position::NONE, &e, &globals.limits)))?;
        }

        let mut handlers: HashMap<String, Vec<Registered>> = HashMap::new();
        let registered = registrations.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
        for (event, f, at) in registered {
            let label = format!("on(\"{event}\")");
            handlers.entry(normalize_name(&event)).or_default().push(Registered {
                label,
                at,
                handler: Handler::Closure(f),
            });
        }
        for f in ast.iter_functions() {
            if let (Some(event), 1) = (f.name.strip_prefix("on_"), f.params.len()) {
                let label = format!("fn {}", f.name);
                let at = line_of(&source, &format!("fn {}", f.name));
                let handler = Handler::Function(f.name.to_owned());
                handlers.entry(normalize_name(event)).or_default().push(Registered { label, at, handler });
            }
        }
        Ok(Script { name, path: path.to_owned(), engine, ast, globals: globals.clone(), handlers })
    }

    /// Whether any handler of this script listens to one of `keys`.
    pub fn wants(&self, keys: &[String]) -> bool {
        keys.iter().any(|k| self.handlers.contains_key(k))
    }

    /// Runs every handler this script has for `ev`, most specific name first.
    pub fn handle(&self, ev: &EventRef) {
        for key in ev.keys() {
            for registered in self.handlers.get(key).into_iter().flatten() {
                self.run(registered, ev);
            }
        }
    }

    fn run(&self, registered: &Registered, ev: &EventRef) {
        let label = registered.label.as_str();
        let _running = context::enter(self.globals.limits.callback_timeout, Some(ev.bot.clone()));
        let arg = Dynamic::from(ev.clone());
        let outcome = catch_unwind(AssertUnwindSafe(|| match &registered.handler {
            Handler::Closure(f) => f.call::<Dynamic>(&self.engine, &self.ast, (arg,)),
            Handler::Function(name) => {
                let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
                self.engine.call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.ast, name, (arg,))
            }
        }));
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                let what = describe(&self.path.display().to_string(), label, registered.at, &e, &self.globals.limits);
                error!(script = %self.name, callback = label, event = %ev.name, "{what}");
            }
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                error!(script = %self.name, callback = label, event = %ev.name, "host panic in callback: {reason}");
            }
        }
    }
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

/// Checks a file's syntax with `globals`' engine; the error carries file:line:col.
pub fn check_file(path: &Path, globals: &Globals) -> Result<(), LoadError> {
    let shown = path.display().to_string();
    let source =
        std::fs::read_to_string(path).map_err(|e| LoadError::Read { path: shown.clone(), message: e.to_string() })?;
    let mut engine = globals.engine("check", path.parent().map(Path::to_path_buf));
    engine.register_fn("on", |_: &str, _: FnPtr| ());
    engine.compile(&source).map(|_| ()).map_err(|e| syntax_error(&shown, e))
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
    let reason = match inner {
        EvalAltResult::ErrorTerminated(..) => format!(
            "stopped: ran past its deadline of {} ms (limits.callback_timeout_ms)",
            limits.callback_timeout.as_millis()
        ),
        EvalAltResult::ErrorTooManyOperations(_) => {
            format!("stopped: exceeded its budget of {} operations (limits.max_operations)", limits.max_operations)
        }
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
    format!("{}: in {callback}: {reason}", location(path, pos))
}

/// The position of the first line of `source` containing `needle`.
fn line_of(source: &str, needle: &str) -> Position {
    source.lines().position(|l| l.contains(needle)).map_or(Position::NONE, |i| Position::new(i as u16 + 1, 1))
}

fn location(path: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{path}:{l}:{c}"),
        (Some(l), None) => format!("{path}:{l}"),
        _ => path.to_owned(),
    }
}
