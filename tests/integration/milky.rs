//! Milky over the wire against a fake implementation written from seed 001: every action's
//! request, every event under its names, each transport, errors, and messages built with
//! `msg::` arriving as Milky segments.

use serde_json::{Value, json};

use crate::support::Running;
use crate::support::milky::{self, FakeMilky, SELF_ID, friend_message, group_message, post_webhook, text};
use crate::support::process::BotDir;

fn config(url: &str, lines: &str) -> String {
    format!(
        "[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"{url}\"\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n{lines}\n"
    )
}

fn catalog(file: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/catalog").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {} ({e})", path.display()));
    serde_json::from_str(&text).expect("catalog is JSON")
}

/// The message text of a Milky send.
fn sent_text(body: &Value) -> String {
    body["message"]
        .as_array()
        .expect("message is an array of segments")
        .iter()
        .filter(|s| s["type"] == "text")
        .filter_map(|s| s["data"]["text"].as_str())
        .collect()
}

const PING: &str = r#"on("message", |ev| { if ev.text == "ping" { ev.reply("pong"); } });"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_action_goes_out_as_its_request() {
    let mut fake = FakeMilky::start(Some("tok")).await;
    let actions = catalog("milky.json")["actions"].as_array().unwrap().clone();
    let sample = |ty: &str| match ty {
        "int" | "int|null" => ("10001", json!(10001)),
        "str" | "str|null" => ("\"s\"", json!("s")),
        "bool" | "bool|null" => ("true", json!(true)),
        "[OutgoingSegment]" => ("\"hi\"", json!([{"type": "text", "data": {"text": "hi"}}])),
        _ => ("[]", json!([])),
    };
    let mut script = String::new();
    for a in &actions {
        let fields: Vec<String> = a["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("\"{}\": {}", p["name"].as_str().unwrap(), sample(p["type"].as_str().unwrap()).0))
            .collect();
        script += &format!("milky::{}(#{{{}}});\n", a["action"].as_str().unwrap(), fields.join(", "));
    }
    let rt = Running::start(&config(&fake.url, "access_token = \"tok\"\nevents = \"none\""), &[("all.rhai", &script)]);
    // The top level's calls come first, in order (the runtime asks get_impl_info after loading).
    let mut seen = Vec::new();
    while seen.len() < actions.len() {
        let call = fake.next_call().await;
        seen.push((call.action, call.body));
    }
    for (a, (action, body)) in actions.iter().zip(&seen) {
        assert_eq!(action, a["action"].as_str().unwrap());
        let expected: serde_json::Map<String, Value> = a["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().to_owned(), sample(p["type"].as_str().unwrap()).1))
            .collect();
        assert_eq!(body, &Value::Object(expected), "{action}");
    }
    rt.stop().await;
}

/// An event's `data` built from the seed's field list.
fn data_from_fields(fields: &[Value]) -> Value {
    let mut data = serde_json::Map::new();
    for (i, f) in fields.iter().enumerate() {
        let value = match f["type"].as_str().unwrap_or("obj") {
            "int" | "int|null" => json!(10001 + i as i64),
            "str" | "str|null" => json!(format!("v{i}")),
            "bool" | "bool|null" => json!(false),
            t if t.starts_with('[') => json!([]),
            _ => json!({}),
        };
        data.insert(f["name"].as_str().unwrap().to_owned(), value);
    }
    Value::Object(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_catalog_event_reaches_its_callback_under_its_names() {
    let mut fake = FakeMilky::start(None).await;
    let events = catalog("events.json")["milky"]["events"].as_array().unwrap().clone();
    let mut script = String::new();
    for ev in &events {
        let kind = ev["event_type"].as_str().unwrap();
        script += &format!(
            "on(\"milky.{kind}\", |ev| milky::send_private_message(10001, `{kind}|${{ev.name}}|${{ev.user_id}}|${{ev.group_id}}`));\n"
        );
    }
    for alias in ["message", "request.friend", "request.group", "member.increase", "member.decrease", "recall", "poke"]
    {
        script += &format!("on(\"{alias}\", |ev| milky::send_private_message(10001, `alias {alias}|${{ev.name}}`));\n");
    }
    let rt = Running::start(&config(&fake.url, ""), &[("events.rhai", &script)]);
    fake.opened().await;
    for ev in &events {
        let kind = ev["event_type"].as_str().unwrap();
        let event = if kind == "message_receive" {
            group_message(20001, 10002, 30001, text("hello"))
        } else {
            json!({"time": 1, "self_id": SELF_ID, "event_type": kind, "data": data_from_fields(ev["data_fields"].as_array().unwrap())})
        };
        fake.push(event.clone());
        let mut replies = Vec::new();
        let aliases = match kind {
            "message_receive"
            | "friend_request"
            | "group_join_request"
            | "group_invited_join_request"
            | "group_invitation"
            | "group_member_increase"
            | "group_member_decrease"
            | "message_recall"
            | "friend_nudge"
            | "group_nudge" => 1,
            _ => 0,
        };
        for _ in 0..1 + aliases {
            let call = fake.next_call_where(|c| c.action == "send_private_message").await;
            replies.push(sent_text(&call.body));
        }
        replies.sort();
        let own = replies.iter().find(|r| r.starts_with(kind)).unwrap_or_else(|| panic!("{kind}: {replies:?}"));
        let parts: Vec<&str> = own.split('|').collect();
        assert_eq!(parts[1], format!("milky.{kind}"), "{kind}");
        let data = &event["data"];
        let user = ["sender_id", "initiator_id", "user_id"]
            .iter()
            .find_map(|k| data.get(*k))
            .map_or("".into(), |v| v.to_string());
        if !matches!(kind, "message_recall") {
            assert_eq!(parts[2], user, "{kind}: user_id");
        }
        if let Some(group) = data.get("group_id").filter(|_| kind != "message_receive") {
            assert_eq!(parts[3], group.to_string(), "{kind}: group_id");
        }
        assert_eq!(replies.len(), 1 + aliases, "{kind}: {replies:?}");
    }
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_events_with_a_bearer_token_and_replies_as_milky_segments() {
    let mut fake = FakeMilky::start(Some("s3")).await;
    let script = r#"on("message.group", |ev| { ev.reply([msg::at(ev.user_id), msg::text(" pong "), msg::face(14), msg::reply(ev.message_id)]); });"#;
    let rt = Running::start(&config(&fake.url, "access_token = \"s3\""), &[("r.rhai", script)]);
    let opened = fake.opened().await;
    assert_eq!((opened.kind, opened.authorization.as_deref()), ("ws", Some("Bearer s3")));
    fake.push(group_message(20001, 10002, 30005, text("ping")));
    let call = fake.next_call_where(|c| c.action != "get_impl_info").await;
    assert_eq!(call.action, "send_group_message");
    assert_eq!(call.body["group_id"], 20001);
    assert_eq!(
        call.body["message"],
        json!([{"type": "mention", "data": {"user_id": 10002}}, {"type": "text", "data": {"text": " pong "}},
               {"type": "face", "data": {"face_id": "14"}}, {"type": "reply", "data": {"message_seq": 30005}}])
    );
    // The connection heals after a drop.
    fake.drop_stream();
    fake.opened().await;
    fake.push(group_message(20002, 10003, 30006, text("again")));
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(call.body["group_id"], 20002);
    rt.stop().await;
}

/// Each outgoing segment keeps every field Milky's `OutgoingSegment` defines, whether the script
/// wrote it in Milky's names or built it with `msg::` (OneBot's video `thumb` is the cover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_segments_keep_every_field_milky_defines() {
    let mut fake = FakeMilky::start(None).await;
    let script = r#"on("message", |ev| ev.reply([
        msg::segment("face", #{ face_id: "14", is_large: true }),
        msg::segment("image", #{ uri: "https://e.org/s.png", sub_type: "sticker", summary: "[s]" }),
        msg::video(#{ file: "https://e.org/v.mp4", thumb: "https://e.org/c.png" }),
        msg::segment("video", #{ uri: "https://e.org/w.mp4", thumb_uri: "https://e.org/d.png" }),
        msg::segment("light_app", #{ json_payload: `{"app":"com.tencent.x"}` }),
    ]));"#;
    let rt = Running::start(&config(&fake.url, ""), &[("s.rhai", script)]);
    fake.opened().await;
    fake.push(group_message(20001, 10002, 30011, text("go")));
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(
        call.body["message"],
        json!([
            {"type": "face", "data": {"face_id": "14", "is_large": true}},
            {"type": "image", "data": {"uri": "https://e.org/s.png", "sub_type": "sticker", "summary": "[s]"}},
            {"type": "video", "data": {"uri": "https://e.org/v.mp4", "thumb_uri": "https://e.org/c.png"}},
            {"type": "video", "data": {"uri": "https://e.org/w.mp4", "thumb_uri": "https://e.org/d.png"}},
            {"type": "light_app", "data": {"json_payload": "{\"app\":\"com.tencent.x\"}"}},
        ])
    );
    rt.stop().await;
}

/// The messages inside a forward are converted as a top-level message is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwards_messages_are_converted_like_the_top_level() {
    let mut fake = FakeMilky::start(None).await;
    let script = r#"on("message", |ev| ev.reply(msg::segment("forward", #{ messages: [
        #{ user_id: 10002, sender_name: "a", segments: [msg::at(10003), " hi", msg::face(14)] },
        #{ user_id: 10003, sender_name: "b", segments: "plain" },
    ] })));"#;
    let rt = Running::start(&config(&fake.url, ""), &[("f.rhai", script)]);
    fake.opened().await;
    fake.push(group_message(20001, 10002, 30012, text("go")));
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(
        call.body["message"],
        json!([{"type": "forward", "data": {"messages": [
            {"user_id": 10002, "sender_name": "a", "segments": [
                {"type": "mention", "data": {"user_id": 10003}}, {"type": "text", "data": {"text": " hi"}},
                {"type": "face", "data": {"face_id": "14"}}]},
            {"user_id": 10003, "sender_name": "b", "segments": [{"type": "text", "data": {"text": "plain"}}]},
        ]}}])
    );
    rt.stop().await;
}

/// A token in the event connection's query arrives as written, whatever characters it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_query_arrives_intact() {
    let token = "a+b/c=d&e#f g%20?";
    for events in ["ws", "sse"] {
        let mut fake = FakeMilky::start(Some(token)).await;
        let lines = format!("access_token = {token:?}\nevents = \"{events}\"\ntoken_in_query = true");
        let rt = Running::start(&config(&fake.url, &lines), &[]);
        let opened = fake.opened().await;
        assert_eq!((opened.kind, opened.query_token.as_deref()), (events, Some(token)));
        // A space as %20, not form encoding's `+`, which a plain percent decoder keeps as `+`.
        let sent = "access_token=a%2Bb%2Fc%3Dd%26e%23f%20g%2520%3F";
        assert_eq!(opened.raw_query.as_deref(), Some(sent), "over {events}");
        rt.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_span_data_lines_skip_junk_and_reconnect_with_the_token_in_the_query() {
    let mut fake = FakeMilky::start(Some("q")).await;
    let cfg = config(&fake.url, "access_token = \"q\"\nevents = \"sse\"\ntoken_in_query = true");
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    let opened = fake.opened().await;
    assert_eq!((opened.kind, opened.query_token.as_deref(), opened.authorization), ("sse", Some("q"), None));
    fake.push_raw("{broken".into());
    fake.push_raw(serde_json::to_string_pretty(&group_message(20001, 10002, 30007, text("ping"))).unwrap());
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(sent_text(&call.body), "pong");
    fake.drop_stream();
    fake.opened().await;
    fake.push(group_message(20002, 10002, 30008, text("ping")));
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(call.body["group_id"], 20002);
    rt.stop().await;
}

/// Milky 1.0's webhook carries no authentication (LLBot and Lagrange send no header), so a bot
/// with an API token still takes the implementation's POSTs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_takes_events_without_the_api_token() {
    let mut fake = FakeMilky::start(Some("api")).await;
    let cfg = config(&fake.url, "events = \"webhook\"\nlisten = \"127.0.0.1:0\"\naccess_token = \"api\"");
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    let url = format!("http://{}/", rt.listen_addr("mk").await);
    assert_eq!(post_webhook(&url, None, &group_message(20001, 10002, 30009, text("ping"))).await, 204);
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(sent_text(&call.body), "pong");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_checks_its_own_token_when_one_is_set() {
    let mut fake = FakeMilky::start(Some("api")).await;
    let lines = "events = \"webhook\"\nlisten = \"127.0.0.1:0\"\naccess_token = \"api\"\nwebhook_token = \"wh\"";
    let rt = Running::start(&config(&fake.url, lines), &[("p.rhai", PING)]);
    let url = format!("http://{}/", rt.listen_addr("mk").await);
    let ping = group_message(20001, 10002, 30009, text("ping"));
    assert_eq!(post_webhook(&url, None, &ping).await, 401);
    assert_eq!(post_webhook(&url, Some("api"), &ping).await, 403);
    assert_eq!(post_webhook(&url, Some("wh"), &ping).await, 204);
    let call = fake.next_call_where(|c| c.action == "send_group_message").await;
    assert_eq!(sent_text(&call.body), "pong");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_apis_and_failures_are_clear_catchable_errors() {
    let responder: milky::Responder = std::sync::Arc::new(|action, body| match action {
        "get_cookies" => milky::Reply::Missing,
        "get_group_info" => milky::Reply::Fail(-403, "offline".into()),
        "set_bio" => milky::Reply::Status(415),
        a => milky::default_response(a, body),
    });
    let mut fake = FakeMilky::with_responder(None, responder).await;
    let script = r#"
        on("message", |ev| {
            let out = [];
            try { milky::get_cookies("qq.com"); } catch (e) { out.push(`${e.code} ${e.message}`); }
            try { milky::get_group_info(20001); } catch (e) { out.push(`${e.code} ${e.message}`); }
            try { ev.reply_wait([msg::poke(1, 2)]); } catch (e) { out.push(e.message); }
            try { milky::set_bio("x"); } catch (e) { out.push(`${e.code} ${e.message}`); }
            ev.reply(out[0] + " | " + out[1] + " | " + out[2] + " | " + out[3]);
        });
    "#;
    let rt = Running::start(&config(&fake.url, ""), &[("e.rhai", script)]);
    fake.opened().await;
    fake.push(friend_message(10002, 30010, "go"));
    let call = fake.next_call_where(|c| c.action == "send_private_message").await;
    let text = sent_text(&call.body);
    assert!(
        text.contains("404 get_cookies: HTTP 404: the implementation does not offer the API `get_cookies`"),
        "{text}"
    );
    assert!(
        text.contains("-403 get_group_info failed: retcode -403: the implementation is not logged in to QQ: offline"),
        "{text}"
    );
    assert!(text.contains("a `poke` segment cannot be sent over Milky"), "{text}");
    assert!(text.contains("415 set_bio: HTTP 415: the implementation refused the request's content type"), "{text}");
    rt.stop().await;
}

/// A webhook beyond loopback without a token of its own would take events from anyone: it is
/// refused unless the config says it is open on purpose (Milky gives the implementation no token
/// to send), and then it starts with a warning.
#[test]
fn a_webhook_beyond_loopback_needs_a_token_or_says_it_is_open() {
    let (_held, port) = crate::support::refusing_port();
    let toml = |extra: &str| {
        format!(
            "[[bot]]\nprotocol = \"milky\"\nurl = \"http://127.0.0.1:{port}\"\nevents = \"webhook\"\nlisten = \"0.0.0.0:0\"\n{extra}"
        )
    };
    // Anyone could post events that scripts act on: refused before anything starts.
    let dir = BotDir::new(&[]).file("rhaibot.toml", &toml(""));
    let out = dir.run(&["run", "--config", "rhaibot.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("webhook_token") && stderr.contains("webhook_open = true"), "{stderr}");
    // Said to be open on purpose: it starts, and says what that means.
    let dir = BotDir::new(&[]).file("rhaibot.toml", &toml("webhook_open = true\n"));
    let mut running = dir.spawn(&["run", "--config", "rhaibot.toml"]);
    running.wait_for_log("listens beyond loopback with no webhook_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_a_clear_error_on_calls() {
    let mut fake = FakeMilky::start(Some("right")).await;
    let script = r#"
        after(1, || {
            let seen = "";
            bot("mk");
            try { milky::get_login_info(); } catch (e) { seen = `${e.code} ${e.message}`; }
            bot("good");
            milky::send_private_message(10001, seen);
        });
    "#;
    let cfg = format!(
        "{}\n[[bot]]\nname = \"good\"\nprotocol = \"milky\"\nurl = \"{}\"\naccess_token = \"right\"\nevents = \"none\"\n",
        config(&fake.url, "access_token = \"wrong\""),
        fake.url
    );
    let rt = Running::start(&cfg, &[("t.rhai", script)]);
    let call = fake.next_call_where(|c| c.action == "send_private_message").await;
    assert_eq!(sent_text(&call.body), "401 get_login_info: HTTP 401: no or wrong access token (check access_token)");
    rt.stop().await;
}
