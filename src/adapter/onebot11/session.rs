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
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Frame, classify, decode_event, prepare_params};
use crate::adapter::EventSink;
use crate::bot::{Bot, Call, CallError, Reply, connection_id};
use crate::logsafe::RateLimit;
pub use crate::logsafe::preview;

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

/// Calls sent and not yet answered, by echo: action, where the result goes, when it was sent.
type Pending = HashMap<u64, (String, Reply, Instant)>;

/// How long a closing session waits for answers to calls already sent.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Most calls written before one flush.
const WRITE_BATCH: usize = 64;

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
    let via = connection_id();
    let mut warnings = RateLimit::per_connection();
    let mut next_echo = 0u64;
    let mut heartbeat: Option<Duration> = None;
    let mut last_frame = Instant::now();
    // Unanswered calls nobody waits for time out here.
    let mut sweep = tokio::time::interval(bot.call_timeout.max(Duration::from_millis(100)));
    // At shutdown, answers to calls already sent still get a moment to arrive.
    let mut closing: Option<Instant> = None;
    let end = loop {
        if closing.is_some() && pending.is_empty() {
            let _ = tx.close().await;
            break End::Shutdown;
        }
        let grace_over = async {
            match closing {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
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
            _ = shutdown.cancelled(), if closing.is_none() => closing = Some(Instant::now() + SHUTDOWN_GRACE),
            _ = grace_over => {
                let _ = tx.close().await;
                break End::Shutdown;
            }
            _ = watchdog => break End::Lost("no frame for 3 heartbeat intervals".into()),
            _ = sweep.tick() => expire(bot, &mut pending),
            call = next_call => {
                let Some(mut call) = call else { break End::Shutdown };
                if pending.len() >= 1024 {
                    expire(bot, &mut pending);
                }
                // Calls that queued up meanwhile go out together: one write for the batch.
                let batch = async {
                    for written in 1.. {
                        if call.given_up(std::time::Instant::now()) {
                            // The caller saw it fail already: never send it late.
                            call.reply.send(Err(CallError::Timeout { action: call.action, timeout: bot.call_timeout }));
                        } else {
                            next_echo += 1;
                            let frame = encode_call(&call.action, &prepare_params(call.params), next_echo);
                            pending.insert(next_echo, (call.action, call.reply, Instant::now()));
                            tx.feed(frame).await?;
                        }
                        if written == WRITE_BATCH {
                            break;
                        }
                        match calls.as_deref_mut().map(|c| c.try_recv()) {
                            Some(Ok(more)) => call = more,
                            _ => break,
                        }
                    }
                    tx.flush().await
                };
                // A peer that stopped reading blocks the write: give up on the connection by the
                // write timeout, or sooner when the watchdog would have fired meanwhile.
                let mut write_by = Instant::now() + bot.call_timeout;
                if let Some(interval) = heartbeat {
                    write_by = write_by.min(last_frame + interval * 3);
                }
                match tokio::time::timeout_at(write_by, batch).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break End::Lost(format!("send failed: {}", crate::logsafe::short(&e.to_string()))),
                    Err(_) => break End::Lost("a write stalled: the other end stopped reading".into()),
                }
            }
            frame = rx.next() => {
                let bytes = match frame {
                    None => break End::Lost("closed by the other end".into()),
                    Some(Incoming::Closed(why)) => break End::Lost(crate::logsafe::short(&why)),
                    Some(Incoming::Alive) => { last_frame = Instant::now(); continue; }
                    Some(Incoming::Data(bytes)) => bytes,
                };
                last_frame = Instant::now();
                on_frame();
                if bytes.len() > max_frame_bytes {
                    crate::warn_limited!(warnings, bot = %bot.name, size = bytes.len(), limit = max_frame_bytes, "oversized frame skipped");
                    continue;
                }
                handle_frame(bot, &bytes, &mut pending, &mut heartbeat, sink, via, &mut warnings);
            }
        }
    };
    for (_, (action, reply, _)) in pending.drain() {
        fail(reply, &action, bot);
    }
    end
}

/// The action frame `{"action", "params", "echo"}`, serialised straight from the borrowed
/// params (no intermediate `Value`).
fn encode_call(action: &str, params: &Value, echo: u64) -> String {
    #[derive(serde::Serialize)]
    struct Frame<'a> {
        action: &'a str,
        params: &'a Value,
        echo: u64,
    }
    serde_json::to_string(&Frame { action, params, echo }).unwrap_or_default()
}

/// Forgets callers that gave up, and times out calls nobody waits for.
fn expire(bot: &Bot, pending: &mut Pending) {
    let now = Instant::now();
    let expired: Vec<u64> = pending
        .iter()
        .filter(|(_, (_, reply, sent))| reply.is_abandoned() || now.duration_since(*sent) > bot.call_timeout)
        .map(|(echo, _)| *echo)
        .collect();
    for echo in expired {
        if let Some((action, reply, _)) = pending.remove(&echo) {
            reply.send(Err(CallError::Timeout { action, timeout: bot.call_timeout }));
        }
    }
}

fn handle_frame(
    bot: &Arc<Bot>,
    bytes: &[u8],
    pending: &mut Pending,
    heartbeat: &mut Option<Duration>,
    sink: &EventSink,
    via: u64,
    warnings: &mut RateLimit,
) {
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            crate::warn_limited!(warnings, bot = %bot.name, "malformed frame skipped: {e}: {}", preview(bytes));
            return;
        }
    };
    match classify(value) {
        Frame::Event(raw) => {
            if raw.get("meta_event_type").and_then(Value::as_str) == Some("heartbeat") {
                *heartbeat =
                    raw.get("interval").and_then(Value::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis);
            }
            match decode_event(bot, raw, via) {
                Ok(ev) => sink(ev),
                Err(e) => crate::warn_limited!(warnings, bot = %bot.name, "{e}; skipped"),
            }
        }
        Frame::Response { echo, result } => {
            let Some((action, reply, _)) = echo_id(&echo).and_then(|id| pending.remove(&id)) else {
                let echo = crate::logsafe::short(&echo.to_string());
                crate::warn_limited!(warnings, bot = %bot.name, %echo, "response with unknown echo skipped");
                return;
            };
            let result = result.map_err(|(code, message)| CallError::Failed {
                action,
                code,
                message,
                trace_id: None,
                answer: None,
            });
            reply.send(result);
        }
        Frame::Unknown(v) => {
            crate::warn_limited!(warnings, bot = %bot.name, "frame of unknown shape skipped: {}", preview(v.to_string().as_bytes()))
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
pub fn fail(reply: Reply, action: &str, bot: &Bot) {
    reply.send(Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() }));
}
