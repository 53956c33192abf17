//! Reading only the fields of a JSON object a decoder needs.
//!
//! An event frame carries far more than routing reads (the sender's card, the font, the raw
//! message text). Building the whole tree on the reactor costs an allocation per key and per
//! string, all freed later on a worker. [`head`] checks the whole document but builds only the
//! named fields; the event keeps the text, and the rest is parsed if a script asks.

use std::fmt;
use std::sync::OnceLock;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// The keys a decoder names (see [`head`]), a `static` of each protocol. They are grouped by
/// the object whose members they name, once, when first read: each member of a frame is
/// compared with the names of its own object only, not with every key.
#[derive(Debug)]
pub struct Keys<'k> {
    keys: &'k [&'k str],
    /// The named members of each object on the keys' paths; the document's at [`ROOT`], none
    /// at [`NONE`] (an object on the way to a member read by a seed, which names nothing).
    levels: OnceLock<Vec<Vec<Name>>>,
}

/// The level of an object nothing is named in.
const NONE: usize = 0;
/// The document's level.
const ROOT: usize = 1;

/// A member named at one level.
#[derive(Debug)]
struct Name {
    name: String,
    /// A key names the member itself: it is built whole.
    whole: bool,
    /// The level of the member's own named members, when keys name some.
    part: Option<usize>,
}

impl<'k> Keys<'k> {
    /// The keys `keys`: a key `outer/inner` names the member `inner` of the member `outer`.
    pub const fn new(keys: &'k [&'k str]) -> Keys<'k> {
        Keys { keys, levels: OnceLock::new() }
    }

    /// The names of each level.
    fn levels(&self) -> &[Vec<Name>] {
        self.levels.get_or_init(|| group(self.keys))
    }
}

/// `keys` grouped by level (see [`Keys`]).
fn group(keys: &[&str]) -> Vec<Vec<Name>> {
    let mut levels = vec![Vec::new(), Vec::new()];
    for key in keys {
        let mut level = ROOT;
        let mut steps = key.split('/').peekable();
        while let Some(step) = steps.next() {
            let last = steps.peek().is_none();
            let at = match levels[level].iter().position(|n: &Name| n.name == step) {
                Some(at) => at,
                None => {
                    levels[level].push(Name { name: step.to_owned(), whole: false, part: None });
                    levels[level].len() - 1
                }
            };
            if last {
                levels[level][at].whole = true;
                break;
            }
            level = match levels[level][at].part {
                Some(part) => part,
                None => {
                    levels.push(Vec::new());
                    let part = levels.len() - 1;
                    levels[level][at].part = Some(part);
                    part
                }
            };
        }
    }
    levels
}

/// The fields of the JSON object `text` named in `keys`; `None` when `text` is JSON but not an
/// object. Fails when `text` is not one well-formed JSON document, like [`serde_json::from_slice`].
///
/// A key `outer/inner` names the member `inner` of the member `outer` (at any depth, as in
/// `d/author/id`): protocols that wrap an event in `data` or `d` need a few of its members, not
/// all of it. Such an `outer` is built with only its named members when it is an object, and
/// whole when it is not (so a decoder can still tell what it was); a key naming `outer` itself
/// builds it whole.
pub fn head(text: &[u8], keys: &Keys<'_>) -> serde_json::Result<Option<Map<String, Value>>> {
    let fields = read_document(text, Head { levels: keys.levels(), level: ROOT })?;
    Ok(match fields {
        Value::Object(fields) => Some(fields),
        _ => None,
    })
}

/// The fields [`head_reading`] built, and what its seed read from the member it reads.
pub type Read<T> = (Map<String, Value>, Option<T>);

/// What [`head`] builds, and the member `member` read by `seed` instead of built (`None` when
/// the object has none), in the same pass: for a decoder that needs a summary of a large
/// member, not the member. `member` is a path as in [`head`] (`data/segments`); the objects on
/// its way are built with their named members, and one of them that a key names whole is
/// built whole, the member with it. A repeated member, or a repeated object on its way, is
/// read each time; the last one counts, as in a full parse.
pub fn head_reading<'de, S>(
    text: &'de [u8],
    keys: &Keys<'_>,
    member: &str,
    seed: S,
) -> serde_json::Result<Option<Read<S::Value>>>
where
    S: DeserializeSeed<'de> + Copy,
{
    let mut read = None;
    let fields = read_document(
        text,
        Reading { head: Head { levels: keys.levels(), level: ROOT }, member, seed, read: &mut read },
    )?;
    Ok(match fields {
        Value::Object(fields) => Some((fields, read)),
        _ => None,
    })
}

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

/// What [`head`] builds from the text of `value`, taken from a tree already built: for
/// decoders handed a whole event (a webhook, a test) instead of its text.
pub fn pick(value: &Value, keys: &Keys<'_>) -> Option<Map<String, Value>> {
    match pick_within(value, Head { levels: keys.levels(), level: ROOT }) {
        Value::Object(fields) => Some(fields),
        _ => None,
    }
}

fn pick_within(value: &Value, head: Head<'_>) -> Value {
    match value {
        Value::Object(all) => Value::Object(
            all.iter()
                .filter_map(|(k, v)| {
                    let v = match head.wanted(k)? {
                        Wanted::Whole => v.clone(),
                        Wanted::Part(level) => pick_within(v, Head { levels: head.levels, level }),
                    };
                    Some((k.clone(), v))
                })
                .collect(),
        ),
        _ if head.level == ROOT => Value::Null,
        other => other.clone(),
    }
}

/// Builds the named members of an object at `level` of `levels` (see [`Keys`]).
#[derive(Clone, Copy)]
struct Head<'k> {
    levels: &'k [Vec<Name>],
    level: usize,
}

/// What [`Head::members`]' caller did with a member.
enum Taken {
    /// Nothing: it is built or skipped as named.
    No,
    /// Read, and not kept.
    Read,
    /// Built, and kept as this.
    Built(Value),
}

/// How much of a member [`Head`] builds.
enum Wanted {
    Whole,
    /// Its own named members, at this level.
    Part(usize),
}

impl<'k> Head<'k> {
    /// The named members of an object; `take` may read a member itself first.
    fn members<'de, A: MapAccess<'de>>(
        self,
        mut map: A,
        mut take: impl FnMut(&str, &mut A) -> Result<Taken, A::Error>,
    ) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key_seed(Key)? {
            match take(&key, &mut map)? {
                Taken::No => {}
                Taken::Read => continue,
                Taken::Built(part) => {
                    drop(fields.insert(key.into_owned(), part));
                    continue;
                }
            }
            // A repeated key keeps its last value, as a full parse would.
            match self.wanted(&key) {
                Some(Wanted::Whole) => drop(fields.insert(key.into_owned(), map.next_value()?)),
                Some(Wanted::Part(level)) => {
                    let part = map.next_value_seed(Head { levels: self.levels, level })?;
                    drop(fields.insert(key.into_owned(), part));
                }
                None => map.next_value_seed(Skip)?,
            }
        }
        Ok(Value::Object(fields))
    }

    fn wanted(&self, member: &str) -> Option<Wanted> {
        // Runs for every member of every object read: names are a few bytes long, so they
        // are compared in place, the length first, not through a `memcmp` call.
        let member = member.as_bytes();
        let name = self.levels[self.level].iter().find(|n| {
            let name = n.name.as_bytes();
            name.len() == member.len() && name.iter().zip(member).all(|(a, b)| a == b)
        })?;
        match (name.whole, name.part) {
            (false, Some(level)) => Some(Wanted::Part(level)),
            _ => Some(Wanted::Whole),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Head<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Head<'_> {
    /// The object's named members; a member that is not an object is built whole, and a
    /// document that is not one is checked and comes back as `Null`.
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        self.members(map, |_, _| Ok(Taken::No))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.level == ROOT {
            while seq.next_element_seed(Skip)?.is_some() {}
            return Ok(Value::Null);
        }
        Value::deserialize(SeqAccessDeserializer::new(seq))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// Reads a value without building it, checking it as [`Skip`] does.
pub fn skip<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    d.deserialize_any(Skip)
}

/// A value passed over without building it. Unlike `IgnoredAny` (which serde_json skips
/// without checking), it is read as a full parse would read it: strings must be UTF-8 and
/// nesting stays within the depth limit, so the text [`head`] accepts parses in full later.
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

/// [`Head`] with one member, at a path from this object, read by a seed (see
/// [`head_reading`]).
struct Reading<'k, 'a, 'de, S: DeserializeSeed<'de>> {
    head: Head<'k>,
    member: &'k str,
    seed: S,
    read: &'a mut Option<S::Value>,
}

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for Reading<'_, '_, 'de, S> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for Reading<'_, '_, 'de, S> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        let Reading { head, member, seed, read } = self;
        // The member's name in this object, and its path inside that member, if it is deeper.
        let (step, rest) = match member.split_once('/') {
            Some((step, rest)) => (step, Some(rest)),
            None => (member, None),
        };
        head.members(map, |key, map| {
            if key != step {
                return Ok(Taken::No);
            }
            let Some(rest) = rest else {
                *read = Some(map.next_value_seed(seed)?);
                return Ok(Taken::Read);
            };
            let level = match head.wanted(key) {
                Some(Wanted::Whole) => return Ok(Taken::No),
                Some(Wanted::Part(level)) => level,
                None => NONE,
            };
            // A repeated object on the way replaces the earlier one, and what was read in it.
            *read = None;
            let inner = Reading { head: Head { levels: head.levels, level }, member: rest, seed, read: &mut *read };
            Ok(Taken::Built(map.next_value_seed(inner)?))
        })
    }

    // Anything but an object is what [`Head`] makes of it: built whole inside the document,
    // only checked at its top.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        self.head.visit_seq(seq)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.head.visit_bool(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.head.visit_i64(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.head.visit_u64(v)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.head.visit_f64(v)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.head.visit_str(v)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.head.visit_unit()
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
    use serde_json::json;

    // The functions under test, with their keys made for each call.
    fn head(text: &[u8], keys: &[&str]) -> serde_json::Result<Option<Map<String, Value>>> {
        super::head(text, &Keys::new(keys))
    }

    fn pick(value: &Value, keys: &[&str]) -> Option<Map<String, Value>> {
        super::pick(value, &Keys::new(keys))
    }

    fn head_reading<'de, S: DeserializeSeed<'de> + Copy>(
        text: &'de [u8],
        keys: &[&str],
        member: &str,
        seed: S,
    ) -> serde_json::Result<Option<Read<S::Value>>> {
        super::head_reading(text, &Keys::new(keys), member, seed)
    }

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
    fn a_path_builds_only_the_named_members_of_an_object_member() {
        let text =
            br#"{"t":"X","d":{"id":"1","big":[1,2,3],"author":{"id":"a","name":"n"},"d":{"x":1}},"e":[1],"f":5}"#;
        let keys = ["t", "d/id", "d/author/id", "d/missing", "e/x", "f/x", "g/x"];
        let got = head(text, &keys).unwrap().unwrap();
        // `e` and `f` are not objects: built whole, so a decoder sees what they were.
        assert_eq!(Value::Object(got), json!({"t": "X", "d": {"id": "1", "author": {"id": "a"}}, "e": [1], "f": 5}));
        let whole = head(text, &["d", "d/id"]).unwrap().unwrap();
        assert_eq!(whole["d"]["big"], json!([1, 2, 3]), "naming the member itself builds it whole");
        assert!(head(br#"{"d":{"id":1,"x":[}}"#, &["d/id"]).is_err(), "the skipped parts are still checked");
        for keys in [&keys[..], &["d", "d/id"], &["e", "x"]] {
            let tree: Value = serde_json::from_slice(text).unwrap();
            assert_eq!(pick(&tree, keys), head(text, keys).unwrap(), "a built tree gives the same head");
        }
        // Members whose names start or end a key's name are not it.
        let near = br#"{"d":{"auth":1,"authors":{"id":1},"author":{"i":1,"idx":2,"id":3}},"dd":{"author":4}}"#;
        let got = head(near, &["d/author/id", "dd/auth"]).unwrap().unwrap();
        assert_eq!(Value::Object(got), json!({"d": {"author": {"id": 3}}, "dd": {}}));
        let repeated = head(br#"{"d":{"id":1},"d":{"id":2,"x":0}}"#, &["d/id"]).unwrap().unwrap();
        assert_eq!(repeated["d"], json!({"id": 2}), "the last of a repeated key, as a full parse");
    }

    #[test]
    fn a_member_read_by_a_seed_may_sit_inside_another() {
        /// Reads a member as its text's length, to tell it was read and not built.
        #[derive(Clone, Copy)]
        struct Length;
        impl<'de> DeserializeSeed<'de> for Length {
            type Value = usize;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
                Value::deserialize(d).map(|v| v.to_string().len())
            }
        }
        let text = br#"{"t":1,"data":{"id":2,"segs":[1,2],"big":{"x":1}},"segs":"top"}"#;
        let (fields, read) = head_reading(text, &["t", "data/id"], "data/segs", Length).unwrap().unwrap();
        assert_eq!((Value::Object(fields), read), (json!({"t": 1, "data": {"id": 2}}), Some(5)));
        let (fields, read) = head_reading(text, &["t"], "data/segs", Length).unwrap().unwrap();
        assert_eq!((Value::Object(fields), read), (json!({"t": 1, "data": {}}), Some(5)), "on the way, built empty");
        let (fields, read) = head_reading(text, &["data"], "data/segs", Length).unwrap().unwrap();
        assert_eq!(fields["data"]["segs"], json!([1, 2]), "a member named whole is built whole");
        assert_eq!(read, None);
        // Not an object on the way: built whole, as `head` builds it, and nothing is read.
        let (fields, read) = head_reading(br#"{"data":[7]}"#, &["data/id"], "data/segs", Length).unwrap().unwrap();
        assert_eq!((Value::Object(fields), read), (json!({"data": [7]}), None));
        assert!(head_reading(br#"{"data":{"segs":[1,}}"#, &[], "data/segs", Length).is_err());
        assert!(head_reading(br#"{"data":{"segs":1,"x":"\q"}}"#, &[], "data/segs", Length).is_err());
        assert_eq!(head_reading(b"[1]", &[], "data/segs", Length).unwrap().map(|(_, r)| r), None);
        // As a full parse reads it: the last of a repeated object on the way, and a name with
        // a slash in it is a name, not a path.
        for text in [&br#"{"data":{"segs":[1]},"data":{"id":2}}"#[..], br#"{"data/segs":[1],"data":{"id":2}}"#] {
            let (fields, read) = head_reading(text, &["data/id"], "data/segs", Length).unwrap().unwrap();
            assert_eq!((Value::Object(fields), read), (json!({"data": {"id": 2}}), None), "{text:?}");
        }
        let (_, read) =
            head_reading(br#"{"data":{"id":2},"data":{"segs":[1]}}"#, &[], "data/segs", Length).unwrap().unwrap();
        assert_eq!(read, Some(3), "the last object on the way has the member");
    }

    #[test]
    fn anything_but_an_object_has_no_fields() {
        for text in [&b"[1,{\"a\":1}]"[..], b"5", b"-1", b"1.5", b"\"s\"", b"null", b"true"] {
            assert_eq!(head(text, &["a"]).unwrap(), None, "{}", String::from_utf8_lossy(text));
            assert_eq!(pick(&serde_json::from_slice(text).unwrap(), &["a"]), None);
        }
    }

    #[test]
    fn skipped_parts_are_held_to_the_same_depth_limit() {
        let deep = format!(r#"{{"a":1,"b":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert_eq!(head(deep.as_bytes(), &["a"]).is_err(), serde_json::from_str::<Value>(&deep).is_err());
        for depth in [120, 126, 127, 128, 200] {
            let deep = format!(r#"{{"d":{{"x":{}{}}}}}"#, "[".repeat(depth), "]".repeat(depth));
            let full = serde_json::from_str::<Value>(&deep).is_err();
            for keys in [&["d/x"][..], &["d/y"], &["d"]] {
                assert_eq!(head(deep.as_bytes(), keys).is_err(), full, "depth {depth}, {keys:?}");
            }
        }
    }
}
