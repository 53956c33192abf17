//! The `Event` type scripts receive. Fields are converted to Rhai values only when a script
//! reads them, so a handler that looks at `ev.text` alone never pays for `ev.raw`.

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult};

use super::Services;
use super::convert::{call_error, to_dynamic, to_json};
use crate::event::Event;

/// The script-side handle of an event.
pub type EventRef = Arc<Event>;

/// Registers `Event` and its properties on `engine`.
pub fn register(engine: &mut Engine, services: Arc<Services>) {
    engine
        .register_type_with_name::<EventRef>("Event")
        .register_get("name", |e: &mut EventRef| e.name.clone())
        .register_get("protocol", |e: &mut EventRef| e.bot.protocol.as_str())
        .register_get("bot", |e: &mut EventRef| e.bot.name.clone())
        .register_get("text", |e: &mut EventRef| e.text.clone())
        .register_get("user_id", |e: &mut EventRef| to_dynamic(&e.user_id))
        .register_get("group_id", |e: &mut EventRef| to_dynamic(&e.group_id))
        .register_get("message_id", |e: &mut EventRef| to_dynamic(&e.message_id))
        .register_get("segments", |e: &mut EventRef| match e.segments() {
            serde_json::Value::Null => Dynamic::from_array(Vec::new()),
            segs => to_dynamic(segs),
        })
        .register_get("sender", |e: &mut EventRef| to_dynamic(e.sender()))
        .register_get("raw", |e: &mut EventRef| to_dynamic(&e.raw))
        .register_get("is_group", |e: &mut EventRef| !e.group_id.is_null())
        .register_get("at_me", |e: &mut EventRef| e.at_me)
        .register_get("reply_to", |e: &mut EventRef| to_dynamic(&e.reply_to))
        .register_get("self_id", |e: &mut EventRef| e.bot.self_id.load(std::sync::atomic::Ordering::Relaxed))
        .register_indexer_get(|e: &mut EventRef, key: &str| {
            to_dynamic(e.raw.get(key).unwrap_or(&serde_json::Value::Null))
        })
        .register_fn("to_string", |e: &mut EventRef| format!("Event({})", e.name))
        .register_fn("to_debug", |e: &mut EventRef| format!("Event({}) {}", e.name, e.raw));
    let quick_services = services.clone();
    engine.register_fn("quick", move |e: &mut EventRef, ops: rhai::Map| -> Result<(), Box<EvalAltResult>> {
        let ops = match to_json(&ops.into(), "ev.quick")? {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        // In the HTTP POST answer when the transport can still give one; else as an action.
        if e.quick.as_ref().is_some_and(|q| q.add(ops.clone())) {
            return Ok(());
        }
        let params = serde_json::json!({"context": e.raw, "operation": ops});
        quick_services.call_blocking(&e.bot, ".handle_quick_operation", params).map(|_| ()).map_err(call_error)
    });
    engine.register_fn("reply", move |e: &mut EventRef, message: Dynamic| -> Result<Dynamic, Box<EvalAltResult>> {
        let message = to_json(&message, "ev.reply")?;
        let (action, params) = e.bot.reply_call(e, message).map_err(call_error)?;
        services.call_blocking(&e.bot, action, params).map(|v| to_dynamic(&v)).map_err(call_error)
    });
}
