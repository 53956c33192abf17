//! The fields of a gateway payload (`{op, d, s, t, id}`) that the socket and decoding read, in
//! fixed slots, read in one pass over its text ([`read_head`]).
//!
//! Read with [`crate::adapter::slots`]: a map head was three maps
//! and about twenty allocations per group message on the reactor, all freed again once
//! decoding had taken the ids out.

use serde::de::MapAccess;

use crate::adapter::head::read_document;
use crate::adapter::slots::{Field, Members, Object, Shape, Slot, read_object};

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
    /// A group member (a group's interactions).
    pub group_member_openid: Option<Field<'a>>,
    /// The member who did it (the bot added to or removed from a group, its messages switched).
    pub op_member_openid: Option<Field<'a>>,
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

impl<'de> Members<'de> for Head<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "op" => &mut self.op,
            "s" => &mut self.s,
            "t" => &mut self.t,
            "id" => &mut self.id,
            "d" => {
                read_object(map, &mut self.d, &mut self.d_is)?;
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
            "group_member_openid" => &mut self.group_member_openid,
            "op_member_openid" => &mut self.op_member_openid,
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::borrow::Cow;

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
