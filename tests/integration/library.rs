//! The script library over the wire: `http::` against a local server (and the private-address
//! guard that refuses it by default), driven by messages from a fake OneBot 11 end.

use std::time::Duration;

use axum::routing::{get, post};
use serde_json::json;

use crate::support::Running;
use crate::support::onebot::{FakeOneBot, group_message, message_text};

/// A small site: JSON, a 404, a slow page, a large page, a redirect and an echo.
async fn site() -> String {
    let app = axum::Router::new()
        .route("/json", get(|| async { axum::Json(json!({"text": "hi"})) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { "x".repeat(300 << 10) }))
        .route("/redirect", get(|| async { axum::response::Redirect::temporary("/json") }))
        .route(
            "/echo",
            post(|headers: axum::http::HeaderMap, body: String| async move {
                format!("{}|{}", headers.get("x-k").and_then(|v| v.to_str().ok()).unwrap_or(""), body)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("site serves") });
    format!("127.0.0.1:{}", addr.port())
}

const SCRIPT: &str = r#"
    on("message", |ev| {
        let base = `http://${ev.text.split(" ")[1]}`;
        let ask = ev.text.split(" ")[0];
        try {
            switch ask {
                "json" => { let r = http::get(base + "/json"); ev.reply(`${r.status} ${r.json.text}`); }
                "missing" => ev.reply(`${http::get(base + "/missing").status}`),
                "slow" => { http::get(base + "/slow", #{ timeout_ms: 200 }); ev.reply("no timeout"); }
                "big" => { http::get(base + "/big"); ev.reply("no size cap"); }
                "redirect" => ev.reply(http::get(base + "/redirect").json.text),
                "post" => {
                    let r = http::request(#{ method: "POST", url: base + "/echo", json: #{ a: 1 }, headers: #{ "x-k": "v" } });
                    ev.reply(r.body);
                }
                "local" => { http::get(`http://localhost:${ev.text.split(":")[1]}/json`); ev.reply("reached"); }
            }
        } catch (e) {
            ev.reply(`${e.kind}: ${e.message}`);
        }
    });
"#;

async fn ask(fake: &mut FakeOneBot, text: &str) -> String {
    fake.push(group_message(1, 2, text));
    message_text(&fake.next_action().await.params)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_answers_times_out_caps_sizes_and_follows_redirects() {
    let site = site().await;
    let mut fake = FakeOneBot::start(None).await;
    let cfg = format!(
        "[http]\nallow_private = true\nmax_body_bytes = 262144\n[[bot]]\nprotocol = \"onebot11\"\nurl = \"{}\"\n",
        fake.url
    );
    let rt = Running::start(&cfg, &[("web.rhai", SCRIPT)]);
    fake.accept().await;
    assert_eq!(ask(&mut fake, &format!("json {site}")).await, "200 hi");
    assert_eq!(ask(&mut fake, &format!("missing {site}")).await, "404", "an error status is an answer");
    let slow = ask(&mut fake, &format!("slow {site}")).await;
    assert!(slow.starts_with("http: ") && slow.contains("/slow") && slow.contains("200 ms"), "{slow}");
    let big = ask(&mut fake, &format!("big {site}")).await;
    assert!(big.starts_with("http: ") && big.contains("262144"), "{big}");
    assert_eq!(ask(&mut fake, &format!("redirect {site}")).await, "hi");
    assert_eq!(ask(&mut fake, &format!("post {site}")).await, r#"v|{"a":1}"#);
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_by_default_even_behind_a_name() {
    let site = site().await;
    let mut fake = FakeOneBot::start(None).await;
    let cfg = format!("[[bot]]\nprotocol = \"onebot11\"\nurl = \"{}\"\n", fake.url);
    let rt = Running::start(&cfg, &[("web.rhai", SCRIPT)]);
    fake.accept().await;
    let literal = ask(&mut fake, &format!("json {site}")).await;
    assert!(literal.contains("127.0.0.1 is not a public address"), "{literal}");
    // `localhost` resolves to a loopback address: refused after resolution.
    let port = site.split(':').nth(1).unwrap();
    let named = ask(&mut fake, &format!("local x:{port}")).await;
    assert!(named.starts_with("http: ") && named.contains("non-public"), "{named}");
    rt.stop().await;
}

const COMMANDS: &str = r#"
    const GREETING = "hello";
    fn greet() { GREETING }
    fn on_message(ev) {
        if ev.text == "const" { ev.reply(`${GREETING} ${global::GREETING} ${greet()}`); }
    }
    command("Sign", |ev| ev.reply("signed"));
    command("split", |ev, rest, args| ev.reply(json::stringify(args)));
    command("kick", #{ permission: "admin" }, |ev, rest| ev.reply(`kicked ${rest}`));
    command("root", #{ permission: "superuser" }, |ev| ev.reply("yes, root"));
    command("draw", #{ cooldown_ms: 60000, per: "user" }, |ev| ev.reply("a card"));
    command("call", #{ need_at: true }, |ev| ev.reply("you called"));
    command("nap", |ev| { sleep(3); ev.reply("woke up"); });
    on("message", |ev| {
        if ev.text == "map" { try { ev.reply(#{ text: "x" }); } catch (e) { ev.reply(`${e}`); } }
        if ev.text == "ping" { ev.reply("pong"); }
    });
"#;

/// Sends `text` from `user` with `role` and returns the answer.
async fn say(fake: &mut FakeOneBot, user: i64, role: &str, text: &str, at: bool) -> String {
    fake.push(from(user, role, text, at));
    message_text(&fake.next_action().await.params)
}

/// A group message from `user` with `role`, optionally @-mentioning the bot.
fn from(user: i64, role: &str, text: &str, at_bot: bool) -> serde_json::Value {
    let mut m = group_message(1, user, text);
    m["sender"]["role"] = json!(role);
    if at_bot {
        let at = json!({"type": "at", "data": {"qq": crate::support::onebot::SELF_ID.to_string()}});
        m["message"].as_array_mut().unwrap().insert(0, at);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_obey_prefixes_permissions_cooldowns_and_mentions() {
    let mut fake = FakeOneBot::start(None).await;
    let cfg = format!(
        "[commands]\nprefixes = [\"/\", \"！\", \"\"]\ncase_insensitive = true\nrefuse_message = \"admins only\"\n\
         cooldown_message = \"wait {{secs}} s\"\n[limits]\nworkers = 1\ncallback_total_ms = 300\n\
         [[bot]]\nprotocol = \"onebot11\"\nurl = \"{}\"\nsuperusers = [42]\n",
        fake.url
    );
    let rt = Running::start(&cfg, &[("cmd.rhai", COMMANDS)]);
    fake.accept().await;
    assert_eq!(
        say(&mut fake, 7, "member", "const", false).await,
        "hello hello hello",
        "top-level consts in fn handlers"
    );
    assert_eq!(say(&mut fake, 7, "member", "！SIGN", false).await, "signed", "another prefix, any case, |ev| alone");
    assert_eq!(say(&mut fake, 7, "member", "sign", false).await, "signed", "no prefix");
    assert_eq!(say(&mut fake, 7, "member", r#"/split a "b c" d\ e"#, false).await, r#"["a","b c","d e"]"#);
    assert_eq!(say(&mut fake, 7, "member", "/kick 9", false).await, "admins only");
    assert_eq!(say(&mut fake, 7, "admin", "/kick 9", false).await, "kicked 9");
    assert_eq!(say(&mut fake, 7, "owner", "/root", false).await, "admins only");
    assert_eq!(say(&mut fake, 42, "member", "/root", false).await, "yes, root", "a superuser, whatever the role");
    assert_eq!(say(&mut fake, 7, "member", "/draw", false).await, "a card");
    assert_eq!(say(&mut fake, 7, "member", "/draw", false).await, "wait 60 s");
    assert_eq!(say(&mut fake, 8, "member", "/draw", false).await, "a card", "cooldowns are per user");
    assert_eq!(say(&mut fake, 7, "member", "/call", true).await, "you called");
    // Without the @, /call does not run: the next answer is the ping's.
    fake.push(from(7, "member", "/call", false));
    assert_eq!(say(&mut fake, 7, "member", "ping", false).await, "pong");
    let map = say(&mut fake, 7, "member", "map", false).await;
    assert!(map.contains("must be a segment"), "{map}");
    // One worker: a callback that sleeps gives it up, and is stopped at its 300 ms budget.
    fake.push(from(7, "member", "/nap", false));
    fake.push(group_message(2, 7, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong", "another chat is answered while one sleeps");
    fake.push(from(7, "member", "ping", false));
    assert_eq!(message_text(&fake.next_action().await.params), "pong", "the nap was cut off, not finished");
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_get_their_fire_time() {
    let mut fake = FakeOneBot::start(None).await;
    let script = r#"after(20, |t| onebot::send_private_msg(1, `${t > 1700000000000} ${time::now() >= t}`));"#;
    let rt =
        Running::start(&format!("[[bot]]\nprotocol = \"onebot11\"\nurl = \"{}\"\n", fake.url), &[("t.rhai", script)]);
    fake.accept().await;
    assert_eq!(message_text(&fake.next_action().await.params), "true true");
    rt.stop().await;
}
