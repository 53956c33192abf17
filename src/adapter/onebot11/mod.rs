//! OneBot 11 (seed 001, paths without `/api/`): event decoding, action responses, replies,
//! and the transports that carry them.

pub mod actions;
pub mod cq;
pub mod events;
pub mod http;
pub mod reverse;
pub mod segments;
pub mod session;
pub mod sse;
pub mod ws;

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Bot, Call, CallError, EventSink};
use crate::config::{HttpEvents, OneBotConfig, OneBotTransport};
use crate::event::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Starts a OneBot 11 bot's transport. `calls` is the bot's call channel for the socket
/// transports (`None` for HTTP, whose calls are requests made by the caller).
pub fn start(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    calls: Option<mpsc::Receiver<Call>>,
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    match (cfg.transport.clone(), calls) {
        (OneBotTransport::Ws { url, split }, Some(calls)) => {
            ws::spawn(bot, cfg, url, split, calls, sink, shutdown, tasks)
        }
        (OneBotTransport::ReverseWs { listen, self_id }, Some(calls)) => {
            reverse::serve(bot, cfg, &listen, self_id, calls, sink, shutdown, tasks)?
        }
        (OneBotTransport::Http { url, events }, _) => match events {
            HttpEvents::None => {}
            HttpEvents::Sse => {
                tasks.spawn(sse::run(bot, cfg, url, sink, shutdown));
            }
            HttpEvents::Post { listen, path, secret, quick_timeout } => http::serve_post(
                bot,
                &listen,
                &path,
                secret,
                quick_timeout,
                cfg.max_frame_bytes,
                sink,
                shutdown,
                tasks,
            )?,
        },
        (_, None) => tracing::error!(bot = %bot.name, "socket transport without a call channel"),
    }
    Ok(())
}

/// Binds a listener for a receiving transport (inside the async runtime) and records the
/// address it got on the bot (`listen = "127.0.0.1:0"` picks a free port; `rhaibot status`
/// shows which).
pub fn bind(bot: &Bot, listen: &str) -> std::io::Result<tokio::net::TcpListener> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    listener.set_nonblocking(true)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(bot = %bot.name, %addr, "listening");
        *bot.listening.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(addr);
    }
    tokio::net::TcpListener::from_std(listener)
}

/// What one inbound frame turned out to be.
#[derive(Debug)]
pub enum Frame {
    /// An event (`post_type` present).
    Event(Value),
    /// An action response (`echo` present).
    Response {
        /// The echo we sent with the call.
        echo: Value,
        /// The decoded result.
        result: Result<Value, (i64, String)>,
    },
    /// Neither: logged and skipped.
    Unknown(Value),
}

/// Classifies a decoded JSON frame.
pub fn classify(v: Value) -> Frame {
    if v.get("post_type").is_some() {
        return Frame::Event(v);
    }
    let Some(echo) = v.get("echo").cloned() else {
        return Frame::Unknown(v);
    };
    Frame::Response { echo, result: decode_response(v) }
}

/// Reads an action response envelope: `status`/`retcode`/`data`, error text from `message`,
/// `wording` or `msg` (implementations differ; the first present wins).
pub fn decode_response(mut v: Value) -> Result<Value, (i64, String)> {
    let retcode = v.get("retcode").and_then(Value::as_i64).unwrap_or(0);
    let failed = v.get("status").and_then(Value::as_str) == Some("failed") || retcode != 0;
    if !failed {
        return Ok(v.get_mut("data").map(Value::take).unwrap_or(Value::Null));
    }
    let message = ["message", "wording", "msg"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or("no error message given")
        .to_owned();
    Err((if retcode == 0 { -1 } else { retcode }, message))
}

/// Turns a OneBot 11 event object into an [`Event`]. The native name is
/// `post_type.<detail>[.sub_type]`, where `<detail>` is `message_type`, `notice_type`,
/// `request_type` or `meta_event_type`.
pub fn decode_event(bot: &Arc<Bot>, mut raw: Value) -> Event {
    let post_type = raw.get("post_type").and_then(Value::as_str).unwrap_or("unknown");
    let detail_key = match post_type {
        "message" | "message_sent" => Some("message_type"),
        "notice" => Some("notice_type"),
        "request" => Some("request_type"),
        "meta_event" => Some("meta_event_type"),
        _ => None,
    };
    let mut name = post_type.to_owned();
    for key in detail_key.into_iter().chain(Some("sub_type")) {
        if let Some(part) = raw.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
            name.push('.');
            name.push_str(part);
        }
    }
    let is_message = matches!(post_type, "message" | "message_sent");
    // A CQ-string message is parsed once here; array messages stay in `raw` untouched.
    let parsed = match raw.get_mut("message") {
        Some(Value::String(s)) if is_message => Some(Value::Array(cq::parse(s))),
        _ => None,
    };
    let text = match parsed.as_ref().or_else(|| raw.get("message")) {
        Some(Value::Array(segs)) if is_message => cq::plain_text(segs),
        _ => String::new(),
    };
    let field = |k: &str| raw.get(k).cloned().unwrap_or(Value::Null);
    let (user_id, group_id, message_id) = (field("user_id"), field("group_id"), field("message_id"));
    let self_id = raw.get("self_id").and_then(Value::as_i64).unwrap_or(0);
    if self_id != 0 {
        bot.self_id.store(self_id, std::sync::atomic::Ordering::Relaxed);
    }
    let (at_me, reply_to) = match parsed.as_ref().or_else(|| raw.get("message")) {
        Some(Value::Array(segs)) if is_message => mentions(segs, self_id),
        _ => (false, Value::Null),
    };
    let dedup_key = dedup_key(&raw);
    let mut ev = Event::new(bot.clone(), name, &[], raw);
    // Leading and trailing blanks (left around an @-mention) are not part of what was said.
    ev.text = text.trim().to_owned();
    ev.at_me = at_me;
    ev.reply_to = reply_to;
    ev.dedup_key = dedup_key;
    ev.user_id = user_id;
    ev.group_id = group_id;
    ev.message_id = message_id;
    if is_message {
        ev.parsed_segments = parsed;
        ev.segments_at = "/message";
        ev.sender_at = "/sender";
    }
    ev
}

/// Whether `segs` @-mention `self_id`, and the id of the message they reply to.
fn mentions(segs: &[Value], self_id: i64) -> (bool, Value) {
    let mut at_me = false;
    let mut reply_to = Value::Null;
    for seg in segs {
        match seg.get("type").and_then(Value::as_str) {
            Some("at") => {
                let qq = seg.pointer("/data/qq").map(|q| q.as_str().map_or_else(|| q.to_string(), str::to_owned));
                at_me |= self_id != 0 && qq.as_deref() == Some(self_id.to_string().as_str());
            }
            Some("reply") => {
                let id = seg.pointer("/data/id").cloned().unwrap_or(Value::Null);
                // Message ids are integers on the wire elsewhere; keep them comparable.
                reply_to = id.as_str().and_then(|s| s.parse::<i64>().ok()).map_or(id, Value::from);
            }
            _ => {}
        }
    }
    (at_me, reply_to)
}

/// The same event delivered twice (two transports, a resend) hashes to the same key: a
/// message by its id, anything else by the fields that identify it.
fn dedup_key(raw: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let post_type = raw.get("post_type").and_then(Value::as_str).unwrap_or_default();
    let fields: &[&str] = match post_type {
        "message" | "message_sent" => &["self_id", "message_id", "message_type"],
        _ => &[
            "self_id",
            "time",
            "meta_event_type",
            "notice_type",
            "request_type",
            "sub_type",
            "user_id",
            "group_id",
            "operator_id",
            "target_id",
            "message_id",
            "flag",
            "duration",
        ],
    };
    post_type.hash(&mut h);
    for f in fields {
        match raw.get(*f) {
            Some(Value::Number(n)) => (f, n.as_i64(), n.as_u64()).hash(&mut h),
            Some(Value::String(s)) => (f, s).hash(&mut h),
            Some(other) => (f, other.to_string()).hash(&mut h),
            None => {}
        }
    }
    h.finish().max(1)
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
    let in_group = ev.raw.get("message_type").and_then(Value::as_str) != Some("private") && !ev.group_id.is_null();
    if in_group {
        return Ok(("send_group_msg", json!({"group_id": ev.group_id, "message": message})));
    }
    if !ev.user_id.is_null() {
        return Ok(("send_private_msg", json!({"user_id": ev.user_id, "message": message})));
    }
    Err(CallError::Invalid {
        action: "reply".into(),
        reason: format!("event `{}` has no group or user to reply to", ev.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Protocol;

    fn bot() -> Arc<Bot> {
        Bot::detached("t", Protocol::OneBot11)
    }

    #[test]
    fn names_events_and_reads_cq_strings() {
        let ev = decode_event(
            &bot(),
            json!({"post_type": "message", "message_type": "group", "sub_type": "normal",
                   "group_id": 5, "user_id": 7, "message_id": 9, "message": "hi [CQ:face,id=1]",
                   "sender": {"nickname": "n"}}),
        );
        assert_eq!(ev.name, "message.group.normal");
        assert_eq!(ev.keys(), ["message_group_normal", "message_group", "message"]);
        assert_eq!(ev.text, "hi");
        assert_eq!(ev.segments()[1]["type"], "face");
        assert_eq!(ev.sender()["nickname"], "n");
        let ev = decode_event(&bot(), json!({"post_type": "notice", "notice_type": "notify", "sub_type": "poke"}));
        assert_eq!(ev.name, "notice.notify.poke");
        assert!(ev.segments().is_null());
    }

    #[test]
    fn at_me_and_reply_are_read_from_segments() {
        let ev = decode_event(
            &bot(),
            json!({"post_type": "message", "message_type": "group", "self_id": 99, "group_id": 1, "user_id": 2,
                   "message": "[CQ:reply,id=55][CQ:at,qq=99] ping "}),
        );
        assert!(ev.at_me);
        assert_eq!(ev.reply_to, json!(55));
        assert_eq!(ev.text, "ping");
    }

    #[test]
    fn the_same_event_twice_has_the_same_key() {
        let a = json!({"post_type": "message", "message_type": "group", "self_id": 1, "message_id": 7, "time": 1});
        let b = json!({"post_type": "message", "message_type": "group", "self_id": 1, "message_id": 7, "time": 2});
        let c = json!({"post_type": "message", "message_type": "group", "self_id": 1, "message_id": 8, "time": 1});
        assert_eq!(dedup_key(&a), dedup_key(&b));
        assert_ne!(dedup_key(&a), dedup_key(&c));
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
        let ev = decode_event(&bot(), json!({"post_type": "message_sent", "message_type": "private", "message": []}));
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
    }

    #[test]
    fn replies_go_where_the_event_came_from() {
        let ev = decode_event(
            &bot(),
            json!({"post_type": "message", "message_type": "private", "user_id": 7, "message": []}),
        );
        let (action, params) = reply_call(&ev, json!("pong")).unwrap();
        assert_eq!(action, "send_private_msg");
        assert_eq!(params, json!({"user_id": 7, "message": [{"type": "text", "data": {"text": "pong"}}]}));
    }
}
