//! The floor: a bare OneBot 11 client with no scripting, the least a bot can do per event.
//!
//! It connects by forward WebSocket, parses each event into a `serde_json::Value` (as any client
//! must), and answers `/echo <rest>` group and private messages with `send_msg` carrying `<rest>`.
//! Everything runs on one thread: no hand-offs, so what it costs per event is the wire, the JSON
//! and the wake-ups; replies to frames that arrived together go out with one write. `bench/run.sh` measures it beside rhaibot in the same run, so every report
//! carries the ratio to this floor.
//!
//! usage: bareclient ws://127.0.0.1:PORT/

use std::process::ExitCode;

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn main() -> ExitCode {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: bareclient ws://HOST:PORT/");
        return ExitCode::FAILURE;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bareclient: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&url)) {
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
