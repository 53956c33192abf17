//! Protocol namespaces generated from the action tables: one loop registers every action, and
//! one function ([`call_action`]) serves them all.

use std::sync::Arc;

use rhai::{Dynamic, FuncRegistration, Map, Module, NativeCallContext};
use serde_json::Value;

use super::convert::{at_call, script_error, to_json};
use super::{Services, documented};
use crate::api::Action;

/// A protocol namespace: its name and its action table; bots whose protocol names it accept it.
#[derive(Debug, Clone, Copy)]
pub struct Namespace {
    /// The Rhai namespace, e.g. `onebot`.
    pub name: &'static str,
    /// Every action.
    pub actions: &'static [Action],
}

/// Every protocol namespace scripts can use: one per adapter with an action table.
pub fn namespaces() -> impl Iterator<Item = Namespace> {
    crate::adapter::ADAPTERS
        .iter()
        .filter(|a| !a.actions.is_empty())
        .map(|a| Namespace { name: a.protocol.namespace, actions: a.actions })
}

/// One table-driven function: takes the script's arguments as they came.
pub(crate) type Entry = Arc<dyn Fn(Vec<Dynamic>) -> Result<Dynamic, Box<rhai::EvalAltResult>> + Send + Sync>;

/// Builds the module of `ns`: every action with positional arities 0..=n (one map argument is
/// always accepted), plus `call(action, params)` for anything the table lacks.
pub fn module(ns: Namespace, services: Arc<Services>) -> Module {
    let services_for_extras = services.clone();
    let mut m = Module::new();
    for action in ns.actions {
        let services = services.clone();
        let entry: Entry = Arc::new(move |args| call_action(&services, ns, action, args));
        register_table_fn(&mut m, action, entry);
    }
    let raw = move |ctx: NativeCallContext, action: &str, params: Map| -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        let call = || {
            let params = to_json(&params.into(), action)?;
            let bot = services.pick_bot(ns.name).map_err(|e| script_error(format!("{}::call: {e}", ns.name)))?;
            services.call_script(&bot, action, params)
        };
        call().map_err(|e| at_call(e, &ctx))
    };
    documented("call", &["action: string", "params: map"], "call any action by name, also one the table lacks")
        .set_into_module(&mut m, raw);
    // What runs in the script rather than over the wire (replacing the table's entry).
    if ns.name == "qq" {
        super::qq::extend(&mut m, services_for_extras);
    }
    m
}

/// Registers a table entry under its name with every arity it accepts: 0..=n positional
/// arguments (one map argument is covered by arity 1).
pub(crate) fn register_table_fn(m: &mut Module, action: &Action, entry: Entry) {
    let names: Vec<String> = action
        .params
        .iter()
        .map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, p.ty.as_str()))
        .collect();
    // Past 8 positional parameters a call takes a map (the few functions with more, such as
    // `qq::create_channels`, are called with named parameters anyway).
    for arity in 0..=action.params.len().clamp(1, 8) {
        register_arity(m, action.fn_name(), &names[..arity.min(names.len())], arity, action.doc, entry.clone());
    }
}

/// Checks a script's arguments against the table, then calls the bot.
fn call_action(
    services: &Services,
    ns: Namespace,
    action: &Action,
    args: Vec<Dynamic>,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let fq = || format!("{}::{}", ns.name, action.fn_name());
    let args = args.iter().map(|a| to_json(a, &fq())).collect::<Result<Vec<Value>, _>>()?;
    let params = action.build_params(args).map_err(|e| script_error(format!("{}: {e}", fq())))?;
    let bot = services.pick_bot(ns.name).map_err(|e| script_error(format!("{}: {e}", fq())))?;
    match services.call_value(&bot, action.name, params)? {
        Err(crate::bot::CallError::Failed { code, message, trace_id, answer: Some(answer), .. }) => {
            // The protocol answers failures as values (qg_botsdk's `result: false`): the script
            // gets the answer, and the failure is logged once with who asked.
            let who = crate::script::context::who();
            tracing::warn!(
                callback = who.as_deref().unwrap_or("?"),
                trace_id = trace_id.as_deref().unwrap_or(""),
                "{} failed: code {code}: {message}",
                fq()
            );
            Ok(super::convert::to_dynamic(&answer))
        }
        result => result.map(|v| super::convert::to_dynamic(&v)).map_err(super::convert::call_error),
    }
}

/// Registers `f` as `name` taking `arity` arguments of any type; errors carry the call's position.
pub(crate) fn register_arity(m: &mut Module, name: &str, params: &[String], arity: usize, doc: &str, f: Entry) {
    let reg = FuncRegistration::new(name).with_params_info(params).with_comments([format!("/// {doc}")]);
    let call = move |ctx: &NativeCallContext, args: Vec<Dynamic>| f(args).map_err(|e| at_call(e, ctx));
    type Ctx<'a> = NativeCallContext<'a>;
    // Tables have at most 8 parameters (`msg::image`); a longer one takes a map.
    if arity > 8 {
        tracing::error!(name, arity, "more positional parameters than registered; pass a map instead");
        return;
    }
    match arity {
        0 => reg.set_into_module(m, move |ctx: Ctx| call(&ctx, vec![])),
        1 => reg.set_into_module(m, move |ctx: Ctx, a: Dynamic| call(&ctx, vec![a])),
        2 => reg.set_into_module(m, move |ctx: Ctx, a: Dynamic, b: Dynamic| call(&ctx, vec![a, b])),
        3 => reg.set_into_module(m, move |ctx: Ctx, a: Dynamic, b: Dynamic, c: Dynamic| call(&ctx, vec![a, b, c])),
        4 => reg.set_into_module(m, move |ctx: Ctx, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
            call(&ctx, vec![a, b, c, d])
        }),
        5 => reg.set_into_module(m, move |ctx: Ctx, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, e: Dynamic| {
            call(&ctx, vec![a, b, c, d, e])
        }),
        6 => reg.set_into_module(
            m,
            move |ctx: Ctx, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, e: Dynamic, g: Dynamic| {
                call(&ctx, vec![a, b, c, d, e, g])
            },
        ),
        7 => reg.set_into_module(
            m,
            move |ctx: Ctx, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, e: Dynamic, g: Dynamic, h: Dynamic| {
                call(&ctx, vec![a, b, c, d, e, g, h])
            },
        ),
        _ => reg.set_into_module(
            m,
            move |ctx: Ctx,
                  a: Dynamic,
                  b: Dynamic,
                  c: Dynamic,
                  d: Dynamic,
                  e: Dynamic,
                  g: Dynamic,
                  h: Dynamic,
                  i: Dynamic| { call(&ctx, vec![a, b, c, d, e, g, h, i]) },
        ),
    };
}
