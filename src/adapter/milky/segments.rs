//! Milky message segments: incoming ones made safe to read (Milky's compatibility rules: an
//! unknown segment type reads as text, an item that is not a segment is skipped), and the
//! messages scripts build (`msg::` builders make OneBot-shaped segments) turned into Milky's
//! outgoing segments. A builder Milky cannot express is a clear error naming the protocol.

use serde_json::{Map, Value, json};

use crate::adapter::summary::Dialect;
use crate::bot::CallError;

/// Milky's segment names for routing: a mention names whom by `user_id`, a mention of everyone
/// mentions the bot too, a reply names the message by `message_seq`, an unknown type reads as
/// its summary, as [`incoming`] has it, and ids are integers (one given as text is not one).
pub static MILKY: Dialect = Dialect {
    mention: ("mention", "user_id"),
    mention_all: Some("mention_all"),
    reply: ("reply", "message_seq"),
    known: Some(KNOWN_INCOMING),
    text_ids: false,
};

/// Incoming segment types this runtime knows; others read as text.
const KNOWN_INCOMING: &[&str] = &[
    "text",
    "mention",
    "mention_all",
    "face",
    "reply",
    "image",
    "record",
    "video",
    "file",
    "forward",
    "market_face",
    "light_app",
    "xml",
];

/// `segments` of an incoming message, normalised: unknown types become a `text` segment
/// carrying their summary (or `[type]`), and items that are not segments are dropped. Each
/// segment's `data` is moved, not copied.
pub fn incoming(segments: Value) -> Vec<Value> {
    let Value::Array(items) = segments else { return Vec::new() };
    items
        .into_iter()
        .filter_map(|seg| {
            let Value::Object(mut seg) = seg else { return None };
            let Some(Value::String(kind)) = seg.remove("type") else { return None };
            let data = seg.remove("data").filter(Value::is_object).unwrap_or_else(|| json!({}));
            if KNOWN_INCOMING.contains(&kind.as_str()) {
                return Some(json!({"type": kind, "data": data}));
            }
            let text = data.get("summary").and_then(Value::as_str).map_or_else(|| format!("[{kind}]"), str::to_owned);
            Some(json!({"type": "text", "data": {"text": text}}))
        })
        .collect()
}

/// A text segment holding `text` (moved in, not copied as `json!` would).
fn text_segment(text: String) -> Value {
    crate::adapter::object([
        ("type", Value::String("text".to_owned())),
        ("data", crate::adapter::object([("text", Value::String(text))])),
    ])
}

/// The plain text of incoming segments.
pub fn plain_text(segments: &[Value]) -> String {
    segments.iter().filter(|s| s["type"] == "text").filter_map(|s| s["data"]["text"].as_str()).collect()
}

/// Converts the `message` parameter of an action, if it has one, into Milky outgoing segments.
pub fn prepare_params(action: &str, mut params: Value) -> Result<Value, CallError> {
    if let Some(message) = params.get_mut("message") {
        *message = Value::Array(outgoing(action, message.take())?);
    }
    Ok(params)
}

/// A script's message as Milky outgoing segments: a string is text; a segment or an array of
/// segments is converted one by one (OneBot-shaped `msg::` segments and Milky's own alike).
pub fn outgoing(action: &str, message: Value) -> Result<Vec<Value>, CallError> {
    let items = match message {
        Value::String(text) => return Ok(vec![text_segment(text)]),
        Value::Object(_) => vec![message],
        Value::Array(items) => items,
        other => {
            return Err(invalid(action, format!("a message is a string, a segment or an array of them, not {other}")));
        }
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text_segment(text)),
            Value::Object(seg) => segment(action, seg),
            other => Err(invalid(action, format!("{other} is not a message segment"))),
        })
        .collect()
}

/// Where a media segment's file is: Milky's `uri`, OneBot's `file` or `url`, or the `temp_url`
/// an incoming one carries (so a script can send back what it received: `ev.reply(ev.segments)`).
const MEDIA_URI: &[&str] = &["uri", "file", "url", "temp_url"];

fn segment(action: &str, seg: Map<String, Value>) -> Result<Value, CallError> {
    let kind = seg.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
    let data = seg.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
    let get = |keys: &[&str]| keys.iter().find_map(|k| data.get(*k).filter(|v| !v.is_null()).cloned());
    let int = |v: Value| match v {
        Value::String(s) => s.trim().parse::<i64>().map(Value::from).unwrap_or(Value::String(s)),
        other => other,
    };
    let string = |v: Value| match v {
        Value::String(s) => Value::String(s),
        other => Value::String(other.to_string()),
    };
    let need =
        |what: &str, v: Option<Value>| v.ok_or_else(|| invalid(action, format!("a `{kind}` segment needs `{what}`")));
    // The optional fields Milky's OutgoingSegment defines for a type, kept when given.
    let with = |mut required: Value, optional: &[(&str, &[&str])]| {
        for (name, keys) in optional {
            if let Some(v) = get(keys) {
                required[*name] = v;
            }
        }
        json!({"type": kind, "data": required})
    };
    let out = match kind.as_str() {
        "text" => json!({"type": "text", "data": {"text": need("text", get(&["text"]))?}}),
        "at" | "mention" => match get(&["qq", "user_id"]) {
            Some(Value::String(all)) if all == "all" => json!({"type": "mention_all", "data": {}}),
            qq => json!({"type": "mention", "data": {"user_id": int(need("qq", qq)?)}}),
        },
        "mention_all" => json!({"type": "mention_all", "data": {}}),
        "face" => {
            with(json!({"face_id": string(need("id", get(&["id", "face_id"]))?)}), &[("is_large", &["is_large"])])
        }
        "reply" => json!({"type": "reply", "data": {"message_seq": int(need("id", get(&["id", "message_seq"]))?)}}),
        "image" => with(
            json!({"uri": need("file", get(MEDIA_URI))?}),
            &[("sub_type", &["sub_type"]), ("summary", &["summary"])],
        ),
        "record" => json!({"type": "record", "data": {"uri": need("file", get(MEDIA_URI))?}}),
        // OneBot's `thumb` is the cover Milky calls `thumb_uri`.
        "video" => with(json!({"uri": need("file", get(MEDIA_URI))?}), &[("thumb_uri", &["thumb_uri", "thumb"])]),
        "forward" if data.contains_key("messages") => {
            // Each forwarded message's segments are converted as the top level's are.
            let mut data = data;
            if let Some(Value::Array(messages)) = data.get_mut("messages") {
                for segments in messages.iter_mut().filter_map(|m| m.get_mut("segments")) {
                    *segments = Value::Array(outgoing(action, segments.take())?);
                }
            }
            json!({"type": "forward", "data": data})
        }
        // Milky 1.2 (the real protocol; seed 001 is 1.0): a light app is sent as its JSON text.
        "light_app" => {
            json!({"type": "light_app", "data": {"json_payload": string(need("json_payload", get(&["json_payload"]))?)}})
        }
        other => {
            return Err(invalid(
                action,
                format!(
                    "a `{other}` segment cannot be sent over Milky (it has text, mention, face, reply, image, record, video, forward and light_app)"
                ),
            ));
        }
    };
    Ok(out)
}

fn invalid(action: &str, reason: String) -> CallError {
    CallError::Invalid { action: action.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What decoding reads of `segments`, from their text and from their tree (which must agree).
    fn summary(segments: &Value, self_id: Option<i64>) -> (String, bool, Value) {
        use serde::de::DeserializeSeed;
        let seed = crate::adapter::summary::SegmentsSeed { dialect: &MILKY };
        let text = segments.to_string();
        let read = seed.deserialize(&mut serde_json::Deserializer::from_str(&text)).unwrap();
        let tree = seed.deserialize(segments).unwrap();
        let [read, tree] = [read, tree].map(|s| {
            let at_me = s.mentions(self_id.unwrap_or(0));
            (s.text, at_me, s.reply_to)
        });
        assert_eq!(read, tree, "{segments}");
        read
    }

    /// What decoding read before the summary: the segments built, then read.
    fn built_then_read(segments: &Value, self_id: Option<i64>) -> (String, bool, Value) {
        let segs = incoming(segments.clone());
        let (mut at_me, mut reply_to) = (false, Value::Null);
        for seg in &segs {
            match seg["type"].as_str() {
                Some("mention") => at_me |= self_id.is_some() && seg["data"]["user_id"].as_i64() == self_id,
                Some("mention_all") => at_me = true,
                Some("reply") => reply_to = seg["data"]["message_seq"].clone(),
                _ => {}
            }
        }
        (plain_text(&segs), at_me, reply_to)
    }

    #[test]
    fn the_summary_reads_what_the_built_segments_say() {
        let cases = [
            json!([{"type": "text", "data": {"text": "a"}}, {"type": "text", "data": {"text": "b"}}]),
            json!([{"type": "mention", "data": {"user_id": 1}}, {"type": "text", "data": {"text": " hi"}}]),
            json!([{"type": "mention", "data": {"user_id": 2}}, {"type": "mention_all", "data": {}}]),
            json!([{"type": "reply", "data": {"message_seq": 7}}, {"type": "reply", "data": {}}]),
            json!([{"type": "mention", "data": {"user_id": "1"}}, {"type": "reply", "data": {"message_seq": "7"}}]),
            json!([{"type": "mention", "data": {"user_id": 1.0}}, {"type": "mention", "data": {"user_id": [1]}}]),
            json!([{"type": "dice", "data": {"summary": "[dice 6]"}}, {"type": "poke"}, {"type": "x", "data": 3}]),
            json!(["loose", 5, {"data": {"text": "no type"}}, {"type": 1}, {"type": "text", "data": {"text": 2}}]),
            json!([{"type": "text"}, {"type": "image", "data": {"summary": "not read for a known type"}}]),
            json!("not an array"),
            json!([]),
        ];
        for segments in cases {
            for self_id in [Some(1), None] {
                assert_eq!(summary(&segments, self_id), built_then_read(&segments, self_id), "{segments} {self_id:?}");
            }
        }
    }

    #[test]
    fn msg_builders_become_milky_segments() {
        let message = json!([
            {"type": "text", "data": {"text": "hi "}},
            {"type": "at", "data": {"qq": "10086"}},
            {"type": "at", "data": {"qq": "all"}},
            {"type": "face", "data": {"id": 14}},
            {"type": "reply", "data": {"id": "55"}},
            {"type": "image", "data": {"file": "base64://AAAA"}},
        ]);
        assert_eq!(
            outgoing("send_group_message", message).unwrap(),
            vec![
                json!({"type": "text", "data": {"text": "hi "}}),
                json!({"type": "mention", "data": {"user_id": 10086}}),
                json!({"type": "mention_all", "data": {}}),
                json!({"type": "face", "data": {"face_id": "14"}}),
                json!({"type": "reply", "data": {"message_seq": 55}}),
                json!({"type": "image", "data": {"uri": "base64://AAAA"}}),
            ]
        );
        assert_eq!(outgoing("x", json!("plain")).unwrap(), vec![json!({"type": "text", "data": {"text": "plain"}})]);
        // What an event brought is sent back from its temporary URL.
        let received = json!([{"type": "image", "data": {"resource_id": "r", "temp_url": "https://t/x.png",
            "width": 1, "height": 1, "summary": "[图片]", "sub_type": "normal"}}]);
        assert_eq!(
            outgoing("x", received).unwrap(),
            vec![
                json!({"type": "image", "data": {"uri": "https://t/x.png", "summary": "[图片]", "sub_type": "normal"}})
            ]
        );
        let e = outgoing("x", json!([{"type": "dice", "data": {}}])).unwrap_err().to_string();
        assert!(e.contains("`dice`") && e.contains("Milky"), "{e}");
    }

    #[test]
    fn unknown_incoming_segments_read_as_text_and_junk_is_skipped() {
        let segs = incoming(json!([
            {"type": "text", "data": {"text": "a"}},
            {"type": "shiny_new", "data": {"summary": "[新东西]"}},
            {"type": "other_new", "data": {}},
            42,
            {"no_type": true},
        ]));
        assert_eq!(segs.len(), 3);
        assert_eq!(plain_text(&segs), "a[新东西][other_new]");
    }
}
