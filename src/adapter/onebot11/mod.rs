//! OneBot 11 (seed 001, paths without `/api/`): event decoding, action responses, replies,
//! and the transports that carry them.

pub mod actions;
pub mod cq;
pub mod events;
pub mod ws;

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Bot, CallError};
use crate::event::Event;

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
    let mut ev = Event::new(bot.clone(), name, &[], raw);
    ev.text = text;
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

/// Turns a script's message value into the array form every implementation accepts:
/// a CQ string is parsed, one segment map is wrapped.
pub fn normalize_message(message: Value) -> Value {
    match message {
        Value::String(s) => Value::Array(cq::parse(&s)),
        Value::Object(_) => Value::Array(vec![message]),
        other => other,
    }
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
        assert_eq!(ev.text, "hi ");
        assert_eq!(ev.segments()[1]["type"], "face");
        assert_eq!(ev.sender()["nickname"], "n");
        let ev = decode_event(&bot(), json!({"post_type": "notice", "notice_type": "notify", "sub_type": "poke"}));
        assert_eq!(ev.name, "notice.notify.poke");
        assert!(ev.segments().is_null());
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
