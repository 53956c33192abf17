//! The `Event` type scripts receive. Fields are converted to Rhai values only when a script
//! reads them, so a handler that looks at `ev.text` alone never pays for `ev.raw()`.

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, FuncRegistration, Module};

use super::convert::{call_error, to_dynamic, to_json};
use super::{Services, documented};
use crate::event::Event;

/// A script's message for `bot`, checked where the protocol takes only segments (the official
/// platform also takes a map of its own message fields).
pub(crate) fn message_for(
    bot: &crate::bot::Bot,
    value: &Dynamic,
    what: &str,
) -> Result<serde_json::Value, Box<EvalAltResult>> {
    let message = to_json(value, what)?;
    check_message_for(bot, &message, what)?;
    Ok(message)
}

/// Checks `message` where `bot`'s protocol takes only segments (not on the official platform,
/// which also takes a map of its own message fields).
pub(crate) fn check_message_for(
    bot: &crate::bot::Bot,
    message: &serde_json::Value,
    what: &str,
) -> Result<(), Box<EvalAltResult>> {
    if bot.protocol.namespace == "qq" {
        return Ok(());
    }
    crate::api::check_message(message).map_err(|e| super::convert::script_error(format!("{what}: {e}")))
}

/// The script-side handle of an event.
pub type EventRef = Arc<Event>;

/// `Event`'s properties and methods, the same for every script (built once).
pub fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    macro_rules! get {
        ($name:literal, $doc:literal, |$e:ident| $body:expr) => {
            FuncRegistration::new_getter($name)
                .with_params_info(["ev: Event"])
                .with_comments([concat!("/// ", $doc)])
                .in_global_namespace()
                .set_into_module(&mut m, |$e: &mut EventRef| $body);
        };
    }
    get!("name", "the event's native dotted name, e.g. `message.group.normal`", |e| e.name.clone());
    get!("protocol", "the protocol of the bot that delivered it (`console`, `onebot11`, ...)", |e| e.bot.protocol.name);
    get!("bot", "the configured name of the bot that delivered it", |e| e.bot.name.clone());
    get!("text", "a message's plain text, trimmed (empty for other events)", |e| e.text.clone());
    get!("user_id", "the sender or subject user, `()` when none", |e| to_dynamic(&e.user_id));
    get!("group_id", "the group, `()` outside groups", |e| to_dynamic(&e.group_id));
    get!("message_id", "the message's id, `()` when none", |e| to_dynamic(&e.message_id));
    get!("segments", "a message's segments as `[#{type, data}]`", |e| match e.segments() {
        serde_json::Value::Null => Dynamic::from_array(Vec::new()),
        segs => to_dynamic(segs),
    });
    get!("sender", "the sender as the protocol describes it (nickname, card, role, ...)", |e| to_dynamic(e.sender()));
    get!("raw", "the event exactly as received, as a map", |e| to_dynamic(e.raw()));
    get!("is_group", "whether the event happened in a group", |e| !e.group_id.is_null());
    get!("at_me", "whether the message @-mentions the bot", |e| e.at_me);
    get!(
        "role",
        "the sender's role in the group: `owner`, `admin` or `member` (`()` when the event does not say)",
        |e| { e.role().map_or(Dynamic::UNIT, |r| r.into()) }
    );
    get!("is_admin", "whether the sender is a group admin or owner (or a superuser)", |e| e.is_superuser()
        || matches!(e.role(), Some("admin" | "owner")));
    get!("is_owner", "whether the sender owns the group (or is a superuser)", |e| e.is_superuser()
        || e.role() == Some("owner"));
    get!("is_superuser", "whether the sender is one of the bot's `superusers` (config)", |e| e.is_superuser());
    get!("reply_to", "the id of the message this one replies to, `()` when none", |e| to_dynamic(&e.reply_to));
    get!("self_id", "the account id of the bot that delivered it", |e| match e.bot.self_id() {
        Some(crate::bot::BotId::Number(n)) => Dynamic::from_int(n),
        Some(crate::bot::BotId::Text(s)) => Dynamic::from(s.to_string()),
        None => Dynamic::UNIT,
    });
    FuncRegistration::new_index_getter()
        .with_params_info(["ev: Event", "key: string"])
        .with_comments(["/// `ev[\"key\"]`: a field of the raw event, `()` when absent"])
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef, key: &str| {
            to_dynamic(e.raw().get(key).unwrap_or(&serde_json::Value::Null))
        });
    documented("to_string", &["ev: Event"], "`Event(name)`, for printing")
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef| format!("Event({})", e.name));
    documented("to_debug", &["ev: Event"], "the event's name and raw JSON, for debugging")
        .in_global_namespace()
        .set_into_module(&mut m, |e: &mut EventRef| format!("Event({}) {}", e.name, e.raw()));

    let quick_services = services.clone();
    let doc = "OneBot HTTP POST: answer the event in the HTTP response (`#{reply, at_sender, delete, kick, ban, approve, ...}`), or by `.handle_quick_operation` when too late";
    documented("quick", &["ev: Event", "operations: map"], doc).in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, ops: rhai::Map| -> Result<(), Box<EvalAltResult>> {
            let ops = match to_json(&ops.into(), "ev.quick")? {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            };
            // The answer leaves when the event is dropped, without waiting for the store: it
            // may carry what the callback wrote, so that is made durable now.
            quick_services.commit_before_sending("ev.quick").map_err(call_error)?;
            // In the HTTP POST answer when the transport can still give one; else as an action.
            if crate::adapter::onebot11::quick::slot(e).is_some_and(|q| q.add(ops.clone())) {
                return Ok(());
            }
            let params = serde_json::json!({"context": e.raw(), "operation": ops});
            quick_services.call_script(&e.bot, ".handle_quick_operation", params).map(|_| ())
        },
    );
    // Replies are the hot path: `reply` sends and returns at once (a failure is logged with the
    // script and callback); `reply_wait` waits, returns the result and raises on failure.
    let send_services = services.clone();
    let doc = "answer where the event came from (group or private chat); returns at once, a failure is logged";
    documented("reply", &["ev: Event", "message: message"], doc).in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, message: Dynamic| -> Result<(), Box<EvalAltResult>> {
            let message = message_for(&e.bot, &message, "ev.reply")?;
            let (action, params) = crate::adapter::reply_call(e, message).map_err(call_error)?;
            send_services.send_logged(&e.bot, action, params, e.conversation());
            Ok(())
        },
    );
    // Conversations: the same user's next message in the same chat goes to the waiting callback.
    let prompt_services = services.clone();
    let next_services = services.clone();
    let wait_next =
        move |services: &Services, e: &EventRef, timeout_ms: rhai::INT| -> Result<Dynamic, Box<EvalAltResult>> {
            let timeout = std::time::Duration::from_millis(timeout_ms.max(0) as u64).min(services.max_wait);
            let (bot, chat, user) = (e.bot.clone(), e.conversation(), e.user_id.clone());
            let next = move |n: &Event| {
                Arc::ptr_eq(&n.bot, &bot)
                    && n.conversation() == chat
                    && crate::event::same_id(&n.user_id, &user)
                    && n.keys().iter().any(|k| k == "message")
            };
            Ok(super::wait_event(next, timeout)?.map_or(Dynamic::UNIT, Dynamic::from))
        };
    let wait = Arc::new(wait_next);
    let w = wait.clone();
    let doc =
        "send `text`, then wait for the same user's next message in this chat: that event, or `()` after `timeout_ms`";
    documented("prompt", &["ev: Event", "text: message", "timeout_ms: int"], doc)
        .in_global_namespace()
        .set_into_module(
            &mut m,
            move |e: &mut EventRef, text: Dynamic, timeout_ms: rhai::INT| -> Result<Dynamic, Box<EvalAltResult>> {
                let message = message_for(&e.bot, &text, "ev.prompt")?;
                let (action, params) = crate::adapter::reply_call(e, message).map_err(call_error)?;
                prompt_services.send_logged(&e.bot, action, params, e.conversation());
                w(&prompt_services, e, timeout_ms)
            },
        );
    let doc = "wait for the same user's next message in this chat: that event, or `()` after `timeout_ms`";
    documented("next_message", &["ev: Event", "timeout_ms: int"], doc)
        .in_global_namespace()
        .set_into_module(&mut m, move |e: &mut EventRef, timeout_ms: rhai::INT| wait(&next_services, e, timeout_ms));
    let doc = "answer like `reply`, wait for the result and return it; a failure raises a catchable error";
    documented("reply_wait", &["ev: Event", "message: message"], doc).in_global_namespace().set_into_module(
        &mut m,
        move |e: &mut EventRef, message: Dynamic| -> Result<Dynamic, Box<EvalAltResult>> {
            let message = message_for(&e.bot, &message, "ev.reply_wait")?;
            let (action, params) = crate::adapter::reply_call(e, message).map_err(call_error)?;
            services.call_script_in_order(&e.bot, e.conversation(), action, params)
        },
    );
    m
}
