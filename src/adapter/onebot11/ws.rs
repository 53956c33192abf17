//! OneBot 11 forward WebSocket client (universal endpoint `/`): one socket carries events from
//! the implementation and our action calls, correlated by `echo`.
//!
//! The connection heals itself: exponential back-off with jitter between attempts, and a
//! watchdog that reconnects when nothing arrived for three heartbeat intervals (the interval
//! is read from the implementation's own `meta_event.heartbeat`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Frame, classify, decode_event, prepare_params};
use crate::adapter::backoff::Retry;
use crate::adapter::{Bot, Call, CallError, EventSink};
use crate::config::WsClientConfig;

type Pending = HashMap<u64, (String, oneshot::Sender<Result<Value, CallError>>)>;

/// Why a session ended.
enum End {
    Shutdown,
    Lost(String),
}

/// Runs the connection until `shutdown`: connect, serve, back off, reconnect.
pub async fn run(
    bot: Arc<Bot>,
    cfg: WsClientConfig,
    mut calls: mpsc::Receiver<Call>,
    sink: EventSink,
    shutdown: CancellationToken,
) {
    let mut retry = Retry::new(cfg.backoff);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = connect(&cfg) => c,
        };
        match connected {
            Ok(ws) => {
                info!(bot = %bot.name, url = %cfg.url, "connected");
                match session(&bot, &cfg, ws, &mut calls, &sink, &shutdown, &mut retry).await {
                    End::Shutdown => return,
                    End::Lost(why) => warn!(bot = %bot.name, "connection lost: {why}; reconnecting"),
                }
            }
            Err(e) => warn!(bot = %bot.name, url = %cfg.url, "cannot connect: {e}"),
        }
        let wake = Instant::now() + retry.next_delay();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => break,
                call = calls.recv() => match call {
                    Some(call) => fail(call.reply, &call.action, &bot),
                    None => return,
                },
            }
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(cfg: &WsClientConfig) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = cfg.url.as_str().into_client_request()?;
    if !cfg.access_token.0.is_empty() {
        let value = HeaderValue::from_str(&format!("Bearer {}", cfg.access_token.0))
            .map_err(|e| tokio_tungstenite::tungstenite::Error::HttpFormat(e.into()))?;
        request.headers_mut().insert("Authorization", value);
    }
    // The frame limit is enforced per message below, so an oversized frame is skipped with a log
    // line instead of killing the connection; tungstenite's own cap is a backstop above it.
    let backstop = cfg.max_frame_bytes.saturating_mul(4).max(64 << 20);
    let ws_config = WebSocketConfig::default().max_message_size(Some(backstop)).max_frame_size(Some(backstop));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    let (ws, _response) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| tokio_tungstenite::tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()))??;
    Ok(ws)
}

async fn session(
    bot: &Arc<Bot>,
    cfg: &WsClientConfig,
    ws: Socket,
    calls: &mut mpsc::Receiver<Call>,
    sink: &EventSink,
    shutdown: &CancellationToken,
    retry: &mut Retry,
) -> End {
    let (mut tx, mut rx) = ws.split();
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
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = tx.send(Message::Close(None)).await;
                break End::Shutdown;
            }
            _ = watchdog => break End::Lost("no frame for 3 heartbeat intervals".into()),
            call = calls.recv() => {
                let Some(call) = call else { break End::Shutdown };
                next_echo += 1;
                let frame = encode_call(&call.action, call.params, next_echo);
                if let Err(e) = tx.send(Message::Text(frame.into())).await {
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
                let bytes: Bytes = match frame {
                    None => break End::Lost("closed by the other end".into()),
                    Some(Err(e)) => break End::Lost(e.to_string()),
                    Some(Ok(Message::Text(t))) => t.into(),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Close(c))) => break End::Lost(format!("close frame {c:?}")),
                    Some(Ok(_)) => { last_frame = Instant::now(); continue; }
                };
                last_frame = Instant::now();
                retry.reset();
                if bytes.len() > cfg.max_frame_bytes {
                    warn!(bot = %bot.name, size = bytes.len(), limit = cfg.max_frame_bytes, "oversized frame skipped");
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

fn encode_call(action: &str, params: Value, echo: u64) -> String {
    json!({"action": action, "params": prepare_params(params), "echo": echo}).to_string()
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

fn fail(reply: oneshot::Sender<Result<Value, CallError>>, action: &str, bot: &Bot) {
    let _ = reply.send(Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() }));
}

fn preview(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    if bytes.len() > 200 { format!("{s}…") } else { s.into_owned() }
}
