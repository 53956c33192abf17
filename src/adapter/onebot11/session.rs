//! One OneBot 11 WebSocket conversation, whatever opened it (forward client or reverse server):
//! frames in (events to the sink, responses matched to pending calls by `echo`), calls out,
//! and a watchdog that ends the session when nothing arrived for three heartbeat intervals.
//!
//! Generic over the socket's halves so the tungstenite client and the axum server share it.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{Frame, classify, decode_event, prepare_params};
use crate::adapter::{Bot, Call, CallError, EventSink};

/// What the socket delivered.
pub enum Incoming {
    /// A text or binary frame.
    Data(Bytes),
    /// A ping, pong or other control frame: the peer is alive.
    Alive,
    /// The peer closed, or the socket failed.
    Closed(String),
}

/// Why a session ended.
pub enum End {
    /// The runtime is stopping (or the bot's call channel closed).
    Shutdown,
    /// The connection is gone; the caller may reconnect.
    Lost(String),
}

type Pending = HashMap<u64, (String, oneshot::Sender<Result<Value, CallError>>)>;

/// Serves one connection until it ends. `calls` is `None` for an event-only socket;
/// `on_frame` runs for every data frame (the forward client resets its back-off there).
#[allow(clippy::too_many_arguments)]
pub async fn run<S, K>(
    bot: &Arc<Bot>,
    max_frame_bytes: usize,
    mut rx: S,
    mut tx: K,
    mut calls: Option<&mut mpsc::Receiver<Call>>,
    sink: &EventSink,
    shutdown: &CancellationToken,
    mut on_frame: impl FnMut(),
) -> End
where
    S: Stream<Item = Incoming> + Unpin,
    K: Sink<String> + Unpin,
    K::Error: Display,
{
    let mut pending = Pending::new();
    let mut next_echo = 0u64;
    let mut heartbeat: Option<Duration> = None;
    let mut last_frame = Instant::now();
    let end = loop {
        let watchdog = async {
            match heartbeat {
                Some(interval) => tokio::time::sleep_until(last_frame + interval * 3).await,
                None => std::future::pending().await,
            }
        };
        let next_call = async {
            match calls.as_deref_mut() {
                Some(c) => c.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = tx.close().await;
                break End::Shutdown;
            }
            _ = watchdog => break End::Lost("no frame for 3 heartbeat intervals".into()),
            call = next_call => {
                let Some(call) = call else { break End::Shutdown };
                next_echo += 1;
                let frame = json!({"action": call.action, "params": prepare_params(call.params), "echo": next_echo});
                if let Err(e) = tx.send(frame.to_string()).await {
                    fail(call.reply, &call.action, bot);
                    break End::Lost(format!("send failed: {e}"));
                }
                if pending.len() >= 1024 {
                    // Callers that timed out dropped their receiver; forget them.
                    pending.retain(|_, (_, reply)| !reply.is_closed());
                }
                pending.insert(next_echo, (call.action, call.reply));
            }
            frame = rx.next() => {
                let bytes = match frame {
                    None => break End::Lost("closed by the other end".into()),
                    Some(Incoming::Closed(why)) => break End::Lost(why),
                    Some(Incoming::Alive) => { last_frame = Instant::now(); continue; }
                    Some(Incoming::Data(bytes)) => bytes,
                };
                last_frame = Instant::now();
                on_frame();
                if bytes.len() > max_frame_bytes {
                    warn!(bot = %bot.name, size = bytes.len(), limit = max_frame_bytes, "oversized frame skipped");
                    continue;
                }
                handle_frame(bot, &bytes, &mut pending, &mut heartbeat, sink);
            }
        }
    };
    for (_, (action, reply)) in pending.drain() {
        fail(reply, &action, bot);
    }
    end
}

fn handle_frame(
    bot: &Arc<Bot>,
    bytes: &[u8],
    pending: &mut Pending,
    heartbeat: &mut Option<Duration>,
    sink: &EventSink,
) {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            warn!(bot = %bot.name, "malformed frame skipped: {e}: {}", preview(bytes));
            return;
        }
    };
    match classify(value) {
        Frame::Event(raw) => {
            if raw.get("meta_event_type").and_then(Value::as_str) == Some("heartbeat") {
                *heartbeat =
                    raw.get("interval").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis);
            }
            sink(decode_event(bot, raw));
        }
        Frame::Response { echo, result } => {
            let Some((action, reply)) = echo_id(&echo).and_then(|id| pending.remove(&id)) else {
                warn!(bot = %bot.name, %echo, "response with unknown echo skipped");
                return;
            };
            let result = result.map_err(|(retcode, message)| CallError::Failed { action, retcode, message });
            let _ = reply.send(result);
        }
        Frame::Unknown(v) => {
            warn!(bot = %bot.name, "frame of unknown shape skipped: {}", preview(v.to_string().as_bytes()))
        }
    }
}

fn echo_id(echo: &Value) -> Option<u64> {
    match echo {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Answers a call with `NotConnected`.
pub fn fail(reply: oneshot::Sender<Result<Value, CallError>>, action: &str, bot: &Bot) {
    let _ = reply.send(Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() }));
}

/// The start of a frame, for log lines.
pub fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    if bytes.len() > 200 { format!("{s}…") } else { s.into_owned() }
}
