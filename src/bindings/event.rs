//! The `Event` type scripts receive. Fields are converted to Rhai values only when a script
//! reads them, so a handler that looks at `ev.text` alone never pays for `ev.raw`.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, FuncRegistration, Module};

use super::Services;
use super::convert::{call_error, to_dynamic, to_json};
use crate::event::Event;

/// The script-side handle of an event.
pub type EventRef = Arc<Event>;

/// `Event`'s properties and methods, the same for every script (built once).
pub fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    macro_rules! get {
        ($name:literal, |$e:ident| $body:expr) => {
            FuncRegistration::new_getter($name)
                .in_global_namespace()
                .set_into_module(&mut m, |$e: &mut EventRef| $body);
        };
    }
    get!("name", |e| e.name.clone());
    get!("protocol", |e| e.bot.protocol.name);
    get!("bot", |e| e.bot.name.clone());
    get!("text", |e| e.text.clone());
    get!("user_id", |e| to_dynamic(&e.user_id));
    get!("group_id", |e| to_dynamic(&e.group_id));
    get!("message_id", |e| to_dynamic(&e.message_id));
    get!("segments", |e| match e.segments() {
        serde_json::Value::Null => Dynamic::from_array(Vec::new()),
        segs => to_dynamic(segs),
    });
    get!("sender", |e| to_dynamic(e.sender()));
    get!("raw", |e| to_dynamic(&e.raw));
    get!("is_group", |e| !e.group_id.is_null());
    get!("at_me", |e| e.at_me);
    get!("reply_to", |e| to_dynamic(&e.reply_to));
    get!("self_id", |e| match e.bot.self_id() {
        Some(crate::bot::BotId::Number(n)) => Dynamic::from_int(n),
        Some(crate::bot::BotId::Text(s)) => Dynamic::from(s.to_string()),
        None => Dynamic::UNIT,
    });
    FuncRegistration::new_index_getter()
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef, key: &str| {
            to_dynamic(e.raw.get(key).unwrap_or(&serde_json::Value::Null))
        });
    FuncRegistration::new("to_string")
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef| format!("Event({})", e.name));
    FuncRegistration::new("to_debug")
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef| format!("Event({}) {}", e.name, e.raw));

    let quick_services = services.clone();
    FuncRegistration::new("quick").in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, ops: rhai::Map| -> Result<(), Box<EvalAltResult>> {
            let ops = match to_json(&ops.into(), "ev.quick")? {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            // In the HTTP POST answer when the transport can still give one; else as an action.
            if crate::adapter::onebot11::quick::slot(e).is_some_and(|q| q.add(ops.clone())) {
                return Ok(());
            }
            let params = serde_json::json!({"context": e.raw, "operation": ops});
            quick_services.call_script(&e.bot, ".handle_quick_operation", params).map(|_| ())
        },
    );
    // Replies are the hot path: `reply` sends and returns at once (a failure is logged with the
    // script and callback); `reply_wait` waits, returns the result and raises on failure.
    let send_services = services.clone();
    FuncRegistration::new("reply").in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, message: Dynamic| -> Result<(), Box<EvalAltResult>> {
            let message = to_json(&message, "ev.reply")?;
            let (action, params) = crate::adapter::reply_call(e, message).map_err(call_error)?;
            send_services.send_logged(&e.bot, action, params);
            Ok(())
        },
    );
    FuncRegistration::new("reply_wait").in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, message: Dynamic| -> Result<Dynamic, Box<EvalAltResult>> {
            let message = to_json(&message, "ev.reply_wait")?;
            let (action, params) = crate::adapter::reply_call(e, message).map_err(call_error)?;
            services.call_script(&e.bot, action, params)
        },
    );
    m
}
