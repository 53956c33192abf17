//! Reading a JSON document without building it: the pieces every protocol's head is read
//! with (see [`crate::adapter::slots`]).
//!
//! An event frame carries far more than routing reads (the sender's card, the font, the raw
//! message text). Building the whole tree on the reactor costs an allocation per key and per
//! string, all freed later on a worker. A head checks the whole document as a full parse
//! would, but builds only the members it names; the event keeps the text, and the rest is
//! parsed if a script asks.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// `text` as one JSON document, read by `visitor`. Text that is UTF-8 throughout (a WebSocket
/// text frame always is) is checked as such once, in one pass over it, and read as a `str`:
/// read as bytes, every key and string is checked on its own, which cost the head about a
/// tenth of its time. Bytes that are not UTF-8 are read as bytes, as before, so the error
/// says where (every string, built or passed over, is checked: see [`Skip`]).
pub fn read_document<'de, V: Visitor<'de>>(text: &'de [u8], visitor: V) -> serde_json::Result<V::Value> {
    fn read<'de, R: serde_json::de::Read<'de>, V: Visitor<'de>>(
        mut de: serde_json::Deserializer<R>,
        visitor: V,
    ) -> serde_json::Result<V::Value> {
        let value = de.deserialize_any(visitor)?;
        de.end()?;
        Ok(value)
    }
    match std::str::from_utf8(text) {
        Ok(text) => read(serde_json::Deserializer::from_str(text), visitor),
        Err(_) => read(serde_json::Deserializer::from_slice(text), visitor),
    }
}

/// Reads a value without building it, checking it as [`Skip`] does.
pub fn skip<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    d.deserialize_any(Skip)
}

/// A value passed over without building it. Unlike `IgnoredAny` (which serde_json skips
/// without checking), it is read as a full parse would read it: strings must be UTF-8 and
/// nesting stays within the depth limit, so the text a head accepts parses in full later.
pub struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(Skip)?.is_some() {
            map.next_value_seed(Skip)?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A key, borrowed from the text unless it has escapes.
pub struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = std::borrow::Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(s.into())
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(s.to_owned().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn checked(text: &[u8]) -> bool {
        read_document(text, Skip).is_ok()
    }

    #[test]
    fn what_is_passed_over_is_checked_as_a_full_parse_checks_it() {
        assert!(checked(br#"{"a":1,"b":{"deep":[1,2,{"x":"y"}]},"c":"s\u00e9","d\"":2,"a":3}"#));
        assert!(!checked(br#"{"a":1,"b":[1,}"#));
        assert!(!checked(br#"{"a":1,"b":"\x"}"#));
        assert!(!checked(br#"{"a":1} {"#), "one document, nothing after it");
        assert!(!checked(b"{\"a\":1,\"b\":\"\xff\"}"), "invalid UTF-8 in a string");
        assert!(!checked(br#"{"a":"\ud800"}"#), "a lone surrogate");
    }

    #[test]
    fn what_is_passed_over_is_held_to_the_same_depth_limit() {
        for depth in [120, 126, 127, 128, 200] {
            let deep = format!(r#"{{"d":{{"x":{}{}}}}}"#, "[".repeat(depth), "]".repeat(depth));
            let full = serde_json::from_str::<Value>(&deep).is_ok();
            assert_eq!(checked(deep.as_bytes()), full, "depth {depth}");
        }
    }
}
