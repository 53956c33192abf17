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
