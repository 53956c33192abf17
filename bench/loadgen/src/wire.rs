//! What every protocol shares on the wire: which protocol is played, the text of each event with
//! its sequence number, and finding that number again in a reply's text or message segments.

use std::borrow::Cow;
use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{milky, onebot11, qq};

/// The bot backend the load generator plays.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OneBot 11, forward WebSocket: events and action calls on one socket at `/`.
    Onebot11,
    /// Milky: events on a WebSocket at `/event`, calls as `POST /api/<action>`.
    Milky,
    /// The official QQ bot platform: token and OpenAPI over HTTP, events from the WebSocket gateway.
    Qq,
}

impl Protocol {
    /// The name used on the command line and in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Onebot11 => "onebot11",
            Protocol::Milky => "milky",
            Protocol::Qq => "qq",
        }
    }
}

/// Builds group-message event frames from a text template in which `{i}` stands for the sequence number.
#[derive(Clone, Debug)]
pub struct EventTemplate {
    /// The protocol whose frames are built.
    protocol: Protocol,
    /// The template split at each `{i}`, every part already JSON-escaped (without quotes).
    parts: Vec<String>,
    /// How many distinct group ids the events cycle through.
    groups: u64,
}

/// One event's varying fields, handed to the protocol's frame builder.
#[derive(Clone, Copy, Debug)]
pub struct EventFields<'a> {
    /// The sequence number; unique per run.
    pub seq: u64,
    /// The message text, JSON-escaped without quotes.
    pub text: &'a str,
    /// The sender's numeric id.
    pub user: u64,
    /// The group's numeric id.
    pub group: u64,
}

impl EventTemplate {
    /// Prepares `text` (with `{i}` placeholders) for `protocol` events spread over `groups` groups.
    pub fn new(protocol: Protocol, text: &str, groups: u64) -> Self {
        let parts = text.split("{i}").map(escape).collect();
        EventTemplate { protocol, parts, groups: groups.max(1) }
    }

    /// The event frame for sequence number `seq`.
    pub fn frame(&self, seq: u64) -> String {
        let mut text = String::with_capacity(32);
        for (n, part) in self.parts.iter().enumerate() {
            if n > 0 {
                let _ = write!(text, "{seq}");
            }
            text.push_str(part);
        }
        let fields = EventFields { seq, text: &text, user: 100_000 + seq % 1000, group: 123_456 + seq % self.groups };
        match self.protocol {
            Protocol::Onebot11 => onebot11::event(fields),
            Protocol::Milky => milky::event(fields),
            Protocol::Qq => qq::event(fields),
        }
    }
}

/// `s` as the inside of a JSON string literal.
pub fn escape(s: &str) -> String {
    let quoted = serde_json::Value::from(s).to_string();
    quoted[1..quoted.len() - 1].to_owned()
}

/// One message segment; `data` is parsed only for text segments.
#[derive(Deserialize)]
struct Segment<'a> {
    /// The segment type, such as `text` or `image`.
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// The segment's fields.
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// The `data` of a text segment.
#[derive(Deserialize)]
struct TextData<'a> {
    /// The text.
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// The first number in the text segments of a JSON array of message segments
/// (`[{"type":"text","data":{"text":".."}}, ..]`, OneBot's and Milky's shape alike).
pub fn segments_number(segments: &str) -> Result<Option<u64>, serde_json::Error> {
    let segments: Vec<Segment> = serde_json::from_str(segments)?;
    let texts = segments
        .iter()
        .filter(|s| s.kind == "text")
        .filter_map(|s| s.data)
        .map(|d| serde_json::from_str::<TextData>(d.get()).map(|d| d.text))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(first_number(&texts))
}

/// The first run of ASCII digits across `chunks` (read as one concatenated text), or `None`
/// if there is none or it does not fit in a `u64`.
pub fn first_number<I>(chunks: I) -> Option<u64>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    let mut value: Option<u64> = None;
    for chunk in chunks {
        for b in chunk.as_ref().bytes() {
            if b.is_ascii_digit() {
                value = Some(value.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(b - b'0'))?);
            } else if value.is_some() {
                return value;
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_number_takes_the_first_run_of_digits() {
        assert_eq!(first_number(["42"]), Some(42));
        assert_eq!(first_number(["42 count 7"]), Some(42));
        assert_eq!(first_number(["echo: 0042!"]), Some(42));
        assert_eq!(first_number(["no digits"]), None);
        assert_eq!(first_number([""; 0]), None);
        assert_eq!(first_number(["99999999999999999999999"]), None);
    }

    #[test]
    fn first_number_spans_chunks() {
        assert_eq!(first_number(["re: 4", "2", " and 7"]), Some(42));
        assert_eq!(first_number(["re: 4", " 2"]), Some(4));
        assert_eq!(first_number(["x", "", "17"]), Some(17));
    }

    #[test]
    fn segments_give_the_number_of_their_text() {
        let segs = r#"[{"type":"reply","data":{"id":"9"}},{"type":"text","data":{"text":"re 4"}},
                      {"type":"image","data":{"file":"1.png"}},{"type":"text","data":{"text":"2 ok"}}]"#;
        assert_eq!(segments_number(segs).unwrap(), Some(42));
        assert_eq!(segments_number("[]").unwrap(), None);
        assert!(segments_number("42").is_err());
        assert!(segments_number(r#"[{"type":"text","data":{"text":1}}]"#).is_err());
    }

    #[test]
    fn every_protocol_puts_the_text_in_its_event() {
        for protocol in [Protocol::Onebot11, Protocol::Milky, Protocol::Qq] {
            let frame = EventTemplate::new(protocol, "/echo {i} \"q\"", 3).frame(7);
            let v: serde_json::Value = serde_json::from_str(&frame).expect("valid JSON");
            assert!(frame.contains(r#"/echo 7 \"q\""#), "{}: {frame}", protocol.name());
            assert!(v.is_object());
        }
    }
}
