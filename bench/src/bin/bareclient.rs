//! The floor: a bare OneBot 11 client with no scripting, the least a bot can do per event.
//!
//! It connects by forward WebSocket, parses each event into a `serde_json::Value` (as any client
//! must), and answers `/echo <rest>` group and private messages with `send_msg` carrying `<rest>`.
//! Everything runs on one thread: no hand-offs, so what it costs per event is the wire, the JSON
//! and the wake-ups; replies to frames that arrived together go out with one write. `bench/run.sh` measures it beside rhaibot in the same run, so every report
//! carries the ratio to this floor.
//!
//! Given an `http://` URL it is a bare Milky client instead: events from the WebSocket at
//! `/event`, each answer a `POST /api/send_group_message` on a kept-alive connection, written
//! by hand (one write per request, the answer read and parsed), so the floor of a protocol that
//! makes a request per reply is measured too.
//!
//! Given `qq http://…` it is a bare client of the official platform's gateway: the AccessToken
//! and the gateway's address over HTTP, Hello and Identify on the WebSocket, then each `/echo`
//! dispatch answered by a `POST /v2/groups/{openid}/messages` with the token's headers, written
//! by hand as for Milky. It does not heartbeat (a bench run is shorter than the gateway's 41 s
//! interval) and keeps no reply rules: the least a gateway client does per event.
//!
//! usage: bareclient ws://127.0.0.1:PORT/ (OneBot 11) | http://127.0.0.1:PORT (Milky)
//!        | qq http://127.0.0.1:PORT (the official platform's gateway)

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (qq, url) = match args.as_slice() {
        [url] => (false, url.clone()),
        [qq, url] if qq == "qq" => (true, url.clone()),
        _ => {
            eprintln!("usage: bareclient ws://HOST:PORT/ | http://HOST:PORT | qq http://HOST:PORT");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bareclient: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let done = match url.strip_prefix("http://").map(|host| host.trim_end_matches('/')) {
        Some(host) if qq => runtime.block_on(local.run_until(gateway(host))),
        Some(host) => runtime.block_on(local.run_until(milky(host))),
        None => runtime.block_on(run(&url)),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bareclient: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves events until the server closes the connection. Replies to the frames that arrived
/// together are written together, with one flush, as any careful client does.
async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (socket, _) = tokio_tungstenite::connect_async(url).await?;
    let (mut sink, mut frames) = socket.split();
    let mut echo = 0u64;
    while let Some(frame) = frames.next().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            let text = match frame? {
                Message::Text(text) => text,
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            if let Some(reply) = serde_json::from_str::<Value>(text.as_str()).ok().and_then(|ev| answer(&ev, echo)) {
                echo += 1;
                sink.feed(Message::text(reply)).await?;
            }
            // Another frame already here joins this batch.
            next = frames.next().now_or_never().flatten();
        }
        sink.flush().await?;
    }
    Ok(())
}

/// The `send_msg` call answering `event`, if it is an `/echo` message.
fn answer(event: &Value, echo: u64) -> Option<String> {
    if event.get("post_type")?.as_str()? != "message" {
        return None;
    }
    let rest = event.get("raw_message")?.as_str()?.strip_prefix("/echo ")?;
    let mut params = json!({
        "message_type": event.get("message_type")?,
        "message": [{"type": "text", "data": {"text": rest}}],
    });
    for key in ["group_id", "user_id"] {
        if let Some(id) = event.get(key) {
            params[key] = id.clone();
        }
    }
    Some(json!({"action": "send_msg", "params": params, "echo": echo}).to_string())
}

/// Serves Milky events until the server closes the event socket: each `/echo` message is
/// answered by a request on an idle kept-alive connection (a new one when none is idle).
async fn milky(host: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{host}/event")).await?;
    let (_, mut frames) = socket.split();
    let idle: Rc<RefCell<Vec<TcpStream>>> = Rc::default();
    while let Some(frame) = frames.next().await {
        let text = match frame? {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Some(body) = serde_json::from_str::<Value>(text.as_str()).ok().and_then(|ev| milky_answer(&ev)) else {
            continue;
        };
        let (host, idle) = (host.to_owned(), idle.clone());
        tokio::task::spawn_local(async move {
            let conn = idle.borrow_mut().pop();
            let conn = match conn {
                Some(conn) => conn,
                None => TcpStream::connect(&host).await?,
            };
            let conn = post(conn, &host, "/api/send_group_message", &body).await?;
            idle.borrow_mut().push(conn);
            Ok::<_, std::io::Error>(())
        });
    }
    Ok(())
}

/// The `send_group_message` body answering a Milky `event`, if it is an `/echo` message.
fn milky_answer(event: &Value) -> Option<String> {
    if event.get("event_type")?.as_str()? != "message_receive" {
        return None;
    }
    let data = event.get("data")?;
    let text = data.get("segments")?.get(0)?.get("data")?.get("text")?.as_str()?;
    let rest = text.strip_prefix("/echo ")?;
    let message = json!([{"type": "text", "data": {"text": rest}}]);
    Some(json!({"group_id": data.get("peer_id")?, "message": message}).to_string())
}

/// Serves the official platform's gateway until it closes: each `/echo` dispatch is answered by
/// a message send on an idle kept-alive connection (a new one when none is idle).
async fn gateway(host: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (token, conn) = call(TcpStream::connect(host).await?, host, "POST", "/app/getAppAccessToken", "", "{}").await?;
    let token = token.get("access_token").and_then(Value::as_str).ok_or("no access_token")?.to_owned();
    // The headers every OpenAPI call carries.
    let headers = format!("Authorization: QQBot {token}\r\nX-Union-Appid: 1\r\n");
    let (gateway, conn) = call(conn, host, "GET", "/gateway/bot", &headers, "").await?;
    let url = gateway.get("url").and_then(Value::as_str).ok_or("no gateway url")?;
    let (socket, _) = tokio_tungstenite::connect_async(url).await?;
    let (mut sink, mut frames) = socket.split();
    // Hello (op 10) comes first; Identify answers it.
    let hello = frames.next().await.ok_or("the gateway closed before Hello")??;
    let hello: Value = serde_json::from_str(hello.to_text()?)?;
    if hello.get("op").and_then(Value::as_u64) != Some(10) {
        return Err(format!("the gateway's first frame is not Hello: {hello}").into());
    }
    let identify = json!({"op": 2, "d": {"token": format!("QQBot {token}"), "intents": 1 << 25, "shard": [0, 1]}});
    sink.send(Message::text(identify.to_string())).await?;
    let idle: Rc<RefCell<Vec<TcpStream>>> = Rc::new(RefCell::new(vec![conn]));
    let headers: Rc<str> = headers.into();
    let mut seq = 0u64;
    while let Some(frame) = frames.next().await {
        let text = match frame? {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(()),
            _ => continue,
        };
        let Some((path, body)) = serde_json::from_str::<Value>(text.as_str()).ok().and_then(|ev| qq_answer(&ev, seq))
        else {
            continue;
        };
        seq += 1;
        let (host, idle, headers) = (host.to_owned(), idle.clone(), headers.clone());
        tokio::task::spawn_local(async move {
            let conn = idle.borrow_mut().pop();
            let conn = match conn {
                Some(conn) => conn,
                None => TcpStream::connect(&host).await?,
            };
            let (answer, conn) = call(conn, &host, "POST", &path, &headers, &body).await?;
            if answer.get("id").is_none() {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the send failed"));
            }
            idle.borrow_mut().push(conn);
            Ok::<_, std::io::Error>(())
        });
    }
    Ok(())
}

/// The path and body of the message answering a gateway dispatch, if it is an `/echo` group
/// message: a passive reply (`msg_id`) with its own `msg_seq`.
fn qq_answer(event: &Value, seq: u64) -> Option<(String, String)> {
    if event.get("op")?.as_u64()? != 0 || event.get("t")?.as_str()? != "GROUP_AT_MESSAGE_CREATE" {
        return None;
    }
    let d = event.get("d")?;
    let rest = d.get("content")?.as_str()?.trim_start().strip_prefix("/echo ")?;
    let body = json!({"content": rest, "msg_type": 0, "msg_id": d.get("id")?, "msg_seq": seq % 1000 + 1});
    Some((format!("/v2/groups/{}/messages", d.get("group_openid")?.as_str()?), body.to_string()))
}

/// Sends one JSON `body` to `path` on `conn`, where a Milky success has `retcode` 0; the
/// connection when it stays open.
async fn post(conn: TcpStream, host: &str, path: &str, body: &str) -> std::io::Result<TcpStream> {
    let (answer, conn) = call(conn, host, "POST", path, "", body).await?;
    if answer.get("retcode").and_then(Value::as_i64) != Some(0) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "the call failed"));
    }
    Ok(conn)
}

/// Sends `method` to `path` on `conn` with `headers` (whole lines) and a JSON `body` (none when
/// empty) and reads the answer, its body parsed as any client reading it must; the answer and
/// the connection when it stays open.
async fn call(
    mut conn: TcpStream,
    host: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(Value, TcpStream)> {
    let content = if body.is_empty() && method == "GET" { "" } else { "Content-Type: application/json\r\n" };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{content}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await?;
    let mut answer = Vec::with_capacity(256);
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    loop {
        if conn.read_buf(&mut answer).await? == 0 {
            return Err(bad("closed before the answer"));
        }
        let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = std::str::from_utf8(&answer[..end]).map_err(|_| bad("head is not UTF-8"))?;
        let length = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .ok_or_else(|| bad("no content-length"))?;
        while answer.len() < end + 4 + length {
            if conn.read_buf(&mut answer).await? == 0 {
                return Err(bad("closed within the answer"));
            }
        }
        let answer: Value = serde_json::from_slice(&answer[end + 4..end + 4 + length])?;
        return Ok((answer, conn));
    }
}
