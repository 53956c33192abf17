//! What the `qq` namespace has beyond its function table: `qq::wait_for`, which waits in the
//! script (qg_botsdk's is SDK-local too), and builders of the platform's message kinds, each a
//! segment (`#{type, data}`) that goes in any message next to `msg::` segments:
//!
//! ```rhai
//! ev.reply([qq::markdown("**hi**"), qq::keyboard("KEYBOARD_ID")]);
//! ev.reply(qq::ark_37(#{ title: "t", content: "c", image: "https://x/y.png", link: "https://x" }));
//! let next = qq::wait_for("user", #{ command: ["yes", "no"] }, 30);
//! ```

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Map, Module, NativeCallContext};
use serde_json::{Value, json};

use super::convert::{at_call, call_error, script_error, to_dynamic, to_json};
use super::{Services, documented};
use crate::adapter::qq::message;
use crate::bot::CallError;
use crate::event::Event;
use crate::script::context;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

fn seg(kind: &str, data: Value) -> Dynamic {
    to_dynamic(&json!({"type": kind, "data": data}))
}

fn j(v: &Dynamic, what: &str) -> RhaiResult<Value> {
    to_json(v, what)
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// Adds `wait_for` and the message builders to the `qq` module.
pub fn extend(m: &mut Module, services: Arc<Services>) {
    for arity in 1..=3 {
        let s = services.clone();
        let params = &["scope: string", "command_obj?: map", "timeout?: int"][..arity];
        let f = move |ctx: NativeCallContext, args: Vec<Dynamic>| wait_for(&s, &args).map_err(|e| at_call(e, &ctx));
        let reg = documented(
            "wait_for",
            params,
            "wait for the next message in a scope (user, channel/group, guild, global) matching a command; the event, or a timeout error",
        );
        match arity {
            1 => reg.set_into_module(m, move |ctx: NativeCallContext, a: Dynamic| f(ctx, vec![a])),
            2 => reg.set_into_module(m, move |ctx: NativeCallContext, a: Dynamic, b: Dynamic| f(ctx, vec![a, b])),
            _ => reg.set_into_module(m, move |ctx: NativeCallContext, a: Dynamic, b: Dynamic, c: Dynamic| {
                f(ctx, vec![a, b, c])
            }),
        };
    }
    documented("markdown", &["content: string"], "a native markdown message")
        .set_into_module(m, |content: &str| seg("markdown", json!({ "content": content })));
    documented(
        "markdown",
        &["template_id: string", "params: map"],
        "a template markdown message: `#{key: value or [values]}`",
    )
    .set_into_module(m, |template: Dynamic, params: Dynamic| -> RhaiResult<Dynamic> {
        let md = message::markdown(&j(&template, "qq::markdown")?, &j(&params, "qq::markdown")?, &Value::Null)
            .map_err(|e| script_error(format!("qq::markdown: {e}")))?;
        Ok(seg("markdown", md))
    });
    documented("keyboard", &["id_or_content: string | map"], "a keyboard: a template id, or `#{rows: [..]}`")
        .set_into_module(m, |k: Dynamic| -> RhaiResult<Dynamic> {
            Ok(match j(&k, "qq::keyboard")? {
                content @ Value::Object(_) => seg("keyboard", json!({ "content": content })),
                id => seg("keyboard", json!({ "id": id })),
            })
        });
    documented(
        "ark_23",
        &["desc: string", "prompt: string", "lines: array", "links?: array"],
        "ark template 23: a list of lines, each with an optional link",
    )
    .set_into_module(m, |desc: Dynamic, prompt: Dynamic, lines: Dynamic, links: Dynamic| -> RhaiResult<Dynamic> {
        let w = "qq::ark_23";
        let ark = message::ark_23(&j(&desc, w)?, &j(&prompt, w)?, &list(&j(&lines, w)?), &list(&j(&links, w)?));
        Ok(seg("ark", ark))
    });
    documented("ark_23", &["desc: string", "prompt: string", "lines: array"], "ark template 23 without links")
        .set_into_module(m, |desc: Dynamic, prompt: Dynamic, lines: Dynamic| -> RhaiResult<Dynamic> {
            let w = "qq::ark_23";
            Ok(seg("ark", message::ark_23(&j(&desc, w)?, &j(&prompt, w)?, &list(&j(&lines, w)?), &[])))
        });
    documented(
        "ark_24",
        &["fields: map"],
        "ark template 24 (text and thumbnail): #{title, content, subtitle, link, image, desc, prompt}",
    )
    .set_into_module(m, |fields: Map| -> RhaiResult<Dynamic> {
        let Value::Object(f) = j(&fields.into(), "qq::ark_24")? else { unreachable!("a map is an object") };
        Ok(seg("ark", message::ark_24(&f)))
    });
    documented("ark_37", &["fields: map"], "ark template 37 (large picture): #{title, content, image, link, prompt}")
        .set_into_module(m, |fields: Map| -> RhaiResult<Dynamic> {
            let Value::Object(f) = j(&fields.into(), "qq::ark_37")? else { unreachable!("a map is an object") };
            Ok(seg("ark", message::ark_37(&f)))
        });
    documented("ark", &["template_id: int", "kv: array"], "any ark template: `[#{key, value}, ..]`").set_into_module(
        m,
        |template: rhai::INT, kv: Dynamic| -> RhaiResult<Dynamic> {
            Ok(seg("ark", json!({"template_id": template, "kv": j(&kv, "qq::ark")?})))
        },
    );
    documented(
        "embed",
        &["title: string", "prompt: string", "image: string", "lines: array"],
        "an embed: title, prompt, thumbnail and a field per line",
    )
    .set_into_module(m, |title: Dynamic, prompt: Dynamic, image: Dynamic, lines: Dynamic| -> RhaiResult<Dynamic> {
        let w = "qq::embed";
        Ok(seg("embed", message::embed(&j(&title, w)?, &j(&prompt, w)?, &j(&image, w)?, &list(&j(&lines, w)?))))
    });
    documented("media", &["file_info: string"], "media uploaded with qq::upload_media (sent with msg_type 7)")
        .set_into_module(m, |info: &str| seg("media", json!({ "file_info": info })));
    documented("reference", &["message_id: string"], "a reference to (quote of) a message")
        .set_into_module(m, |id: &str| seg("reference", json!({ "message_id": id })));
}

/// `qq::wait_for(scope, command_obj, timeout_secs)`: the next message of this bot in `scope`
/// (relative to the callback's event) that matches `command_obj` (`command`: a word or a list,
/// `regex`, `at`), taken from the handlers; at most `timeout` seconds, never past the callback's
/// budget.
fn wait_for(services: &Services, args: &[Dynamic]) -> RhaiResult<Dynamic> {
    let what = "qq::wait_for";
    let scope =
        args[0].clone().into_string().map_err(|t| script_error(format!("{what}: scope must be a string, got {t}")))?;
    let command = match args.get(1).map(|a| j(a, what)).transpose()? {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(script_error(format!("{what}: command_obj must be a map, got {other}"))),
    };
    let timeout = match args.get(2).map(|a| j(a, what)).transpose()? {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(secs) if secs > 0.0 => Some(Duration::from_secs_f64(secs.min(1e6))),
            Some(_) => None,
            None => return Err(script_error(format!("{what}: timeout must be seconds, got {v}"))),
        },
    };
    let Some(current) = context::event() else {
        return Err(script_error(format!("{what}: only a callback that handles an event can wait for the next one")));
    };
    let same = |a: &Value, b: &Value| !a.is_null() && a == b;
    // A QQ event keeps its `d.guild_id` as `place` (other protocols' events have no guild).
    let guild = |e: &Event| if e.bot.protocol.namespace == "qq" { e.place.clone() } else { Value::Null };
    let in_scope: Box<dyn Fn(&Event) -> bool + Send + Sync> = {
        let c = current.clone();
        match scope.as_str() {
            "user" => Box::new(move |e| same(&e.user_id, &c.user_id)),
            "channel" | "group" | "chat" => Box::new(move |e| {
                same(&e.group_id, &c.group_id)
                    || (c.group_id.is_null() && e.group_id.is_null() && same(&e.user_id, &c.user_id))
            }),
            "guild" => Box::new(move |e| same(&guild(e), &guild(&c))),
            "global" => Box::new(|_| true),
            other => {
                return Err(script_error(format!(
                    "{what}: scope must be user, channel, group, guild or global, not {other:?}"
                )));
            }
        }
    };
    let words: Vec<String> = list(command.get("command").unwrap_or(&Value::Null))
        .iter()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect();
    let regex = match command.get("regex").and_then(Value::as_str) {
        Some(r) => Some(
            regex::RegexBuilder::new(r)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| script_error(format!("{what}: bad regex: {e}")))?,
        ),
        None => None,
    };
    let need_at = command.get("at").and_then(Value::as_bool).unwrap_or(false);
    let bot = current.bot.clone();
    let matches = move |e: &Event| {
        Arc::ptr_eq(&e.bot, &bot)
            && e.keys().iter().any(|k| k == "message")
            && in_scope(e)
            && (!need_at || e.at_me)
            && (words.is_empty()
                || words.iter().any(|w| e.text.trim_start().trim_start_matches('/').starts_with(w.as_str())))
            && regex.as_ref().is_none_or(|r| r.is_match(&e.text))
    };
    let limit = timeout.map_or(services.max_wait, |t| t.min(services.max_wait));
    let got = super::wait_event(matches, limit).map_err(|e| script_error(format!("{what}: {e}")))?;
    match got {
        Some(ev) => Ok(Dynamic::from(ev)),
        None => Err(call_error(CallError::Timeout { action: what.into(), timeout: limit })),
    }
}
