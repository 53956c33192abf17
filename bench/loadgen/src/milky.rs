//! Milky: events pushed on the WebSocket at `/event` as `{time, self_id, event_type, data}`,
//! calls answered at `POST /api/<action>` with `{status, retcode, data}` (seed 001's shapes, as
//! rhaibot's `tests/support/milky.rs` fake has them). The client sends nothing on the event socket.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::server::Shared;
use crate::wire::{EventFields, segments_number};

/// The account the fake is logged in as.
const SELF_ID: u64 = 10001;

/// A group `message_receive` event.
pub fn event(f: EventFields<'_>) -> String {
    format!(
        concat!(
            r#"{{"time":1700000000,"self_id":{me},"event_type":"message_receive","data":{{"#,
            r#""message_scene":"group","peer_id":{group},"message_seq":{seq},"sender_id":{user},"time":1700000000,"#,
            r#""segments":[{{"type":"text","data":{{"text":"{text}"}}}}],"#,
            r#""group":{{"group_id":{group},"group_name":"load","member_count":1000,"max_member_count":2000}},"#,
            r#""group_member":{{"group_id":{group},"user_id":{user},"nickname":"load","card":"","title":"","#,
            r#""sex":"unknown","level":1,"role":"member","join_time":1,"last_sent_time":1}}}}}}"#
        ),
        me = SELF_ID,
        seq = f.seq,
        user = f.user,
        group = f.group,
        text = f.text,
    )
}

/// The body of a send: only the message matters.
#[derive(Deserialize)]
struct Send<'a> {
    /// Outgoing segments.
    #[serde(borrow)]
    message: &'a RawValue,
}

/// Answers `POST <path>` with `body`: the HTTP status and the JSON answer. Sends are noted with
/// the session.
pub fn call(path: &str, body: &[u8], shared: &Shared) -> (u16, String) {
    let Some(action) = path.strip_prefix("/api/") else {
        return (404, String::new());
    };
    let data = match action {
        "send_group_message" | "send_private_message" => {
            let number = std::str::from_utf8(body)
                .ok()
                .and_then(|body| serde_json::from_str::<Send>(body).ok())
                .and_then(|send| segments_number(send.message.get()).ok());
            let Some(number) = number else {
                shared.notes.malformed();
                return (200, r#"{"status":"failed","retcode":-400,"data":null,"message":"bad message"}"#.into());
            };
            shared.notes.reply(number);
            format!(r#"{{"message_seq":{},"time":1700000000}}"#, shared.next_id())
        }
        "get_impl_info" => concat!(
            r#"{"impl_name":"rhaibot-loadgen","impl_version":"0.1.0","qq_protocol_version":"loadgen","#,
            r#""qq_protocol_type":"linux","milky_version":"1.0"}"#
        )
        .into(),
        "get_login_info" => format!(r#"{{"uin":{SELF_ID},"nickname":"loadgen"}}"#),
        _ => "{}".into(),
    };
    (200, format!(r#"{{"status":"ok","retcode":0,"data":{data},"message":""}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Note;
    use crate::wire::{EventTemplate, Protocol};
    use serde_json::Value;

    #[test]
    fn events_have_what_rhaibots_decoder_requires() {
        let frame = EventTemplate::new(Protocol::Milky, "/echo {i}", 2).frame(7);
        let v: Value = serde_json::from_str(&frame).expect("valid JSON");
        assert_eq!(v["event_type"], "message_receive");
        let d = &v["data"];
        for key in ["message_scene", "peer_id", "sender_id", "message_seq"] {
            assert!(!d[key].is_null(), "{key}");
        }
        assert_eq!(
            (&d["message_scene"], &d["message_seq"], &d["peer_id"]),
            (&"group".into(), &7.into(), &123_457.into())
        );
        assert_eq!(d["segments"][0]["data"]["text"], "/echo 7");
        assert_ne!(d["sender_id"], v["self_id"], "the bot's own messages are not answered");
        assert_eq!(d["group_member"]["user_id"], d["sender_id"]);
    }

    #[test]
    fn sends_are_noted_and_answered_with_a_sequence() {
        let (shared, mut notes) = Shared::for_test(Protocol::Milky);
        let (status, answer) = call(
            "/api/send_group_message",
            br#"{"group_id":1,"message":[{"type":"text","data":{"text":"7"}}]}"#,
            &shared,
        );
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!((status, &v["status"], &v["retcode"]), (200, &"ok".into(), &0.into()));
        assert!(v["data"]["message_seq"].is_u64());
        assert!(matches!(notes.try_recv(), Ok(Note::Reply { number: Some(7), .. })));

        let (_, answer) = call("/api/get_impl_info", b"{}", &shared);
        let v: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["data"]["impl_name"], "rhaibot-loadgen");
        assert!(notes.try_recv().is_err(), "other calls are not replies");

        let (_, answer) = call("/api/send_group_message", b"{\"group_id\":1}", &shared);
        assert!(answer.contains("failed"));
        assert!(matches!(notes.try_recv(), Ok(Note::Malformed)));
        assert_eq!(call("/elsewhere", b"", &shared).0, 404);
    }
}
