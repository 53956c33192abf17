//! The official platform's pieces built so far, over real HTTP on loopback.

use std::time::{Duration, Instant};

use rhaibot::adapter::qq::token::{RENEW_BEFORE, Tokens};
use rhaibot::config::Secret;

use crate::support::qq::FakePlatform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_fetched_once_shared_and_renewed_in_its_last_minute() {
    let fake = FakePlatform::start("10001", "s3cret", 7200).await;
    let tokens =
        std::sync::Arc::new(Tokens::new(crate::support::http_client(), &fake.url, "10001", Secret("s3cret".into())));
    let t0 = Instant::now();
    // Ten callers at once share one fetch.
    let gets: Vec<_> = (0..10)
        .map(|_| {
            let t = tokens.clone();
            tokio::spawn(async move { t.get_at(t0).await })
        })
        .collect();
    for g in gets {
        assert_eq!(g.await.unwrap().unwrap().value, "token-1");
    }
    assert_eq!(fake.issued(), 1);
    let headers = tokens.get_at(t0).await.unwrap().headers.clone().unwrap();
    assert_eq!(
        (headers["authorization"].to_str().unwrap(), headers["x-union-appid"].to_str().unwrap()),
        ("QQBot token-1", "10001")
    );
    // Still fresh a minute and a second before expiry; renewed inside the last minute.
    let lifetime = Duration::from_secs(7200);
    assert_eq!(tokens.get_at(t0 + lifetime - RENEW_BEFORE - Duration::from_secs(1)).await.unwrap().value, "token-1");
    assert_eq!(tokens.get_at(t0 + lifetime - Duration::from_secs(30)).await.unwrap().value, "token-2");
    // A token the platform refused is dropped; the next call fetches another.
    let refused = tokens.get_at(t0 + lifetime - Duration::from_secs(30)).await.unwrap();
    tokens.invalidate(&refused);
    assert_eq!(tokens.get_at(t0 + lifetime).await.unwrap().value, "token-3");
    assert_eq!(fake.issued(), 3);
    // A call refused with the same token, heard of late, keeps the newer one.
    tokens.invalidate(&refused);
    assert_eq!(tokens.get_at(t0 + lifetime).await.unwrap().value, "token-3");
    assert_eq!(fake.issued(), 3, "no fetch for a token already replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error() {
    let fake = FakePlatform::start("10001", "s3cret", 7200).await;
    let tokens = Tokens::new(crate::support::http_client(), &fake.url, "10001", Secret("wrong".into()));
    let e = tokens.get().await.unwrap_err().to_string();
    assert!(e.contains("invalid appid or secret") && e.contains("check app_id and secret"), "{e}");
    assert!(rhaibot::adapter::qq::token::is_token_error(11244) && !rhaibot::adapter::qq::token::is_token_error(11245));
}

mod webhook {
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use rhaibot::adapter::listener::Guard;
    use rhaibot::adapter::qq::sign::WebhookKey;
    use rhaibot::adapter::qq::webhook::{Listen, serve};
    use rhaibot::bot::Bot;
    use rhaibot::event::Event;
    use serde_json::{Value, json};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use crate::support::tls::Certificates;
    use crate::support::within;

    const SECRET: &str = "DG5g3B4j9X2KOErG";

    struct Receiver {
        url: String,
        events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
        client: reqwest::Client,
    }

    async fn start(tls: Option<&Certificates>) -> Receiver {
        let bot: Arc<Bot> = Bot::detached("qq", &rhaibot::adapter::qq::PROTOCOL);
        let (tx, events) = mpsc::unbounded_channel();
        let sink: rhaibot::adapter::EventSink = Arc::new(move |ev| {
            let _ = tx.send(ev);
        });
        let (shutdown, tasks) = (CancellationToken::new(), TaskTracker::new());
        let acceptor = tls.map(|c| rhaibot::tls::server(&c.cert_file, &c.key_file).expect("server TLS"));
        let listen = Listen { addr: "127.0.0.1:0".into(), path: "/qq".into(), guard: Guard::default(), tls: acceptor };
        serve(bot.clone(), WebhookKey::from_secret(SECRET).unwrap(), listen, 1 << 20, sink, shutdown.clone(), &tasks)
            .expect("listens");
        let port = bot.listening().expect("bound").port();
        let (scheme, host, client) = match tls {
            Some(c) => {
                let trust = rhaibot::tls::client(Some(&c.ca_file)).expect("client TLS");
                ("https", "localhost", rhaibot::tls::http_client(&trust))
            }
            None => ("http", "127.0.0.1", crate::support::http_client()),
        };
        Receiver { url: format!("{scheme}://{host}:{port}/qq"), events, shutdown, client }
    }

    impl Receiver {
        async fn post(&self, body: &Value, signed_by: Option<(&str, u64)>) -> (u16, Value) {
            let body = body.to_string();
            let mut request = self.client.post(&self.url).header("content-type", "application/json").body(body.clone());
            if let Some((secret, ts)) = signed_by {
                let sig = WebhookKey::from_secret(secret).unwrap().sign(&[ts.to_string().as_bytes(), body.as_bytes()]);
                request = request.header("X-Signature-Timestamp", ts.to_string()).header("X-Signature-Ed25519", sig);
            }
            let response = within("the webhook's answer", request.send()).await.expect("answered");
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn group_at(id: &str) -> Value {
        json!({"op": 0, "s": 1, "id": id, "t": "GROUP_AT_MESSAGE_CREATE", "d": {
            "id": format!("msg-{id}"), "content": " hi", "group_openid": "G", "author": {"member_openid": "M"}}})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validation_signed_events_forgeries_and_replays() {
        let mut r = start(None).await;
        let validation = json!({"op": 13, "d": {"plain_token": "Arq0D5A61EgUu4OxUvOp", "event_ts": "1725442341"}});
        let (status, answer) = r.post(&validation, None).await;
        assert_eq!(status, 200);
        assert_eq!(answer["plain_token"], "Arq0D5A61EgUu4OxUvOp");
        assert_eq!(
            answer["signature"],
            "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d01bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706"
        );
        // A validation that would make the answer a signature over an event body is refused.
        let forged = json!({"op": 13, "d": {"plain_token": "{\"op\":0}", "event_ts": "1"}});
        assert_eq!(r.post(&forged, None).await.0, 400);

        assert_eq!(r.post(&group_at("e1"), Some((SECRET, now()))).await, (200, json!({"op": 12, "d": 0})));
        let ev = within("the event", r.events.recv()).await.expect("delivered");
        assert_eq!((ev.name.as_str(), ev.text.as_str()), ("qq.GROUP_AT_MESSAGE_CREATE", "hi"));

        assert_eq!(r.post(&group_at("e2"), Some(("another-secret", now()))).await.0, 401, "forged");
        assert_eq!(r.post(&group_at("e3"), None).await.0, 401, "unsigned");
        assert_eq!(r.post(&group_at("e4"), Some((SECRET, now() - 3600))).await.0, 401, "replayed an hour later");
        assert!(r.events.try_recv().is_err(), "nothing refused was delivered");
        r.shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_webhook_serves_https_from_cert_and_key_files() {
        let certs = Certificates::new();
        let mut r = start(Some(&certs)).await;
        assert!(r.url.starts_with("https://"));
        assert_eq!(r.post(&group_at("t1"), Some((SECRET, now()))).await.0, 200);
        let ev = within("the event", r.events.recv()).await.expect("delivered");
        assert_eq!(ev.user_id, json!("M"));
        r.shutdown.cancel();
    }
}

mod rest {
    use std::sync::Arc;
    use std::time::Duration;

    use rhaibot::adapter::qq::rest::{Body, Request, Rest};
    use rhaibot::adapter::qq::token::Tokens;
    use rhaibot::config::Secret;
    use serde_json::json;

    use crate::support::qq::FakePlatform;

    fn rest(fake: &FakePlatform) -> Rest {
        let client = crate::support::http_client();
        let tokens = Arc::new(Tokens::new(client.clone(), &fake.url, "10001", Secret("s".into())));
        Rest::new("qq", client, &rhaibot::tls::client(None).unwrap(), &fake.url, tokens, 4)
            .with_retry_delay(Duration::from_millis(1))
    }

    fn get(path: &str) -> Request {
        Request { method: reqwest::Method::GET, path: path.into(), query: vec![], body: Body::None }
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_a_header_fails_each_call_and_is_not_fetched_again() {
        // An AppID with a control character makes the call headers impossible (config refuses
        // one; the token's own text is the platform's to choose).
        let fake = FakePlatform::start("1\u{1}", "s", 7200).await;
        let client = crate::support::http_client();
        let tokens = Arc::new(Tokens::new(client.clone(), &fake.url, "1\u{1}", Secret("s".into())));
        let rest = Rest::new("qq", client, &rhaibot::tls::client(None).unwrap(), &fake.url, tokens, 4);
        for _ in 0..2 {
            let e = rest.send("get_bot_info", &get("/users/@me")).await.unwrap_err();
            assert!(e.to_string().contains("cannot be sent as a header"), "{e}");
        }
        assert_eq!(fake.issued(), 1, "the token is kept with what is wrong with it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_have_the_sdk_shape_and_a_refused_token_is_renewed_once() {
        let mut fake =
            FakePlatform::with_api("10001", "s", 7200, Arc::new(|req, _| (200, json!({"path": req.uri})))).await;
        let rest = rest(&fake);
        let answer = rest.send("get_bot_info", &get("/users/@me")).await.unwrap();
        assert_eq!(
            answer.into_value(),
            json!({"data": {"path": "/users/@me"}, "http_code": 200, "trace_id": "trace-0", "result": true})
        );
        assert_eq!(fake.next_request().await.uri, "/users/@me");
        // Query parameters join a query the route already has.
        let query = vec![("b".to_owned(), "2 3".to_owned())];
        let request = Request { query, ..get("/x?a=1") };
        rest.send("get_x", &request).await.unwrap();
        assert_eq!(fake.next_request().await.uri, "/x?a=1&b=2+3");
        // The platform forgets the token (a newer one was issued elsewhere): renewed, retried, once.
        let other = Tokens::new(crate::support::http_client(), &fake.url, "10001", Secret("s".into()));
        other.get().await.unwrap();
        let answer = rest.send("get_bot_info", &get("/users/@me")).await.unwrap();
        assert!(answer.result, "{answer:?}");
        assert_eq!(fake.issued(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_redirect_is_a_failure_that_says_so() {
        let fake = FakePlatform::with_api("10001", "s", 7200, Arc::new(|_, _| (308, json!({})))).await;
        let answer = rest(&fake).send("get_bot_info", &get("/users/@me")).await.unwrap();
        assert!(!answer.result, "{answer:?}");
        let message = answer.data["message"].as_str().unwrap_or_default();
        assert!(message.contains("redirects to") && message.contains("api_url"), "{answer:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idempotent_calls_retry_on_5xx_and_429_but_posts_do_not() {
        let fake = FakePlatform::with_api(
            "10001",
            "s",
            7200,
            Arc::new(|req, n| match (req.method.as_str(), n) {
                ("GET", 0) => (502, json!({"code": 502, "message": "bad gateway"})),
                ("GET", 1) => (429, json!({"code": 429, "message": "slow down"})),
                ("GET", _) => (200, json!({"ok": true})),
                _ => (500, json!({"code": 500, "message": "oops"})),
            }),
        )
        .await;
        let rest = rest(&fake);
        let answer = rest.send("get_guild_info", &get("/guilds/G")).await.unwrap();
        assert_eq!((answer.result, answer.http_code), (true, 200));
        let post = Request {
            method: reqwest::Method::POST,
            path: "/v2/groups/G/messages".into(),
            query: vec![],
            body: Body::Json(json!({"content": "x"})),
        };
        let answer = rest.send("send_group_msg", &post).await.unwrap();
        assert_eq!(
            (answer.result, answer.http_code, answer.code()),
            (false, 500, Some(500)),
            "a POST is never repeated"
        );
    }
}

mod gateway {
    use std::sync::Arc;
    use std::time::Duration;

    use rhaibot::adapter::qq::gateway_socket::Gateway;
    use rhaibot::adapter::qq::token::Tokens;
    use rhaibot::bot::Bot;
    use rhaibot::config::{Backoff, Secret};
    use serde_json::json;
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use crate::support::qq::{FakeGateway, FakePlatform};
    use crate::support::within;

    fn c2c(n: u32) -> serde_json::Value {
        json!({"op": 0, "id": format!("C2C_MESSAGE_CREATE:{n}"), "t": "C2C_MESSAGE_CREATE",
               "d": {"id": format!("m{n}"), "content": format!("hello {n}"), "author": {"user_openid": "U"}}})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identify_then_resume_after_a_drop_delivers_the_missed_events_once() {
        let platform = FakePlatform::start("10001", "s", 7200).await;
        let mut fake = FakeGateway::start().await;
        let dir = tempfile::tempdir().unwrap();
        let session_file = dir.path().join("qq-session.json");
        let client = crate::support::http_client();
        let gateway = Gateway {
            bot: Bot::detached("qq", &rhaibot::adapter::qq::PROTOCOL),
            url: fake.url.clone(),
            tokens: Arc::new(Tokens::new(client, &platform.url, "10001", Secret("s".into()))),
            intents: Arc::new(|| 1 << 25),
            shard: [0, 1],
            session_file: Some(session_file.clone()),
            backoff: Backoff { min: Duration::from_millis(10), max: Duration::from_millis(50) },
            tls: rhaibot::tls::client(None).unwrap(),
            max_frame_bytes: 1 << 20,
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        let sink: rhaibot::adapter::EventSink = Arc::new(move |ev| {
            let _ = tx.send(ev);
        });
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(gateway.run(sink, shutdown.clone()));

        let identify = fake.next_sent().await;
        assert_eq!(identify["op"], 2);
        assert_eq!(identify["d"]["token"], "QQBot token-1");
        assert_eq!((identify["d"]["intents"].clone(), identify["d"]["shard"].clone()), (json!(1 << 25), json!([0, 1])));
        assert_eq!(super::next_event(&mut events).await.name, "qq.READY");
        fake.dispatch(c2c(2));
        assert_eq!(super::next_event(&mut events).await.text, "hello 2");

        // Dropped: two events go out while the client is away, and come back with the resume.
        fake.drop_connection();
        fake.dispatch(c2c(3));
        fake.dispatch(c2c(4));
        let resume = fake.next_sent().await;
        assert_eq!(resume["op"], 6);
        assert_eq!((resume["d"]["session_id"].clone(), resume["d"]["seq"].clone()), (json!("S1"), json!(2)));
        // Everything up to RESUMED: the two missed events, each once.
        let mut texts = Vec::new();
        loop {
            let ev = super::next_event(&mut events).await;
            match ev.name.as_str() {
                "qq.RESUMED" => break,
                "qq.C2C_MESSAGE_CREATE" => texts.push(ev.text.clone()),
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(texts, ["hello 3", "hello 4"]);
        fake.dispatch(c2c(5));
        assert_eq!(super::next_event(&mut events).await.text, "hello 5", "live again after the resume");
        shutdown.cancel();
        within("the gateway to stop", running).await.unwrap();
        let kept: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&session_file).unwrap()).unwrap();
        assert_eq!(kept["session_id"], "S1");
        assert!(kept["seq"].as_u64() >= Some(4), "{kept}");
    }
}

mod gateway_faults {
    use std::sync::Arc;
    use std::time::Duration;

    use rhaibot::adapter::qq::gateway_socket::Gateway;
    use rhaibot::adapter::qq::token::Tokens;
    use rhaibot::bot::Bot;
    use rhaibot::config::{Backoff, Secret};
    use tokio_util::sync::CancellationToken;

    use crate::support::qq::{FakeGateway, FakePlatform};

    /// A token host that fails for a while is a reason to try again, not to stop the shard.
    /// Shard 0 of 1 on `fake`, with tokens from `platform`, no session file and a short back-off.
    fn quick_gateway(fake: &FakeGateway, platform: &FakePlatform) -> Gateway {
        Gateway {
            bot: Bot::detached("qq", &rhaibot::adapter::qq::PROTOCOL),
            url: fake.url.clone(),
            tokens: Arc::new(Tokens::new(crate::support::http_client(), &platform.url, "10001", Secret("s".into()))),
            intents: Arc::new(|| 1 << 25),
            shard: [0, 1],
            session_file: None,
            backoff: Backoff { min: Duration::from_millis(10), max: Duration::from_millis(50) },
            tls: rhaibot::tls::client(None).unwrap(),
            max_frame_bytes: 1 << 20,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_the_gateway_refuses_is_renewed_before_it_identifies_again() {
        let platform = FakePlatform::start("10001", "s", 7200).await;
        let mut fake = FakeGateway::start().await;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(quick_gateway(&fake, &platform).run(Arc::new(|_| {}), shutdown.clone()));
        let identify = fake.next_sent().await;
        assert_eq!(
            (&identify["op"], &identify["d"]["token"]),
            (&serde_json::json!(2), &serde_json::json!("QQBot token-1"))
        );
        fake.close_with(4004);
        let again = fake.next_sent().await;
        assert_eq!((&again["op"], &again["d"]["token"]), (&serde_json::json!(2), &serde_json::json!("QQBot token-2")));
        assert_eq!(platform.issued(), 2);
        shutdown.cancel();
        crate::support::within("the gateway to stop", running).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_passing_token_failure_does_not_stop_the_gateway() {
        let platform = FakePlatform::start("10001", "s", 7200).await;
        platform.fail_tokens(2);
        let mut fake = FakeGateway::start().await;
        let gateway = quick_gateway(&fake, &platform);
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(gateway.run(Arc::new(|_| {}), shutdown.clone()));
        let identify = fake.next_sent().await;
        assert_eq!(
            (identify["op"].clone(), identify["d"]["token"].clone()),
            (serde_json::json!(2), serde_json::json!("QQBot token-1"))
        );
        shutdown.cancel();
        crate::support::within("the gateway to stop", running).await.unwrap();
    }
}

async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<rhaibot::event::Event>) -> rhaibot::event::Event {
    crate::support::within("an event", events.recv()).await.expect("delivered")
}
