//! The fields of a gateway payload (`{op, d, s, t, id}`) that the socket and decoding read, in
//! fixed slots, read in one pass over its text ([`read_head`]).
//!
//! A generic head ([`crate::adapter::head`]) builds a map per object with a `String` per key:
//! for a group message that was three maps and about twenty allocations on the reactor, all
//! freed again once decoding had taken the ids out. Here a member is matched by its name and
//! its value goes to its slot; text without escapes stays borrowed from the frame. The whole
//! document is still checked as a full parse would check it.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::adapter::head::{Key, Skip, read_document};

/// A member's value: text borrowed from the payload where it has no escapes; any other JSON
/// value built.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// A string.
    Text(Cow<'a, str>),
    /// Anything else but `null` (a `null` member counts as absent).
    Other(Value),
}

impl Field<'_> {
    /// The text, when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Text(text) => Some(text),
            Field::Other(_) => None,
        }
    }

    /// The number, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Field::Other(value) => value.as_u64(),
            Field::Text(_) => None,
        }
    }

    /// The number, when it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Field::Other(value) => value.as_i64(),
            Field::Text(_) => None,
        }
    }

    /// The value as a JSON value of its own.
    pub fn into_value(self) -> Value {
        match self {
            Field::Text(text) => Value::String(text.into_owned()),
            Field::Other(value) => value,
        }
    }
}

/// A payload's fields that the socket and decoding read.
#[derive(Debug, Default)]
pub struct Head<'a> {
    /// The opcode.
    pub op: Option<Field<'a>>,
    /// The sequence number of a dispatch.
    pub s: Option<Field<'a>>,
    /// The event type of a dispatch.
    pub t: Option<Field<'a>>,
    /// The event's id.
    pub id: Option<Field<'a>>,
    /// The members of the event data read, all absent unless `d` is an object.
    pub d: Fields<'a>,
    /// What the event data is.
    pub d_is: Shape,
}

/// What a member that should be an object is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// There is none.
    #[default]
    Absent,
    /// An object.
    Object,
    /// Something else (`null` included).
    NotObject,
}

/// The members of `d` that the socket and decoding read. The rest (the author's name and
/// avatar, a guild member's roles, mentions...) is parsed only if a script asks.
#[derive(Debug, Default)]
pub struct Fields<'a> {
    /// Hello's heartbeat interval, in milliseconds.
    pub heartbeat_interval: Option<Field<'a>>,
    /// READY's session.
    pub session_id: Option<Field<'a>>,
    /// A message's id.
    pub id: Option<Field<'a>>,
    /// A message's text.
    pub content: Option<Field<'a>>,
    /// When the event happened.
    pub timestamp: Option<Field<'a>>,
    /// A group.
    pub group_openid: Option<Field<'a>>,
    /// A guild channel.
    pub channel_id: Option<Field<'a>>,
    /// A guild.
    pub guild_id: Option<Field<'a>>,
    /// A group member (member events).
    pub member_openid: Option<Field<'a>>,
    /// A user (events other than messages).
    pub user_openid: Option<Field<'a>>,
    /// A user (events other than messages).
    pub openid: Option<Field<'a>>,
    /// A user (events other than messages).
    pub user_id: Option<Field<'a>>,
    /// A user (events other than messages).
    pub author_id: Option<Field<'a>>,
    /// A message's author; all absent when it is not an object.
    pub author: Author<'a>,
}

/// The members of a message's author that decoding reads.
#[derive(Debug, Default)]
pub struct Author<'a> {
    /// A guild user.
    pub id: Option<Field<'a>>,
    /// A C2C user.
    pub user_openid: Option<Field<'a>>,
    /// A group member.
    pub member_openid: Option<Field<'a>>,
}

/// Reads `payload`'s [`Head`]; `None` when it is JSON but not an object. Fails when it is not
/// one well-formed JSON document, like [`serde_json::from_slice`].
pub fn read_head(payload: &[u8]) -> serde_json::Result<Option<Head<'_>>> {
    let mut head = Head::default();
    // Filled in place: the slots are a few hundred bytes, and a visitor returning them would
    // copy them at every level.
    let object = read_document(payload, Object(&mut head))?;
    Ok(object.then_some(head))
}

/// An object whose members go to slots.
trait Members<'de>: Default {
    /// Reads the member `key` into its slot; false when it has none (it is then passed over).
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

impl<'de> Members<'de> for Head<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "op" => &mut self.op,
            "s" => &mut self.s,
            "t" => &mut self.t,
            "id" => &mut self.id,
            "d" => {
                // A repeated `d` replaces the earlier one whole, as in a full parse.
                if self.d_is != Shape::Absent {
                    self.d = Fields::default();
                }
                let object = map.next_value_seed(Object(&mut self.d))?;
                self.d_is = if object { Shape::Object } else { Shape::NotObject };
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

impl<'de> Members<'de> for Fields<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "heartbeat_interval" => &mut self.heartbeat_interval,
            "session_id" => &mut self.session_id,
            "id" => &mut self.id,
            "content" => &mut self.content,
            "timestamp" => &mut self.timestamp,
            "group_openid" => &mut self.group_openid,
            "channel_id" => &mut self.channel_id,
            "guild_id" => &mut self.guild_id,
            "member_openid" => &mut self.member_openid,
            "user_openid" => &mut self.user_openid,
            "openid" => &mut self.openid,
            "user_id" => &mut self.user_id,
            "author_id" => &mut self.author_id,
            "author" => {
                // Only the last author counts, and one that is not an object has no members.
                self.author = Author::default();
                map.next_value_seed(Object(&mut self.author))?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

impl<'de> Members<'de> for Author<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "id" => &mut self.id,
            "user_openid" => &mut self.user_openid,
            "member_openid" => &mut self.member_openid,
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

/// Reads an object's members into `T`'s slots: true when it is an object; anything else is
/// checked, and false.
struct Object<'s, T>(&'s mut T);

impl<'de, T: Members<'de>> DeserializeSeed<'de> for Object<'_, T> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Members<'de>> Visitor<'de> for Object<'_, T> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            // A repeated key keeps its last value, as a full parse would.
            if !self.0.read(&key, &mut map)? {
                map.next_value_seed(Skip)?;
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(false)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Reads one slot's value; `null` is `None`.
struct Slot;

impl<'de> DeserializeSeed<'de> for Slot {
    type Value = Option<Field<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Slot {
    type Value = Option<Field<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Field::Text(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Field::Text(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Field::Text(Cow::Owned(v))))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Field::Other(Value::Bool(v))))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Field::Other(Value::from(v))))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Field::Other(Value::from(v))))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Field::Other(Value::from(v))))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(|v| Some(Field::Other(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(|v| Some(Field::Other(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(field: &'a Option<Field<'_>>) -> Option<&'a str> {
        field.as_ref().and_then(Field::as_str)
    }

    #[test]
    fn members_go_to_their_slots_and_the_rest_is_checked_not_built() {
        let frame = br#"{"op":0,"s":7,"t":"GROUP_AT_MESSAGE_CREATE","id":"E1","d":{"id":"M1","content":"hi \"x\"",
            "group_openid":"G","author":{"member_openid":"M","username":"u","nested":[{"deep":1}]},
            "attachments":[{"url":"https://x"}],"timestamp":1764432000,"channel_id":null}}"#;
        let head = read_head(frame).unwrap().unwrap();
        assert_eq!(
            (head.op.as_ref().and_then(Field::as_u64), head.s.as_ref().and_then(Field::as_u64)),
            (Some(0), Some(7))
        );
        assert_eq!((text(&head.t), text(&head.id)), (Some("GROUP_AT_MESSAGE_CREATE"), Some("E1")));
        assert_eq!(head.d_is, Shape::Object);
        let d = head.d;
        assert!(matches!(d.id, Some(Field::Text(Cow::Borrowed("M1")))), "text without escapes is borrowed");
        assert!(matches!(&d.content, Some(Field::Text(Cow::Owned(c))) if c == "hi \"x\""), "escapes are undone");
        assert_eq!((text(&d.group_openid), text(&d.author.member_openid)), (Some("G"), Some("M")));
        assert_eq!(d.timestamp, Some(Field::Other(Value::from(1_764_432_000u64))));
        assert_eq!(d.channel_id, None, "a null member counts as absent");
        assert_eq!((d.author.id, d.guild_id), (None, None));
    }

    #[test]
    fn the_last_of_a_repeated_member_counts_as_in_a_full_parse() {
        let head =
            read_head(br#"{"t":"A","d":{"id":"1","author":{"id":"x"}},"t":"B","d":{"content":"c"}}"#).unwrap().unwrap();
        assert_eq!((text(&head.t), head.d_is), (Some("B"), Shape::Object));
        let d = head.d;
        assert_eq!((text(&d.id), text(&d.content), text(&d.author.id)), (None, Some("c"), None), "the second d, whole");
        let head = read_head(br#"{"d":{"author":{"id":"x"},"author":7}}"#).unwrap().unwrap();
        assert_eq!(head.d.author.id, None, "an author that is not an object has no members");
        let head = read_head(br#"{"d":{"id":"1"},"d":null}"#).unwrap().unwrap();
        assert_eq!(
            (head.d_is, head.d.id),
            (Shape::NotObject, None),
            "the last d counts, even when it is not an object"
        );
    }

    #[test]
    fn what_is_not_an_object_is_told_apart() {
        assert!(read_head(b"[1,2]").unwrap().is_none());
        assert_eq!(read_head(br#"{"d":null}"#).unwrap().unwrap().d_is, Shape::NotObject);
        assert_eq!(read_head(br#"{"d":[{"id":1}]}"#).unwrap().unwrap().d_is, Shape::NotObject);
        assert_eq!(read_head(br#"{"op":11}"#).unwrap().unwrap().d_is, Shape::Absent);
        let head = read_head(br#"{"t":{"x":[1]},"id":3}"#).unwrap().unwrap();
        assert_eq!(head.t, Some(Field::Other(serde_json::json!({"x": [1]}))), "any other value is built");
        assert_eq!(head.id.as_ref().and_then(Field::as_i64), Some(3));
    }

    #[test]
    fn a_broken_document_fails_wherever_the_fault_is() {
        for bad in [
            &br#"{"op":0,"d":{"member":{"roles":[1,}}}"#[..],
            br#"{"op":0} trailing"#,
            b"{\"op\":0,\"d\":{\"skipped\":\"\xff\"}}",
            b"{\"op\":0,\"t\":\"\xc3\"}",
        ] {
            assert!(read_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
