//! `chat::` — the cross-protocol verbs: the same call works on the console, OneBot 11 and
//! Milky (each adapter maps a verb to its own action), so a script that uses only these,
//! `ev.*` and `msg::` runs on any protocol. Inside a callback they go to the bot that delivered
//! the event; elsewhere to the only bot (or the one picked with `bot(..)`).
//!
//! | verb | OneBot 11 | Milky |
//! |---|---|---|
//! | `send_group(group_id, message)` | `send_group_msg` | `send_group_message` |
//! | `send_private(user_id, message)` | `send_private_msg` | `send_private_message` |
//! | `recall_group(group_id, message_id)` | `delete_msg` | `recall_group_message` |
//! | `recall_private(user_id, message_id)` | `delete_msg` | `recall_private_message` |
//! | `mute(group_id, user_id, seconds)` / `unmute(..)` | `set_group_ban` | `set_group_member_mute` |
//! | `kick(group_id, user_id)` | `set_group_kick` | `kick_group_member` |
//! | `member_info(group_id, user_id)` | `get_group_member_info` | `get_group_member_info` |
//! | `approve(ev)` / `reject(ev)` | `set_friend_add_request`, `set_group_add_request` | `accept_`/`reject_friend_request`, `_group_request`, `_group_invitation` |

use std::sync::Arc;

use rhai::{Dynamic, EvalAltResult, Module, NativeCallContext};

use super::convert::{at_call, call_error, script_error, to_json};
use super::event::EventRef;
use super::{Services, documented};
use crate::adapter::{Verb, verb_call};
use crate::bot::Bot;
use crate::script::context;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The bot a verb goes to: the event's, or else the only configured one.
fn pick(services: &Services, verb: &str) -> RhaiResult<Arc<Bot>> {
    if let Some(bot) = context::event_bot() {
        return Ok(bot);
    }
    match services.bots.as_slice() {
        [bot] => Ok(bot.clone()),
        [] => Err(script_error(format!("{verb}: no bot is configured"))),
        _ => Err(script_error(format!(
            "{verb}: several bots are configured; outside an event callback pick one with bot(\"name\")"
        ))),
    }
}

fn run(services: &Services, ctx: &NativeCallContext, verb: Verb<'_>) -> RhaiResult<Dynamic> {
    let go = || {
        let bot = pick(services, verb.name())?;
        if let Verb::SendGroup { message, .. } | Verb::SendPrivate { message, .. } = &verb {
            super::event::check_message_for(&bot, message, verb.name())?;
        }
        let (action, params) = verb_call(&bot, &verb).map_err(call_error)?;
        // A send goes after the replies already on their way to the same chat.
        let chat = match &verb {
            Verb::SendGroup { group, .. } => {
                Some(crate::event::conversation_key(&bot, group, &serde_json::Value::Null))
            }
            Verb::SendPrivate { user, .. } => {
                Some(crate::event::conversation_key(&bot, &serde_json::Value::Null, user))
            }
            _ => None,
        };
        match chat {
            Some(order) => services.call_script_in_order(&bot, order, action, params),
            None => services.call_script(&bot, action, params),
        }
    };
    go().map_err(|e| at_call(e, ctx))
}

fn json(value: &Dynamic, what: &str) -> RhaiResult<serde_json::Value> {
    to_json(value, what)
}

/// Builds the `chat` module.
pub fn module(services: Arc<Services>) -> Module {
    let mut m = Module::new();
    let s = services.clone();
    documented("send_group", &["group_id: int", "message: message"], "send a message to a group, on any protocol")
        .set_into_module(&mut m, move |ctx: NativeCallContext, group: Dynamic, message: Dynamic| {
            let verb = Verb::SendGroup {
                group: json(&group, "chat::send_group")?,
                message: json(&message, "chat::send_group")?,
            };
            run(&s, &ctx, verb)
        });
    let s = services.clone();
    documented("send_private", &["user_id: int", "message: message"], "send a message to a user, on any protocol")
        .set_into_module(&mut m, move |ctx: NativeCallContext, user: Dynamic, message: Dynamic| {
            let verb = Verb::SendPrivate {
                user: json(&user, "chat::send_private")?,
                message: json(&message, "chat::send_private")?,
            };
            run(&s, &ctx, verb)
        });
    let s = services.clone();
    documented("recall_group", &["group_id: int", "message_id: any"], "recall a message of a group (`ev.message_id`)")
        .set_into_module(&mut m, move |ctx: NativeCallContext, group: Dynamic, id: Dynamic| {
            let verb =
                Verb::RecallGroup { group: json(&group, "chat::recall_group")?, id: json(&id, "chat::recall_group")? };
            run(&s, &ctx, verb)
        });
    let s = services.clone();
    documented("recall_private", &["user_id: int", "message_id: any"], "recall a message of a private chat")
        .set_into_module(&mut m, move |ctx: NativeCallContext, user: Dynamic, id: Dynamic| {
            let verb = Verb::RecallPrivate {
                user: json(&user, "chat::recall_private")?,
                id: json(&id, "chat::recall_private")?,
            };
            run(&s, &ctx, verb)
        });
    let s = services.clone();
    documented("mute", &["group_id: int", "user_id: int", "seconds: int"], "mute a group member for `seconds`")
        .set_into_module(&mut m, move |ctx: NativeCallContext, group: Dynamic, user: Dynamic, seconds: rhai::INT| {
            let verb = Verb::Mute { group: json(&group, "chat::mute")?, user: json(&user, "chat::mute")?, seconds };
            run(&s, &ctx, verb)
        });
    let s = services.clone();
    documented("unmute", &["group_id: int", "user_id: int"], "lift a group member's mute").set_into_module(
        &mut m,
        move |ctx: NativeCallContext, group: Dynamic, user: Dynamic| {
            let verb =
                Verb::Mute { group: json(&group, "chat::unmute")?, user: json(&user, "chat::unmute")?, seconds: 0 };
            run(&s, &ctx, verb)
        },
    );
    let s = services.clone();
    documented("kick", &["group_id: int", "user_id: int"], "remove a member from a group").set_into_module(
        &mut m,
        move |ctx: NativeCallContext, group: Dynamic, user: Dynamic| {
            let verb = Verb::Kick { group: json(&group, "chat::kick")?, user: json(&user, "chat::kick")? };
            run(&s, &ctx, verb)
        },
    );
    let s = services.clone();
    documented(
        "member_info",
        &["group_id: int", "user_id: int"],
        "a group member's information, as the protocol gives it",
    )
    .set_into_module(&mut m, move |ctx: NativeCallContext, group: Dynamic, user: Dynamic| {
        let verb =
            Verb::MemberInfo { group: json(&group, "chat::member_info")?, user: json(&user, "chat::member_info")? };
        run(&s, &ctx, verb)
    });
    for (name, approve, doc) in [
        ("approve", true, "approve the friend or group request `ev` is about"),
        ("reject", false, "reject the friend or group request `ev` is about"),
    ] {
        let s = services.clone();
        documented(name, &["ev: Event"], doc).set_into_module(&mut m, move |ctx: NativeCallContext, ev: EventRef| {
            run(&s, &ctx, Verb::Answer { event: &ev, approve })
        });
    }
    m
}
