//! What decoding reads from a message event's `message`, without building its segments: the
//! plain text, whether it @-mentions the bot, and the message it replies to.
//!
//! The segments of an array message stay in the event's raw text until a script asks for
//! them; the decoder reads the array once, here, keeping only these three. A message given as
//! CQ text is parsed into segments, which the event keeps (its raw form has none).

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::cq;
use crate::adapter::head::{Key, skip};

/// Scalars a visitor reads as `$none` (what routing ignores).
macro_rules! scalars_say {
    ($none:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

/// What a message says, as routing reads it.
#[derive(Debug, Default, PartialEq)]
pub struct Summary {
    /// The text segments joined (untrimmed).
    pub text: String,
    /// An `at` segment names the bot.
    pub at_me: bool,
    /// The `id` of the last `reply` segment (an integer when it is one as a string).
    pub reply_to: Value,
    /// The segments of a CQ-text message; `None` for an array (read from the raw event).
    pub parsed: Option<Vec<Value>>,
}

impl Summary {
    /// Summarises `message`, read from any deserializer (its JSON text, or a tree); a value that
    /// is neither a string nor an array says nothing. `self_id` 0 means the bot is not known.
    pub fn read<'de, D: Deserializer<'de>>(message: D, self_id: i64) -> Result<Summary, D::Error> {
        message.deserialize_any(Message { self_id })
    }

    /// The summary of segments already built.
    fn of(segments: Vec<Value>, self_id: i64) -> Summary {
        let mut summary = Summary { text: cq::plain_text(&segments), ..Summary::default() };
        for seg in &segments {
            let part = Segment {
                kind: Kind::of(seg.get("type").and_then(Value::as_str)),
                data: seg.get("data").map_or_else(Data::default, Data::of),
            };
            summary.add(part, self_id, false);
        }
        summary.parsed = Some(segments);
        summary
    }

    fn add(&mut self, seg: Segment, self_id: i64, with_text: bool) {
        match seg.kind {
            Kind::Text if with_text => {
                if let Some(text) = seg.data.text {
                    self.text.push_str(&text);
                }
            }
            Kind::At => {
                let qq = seg.data.qq.map(|q| q.as_str().map_or_else(|| q.to_string(), str::to_owned));
                self.at_me |= self_id != 0 && qq.is_some_and(|qq| qq == self_id.to_string());
            }
            Kind::Reply => {
                let id = seg.data.id.unwrap_or(Value::Null);
                // Message ids are integers on the wire elsewhere; keep them comparable.
                self.reply_to = id.as_str().and_then(|s| s.parse::<i64>().ok()).map_or(id, Value::from);
            }
            _ => {}
        }
    }
}

/// The `message` member: CQ text or an array of segments.
struct Message {
    self_id: i64,
}

impl<'de> Visitor<'de> for Message {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_str<E>(self, text: &str) -> Result<Summary, E> {
        Ok(Summary::of(cq::parse(text), self.self_id))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        let mut summary = Summary::default();
        while let Some(seg) = seq.next_element_seed(SegmentSeed)? {
            if let Some(seg) = seg {
                summary.add(seg, self.self_id, true);
            }
        }
        Ok(summary)
    }

    // Anything else says nothing; maps and their contents are still checked.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Summary, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Summary::default())
    }

    scalars_say!(Summary::default());
}

/// The segment kinds routing reads.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Kind {
    #[default]
    Other,
    Text,
    At,
    Reply,
}

impl Kind {
    fn of(kind: Option<&str>) -> Kind {
        match kind {
            Some("text") => Kind::Text,
            Some("at") => Kind::At,
            Some("reply") => Kind::Reply,
            _ => Kind::Other,
        }
    }
}

/// The parts of a segment's `data` routing reads.
#[derive(Debug, Default)]
struct Data {
    /// `text`, when it is a string.
    text: Option<String>,
    qq: Option<Value>,
    id: Option<Value>,
}

impl Data {
    fn of(data: &Value) -> Data {
        Data {
            text: data.get("text").and_then(Value::as_str).map(str::to_owned),
            qq: data.get("qq").cloned(),
            id: data.get("id").cloned(),
        }
    }
}

/// One segment; `None` when it is not an object.
struct Segment {
    kind: Kind,
    data: Data,
}

struct SegmentSeed;

impl<'de> DeserializeSeed<'de> for SegmentSeed {
    type Value = Option<Segment>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SegmentSeed {
    type Value = Option<Segment>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Members may come in any order, and a repeated one keeps its last value.
        let (mut kind, mut data) = (Kind::Other, Data::default());
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "type" => kind = map.next_value_seed(KindSeed)?,
                "data" => data = map.next_value_seed(DataSeed)?,
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(Some(Segment { kind, data }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    scalars_say!(None);
}

/// A segment's `type`: a kind when it is a string, else nothing routing reads.
struct KindSeed;

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Kind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Kind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KindSeed {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment type")
    }

    fn visit_str<E>(self, kind: &str) -> Result<Kind, E> {
        Ok(Kind::of(Some(kind)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Kind::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Kind::Other)
    }

    scalars_say!(Kind::Other);
}

/// A segment's `data`: its routing parts when it is an object.
struct DataSeed;

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Data;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Data, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("segment data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let mut data = Data::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "text" => {
                    data.text = match map.next_value::<Value>()? {
                        Value::String(s) => Some(s),
                        _ => None,
                    }
                }
                "qq" => data.qq = Some(map.next_value()?),
                "id" => data.id = Some(map.next_value()?),
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(data)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Data::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<Data, E> {
        Ok(Data::default())
    }

    scalars_say!(Data::default());
}

/// A value read and checked as a full parse would (UTF-8, escapes, depth), then dropped.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        skip(d).map(|()| Checked)
    }
}
