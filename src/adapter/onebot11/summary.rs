//! What decoding reads from a message event's `message`, without building its segments: the
//! plain text, whom it @-mentions, and the message it replies to.
//!
//! The segments of an array message stay in the event's raw text until a script asks for
//! them; the frame's head reads the array once, in the same pass ([`MessageSeed`] with
//! [`crate::adapter::head::head_reading`]), keeping only these three. A message given as CQ
//! text is kept as text: the decoder parses it into segments, which the event keeps (its raw
//! form has none), and a response's `message` is its error text.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

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

/// A `message` member as routing reads it.
#[derive(Debug)]
pub enum Message {
    /// A string: CQ text (or a response's error text).
    Text(String),
    /// An array of segments, summarised.
    Segments(Summary),
    /// Anything else, which says nothing.
    Other,
}

/// What an array of segments says, as routing reads it.
#[derive(Debug, Default)]
pub struct Summary {
    /// The text segments joined (untrimmed).
    pub text: String,
    /// The `qq` of each `at` segment, as text.
    pub at: Vec<String>,
    /// The `id` of the last `reply` segment (an integer when it is one as a string).
    pub reply_to: Value,
}

impl Summary {
    /// The summary of segments already built, read as the frame's are.
    pub fn of(segments: &[Value]) -> Summary {
        let mut summary = Summary::default();
        for seg in segments {
            // A tree cannot fail to read.
            if let Ok(Some(seg)) = SegmentSeed.deserialize(seg) {
                summary.add(seg);
            }
        }
        summary
    }

    /// Whether an `at` segment names `self_id` (0: the bot is not known, so none does).
    pub fn mentions(&self, self_id: i64) -> bool {
        if self_id == 0 || self.at.is_empty() {
            return false;
        }
        let me = self_id.to_string();
        self.at.contains(&me)
    }

    fn add(&mut self, seg: Segment) {
        match seg.kind {
            Kind::Text => {
                if let Some(text) = seg.data.text {
                    self.text.push_str(&text);
                }
            }
            Kind::At => {
                if let Some(q) = seg.data.qq {
                    self.at.push(q.as_str().map_or_else(|| q.to_string(), str::to_owned));
                }
            }
            Kind::Reply => {
                let id = seg.data.id.unwrap_or(Value::Null);
                // Message ids are integers on the wire elsewhere; keep them comparable.
                self.reply_to = id.as_str().and_then(|s| s.parse::<i64>().ok()).map_or(id, Value::from);
            }
            Kind::Other => {}
        }
    }
}

/// Reads a `message` member (from a frame's text or from a tree) as a [`Message`].
#[derive(Debug, Clone, Copy)]
pub struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Message;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Message, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_str<E>(self, text: &str) -> Result<Message, E> {
        Ok(Message::Text(text.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Message, A::Error> {
        let mut summary = Summary::default();
        while let Some(seg) = seq.next_element_seed(SegmentSeed)? {
            if let Some(seg) = seg {
                summary.add(seg);
            }
        }
        Ok(Message::Segments(summary))
    }

    // Anything else says nothing; its contents are still checked.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        while map.next_entry::<Checked, Checked>()?.is_some() {}
        Ok(Message::Other)
    }

    scalars_say!(Message::Other);
}

/// The segment kinds routing reads.
#[derive(Debug, Default, Clone, Copy)]
enum Kind {
    #[default]
    Other,
    Text,
    At,
    Reply,
}

impl Kind {
    fn of(kind: &str) -> Kind {
        match kind {
            "text" => Kind::Text,
            "at" => Kind::At,
            "reply" => Kind::Reply,
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

/// One segment.
struct Segment {
    kind: Kind,
    data: Data,
}

/// Reads a segment; `None` when it is not an object.
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
        Ok(Kind::of(kind))
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
