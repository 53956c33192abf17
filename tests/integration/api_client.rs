//! The client protocol APIs are called with, against a server that writes its answers byte by
//! byte as scripted: kept connections, a closed one replaced, chunked and oversized answers,
//! redirects reported rather than followed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::http::{HeaderMap, Method};
use rhaibot::adapter::api_client::{ApiClient, BodyError, RequestError};
use rhaibot::adapter::http_api::JsonApi;
use rhaibot::bot::CallError;
use rhaibot::config::Secret;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::{refusing_port, within};

/// A request as the server read it: its head (request line and headers) and its body.
struct Seen {
    head: String,
    body: Vec<u8>,
}

/// An HTTP/1.1 server on loopback that answers the n-th request (over all connections) with
/// `answers[n]`, written as is; after an answer holding `Connection: close` it closes, and after
/// one holding `X-Then: close` too, without the client being told (`closed` hears of it).
struct Scripted {
    url: String,
    connections: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
    closed: mpsc::UnboundedReceiver<()>,
}

impl Scripted {
    async fn start(answers: Vec<&'static str>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, seen) = mpsc::unbounded_channel();
        let (closing, closed) = mpsc::unbounded_channel();
        let answers = Arc::new(std::sync::Mutex::new(answers.into_iter()));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (tx, answers, closing) = (tx.clone(), answers.clone(), closing.clone());
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    while let Some(head) = request_head(&mut stream).await {
                        let length = head
                            .lines()
                            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ")?.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.expect("body");
                        let _ = tx.send(Seen { head, body });
                        let Some(answer) = answers.lock().unwrap().next() else { return };
                        stream.get_mut().write_all(answer.as_bytes()).await.expect("answer");
                        if answer.contains("Connection: close") {
                            return;
                        }
                        if answer.contains("X-Then: close") {
                            drop(stream);
                            let _ = closing.send(());
                            return;
                        }
                    }
                });
            }
        });
        Scripted { url, connections, seen, closed }
    }
}

/// The next request's head from `stream`, its blank line included; `None` once it closes.
async fn request_head(stream: &mut BufReader<tokio::net::TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// A server on loopback that reads one request and answers it with `answer`, bytes as they are
/// (which `Scripted`'s text answers cannot be); its URL.
async fn answering_once(answer: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await;
        stream.write_all(&answer).await.expect("answer");
    });
    url
}

/// A call's headers when the test sends none of its own.
static NO_HEADERS: std::sync::LazyLock<HeaderMap> = std::sync::LazyLock::new(HeaderMap::new);

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: application/json\r\n\r\n{\"n\": true}";

#[tokio::test]
async fn answers_come_over_a_kept_connection_and_a_closed_one_is_replaced() {
    let closing = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let mut server = Scripted::start(vec![OK, OK, closing, OK]).await;
    let client = ApiClient::new(&format!("{}/base/", server.url), &rhaibot::tls::client(None).unwrap());
    for i in 0..4 {
        let body = format!("{{\"i\":{i}}}").into_bytes();
        let answer = within("an answer", client.send(Method::POST, "/api/x?a=1", &NO_HEADERS, Some(body), 1024))
            .await
            .expect("answered");
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body, if i == 2 { b"{}".to_vec() } else { br#"{"n": true}"#.to_vec() });
        let seen = within("the request", server.seen.recv()).await.expect("seen");
        assert!(seen.head.starts_with("POST /base/api/x?a=1 HTTP/1.1\r\n"), "{}", seen.head);
        let head = seen.head.to_ascii_lowercase();
        assert!(head.contains("content-type: application/json\r\n") && head.contains("host: 127.0.0.1:"), "{head}");
        assert_eq!(seen.body, format!("{{\"i\":{i}}}").into_bytes());
    }
    // The first three requests shared one connection; the server closed it after the third.
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_chunked_answer_is_read_whole_and_an_oversized_one_is_refused_with_its_status() {
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n";
    let announced = "HTTP/1.1 503 Busy\r\nContent-Length: 5000\r\n\r\n";
    // 32 bytes come, and then no end.
    let endless = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdef0123456789abcdef\r\n";
    let server = Scripted::start(vec![chunked, announced, endless]).await;
    let client = ApiClient::new(&server.url, &rhaibot::tls::client(None).unwrap());
    let send = || client.send(Method::GET, "/", &NO_HEADERS, None, 16);
    assert_eq!(within("chunked", send()).await.expect("read").body, br#"{"a": 1}"#);
    match within("announced", send()).await {
        Err(RequestError::Body { status: 503, reason: BodyError::TooLarge { limit: 16 } }) => {}
        other => panic!("{other:?}"),
    }
    // Refused once more than the bound has come, without waiting for the end.
    match within("endless", send()).await {
        Err(RequestError::Body { status: 200, reason: BodyError::TooLarge { limit: 16 } }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_redirect_is_reported_not_followed() {
    // The redirect points back at the same server, which would answer a followed request.
    let redirect = "HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n";
    let mut server = Scripted::start(vec![redirect, OK]).await;
    let api = JsonApi::new("Milky", "m", &server.url, &Secret("t".into()), 1024, &rhaibot::tls::client(None).unwrap());
    let e = within(
        "the call",
        api.post("send_private_message", "/api/send_private_message", b"{}".to_vec(), true, |_| None, Ok),
    )
    .await
    .expect_err("a redirect is no answer");
    assert!(matches!(e, CallError::Http { status: 307, .. }), "{e}");
    assert!(e.to_string().contains("redirects to /elsewhere"), "{e}");
    let seen = within("the request", server.seen.recv()).await.expect("seen");
    assert!(seen.head.to_ascii_lowercase().contains("authorization: bearer t\r\n"), "{}", seen.head);
    // A followed redirect would have reached the server before the call returned.
    assert!(server.seen.try_recv().is_err(), "the redirect was not followed");
}

/// An API nothing answers at is reported as the bot not connected, by the bot's name (it was
/// named by the API's URL, as if that were a bot).
#[tokio::test]
async fn an_unreachable_api_names_its_bot() {
    let (_held, port) = refusing_port();
    let url = format!("http://127.0.0.1:{port}");
    let api = JsonApi::new("Milky", "main", &url, &Secret(String::new()), 1024, &rhaibot::tls::client(None).unwrap());
    let e = within("the call", api.post("get_login_info", "/api/get_login_info", b"{}".to_vec(), true, |_| None, Ok))
        .await
        .expect_err("nothing listens");
    assert_eq!(e.to_string(), "get_login_info: bot `main` is not connected");
}

#[tokio::test]
async fn a_token_that_is_no_header_value_is_not_sent() {
    let mut server = Scripted::start(vec![OK]).await;
    let api =
        JsonApi::new("Milky", "m", &server.url, &Secret("a\nb".into()), 1024, &rhaibot::tls::client(None).unwrap());
    within("the call", api.post("get_login_info", "/api/get_login_info", b"{}".to_vec(), true, |_| None, Ok))
        .await
        .expect("answered");
    let seen = within("the request", server.seen.recv()).await.expect("seen");
    assert!(!seen.head.to_ascii_lowercase().contains("authorization"), "{}", seen.head);
}

#[tokio::test]
async fn an_unreachable_server_and_a_bad_base_fail_with_what_went_wrong() {
    let (_held, port) = refusing_port();
    let tls = rhaibot::tls::client(None).unwrap();
    let client = ApiClient::new(&format!("http://127.0.0.1:{port}"), &tls);
    match within("refused", client.send(Method::GET, "/", &NO_HEADERS, None, 16)).await {
        Err(RequestError::Unreachable(why)) => assert!(why.to_lowercase().contains("connect"), "{why}"),
        other => panic!("{other:?}"),
    }
    let client = ApiClient::new("http://exa mple", &tls);
    match client.send(Method::GET, "/", &NO_HEADERS, None, 16).await {
        Err(e @ RequestError::BadTarget(_)) => assert!(e.to_string().contains("exa mple"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_while_idle_is_not_used_again() {
    let closes = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Then: close\r\n\r\n{}";
    // Bytes no request asked for make a connection unusable too.
    let stray = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}X";
    let mut server = Scripted::start(vec![closes, OK, stray, OK]).await;
    let client = ApiClient::new(&server.url, &rhaibot::tls::client(None).unwrap());
    let send = || client.send(Method::POST, "/", &NO_HEADERS, Some(b"{}".to_vec()), 64);
    assert_eq!(within("the first answer", send()).await.expect("answered").body, b"{}");
    within("the close", server.closed.recv()).await.expect("closed");
    assert_eq!(within("an answer on a new connection", send()).await.expect("answered").status, 200);
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    within("the stray byte's answer", send()).await.expect("answered");
    assert_eq!(within("an answer after it", send()).await.expect("answered").body, br#"{"n": true}"#);
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_an_http10_answer_is_read_to_its_end() {
    let interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    let old = "HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n[1]";
    let server = Scripted::start(vec![interim, old, OK]).await;
    let client = ApiClient::new(&server.url, &rhaibot::tls::client(None).unwrap());
    let send = || client.send(Method::GET, "/", &NO_HEADERS, None, 64);
    assert_eq!(within("past the interim answer", send()).await.expect("answered").body, b"{}");
    assert_eq!(within("to the end", send()).await.expect("answered").body, b"[1]");
    within("on a new connection", send()).await.expect("answered");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_endless_head_or_an_answer_that_is_not_http_fails_with_a_bound() {
    // A header with no end: refused once the head passes its bound, not buffered on.
    let endless: &'static str =
        Box::leak(format!("HTTP/1.1 200 OK\r\nX-Long: {}", "a".repeat(80 * 1024)).into_boxed_str());
    let server = Scripted::start(vec![endless, "SSH-2.0-OpenSSH_9.6\r\n\r\n"]).await;
    let client = ApiClient::new(&server.url, &rhaibot::tls::client(None).unwrap());
    let send = || client.send(Method::GET, "/", &NO_HEADERS, None, 64);
    match within("the endless head", send()).await {
        Err(RequestError::Unreachable(why)) => assert!(why.contains("head over 65536 bytes"), "{why}"),
        other => panic!("{other:?}"),
    }
    match within("the answer that is not HTTP", send()).await {
        Err(RequestError::Unreachable(why)) => {
            assert!(why.contains("not HTTP/1.1") && why.contains("SSH-2.0"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_successful_envelope_gives_its_data_and_any_other_answer_goes_whole_to_the_decoder() {
    let bodies = [
        r#"{"status":"ok","retcode":0,"data":{"seq":7}}"#,
        r#"{"retcode":0,"echo":1}"#,
        r#"{"status":"failed","retcode":0,"message":"no"}"#,
        r#"{"retcode":"0","data":1}"#,
        "[1]",
        "{no}",
        r#"{"status":"ok","retcode":0,"data":{"seq":8}}"#,
        r#"{"status":"failed","retcode":1,"message":"still read"}"#,
    ];
    let answers = bodies
        .iter()
        .map(|b| &*Box::leak(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{b}", b.len()).into_boxed_str()))
        .collect();
    let server = Scripted::start(answers).await;
    let api =
        JsonApi::new("Milky", "m", &server.url, &Secret(String::new()), 1024, &rhaibot::tls::client(None).unwrap());
    // The decoder says what it was given, so each answer shows which way it went.
    let params = json!({});
    let call =
        || api.post("x", "/x", params.to_string().into_bytes(), true, |_| None, |whole| Ok(json!({ "whole": whole })));
    assert_eq!(within("a success", call()).await.unwrap(), json!({"seq": 7}));
    assert_eq!(within("a success without data", call()).await.unwrap(), serde_json::Value::Null);
    let failed = within("a failure", call()).await.unwrap();
    assert_eq!(failed["whole"]["message"], "no");
    assert_eq!(within("an odd retcode", call()).await.unwrap(), json!({"whole": {"retcode": "0", "data": 1}}));
    assert_eq!(within("no object", call()).await.unwrap(), json!({"whole": [1]}));
    let e = within("no JSON", call()).await.unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    // A detached call's success is not read (nobody would); its failure still is.
    let detached =
        || api.post("x", "/x", params.to_string().into_bytes(), false, |_| None, |whole| Ok(json!({ "whole": whole })));
    assert_eq!(within("a detached success", detached()).await.unwrap(), serde_json::Value::Null);
    assert_eq!(within("a detached failure", detached()).await.unwrap()["whole"]["message"], "still read");
}

#[tokio::test]
async fn framing_that_could_be_read_two_ways_ends_the_connection_and_extensions_may_hold_any_byte() {
    // Chunked and a Content-Length: read as chunked (RFC 9112 6.3), and the connection is let go.
    let both = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let server = Scripted::start(vec![both, OK]).await;
    let client = ApiClient::new(&server.url, &rhaibot::tls::client(None).unwrap());
    let send = || client.send(Method::GET, "/", &NO_HEADERS, None, 64);
    assert_eq!(within("framed both ways", send()).await.expect("answered").body, b"{}");
    within("after it", send()).await.expect("answered");
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);

    // A chunk extension's quoted string is not text (RFC 9112 7.1.1 allows any byte there).
    let url = answering_once(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;n=\"\xff\"\r\n{}\r\n0\r\n\r\n".to_vec(),
    )
    .await;
    let client = ApiClient::new(&url, &rhaibot::tls::client(None).unwrap());
    let answer = within("the extension", client.send(Method::GET, "/", &NO_HEADERS, None, 64)).await;
    assert_eq!(answer.expect("answered").body, b"{}");
}

#[tokio::test]
async fn many_small_chunks_behind_a_large_one_take_time_in_proportion_to_their_length() {
    // A server can send a large chunk, so that reads bring megabytes at once, and then
    // hundreds of thousands of one-byte chunks. Each used chunk once moved everything read
    // behind it: over 10^12 bytes moved here, far past the wait below.
    const SMALL: usize = 1_000_000;
    let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400000\r\n".to_vec();
    answer.extend(std::iter::repeat_n(b'x', 0x40_0000));
    answer.extend_from_slice(b"\r\n");
    for _ in 0..SMALL {
        answer.extend_from_slice(b"1\r\ny\r\n");
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    let url = answering_once(answer).await;
    let client = ApiClient::new(&url, &rhaibot::tls::client(None).unwrap());
    let answer = within("the chunks", client.send(Method::GET, "/", &NO_HEADERS, None, 8 << 20)).await;
    assert_eq!(answer.expect("answered").body.len(), 0x40_0000 + SMALL);
}

#[tokio::test]
async fn as_many_connections_as_calls_in_flight_stay_open_for_the_next_calls() {
    // A bot answering many chats at once has a call in flight for each: the connections they
    // opened stay for the next wave instead of being closed and opened again.
    const AT_ONCE: usize = 40;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    // The first wave is answered only once all of it has arrived, so it needs AT_ONCE connections.
    let first_wave = Arc::new(tokio::sync::Barrier::new(AT_ONCE));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let index = counted.fetch_add(1, Ordering::SeqCst);
            let first_wave = first_wave.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut first = index < AT_ONCE;
                while request_head(&mut stream).await.is_some() {
                    if std::mem::take(&mut first) {
                        first_wave.wait().await;
                    }
                    if stream.get_mut().write_all(OK.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = ApiClient::new(&url, &rhaibot::tls::client(None).unwrap());
    for wave in 0..2 {
        let calls = (0..AT_ONCE).map(|_| client.send(Method::GET, "/", &NO_HEADERS, None, 64));
        for answer in within("a wave of calls", futures_util::future::join_all(calls)).await {
            assert_eq!(answer.expect("answered").status, 200, "wave {wave}");
        }
    }
    assert_eq!(connections.load(Ordering::SeqCst), AT_ONCE);
}
