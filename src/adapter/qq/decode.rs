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
use super::payload::Head;
use crate::adapter::slots::{Field, Shape, name_part};
use crate::bot::Bot;
use crate::event::{Event, Identity, Raw, normalize_name};

/// A payload that is not a dispatch event this runtime can read: logged, not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed official-platform event: {0}")]
pub struct Malformed(String);

/// Decodes a dispatch payload from its [`Head`] (`head`) and the whole of it (`raw`).
pub fn decode(bot: &Arc<Bot>, head: Head<'_>, raw: Raw, via: u64) -> Result<Event, Malformed> {
    let kind = name_part(&head.t, "t").map_err(Malformed)?;
    if head.d_is == Shape::NotObject {
        return Err(Malformed(format!("`{kind}` has a d that is not an object")));
    }
    let mut d = head.d;
    let identity = identity(head.id.as_ref(), kind, d.id.as_ref());
    // The fields the event keeps are moved out of the head.
    let take = |field: &mut Option<Field<'_>>| field.take().map(Field::into_value);
    let mut aliases: Vec<&str> = Vec::new();
    let mut group_id = take(&mut d.group_openid);
    let mut at_me = false;
    let is_message = matches!(
        kind,
        "C2C_MESSAGE_CREATE"
            | "GROUP_AT_MESSAGE_CREATE"
            | "GROUP_MESSAGE_CREATE"
            | "AT_MESSAGE_CREATE"
            | "MESSAGE_CREATE"
            | "DIRECT_MESSAGE_CREATE"
    );
    let user_id = match kind {
        "C2C_MESSAGE_CREATE" => {
            aliases.extend(["message", "message.private"]);
            take(&mut d.author.user_openid)
        }
        "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE" => {
            at_me = kind == "GROUP_AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.group"]);
            take(&mut d.author.member_openid)
        }
        "AT_MESSAGE_CREATE" | "MESSAGE_CREATE" => {
            group_id = take(&mut d.channel_id);
            at_me = kind == "AT_MESSAGE_CREATE";
            aliases.extend(["message", "message.guild"]);
            take(&mut d.author.id)
        }
        "DIRECT_MESSAGE_CREATE" => {
            aliases.extend(["message", "message.direct"]);
            take(&mut d.author.id)
        }
        "GROUP_MEMBER_ADD" => {
            aliases.push("member.increase");
            take(&mut d.member_openid)
        }
        "GROUP_MEMBER_REMOVE" => {
            aliases.push("member.decrease");
            take(&mut d.member_openid)
        }
        // A C2C interaction names its user `user_openid`, a group's `group_member_openid`; group
        // management events name who did it `op_member_openid`.
        _ => take(&mut d.user_openid)
            .or_else(|| take(&mut d.group_member_openid))
            .or_else(|| take(&mut d.op_member_openid))
            .or_else(|| take(&mut d.openid))
            .or_else(|| take(&mut d.user_id))
            .or_else(|| take(&mut d.author_id)),
    };
    let message_id = if is_message { take(&mut d.id) } else { None };
    if is_message && (user_id.is_none() || message_id.is_none()) {
        return Err(Malformed(format!("`{kind}` has no author or id")));
    }
    let place = take(&mut d.guild_id);
    let content = d.content.as_ref().and_then(Field::as_str).unwrap_or_default();
    let text = if is_message { strip_mention(content).trim().to_owned() } else { String::new() };
    let time = d.timestamp.as_ref().and_then(seconds);
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
fn seconds(stamp: &Field<'_>) -> Option<f64> {
    match stamp {
        Field::Text(s) => Some(chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_millis() as f64 / 1000.0),
        Field::Other(n) => n.as_f64(),
    }
}

/// Group messages by their type and the message's id (the @ copy and the plain copy are two
/// events of one message: the adapter delivers the second under its native name only); any
/// other event by the payload's event id (the platform may push one event twice).
fn identity(event_id: Option<&Field<'_>>, kind: &str, message_id: Option<&Field<'_>>) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    let key = if matches!(kind, "GROUP_AT_MESSAGE_CREATE" | "GROUP_MESSAGE_CREATE") {
        (kind, message_id)
    } else {
        ("qq-event", event_id)
    };
    match key.1.and_then(Field::as_str) {
        Some(id) => {
            (key.0, id).hash(&mut h);
            Identity::Id(h.finish())
        }
        None => Identity::None,
    }
}

/// Intent bits not every bot may ask for: `GUILD_MESSAGES` (9) and `FORUMS_EVENT` (28) are for
/// private-domain bots only, and the group member events (23, 24) need the platform's leave. The
/// gateway refuses an Identify that asks for one a bot lacks (close 4014, or op 9 again and
/// again), so no event at all arrives; they are asked for only when a handler names one of their
/// events itself (`qq.MESSAGE_CREATE`), not through an alias (`message`) or a prefix (`qq`).
const RESTRICTED_BITS: [u32; 4] = [9, 23, 24, 28];

/// The intents bitmask for handlers registered under `names` (normalised event names, as
/// scripts write them): each event whose native name or alias a handler catches adds its bit,
/// except the [`RESTRICTED_BITS`] of events caught only by an alias or a prefix. Those events
/// come second.
pub fn intents_for(names: &[String]) -> (u32, Vec<&'static str>) {
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
    let (mut bits, mut left_out) = (0, Vec::new());
    for ev in EVENTS {
        let Some(bit) = ev.intent_bit else { continue };
        let native = normalize_name(ev.name);
        let named = names.contains(&native);
        let caught = named
            || names.iter().any(|n| {
                native.starts_with(&format!("{n}_")) || aliases(ev.name).iter().any(|a| normalize_name(a) == *n)
            });
        if named || (caught && !RESTRICTED_BITS.contains(&bit)) {
            bits |= 1 << bit;
        } else if caught {
            left_out.push((ev.name, bit));
        }
    }
    // An event whose bit another handler asked for arrives all the same.
    let left_out = left_out.into_iter().filter(|(_, bit)| bits & (1 << bit) == 0).map(|(name, _)| name).collect();
    (bits, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::qq::payload::read_head;

    fn bot() -> Arc<Bot> {
        Bot::detached("qq", &super::super::PROTOCOL)
    }

    /// Decodes `payload` from its text, as the gateway does.
    fn decode_event(bot: &Arc<Bot>, payload: Value, via: u64) -> Result<Event, Malformed> {
        let text = payload.to_string();
        let head = read_head(text.as_bytes()).expect("JSON").unwrap_or_default();
        decode(bot, head, Raw::text(text.as_bytes()), via)
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
    fn each_kind_of_event_takes_its_fields_from_its_own_members() {
        let mut plain = group_at("GROUP_MESSAGE_CREATE:9", "MSG1");
        plain["t"] = json!("GROUP_MESSAGE_CREATE");
        // (payload, [user, group, message, place], text, at_me, time)
        let cases = [
            (
                group_at("GROUP_AT_MESSAGE_CREATE:1", "MSG1"),
                ["M_OPENID", "G_OPENID", "MSG1", ""],
                "/echo hi",
                true,
                Some(1_795_968_000.0),
            ),
            (plain, ["M_OPENID", "G_OPENID", "MSG1", ""], "/echo hi", false, Some(1_795_968_000.0)),
            (
                json!({"op": 0, "s": 4, "id": "C2C_MESSAGE_CREATE:2", "t": "C2C_MESSAGE_CREATE", "d": {
                    "id": "MSG2", "content": "hi \"é\"", "timestamp": 1764432000,
                    "author": {"id": "A", "user_openid": "U_OPENID", "union_openid": "X"},
                    "attachments": [{"content_type": "voice", "url": "https://x/v.silk"}, {"content_type": "file"}]}}),
                ["U_OPENID", "", "MSG2", ""],
                "hi \"é\"",
                false,
                Some(1_764_432_000.0),
            ),
            (
                json!({"op": 0, "s": 5, "id": "AT_MESSAGE_CREATE:3", "t": "AT_MESSAGE_CREATE", "d": {
                    "id": "M3", "content": "<@!1234> hello", "channel_id": "C", "guild_id": "G",
                    "timestamp": "2026-11-30T00:00:01+08:00", "author": {"id": "U", "username": "u", "bot": false},
                    "member": {"roles": ["2", "4"]}, "mentions": [{"id": "1234"}]}}),
                ["U", "C", "M3", "G"],
                "hello",
                true,
                Some(1_795_968_001.0),
            ),
            (
                json!({"op": 0, "s": 6, "id": "DIRECT_MESSAGE_CREATE:4", "t": "DIRECT_MESSAGE_CREATE", "d": {
                    "id": "M4", "content": "dm", "channel_id": "DC", "guild_id": "DG", "src_guild_id": "G",
                    "author": {"id": "U"}, "member": {"joined_at": "x"}}}),
                ["U", "", "M4", "DG"],
                "dm",
                false,
                None,
            ),
            (
                json!({"op": 0, "s": 7, "id": "GROUP_MEMBER_ADD:5", "t": "GROUP_MEMBER_ADD", "d": {
                    "group_openid": "G_OPENID", "member_openid": "M", "timestamp": 1764432000}}),
                ["M", "G_OPENID", "", ""],
                "",
                false,
                Some(1_764_432_000.0),
            ),
            (
                json!({"op": 0, "s": 8, "id": "INTERACTION_CREATE:6", "t": "INTERACTION_CREATE", "d": {
                    "id": "I", "type": 11, "chat_type": 1, "group_openid": "G_OPENID", "group_member_openid": "M",
                    "data": {"resolved": {"button_id": "b"}}}}),
                ["M", "G_OPENID", "", ""],
                "",
                false,
                None,
            ),
            (
                json!({"op": 0, "s": 9, "id": "GROUP_ADD_ROBOT:7", "t": "GROUP_ADD_ROBOT", "d": {
                    "group_openid": "G_OPENID", "op_member_openid": "OP", "timestamp": 1764432000}}),
                ["OP", "G_OPENID", "", ""],
                "",
                false,
                Some(1_764_432_000.0),
            ),
            (
                json!({"op": 0, "s": 1, "t": "READY", "d": {"version": 1, "session_id": "S",
                    "user": {"id": "BOT", "username": "b", "bot": true}, "shard": [0, 1]}}),
                ["", "", "", ""],
                "",
                false,
                None,
            ),
        ];
        // Each case's aliases, in the same order.
        let aliases: [&[&str]; 9] = [
            &["message", "message_group"],
            &["message", "message_group"],
            &["message", "message_private"],
            &["message", "message_guild"],
            &["message", "message_direct"],
            &["member_increase"],
            &[],
            &[],
            &[],
        ];
        // "" is an id the event does not have.
        let expected = |ids: [&str; 4]| ids.map(|id| if id.is_empty() { Value::Null } else { json!(id) });
        for ((payload, ids, text, at_me, time), aliases) in cases.into_iter().zip(aliases) {
            let ev = decode_event(&bot(), payload.clone(), 1).unwrap();
            let kind = normalize_name(payload["t"].as_str().unwrap());
            let keys: Vec<String> =
                [format!("qq_{kind}"), "qq".into()].into_iter().chain(aliases.iter().map(|a| a.to_string())).collect();
            assert_eq!(ev.keys(), keys, "{payload}");
            let got = [&ev.user_id, &ev.group_id, &ev.message_id, &ev.place].map(Clone::clone);
            assert_eq!((got, ev.text.as_str(), ev.at_me, ev.time), (expected(ids), text, at_me, time), "{payload}");
            assert_eq!(ev.raw(), &payload, "the event keeps the whole payload");
        }
    }

    #[test]
    fn a_message_keeps_what_its_reply_needs() {
        let dm = json!({"op": 0, "id": "E", "t": "DIRECT_MESSAGE_CREATE", "d": {"id": "M", "content": "x",
            "guild_id": "DG", "timestamp": "2026-11-30T00:00:01+08:00", "author": {"id": "U"}}});
        let ev = decode_event(&bot(), dm, 1).unwrap();
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
        for (broken, why) in [
            (json!({"op": 0, "t": "A.B"}), "t \"A.B\" is not a short name"),
            (json!({"op": 0, "t": 7}), "t 7 is not a short name"),
            (json!({"op": 0}), "no t"),
            (json!({"op": 0, "t": "X", "d": null}), "`X` has a d that is not an object"),
            (json!({"op": 0, "t": "X", "d": [1]}), "`X` has a d that is not an object"),
        ] {
            let error = decode_event(&bot(), broken, 1).unwrap_err().to_string();
            assert!(error.ends_with(why), "{error}");
        }
    }

    #[test]
    fn intents_follow_the_handlers() {
        let names = |ns: &[&str]| ns.iter().map(|n| normalize_name(n)).collect::<Vec<_>>();
        // GROUP_AND_C2C_EVENT is bit 25; PUBLIC_GUILD_MESSAGES bit 30.
        let bits = |ns: &[&str]| intents_for(&names(ns)).0;
        assert_eq!(bits(&["message.group"]), 1 << 25);
        assert_eq!(bits(&["qq.GUILD_CREATE"]), 1);
        assert_eq!(bits(&["notice"]), 0);
        // A public bot's `on("message")`: group and C2C, guild @-messages, direct messages; not
        // every channel message (GUILD_MESSAGES, bit 9), which only private-domain bots get.
        let (message, left_out) = intents_for(&names(&["message", "member.increase"]));
        assert_eq!(message, 1 << 25 | 1 << 30 | 1 << 12);
        assert_eq!(left_out, ["qq.MESSAGE_CREATE", "qq.GROUP_MEMBER_ADD"]);
        // Named itself, it is asked for.
        assert_eq!(bits(&["qq.MESSAGE_CREATE", "qq.GROUP_MEMBER_ADD"]), 1 << 9 | 1 << 24);
        // A sibling named itself brings the bit: nothing is left out.
        let (both, left_out) = intents_for(&names(&["member.increase", "qq.GROUP_MEMBER_REMOVE"]));
        assert_eq!((both, left_out), (1 << 24, vec![]));
        // Everything, by the namespace: none of the restricted bits.
        let all = bits(&["qq"]);
        assert!(RESTRICTED_BITS.iter().all(|bit| all & (1 << bit) == 0), "{all:b}");
        assert_ne!(all & (1 << 26), 0, "INTERACTION is open to every bot");
    }
}
