//! What decoding reads from a message's segments without building them: the plain text, whom
//! it @-mentions, and the message it replies to.
//!
//! A message event's segments stay in the event's raw text until a script asks for them; the
//! frame's head reads the array once, in the same pass ([`SegmentsSeed`], as a slot of
//! OneBot 11's head, `onebot11::payload`, and of Milky's, `milky::payload`), keeping only these
//! three. OneBot 11 and Milky
//! shape segments alike (`{"type": .., "data": {..}}`) and differ in names, which a [`Dialect`]
//! gives.

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
pub(crate) use scalars_say;

/// For each of the visitors given, the seed that reads a value as that visitor does.
macro_rules! seeds_by_visitor {
    ($($seed:ty),*) => {$(
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = <Self as Visitor<'de>>::Value;

            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
    )*};
}
pub(crate) use seeds_by_visitor;

/// An object, an array or a string a visitor reads as `$none`, checked as a full parse would
/// check it.
macro_rules! others_say {
    ($none:expr; $($shape:ident),*) => {$( others_say!(@$shape $none); )*};
    (@map $none:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<$crate::adapter::summary::Checked, $crate::adapter::summary::Checked>()?.is_some() {}
            Ok($none)
        }
    };
    (@seq $none:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<$crate::adapter::summary::Checked>()?.is_some() {}
            Ok($none)
        }
    };
    (@str $none:expr) => {
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}
pub(crate) use others_say;

/// A protocol's names for the segments routing reads (`text` segments carry `data.text` in both).
#[derive(Debug)]
pub struct Dialect {
    /// The `type` of a mention, and the member of its `data` naming whom.
    pub mention: (&'static str, &'static str),
    /// The `type` of a mention of everyone, when that mentions the bot too.
    pub mention_all: Option<&'static str>,
    /// The `type` of a reply, and the member of its `data` naming the message replied to.
    pub reply: (&'static str, &'static str),
    /// The segment types this runtime knows, when every other type reads as text (its
    /// `data.summary`, else `[type]`); `None`: other types say nothing.
    pub known: Option<&'static [&'static str]>,
    /// Whether an id given as text is the number it spells (OneBot implementations differ in
    /// which they send); otherwise only an integer mentions, and a reply's id is kept as sent.
    pub text_ids: bool,
}

/// What an array of segments says, as routing reads it.
#[derive(Debug, Default)]
pub struct Summary {
    /// The text segments joined (untrimmed).
    pub text: String,
    /// Whom each mention names, as text.
    pub mentioned: Vec<String>,
    /// Whether a mention of everyone is among them.
    pub everyone: bool,
    /// The message the last reply segment names (an integer when it is one as a string).
    pub reply_to: Value,
}

impl Summary {
    /// The summary of segments already built, read as the frame's are.
    pub fn of(dialect: &'static Dialect, segments: &[Value]) -> Summary {
        let mut summary = Summary::default();
        for seg in segments {
            // A tree cannot fail to read.
            if let Ok(Some(seg)) = (SegmentSeed { dialect }).deserialize(seg) {
                summary.add(dialect, seg);
            }
        }
        summary
    }

    /// Whether the segments mention `self_id` or everyone (0: the bot is not known, so only a
    /// mention of everyone does).
    pub fn mentions(&self, self_id: i64) -> bool {
        if self.everyone {
            return true;
        }
        if self_id == 0 || self.mentioned.is_empty() {
            return false;
        }
        let me = self_id.to_string();
        self.mentioned.contains(&me)
    }

    fn add(&mut self, dialect: &Dialect, seg: Segment) {
        let Data { text, mentioned, reply_to, summary } = seg.data;
        match seg.kind {
            Kind::Text => {
                if let Some(text) = text {
                    self.text.push_str(&text);
                }
            }
            Kind::Mention => match mentioned {
                Some(Value::String(q)) if dialect.text_ids => self.mentioned.push(q),
                Some(q) if dialect.text_ids || q.is_i64() => self.mentioned.push(q.to_string()),
                _ => {}
            },
            Kind::MentionAll => self.everyone = true,
            Kind::Reply => {
                let id = reply_to.unwrap_or(Value::Null);
                // Message ids are integers on the wire elsewhere; keep them comparable.
                let number = id.as_str().filter(|_| dialect.text_ids).and_then(|s| s.parse::<i64>().ok());
                self.reply_to = number.map_or(id, Value::from);
            }
            Kind::Unknown(kind) => match summary {
                Some(summary) => self.text.push_str(&summary),
                None => {
                    self.text.push('[');
                    self.text.push_str(&kind);
                    self.text.push(']');
                }
            },
            Kind::Other => {}
        }
    }
}

/// Reads an array of segments (from a frame's text or from a tree) as a [`Summary`]; anything
/// else says nothing, and is still checked.
#[derive(Debug, Clone, Copy)]
pub struct SegmentsSeed {
    /// The protocol's names.
    pub dialect: &'static Dialect,
}

impl<'de> Visitor<'de> for SegmentsSeed {
    type Value = Summary;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message segments")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Summary, A::Error> {
        let mut summary = Summary::default();
        while let Some(seg) = seq.next_element_seed(SegmentSeed { dialect: self.dialect })? {
            if let Some(seg) = seg {
                summary.add(self.dialect, seg);
            }
        }
        Ok(summary)
    }

    others_say!(Summary::default(); map, str);
    scalars_say!(Summary::default());
}

seeds_by_visitor!(SegmentsSeed, SegmentSeed, KindSeed, DataSeed);

/// The segment kinds routing reads.
#[derive(Debug, Default)]
enum Kind {
    #[default]
    Other,
    Text,
    Mention,
    MentionAll,
    Reply,
    /// A type the runtime does not know, in a dialect where those read as text.
    Unknown(String),
}

impl Kind {
    fn of(dialect: &Dialect, kind: &str) -> Kind {
        match kind {
            "text" => Kind::Text,
            _ if kind == dialect.mention.0 => Kind::Mention,
            _ if Some(kind) == dialect.mention_all => Kind::MentionAll,
            _ if kind == dialect.reply.0 => Kind::Reply,
            _ if dialect.known.is_some_and(|known| !known.contains(&kind)) => Kind::Unknown(kind.to_owned()),
            _ => Kind::Other,
        }
    }
}

/// The parts of a segment's `data` routing reads.
#[derive(Debug, Default)]
struct Data {
    /// `text`, when it is a string.
    text: Option<String>,
    mentioned: Option<Value>,
    reply_to: Option<Value>,
    /// `summary`, when it is a string and the dialect reads unknown types as text.
    summary: Option<String>,
}

/// One segment.
struct Segment {
    kind: Kind,
    data: Data,
}

/// Reads a segment; `None` when it is not an object.
struct SegmentSeed {
    dialect: &'static Dialect,
}

impl<'de> Visitor<'de> for SegmentSeed {
    type Value = Option<Segment>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Members may come in any order, and a repeated one keeps its last value.
        let (mut kind, mut data) = (None, Data::default());
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "type" => kind = Some(map.next_value_seed(KindSeed { dialect: self.dialect })?),
                "data" => data = map.next_value_seed(DataSeed { dialect: self.dialect })?,
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        // A segment without a string type is not one.
        Ok(kind.flatten().map(|kind| Segment { kind, data }))
    }

    others_say!(None; seq, str);
    scalars_say!(None);
}

/// A segment's `type`: a kind when it is a string, else `None`.
struct KindSeed {
    dialect: &'static Dialect,
}

impl<'de> Visitor<'de> for KindSeed {
    type Value = Option<Kind>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a segment type")
    }

    fn visit_str<E>(self, kind: &str) -> Result<Option<Kind>, E> {
        Ok(Some(Kind::of(self.dialect, kind)))
    }

    others_say!(None; map, seq);
    scalars_say!(None);
}

/// A segment's `data`: its routing parts when it is an object.
struct DataSeed {
    dialect: &'static Dialect,
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = Data;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("segment data")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data, A::Error> {
        let string = |v: Value| match v {
            Value::String(s) => Some(s),
            _ => None,
        };
        let d = self.dialect;
        let mut data = Data::default();
        while let Some(key) = map.next_key_seed(Key)? {
            match &*key {
                "text" => data.text = string(map.next_value()?),
                "summary" if d.known.is_some() => data.summary = string(map.next_value()?),
                k if k == d.mention.1 => data.mentioned = Some(map.next_value()?),
                k if k == d.reply.1 => data.reply_to = Some(map.next_value()?),
                _ => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(data)
    }

    others_say!(Data::default(); seq, str);
    scalars_say!(Data::default());
}

/// A value read and checked as a full parse would (UTF-8, escapes, depth), then dropped.
pub struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        skip(d).map(|()| Checked)
    }
}
