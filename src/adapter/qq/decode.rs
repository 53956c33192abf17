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
use crate::event::{Event, Identity, Raw, name_part, normalize_name};

/// A payload that is not a dispatch event this runtime can read: logged, not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed official-platform event: {0}")]
pub struct Malformed(String);

/// Turns a dispatch payload into an [`Event`] (`via` names the connection).
pub fn decode_event(bot: &Arc<Bot>, payload: Value, via: u64) -> Result<Event, Malformed> {
    let head = crate::adapter::head::pick(&payload, &HEAD).map_or(Value::Null, Value::Object);
    decode(bot, head, payload.into(), via)
}

/// Reads a payload's [`HEAD`] fields and nothing else; `None` when it is JSON but not an object.
pub fn read_head(payload: &[u8]) -> serde_json::Result<Option<Value>> {
    Ok(crate::adapter::head::head(payload, &HEAD)?.map(Value::Object))
}

/// The fields of a gateway payload that the socket and decoding read. The rest (the author's
/// name and avatar, a guild member's roles, mentions...) is parsed only if a script asks.
pub static HEAD: crate::adapter::head::Keys<'_> = crate::adapter::head::Keys::new(&[
    "op",
    "s",
    "t",
    "id",
    "d/heartbeat_interval",
    "d/session_id",
    "d/id",
    "d/content",
    "d/timestamp",
    "d/group_openid",
    "d/channel_id",
    "d/guild_id",
    "d/member_openid",
    "d/user_openid",
    "d/openid",
    "d/user_id",
    "d/author_id",
    "d/author/id",
    "d/author/user_openid",
    "d/author/member_openid",
]);

/// Decodes a dispatch payload from its [`HEAD`] fields (`head`) and the whole of it (`raw`).
pub fn decode(bot: &Arc<Bot>, mut head: Value, raw: Raw, via: u64) -> Result<Event, Malformed> {
    let kind = name_part(&head, "t").map_err(Malformed)?.to_owned();
    if !head.get("d").is_none_or(Value::is_object) {
        return Err(Malformed(format!("`{kind}` has a d that is not an object")));
    }
    let identity = identity(&head, &kind, head.get("d").unwrap_or(&Value::Null));
    // The head is this event's own: the fields the event keeps are moved out of it, not copied.
    let mut d = match head.get_mut("d").map(Value::take) {
        Some(Value::Object(d)) => d,
        _ => serde_json::Map::new(),
    };
    // A member of `d`, by its steps (`["author", "id"]`), when it is there and not null.
    let mut s = |steps: &[&str]| {
        let (last, outer) = steps.split_last()?;
        let mut object = &mut d;
        for step in outer {
            object = object.get_mut(*step)?.as_object_mut()?;
        }
        object.get_mut(*last).map(Value::take).filter(|v| !v.is_null())
    };
    let mut aliases: Vec<&str> = Vec::new();
    let mut group_id = s(&["group_openid"]);
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
            s(&["author", "user_openid"])
        }
        "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE" => {
            at_me = kind == "GROUP_AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.group"]);
            s(&["author", "member_openid"])
        }
        "AT_MESSAGE_CREATE" | "MESSAGE_CREATE" => {
            group_id = s(&["channel_id"]);
            at_me = kind == "AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.guild"]);
            s(&["author", "id"])
        }
        "DIRECT_MESSAGE_CREATE" => {
            aliases.extend(["message", "message.direct"]);
            s(&["author", "id"])
        }
        "GROUP_MEMBER_ADD" => {
            aliases.push("member.increase");
            s(&["member_openid"])
        }
        "GROUP_MEMBER_REMOVE" => {
            aliases.push("member.decrease");
            s(&["member_openid"])
        }
        _ => s(&["user_openid"]).or_else(|| s(&["openid"])).or_else(|| s(&["user_id"])).or_else(|| s(&["author_id"])),
    };
    let message_id = if is_message { s(&["id"]) } else { None };
    if is_message && (user_id.is_none() || message_id.is_none()) {
        return Err(Malformed(format!("`{kind}` has no author or id")));
    }
    let place = s(&["guild_id"]);
    let content = d.get("content").and_then(Value::as_str).unwrap_or_default();
    let text = if is_message { strip_mention(content).trim().to_owned() } else { String::new() };
    let time = d.get("timestamp").and_then(seconds);
    let mut ev = Event::new(bot.clone(), format!("qq.{kind}"), &aliases, raw);
    ev.text = text;
    ev.at_me = at_me;
    ev.user_id = user_id.unwrap_or(Value::Null);
    ev.group_id = group_id.unwrap_or(Value::Null);
    ev.message_id = message_id.unwrap_or(Value::Null);
    ev.place = place.unwrap_or(Value::Null);
    ev.time = time;
    ev.identity = identity;
    ev.via = via;
    if is_message {
        // Built when a script asks, on its worker: most callbacks never look.
        ev.segments_from = Some(message_segments);
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

/// A message event's text and attachments (`d.attachments`) as segments.
fn message_segments(ev: &Event) -> Value {
    segments(&ev.text, crate::event::path(ev.raw(), "/d/attachments").cloned())
}

/// The text and the attachments as segments.
fn segments(text: &str, attachments: Option<Value>) -> Value {
    let mut out = Vec::new();
    if !text.is_empty() {
        out.push(json!({"type": "text", "data": {"text": text}}));
    }
    let attachments = match attachments {
        Some(Value::Array(all)) => all,
        _ => Vec::new(),
    };
    for a in attachments {
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

/// When the platform says an event happened (`d.timestamp`: RFC 3339 text, or a number), in
/// seconds since the Unix epoch.
fn seconds(stamp: &Value) -> Option<f64> {
    match stamp {
        Value::String(s) => Some(chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis() as f64 / 1000.0),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Group messages by their type and the message's id (the @ copy and the plain copy are two
/// events of one message: the adapter delivers the second under its native name only); any
/// other event by the payload's event id (the platform may push one event twice).
fn identity(payload: &Value, kind: &str, d: &Value) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
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
    fn a_frame_read_by_its_head_decodes_as_the_whole_tree_does() {
        let mut plain = group_at("GROUP_MESSAGE_CREATE:9", "MSG1");
        plain["t"] = json!("GROUP_MESSAGE_CREATE");
        let frames = [
            group_at("GROUP_AT_MESSAGE_CREATE:1", "MSG1"),
            plain,
            json!({"op": 0, "s": 4, "id": "C2C_MESSAGE_CREATE:2", "t": "C2C_MESSAGE_CREATE", "d": {
                "id": "MSG2", "content": "hi \"é\"", "timestamp": 1764432000,
                "author": {"id": "A", "user_openid": "U_OPENID", "union_openid": "X"},
                "attachments": [{"content_type": "voice", "url": "https://x/v.silk"}, {"content_type": "file"}]}}),
            json!({"op": 0, "s": 5, "id": "AT_MESSAGE_CREATE:3", "t": "AT_MESSAGE_CREATE", "d": {
                "id": "M3", "content": "<@!1234> hello", "channel_id": "C", "guild_id": "G",
                "timestamp": "2026-11-30T00:00:01+08:00", "author": {"id": "U", "username": "u", "avatar": "a", "bot": false},
                "member": {"roles": ["2", "4"], "joined_at": "2026-01-01T00:00:00+08:00"}, "mentions": [{"id": "1234"}]}}),
            json!({"op": 0, "s": 6, "id": "DIRECT_MESSAGE_CREATE:4", "t": "DIRECT_MESSAGE_CREATE", "d": {
                "id": "M4", "content": "dm", "channel_id": "DC", "guild_id": "DG", "src_guild_id": "G",
                "author": {"id": "U"}, "member": {"joined_at": "x"}}}),
            json!({"op": 0, "s": 7, "id": "GROUP_MEMBER_ADD:5", "t": "GROUP_MEMBER_ADD", "d": {
                "group_openid": "G_OPENID", "member_openid": "M", "timestamp": 1764432000}}),
            json!({"op": 0, "s": 8, "id": "INTERACTION_CREATE:6", "t": "INTERACTION_CREATE", "d": {
                "id": "I", "type": 11, "chat_type": 1, "group_openid": "G_OPENID", "group_member_openid": "M",
                "data": {"resolved": {"button_id": "b", "button_data": "d"}}}}),
            json!({"op": 0, "s": 1, "t": "READY", "d": {"version": 1, "session_id": "S",
                "user": {"id": "BOT", "username": "b", "bot": true}, "shard": [0, 1]}}),
        ];
        for frame in frames {
            let text = bytes::Bytes::from(frame.to_string());
            let head = read_head(&text).unwrap().unwrap();
            for big in ["member", "mentions", "data", "user", "src_guild_id"] {
                assert!(head.pointer(&format!("/d/{big}")).is_none(), "only the head is built");
            }
            assert!(head.pointer("/d/author/username").is_none());
            let lazy = decode(&bot(), head, Raw::text(&text), 1).unwrap();
            // The old path: the whole tree as the head, so a field missing from HEAD shows.
            let whole = decode(&bot(), frame.clone(), Raw::from(frame.clone()), 1).unwrap();
            lazy.assert_decoded_like(&whole, &frame);
            let reply = |e: &Event| super::super::reply_call(e, json!("pong")).map_err(|e| e.to_string());
            assert_eq!(reply(&lazy), reply(&whole));
        }
    }

    #[test]
    fn a_message_keeps_what_its_reply_needs() {
        let dm = json!({"op": 0, "id": "E", "t": "DIRECT_MESSAGE_CREATE", "d": {"id": "M", "content": "x",
            "guild_id": "DG", "timestamp": "2026-11-30T00:00:01+08:00", "author": {"id": "U"}}});
        let text = bytes::Bytes::from(dm.to_string());
        let ev = decode(&bot(), read_head(&text).unwrap().unwrap(), Raw::text(&text), 1).unwrap();
        assert_eq!((&ev.place, ev.time), (&json!("DG"), Some(1_795_968_001.0)));
        let (action, params) = super::super::reply_call(&ev, json!("pong")).unwrap();
        assert_eq!((action, &params["guild_id"], &params["message_id"]), ("send_dm", &json!("DG"), &json!("M")));
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
