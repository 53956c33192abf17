//! The official QQ bot platform, gateway mode (shapes from rhaibot's `src/adapter/qq` and its
//! `tests/support/qq.rs` fake): the AccessToken at `POST /app/getAppAccessToken`, the OpenAPI
//! (`GET /gateway/bot`, `GET /users/@me`, `POST /v2/groups/{openid}/messages`), and the gateway
//! WebSocket: Hello (op 10), Identify (op 2) answered by READY, heartbeats (op 1) by op 11, then
//! `GROUP_AT_MESSAGE_CREATE` dispatches, each with its own message id (the platform allows five
//! replies per message) and a current timestamp (rhaibot's reply window starts there).

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::server::Shared;
use crate::wire::{EventFields, first_number};

/// The gateway's first frame: the heartbeat interval rhaibot uses.
pub const HELLO: &str = r#"{"op":10,"d":{"heartbeat_interval":41250}}"#;

/// The session the gateway hands out.
const READY: &str = concat!(
    r#"{"op":0,"s":1,"t":"READY","id":"READY:1","d":{"version":1,"session_id":"loadgen","#,
    r#""user":{"id":"BOT","username":"loadgen","bot":true},"shard":[0,1]}}"#
);

/// The answer to a Resume (rhaibot resumes when its data directory keeps an old session).
const RESUMED: &str = r#"{"op":0,"s":1,"t":"RESUMED","id":"RESUMED:1","d":{}}"#;

/// A `GROUP_AT_MESSAGE_CREATE` dispatch.
pub fn event(f: EventFields<'_>) -> String {
    format!(
        concat!(
            r#"{{"op":0,"s":{s},"t":"GROUP_AT_MESSAGE_CREATE","id":"GROUP_AT_MESSAGE_CREATE:{seq}","d":{{"#,
            r#""id":"MSG{seq}","content":" {text}","timestamp":"{time}","group_id":"G{group}","group_openid":"G{group}","#,
            r#""author":{{"id":"U{user}","member_openid":"U{user}","union_openid":"U{user}"}}}}}}"#
        ),
        // READY is 1.
        s = f.seq + 1,
        seq = f.seq,
        text = f.text,
        time = now_rfc3339(),
        group = f.group,
        user = f.user,
    )
}

/// What the gateway does about a frame the client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing.
    Nothing,
    /// Sends this frame.
    Send(&'static str),
    /// Sends this frame, after which the session runs and events may flow.
    Start(&'static str),
}

/// The opcode of a gateway payload; the rest is not needed.
#[derive(Deserialize)]
struct Payload {
    /// The opcode.
    op: u8,
}

/// The gateway's reaction to `frame`: an ack to a heartbeat, a session to an Identify or Resume;
/// `None` when the frame is not a payload.
pub fn on_frame(frame: &str) -> Option<Reaction> {
    let payload: Payload = serde_json::from_str(frame).ok()?;
    Some(match payload.op {
        1 => Reaction::Send(r#"{"op":11}"#),
        2 => Reaction::Start(READY),
        6 => Reaction::Start(RESUMED),
        _ => Reaction::Nothing,
    })
}

/// The body of a message send: only the text matters.
#[derive(Deserialize)]
struct Send<'a> {
    /// The text.
    #[serde(default, borrow)]
    content: Cow<'a, str>,
}

/// Answers `<method> <path>` with `body`: the HTTP status and the JSON answer. Message sends are
/// noted with the session.
pub fn call(method: &str, path: &str, body: &[u8], shared: &Shared) -> (u16, String) {
    match (method, path) {
        ("POST", "/app/getAppAccessToken") => (200, r#"{"access_token":"loadgen-token","expires_in":"7200"}"#.into()),
        ("GET", "/gateway/bot") => (
            200,
            format!(
                r#"{{"url":"ws://127.0.0.1:{}/websocket","shards":1,"session_start_limit":{{"total":1000,"remaining":999,"reset_after":86400000,"max_concurrency":1}}}}"#,
                shared.port
            ),
        ),
        ("GET", "/users/@me") => (200, r#"{"id":"BOT","username":"loadgen","avatar":"","union_openid":"BOT"}"#.into()),
        ("POST", _) if path.starts_with("/v2/") && path.ends_with("/messages") => {
            let Some(send) = std::str::from_utf8(body).ok().and_then(|b| serde_json::from_str::<Send>(b).ok()) else {
                shared.notes.malformed();
                return (400, r#"{"code":40034001,"message":"bad request"}"#.into());
            };
            shared.notes.reply(first_number([send.content]));
            (200, format!(r#"{{"id":"R{}","timestamp":"{}"}}"#, shared.next_id(), now_rfc3339()))
        }
        _ => (404, r#"{"code":404,"message":"not found"}"#.into()),
    }
}

/// The time now as the platform writes it, e.g. `2023-11-15T06:13:20+08:00`.
fn now_rfc3339() -> String {
    rfc3339_beijing(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `unix_secs` in RFC 3339 at UTC+8, to the second.
fn rfc3339_beijing(unix_secs: u64) -> String {
    let local = unix_secs + 8 * 3600;
    let (days, secs) = (local / 86_400, local % 86_400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+08:00", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Note;
    use crate::wire::{EventTemplate, Protocol};
    use serde_json::Value;

    #[test]
    fn timestamps_are_rfc3339_in_beijing_time() {
        assert_eq!(rfc3339_beijing(0), "1970-01-01T08:00:00+08:00");
        assert_eq!(rfc3339_beijing(1_700_000_000), "2023-11-15T06:13:20+08:00");
        assert_eq!(rfc3339_beijing(951_782_400), "2000-02-29T08:00:00+08:00");
        assert_eq!(rfc3339_beijing(1_735_660_799), "2024-12-31T23:59:59+08:00");
    }

    #[test]
    fn dispatches_have_what_rhaibots_decoder_requires() {
        let frame = EventTemplate::new(Protocol::Qq, "/echo {i}", 1).frame(7);
        let v: Value = serde_json::from_str(&frame).expect("valid JSON");
        assert_eq!((&v["op"], &v["s"], &v["t"]), (&0.into(), &8.into(), &"GROUP_AT_MESSAGE_CREATE".into()));
        let d = &v["d"];
        assert_eq!(
            (&d["id"], &d["content"], &d["group_openid"]),
            (&"MSG7".into(), &" /echo 7".into(), &"G123456".into())
        );
        assert!(d["author"]["member_openid"].is_string());
        let stamp = d["timestamp"].as_str().unwrap();
        assert!(stamp.len() == 25 && stamp.ends_with("+08:00"), "{stamp}");
        let other = EventTemplate::new(Protocol::Qq, "/echo {i}", 1).frame(8);
        assert!(other.contains(r#""id":"MSG8""#), "each event its own message id");
    }

    #[test]
    fn the_gateway_acks_heartbeats_and_starts_a_session() {
        assert_eq!(on_frame(r#"{"op":1,"d":5}"#), Some(Reaction::Send(r#"{"op":11}"#)));
        assert_eq!(on_frame(r#"{"op":2,"d":{"token":"QQBot x","intents":1}}"#), Some(Reaction::Start(READY)));
        assert_eq!(on_frame(r#"{"op":6,"d":{}}"#), Some(Reaction::Start(RESUMED)));
        assert_eq!(on_frame(r#"{"op":3}"#), Some(Reaction::Nothing));
        assert_eq!(on_frame("nonsense"), None);
        for frame in [HELLO, READY, RESUMED] {
            let v: Value = serde_json::from_str(frame).expect("valid JSON");
            assert!(v["op"].is_u64());
        }
        let ready: Value = serde_json::from_str(READY).unwrap();
        assert!(ready["d"]["session_id"].is_string() && ready["d"]["user"]["id"].is_string());
        let hello: Value = serde_json::from_str(HELLO).unwrap();
        assert!(hello["d"]["heartbeat_interval"].as_u64() > Some(0));
    }

    #[test]
    fn the_rest_api_answers_token_gateway_and_sends() {
        let (shared, mut notes) = Shared::for_test(Protocol::Qq);
        let (status, token) = call("POST", "/app/getAppAccessToken", br#"{"appId":"1","clientSecret":"s"}"#, &shared);
        let token: Value = serde_json::from_str(&token).unwrap();
        assert_eq!((status, token["expires_in"].as_str()), (200, Some("7200")));
        assert!(token["access_token"].is_string());
        let (_, gateway) = call("GET", "/gateway/bot", b"", &shared);
        let gateway: Value = serde_json::from_str(&gateway).unwrap();
        assert_eq!(gateway["url"], format!("ws://127.0.0.1:{}/websocket", shared.port));
        let (_, me) = call("GET", "/users/@me", b"", &shared);
        assert!(serde_json::from_str::<Value>(&me).unwrap()["id"].is_string());

        let body = br#"{"content":"7","msg_type":0,"msg_id":"MSG7","msg_seq":1}"#;
        let (status, sent) = call("POST", "/v2/groups/G123456/messages", body, &shared);
        let sent: Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(status, 200);
        assert!(sent["id"].is_string() && sent["timestamp"].is_string());
        assert!(matches!(notes.try_recv(), Ok(Note::Reply { number: Some(7), .. })));
        assert_eq!(call("POST", "/v2/groups/G1/messages", b"[", &shared).0, 400);
        assert!(matches!(notes.try_recv(), Ok(Note::Malformed)));
        assert_eq!(call("GET", "/nowhere", b"", &shared).0, 404);
    }
}
