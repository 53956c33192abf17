//! Reading the members of a JSON object a decoder needs into typed slots, in one pass over
//! the text: a member is matched by its name and its value goes to its slot; text without
//! escapes stays borrowed from the frame; everything else is checked as a full parse would
//! check it ([`Skip`]), and nothing is built for it.
//!
//! A decoder's head is a struct of [`Option<Field>`] slots (and nested structs for nested
//! objects) implementing [`Members`], read with [`Object`] through
//! [`read_document`](crate::adapter::head::read_document). It allocates nothing per key: a map
//! head (a `BTreeMap` of the named members, each key a `String`) did, on every frame.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::adapter::head::{Key, Skip};
use crate::event::is_name_part;

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

/// The slot's text when it is a short name part ([`is_name_part`]); otherwise why not, naming
/// the member `key`.
pub fn name_part<'f>(slot: &'f Option<Field<'_>>, key: &str) -> Result<&'f str, String> {
    match slot {
        Some(Field::Text(part)) if is_name_part(part) => Ok(part),
        Some(other) => {
            let shown = other.clone().into_value().to_string();
            Err(format!("{key} {} is not a short name", crate::logsafe::short(&shown)))
        }
        None => Err(format!("no {key}")),
    }
}

/// Hashes the slot's id as [`crate::event::hash_id`] hashes the same value (`123` and `"123"`
/// alike).
pub fn hash_id(slot: &Option<Field<'_>>, h: &mut impl std::hash::Hasher) {
    match slot {
        None => crate::event::hash_id(&Value::Null, h),
        Some(Field::Text(text)) => crate::event::hash_text_id(text, h),
        Some(Field::Other(value)) => crate::event::hash_id(value, h),
    }
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

/// An object whose members go to slots.
pub trait Members<'de>: Default {
    /// Reads the member `key` into its slot; false when it has none (it is then passed over).
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error>;
}

/// Reads the value of an object member into `members` and notes what it was in `shape`. A
/// repeated member replaces what the earlier one left, whole, as in a full parse.
pub fn read_object<'de, A: MapAccess<'de>, T: Members<'de>>(
    map: &mut A,
    members: &mut T,
    shape: &mut Shape,
) -> Result<(), A::Error> {
    if *shape != Shape::Absent {
        *members = T::default();
    }
    let object = map.next_value_seed(Object(members))?;
    *shape = if object { Shape::Object } else { Shape::NotObject };
    Ok(())
}

/// Reads an object's members into `T`'s slots: true when it is an object; anything else is
/// checked, and false.
pub struct Object<'s, T>(pub &'s mut T);

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
pub struct Slot;

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
    use std::hash::Hasher;

    #[test]
    fn a_slot_hashes_as_the_same_value_does() {
        let slot = |v: &Value| -> u64 {
            let mut h = crate::event::id_hasher();
            let field = match v {
                Value::Null => None,
                Value::String(s) => Some(Field::Text(Cow::Borrowed(s))),
                other => Some(Field::Other(other.clone())),
            };
            hash_id(&field, &mut h);
            h.finish()
        };
        let value = |v: &Value| -> u64 {
            let mut h = crate::event::id_hasher();
            crate::event::hash_id(v, &mut h);
            h.finish()
        };
        for v in [Value::Null, Value::from(123), Value::from(" 123 "), Value::from("group"), serde_json::json!([1])] {
            assert_eq!(slot(&v), value(&v), "{v}");
        }
        assert_eq!(slot(&Value::from("123")), value(&Value::from(123)), "123 and \"123\" are one id");
    }
}

#[cfg(test)]
mod agreement {
    //! The heads accept exactly the documents a full parse accepts: a frame a head reads is
    //! one the event can parse whole later, and one it refuses would be refused whole too.

    /// Each byte of `frame` in turn replaced with each of `bytes`, and the frame cut short at
    /// each length.
    fn variants(frame: &[u8], bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for at in 0..frame.len() {
            for &b in bytes {
                let mut v = frame.to_vec();
                v[at] = b;
                out.push(v);
            }
            out.push(frame[..at].to_vec());
        }
        out
    }

    #[test]
    fn heads_accept_exactly_what_a_full_parse_accepts() {
        let gateway = br#"{"op":0,"s":2,"t":"GROUP_AT_MESSAGE_CREATE","id":"E","d":{"id":"M","content":" hi\"","timestamp":"2026-12-01T00:00:00+08:00","group_openid":"G","author":{"member_openid":"U","x":[1,{"y":null}]},"z":-1.5e3}}"#;
        let milky_frame = br#"{"time":1,"self_id":1,"event_type":"message_receive","data":{"message_scene":"group","peer_id":2,"message_seq":3,"sender_id":4,"segments":[{"type":"text","data":{"text":"a\u00e9"}},{"type":"mention","data":{"user_id":1}}],"group":{"n":true}}}"#;
        let onebot_frame = br#"{"time":1,"self_id":1,"post_type":"message","message_type":"group","sub_type":"normal","message_id":5,"group_id":2,"user_id":"3","message":[{"type":"at","data":{"qq":"1"}},{"type":"text","data":{"text":"a\u00e9"}}],"sender":{"card":"c"},"echo":null}"#;
        let bytes = [b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'0', b'-', b'e', b'n', b' ', 0xff, 0xc3];
        let mut checked = 0;
        // Read, and decoded when it is an object: decoding what a head read never panics.
        macro_rules! reader {
            ($name:ident, $adapter:ident, $decode:path) => {
                fn $name(text: &[u8]) -> serde_json::Result<bool> {
                    let bot = crate::bot::Bot::detached(stringify!($name), &crate::adapter::$adapter::PROTOCOL);
                    let head = crate::adapter::$adapter::payload::read_head(text)?;
                    let object = head.is_some();
                    if let Some(head) = head {
                        let _ = $decode(&bot, head, crate::event::Raw::text(text), 1);
                    }
                    Ok(object)
                }
            };
        }
        reader!(qq, qq, crate::adapter::qq::decode::decode);
        reader!(milky, milky, crate::adapter::milky::decode);
        reader!(onebot, onebot11, crate::adapter::onebot11::decode);
        for (frame, read) in
            [(&gateway[..], qq as fn(&[u8]) -> _), (&milky_frame[..], milky), (&onebot_frame[..], onebot)]
        {
            for v in variants(frame, &bytes) {
                let whole = serde_json::from_slice::<serde_json::Value>(&v);
                let head = read(&v);
                assert_eq!(head.is_ok(), whole.is_ok(), "{}", String::from_utf8_lossy(&v));
                if let (Ok(object), Ok(value)) = (head, whole) {
                    assert_eq!(object, value.is_object(), "{}", String::from_utf8_lossy(&v));
                }
                checked += 1;
            }
        }
        assert!(checked > 5000, "{checked}");
    }
}
