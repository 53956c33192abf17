//! OneBot 11 (seed 001, paths without `/api/`): event decoding, action responses, replies,
//! and the transports that carry them.

pub mod actions;
pub mod config;
pub mod cq;
pub mod events;
pub mod http;
pub mod payload;
pub mod quick;
pub mod reverse;
pub mod segments;
pub mod session;
pub mod sse;
pub mod summary;
pub mod ws;

use std::sync::Arc;

use serde_json::{Value, json};

use super::summary::Summary;
use super::{Adapter, EventSink, Opened, Start, Verb, object};
use crate::adapter::slots::{Field, hash_id, name_part};
use crate::bot::{Bot, Call, CallError, Link, Outbox, Protocol};
use crate::event::{Event, Identity, Raw, is_name_part};
use config::{HttpEvents, OneBotConfig, OneBotTransport};
use payload::Head;
use summary::{Message, ONEBOT};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// OneBot 11: its bots accept the `onebot::` actions.
pub static PROTOCOL: Protocol = Protocol { name: "onebot11", namespace: "onebot" };

/// The OneBot 11 adapter.
pub static ADAPTER: Adapter = Adapter {
    protocol: &PROTOCOL,
    actions: actions::ACTIONS,
    events: events::EVENTS,
    reply: reply_call,
    verb: verb_call,
};

/// The OneBot 11 action of each cross-protocol verb.
pub fn verb_call(verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
    Ok(match verb {
        Verb::SendGroup { group, message } => ("send_group_msg", json!({"group_id": group, "message": message})),
        Verb::SendPrivate { user, message } => ("send_private_msg", json!({"user_id": user, "message": message})),
        Verb::RecallGroup { id, .. } | Verb::RecallPrivate { id, .. } => ("delete_msg", json!({"message_id": id})),
        Verb::Mute { group, user, seconds } => {
            ("set_group_ban", json!({"group_id": group, "user_id": user, "duration": seconds}))
        }
        Verb::Kick { group, user } => ("set_group_kick", json!({"group_id": group, "user_id": user})),
        Verb::MemberInfo { group, user } => ("get_group_member_info", json!({"group_id": group, "user_id": user})),
        Verb::Answer { event, approve } => {
            let flag = event.raw().get("flag").cloned().unwrap_or(Value::Null);
            match event.raw().get("request_type").and_then(Value::as_str) {
                Some("friend") => ("set_friend_add_request", json!({"flag": flag, "approve": approve})),
                Some("group") => {
                    let sub_type = event.raw().get("sub_type").cloned().unwrap_or(Value::Null);
                    ("set_group_add_request", json!({"flag": flag, "sub_type": sub_type, "approve": approve}))
                }
                _ => return Err(verb.unsupported(&PROTOCOL, &format!("`{}` is not a request", event.name))),
            }
        }
    })
}

/// How a OneBot 11 bot's calls reach its connections.
#[derive(Debug)]
pub enum Wiring {
    /// The forward WebSocket task takes them from this outbox's channel.
    Channel(Arc<Outbox>, mpsc::Receiver<Call>),
    /// The reverse WebSocket listener routes them to the account's connection.
    Accounts(Arc<reverse::Accounts>),
    /// They are HTTP requests the caller makes.
    Http,
}

/// Creates the handle of a OneBot 11 bot and what starts its transport.
pub fn open(name: &str, cfg: &OneBotConfig, call_timeout: std::time::Duration) -> Opened {
    let (link, wiring) = match &cfg.transport {
        OneBotTransport::Http { url, .. } => (
            Link::Requests(Arc::new(http::Api::new(name, url, &cfg.access_token, cfg.max_frame_bytes, &cfg.tls))),
            Wiring::Http,
        ),
        OneBotTransport::Ws { .. } => {
            let (outbox, rx) = Outbox::new(prepare_params);
            (Link::Channel(outbox.clone()), Wiring::Channel(outbox, rx))
        }
        OneBotTransport::ReverseWs { .. } => {
            let accounts = Arc::new(reverse::Accounts::default());
            (Link::Routed(accounts.clone()), Wiring::Accounts(accounts))
        }
    };
    let cfg = cfg.clone();
    let bot = Bot::new(name, &PROTOCOL, call_timeout, link);
    Opened::new(bot, Box::new(move |bot, s: Start<'_>| start(bot, cfg, wiring, s.sink, s.shutdown, s.tasks)))
}

/// Starts a OneBot 11 bot's transport.
fn start(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    wiring: Wiring,
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    match (cfg.transport.clone(), wiring) {
        (OneBotTransport::Ws { url, split }, Wiring::Channel(outbox, rx)) => {
            ws::spawn(bot, cfg, url, split, (outbox, rx), sink, shutdown, tasks)
        }
        (OneBotTransport::ReverseWs { listen, self_id }, Wiring::Accounts(accounts)) => {
            reverse::serve(bot, cfg, &listen, self_id, accounts, sink, shutdown, tasks)?
        }
        (OneBotTransport::Http { url, events }, _) => match events {
            HttpEvents::None => {}
            HttpEvents::Sse => {
                tasks.spawn(sse::run(bot, cfg, url, sink, shutdown));
            }
            HttpEvents::Post { listen, path, secret, quick_timeout } => {
                http::serve_post(bot, &cfg, &listen, &path, secret, quick_timeout, sink, shutdown, tasks)?
            }
        },
        (_, wiring) => tracing::error!(bot = %bot.name, ?wiring, "transport and call wiring do not match"),
    }
    Ok(())
}

/// Reads an action response envelope: `status`/`retcode`/`data`, error text from `message`,
/// `wording` or `msg` (implementations differ; the first present wins).
pub fn decode_response(mut v: Value) -> Result<Value, (i64, String)> {
    let data = v.get_mut("data").map(Value::take);
    let text = |key: &str| v.get(key).and_then(Value::as_str);
    outcome(
        v.get("retcode").and_then(Value::as_i64),
        v.get("status").and_then(Value::as_str),
        [text("message"), text("wording"), text("msg")],
        data,
    )
}

/// A response's outcome from its envelope: `data` (`null` when absent), or its code and the
/// first error text that is not empty. `status: "async"` (retcode 1) is the OneBot 11 standard's
/// "taken, to be done later" (an `_async` action): a success whose result nobody will know.
fn outcome(
    retcode: Option<i64>,
    status: Option<&str>,
    messages: [Option<&str>; 3],
    data: Option<Value>,
) -> Result<Value, (i64, String)> {
    let retcode = retcode.unwrap_or(0);
    if status == Some("async") || (status != Some("failed") && retcode == 0) {
        return Ok(data.unwrap_or(Value::Null));
    }
    let message = messages.into_iter().flatten().find(|s| !s.is_empty()).unwrap_or("no error message given");
    // It reaches logs: control characters from the wire are escaped.
    let message = crate::logsafe::escape(message).into_owned();
    Err((if retcode == 0 { -1 } else { retcode }, message))
}

/// An event object that breaks the protocol's rules: logged (once per kind, rate-limited) and
/// not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("malformed {post_type} event: {problem}")]
pub struct Malformed {
    /// The event's `post_type` (escaped, shortened).
    pub post_type: String,
    /// What is wrong.
    pub problem: String,
}

/// Turns a OneBot 11 event object into an [`Event`]. The native name is
/// `post_type.<detail>[.sub_type]`, where `<detail>` is `message_type`, `notice_type`,
/// `request_type` or `meta_event_type`. `via` names the connection that delivered it.
///
/// Fields the protocol requires are checked here, so a script never sees, say, a group
/// message without a group: name parts must be short identifiers; messages need `user_id`
/// (and `group_id` in a group); requests need a `flag`; `group_*` notices need `group_id`.
pub fn decode_event(bot: &Arc<Bot>, raw: Value, via: u64) -> Result<Event, Malformed> {
    // Read from its text, as a frame is (the head borrows the text, so the tree can move on).
    let text = raw.to_string();
    let head = payload::read_head(text.as_bytes()).ok().flatten().unwrap_or_default();
    decode(bot, head, raw.into(), via)
}

/// Decodes an event from its [`Head`] (with its message as routing reads it) and the whole
/// of it (`raw`).
pub fn decode(bot: &Arc<Bot>, head: Head<'_>, raw: Raw, via: u64) -> Result<Event, Malformed> {
    let malformed =
        |post_type: &str, problem: String| Malformed { post_type: crate::logsafe::short(post_type), problem };
    let post_type = name_part(&head.post_type, "post_type").map_err(|problem| malformed("?", problem))?;
    let detail = match post_type {
        "message" | "message_sent" => Some(("message_type", &head.message_type)),
        "notice" => Some(("notice_type", &head.notice_type)),
        "request" => Some(("request_type", &head.request_type)),
        "meta_event" => Some(("meta_event_type", &head.meta_event_type)),
        _ => None,
    };
    let mut name = post_type.to_owned();
    for (key, slot) in detail.into_iter().chain(Some(("sub_type", &head.sub_type))) {
        match slot {
            Some(Field::Text(part)) if is_name_part(part) => {
                name.push('.');
                name.push_str(part);
            }
            None => {}
            Some(Field::Text(s)) if s.is_empty() => {}
            Some(other) => {
                let shown = crate::logsafe::short(&other.clone().into_value().to_string());
                return Err(malformed(post_type, format!("{key} {shown} is not a short name")));
            }
        }
    }
    let is_message = matches!(post_type, "message" | "message_sent");
    let has = |slot: &Option<Field<'_>>| match slot {
        Some(Field::Text(text)) => !text.is_empty(),
        Some(Field::Other(value)) => value.is_number(),
        None => false,
    };
    let message_type = head.message_type.as_ref().and_then(Field::as_str);
    let missing = match post_type {
        _ if is_message && message_type.is_none() => Some("message_type"),
        _ if is_message && !has(&head.user_id) => Some("user_id"),
        _ if is_message && message_type == Some("group") && !has(&head.group_id) => Some("group_id"),
        _ if is_message && head.message.is_none() => Some("message"),
        "request" if !has(&head.flag) => Some("flag"),
        "notice"
            if head.notice_type.as_ref().and_then(Field::as_str).is_some_and(|t| t.starts_with("group_"))
                && !has(&head.group_id) =>
        {
            Some("group_id")
        }
        _ => None,
    };
    if let Some(field) = missing {
        return Err(malformed(post_type, format!("`{name}` has no {field}")));
    }
    let identity = identity(&head, &raw, post_type);
    let self_id = head.self_id.as_ref().and_then(Field::as_i64).unwrap_or(0);
    // Text, mentions and reply, read without building the segments of an array; a CQ string
    // is parsed into them once, here (its raw form has none).
    let (summary, parsed) = match head.message {
        Some(Message::Text(text)) if is_message => {
            let segments = cq::parse(&text);
            (Summary::of(&ONEBOT, &segments), Some(segments))
        }
        Some(Message::Segments(summary)) if is_message => (summary, None),
        _ => (Summary::default(), None),
    };
    let field = |slot: Option<Field<'_>>| slot.map_or(Value::Null, Field::into_value);
    // A private message is not in a group, though NapCat names the group a temporary chat came
    // from as `group_id` (the standard has it in group messages only).
    let group_id = if is_message && message_type == Some("private") { None } else { head.group_id };
    let (user_id, group_id, message_id) = (field(head.user_id), field(group_id), field(head.message_id));
    if self_id != 0 {
        bot.set_self_id(crate::bot::BotId::Number(self_id));
    }
    // go-cqhttp's guild channels mention the bot by its tiny id.
    let tiny_id = head.self_tiny_id.as_ref().and_then(|id| id.as_str().map_or_else(|| id.as_i64(), |t| t.parse().ok()));
    let at_me = summary.mentions(self_id) || tiny_id.is_some_and(|id| summary.mentions(id));
    let Summary { text, reply_to, .. } = summary;
    let aliases = aliases(&name);
    let mut ev = Event::new(bot.clone(), name, aliases, raw);
    // Leading and trailing blanks (left around an @-mention) are not part of what was said.
    ev.text = text.trim().to_owned();
    ev.at_me = at_me;
    ev.reply_to = reply_to;
    ev.identity = identity;
    ev.via = via;
    ev.user_id = user_id;
    ev.group_id = group_id;
    ev.message_id = message_id;
    if is_message {
        // An array is read from the raw event if a script asks, like the sender.
        ev.parsed_segments = parsed.map(Value::Array);
        ev.segments_at = "/message";
        ev.sender_at = "/sender";
    }
    Ok(ev)
}

/// The cross-protocol names of a OneBot event beyond its own dotted prefixes (`message`,
/// `request.friend` and `request.group` already are prefixes).
fn aliases(name: &str) -> &'static [&'static str] {
    let under = |prefix: &str| name == prefix || name.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'));
    if under("notice.group_increase") {
        &["member.increase"]
    } else if under("notice.group_decrease") {
        &["member.decrease"]
    } else if under("notice.group_recall") || under("notice.friend_recall") {
        &["recall"]
    } else if under("notice.notify.poke") {
        &["poke"]
    } else {
        &[]
    }
}

/// How the event is recognised when delivered twice: a message by its account and id (`123`
/// and `"123"` alike); meta events never; anything else by its whole content (`raw`).
fn identity(head: &Head<'_>, raw: &Raw, post_type: &str) -> Identity {
    use std::hash::{Hash, Hasher};
    let mut h = crate::event::id_hasher();
    match post_type {
        "meta_event" => Identity::None,
        "message" | "message_sent" if head.message_id.is_some() => {
            post_type.hash(&mut h);
            for slot in [&head.self_id, &head.message_type, &head.message_id] {
                hash_id(slot, &mut h);
            }
            Identity::Id(h.finish())
        }
        _ => {
            // Objects serialise with sorted keys: equal content, equal bytes.
            struct Feed<'h, H>(&'h mut H);
            impl<H: Hasher> std::io::Write for Feed<'_, H> {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.write(buf);
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let _ = serde_json::to_writer(Feed(&mut h), raw.tree());
            Identity::Content(h.finish())
        }
    }
}

/// Turns a script's message value into the array form every implementation accepts:
/// a CQ string is parsed, one segment map is wrapped.
pub fn normalize_message(message: Value) -> Value {
    match message {
        Value::String(s) => Value::Array(cq::parse(&s)),
        Value::Object(_) => Value::Array(vec![message]),
        other => other,
    }
}

/// Prepares action params for the wire: a `message` is normalised to segments, except that a
/// string with `auto_escape: true` is sent as one literal text segment (no CQ parsing).
pub fn prepare_params(mut params: Value) -> Value {
    let escape = params.get("auto_escape").and_then(Value::as_bool) == Some(true);
    if let Some(message) = params.get_mut("message") {
        *message = match message.take() {
            Value::String(s) if escape => json!([{"type": "text", "data": {"text": s}}]),
            other => normalize_message(other),
        };
    }
    params
}

/// The call that answers `ev`: to its group if it has one, else privately to its user.
pub fn reply_call(ev: &Event, message: Value) -> Result<(&'static str, Value), CallError> {
    let message = normalize_message(message);
    // A message's name is `post_type.message_type...`: no need to parse the raw event.
    let mut parts = ev.name.split('.');
    let (post_type, message_type) = (parts.next(), parts.next());
    let private = matches!(post_type, Some("message" | "message_sent")) && message_type == Some("private");
    if matches!(post_type, Some("message" | "message_sent")) && message_type == Some("guild") {
        // go-cqhttp's guild channels: answered in the channel (its user ids are tiny ids, which
        // no private message reaches).
        let raw = ev.raw();
        let member = |k: &str| raw.get(k).cloned().unwrap_or(Value::Null);
        let (guild_id, channel_id) = (member("guild_id"), member("channel_id"));
        if !guild_id.is_null() && !channel_id.is_null() {
            let params = object([("guild_id", guild_id), ("channel_id", channel_id), ("message", message)]);
            return Ok(("send_guild_channel_msg", params));
        }
        return Err(CallError::NoTarget { event: ev.name.clone() });
    }
    let in_group = !private && !ev.group_id.is_null();
    if in_group {
        return Ok(("send_group_msg", object([("group_id", ev.group_id.clone()), ("message", message)])));
    }
    // The bot's own private message names the bot as `user_id`; its peer is `target_id`.
    let peer = match post_type {
        Some("message_sent") => ev.raw().get("target_id").filter(|id| !id.is_null()).cloned(),
        _ => None,
    };
    match peer.unwrap_or_else(|| ev.user_id.clone()) {
        Value::Null => Err(CallError::NoTarget { event: ev.name.clone() }),
        user => Ok(("send_private_msg", object([("user_id", user), ("message", message)]))),
    }
}

#[cfg(test)]
mod tests {
    use super::payload::read_head;
    use super::*;
    fn bot() -> Arc<Bot> {
        Bot::detached("t", &PROTOCOL)
    }

    fn decode(raw: Value) -> Event {
        decode_event(&bot(), raw, 1).expect("a well-formed event")
    }

    #[test]
    fn names_events_and_reads_cq_strings() {
        let ev = decode(json!({"post_type": "message", "message_type": "group", "sub_type": "normal",
                   "group_id": 5, "user_id": 7, "message_id": 9, "message": "hi [CQ:face,id=1]",
                   "sender": {"nickname": "n"}}));
        assert_eq!(ev.name, "message.group.normal");
        assert_eq!(ev.keys(), ["message_group_normal", "message_group", "message"]);
        assert_eq!(ev.text, "hi");
        assert_eq!(ev.segments()[1]["type"], "face");
        assert_eq!(ev.sender()["nickname"], "n");
        let ev = decode(json!({"post_type": "notice", "notice_type": "notify", "sub_type": "poke"}));
        assert_eq!(ev.name, "notice.notify.poke");
        assert!(ev.segments().is_null());
    }

    #[test]
    fn at_me_and_reply_are_read_from_segments() {
        let ev =
            decode(json!({"post_type": "message", "message_type": "group", "self_id": 99, "group_id": 1, "user_id": 2,
                   "message": "[CQ:reply,id=55][CQ:at,qq=99] ping "}));
        assert!(ev.at_me);
        assert_eq!(ev.reply_to, json!(55));
        assert_eq!(ev.text, "ping");
    }

    #[test]
    fn the_same_event_twice_has_the_same_identity() {
        let a = json!({"post_type": "message", "message_type": "group", "self_id": 1, "message_id": 7, "time": 1});
        let b = json!({"post_type": "message", "message_type": "group", "self_id": "1", "message_id": "7", "time": 2});
        let c = json!({"post_type": "message", "message_type": "group", "self_id": 1, "message_id": 8, "time": 1});
        let identity = |v: &Value, post_type| {
            let text = v.to_string();
            identity(&read_head(text.as_bytes()).unwrap().unwrap(), &Raw::from(v.clone()), post_type)
        };
        assert_eq!(identity(&a, "message"), identity(&b, "message"), "ids as numbers or strings are one id");
        assert_ne!(identity(&a, "message"), identity(&c, "message"));
        let poke = |target: i64| json!({"post_type": "notice", "notice_type": "notify", "sub_type": "poke", "time": 1, "target_id": target});
        assert!(matches!(identity(&poke(1), "notice"), Identity::Content(_)));
        assert_eq!(identity(&poke(1), "notice"), identity(&poke(1), "notice"));
        assert_ne!(identity(&poke(1), "notice"), identity(&poke(2), "notice"));
        assert_eq!(identity(&json!({"post_type": "meta_event"}), "meta_event"), Identity::None);
    }

    #[test]
    fn a_frame_read_by_its_head_decodes_as_the_whole_tree_does() {
        let frames = [
            json!({"time": 1, "self_id": 10001, "post_type": "message", "message_type": "group", "sub_type": "normal",
                "message_id": 7, "user_id": 2, "group_id": 3, "font": 14, "raw_message": "x",
                "message": [{"type": "at", "data": {"qq": "10001"}}, {"type": "text", "data": {"text": " hi "}},
                    {"type": "reply", "data": {"id": "5"}}],
                "sender": {"user_id": 2, "role": "admin", "card": "c\"é"}}),
            json!({"self_id": 10001, "post_type": "message", "message_type": "private", "message_id": "8",
                "user_id": 2, "message": "[CQ:face,id=1]hi&amp;", "sender": {"nickname": "n"}}),
            // Segments of every shape: data before type, ids as numbers, odd members, non-objects.
            json!({"self_id": 10001, "post_type": "message", "message_type": "private", "message_id": 9, "user_id": 2,
                "message": [{"data": {"text": "a\"é\n"}, "type": "text"}, {"type": "at", "data": {"qq": 10001}},
                    {"type": "text", "data": {"text": 5}}, {"type": 1, "data": {"text": "no"}}, "x", 3, null, [1],
                    {"type": "reply", "data": {"id": 12}}, {"type": "at", "data": "qq"}, {"type": "text"},
                    {"type": "image", "data": {"file": "f", "extra": {"deep": [1, {"a": "b"}]}}},
                    {"type": "reply", "data": {"id": {"odd": true}}}, {"type": "at", "data": {"qq": "all"}},
                    {"type": "text", "data": {"text": " b ", "text2": "c"}}]}),
            json!({"self_id": 10001, "post_type": "message", "message_type": "group", "message_id": 10, "user_id": 2,
                "group_id": 3, "message": {"not": "a message"}}),
            json!({"self_id": 10001, "post_type": "message", "message_type": "group", "message_id": 11, "user_id": 2,
                "group_id": 3, "message": [{"type": "reply", "data": {"id": "x1"}}, {"type": "at", "data": {"qq": "10001"}}]}),
            json!({"post_type": "notice", "notice_type": "group_increase", "sub_type": "approve", "group_id": 3,
                "user_id": 4, "operator_id": 5, "time": 9}),
            json!({"post_type": "request", "request_type": "group", "sub_type": "add", "flag": "f", "group_id": 3,
                "comment": "let me in"}),
            json!({"post_type": "meta_event", "meta_event_type": "heartbeat", "interval": 5000,
                "status": {"online": true}}),
        ];
        for frame in frames {
            let text = bytes::Bytes::from(frame.to_string());
            let head = read_head(&text).unwrap().unwrap();
            let lazy = super::decode(&bot(), head, Raw::text(&text), 1).unwrap();
            // What the frame says, read from the tree: a slot read from the wrong member shows.
            let member = |k: &str| frame.get(k).cloned().unwrap_or(Value::Null);
            assert_eq!(
                [&lazy.user_id, &lazy.group_id, &lazy.message_id],
                [&member("user_id"), &member("group_id"), &member("message_id")]
            );
            let parts = ["post_type", "message_type", "notice_type", "request_type", "meta_event_type", "sub_type"];
            let name: Vec<&str> = parts.iter().filter_map(|k| frame.get(*k).and_then(Value::as_str)).collect();
            assert_eq!(lazy.name, name.join("."), "{frame}");
            // A POSTed event, a test's or the console's: the whole tree is the raw event.
            let whole = decode_event(&bot(), frame.clone(), 1).unwrap();
            // An array message is read from the raw text if asked for; a CQ string is parsed here.
            assert_eq!(lazy.parsed_segments.is_some(), frame["message"].is_string(), "{frame}");
            lazy.assert_decoded_like(&whole, &frame);
        }
    }

    #[test]
    fn a_message_read_apart_is_checked_like_the_rest_of_the_frame() {
        let bad = r#""x\ud800y""#;
        // Nested as deep as a full parse allows, then one level more.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let (deepest, too_deep) = (1..200)
            .map(deep)
            .partition::<Vec<_>, _>(|m| serde_json::from_str::<Value>(&format!(r#"{{"message":{m}}}"#)).is_ok());
        let (deepest, too_deep) = (deepest.last().unwrap().clone(), too_deep[0].clone());
        for (frame, good) in [
            (
                r#"{"post_type":"message","message_type":"private","user_id":1,"message":[{"type":"text","data":{"text":BAD}}]}"#,
                false,
            ),
            (
                r#"{"post_type":"message","message_type":"private","user_id":1,"message":[{"type":"image","data":{"url":BAD}}]}"#,
                false,
            ),
            (r#"{"post_type":"notice","notice_type":"x","message":{"a":BAD}}"#, false),
            (r#"{"post_type":"message","message_type":"private","user_id":1,"message":BAD,"message":"hi"}"#, false),
            (r#"{"echo":1,"status":"failed","retcode":1,"message":BAD}"#, false),
            (r#"{"post_type":"message","message_type":"private","user_id":1,"message":DEEPEST}"#, true),
            (r#"{"post_type":"message","message_type":"private","user_id":1,"message":TOO_DEEP}"#, false),
        ] {
            let text = frame.replace("BAD", bad).replace("TOO_DEEP", &too_deep).replace("DEEPEST", &deepest);
            assert_eq!(serde_json::from_str::<Value>(&text).is_ok(), good, "a full parse: {text}");
            assert_eq!(read_head(text.as_bytes()).is_ok(), good, "the head: {text}");
        }
    }

    #[test]
    fn names_from_the_wire_are_bounded_and_checked() {
        // 400,000 characters of dots once cost memory and time with the square of the length.
        let dots = json!({"time": 1, "self_id": 10001, "post_type": "a.".repeat(200_000)});
        assert!(decode_event(&bot(), dots, 1).is_err());
        let bad_sub = json!({"post_type": "notice", "notice_type": "notify", "sub_type": "x\n2026 ERROR forged"});
        let e = decode_event(&bot(), bad_sub, 1).expect_err("malformed");
        assert!(!e.to_string().contains('\n'), "escaped for the log: {e}");
        assert!(decode_event(&bot(), json!({"post_type": 5}), 1).is_err());
        assert!(decode_event(&bot(), json!({"post_type": "notice", "notice_type": ["x"]}), 1).is_err());
    }

    #[test]
    fn required_fields_are_checked_at_decode() {
        let group = |extra: Value| {
            let mut v = json!({"post_type": "message", "message_type": "group", "message": "hi", "message_id": 1});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            decode_event(&bot(), v, 1)
        };
        assert!(group(json!({"user_id": 2})).is_err(), "a group message without a group");
        assert!(group(json!({"group_id": 3})).is_err(), "a message without a sender");
        assert!(group(json!({"group_id": 3, "user_id": 2})).is_ok());
        assert!(
            decode_event(&bot(), json!({"post_type": "request", "request_type": "friend", "user_id": 2}), 1).is_err()
        );
        let recall = json!({"post_type": "notice", "notice_type": "group_recall", "user_id": 2, "message_id": 1});
        assert!(decode_event(&bot(), recall, 1).is_err());
    }

    #[test]
    fn a_reply_without_a_target_is_its_own_error() {
        let ev = decode(json!({"post_type": "notice", "notice_type": "notify", "sub_type": "poke"}));
        assert!(matches!(reply_call(&ev, json!("x")), Err(CallError::NoTarget { .. })));
    }

    #[test]
    fn auto_escape_keeps_cq_text_literal() {
        let p = prepare_params(json!({"message": "[CQ:at,qq=1]", "auto_escape": true}));
        assert_eq!(p["message"], json!([{"type": "text", "data": {"text": "[CQ:at,qq=1]"}}]));
        let p = prepare_params(json!({"message": "[CQ:at,qq=1]"}));
        assert_eq!(p["message"][0]["type"], "at");
    }

    #[test]
    fn message_sent_never_looks_like_message() {
        let ev = decode(json!({"post_type": "message_sent", "message_type": "private", "user_id": 1, "message": []}));
        assert!(!ev.keys().iter().any(|k| k == "message"));
    }

    #[test]
    fn error_text_from_message_wording_or_msg() {
        for body in [
            json!({"status": "failed", "retcode": 100, "message": "bad", "echo": 1}),
            json!({"status": "failed", "retcode": 100, "message": "", "wording": "bad"}),
            json!({"status": "failed", "retcode": 100, "msg": "bad"}),
        ] {
            assert_eq!(decode_response(body), Err((100, "bad".to_owned())));
        }
        assert_eq!(decode_response(json!({"status": "ok", "retcode": 0, "data": {"a": 1}})), Ok(json!({"a": 1})));
        // Taken to be done later (an `_async` action): a success, over HTTP and over a socket.
        let taken = json!({"status": "async", "retcode": 1, "data": null, "echo": 7});
        assert_eq!(decode_response(taken.clone()), Ok(Value::Null));
        let text = taken.to_string();
        let head = read_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(head.response(), Ok(Value::Null));
    }

    #[test]
    fn replies_go_where_the_event_came_from() {
        let ev = decode(json!({"post_type": "message", "message_type": "private", "user_id": 7, "message": []}));
        let (action, params) = reply_call(&ev, json!("pong")).unwrap();
        assert_eq!(action, "send_private_msg");
        assert_eq!(params, json!({"user_id": 7, "message": [{"type": "text", "data": {"text": "pong"}}]}));
        let to = |ev: &Event| {
            reply_call(ev, json!("x")).map(|(action, mut p)| {
                let message = p.as_object_mut().and_then(|o| o.remove("message"));
                (action, message, p)
            })
        };
        // The bot's own private message: `user_id` is the bot, the peer is `target_id`.
        let sent = decode(json!({"post_type": "message_sent", "message_type": "private", "self_id": 1,
            "user_id": 1, "target_id": 2, "message_id": 5, "message": []}));
        assert_eq!(to(&sent).unwrap().2, json!({"user_id": 2}));
        // NapCat's temporary chat names the group it came from: still a private chat.
        let temp = decode(json!({"post_type": "message", "message_type": "private", "sub_type": "group",
            "user_id": 2, "group_id": 3, "message_id": 6, "message": []}));
        assert_eq!((temp.group_id.clone(), to(&temp).unwrap().2), (Value::Null, json!({"user_id": 2})));
        // go-cqhttp's guild channel message: answered in the channel, not to a tiny id.
        let guild = decode(json!({"post_type": "message", "message_type": "guild", "sub_type": "channel",
            "guild_id": "G", "channel_id": "C", "user_id": "144115218678093982", "message_id": "m", "message": []}));
        assert_eq!(to(&guild).unwrap().0, "send_guild_channel_msg");
        assert_eq!(to(&guild).unwrap().2, json!({"guild_id": "G", "channel_id": "C"}));
        // ... where the bot is @-mentioned by its tiny id.
        let at = decode(json!({"post_type": "message", "message_type": "guild", "sub_type": "channel",
            "self_id": 1, "self_tiny_id": "144115218678093999", "guild_id": "G", "channel_id": "C", "user_id": "2",
            "message_id": "m", "message": [{"type": "at", "data": {"qq": "144115218678093999"}}]}));
        assert!(at.at_me && !guild.at_me);
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Any JSON value, nested a few levels, with the keys decoders look at most likely.
        fn json() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just("post_type".to_owned()),
                Just("message_type".to_owned()),
                Just("notice_type".to_owned()),
                Just("sub_type".to_owned()),
                Just("message".to_owned()),
                Just("user_id".to_owned()),
                Just("group_id".to_owned()),
                Just("message_id".to_owned()),
                Just("echo".to_owned()),
                Just("retcode".to_owned()),
                Just("status".to_owned()),
                Just("data".to_owned()),
                "[a-z_.]{0,12}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                prop_oneof![
                    Just("message".to_owned()),
                    Just("group".to_owned()),
                    Just("notice".to_owned()),
                    Just("a.a.a".to_owned()),
                    ".*",
                    "\\[CQ:[a-z]{0,5}(,[a-z]{0,3}=[^\\]]{0,5}){0,3}\\]",
                ]
                .prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 64, 8, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(key.clone(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic_a_frame_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    decode_any(v);
                }
            }

            #[test]
            fn arbitrary_json_never_panics_and_keys_stay_bounded(v in json()) {
                decode_any(v.clone());
                let mut event = v;
                if let Some(map) = event.as_object_mut() {
                    map.entry("post_type").or_insert(json!("message"));
                }
                decode_any(event);
            }

            #[test]
            fn arbitrary_cq_strings_parse_without_panic_into_bounded_output(s in ".{0,200}|(\\[CQ:[a-z,=&#;\\[\\]]{0,30}){0,5}") {
                let segs = cq::parse(&s);
                prop_assert!(segs.len() <= s.len() + 1);
                let _ = Summary::of(&summary::ONEBOT, &segs);
                let _ = cq::format(&segs);
            }
        }

        /// Runs every decoder a frame can reach, as the session does.
        fn decode_any(v: Value) {
            let _ = decode_response(v.clone());
            let text = v.to_string();
            match read_head(text.as_bytes()) {
                Ok(Some(head)) if head.post_type.is_some() => {
                    let from_text = crate::adapter::onebot11::decode(&bot(), head, Raw::text(text.as_bytes()), 1);
                    if let Ok(ev) = decode_event(&bot(), v, 1) {
                        assert!(ev.keys().len() <= crate::event::MAX_NAME_PARTS + 1);
                        let _ = ev.segments();
                        let _ = reply_call(&ev, json!("x"));
                        assert_eq!(from_text.map(|e| e.name).ok(), Some(ev.name), "the text decodes as the tree");
                    }
                }
                Ok(Some(head)) => {
                    let _ = head.response();
                }
                _ => {}
            }
        }
    }
}
