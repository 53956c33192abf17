//! OneBot 11 over forward WebSocket: events and action responses built as strings, action calls
//! parsed only as far as needed. Everything happens on the one socket at `/`.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::server::Shared;
use crate::wire::{EventFields, first_number, segments_number};

/// The lifecycle meta event sent right after the client connects.
pub const LIFECYCLE: &str =
    r#"{"time":1,"self_id":10000,"post_type":"meta_event","meta_event_type":"lifecycle","sub_type":"connect"}"#;

/// A group-message event.
pub fn event(f: EventFields<'_>) -> String {
    format!(
        concat!(
            r#"{{"time":1700000000,"self_id":10000,"post_type":"message","message_type":"group","#,
            r#""sub_type":"normal","message_id":{seq},"message_seq":{seq},"user_id":{user},"group_id":{group},"#,
            r#""message":[{{"type":"text","data":{{"text":"{text}"}}}}],"message_format":"array","#,
            r#""raw_message":"{text}","font":14,"#,
            r#""sender":{{"user_id":{user},"nickname":"load","card":"","role":"member"}}}}"#
        ),
        seq = f.seq,
        user = f.user,
        group = f.group,
        text = f.text,
    )
}

/// Answers one action frame (its response frame), noting a sent message with the session.
pub fn on_frame(frame: &str, shared: &Shared) -> Option<String> {
    let Ok(action) = parse_action(frame) else {
        shared.notes.malformed();
        return None;
    };
    if action.sends_message {
        shared.notes.reply(action.number);
    }
    Some(response(shared.next_id(), action.echo))
}

/// The success response to an action call, carrying `echo` back verbatim.
pub fn response(message_id: u64, echo: Option<&RawValue>) -> String {
    let head = format!(r#"{{"status":"ok","retcode":0,"data":{{"message_id":{message_id}}},"message":"","wording":"""#);
    match echo {
        Some(echo) => format!(r#"{head},"echo":{}}}"#, echo.get()),
        None => head + "}",
    }
}

/// What the load generator needs to know about one action call.
#[derive(Debug)]
pub struct Action<'a> {
    /// The call's `echo`, verbatim.
    pub echo: Option<&'a RawValue>,
    /// Whether the call carries `params.message`, i.e. sends a message (a reply).
    pub sends_message: bool,
    /// The first run of ASCII digits in the message's text, if any.
    pub number: Option<u64>,
}

/// The fields of an action frame that matter; everything else is skipped unparsed.
#[derive(Deserialize)]
struct RawAction<'a> {
    /// Required, so that frames without an action are rejected, but never looked at.
    #[serde(rename = "action")]
    _action: IgnoredAny,
    /// The call's arguments.
    #[serde(default, borrow)]
    params: Option<RawParams<'a>>,
    /// Correlates the response with the call.
    #[serde(default, borrow, deserialize_with = "present")]
    echo: Option<&'a RawValue>,
}

/// The `params` of an action call.
#[derive(Deserialize)]
struct RawParams<'a> {
    /// The message to send: a CQ-code string or an array of segments.
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
}

/// A JSON string, borrowed from the frame when it has no escapes.
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Keeps a present `echo` even when it is `null`, so it can be returned verbatim.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Parses an action frame; `Err` means the frame is malformed.
pub fn parse_action(frame: &str) -> Result<Action<'_>, serde_json::Error> {
    let raw: RawAction = serde_json::from_str(frame)?;
    let message = raw.params.and_then(|p| p.message).filter(|m| m.get() != "null");
    let number = match message {
        None => None,
        Some(m) if m.get().starts_with('"') => {
            let Text(text) = serde_json::from_str(m.get())?;
            first_number([strip_cq(&text)])
        }
        Some(m) => segments_number(m.get())?,
    };
    Ok(Action { echo: raw.echo, sends_message: message.is_some(), number })
}

/// The escapes of CQ-code strings and what they stand for.
const ENTITIES: [(&str, char); 4] = [("&#91;", '['), ("&#93;", ']'), ("&#44;", ','), ("&amp;", '&')];

/// The plain text of a CQ-code string message: `[CQ:...]` codes dropped, the escapes `&#91;`, `&#93;`,
/// `&#44;` and `&amp;` decoded.
fn strip_cq(s: &str) -> Cow<'_, str> {
    if !s.contains(['[', '&']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(['[', '&']) {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if rest.starts_with("[CQ:") {
            rest = rest.find(']').map_or("", |end| &rest[end + 1..]);
            continue;
        }
        match ENTITIES.iter().find(|(entity, _)| rest.starts_with(entity)) {
            Some((entity, c)) => {
                out.push(*c);
                rest = &rest[entity.len()..];
            }
            None => {
                out.push_str(&rest[..1]);
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EventTemplate, Protocol};

    #[test]
    fn events_are_valid_json_with_the_sequence_number() {
        let template = EventTemplate::new(Protocol::Onebot11, "/echo {i} \"quoted\" {i}", 3);
        let frame = template.frame(7);
        let v: serde_json::Value = serde_json::from_str(&frame).expect("valid JSON");
        assert_eq!(v["message"][0]["data"]["text"], "/echo 7 \"quoted\" 7");
        assert_eq!(v["raw_message"], "/echo 7 \"quoted\" 7");
        assert_eq!(v["message_id"], 7);
        assert_eq!(v["user_id"], 100_007);
        assert_eq!(v["group_id"], 123_457);
        assert_eq!(v["sender"]["user_id"], 100_007);
        let v: serde_json::Value = serde_json::from_str(LIFECYCLE).expect("valid JSON");
        assert_eq!(v["meta_event_type"], "lifecycle");
    }

    #[test]
    fn responses_carry_the_echo_verbatim() {
        let action = parse_action(r#"{"action":"get_login_info","params":{},"echo":{"id": [1, "x"]}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_str(&response(5, action.echo)).unwrap();
        assert_eq!(v["echo"], serde_json::json!({"id": [1, "x"]}));
        assert_eq!(v["data"]["message_id"], 5);
        assert_eq!(v["retcode"], 0);
        assert!(response(1, None).ends_with(r#""wording":""}"#));
        let null_echo = parse_action(r#"{"action":"x","echo":null}"#).unwrap();
        assert!(response(1, null_echo.echo).ends_with(r#""echo":null}"#));
    }

    #[test]
    fn parses_array_and_string_messages() {
        let a = parse_action(
            r#"{"action":"send_group_msg","params":{"group_id":1,"message":[
                {"type":"reply","data":{"id":"9"}},{"type":"text","data":{"text":"re 4"}},
                {"type":"image","data":{"file":"1.png"}},{"type":"text","data":{"text":"2 ok"}}]},"echo":12}"#,
        )
        .unwrap();
        assert_eq!(a.echo.map(RawValue::get), Some("12"));
        assert!(a.sends_message);
        assert_eq!(a.number, Some(42));

        let s =
            parse_action(r#"{"action":"send_msg","params":{"message":"[CQ:at,qq=5] \u0033&#91;1&#93;"},"echo":"e"}"#)
                .unwrap();
        assert!(s.sends_message);
        assert_eq!(s.number, Some(3));

        let other = parse_action(r#"{"action":"get_login_info","params":null}"#).unwrap();
        assert!(!other.sends_message);
        assert!(other.echo.is_none());
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(parse_action("not json").is_err());
        assert!(parse_action(r#"{"params":{}}"#).is_err());
        assert!(parse_action(r#"{"action":"send_group_msg","params":{"message":42}}"#).is_err());
        assert!(parse_action(r#"{"action":"x","params":{"message":[{"type":"text","data":{"text":1}}]}}"#).is_err());
    }

    #[test]
    fn strips_cq_codes() {
        assert_eq!(strip_cq("plain"), "plain");
        assert_eq!(strip_cq("[CQ:face,id=1]a&#91;b&#93;&#44;&amp;&x["), "a[b],&&x[");
        assert_eq!(strip_cq("[CQ:unterminated"), "");
    }
}
