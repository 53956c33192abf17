//! Everything scripts can use, as data: the source of `rhaibot api list`, which
//! `../shared/catalog/check_coverage.py` checks for completeness.

use serde::Serialize;

use crate::bindings::{kv, msg, protocol, schedule};

/// One script function.
#[derive(Debug, Serialize)]
pub struct FunctionInfo {
    /// Qualified name, e.g. `onebot::send_group_msg`.
    pub name: String,
    /// Parameter names (with `?` for optional ones) in order.
    pub params: Vec<String>,
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

const BUILTINS: &[(&str, &[&str], &str)] = &[
    ("on", &["event", "callback"], "register a callback for an event name or prefix (top level only)"),
    ("command", &["name_or_names", "callback"], "register a callback for `/name args` messages; it gets (ev, args)"),
    ("bot", &["name"], "send the rest of this callback's calls to the named bot"),
    ("print", &["value"], "log a line as this script"),
    ("Event.reply", &["message"], "answer where the event came from"),
];

/// Cross-protocol aliases every protocol delivers its messages under.
pub const ALIASES: &[(&str, &str)] = &[
    ("message", "any message to the bot"),
    ("message.private", "a private (direct) message"),
    ("message.group", "a group message"),
];

/// Builds the listing from the tables.
pub fn api_list() -> ApiList {
    let mut functions: Vec<FunctionInfo> = BUILTINS
        .iter()
        .map(|(n, ps, d)| FunctionInfo {
            name: (*n).into(),
            params: ps.iter().map(|p| (*p).into()).collect(),
            doc: (*d).into(),
        })
        .collect();
    for ns in protocol::namespaces() {
        functions.push(FunctionInfo {
            name: format!("{}::call", ns.name),
            params: vec!["action".into(), "params".into()],
            doc: "call any action by name".into(),
        });
        for a in ns.actions {
            functions.push(FunctionInfo {
                name: format!("{}::{}", ns.name, a.fn_name()),
                params: a.params.iter().map(|p| format!("{}{}", p.name, if p.required { "" } else { "?" })).collect(),
                doc: a.doc.into(),
            });
        }
    }
    for (name, params) in kv::FUNCTIONS.iter().chain(schedule::FUNCTIONS) {
        functions.push(FunctionInfo {
            name: (*name).into(),
            params: params.iter().map(|p| (*p).into()).collect(),
            doc: if name.starts_with("kv::") { "key-value store" } else { "scheduling" }.into(),
        });
    }
    for (name, params) in msg::function_names() {
        functions.push(FunctionInfo { name, params, doc: "message segment builder".into() });
    }
    let mut events: Vec<EventInfo> =
        ALIASES.iter().map(|(n, d)| EventInfo { name: (*n).into(), protocol: "any", doc: (*d).into() }).collect();
    events.extend(crate::adapter::onebot11::events::EVENTS.iter().map(|(n, d)| EventInfo {
        name: (*n).into(),
        protocol: "onebot11",
        doc: (*d).into(),
    }));
    ApiList { functions, events }
}
