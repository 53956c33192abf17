//! Everything scripts can use, as data: the source of `rhaibot api list`, which
//! `../shared/catalog/check_coverage.py` checks for completeness.

use serde::Serialize;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::bindings::Services;
use crate::script::Globals;

/// What kind of name a [`FunctionInfo`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `name(args)` or `ns::name(args)`.
    Function,
    /// `value.name(args)`.
    Method,
    /// `value.name`.
    Property,
    /// `value[key]`.
    Index,
}

/// One script function, method or property.
#[derive(Debug, Serialize)]
pub struct FunctionInfo {
    /// Qualified name, e.g. `onebot::send_group_msg`, `Event.reply`, `Event.text`.
    pub name: String,
    /// Function, method, property or index.
    pub kind: Kind,
    /// Parameter names (with `?` for optional ones) in order.
    pub params: Vec<String>,
    /// Each parameter's type as scripts see it (`int`, `string`, `map`, `Fn`, `Event`, ...).
    pub types: Vec<String>,
    /// One-line description.
    pub doc: String,
}

/// One event name a callback can subscribe to.
#[derive(Debug, Serialize)]
pub struct EventInfo {
    /// Dotted name, e.g. `notice.group_ban.ban`.
    pub name: String,
    /// `onebot11` or `any` for cross-protocol aliases.
    pub protocol: &'static str,
    /// One-line description.
    pub doc: String,
}

/// The whole listing.
#[derive(Debug, Serialize)]
pub struct ApiList {
    /// Every function.
    pub functions: Vec<FunctionInfo>,
    /// Every event name.
    pub events: Vec<EventInfo>,
}

/// Cross-protocol aliases every protocol delivers its messages under.
pub const ALIASES: &[(&str, &str)] = &[
    ("message", "any message to the bot (never the bot's own)"),
    ("message.private", "a private (direct or temporary) message"),
    ("message.group", "a group message"),
    ("request.friend", "someone asks to be the bot's friend"),
    ("request.group", "someone asks to join a group, or invites the bot"),
    ("member.increase", "someone joined a group"),
    ("member.decrease", "someone left or was removed from a group"),
    ("recall", "a message was recalled"),
    ("poke", "someone poked (nudged) someone"),
];

/// Builds the listing from the registrations themselves: every function a script's engine
/// has (with the parameters and description it was registered with), the public functions of
/// the modules in `stdlib_dir`, and every event name the adapters produce.
pub fn api_list(stdlib_dir: Option<&Path>) -> ApiList {
    let engine = listing_engine();
    let mut functions = registered_functions(&engine);
    if let Some(dir) = stdlib_dir {
        functions.extend(stdlib_functions(&engine, dir));
    }
    let mut events: Vec<EventInfo> =
        ALIASES.iter().map(|(n, d)| EventInfo { name: (*n).into(), protocol: "any", doc: (*d).into() }).collect();
    for adapter in crate::adapter::ADAPTERS {
        events.extend(adapter.events.iter().map(|(n, d)| EventInfo {
            name: (*n).into(),
            protocol: adapter.protocol.name,
            doc: (*d).into(),
        }));
    }
    ApiList { functions, events }
}

/// An engine with every registration a script gets, offline (no bots; an in-memory store).
pub fn listing_engine() -> rhai::Engine {
    let store = crate::storage::Store::in_memory().ok().map(Arc::new);
    let scheduler = crate::scheduler::Scheduler::new(None);
    let zone =
        crate::scheduler::Zone::parse("UTC").unwrap_or_else(|_| crate::config::Config::console_default().timezone);
    let globals = Globals::new(Services::offline(store), Default::default(), None, Some(scheduler), zone);
    crate::script::full_engine(&globals)
}

/// The functions of a script's engine as its metadata describes them, one entry per name: the
/// overload with the most parameters (registrations mark optional ones `name?`).
fn registered_functions(engine: &rhai::Engine) -> Vec<FunctionInfo> {
    let metadata = engine.gen_fn_metadata_to_json(false).unwrap_or_default();
    let metadata: Value = serde_json::from_str(&metadata).unwrap_or_default();
    let mut by_name: BTreeMap<String, FunctionInfo> = BTreeMap::new();
    let mut add = |namespace: Option<&str>, f: &Value| {
        let Some(raw_name) = f["name"].as_str() else { return };
        let params: Vec<(String, String)> = f["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["name"].as_str().unwrap_or("_").to_owned(), p["type"].as_str().unwrap_or("?").to_owned()))
            .collect();
        let doc: String = f["docComments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|c| c.trim_start_matches('/').trim())
            .collect::<Vec<_>>()
            .join(" ");
        // Methods and properties are listed on their type: `Event.reply`, `Event.text`.
        let receiver = params.first().filter(|(_, ty)| TYPES.contains(&ty.as_str())).map(|(_, ty)| ty.clone());
        let (name, kind, params) = match (namespace, &receiver) {
            (Some(ns), _) => (format!("{ns}::{raw_name}"), Kind::Function, params),
            (None, Some(ty)) if raw_name == "index$get$" => (format!("{ty}[]"), Kind::Index, params[1..].to_vec()),
            (None, Some(ty)) => match raw_name.strip_prefix("get$") {
                Some(property) => (format!("{ty}.{property}"), Kind::Property, Vec::new()),
                None => (format!("{ty}.{raw_name}"), Kind::Method, params[1..].to_vec()),
            },
            (None, None) => (raw_name.to_owned(), Kind::Function, params),
        };
        let (params, types): (Vec<String>, Vec<String>) = params.into_iter().unzip();
        if by_name.get(&name).is_some_and(|kept| kept.params.len() >= params.len()) {
            return;
        }
        by_name.insert(name.clone(), FunctionInfo { name, kind, params, types, doc });
    };
    for f in metadata["functions"].as_array().into_iter().flatten() {
        add(None, f);
    }
    for (ns, module) in metadata["modules"].as_object().into_iter().flatten() {
        for f in module["functions"].as_array().into_iter().flatten() {
            add(Some(ns), f);
        }
    }
    by_name.into_values().collect()
}

/// The types whose methods are listed as `Type.method`.
const TYPES: &[&str] = &["Event", "KvSpace"];

/// The public functions of the `.rhai` modules in `dir`, as `module::function`.
fn stdlib_functions(engine: &rhai::Engine, dir: &Path) -> Vec<FunctionInfo> {
    let mut out = Vec::new();
    // The modules of the stdlib dir, and the built-in ones it does not override.
    let mut modules: Vec<(String, String)> = crate::script::script_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|file| {
            let module = file.file_stem()?.to_string_lossy().into_owned();
            Some((module, std::fs::read_to_string(&file).ok()?))
        })
        .collect();
    for (name, source) in crate::script::engine::BUILTIN_STDLIB {
        if !modules.iter().any(|(m, _)| m == name) {
            modules.push(((*name).to_owned(), (*source).to_owned()));
        }
    }
    for (module, source) in modules {
        let Ok(ast) = engine.compile(source) else { continue };
        for f in ast.iter_functions().filter(|f| f.access == rhai::FnAccess::Public) {
            let doc = f.comments.iter().map(|c| c.trim_start_matches('/').trim()).collect::<Vec<_>>().join(" ");
            out.push(FunctionInfo {
                name: format!("{module}::{}", f.name),
                kind: Kind::Function,
                params: f.params.iter().map(|p| p.to_string()).collect(),
                types: f.params.iter().map(|_| "any".to_owned()).collect(),
                doc,
            });
        }
    }
    out
}

/// Writes `dir/reference.md` (every function, method, property and event, with parameters,
/// types and descriptions, from the engine's own metadata) and the Rhai definition files
/// (`dir/definitions/*.d.rhai`) editors read to complete and check names.
pub fn write_docs(dir: &Path, stdlib_dir: Option<&Path>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let list = api_list(stdlib_dir);
    let mut md = String::from(
        "# rhaibot script reference\n\nGenerated by `rhaibot docs` from what the runtime registers; \
         `rhaibot api list [FILTER]` shows the same.\n",
    );
    let mut section = String::new();
    for f in &list.functions {
        let head = match f.name.split_once("::") {
            Some((ns, _)) => format!("`{ns}::`"),
            None if f.kind == Kind::Function => "Global functions".to_owned(),
            None => format!("`{}`", f.name.split('.').next().unwrap_or("values")),
        };
        if head != section {
            md.push_str(&format!("\n## {head}\n\n| call | description |\n|---|---|\n"));
            section = head;
        }
        let typed: Vec<String> = f
            .params
            .iter()
            .zip(f.types.iter().chain(std::iter::repeat(&String::new())))
            .map(|(p, t)| if t.is_empty() { p.clone() } else { format!("{p}: {t}") })
            .collect();
        let call = match f.kind {
            Kind::Property => f.name.clone(),
            Kind::Index => format!("{}[{}]", f.name.trim_end_matches("[]"), typed.join(", ")),
            _ => format!("{}({})", f.name, typed.join(", ")),
        };
        md.push_str(&format!("| `{}` | {} |\n", call.replace('|', "\\|"), f.doc.replace('|', "\\|")));
    }
    md.push_str("\n## Events\n\n| event | protocol | description |\n|---|---|---|\n");
    for e in &list.events {
        md.push_str(&format!("| `{}` | {} | {} |\n", e.name, e.protocol, e.doc.replace('|', "\\|")));
    }
    std::fs::write(dir.join("reference.md"), md)?;
    listing_engine().definitions().write_to_dir(dir.join("definitions"))
}
