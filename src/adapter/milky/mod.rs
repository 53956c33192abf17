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
pub mod payload;
pub mod segments;
pub mod transport;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde_json::{Value, json};

use super::slots::{self, Field, Shape, name_part};
use super::{Adapter, Opened, Start, Verb, object};
use crate::bot::{Bot, BotId, CallError, Link, Protocol};
use crate::event::{Event, Identity, Raw};
use config::MilkyConfig;
use payload::{Data, Head, read_head};

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

/// The Milky action of each cross-protocol verb. A script's ids are checked by the action
/// table, as a `milky::` call's are: Milky's ids are integers, so a string of digits is sent as
/// one and any other text is refused.
pub fn verb_call(verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
    let (action, params) = verb_params(verb)?;
    if matches!(verb, Verb::Answer { .. }) {
        // A request's ids are the implementation's own, from its event.
        return Ok((action, params));
    }
    let invalid = |reason: String| CallError::Invalid { action: verb.name().into(), reason };
    let table = actions::ACTIONS
        .iter()
        .find(|a| a.name == action)
        .ok_or_else(|| invalid(format!("Milky has no action `{action}`")))?;
    let params = table.build_params(vec![params]).map_err(|e| invalid(format!("Milky's {action}: {e}")))?;
    Ok((action, params))
}

/// The action and parameters of a verb, ids as the script gave them.
fn verb_params(verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
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
                    // A filtered request (from a risky account) is found only when asked for as one;
                    // an invitation has no `is_filtered`, which reads as false, the API's default.
                    let is_filtered = data.get("is_filtered").and_then(Value::as_bool).unwrap_or(false);
                    (
                        pick("accept_group_request", "reject_group_request"),
                        json!({"notification_seq": data["notification_seq"], "notification_type": notification_type,
                               "group_id": data["group_id"], "is_filtered": is_filtered}),
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
    let link =
        Link::Requests(Arc::new(http::Api::new(name, &cfg.url, &cfg.access_token, cfg.max_frame_bytes, &cfg.tls)));
    let bot = Bot::new(name, &PROTOCOL, call_timeout, link);
    let cfg = cfg.clone();
    Opened::new(bot, Box::new(move |bot, s: Start<'_>| transport::start(bot, cfg, s)))
}

/// An event object that breaks Milky's rules: logged (rate-limited) and not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed Milky event: {0}")]
pub struct Malformed(String);

/// Turns a Milky event object into an [`Event`] (`via` names the connection), read from its
/// text as an event off the wire is.
pub fn decode_event(bot: &Arc<Bot>, raw: Value, via: u64) -> Result<Event, Malformed> {
    let text = raw.to_string();
    let head = match read_head(text.as_bytes()) {
        Ok(Some(head)) => head,
        Ok(None) => return Err(Malformed("the event is not an object".into())),
        Err(e) => return Err(Malformed(e.to_string())),
    };
    decode(bot, head, raw.into(), via)
}

/// Decodes an event from its [`Head`] (with the summary of its segments) and the whole of it
/// (`raw`).
pub fn decode(bot: &Arc<Bot>, head: Head<'_>, raw: Raw, via: u64) -> Result<Event, Malformed> {
    let kind = name_part(&head.event_type, "event_type").map_err(Malformed)?;
    if head.data_is == Shape::NotObject {
        return Err(Malformed(format!("`{kind}` has a data member that is not an object")));
    }
    let self_id = head.self_id.as_ref().and_then(Field::as_i64);
    if let Some(id) = self_id {
        bot.set_self_id(BotId::Number(id));
    }
    if !is_known(kind) {
        warn_unknown(kind);
    }
    let mut data = head.data;
    let field = |slot: &Option<Field<'_>>| slot.clone().map(Field::into_value);
    let scene = data.message_scene.as_ref().and_then(Field::as_str).unwrap_or_default();
    let mut aliases: Vec<&str> = Vec::new();
    let (mut user_id, mut group_id) = (field(&data.user_id), field(&data.group_id));
    let mut message_id = None;
    match kind {
        "message_receive" => {
            let required = [
                ("message_scene", &data.message_scene),
                ("peer_id", &data.peer_id),
                ("sender_id", &data.sender_id),
                ("message_seq", &data.message_seq),
            ];
            if let Some((missing, _)) = required.iter().find(|(_, slot)| slot.is_none()) {
                return Err(Malformed(format!("`message_receive` has no {missing}")));
            }
            user_id = field(&data.sender_id);
            if scene == "group" {
                group_id = field(&data.peer_id);
            }
            message_id = field(&data.message_seq);
            // The bot's own messages never trigger `message` (no self-reply loops).
            let own = self_id.is_some() && data.sender_id.as_ref().and_then(Field::as_i64) == self_id;
            if !own {
                aliases.push("message");
                aliases.push(if scene == "group" { "message.group" } else { "message.private" });
            }
        }
        "message_recall" => {
            user_id = field(&data.sender_id);
            if scene == "group" {
                group_id = field(&data.peer_id);
            } else {
                user_id = field(&data.peer_id).or(user_id);
            }
            message_id = field(&data.message_seq);
            aliases.push("recall");
        }
        "friend_request" => {
            user_id = field(&data.initiator_id);
            aliases.push("request.friend");
        }
        "group_join_request" | "group_invited_join_request" | "group_invitation" => {
            user_id = field(&data.initiator_id);
            aliases.push("request.group");
        }
        "friend_nudge" => aliases.push("poke"),
        "group_nudge" => {
            user_id = field(&data.sender_id);
            aliases.push("poke");
        }
        "group_member_increase" => aliases.push("member.increase"),
        "group_member_decrease" => aliases.push("member.decrease"),
        _ => {}
    }
    let identity = identity(&head.self_id, &data, &raw, kind);
    // The segments are read, not built: a script that asks for them gets them built from `raw`.
    let is_message = kind == "message_receive";
    let (text, at_me, reply_to) = match data.segments.take() {
        Some(summary) if is_message => {
            let at_me = summary.mentions(self_id.unwrap_or(0));
            (summary.text.trim().to_owned(), at_me, summary.reply_to)
        }
        _ => (String::new(), false, Value::Null),
    };
    let sender_at = match scene {
        "group" => "/data/group_member",
        "friend" => "/data/friend",
        _ => "",
    };
    let place = field(&data.peer_id);
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

/// Whether Milky defines the event type `kind`: a set built once, not a scan of the table per
/// event.
fn is_known(kind: &str) -> bool {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    KNOWN
        .get_or_init(|| events::EVENTS.iter().filter_map(|(name, _)| name.strip_prefix("milky.")).collect())
        .contains(kind)
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
fn identity(self_id: &Option<Field<'_>>, data: &Data<'_>, raw: &Raw, kind: &str) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    if kind == "message_receive" {
        ("milky", kind).hash(&mut h);
        for slot in [self_id, &data.message_scene, &data.peer_id, &data.message_seq] {
            slots::hash_id(slot, &mut h);
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
        return Ok(("send_group_message", object([("group_id", ev.group_id.clone()), ("message", message)])));
    }
    // The peer, not the sender: the bot's own message from another device names the friend.
    let peer = [&ev.place, &ev.user_id].into_iter().find(|p| !p.is_null());
    match peer {
        Some(user) => Ok(("send_private_message", object([("user_id", user.clone()), ("message", message)]))),
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
    fn each_kind_of_event_takes_its_fields_from_its_own_members() {
        let segs = json!([{"type": "reply", "data": {"message_seq": 29999}}, {"type": "mention", "data": {"user_id": 10001}},
                          {"type": "text", "data": {"text": " hi \"é\" "}}, {"type": "shiny", "data": {"summary": "[s]"}}, 7]);
        let mut own_private = group_message(10001, json!([{"type": "text", "data": {"text": "sent elsewhere"}}]));
        own_private["data"]["message_scene"] = json!("friend");
        own_private["data"]["peer_id"] = json!(10003);
        own_private["data"]["friend"] = json!({"user_id": 10003, "nickname": "f", "remark": ""});
        // (frame, name's aliases, [user, group, message, place], text, at_me, reply_to)
        let cases = [
            (
                group_message(10002, segs),
                vec!["message", "message_group"],
                [json!(10002), json!(20001), json!(30001), json!(20001)],
                "hi \"é\" [s]",
                true,
                json!(29999),
            ),
            (
                group_message(10002, json!([{"type": "mention_all", "data": {}}])),
                vec!["message", "message_group"],
                [json!(10002), json!(20001), json!(30001), json!(20001)],
                "",
                true,
                Value::Null,
            ),
            (
                own_private,
                vec![],
                [json!(10001), Value::Null, json!(30001), json!(10003)],
                "sent elsewhere",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "message_recall", "data": {"message_scene": "friend",
                    "peer_id": 10003, "message_seq": 5, "sender_id": 10004, "operator_id": 10003, "display_suffix": ""}}),
                vec!["recall"],
                [json!(10003), Value::Null, json!(5), json!(10003)],
                "",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "group_nudge", "data": {"group_id": 20001,
                    "sender_id": 10002, "receiver_id": 10001, "display_action": "戳了戳"}}),
                vec!["poke"],
                [json!(10002), json!(20001), Value::Null, Value::Null],
                "",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "friend_request", "data": {"initiator_id": 10004,
                    "initiator_uid": "u", "comment": "hi", "via": "search"}}),
                vec!["request_friend"],
                [json!(10004), Value::Null, Value::Null, Value::Null],
                "",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "group_member_increase", "data": {"group_id": "20001",
                    "user_id": 10005, "operator_id": null}}),
                vec!["member_increase"],
                [json!(10005), json!("20001"), Value::Null, Value::Null],
                "",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "bot_offline", "data": {"reason": "kicked"}}),
                vec![],
                [Value::Null, Value::Null, Value::Null, Value::Null],
                "",
                false,
                Value::Null,
            ),
            (
                json!({"time": 1, "self_id": 10001, "event_type": "brand_new"}),
                vec![],
                [Value::Null, Value::Null, Value::Null, Value::Null],
                "",
                false,
                Value::Null,
            ),
        ];
        for (frame, aliases, ids, text, at_me, reply_to) in cases {
            let bytes = bytes::Bytes::from(frame.to_string());
            let ev = decode(&bot(), read_head(&bytes).unwrap().unwrap(), Raw::text(&bytes), 1).unwrap();
            let kind = frame["event_type"].as_str().unwrap();
            let mut keys = vec![format!("milky_{kind}"), "milky".to_owned()];
            keys.extend(aliases.iter().map(|a| a.to_string()));
            assert_eq!(ev.keys(), keys, "{frame}");
            let got = [&ev.user_id, &ev.group_id, &ev.message_id, &ev.place].map(Clone::clone);
            assert_eq!((got, ev.text.as_str(), ev.at_me, &ev.reply_to), (ids, text, at_me, &reply_to), "{frame}");
            if kind == "message_receive" {
                assert!(!ev.raw_is_built(), "a message is decoded from its head: {frame}");
                // Built when asked, from the kept text, as decoding once built them up front.
                let built = Value::Array(segments::incoming(frame["data"]["segments"].clone()));
                assert_eq!(ev.segments(), &built, "{frame}");
            }
            assert_eq!(ev.raw(), &frame, "the event keeps the whole frame");
        }
    }

    #[test]
    fn answering_a_message_never_parses_the_whole_event() {
        let mut private = group_message(10002, json!([]));
        private["data"]["message_scene"] = json!("friend");
        for frame in [group_message(10002, json!([{"type": "text", "data": {"text": "hi"}}])), private] {
            let text = bytes::Bytes::from(frame.to_string());
            let ev = decode(&bot(), read_head(&text).unwrap().unwrap(), Raw::text(&text), 1).unwrap();
            reply_call(&ev, json!("pong")).unwrap();
            assert!(!ev.raw_is_built(), "{frame}");
        }
    }

    #[test]
    fn a_message_is_one_event_whether_its_ids_come_as_numbers_or_text() {
        let numbers = decode_event(&bot(), group_message(10002, json!([])), 1).unwrap();
        let mut texts = group_message(10002, json!([]));
        for key in ["peer_id", "message_seq"] {
            texts["data"][key] = json!(texts["data"][key].to_string());
        }
        texts["self_id"] = json!("10001");
        let texts = decode_event(&bot(), texts, 2).unwrap();
        assert!(matches!(numbers.identity, Identity::Id(_)));
        assert_eq!(numbers.identity, texts.identity);
        let mut other = group_message(10002, json!([]));
        other["data"]["message_seq"] = json!(30002);
        assert_ne!(decode_event(&bot(), other, 1).unwrap().identity, numbers.identity);
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
