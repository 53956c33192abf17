//! Milky (seed 001's `/api/...` sections): calls over HTTP, events over WebSocket, SSE or a
//! webhook, each event `{time, self_id, event_type, data}`.
//!
//! Events are named `milky.<event_type>` and carry the cross-protocol aliases (`message`,
//! `message.private`, `message.group`, `request.friend`, `request.group`, `member.increase`,
//! `member.decrease`, `recall`, `poke`). Milky's compatibility rules hold: an unknown event type
//! is delivered raw under its name with one warning, an unknown segment reads as text, and an
//! item of an array that is not what it should be is skipped.

pub mod actions;
pub mod config;
pub mod events;
pub mod http;
pub mod segments;
pub mod transport;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeSeed;
use serde_json::{Value, json};

use super::summary::{SegmentsSeed, Summary};
use super::{Adapter, Opened, Start, Verb};
use crate::bot::{Bot, BotId, CallError, Link, Protocol};
use crate::event::{Event, Identity, Raw, hash_id, name_part};
use config::MilkyConfig;

/// Milky: its bots accept the `milky::` actions.
pub static PROTOCOL: Protocol = Protocol { name: "milky", namespace: "milky" };

/// The Milky adapter.
pub static ADAPTER: Adapter = Adapter {
    protocol: &PROTOCOL,
    actions: actions::ACTIONS,
    events: events::EVENTS,
    reply: reply_call,
    verb: verb_call,
};

/// The Milky action of each cross-protocol verb.
pub fn verb_call(verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
    Ok(match verb {
        Verb::SendGroup { group, message } => ("send_group_message", json!({"group_id": group, "message": message})),
        Verb::SendPrivate { user, message } => ("send_private_message", json!({"user_id": user, "message": message})),
        Verb::RecallGroup { group, id } => ("recall_group_message", json!({"group_id": group, "message_seq": id})),
        Verb::RecallPrivate { user, id } => ("recall_private_message", json!({"user_id": user, "message_seq": id})),
        Verb::Mute { group, user, seconds } => {
            ("set_group_member_mute", json!({"group_id": group, "user_id": user, "duration": seconds}))
        }
        Verb::Kick { group, user } => ("kick_group_member", json!({"group_id": group, "user_id": user})),
        Verb::MemberInfo { group, user } => ("get_group_member_info", json!({"group_id": group, "user_id": user})),
        Verb::Answer { event, approve } => {
            let data = event.raw().get("data").cloned().unwrap_or(Value::Null);
            let kind = event.raw().get("event_type").and_then(Value::as_str).unwrap_or_default();
            let pick = |yes, no| if *approve { yes } else { no };
            match kind {
                "friend_request" => (
                    pick("accept_friend_request", "reject_friend_request"),
                    json!({"initiator_uid": data["initiator_uid"]}),
                ),
                "group_join_request" | "group_invited_join_request" => {
                    let notification_type =
                        if kind == "group_join_request" { "join_request" } else { "invited_join_request" };
                    (
                        pick("accept_group_request", "reject_group_request"),
                        json!({"notification_seq": data["notification_seq"], "notification_type": notification_type,
                               "group_id": data["group_id"]}),
                    )
                }
                "group_invitation" => (
                    pick("accept_group_invitation", "reject_group_invitation"),
                    json!({"group_id": data["group_id"], "invitation_seq": data["invitation_seq"]}),
                ),
                _ => return Err(verb.unsupported(&PROTOCOL, &format!("`{}` is not a request", event.name))),
            }
        }
    })
}

/// Creates the handle of a Milky bot and what starts its event transport.
pub fn open(name: &str, cfg: &MilkyConfig, call_timeout: std::time::Duration) -> Opened {
    let link = Link::Requests(Arc::new(http::Api::new(&cfg.url, &cfg.access_token, cfg.max_frame_bytes, &cfg.tls)));
    let bot = Bot::new(name, &PROTOCOL, call_timeout, link);
    let cfg = cfg.clone();
    Opened::new(bot, Box::new(move |bot, s: Start<'_>| transport::start(bot, cfg, s)))
}

/// An event object that breaks Milky's rules: logged (rate-limited) and not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed Milky event: {0}")]
pub struct Malformed(String);

/// Turns a Milky event object into an [`Event`] (`via` names the connection).
pub fn decode_event(bot: &Arc<Bot>, raw: Value, via: u64) -> Result<Event, Malformed> {
    let head = super::head::pick(&raw, &HEAD).map_or(Value::Null, Value::Object);
    let segments = raw.pointer("/data/segments").and_then(|s| SEGMENTS.deserialize(s).ok());
    decode(bot, head, segments, raw.into(), via)
}

/// Reads an event's [`HEAD`] fields and a summary of its `data.segments` (when it has them),
/// and builds nothing else; `None` when it is JSON but not an object.
pub fn read_head(event: &[u8]) -> serde_json::Result<Option<(Value, Option<Summary>)>> {
    let head = super::head::head_reading(event, &HEAD, "data/segments", SEGMENTS)?;
    Ok(head.map(|(fields, segments)| (Value::Object(fields), segments)))
}

/// Reads a message's segments as routing does, in Milky's names.
const SEGMENTS: SegmentsSeed = SegmentsSeed { dialect: &segments::MILKY };

/// The fields of an event that decoding reads. The rest (the group member, the group, the
/// friend: often most of a message event) is parsed only if a script asks.
pub static HEAD: crate::adapter::head::Keys<'_> = crate::adapter::head::Keys::new(&[
    "event_type",
    "self_id",
    "data/message_scene",
    "data/peer_id",
    "data/sender_id",
    "data/message_seq",
    "data/user_id",
    "data/group_id",
    "data/initiator_id",
]);

/// Decodes an event from its [`HEAD`] fields (`head`), the summary of its segments, and the
/// whole of it (`raw`).
pub fn decode(bot: &Arc<Bot>, head: Value, segments: Option<Summary>, raw: Raw, via: u64) -> Result<Event, Malformed> {
    let kind = name_part(&head, "event_type").map_err(Malformed)?.to_owned();
    if !head.get("data").is_none_or(Value::is_object) {
        return Err(Malformed(format!("`{kind}` has a data member that is not an object")));
    }
    let self_id = head.get("self_id").and_then(Value::as_i64);
    if let Some(id) = self_id {
        bot.set_self_id(BotId::Number(id));
    }
    if !events::EVENTS.iter().any(|(name, _)| name.strip_prefix("milky.") == Some(kind.as_str())) {
        warn_unknown(&kind);
    }
    let empty = json!({});
    let data = head.get("data").unwrap_or(&empty);
    let field = |k: &str| data.get(k).filter(|v| !v.is_null()).cloned();
    let scene = data.get("message_scene").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut aliases: Vec<&str> = Vec::new();
    let (mut user_id, mut group_id) = (field("user_id"), field("group_id"));
    let mut message_id = None;
    match kind.as_str() {
        "message_receive" => {
            for required in ["message_scene", "peer_id", "sender_id", "message_seq"] {
                if field(required).is_none() {
                    return Err(Malformed(format!("`message_receive` has no {required}")));
                }
            }
            user_id = field("sender_id");
            if scene == "group" {
                group_id = field("peer_id");
            }
            message_id = field("message_seq");
            // The bot's own messages never trigger `message` (no self-reply loops).
            let own = self_id.is_some() && data.get("sender_id").and_then(Value::as_i64) == self_id;
            if !own {
                aliases.push("message");
                aliases.push(if scene == "group" { "message.group" } else { "message.private" });
            }
        }
        "message_recall" => {
            user_id = field("sender_id");
            if scene == "group" {
                group_id = field("peer_id");
            } else {
                user_id = field("peer_id").or(user_id);
            }
            message_id = field("message_seq");
            aliases.push("recall");
        }
        "friend_request" => {
            user_id = field("initiator_id");
            aliases.push("request.friend");
        }
        "group_join_request" | "group_invited_join_request" | "group_invitation" => {
            user_id = field("initiator_id");
            aliases.push("request.group");
        }
        "friend_nudge" => aliases.push("poke"),
        "group_nudge" => {
            user_id = field("sender_id");
            aliases.push("poke");
        }
        "group_member_increase" => aliases.push("member.increase"),
        "group_member_decrease" => aliases.push("member.decrease"),
        _ => {}
    }
    let identity = identity(&head, &raw, &kind, data);
    // The segments are read, not built: a script that asks for them gets them built from `raw`.
    let is_message = kind == "message_receive";
    let (text, at_me, reply_to) = match segments {
        Some(summary) if is_message => {
            let at_me = summary.mentions(self_id.unwrap_or(0));
            (summary.text.trim().to_owned(), at_me, summary.reply_to)
        }
        _ => (String::new(), false, Value::Null),
    };
    let sender_at = match scene.as_str() {
        "group" => "/data/group_member",
        "friend" => "/data/friend",
        _ => "",
    };
    let place = field("peer_id");
    let mut ev = Event::new(bot.clone(), format!("milky.{kind}"), &aliases, raw);
    ev.text = text;
    ev.at_me = at_me;
    ev.reply_to = reply_to;
    ev.user_id = user_id.unwrap_or(Value::Null);
    ev.group_id = group_id.unwrap_or(Value::Null);
    ev.message_id = message_id.unwrap_or(Value::Null);
    ev.place = place.unwrap_or(Value::Null);
    ev.identity = identity;
    ev.via = via;
    if is_message {
        ev.segments_from = Some(incoming_segments);
        ev.sender_at = sender_at;
    }
    Ok(ev)
}

/// A message event's segments, normalised (see [`segments::incoming`]).
fn incoming_segments(ev: &Event) -> Value {
    let segments = crate::event::path(ev.raw(), "/data/segments").cloned().unwrap_or_default();
    Value::Array(segments::incoming(segments))
}

/// One warning per unknown event type, however often it comes.
fn warn_unknown(kind: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.len() < 256 && seen.insert(kind.to_owned()) {
        tracing::warn!(event_type = kind, "unknown Milky event type; delivered raw as milky.{kind}");
    }
}

/// A message by scene, peer and sequence; anything else by its whole content (`raw`).
fn identity(head: &Value, raw: &Raw, kind: &str, data: &Value) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    if kind == "message_receive" {
        ("milky", kind).hash(&mut h);
        hash_id(head.get("self_id").unwrap_or(&Value::Null), &mut h);
        for key in ["message_scene", "peer_id", "message_seq"] {
            hash_id(data.get(key).unwrap_or(&Value::Null), &mut h);
        }
        return Identity::Id(h.finish());
    }
    raw.tree().to_string().hash(&mut h);
    Identity::Content(h.finish())
}

/// The call that answers `ev`: to its group, or privately to its user (friend or temporary
/// chat: Milky's `send_private_message` serves both).
pub fn reply_call(ev: &Event, message: Value) -> Result<(&'static str, Value), CallError> {
    if !ev.group_id.is_null() {
        return Ok(("send_group_message", json!({"group_id": ev.group_id, "message": message})));
    }
    // The peer, not the sender: the bot's own message from another device names the friend.
    let peer = [&ev.place, &ev.user_id].into_iter().find(|p| !p.is_null());
    match peer {
        Some(user) => Ok(("send_private_message", json!({"user_id": user, "message": message}))),
        None => Err(CallError::NoTarget { event: ev.name.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot() -> Arc<Bot> {
        Bot::detached("m", &PROTOCOL)
    }

    fn group_message(sender: i64, segments: Value) -> Value {
        json!({"time": 1, "self_id": 10001, "event_type": "message_receive", "data": {
            "message_scene": "group", "peer_id": 20001, "message_seq": 30001, "sender_id": sender, "time": 1,
            "segments": segments,
            "group": {"group_id": 20001, "group_name": "g", "member_count": 2, "max_member_count": 200},
            "group_member": {"user_id": sender, "nickname": "n", "card": "", "role": "admin"}}})
    }

    #[test]
    fn a_group_message_has_its_names_and_fields() {
        let segs = json!([{"type": "reply", "data": {"message_seq": 29999}}, {"type": "mention", "data": {"user_id": 10001}},
                          {"type": "text", "data": {"text": " hi "}}]);
        let ev = decode_event(&bot(), group_message(10002, segs), 1).unwrap();
        assert_eq!(ev.keys(), ["milky_message_receive", "milky", "message", "message_group"]);
        assert_eq!((ev.text.as_str(), ev.at_me, &ev.reply_to), ("hi", true, &json!(29999)));
        assert_eq!((&ev.user_id, &ev.group_id, &ev.message_id), (&json!(10002), &json!(20001), &json!(30001)));
        assert_eq!(ev.sender()["role"], "admin");
        let (action, params) = reply_call(&ev, json!("pong")).unwrap();
        assert_eq!((action, &params["group_id"]), ("send_group_message", &json!(20001)));
    }

    #[test]
    fn a_frame_read_by_its_head_decodes_as_the_whole_tree_does() {
        let segs = json!([{"type": "reply", "data": {"message_seq": 29999}}, {"type": "mention", "data": {"user_id": 10001}},
                          {"type": "text", "data": {"text": " hi \"é\" "}}, {"type": "shiny", "data": {"summary": "[s]"}}, 7]);
        let mut own_private = group_message(10001, json!([{"type": "text", "data": {"text": "sent elsewhere"}}]));
        own_private["data"]["message_scene"] = json!("friend");
        own_private["data"]["peer_id"] = json!(10003);
        own_private["data"]["friend"] = json!({"user_id": 10003, "nickname": "f", "remark": ""});
        let frames = [
            group_message(10002, segs),
            group_message(10002, json!([{"type": "mention_all", "data": {}}])),
            own_private,
            json!({"time": 1, "self_id": 10001, "event_type": "message_recall", "data": {"message_scene": "friend",
                "peer_id": 10003, "message_seq": 5, "sender_id": 10003, "operator_id": 10003, "display_suffix": ""}}),
            json!({"time": 1, "self_id": 10001, "event_type": "group_nudge", "data": {"group_id": 20001,
                "sender_id": 10002, "receiver_id": 10001, "display_action": "戳了戳"}}),
            json!({"time": 1, "self_id": 10001, "event_type": "friend_request", "data": {"initiator_id": 10004,
                "initiator_uid": "u", "comment": "hi", "via": "search"}}),
            json!({"time": 1, "self_id": 10001, "event_type": "bot_offline", "data": {"reason": "kicked"}}),
            json!({"time": 1, "self_id": 10001, "event_type": "brand_new"}),
        ];
        for frame in frames {
            let text = bytes::Bytes::from(frame.to_string());
            let (head, segments) = read_head(&text).unwrap().unwrap();
            for big in ["group_member", "group", "friend", "time", "display_suffix", "comment", "segments"] {
                assert!(
                    head.get(big).is_none() && head.pointer(&format!("/data/{big}")).is_none(),
                    "only the head is built"
                );
            }
            let lazy = decode(&bot(), head, segments, Raw::text(&text), 1).unwrap();
            // The path from a tree, with the whole tree as the head, so a field missing from
            // HEAD shows.
            let summary = frame.pointer("/data/segments").map(|s| SEGMENTS.deserialize(s).unwrap());
            let whole = decode(&bot(), frame.clone(), summary, Raw::from(frame.clone()), 1).unwrap();
            lazy.assert_decoded_like(&whole, &frame);
            if frame["event_type"] == "message_receive" {
                // Built when asked, from the kept text, as decoding once built them up front.
                let built = Value::Array(segments::incoming(frame["data"]["segments"].clone()));
                assert_eq!(lazy.segments(), &built, "{frame}");
            }
            let reply = |e: &Event| reply_call(e, json!("pong")).map_err(|e| e.to_string());
            assert_eq!(reply(&lazy), reply(&whole));
        }
    }

    #[test]
    fn answering_a_message_never_parses_the_whole_event() {
        let mut private = group_message(10002, json!([]));
        private["data"]["message_scene"] = json!("friend");
        for frame in [group_message(10002, json!([{"type": "text", "data": {"text": "hi"}}])), private] {
            let text = bytes::Bytes::from(frame.to_string());
            let (head, segments) = read_head(&text).unwrap().unwrap();
            let ev = decode(&bot(), head, segments, Raw::text(&text), 1).unwrap();
            reply_call(&ev, json!("pong")).unwrap();
            assert!(!ev.raw_is_built(), "{frame}");
        }
    }

    #[test]
    fn a_private_reply_goes_to_the_peer_not_the_sender() {
        let mut own = group_message(10001, json!([]));
        own["data"]["message_scene"] = json!("friend");
        own["data"]["peer_id"] = json!(10003);
        let (action, params) = reply_call(&decode_event(&bot(), own, 1).unwrap(), json!("x")).unwrap();
        assert_eq!((action, &params["user_id"]), ("send_private_message", &json!(10003)));
    }

    #[test]
    fn the_bots_own_message_never_looks_like_a_message() {
        let ev = decode_event(&bot(), group_message(10001, json!([])), 1).unwrap();
        assert!(!ev.keys().iter().any(|k| k == "message" || k == "message_group"));
    }

    #[test]
    fn unknown_events_are_delivered_raw_and_broken_ones_refused() {
        let ev =
            decode_event(&bot(), json!({"time": 1, "self_id": 10001, "event_type": "brand_new", "data": {"x": 1}}), 1);
        assert_eq!(ev.unwrap().name, "milky.brand_new");
        assert!(decode_event(&bot(), json!({"event_type": "a.b"}), 1).is_err());
        assert!(decode_event(&bot(), json!({"event_type": "message_receive", "data": {"peer_id": 1}}), 1).is_err());
        assert!(decode_event(&bot(), json!({"event_type": "bot_offline", "data": 5}), 1).is_err());
    }
}
