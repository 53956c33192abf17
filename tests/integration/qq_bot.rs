//! The official platform end to end: a runtime with `protocol = "qq"` against the fake platform
//! (token endpoint, OpenAPI, gateway, signed webhook), over TLS where the platform uses it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rhaibot::adapter::qq::sign::WebhookKey;
use serde_json::{Value, json};

use super::catalog::catalog;
use crate::support::qq::{ApiRequest, ApiResponder, FakeGateway, FakePlatform};
use crate::support::tls::{Certificates, TlsFront};
use crate::support::{Running, within};

const APP_ID: &str = "10001";
const SECRET: &str = "DG5g3B4j9X2KOErG";

/// Answers the platform's usual shapes: the bot's identity, a sent message's id, an upload's
/// file_info; `{}` to the rest.
fn usual() -> ApiResponder {
    Arc::new(|r: &ApiRequest, n| {
        let path = r.uri.split('?').next().unwrap_or_default();
        let body = if path == "/users/@me" {
            json!({"id": "BOT", "username": "bot"})
        } else if path.ends_with("/files") {
            json!({"file_uuid": "u", "file_info": format!("FI-{n}"), "ttl": 3600})
        } else if path.ends_with("/messages") && r.method == "POST" {
            json!({"id": format!("SENT-{n}"), "timestamp": "2026-11-30T00:00:00+08:00"})
        } else {
            json!({})
        };
        (200, body)
    })
}

fn config(api: &str, events: &str) -> String {
    format!(
        "[[bot]]\nname = \"official\"\nprotocol = \"qq\"\napp_id = \"{APP_ID}\"\nsecret = \"{SECRET}\"\n\
         api_url = \"{api}\"\ntoken_url = \"{api}\"\nreconnect_min_ms = 20\nreconnect_max_ms = 100\n{events}\n"
    )
}

/// Every function with a route, called from a script, and the request it must make.
fn calls() -> Vec<(&'static str, Value, &'static str, &'static str, Value)> {
    let n = Value::Null;
    vec![
        ("get_bot_info", json!({}), "GET", "/users/@me", n.clone()),
        ("get_bot_guilds", json!({}), "GET", "/users/@me/guilds?limit=100", n.clone()),
        ("get_guild_info", json!({"guild_id": "G"}), "GET", "/guilds/G", n.clone()),
        ("get_guild_channels", json!({"guild_id": "G"}), "GET", "/guilds/G/channels", n.clone()),
        ("get_channels_info", json!({"channel_id": "C"}), "GET", "/channels/C", n.clone()),
        (
            "create_channels",
            json!({"guild_id": "G", "name": "n", "type_": 0, "position": 1, "private_user_ids": ["a"]}),
            "POST",
            "/guilds/G/channels",
            json!({"name": "n", "type": 0, "position": 1, "private_user_ids": ["a"]}),
        ),
        ("patch_channels", json!({"channel_id": "C", "name": "n"}), "PATCH", "/channels/C", json!({"name": "n"})),
        ("delete_channels", json!({"channel_id": "C"}), "DELETE", "/channels/C", n.clone()),
        ("get_online_nums", json!({"channel_id": "C"}), "GET", "/channels/C/online_nums", n.clone()),
        ("get_guild_members", json!({"guild_id": "G"}), "GET", "/guilds/G/members?limit=400", n.clone()),
        (
            "get_role_members",
            json!({"guild_id": "G", "role_id": "R"}),
            "GET",
            "/guilds/G/roles/R/members?limit=400&start_index=0",
            n.clone(),
        ),
        ("get_member_info", json!({"guild_id": "G", "user_id": "U"}), "GET", "/guilds/G/members/U", n.clone()),
        (
            "delete_member",
            json!({"guild_id": "G", "user_id": "U", "add_blacklist": true, "delete_history_msg_days": 7}),
            "DELETE",
            "/guilds/G/members/U",
            json!({"add_blacklist": true, "delete_history_msg_days": 7}),
        ),
        ("get_guild_roles", json!({"guild_id": "G"}), "GET", "/guilds/G/roles", n.clone()),
        (
            "create_role",
            json!({"guild_id": "G", "name": "r", "color": "#FF0000", "hoist": true}),
            "POST",
            "/guilds/G/roles",
            json!({"name": "r", "color": 0xFFFF_0000u32, "hoist": 1}),
        ),
        (
            "patch_role",
            json!({"guild_id": "G", "role_id": "R", "name": "r"}),
            "PATCH",
            "/guilds/G/roles/R",
            json!({"name": "r"}),
        ),
        ("delete_role", json!({"guild_id": "G", "role_id": "R"}), "DELETE", "/guilds/G/roles/R", n.clone()),
        (
            "create_role_member",
            json!({"user_id": "U", "guild_id": "G", "role_id": "5", "channel_id": "C"}),
            "PUT",
            "/guilds/G/members/U/roles/5",
            json!({"channel": {"id": "C"}}),
        ),
        (
            "delete_role_member",
            json!({"user_id": "U", "guild_id": "G", "role_id": "5", "channel_id": "C"}),
            "DELETE",
            "/guilds/G/members/U/roles/5",
            json!({"channel": {"id": "C"}}),
        ),
        (
            "get_channel_member_permission",
            json!({"channel_id": "C", "user_id": "U"}),
            "GET",
            "/channels/C/members/U/permissions",
            n.clone(),
        ),
        (
            "put_channel_member_permission",
            json!({"channel_id": "C", "user_id": "U", "add": "1"}),
            "PUT",
            "/channels/C/members/U/permissions",
            json!({"add": "1", "remove": "0"}),
        ),
        (
            "get_channel_role_permission",
            json!({"channel_id": "C", "role_id": "R"}),
            "GET",
            "/channels/C/roles/R/permissions",
            n.clone(),
        ),
        (
            "put_channel_role_permission",
            json!({"channel_id": "C", "role_id": "R", "add": "1", "remove": "2"}),
            "PUT",
            "/channels/C/roles/R/permissions",
            json!({"add": "1", "remove": "2"}),
        ),
        ("get_message_info", json!({"channel_id": "C", "message_id": "M"}), "GET", "/channels/C/messages/M", n.clone()),
        (
            "send_msg",
            json!({"channel_id": "C", "content": "hi", "message_id": "M", "message_reference_id": "R"}),
            "POST",
            "/channels/C/messages",
            json!({"content": "hi", "msg_id": "M", "message_reference": {"message_id": "R", "ignore_get_message_error": false}}),
        ),
        (
            "send_embed",
            json!({"channel_id": "C", "title": "t", "content": ["a", "b"], "prompt": "p"}),
            "POST",
            "/channels/C/messages",
            json!({"embed": {"title": "t", "prompt": "p", "fields": [{"name": "a"}, {"name": "b"}]}}),
        ),
        (
            "send_ark_23",
            json!({"channel_id": "C", "content": ["a"], "link": ["https://l"], "desc": "d", "prompt": "p"}),
            "POST",
            "/channels/C/messages",
            json!({"ark": {"template_id": 23, "kv": [{"key": "#DESC#", "value": "d"}, {"key": "#PROMPT#", "value": "p"},
                {"key": "#LIST#", "obj": [{"obj_kv": [{"key": "desc", "value": "a"}, {"key": "link", "value": "https://l"}]}]}]}}),
        ),
        (
            "send_ark_24",
            json!({"channel_id": "C", "title": "t", "content": "c", "subtitile": "s"}),
            "POST",
            "/channels/C/messages",
            json!({"ark": {"template_id": 24, "kv": [{"key": "#TITLE#", "value": "t"}, {"key": "#METADESC#", "value": "c"},
                {"key": "#SUBTITLE#", "value": "s"}]}}),
        ),
        (
            "send_ark_37",
            json!({"channel_id": "C", "title": "t", "image": "https://i"}),
            "POST",
            "/channels/C/messages",
            json!({"ark": {"template_id": 37, "kv": [{"key": "#METATITLE#", "value": "t"}, {"key": "#METACOVER#", "value": "https://i"}]}}),
        ),
        (
            "send_markdown",
            json!({"channel_id": "C", "template_id": "T", "key_values": [{"k": "v"}], "keyboard_id": "K"}),
            "POST",
            "/channels/C/messages",
            json!({"markdown": {"custom_template_id": "T", "params": [{"key": "k", "values": ["v"]}]}, "keyboard": {"id": "K"}}),
        ),
        (
            "delete_msg",
            json!({"channel_id": "C", "message_id": "M"}),
            "DELETE",
            "/channels/C/messages/M?hidetip=false",
            n.clone(),
        ),
        ("get_guild_setting", json!({"guild_id": "G"}), "GET", "/guilds/G/message/setting", n.clone()),
        (
            "create_dm_guild",
            json!({"target_id": "U", "guild_id": "G"}),
            "POST",
            "/users/@me/dms",
            json!({"recipient_id": "U", "source_guild_id": "G"}),
        ),
        ("send_dm", json!({"guild_id": "G", "content": "hi"}), "POST", "/dms/G/messages", json!({"content": "hi"})),
        (
            "delete_dm_msg",
            json!({"guild_id": "G", "message_id": "M", "hidetip": true}),
            "DELETE",
            "/dms/G/messages/M?hidetip=true",
            n.clone(),
        ),
        (
            "mute_all_member",
            json!({"guild_id": "G", "mute_seconds": 60}),
            "PATCH",
            "/guilds/G/mute",
            json!({"mute_seconds": "60"}),
        ),
        (
            "mute_member",
            json!({"guild_id": "G", "user_id": "U", "mute_end_timestamp": "1700000000"}),
            "PATCH",
            "/guilds/G/members/U/mute",
            json!({"mute_end_timestamp": "1700000000"}),
        ),
        (
            "mute_members",
            json!({"guild_id": "G", "user_id": ["a", "b"], "mute_seconds": "60"}),
            "PATCH",
            "/guilds/G/mute",
            json!({"user_ids": ["a", "b"], "mute_seconds": "60"}),
        ),
        (
            "create_announce",
            json!({"guild_id": "G", "channel_id": "C", "message_id": "M"}),
            "POST",
            "/guilds/G/announces",
            json!({"channel_id": "C", "message_id": "M"}),
        ),
        ("delete_announce", json!({"guild_id": "G"}), "DELETE", "/guilds/G/announces/all", n.clone()),
        ("create_pinmsg", json!({"channel_id": "C", "message_id": "M"}), "PUT", "/channels/C/pins/M", json!({})),
        ("delete_pinmsg", json!({"channel_id": "C", "message_id": "M"}), "DELETE", "/channels/C/pins/M", n.clone()),
        ("get_pinmsg", json!({"channel_id": "C"}), "GET", "/channels/C/pins", n.clone()),
        ("get_schedules", json!({"channel_id": "C", "since": 1}), "GET", "/channels/C/schedules", json!({"since": 1})),
        (
            "get_schedule_info",
            json!({"channel_id": "C", "schedule_id": "S"}),
            "GET",
            "/channels/C/schedules/S",
            n.clone(),
        ),
        (
            "create_schedule",
            json!({"channel_id": "C", "schedule_name": "n", "start_timestamp": "1", "end_timestamp": "2",
                   "jump_channel_id": "0", "remind_type": "0"}),
            "POST",
            "/channels/C/schedules",
            json!({"schedule": {"name": "n", "start_timestamp": "1", "end_timestamp": "2", "jump_channel_id": "0", "remind_type": "0"}}),
        ),
        (
            "patch_schedule",
            json!({"channel_id": "C", "schedule_id": "S", "schedule_name": "n", "start_timestamp": 1, "end_timestamp": 2,
                   "jump_channel_id": "0", "remind_type": "1"}),
            "PATCH",
            "/channels/C/schedules/S",
            json!({"schedule": {"name": "n", "start_timestamp": "1", "end_timestamp": "2", "jump_channel_id": "0", "remind_type": "1"}}),
        ),
        (
            "delete_schedule",
            json!({"channel_id": "C", "schedule_id": "S"}),
            "DELETE",
            "/channels/C/schedules/S",
            n.clone(),
        ),
        (
            "create_reaction",
            json!({"channel_id": "C", "message_id": "M", "type_": 1, "id_": "4"}),
            "PUT",
            "/channels/C/messages/M/reactions/1/4",
            json!({}),
        ),
        (
            "delete_reaction",
            json!({"channel_id": "C", "message_id": "M", "type_": 1, "id_": "4"}),
            "DELETE",
            "/channels/C/messages/M/reactions/1/4",
            n.clone(),
        ),
        (
            "get_reaction_users",
            json!({"channel_id": "C", "message_id": "M", "type_": 1, "id_": "4"}),
            "GET",
            "/channels/C/messages/M/reactions/1/4?limit=50",
            n.clone(),
        ),
        (
            "control_audio",
            json!({"channel_id": "C", "status": 0, "audio_url": "u"}),
            "POST",
            "/channels/C/audio",
            json!({"status": 0, "audio_url": "u"}),
        ),
        ("bot_on_mic", json!({"channel_id": "C"}), "PUT", "/channels/C/mic", json!({})),
        ("bot_off_mic", json!({"channel_id": "C"}), "DELETE", "/channels/C/mic", n.clone()),
        ("get_threads", json!({"channel_id": "C"}), "GET", "/channels/C/threads", n.clone()),
        ("get_thread_info", json!({"channel_id": "C", "thread_id": "T"}), "GET", "/channels/C/threads/T", n.clone()),
        (
            "create_thread",
            json!({"channel_id": "C", "title": "t", "content": {"a": 1}, "format_": 4}),
            "PUT",
            "/channels/C/threads",
            json!({"title": "t", "content": "{\"a\":1}", "format": 4}),
        ),
        ("delete_thread", json!({"channel_id": "C", "thread_id": "T"}), "DELETE", "/channels/C/threads/T", n.clone()),
        ("get_guild_permissions", json!({"guild_id": "G"}), "GET", "/guilds/G/api_permission", n.clone()),
        (
            "create_permission_demand",
            json!({"guild_id": "G", "channel_id": "C", "api": "create_role()", "desc": "d"}),
            "POST",
            "/guilds/G/api_permission/demand",
            json!({"channel_id": "C", "api_identify": {"path": "/guilds/{guild_id}/roles", "method": "POST"}, "desc": "d"}),
        ),
        (
            "upload_media",
            json!({"file_type": 1, "url": "https://x/a.png", "srv_send_msg": false, "group_openid": "GO"}),
            "POST",
            "/v2/groups/GO/files",
            json!({"file_type": 1, "url": "https://x/a.png", "srv_send_msg": false}),
        ),
        (
            "send_qq_dm",
            json!({"user_openid": "UO", "content": "hi", "message_id": "CM"}),
            "POST",
            "/v2/users/UO/messages",
            json!({"content": "hi", "msg_id": "CM", "msg_seq": 1, "msg_type": 0}),
        ),
        (
            "send_group_msg",
            json!({"group_openid": "GO", "media_file_info": "FI", "message_id": "M2"}),
            "POST",
            "/v2/groups/GO/messages",
            json!({"content": " ", "media": {"file_info": "FI"}, "msg_id": "M2", "msg_seq": 1, "msg_type": 7}),
        ),
        (
            "callback_interactions",
            json!({"interaction_id": "I", "code": 0}),
            "PUT",
            "/interactions/I",
            json!({"code": 0}),
        ),
        (
            "delete_group_msg",
            json!({"group_openid": "GO", "message_id": "M"}),
            "DELETE",
            "/v2/groups/GO/messages/M",
            n.clone(),
        ),
        ("delete_c2c_msg", json!({"user_openid": "UO", "message_id": "M"}), "DELETE", "/v2/users/UO/messages/M", n),
    ]
}

/// `route` with its placeholders filled from `params` (the catalog's view of the path).
fn fill(route: &str, params: &Value) -> String {
    let mut out = String::new();
    let mut rest = route;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}').unwrap();
        out.push_str(&rest[..start]);
        let key = &rest[start + 1..end];
        let value = [key, &format!("{key}_"), "user_openid"]
            .iter()
            .find_map(|k| params.get(*k).filter(|v| !v.is_null()))
            .unwrap_or(&json!("all"))
            .clone();
        out.push_str(value.as_str().map_or_else(|| value.to_string(), str::to_owned).as_str());
        rest = &rest[end + 1..];
    }
    out + rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_makes_the_request_the_catalog_and_the_docs_describe() {
    let cat = catalog("qq_official.json");
    let calls = calls();
    // Every function with a route is in the table, on the catalog's method and path.
    for a in cat["actions"].as_array().unwrap() {
        let name = a["action"].as_str().unwrap();
        let Some(rest) = a["rest"].as_str() else { continue };
        let (_, params, method, uri, _) =
            calls.iter().find(|c| c.0 == name).unwrap_or_else(|| panic!("{name} is not in the wire table"));
        let routes: Vec<&str> = rest.split(" | ").collect();
        let path = uri.split('?').next().unwrap();
        let on_route =
            routes.iter().any(|r| r.split_once(' ').is_some_and(|(m, p)| m == *method && fill(p, params) == path));
        assert!(on_route, "{name}: {method} {path} is not the catalog's {rest}");
    }
    let mut fake = FakePlatform::with_api(APP_ID, SECRET, 7200, usual()).await;
    let script: String = calls
        .iter()
        .map(|(name, params, ..)| {
            format!("try {{ qq::{name}({}); }} catch (e) {{ print(`{name}: ${{e}}`); }}\n", rhai_map(params))
        })
        .collect();
    let rt = Running::start(&config(&fake.url, "events = \"none\""), &[("all.rhai", &script)]);
    for (name, _, method, uri, body) in &calls {
        let r = fake.next_request().await;
        assert_eq!((r.method.as_str(), r.uri.as_str()), (*method, *uri), "{name}");
        assert_eq!(&r.body, body, "{name}'s body");
    }
    rt.stop().await;
}

/// A JSON value written as a Rhai literal.
fn rhai_map(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let fields: Vec<String> = m.iter().map(|(k, v)| format!("{k}: {}", rhai_map(v))).collect();
            format!("#{{{}}}", fields.join(", "))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(rhai_map).collect::<Vec<_>>().join(", ")),
        Value::Null => "()".into(),
        other => other.to_string(),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Posts `payload` to the webhook at `url`, signed with the bot's secret.
pub(crate) async fn post(url: &str, payload: &Value) -> (u16, Value) {
    let body = payload.to_string();
    let ts = now().to_string();
    let sig = WebhookKey::from_secret(SECRET).unwrap().sign(&[ts.as_bytes(), body.as_bytes()]);
    let request = crate::support::http_client()
        .post(url)
        .header("content-type", "application/json")
        .header("X-Signature-Timestamp", ts)
        .header("X-Signature-Ed25519", sig)
        .body(body);
    let response = within("the webhook's answer", request.send()).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn group_message(t: &str, event_id: &str, message_id: &str, text: &str) -> Value {
    json!({"op": 0, "id": event_id, "t": t, "d": {
        "id": message_id, "content": text, "timestamp": chrono::Utc::now().to_rfc3339(), "group_openid": "G",
        "author": {"id": "A", "member_openid": "MEMBER"}}})
}

pub(crate) async fn webhook_bot(script: &str) -> (FakePlatform, Running, String) {
    let fake = FakePlatform::with_api(APP_ID, SECRET, 7200, usual()).await;
    let events = "events = \"webhook\"\nlisten = \"127.0.0.1:0\"\npath = \"/qq\"";
    let rt = Running::start(&config(&fake.url, events), &[("bot.rhai", script)]);
    let addr = rt.listen_addr("official").await;
    (fake, rt, format!("http://{addr}/qq"))
}

/// The next request that is not the bot asking who it is.
pub(crate) async fn next_send(fake: &mut FakePlatform) -> ApiRequest {
    loop {
        let r = fake.next_request().await;
        if r.uri != "/users/@me" {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_messages_are_answered_by_passive_replies_within_the_platforms_rules() {
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "/many" {
                for i in 0..6 {
                    try { ev.reply_wait(`r${i}`); } catch (e) { qq::get_guild_info(#{ guild_id: e.message }); }
                }
            } else {
                ev.reply([msg::reply(ev.message_id), `pong ${ev.text}`, msg::image("https://x/a.png")]);
            }
        });
        on("message.private", |ev| chat::send_private(ev.user_id, "private pong"));
    "#;
    let (mut fake, rt, url) = webhook_bot(script).await;
    assert_eq!(
        post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E1", "MSG1", " hi")).await,
        (200, json!({"op": 12, "d": 0}))
    );
    // The image is uploaded to the same group, then sent as media with the text.
    let upload = next_send(&mut fake).await;
    assert_eq!((upload.method.as_str(), upload.uri.as_str()), ("POST", "/v2/groups/G/files"));
    assert_eq!(upload.body, json!({"file_type": 1, "url": "https://x/a.png", "srv_send_msg": false}));
    let sent = next_send(&mut fake).await;
    assert_eq!(sent.uri, "/v2/groups/G/messages");
    let info = sent.body["media"]["file_info"].as_str().unwrap().to_owned();
    assert!(info.starts_with("FI-"), "{}", sent.body);
    assert_eq!(
        sent.body,
        json!({"content": "pong hi", "msg_id": "MSG1", "msg_seq": 1, "msg_type": 7, "media": {"file_info": info},
               "message_reference": {"message_id": "MSG1", "ignore_get_message_error": true}})
    );
    // The platform's copy of the same message as GROUP_MESSAGE_CREATE is the same message: no
    // second reply. The next message's reply proves nothing came in between.
    post(&url, &group_message("GROUP_MESSAGE_CREATE", "E2", "MSG1", "hi")).await;
    post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E3", "MSG2", "/many")).await;
    for seq in 1..=5 {
        let r = next_send(&mut fake).await;
        assert_eq!(
            (r.uri.as_str(), &r.body["msg_seq"], &r.body["msg_id"]),
            ("/v2/groups/G/messages", &json!(seq), &json!("MSG2"))
        );
    }
    // The sixth is refused before sending, with a clear reason.
    let refused = next_send(&mut fake).await;
    assert!(refused.uri.contains("already%20got%20its%205%20replies"), "{}", refused.uri);
    // C2C through the cross-protocol verb: a send with no message id answers the newest one.
    let c2c = json!({"op": 0, "id": "E4", "t": "C2C_MESSAGE_CREATE", "d": {
        "id": "CMSG", "content": "yo", "author": {"id": "A", "user_openid": "UOPEN"}}});
    post(&url, &c2c).await;
    let r = next_send(&mut fake).await;
    assert_eq!(r.uri, "/v2/users/UOPEN/messages");
    assert_eq!(r.body, json!({"content": "private pong", "msg_id": "CMSG", "msg_seq": 1, "msg_type": 0}));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proactive_sends_are_refused_with_the_platforms_rule_and_failures_come_back_as_values() {
    let script = r#"
        on("qq.GROUP_ADD_ROBOT", |ev| {
            // A send to a group nobody wrote in is proactive: refused before it is sent.
            try { chat::send_group("QUIET", "hello"); } catch (e) { qq::get_guild_info(#{ guild_id: e.message }); }
            // The platform refuses this one: the answer comes back as a value, as in qg_botsdk.
            let r = qq::get_guild_info(#{ guild_id: "missing" });
            qq::get_guild_info(#{ guild_id: `result=${r.result} code=${r.data.code} trace=${r.trace_id != ""}` });
            // An upload only works in the chat it was uploaded for.
            let up = qq::upload_media(#{ file_type: 1, url: "https://x/a.png", srv_send_msg: false, group_openid: "G" });
            try {
                qq::send_group_msg(#{ group_openid: "OTHER", media_file_info: up.data.file_info, message_id: "X" });
            } catch (e) { qq::get_guild_info(#{ guild_id: e.message }); }
            // The event itself may be answered by its id.
            ev.reply("thanks for adding me");
        });
    "#;
    let fake = FakePlatform::with_api(
        APP_ID,
        SECRET,
        7200,
        Arc::new(|r: &ApiRequest, _| {
            if r.uri.ends_with("/files") {
                return (200, json!({"file_uuid": "u", "file_info": "FILE", "ttl": 60}));
            }
            if r.uri == "/guilds/missing" {
                (404, json!({"code": 11264, "message": "guild not found"}))
            } else {
                (200, json!({"id": "X"}))
            }
        }),
    )
    .await;
    let mut fake = fake;
    let events = "events = \"webhook\"\nlisten = \"127.0.0.1:0\"\npath = \"/qq\"";
    let rt = Running::start(&config(&fake.url, events), &[("bot.rhai", script)]);
    let url = format!("http://{}/qq", rt.listen_addr("official").await);
    let added = json!({"op": 0, "id": "GROUP_ADD_ROBOT:1", "t": "GROUP_ADD_ROBOT", "d": {
        "group_openid": "G", "op_member_openid": "M", "timestamp": 1}});
    post(&url, &added).await;
    let proactive = next_send(&mut fake).await;
    assert!(proactive.uri.contains("no%20longer%20takes%20proactive"), "{}", proactive.uri);
    assert_eq!(next_send(&mut fake).await.uri, "/guilds/missing");
    assert_eq!(next_send(&mut fake).await.uri, "/guilds/result%3Dfalse%20code%3D11264%20trace%3Dtrue");
    assert_eq!(next_send(&mut fake).await.uri, "/v2/groups/G/files");
    let scoped = next_send(&mut fake).await;
    assert!(scoped.uri.contains("uploaded%20for%20group%3AG"), "{}", scoped.uri);
    let reply = next_send(&mut fake).await;
    assert_eq!(reply.uri, "/v2/groups/G/messages");
    assert_eq!(
        reply.body,
        json!({"content": "thanks for adding me", "event_id": "GROUP_ADD_ROBOT:1", "msg_seq": 1, "msg_type": 0})
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_event_reaches_its_callback_under_its_native_name() {
    let cat = catalog("events.json");
    let names: Vec<String> =
        cat["qq_official"]["events"].as_array().unwrap().iter().map(|e| e["t"].as_str().unwrap().to_owned()).collect();
    let script: String = names
        .iter()
        .map(|t| format!("on(\"qq.{t}\", |ev| qq::get_guild_info(#{{ guild_id: `${{ev.name}}|${{ev.user_id}}` }}));\n"))
        .collect();
    let (mut fake, rt, url) = webhook_bot(&script).await;
    for (i, t) in names.iter().enumerate() {
        let d = json!({"id": format!("m{i}"), "content": "x", "group_openid": "G", "channel_id": "C", "guild_id": "GU",
                       "openid": "OPEN", "member_openid": "MO", "user_openid": "UO",
                       "author": {"id": "A", "member_openid": "MO", "user_openid": "UO"}});
        assert_eq!(post(&url, &json!({"op": 0, "id": format!("{t}:{i}"), "t": t, "d": d})).await.0, 200, "{t}");
    }
    let mut seen = Vec::new();
    while seen.len() < names.len() {
        let r = next_send(&mut fake).await;
        let got = r.uri.strip_prefix("/guilds/qq.").unwrap_or_else(|| panic!("unexpected {}", r.uri)).to_owned();
        seen.push(got.split('%').next().unwrap().split('|').next().unwrap().to_owned());
    }
    seen.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(seen, expected);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_takes_the_next_matching_message_from_the_handlers() {
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "/ask" {
                ev.reply("yes or no?");
                let answer = qq::wait_for("user", #{ command: ["yes", "no"] }, 20);
                ev.reply(`you said ${answer.text}`);
            } else {
                ev.reply(`echo ${ev.text}`);
            }
        });
    "#;
    let (mut fake, rt, url) = webhook_bot(script).await;
    post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E1", "M1", "/ask")).await;
    assert_eq!(next_send(&mut fake).await.body["content"], "yes or no?");
    // A message that does not match goes to the handlers, after the conversation (the same
    // person's messages in a chat are handled in order); the matching one goes to the waiting
    // callback.
    post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E2", "M2", "maybe")).await;
    post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E3", "M3", "yes")).await;
    let r = next_send(&mut fake).await;
    assert_eq!(
        (&r.body["content"], &r.body["msg_id"], &r.body["msg_seq"]),
        (&json!("you said yes"), &json!("M1"), &json!(2))
    );
    assert_eq!(next_send(&mut fake).await.body["content"], "echo maybe");
    // The answer went to the waiting callback only: the next thing sent answers a new message.
    post(&url, &group_message("GROUP_AT_MESSAGE_CREATE", "E4", "M4", "after")).await;
    assert_eq!(next_send(&mut fake).await.body["content"], "echo after");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_its_shards_over_tls_and_replies_go_over_https() {
    let certs = Arc::new(Certificates::new());
    let mut gateway = FakeGateway::start().await;
    let gateway_front = TlsFront::with(format!("127.0.0.1:{}", gateway.port).parse().unwrap(), certs.clone()).await;
    let wss = format!("wss://localhost:{}", gateway_front.port);
    let responder: ApiResponder = {
        let usual = usual();
        Arc::new(move |r: &ApiRequest, n| {
            if r.uri == "/gateway/bot" {
                (
                    200,
                    json!({"url": wss, "shards": 2, "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 2}}),
                )
            } else {
                usual(r, n)
            }
        })
    };
    let mut fake = FakePlatform::with_api(APP_ID, SECRET, 7200, responder).await;
    let api_front = TlsFront::with(fake.url.trim_start_matches("http://").parse().unwrap(), certs.clone()).await;
    let api = format!("https://localhost:{}", api_front.port);
    let toml = format!("[tls]\nca_file = {:?}\n{}", certs.ca_file, config(&api, "events = \"gateway\""));
    let rt = Running::start(&toml, &[("bot.rhai", r#"on("message.group", |ev| ev.reply(`pong ${ev.text}`));"#)]);
    assert_eq!(fake.next_request().await.uri, "/gateway/bot");
    let mut shards = Vec::new();
    for _ in 0..2 {
        let identify = gateway.next_sent().await;
        assert_eq!(identify["op"], 2);
        assert_eq!(identify["d"]["token"], "QQBot token-1");
        assert_eq!(identify["d"]["intents"], 1 << 25, "computed from the handlers: GROUP_AND_C2C_EVENT");
        shards.push(identify["d"]["shard"].clone());
    }
    shards.sort_by_key(|s| s[0].as_u64());
    assert_eq!(shards, [json!([0, 2]), json!([1, 2])]);
    gateway.dispatch(group_message("GROUP_AT_MESSAGE_CREATE", "E1", "MSG1", " hello"));
    let r = fake.next_request().await;
    assert_eq!(r.uri, "/v2/groups/G/messages");
    assert_eq!(r.body, json!({"content": "pong hello", "msg_id": "MSG1", "msg_seq": 1, "msg_type": 0}));
    // A reply to shard 1 shows that it has handled its READY (and kept its session) too.
    gateway.dispatch_to(1, group_message("GROUP_AT_MESSAGE_CREATE", "E2", "MSG2", " again"));
    assert_eq!(fake.next_request().await.body["content"], "pong again");
    // Each shard keeps its session in the data dir, so a restart resumes.
    for shard in 0..2 {
        let file = rt.data_dir.join(format!("qq-official-shard-{shard}-of-2.json"));
        let session: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("session kept")).unwrap();
        assert_eq!(session["session_id"], format!("S{}", shard + 1));
    }
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_image_goes_to_a_guild_channel_as_a_multipart_file_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("cat.png");
    std::fs::write(&image, b"\x89PNG-not-really").unwrap();
    let mut fake = FakePlatform::with_api(APP_ID, SECRET, 7200, usual()).await;
    let script = format!(
        "qq::send_msg(#{{ channel_id: \"C\", content: \"a cat\", file_image: {:?}, message_reference_id: \"R\" }});",
        image.display().to_string()
    );
    let rt = Running::start(&config(&fake.url, "events = \"none\""), &[("img.rhai", &script)]);
    let r = fake.next_request().await;
    assert_eq!((r.method.as_str(), r.uri.as_str()), ("POST", "/channels/C/messages"));
    assert!(r.content_type.starts_with("multipart/form-data"), "{}", r.content_type);
    for part in
        ["name=\"content\"", "a cat", "name=\"file_image\"", "\u{fffd}PNG-not-really", "name=\"message_reference\""]
    {
        assert!(r.raw.contains(part), "{part} missing from {}", r.raw);
    }
    // Objects travel as JSON text in a form.
    assert!(r.raw.contains(r#"{"ignore_get_message_error":false,"message_id":"R"}"#), "{}", r.raw);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_replayed_late_keeps_its_window_and_members_are_paged_until_an_empty_page() {
    let script = r#"
        on("message.group", |ev| {
            try { ev.reply_wait("late?"); } catch (e) { qq::get_guild_info(#{ guild_id: e.message }); }
            let members = qq::get_guild_members(#{ guild_id: "G" });
            qq::get_guild_info(#{ guild_id: `members=${members.data.len()} pages=${members.result.len()}` });
        });
    "#;
    let responder: ApiResponder = Arc::new(|r: &ApiRequest, _| {
        let page = |ids: &[&str]| json!(ids.iter().map(|id| json!({"user": {"id": id}})).collect::<Vec<_>>());
        let body = match r.uri.as_str() {
            "/guilds/G/members?limit=400" => page(&["u1", "u2", "u3"]),
            "/guilds/G/members?limit=400&after=u3" => page(&["u3", "u4", "u5"]),
            "/guilds/G/members?limit=400&after=u5" => page(&[]),
            _ => json!({"id": "X"}),
        };
        (200, body)
    });
    let mut fake = FakePlatform::with_api(APP_ID, SECRET, 7200, responder).await;
    let events = "events = \"webhook\"\nlisten = \"127.0.0.1:0\"\npath = \"/qq\"";
    let rt = Running::start(&config(&fake.url, events), &[("bot.rhai", script)]);
    let url = format!("http://{}/qq", rt.listen_addr("official").await);
    let mut late = group_message("GROUP_AT_MESSAGE_CREATE", "E1", "OLD", "hi");
    late["d"]["timestamp"] = json!((chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339());
    post(&url, &late).await;
    let refused = next_send(&mut fake).await;
    assert!(refused.uri.contains("window%20of%20this%20message%20closed"), "{}", refused.uri);
    for _ in 0..3 {
        assert!(next_send(&mut fake).await.uri.starts_with("/guilds/G/members"));
    }
    assert_eq!(next_send(&mut fake).await.uri, "/guilds/members%3D5%20pages%3D3");
    rt.stop().await;
}
