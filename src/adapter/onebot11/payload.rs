//! The members of a OneBot 11 frame that decoding reads, in fixed slots, read in one pass over
//! its text ([`read_head`]) with [`crate::adapter::slots`]: an event's routing fields, or an
//! action response's envelope. The rest of an event (its sender, its `raw_message`, the font...)
//! is checked, not built, and parsed only if a script asks.
//!
//! A map head (each named member a key string and a value in a `BTreeMap`, dropped again once
//! decoding had taken the ids out) cost about a third of the reactor's instructions per event.

use serde::de::MapAccess;

use super::summary::{Message, MessageSeed};
use crate::adapter::head::read_document;
use crate::adapter::slots::{Field, Members, Object, Slot};

/// A frame's members that decoding reads.
#[derive(Debug, Default)]
pub struct Head<'a> {
    /// `message`, `notice`, `request` or `meta_event` (`message_sent` for the bot's own): an
    /// event has one, a response none.
    pub post_type: Option<Field<'a>>,
    /// A message's detail type: `private` or `group`.
    pub message_type: Option<Field<'a>>,
    /// A notice's detail type.
    pub notice_type: Option<Field<'a>>,
    /// A request's detail type.
    pub request_type: Option<Field<'a>>,
    /// A meta event's detail type.
    pub meta_event_type: Option<Field<'a>>,
    /// The last part of an event's name.
    pub sub_type: Option<Field<'a>>,
    /// The bot's account.
    pub self_id: Option<Field<'a>>,
    /// The bot's account in go-cqhttp's guild channels, which @-mention it by this.
    pub self_tiny_id: Option<Field<'a>>,
    /// A user.
    pub user_id: Option<Field<'a>>,
    /// A group.
    pub group_id: Option<Field<'a>>,
    /// A message.
    pub message_id: Option<Field<'a>>,
    /// What answers a request.
    pub flag: Option<Field<'a>>,
    /// A heartbeat's interval, in milliseconds.
    pub interval: Option<Field<'a>>,
    /// The `message` member: an event's message as routing reads it, or a response's error text.
    pub message: Option<Message>,
    /// A response's echo of its call.
    pub echo: Option<Field<'a>>,
    /// A response's `ok`, `async` or `failed`.
    pub status: Option<Field<'a>>,
    /// A response's code (0: success).
    pub retcode: Option<Field<'a>>,
    /// A response's result, built whole.
    pub data: Option<Field<'a>>,
    /// A response's error text, as some implementations name it.
    pub wording: Option<Field<'a>>,
    /// A response's error text, as others name it.
    pub msg: Option<Field<'a>>,
}

/// Reads `frame`'s [`Head`]; `None` when it is JSON but not an object. Fails when it is not one
/// well-formed JSON document, like [`serde_json::from_slice`].
pub fn read_head(frame: &[u8]) -> serde_json::Result<Option<Head<'_>>> {
    let mut head = Head::default();
    let object = read_document(frame, Object(&mut head))?;
    Ok(object.then_some(head))
}

impl<'de> Members<'de> for Head<'de> {
    fn read<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        let slot = match key {
            "post_type" => &mut self.post_type,
            "message_type" => &mut self.message_type,
            "notice_type" => &mut self.notice_type,
            "request_type" => &mut self.request_type,
            "meta_event_type" => &mut self.meta_event_type,
            "sub_type" => &mut self.sub_type,
            "self_id" => &mut self.self_id,
            "self_tiny_id" => &mut self.self_tiny_id,
            "user_id" => &mut self.user_id,
            "group_id" => &mut self.group_id,
            "message_id" => &mut self.message_id,
            "flag" => &mut self.flag,
            "interval" => &mut self.interval,
            "echo" => &mut self.echo,
            "status" => &mut self.status,
            "retcode" => &mut self.retcode,
            "data" => &mut self.data,
            "wording" => &mut self.wording,
            "msg" => &mut self.msg,
            "message" => {
                self.message = Some(map.next_value_seed(MessageSeed)?);
                return Ok(true);
            }
            _ => return Ok(false),
        };
        *slot = map.next_value_seed(Slot)?;
        Ok(true)
    }
}

impl Head<'_> {
    /// A response's outcome: its `data`, or its code and error text.
    pub fn response(self) -> Result<serde_json::Value, (i64, String)> {
        let Head { retcode, status, data, message, wording, msg, .. } = self;
        let message = match &message {
            Some(Message::Text(text)) => Some(text.as_str()),
            _ => None,
        };
        super::outcome(
            retcode.as_ref().and_then(Field::as_i64),
            status.as_ref().and_then(Field::as_str),
            [message, wording.as_ref().and_then(Field::as_str), msg.as_ref().and_then(Field::as_str)],
            data.map(Field::into_value),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::summary::Summary;

    #[test]
    fn an_event_is_read_into_its_slots_with_its_message_summed_up() {
        let frame = br#"{"time":1,"self_id":10001,"post_type":"message","message_type":"group","sub_type":"normal",
            "message_id":-5,"group_id":20001,"user_id":"10002","message":[{"type":"at","data":{"qq":"10001"}},
            {"type":"text","data":{"text":" hi "}}],"raw_message":"x","font":0,"sender":{"card":"\u00e9"}}"#;
        let head = read_head(frame).unwrap().unwrap();
        let text = |f: &Option<Field<'_>>| f.as_ref().and_then(Field::as_str).map(str::to_owned);
        assert_eq!(
            [&head.post_type, &head.message_type, &head.sub_type, &head.user_id].map(text),
            [Some("message".into()), Some("group".into()), Some("normal".into()), Some("10002".into())]
        );
        let ids = [&head.self_id, &head.group_id, &head.message_id].map(|f| f.as_ref().and_then(Field::as_i64));
        assert_eq!(ids, [Some(10001), Some(20001), Some(-5)]);
        let Some(Message::Segments(Summary { text, .. })) = &head.message else { panic!("{:?}", head.message) };
        assert_eq!(text, " hi ");
        assert!(head.echo.is_none() && head.data.is_none());
    }

    #[test]
    fn a_response_keeps_its_data_whole_and_its_error_text() {
        let head =
            read_head(br#"{"status":"ok","retcode":0,"data":{"message_id":7,"x":[1]},"echo":"12"}"#).unwrap().unwrap();
        assert_eq!(head.echo.as_ref().and_then(Field::as_str), Some("12"));
        assert_eq!(head.response(), Ok(serde_json::json!({"message_id": 7, "x": [1]})));
        let failed = br#"{"status":"failed","retcode":1404,"message":"","wording":"no such group","echo":3}"#;
        let head = read_head(failed).unwrap().unwrap();
        assert_eq!(head.response(), Err((1404, "no such group".into())));
    }

    #[test]
    fn a_repeated_member_keeps_its_last_value_and_null_is_absent() {
        let head =
            read_head(br#"{"post_type":"notice","post_type":"request","flag":"f","flag":null}"#).unwrap().unwrap();
        assert_eq!(head.post_type.as_ref().and_then(Field::as_str), Some("request"));
        assert!(head.flag.is_none());
        assert!(read_head(b"[1]").unwrap().is_none());
        assert!(read_head(b"{\"sender\":{\"card\":\"\xff\"}}").is_err(), "what is skipped is checked");
    }
}
