//! What decoding reads from a message event's `message` (see [`crate::adapter::summary`]). A
//! message given as CQ text is kept as text: the decoder parses it into segments, which the
//! event keeps (its raw form has none), and a response's `message` is its error text.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::adapter::summary::{Dialect, SegmentsSeed, Summary, others_say, scalars_say, seeds_by_visitor};

/// OneBot 11's segment names: `at` names whom by `qq` (`all` for everyone, which is not the
/// bot), `reply` the message by `id`, an unknown type says nothing, and ids may be text.
pub static ONEBOT: Dialect =
    Dialect { mention: ("at", "qq"), mention_all: None, reply: ("reply", "id"), known: None, text_ids: true };

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

/// Reads a `message` member (from a frame's text or from a tree) as a [`Message`].
#[derive(Debug, Clone, Copy)]
pub struct MessageSeed;

seeds_by_visitor!(MessageSeed);

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a message")
    }

    fn visit_str<E>(self, text: &str) -> Result<Message, E> {
        Ok(Message::Text(text.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Message, A::Error> {
        SegmentsSeed { dialect: &ONEBOT }.visit_seq(seq).map(Message::Segments)
    }

    // Anything else says nothing; its contents are still checked.
    others_say!(Message::Other; map);
    scalars_say!(Message::Other);
}
