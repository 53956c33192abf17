//! Official-platform dispatch payloads (`{id, op: 0, d, s, t}`) as [`Event`]s, and the intents
//! that subscribe to the events scripts listen for.
//!
//! Names are `qq.<t>` (`qq.GROUP_AT_MESSAGE_CREATE`), with the cross-protocol aliases: group
//! messages (`GROUP_AT_MESSAGE_CREATE`, and `GROUP_MESSAGE_CREATE`, which carries every group
//! message and repeats the @ one) are `message.group`, delivered once; C2C messages are
//! `message.private`; guild channel messages `message.guild`; guild direct messages
//! `message.direct`; group member changes `member.increase` / `member.decrease`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::events::EVENTS;
use crate::bot::Bot;
use crate::event::{Event, Identity, name_part, normalize_name};

/// A payload that is not a dispatch event this runtime can read: logged, not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed official-platform event: {0}")]
pub struct Malformed(String);

/// Turns a dispatch payload into an [`Event`] (`via` names the connection).
pub fn decode_event(bot: &Arc<Bot>, payload: Value, via: u64) -> Result<Event, Malformed> {
    let kind = name_part(&payload, "t").map_err(Malformed)?.to_owned();
    // Borrowed, not copied: `payload` moves into the event whole once the fields are read.
    let empty = json!({});
    let d = payload.get("d").unwrap_or(&empty);
    if !d.is_object() {
        return Err(Malformed(format!("`{kind}` has a d that is not an object")));
    }
    let s = |pointer: &str| d.pointer(pointer).filter(|v| !v.is_null()).cloned();
    let mut aliases: Vec<&str> = Vec::new();
    let mut group_id = s("/group_openid");
    let mut at_me = false;
    let is_message = matches!(
        kind.as_str(),
        "C2C_MESSAGE_CREATE"
            | "GROUP_AT_MESSAGE_CREATE"
            | "GROUP_MESSAGE_CREATE"
            | "AT_MESSAGE_CREATE"
            | "MESSAGE_CREATE"
            | "DIRECT_MESSAGE_CREATE"
    );
    let user_id = match kind.as_str() {
        "C2C_MESSAGE_CREATE" => {
            aliases.extend(["message", "message.private"]);
            s("/author/user_openid")
        }
        "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE" => {
            at_me = kind == "GROUP_AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.group"]);
            s("/author/member_openid")
        }
        "AT_MESSAGE_CREATE" | "MESSAGE_CREATE" => {
            group_id = s("/channel_id");
            at_me = kind == "AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.guild"]);
            s("/author/id")
        }
        "DIRECT_MESSAGE_CREATE" => {
            aliases.extend(["message", "message.direct"]);
            s("/author/id")
        }
        "GROUP_MEMBER_ADD" => {
            aliases.push("member.increase");
            s("/member_openid")
        }
        "GROUP_MEMBER_REMOVE" => {
            aliases.push("member.decrease");
            s("/member_openid")
        }
        _ => s("/user_openid").or_else(|| s("/openid")).or_else(|| s("/user_id")).or_else(|| s("/author_id")),
    };
    let message_id = if is_message { s("/id") } else { None };
    if is_message && (user_id.is_none() || message_id.is_none()) {
        return Err(Malformed(format!("`{kind}` has no author or id")));
    }
    let content = d.get("content").and_then(Value::as_str).unwrap_or_default();
    let text = if is_message { strip_mention(content).trim().to_owned() } else { String::new() };
    let segments = is_message.then(|| segments(&text, d));
    let identity = identity(&payload, &kind, d);
    let mut ev = Event::new(bot.clone(), format!("qq.{kind}"), &aliases, payload);
    ev.text = text;
    ev.at_me = at_me;
    ev.user_id = user_id.unwrap_or(Value::Null);
    ev.group_id = group_id.unwrap_or(Value::Null);
    ev.message_id = message_id.unwrap_or(Value::Null);
    ev.identity = identity;
    ev.via = via;
    if let Some(segments) = segments {
        ev.parsed_segments = Some(segments);
        ev.sender_at = "/d/author";
    }
    Ok(ev)
}

/// `content` without the leading @-mention of the bot (`<@!123>` in guilds; group @ messages
/// start with a blank where the mention was).
fn strip_mention(content: &str) -> &str {
    let trimmed = content.trim_start();
    match trimmed.strip_prefix("<@") {
        Some(rest) => rest.split_once('>').map_or(trimmed, |(_, after)| after),
        None => trimmed,
    }
}

/// The text and the attachments as segments.
fn segments(text: &str, d: &Value) -> Value {
    let mut out = Vec::new();
    if !text.is_empty() {
        out.push(json!({"type": "text", "data": {"text": text}}));
    }
    for a in d.get("attachments").and_then(Value::as_array).into_iter().flatten() {
        let kind = match a.get("content_type").and_then(Value::as_str).unwrap_or_default() {
            t if t.starts_with("image") => "image",
            t if t.starts_with("video") => "video",
            t if t.starts_with("voice") || t.starts_with("audio") => "record",
            _ => "file",
        };
        out.push(json!({"type": kind, "data": a}));
    }
    Value::Array(out)
}

/// Group messages by their type and the message's id (the @ copy and the plain copy are two
/// events of one message: the adapter delivers the second under its native name only); any
/// other event by the payload's event id (the platform may push one event twice).
fn identity(payload: &Value, kind: &str, d: &Value) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let key = if matches!(kind, "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE") {
        (kind, d.get("id"))
    } else {
        ("qq-event", payload.get("id"))
    };
    match key.1.and_then(Value::as_str) {
        Some(id) => {
            (key.0, id).hash(&mut h);
            Identity::Id(h.finish())
        }
        None => Identity::None,
    }
}

/// The intents bitmask for handlers registered under `names` (normalised event names, as
/// scripts write them): each event whose native name or alias a handler catches adds its bit.
pub fn intents_for(names: &[String]) -> u32 {
    let aliases = |event: &str| -> &'static [&'static str] {
        match event {
            "qq.C2C_MESSAGE_CREATE" => &["message", "message.private"],
            "qq.GROUP_AT_MESSAGE_CREATE" | "qq.GROUP_MESSAGE_CREATE" => &["message", "message.group"],
            "qq.AT_MESSAGE_CREATE" | "qq.MESSAGE_CREATE" => &["message", "message.guild"],
            "qq.DIRECT_MESSAGE_CREATE" => &["message", "message.direct"],
            "qq.GROUP_MEMBER_ADD" => &["member.increase"],
            "qq.GROUP_MEMBER_REMOVE" => &["member.decrease"],
            _ => &[],
        }
    };
    let mut bits = 0;
    for ev in EVENTS {
        let Some(bit) = ev.intent_bit else { continue };
        let native = normalize_name(ev.name);
        let caught = names.iter().any(|n| {
            native == *n
                || native.starts_with(&format!("{n}_"))
                || aliases(ev.name).iter().any(|a| normalize_name(a) == *n)
        });
        if caught {
            bits |= 1 << bit;
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> Arc<Bot> {
        Bot::detached("qq", &super::super::PROTOCOL)
    }

    fn group_at(event_id: &str, message_id: &str) -> Value {
        json!({"op": 0, "s": 3, "id": event_id, "t": "GROUP_AT_MESSAGE_CREATE", "d": {
            "id": message_id, "content": " /echo hi ", "timestamp": "2026-11-30T00:00:00+08:00",
            "group_openid": "G_OPENID", "author": {"id": "A", "member_openid": "M_OPENID", "member_role": "admin"},
            "attachments": [{"content_type": "image/png", "url": "https://x/y.png", "filename": "y.png"}]}})
    }

    #[test]
    fn a_group_at_message_has_its_names_and_fields() {
        let ev = decode_event(&bot(), group_at("GROUP_AT_MESSAGE_CREATE:1", "MSG1"), 1).unwrap();
        assert_eq!(ev.keys(), ["qq_group_at_message_create", "qq", "message", "message_group"]);
        assert_eq!((ev.text.as_str(), ev.at_me), ("/echo hi", true));
        assert_eq!(
            (&ev.user_id, &ev.group_id, &ev.message_id),
            (&json!("M_OPENID"), &json!("G_OPENID"), &json!("MSG1"))
        );
        assert_eq!(ev.segments()[1]["type"], "image");
        assert_eq!(ev.sender()["member_role"], "admin");
    }

    #[test]
    fn the_at_copy_and_the_plain_copy_of_a_group_message_are_two_events() {
        let at = decode_event(&bot(), group_at("GROUP_AT_MESSAGE_CREATE:1", "MSG1"), 1).unwrap();
        let mut plain = group_at("GROUP_MESSAGE_CREATE:9", "MSG1");
        plain["t"] = json!("GROUP_MESSAGE_CREATE");
        let plain = decode_event(&bot(), plain, 1).unwrap();
        assert_ne!(at.identity, plain.identity, "each reaches its own handlers");
        assert!(!plain.at_me);
        assert_eq!(plain.without_aliases().keys(), ["qq_group_message_create", "qq"]);
        let again = decode_event(&bot(), group_at("GROUP_AT_MESSAGE_CREATE:1", "MSG1"), 2).unwrap();
        assert_eq!(at.identity, again.identity, "the same event pushed twice is one");
    }

    #[test]
    fn guild_mentions_are_stripped_and_broken_payloads_refused() {
        let payload = json!({"op": 0, "id": "E", "t": "AT_MESSAGE_CREATE", "d": {
            "id": "M", "content": "<@!1234> hello", "channel_id": "C", "guild_id": "G", "author": {"id": "U"}}});
        let ev = decode_event(&bot(), payload, 1).unwrap();
        assert_eq!((ev.text.as_str(), &ev.group_id), ("hello", &json!("C")));
        assert!(decode_event(&bot(), json!({"op": 0, "t": "C2C_MESSAGE_CREATE", "d": {"content": "x"}}), 1).is_err());
        assert!(decode_event(&bot(), json!({"op": 0, "t": "A.B"}), 1).is_err());
    }

    #[test]
    fn intents_follow_the_handlers() {
        let names = |ns: &[&str]| ns.iter().map(|n| normalize_name(n)).collect::<Vec<_>>();
        // GROUP_AND_C2C_EVENT is bit 25; PUBLIC_GUILD_MESSAGES bit 30.
        assert_eq!(intents_for(&names(&["message.group"])), 1 << 25);
        assert_eq!(intents_for(&names(&["message"])) & (1 << 30), 1 << 30);
        assert_eq!(intents_for(&names(&["qq.GUILD_CREATE"])), 1);
        assert_eq!(intents_for(&names(&["notice"])), 0);
    }
}
