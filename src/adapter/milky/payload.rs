//! The members of a Milky event (`{time, self_id, event_type, data}`) that decoding reads, and
//! a summary of a message's segments, read in one pass over its text ([`read_head`]) with
//! [`crate::adapter::slots`]. The rest (the group member, the group, the friend: often most of a
//! message event) is checked, not built, and parsed only if a script asks.

use serde::de::MapAccess;

use super::segments::MILKY;
use crate::adapter::head::read_document;
use crate::adapter::slots::{Field, Members, Object, Shape, Slot, read_object};
use crate::adapter::summary::{SegmentsSeed, Summary};

/// How a message's segments are read: as routing reads them, in Milky's names.
pub const SEGMENTS: SegmentsSeed = SegmentsSeed { dialect: &MILKY };

/// An event's members that decoding reads.
#[derive(Debug, Default)]
pub struct Head<'a> {
    /// The event's type.
    pub event_type: Option<Field<'a>>,
    /// The bot's account.
    pub self_id: Option<Field<'a>>,
    /// The members of `data` read, all absent unless it is an object.
    pub data: Data<'a>,
    /// What `data` is.
    pub data_is: Shape,
}

/// The members of an event's `data` that decoding reads.
#[derive(Debug, Default)]
pub struct Data<'a> {
    /// `group`, `friend` or `temp`.
    pub message_scene: Option<Field<'a>>,
    /// The group or the friend of a message.
    pub peer_id: Option<Field<'a>>,
    /// Who sent a message.
    pub sender_id: Option<Field<'a>>,
    /// A message's sequence number in its chat.
    pub message_seq: Option<Field<'a>>,
    /// A user (notices).
    pub user_id: Option<Field<'a>>,
    /// A group (notices).
    pub group_id: Option<Field<'a>>,
    /// Who asks (requests).
    pub initiator_id: Option<Field<'a>>,
    /// A message's segments, read as [`SEGMENTS`] reads them.
    pub segments: Option<Summary>,
}

/// Reads `event`'s [`Head`]; `None` when it is JSON but not an object. Fails when it is not one
/// well-formed JSON document, like [`serde_json::from_slice`].
pub fn read_head(event: &[u8]) -> serde_json::Result<Option<Head<'_>>> {
    let mut head = Head::default();
    let object = read_document(event, Object(&mut head))?;
    Ok(object.then_some(head))
}

impl<'de> Members<'de> for Head<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "event_type" => &mut self.event_type,
            "self_id" => &mut self.self_id,
            "data" => {
                read_object(map, &mut self.data, &mut self.data_is)?;
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

impl<'de> Members<'de> for Data<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "message_scene" => &mut self.message_scene,
            "peer_id" => &mut self.peer_id,
            "sender_id" => &mut self.sender_id,
            "message_seq" => &mut self.message_seq,
            "user_id" => &mut self.user_id,
            "group_id" => &mut self.group_id,
            "initiator_id" => &mut self.initiator_id,
            "segments" => {
                self.segments = Some(map.next_value_seed(SEGMENTS)?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_into_its_slots_with_its_segments_summed_up() {
        let frame = br#"{"time":1,"self_id":10001,"event_type":"message_receive","data":{"message_scene":"group",
            "peer_id":20001,"message_seq":5,"sender_id":10002,"segments":[{"type":"mention","data":{"user_id":10001}},
            {"type":"text","data":{"text":" hi "}}],"group_member":{"card":"c","role":"admin","title":"\u00e9"}}}"#;
        let head = read_head(frame).unwrap().unwrap();
        assert_eq!(head.event_type.as_ref().and_then(Field::as_str), Some("message_receive"));
        assert_eq!((head.self_id.as_ref().and_then(Field::as_i64), head.data_is), (Some(10001), Shape::Object));
        let d = &head.data;
        assert_eq!(d.message_scene.as_ref().and_then(Field::as_str), Some("group"));
        let ids = [&d.peer_id, &d.message_seq, &d.sender_id].map(|f| f.as_ref().and_then(Field::as_i64));
        assert_eq!(ids, [Some(20001), Some(5), Some(10002)]);
        let summary = d.segments.as_ref().unwrap();
        assert_eq!((summary.text.as_str(), summary.mentions(10001)), (" hi ", true));
    }

    #[test]
    fn the_last_data_counts_with_its_own_segments() {
        let head = read_head(
            br#"{"data":{"peer_id":1,"segments":[{"type":"text","data":{"text":"a"}}]},"data":{"peer_id":2}}"#,
        )
        .unwrap()
        .unwrap();
        let d = &head.data;
        assert_eq!((d.peer_id.as_ref().and_then(Field::as_i64), d.segments.is_none()), (Some(2), true));
        let head = read_head(br#"{"data":{"peer_id":1},"data":[1]}"#).unwrap().unwrap();
        assert_eq!((head.data_is, head.data.peer_id), (Shape::NotObject, None));
        assert!(read_head(b"[1]").unwrap().is_none());
        assert!(read_head(b"{\"data\":{\"group\":{\"name\":\"\xff\"}}}").is_err(), "what is skipped is checked");
    }
}
