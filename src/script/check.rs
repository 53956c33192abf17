//! `rhaibot check`: finds the mistakes a script would otherwise show only when a matching
//! event arrives. It compiles each file and walks its syntax tree for calls of functions and
//! methods that exist nowhere (registered, defined in the script, or in an imported module),
//! imports that cannot be resolved, event names no protocol produces, cron expressions and time
//! zones that do not parse, and literal arguments of the wrong type, or missing required ones,
//! to protocol functions. Each finding has a place and, where one is near, a "did you mean".

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rhai::{ASTNode, Engine, Expr, Position, Stmt};
use serde::Serialize;
use serde_json::Value;

use crate::event::normalize_name;

/// One mistake found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// What to do, when there is something to say.
    pub hint: Option<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: error: {}", self.file, self.line, self.column, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// What exists: every function and property name, by namespace, and every event name.
#[derive(Debug, Default)]
pub struct Known {
    /// Global function (and method) names.
    functions: HashSet<String>,
    /// Property names (`ev.text`).
    properties: HashSet<String>,
    /// Namespaced functions: namespace -> names.
    namespaced: HashMap<String, HashSet<String>>,
    /// Normalised event names callbacks can subscribe to.
    events: BTreeSet<String>,
}

/// Keywords Rhai calls like functions without registering them.
const BUILTINS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "eval",
    "is_def_fn",
    "is_def_var",
    "is_shared",
    "throw",
    "this",
    "sleep",
];

impl Known {
    /// What a script engine built like `engine` (a script's, with every module) knows.
    pub fn from_engine(engine: &Engine) -> Known {
        let mut k = Known::default();
        for sig in engine.gen_fn_signatures(true) {
            let name = sig.split('(').next().unwrap_or_default().trim();
            // "ns::name", "get$prop", "set$prop", "name"
            if let Some((ns, f)) = name.rsplit_once("::") {
                k.namespaced.entry(ns.to_owned()).or_default().insert(f.to_owned());
            } else if let Some(p) = name.strip_prefix("get$").or_else(|| name.strip_prefix("set$")) {
                k.properties.insert(p.to_owned());
            } else if !name.is_empty() {
                k.functions.insert(name.to_owned());
            }
        }
        k.functions.extend(BUILTINS.iter().map(|s| (*s).to_owned()));
        for e in crate::catalog::api_list(None).events {
            k.events.insert(normalize_name(&e.name));
        }
        // The scripts' own registration functions are registered per script.
        k.functions.extend(["on", "command", "cron", "after", "every", "cancel", "jobs"].map(str::to_owned));
        k
    }

    /// Whether handlers for `event` can ever run: it is a known name, or a prefix of one.
    fn event_exists(&self, event: &str) -> bool {
        let n = normalize_name(event);
        // A known name, a prefix of one (`notice`), or one with a sub_type the protocol adds
        // (`notice.group_ban.ban`, `message.group.normal`).
        self.events.iter().any(|e| *e == n || e.starts_with(&format!("{n}_")) || n.starts_with(&format!("{e}_")))
    }
}

/// The closest names to `name` among `candidates` (edit distance at most a third of its length).
fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a String>) -> Option<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    let mut best: Vec<(usize, &str)> = candidates
        // Names a script can write (no operators such as `!` or `%`, no internal `get$x`).
        .filter(|c| c.chars().all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.'))
        .map(|c| (distance(name, c), c.as_str()))
        .filter(|(d, _)| *d <= limit)
        .collect();
    best.sort();
    best.dedup();
    let names: Vec<&str> = best.iter().take(3).map(|(_, c)| *c).collect();
    (!names.is_empty()).then(|| format!("did you mean {}?", names.join(", ")))
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A literal's value as JSON, if the expression is a literal.
fn literal(e: &Expr) -> Option<Value> {
    Some(match e {
        Expr::IntegerConstant(n, _) => Value::from(*n),
        Expr::FloatConstant(f, _) => serde_json::json!(**f),
        Expr::BoolConstant(b, _) => Value::Bool(*b),
        Expr::StringConstant(s, _) => Value::String(s.to_string()),
        Expr::Unit(_) => Value::Null,
        // Constant maps and arrays are folded into one value when compiled.
        Expr::DynamicConstant(d, _) => rhai::serde::from_dynamic::<Value>(d).ok()?,
        _ => return None,
    })
}

/// The fields of a map argument: a literal map (some values maybe not literal) or a folded one.
fn map_fields(e: &Expr) -> Option<Vec<(String, Option<Value>)>> {
    match e {
        Expr::Map(m, _) => Some(m.0.iter().map(|(k, v)| (k.name.to_string(), literal(v))).collect()),
        Expr::DynamicConstant(..) => match literal(e)? {
            Value::Object(m) => Some(m.into_iter().map(|(k, v)| (k, Some(v))).collect()),
            _ => None,
        },
        _ => None,
    }
}

/// Checks the script `path` (with its text `source`), compiled by `engine`.
pub fn check_source(path: &Path, source: &str, engine: &Engine, known: &Known, stdlib: Option<&Path>) -> Vec<Finding> {
    let file = path.display().to_string();
    let ast = match engine.compile(source) {
        Ok(ast) => ast,
        Err(e) => {
            let p = e.position();
            return vec![Finding {
                file,
                line: p.line().unwrap_or(0),
                column: p.position().unwrap_or(0),
                message: format!("syntax error: {}", e.err_type()),
                hint: None,
            }];
        }
    };
    let mut found = Vec::new();
    let at = |pos: Position, message: String, hint: Option<String>| Finding {
        file: file.clone(),
        line: pos.line().unwrap_or(0),
        column: pos.position().unwrap_or(0),
        message,
        hint,
    };
    // The script's own functions, and the functions of the modules it imports, by alias.
    let own: HashSet<String> = ast.iter_functions().map(|f| f.name.to_owned()).collect();
    let mut modules: HashMap<String, HashSet<String>> = HashMap::new();
    let dirs: Vec<PathBuf> = path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() })
        .into_iter()
        .chain(stdlib.map(Path::to_path_buf))
        .collect();
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = nodes.last() {
            let (module, alias) = &**x;
            let Some(name) = literal(module).and_then(|v| v.as_str().map(str::to_owned)) else { return true };
            // `import "util.rhai"` and `import "util"` name the same file.
            let name = name.strip_suffix(".rhai").unwrap_or(&name).to_owned();
            let file = dirs.iter().map(|d| d.join(format!("{name}.rhai"))).find(|p| p.is_file());
            let builtin = crate::script::engine::BUILTIN_STDLIB.iter().find(|(n, _)| *n == name).map(|(_, src)| *src);
            let source = file.and_then(|f| std::fs::read_to_string(f).ok()).or(builtin.map(str::to_owned));
            match source {
                Some(src) => {
                    let functions = engine
                        .compile(src)
                        .map(|m| m.iter_functions().map(|f| f.name.to_owned()).collect())
                        .unwrap_or_default();
                    modules.insert(alias.name.to_string(), functions);
                }
                None => found.push(at(
                    *pos,
                    format!("cannot import \"{name}\": no {name}.rhai beside the script or in the stdlib"),
                    Some(format!(
                        "looked in {}",
                        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                    )),
                )),
            }
        }
        true
    });
    ast.walk(&mut |nodes: &[ASTNode]| {
        // A call in statement position is a statement; elsewhere an expression.
        let (call, pos, method) = match nodes.last() {
            Some(ASTNode::Stmt(Stmt::FnCall(call, pos))) | Some(ASTNode::Expr(Expr::FnCall(call, pos))) => {
                (call, pos, false)
            }
            Some(ASTNode::Expr(Expr::MethodCall(call, pos))) => (call, pos, true),
            _ => return true,
        };
        match (call, pos, method) {
            (call, pos, false) if !call.is_operator_call() => {
                let name = call.name.as_str();
                if call.namespace.is_empty() {
                    if !known.functions.contains(name) && !own.contains(name) && !name.starts_with("anon$") {
                        let hint = did_you_mean(name, known.functions.iter().chain(own.iter()));
                        found.push(at(*pos, format!("no function `{name}`"), hint));
                    }
                    check_registration(name, &call.args, known, &at, &mut found);
                } else {
                    let ns = call.namespace.root();
                    let names = modules.get(ns).or_else(|| known.namespaced.get(ns));
                    match names {
                        None => {
                            let hint = did_you_mean(ns, known.namespaced.keys().chain(modules.keys()));
                            found.push(at(*pos, format!("no module `{ns}` (in `{ns}::{name}`)"), hint));
                        }
                        Some(names) if !names.contains(name) => {
                            found.push(at(
                                *pos,
                                format!("no function `{ns}::{name}`"),
                                did_you_mean(name, names.iter()),
                            ));
                        }
                        // A script's own import of that name is its own functions, not a table's.
                        Some(_) if modules.contains_key(ns) => {}
                        Some(_) => check_protocol_call(ns, name, &call.args, &at, *pos, &mut found),
                    }
                }
            }
            (call, pos, true) => {
                let name = call.name.as_str();
                // A function kept in a map (`obj.hi()` with `hi: || ..`) is called like a method.
                let map_key = source.contains(&format!("{name}:")) || source.contains(&format!("\"{name}\":"));
                if !known.functions.contains(name) && !own.contains(name) && !map_key {
                    let hint = did_you_mean(name, known.functions.iter().chain(own.iter()));
                    found.push(at(*pos, format!("no method `{name}`"), hint));
                }
            }
            _ => {}
        }
        true
    });
    // `fn on_<event>(ev)` handlers name events too.
    for f in ast.iter_functions() {
        if let (Some(event), 1) = (f.name.strip_prefix("on_"), f.params.len())
            && !known.event_exists(event)
        {
            let hint = did_you_mean(&normalize_name(event), known.events.iter());
            found.push(Finding {
                file: file.clone(),
                line: crate::script::host::line_of(source, &format!("fn {}", f.name)).line().unwrap_or(0),
                column: 1,
                message: format!("`fn {}` handles `{event}`, which no protocol produces", f.name),
                hint,
            });
        }
    }
    found.sort_by_key(|f| (f.line, f.column));
    found.dedup();
    found
}

/// `on("event", ..)` with an event nobody sends; `cron(..)` with an expression or zone that
/// does not parse.
fn check_registration(
    name: &str,
    args: &[Expr],
    known: &Known,
    at: &impl Fn(Position, String, Option<String>) -> Finding,
    found: &mut Vec<Finding>,
) {
    match (name, args) {
        ("on", [Expr::StringConstant(event, pos), ..]) if !known.event_exists(event) => {
            let hint = did_you_mean(&normalize_name(event), known.events.iter())
                .map(|h| h.replace('_', "."))
                .or(Some("`rhaibot api list` lists the events".into()));
            found.push(at(*pos, format!("no protocol produces the event \"{event}\": this handler never runs"), hint));
        }
        // cron(expr, f), cron(name, expr, f), cron(name, expr, options, f)
        ("cron", [Expr::StringConstant(expr, pos), _]) | ("cron", [_, Expr::StringConstant(expr, pos), _, ..]) => {
            if let Err(e) = crate::scheduler::CronSpec::parse(expr, crate::scheduler::Zone::Local) {
                // The cron crate's message spans lines (the expression again, a caret): one line.
                let e = e.to_string();
                let e: Vec<&str> = e
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && *l != "^" && *l != expr.trim())
                    .map(|l| {
                        l.trim_start_matches("invalid cron expression")
                            .trim_start_matches(&format!(" \"{expr}\":"))
                            .trim()
                    })
                    .filter(|l| !l.is_empty())
                    .collect();
                let e = e.join("; ");
                let fields = expr.split_whitespace().count();
                let hint = (fields == 5).then(|| format!("cron here takes 6 or 7 fields, seconds first: \"0 {expr}\""));
                found.push(at(*pos, format!("bad cron expression \"{expr}\": {e}"), hint));
            }
            if args.len() == 4
                && let Some(fields) = map_fields(&args[2])
            {
                for (key, value) in fields {
                    if key == "tz"
                        && let Some(Value::String(zone)) = value
                        && let Err(e) = crate::scheduler::Zone::parse(&zone)
                    {
                        found.push(at(args[2].position(), e, None));
                    }
                }
            }
        }
        _ => {}
    }
}

/// Literal arguments to a protocol function: types and required parameters, from its table.
fn check_protocol_call(
    ns: &str,
    name: &str,
    args: &[Expr],
    at: &impl Fn(Position, String, Option<String>) -> Finding,
    pos: Position,
    found: &mut Vec<Finding>,
) {
    // `msg::` builders are checked by the segment table, as they check themselves.
    let actions = match ns {
        "msg" => crate::adapter::onebot11::segments::SEGMENTS,
        _ => match crate::bindings::protocol::namespaces().find(|n| n.name == ns) {
            Some(table) => table.actions,
            None => return,
        },
    };
    let Some(action) = actions.iter().find(|a| a.fn_name() == name) else { return };
    // The arguments as the table would get them, where they are literals (`Any` stands in for
    // what is not known until the script runs).
    let unknown = Value::String("\u{0}unknown".into());
    let values: Vec<Value> = match args {
        [one] if map_fields(one).is_some() => {
            let fields = map_fields(one).unwrap_or_default();
            vec![Value::Object(fields.into_iter().map(|(k, v)| (k, v.unwrap_or_else(|| unknown.clone()))).collect())]
        }
        _ => args.iter().map(|a| literal(a).unwrap_or_else(|| unknown.clone())).collect(),
    };
    // Replace the unknowns by a value every type accepts, so only literals are judged.
    let relaxed: Vec<Value> = values
        .into_iter()
        .map(|v| match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| if v == unknown { (k.clone(), any_for(action, &k)) } else { (k, v) })
                    .collect(),
            ),
            other => other,
        })
        .enumerate()
        .map(|(i, v)| if v == unknown { any_for_index(action, i) } else { v })
        .collect();
    if let Err(e) = action.build_params(relaxed) {
        let hint = (!e.contains(&action.signature())).then(|| format!("{ns}::{}", action.signature()));
        found.push(at(pos, format!("{ns}::{name}: {e}"), hint));
    }
}

/// A value the parameter `key` of `action` accepts (for an argument only known at run time).
fn any_for(action: &crate::api::Action, key: &str) -> Value {
    action.params.iter().find(|p| p.name == key).map_or(Value::Bool(true), |p| sample(p.ty))
}

fn any_for_index(action: &crate::api::Action, i: usize) -> Value {
    action.params.get(i).map_or(Value::Bool(true), |p| sample(p.ty))
}

fn sample(ty: crate::api::Ty) -> Value {
    use crate::api::Ty;
    match ty {
        Ty::Int => Value::from(1),
        Ty::Str => Value::from("s"),
        Ty::Id => Value::from("1"),
        Ty::File => Value::from("file:///f"),
        Ty::Bool => Value::Bool(true),
        Ty::Num => Value::from(1.5),
        Ty::Array => Value::Array(vec![]),
        Ty::Object => Value::Object(Default::default()),
        Ty::Message | Ty::Any => Value::from("x"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_and_suggestions() {
        assert_eq!(distance("replyy", "reply"), 1);
        assert_eq!(distance("", "abc"), 3);
        let names = ["reply".to_owned(), "reply_wait".to_owned(), "quick".to_owned()];
        assert_eq!(did_you_mean("replyy", names.iter()).as_deref(), Some("did you mean reply?"));
        assert_eq!(did_you_mean("zzzzzz", names.iter()), None);
    }
}
