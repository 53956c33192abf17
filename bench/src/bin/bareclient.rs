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
//! usage: bareclient ws://127.0.0.1:PORT/ (OneBot 11) | http://127.0.0.1:PORT (Milky)

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: bareclient ws://HOST:PORT/ | http://HOST:PORT");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bareclient: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let done = match url.strip_prefix("http://") {
        Some(host) => runtime.block_on(tokio::task::LocalSet::new().run_until(milky(host.trim_end_matches('/')))),
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

/// Sends one JSON `body` to `path` on `conn` and reads the answer (its body parsed, as a client
/// checking the retcode must); the connection when it stays open.
async fn post(mut conn: TcpStream, host: &str, path: &str, body: &str) -> std::io::Result<TcpStream> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
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
        if answer.get("retcode").and_then(Value::as_i64) != Some(0) {
            return Err(bad("the call failed"));
        }
        return Ok(conn);
    }
}
