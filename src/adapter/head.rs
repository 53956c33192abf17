//! Reading only the fields of a JSON object a decoder needs.
//!
//! An event frame carries far more than routing reads (the sender's card, the font, the raw
//! message text). Building the whole tree on the reactor costs an allocation per key and per
//! string, all freed later on a worker. [`head`] checks the whole document but builds only the
//! named top-level fields; the event keeps the text, and the rest is parsed if a script asks.

use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The fields of the JSON object `text` named in `keys`; `None` when `text` is JSON but not an
/// object. Fails when `text` is not one well-formed JSON document, like [`serde_json::from_slice`].
pub fn head(text: &[u8], keys: &[&str]) -> serde_json::Result<Option<Map<String, Value>>> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let fields = de.deserialize_any(Head { keys })?;
    de.end()?;
    Ok(fields)
}

struct Head<'k> {
    keys: &'k [&'k str],
}

impl<'de> Visitor<'de> for Head<'_> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match self.keys.iter().find(|k| **k == key.as_ref()) {
                // A repeated key keeps its last value, as a full parse would.
                Some(_) => drop(fields.insert(key.into_owned(), map.next_value()?)),
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Some(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A value passed over without building it. Unlike `IgnoredAny` (which serde_json skips
/// without checking), it is read as a full parse would read it: strings must be UTF-8 and
/// nesting stays within the depth limit, so the text [`head`] accepts parses in full later.
struct Skip;

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
struct Key;

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
    use serde_json::json;

    #[test]
    fn keeps_the_named_fields_and_checks_the_rest() {
        let text = br#"{"a":1,"b":{"deep":[1,2,{"x":"y"}]},"c":"s\u00e9","d\"":2,"a":3}"#;
        let got = head(text, &["a", "c", "d\"", "missing"]).unwrap().unwrap();
        assert_eq!(Value::Object(got), json!({"a": 3, "c": "sé", "d\"": 2}));
        // The skipped parts are still checked.
        assert!(head(br#"{"a":1,"b":[1,}"#, &["a"]).is_err());
        assert!(head(br#"{"a":1,"b":"\x"}"#, &["a"]).is_err());
        assert!(head(br#"{"a":1} {"#, &["a"]).is_err());
        assert!(head(b"{\"a\":1,\"b\":\"\xff\"}", &["a"]).is_err(), "invalid UTF-8 in a skipped string");
    }

    #[test]
    fn anything_but_an_object_has_no_fields() {
        for text in [&b"[1,{\"a\":1}]"[..], b"5", b"-1", b"1.5", b"\"s\"", b"null", b"true"] {
            assert_eq!(head(text, &["a"]).unwrap(), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn skipped_parts_are_held_to_the_same_depth_limit() {
        let deep = format!(r#"{{"a":1,"b":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(head(deep.as_bytes(), &["a"]).is_err(), serde_json::from_str::<Value>(&deep).is_err());
    }
}
