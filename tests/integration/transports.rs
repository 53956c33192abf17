//! Every OneBot 11 transport over loopback: split forward WebSocket, reverse WebSocket (with
//! its token checks), HTTP API, HTTP POST events (signatures, quick operations) and SSE.

use futures_util::{SinkExt, StreamExt};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::onebot::{FakeOneBot, SELF_ID, group_message, message_text};
use crate::support::onebot_http::FakeHttp;
use crate::support::{Running, within};

const PING: &str = r#"on("message", |ev| { if ev.text == "ping" { ev.reply("pong"); } });"#;

fn bot(lines: &str) -> String {
    format!(
        "[[bot]]\nname = \"main\"\nprotocol = \"onebot11\"\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n{lines}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_forward_websockets_carry_events_and_calls_separately() {
    let mut fake = FakeOneBot::start(Some("t")).await;
    let url = fake.url.trim_end_matches('/').to_owned();
    let rt = Running::start(
        &bot(&format!("transport = \"ws-split\"\nurl = \"{url}\"\naccess_token = \"t\"")),
        &[("p.rhai", PING)],
    );
    let mut paths = vec![fake.accept().await.path, fake.accept().await.path];
    paths.sort();
    assert_eq!(paths, ["/api", "/event"]);
    fake.push_to("/event", group_message(5, 6, "ping"));
    let call = fake.next_action().await;
    assert_eq!((call.action.as_str(), message_text(&call.params)), ("send_group_msg", "pong".into()));
    rt.stop().await;
}

async fn reverse_connect(port: u16, token: Option<&str>, role: &str) -> Result<crate::support::Socket, u16> {
    crate::support::reverse_connect(port, token, role, SELF_ID).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_websocket_checks_the_token_before_the_upgrade_and_serves_roles() {
    let cfg = bot("transport = \"reverse-ws\"\nlisten = \"127.0.0.1:0\"\naccess_token = \"s3\"");
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    let port = rt.listen_addr("main").await.port();
    assert_eq!(within("a refused connection", reverse_connect(port, None, "Universal")).await.err(), Some(401));
    assert_eq!(within("a refused connection", reverse_connect(port, Some("bad"), "Universal")).await.err(), Some(403));

    // Event and API roles on separate sockets, as NapCat does with split reverse WS.
    let mut events = reverse_connect(port, Some("s3"), "Event").await.unwrap();
    let mut api = reverse_connect(port, Some("s3"), "API").await.unwrap();
    events.send(Message::Text(group_message(7, 8, "ping").to_string().into())).await.unwrap();
    let frame = within("an action frame", api.next()).await.unwrap().unwrap();
    let call: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(call["action"], "send_group_msg");
    assert_eq!(call["params"]["group_id"], 7);
    let answer = json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}, "echo": call["echo"]});
    api.send(Message::Text(answer.to_string().into())).await.unwrap();
    rt.stop().await;
}

fn signed(secret: &str, body: &str) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    format!("sha1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_event(port: u16, body: &str, signature: Option<String>) -> reqwest::Response {
    let client = crate::support::http_client();
    loop {
        let mut request = client
            .post(format!("http://127.0.0.1:{port}/"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = &signature {
            request = request.header("X-Signature", sig);
        }
        match request.send().await {
            Ok(r) => return r,
            Err(e) if e.is_connect() => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_post_events_are_verified_answered_with_quick_operations_and_calls_use_the_http_api() {
    let mut fake = FakeHttp::start(Some("tok")).await;
    let cfg = bot(&format!(
        "transport = \"http\"\nurl = \"{}\"\naccess_token = \"tok\"\nevents = \"post\"\nlisten = \"127.0.0.1:0\"\nsecret = \"hm\"",
        fake.url
    ));
    let script = r#"
        on("message.group", |ev| {
            if ev.text == "quick" { ev.quick(#{ reply: "hi", at_sender: false }); }
            if ev.text == "ping" { ev.reply("pong"); }
        });
    "#;
    let rt = Running::start(&cfg, &[("q.rhai", script)]);
    let port = rt.listen_addr("main").await.port();

    let body = group_message(1, 2, "quick").to_string();
    let bad = within("a refused POST", post_event(port, &body, Some("sha1=00".into()))).await;
    assert_eq!(bad.status().as_u16(), 403);
    assert_eq!(post_event(port, &body, None).await.status().as_u16(), 403, "unsigned");

    let answer = post_event(port, &body, Some(signed("hm", &body))).await;
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.json::<Value>().await.unwrap(), json!({"reply": "hi", "at_sender": false}));

    let body = group_message(1, 2, "nothing to do").to_string();
    assert_eq!(post_event(port, &body, Some(signed("hm", &body))).await.status().as_u16(), 204);
    let body = "{not json";
    assert_eq!(post_event(port, body, Some(signed("hm", body))).await.status().as_u16(), 400);

    let body = group_message(3, 2, "ping").to_string();
    assert_eq!(post_event(port, &body, Some(signed("hm", &body))).await.status().as_u16(), 204);
    let call = fake.next_action().await;
    assert_eq!((call.action.as_str(), &call.params["group_id"]), ("send_group_msg", &json!(3)));
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_answer_reporting_a_write_leaves_only_once_the_write_is_on_disk() {
    let fake = FakeHttp::start(None).await;
    let cfg =
        bot(&format!("transport = \"http\"\nurl = \"{}\"\nevents = \"post\"\nlisten = \"127.0.0.1:0\"", fake.url));
    let script = r#"on("message.group", |ev| { let n = kv::incr("n"); ev.quick(#{ reply: `${n}` }); });"#;
    let rt = Running::start(&cfg, &[("count.rhai", script)]);
    let port = rt.listen_addr("main").await.port();
    let other = rhaibot::storage::Store::open_existing(&rt.data_dir).unwrap();
    // Many at once, so that the writes of many callbacks share commits.
    let posts = (0..64).map(|i| async move {
        let answer = post_event(port, &group_message(1, i, "x").to_string(), None).await;
        answer.json::<Value>().await.unwrap()["reply"].as_str().unwrap().parse::<i64>().unwrap()
    });
    let mut answers = futures_util::stream::iter(posts).buffer_unordered(16);
    while let Some(n) = within("a quick answer", answers.next()).await {
        let stored: i64 = other.kv_get("count", "n").unwrap().unwrap_or_default().parse().unwrap();
        assert!(stored >= n, "the answer `{n}` left while the file held {stored}");
    }
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_reports_a_refused_token_clearly() {
    let mut fake = FakeHttp::start(Some("right")).await;
    // Two bots on one implementation: "main" has the wrong token, "good" reports what it saw.
    let cfg = format!(
        "{}\n[[bot]]\nname = \"good\"\nprotocol = \"onebot11\"\ntransport = \"http\"\nurl = \"{url}\"\naccess_token = \"right\"\n",
        bot(&format!("transport = \"http\"\nurl = \"{url}\"\naccess_token = \"wrong\"", url = fake.url)),
        url = fake.url
    );
    let script = r#"
        after(1, || {
            bot("main");
            let seen = "";
            try { onebot::get_login_info(); } catch (e) { seen = `${e.code} ${e.message}`; }
            bot("good");
            onebot::send_private_msg(1, seen);
        });
    "#;
    let rt = Running::start(&cfg, &[("h.rhai", script)]);
    let call = fake.next_action().await;
    assert_eq!(
        message_text(&call.params),
        "403 get_login_info: HTTP 403: the access token was refused (check access_token)"
    );
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reverse_websocket_without_a_token_accepts_the_bare_bearer_llbot_sends() {
    let rt = Running::start(&bot("transport = \"reverse-ws\"\nlisten = \"127.0.0.1:0\""), &[("p.rhai", PING)]);
    let port = rt.listen_addr("main").await.port();
    let mut ws = within("the connection", reverse_connect(port, Some(""), "Universal")).await.expect("accepted");
    ws.send(Message::Text(group_message(9, 8, "ping").to_string().into())).await.unwrap();
    let frame = within("an action frame", ws.next()).await.unwrap().unwrap();
    let call: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(call["params"]["group_id"], 9);
    let answer = json!({"status": "ok", "retcode": 0, "data": {"message_id": 1}, "echo": call["echo"]});
    ws.send(Message::Text(answer.to_string().into())).await.unwrap();
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_and_the_stream_reconnects() {
    let mut fake = FakeHttp::start(Some("tok")).await;
    let cfg = bot(&format!("transport = \"http\"\nurl = \"{}\"\naccess_token = \"tok\"\nevents = \"sse\"", fake.url));
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    fake.stream_opened().await;
    fake.push_raw(": keep-alive\n\ndata: {broken\n\n".into());
    fake.push(group_message(1, 2, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    fake.drop_stream();
    fake.stream_opened().await;
    fake.push(group_message(4, 2, "ping"));
    assert_eq!(fake.next_action().await.params["group_id"], 4);
    rt.stop().await;
}

/// wss:// and https:// work, trusting a private authority from `[tls] ca_file`; without it the
/// connection is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_connect_through_tls_with_a_private_authority() {
    use crate::support::milky::{self, FakeMilky};
    use crate::support::tls::TlsFront;

    // OneBot 11 over wss://.
    let mut fake = FakeOneBot::start(Some("t")).await;
    let plain: std::net::SocketAddr = fake.url.trim_start_matches("ws://").trim_end_matches('/').parse().unwrap();
    let front = TlsFront::start(plain).await;
    let cfg = format!(
        "[tls]\nca_file = {:?}\n{}",
        front.ca_file,
        bot(&format!("url = \"wss://localhost:{}/\"\naccess_token = \"t\"", front.port))
    );
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    fake.accept().await;
    fake.push(group_message(1, 2, "ping"));
    assert_eq!(message_text(&fake.next_action().await.params), "pong");
    rt.stop().await;

    // Milky over https:// (calls) and wss:// (events).
    let mut mk = FakeMilky::start(None).await;
    let plain: std::net::SocketAddr = mk.url.trim_start_matches("http://").parse().unwrap();
    let front = TlsFront::start(plain).await;
    let cfg = format!(
        "[tls]\nca_file = {:?}\n[[bot]]\nname = \"mk\"\nprotocol = \"milky\"\nurl = \"https://127.0.0.1:{}\"\nreconnect_min_ms = 20\n",
        front.ca_file, front.port
    );
    let rt = Running::start(&cfg, &[("p.rhai", PING)]);
    mk.opened().await;
    mk.push(milky::group_message(20001, 10002, 30001, milky::text("ping")));
    mk.next_call_where(|c| c.action == "send_group_message").await;
    rt.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    use crate::support::tls::TlsFront;
    let mut fake = FakeHttp::start(None).await;
    let plain: std::net::SocketAddr = fake.url.trim_start_matches("http://").parse().unwrap();
    let front = TlsFront::start(plain).await;
    // No ca_file: the private authority is not trusted.
    let cfg = format!(
        "{}\n[[bot]]\nname = \"good\"\nprotocol = \"onebot11\"\ntransport = \"http\"\nurl = \"{}\"\n",
        bot(&format!("transport = \"http\"\nurl = \"https://localhost:{}\"", front.port)),
        fake.url
    );
    let script = r#"
        after(1, || {
            bot("main");
            let seen = "";
            try { onebot::get_login_info(); } catch (e) { seen = e.kind; }
            bot("good");
            onebot::send_private_msg(1, seen);
        });
    "#;
    let rt = Running::start(&cfg, &[("h.rhai", script)]);
    assert_eq!(message_text(&fake.next_action().await.params), "not_connected");
    rt.stop().await;
}
