//! How Milky events arrive: a WebSocket (`GET <url>/event` with an upgrade), server-sent
//! events (the same path without one), or a webhook the implementation POSTs to. The
//! connections heal like OneBot's (back-off with jitter; the shared SSE reader; the shared
//! listener with its timeouts and cap), and the implementation is asked who it is
//! (`get_impl_info`) when a connection opens.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{Events, MilkyConfig};
use super::decode;
use super::payload::read_head;
use crate::adapter::backoff::Retry;
use crate::adapter::sse::{self, Source};
use crate::adapter::ws_client::{self, Socket, TokenIn};
use crate::adapter::{EventSink, Start};
use crate::bot::{Bot, connection_id};
use crate::event::Raw;
use crate::logsafe::{RateLimit, preview};

/// A silent WebSocket is pinged after this long, and given up after three times it.
const PING_EVERY: Duration = Duration::from_secs(30);

/// Starts the bot's event transport.
pub fn start(bot: Arc<Bot>, cfg: MilkyConfig, s: Start<'_>) -> std::io::Result<()> {
    match cfg.events.clone() {
        Events::None => {
            s.tasks.spawn(log_impl_info(bot));
        }
        Events::Ws => {
            s.tasks.spawn(run_ws(bot, cfg, s.sink, s.shutdown));
        }
        Events::Sse => {
            let source = Source {
                url: format!("{}/event", cfg.url),
                token: cfg.access_token.clone(),
                token_in_query: cfg.token_in_query,
                backoff: cfg.backoff,
                max_frame_bytes: cfg.max_frame_bytes,
                tls: cfg.tls.clone(),
            };
            s.tasks.spawn(log_impl_info(bot.clone()));
            let (sink, shutdown) = (s.sink, s.shutdown);
            s.tasks.spawn(async move {
                let handler_bot = bot.clone();
                let mut handle = move |data: &[u8], via: u64, warnings: &mut RateLimit| {
                    deliver(&handler_bot, data, via, &sink, warnings);
                    None
                };
                sse::run(bot, source, &mut handle, shutdown).await;
            });
        }
        Events::Webhook { listen, path, guard } => {
            let listener = crate::adapter::onebot11::bind(&bot, &listen)?;
            s.tasks.spawn(log_impl_info(bot.clone()));
            let receiver = Receiver {
                bot: bot.clone(),
                sink: s.sink,
                token: cfg.access_token.0.clone(),
                via: connection_id(),
                max_body: cfg.max_frame_bytes,
                body_timeout: guard.header_timeout,
                warnings: Arc::new(std::sync::Mutex::new(RateLimit::per_connection())),
            };
            let app = axum::Router::new().route(&path, axum::routing::post(receive)).with_state(receiver);
            s.tasks.spawn(crate::adapter::listener::serve(bot.name.clone(), listener, app, guard, None, s.shutdown));
        }
    }
    Ok(())
}

/// Decodes one event's JSON and hands it on; what is not an event is one rate-limited line.
/// Only the fields decoding reads are built; the event keeps the rest as text.
fn deliver(bot: &Arc<Bot>, data: &[u8], via: u64, sink: &EventSink, warnings: &mut RateLimit) {
    match read_head(data) {
        Ok(Some(head)) => match decode(bot, head, Raw::text(data), via) {
            Ok(ev) => sink(ev),
            Err(e) => crate::warn_limited!(warnings, bot = %bot.name, "{e}; skipped"),
        },
        Ok(None) => {
            crate::warn_limited!(warnings, bot = %bot.name, "Milky event is not an object, skipped: {}", preview(data))
        }
        Err(e) => {
            crate::warn_limited!(warnings, bot = %bot.name, "malformed Milky event skipped: {e}: {}", preview(data))
        }
    }
}

/// Asks the implementation who it is and logs it.
async fn log_impl_info(bot: Arc<Bot>) {
    match bot.call("get_impl_info", Value::Null).await {
        Ok(info) => info!(bot = %bot.name, implementation = %info, "Milky implementation"),
        Err(e) => warn!(bot = %bot.name, "cannot ask the Milky implementation who it is: {e}"),
    }
}

/// Reads `<url>/event` over a WebSocket until `shutdown`, reconnecting with back-off.
async fn run_ws(bot: Arc<Bot>, cfg: MilkyConfig, sink: EventSink, shutdown: CancellationToken) {
    // http://host -> ws://host, https://host -> wss://host.
    let url = format!("{}/event", cfg.url.replacen("http", "ws", 1));
    let token_in = if cfg.token_in_query { TokenIn::Query } else { TokenIn::Header };
    let mut retry = Retry::new(cfg.backoff);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = ws_client::connect(&url, &cfg.access_token.0, token_in, cfg.max_frame_bytes, &cfg.tls) => c,
        };
        match connected {
            Ok(ws) => {
                info!(bot = %bot.name, %url, "event socket open");
                tokio::spawn(log_impl_info(bot.clone()));
                match read_ws(&bot, &cfg, ws, &sink, &shutdown, &mut retry).await {
                    None => return,
                    Some(why) => warn!(bot = %bot.name, %url, "event socket lost: {why}; reconnecting"),
                }
            }
            Err(e) => warn!(bot = %bot.name, %url, "cannot open the event socket: {e}"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry.next_delay()) => {}
        }
    }
}

/// Reads events until the socket ends (`Some(reason)`) or shutdown (`None`).
async fn read_ws(
    bot: &Arc<Bot>,
    cfg: &MilkyConfig,
    mut ws: Socket,
    sink: &EventSink,
    shutdown: &CancellationToken,
    retry: &mut Retry,
) -> Option<String> {
    let via = connection_id();
    let mut warnings = RateLimit::per_connection();
    let mut silent_for = 0u32;
    loop {
        let frame = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = ws.close(None).await;
                return None;
            }
            frame = tokio::time::timeout(PING_EVERY, ws.next()) => frame,
        };
        let message = match frame {
            // Silence: ping, and give up after three silent periods.
            Err(_) => {
                silent_for += 1;
                if silent_for >= 3 {
                    return Some("silent for 3 ping intervals".into());
                }
                let ping = tokio::time::timeout(PING_EVERY, ws.send(Message::Ping(Vec::new().into()))).await;
                if !matches!(ping, Ok(Ok(()))) {
                    return Some("cannot ping".into());
                }
                continue;
            }
            Ok(None) => return Some("closed by the other end".into()),
            Ok(Some(Err(e))) => return Some(crate::logsafe::short(&e.to_string())),
            Ok(Some(Ok(message))) => message,
        };
        silent_for = 0;
        retry.reset();
        let data = match message {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Close(c) => return Some(format!("close frame {c:?}")),
            _ => continue,
        };
        if data.len() > cfg.max_frame_bytes {
            crate::warn_limited!(warnings, bot = %bot.name, size = data.len(), limit = cfg.max_frame_bytes, "oversized event skipped");
            continue;
        }
        deliver(bot, &data, via, sink, &mut warnings);
    }
}

/// What the webhook receiver needs.
#[derive(Clone)]
struct Receiver {
    bot: Arc<Bot>,
    sink: EventSink,
    token: String,
    via: u64,
    max_body: usize,
    body_timeout: Duration,
    warnings: Arc<std::sync::Mutex<RateLimit>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: axum::body::Body) -> Response {
    let warnings = || r.warnings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !r.token.is_empty() {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let status = match given {
            None => Some(StatusCode::UNAUTHORIZED),
            Some(g)
                if !crate::adapter::onebot11::reverse::constant_time_eq(g.trim().as_bytes(), r.token.as_bytes()) =>
            {
                Some(StatusCode::FORBIDDEN)
            }
            Some(_) => None,
        };
        if let Some(status) = status {
            crate::warn_limited!(warnings(), bot = %r.bot.name, status = status.as_u16(), "webhook event refused: missing or wrong access token");
            return status.into_response();
        }
    }
    let body =
        match crate::adapter::listener::read_body(body, r.max_body, r.body_timeout, &r.bot.name, &r.warnings).await {
            Ok(body) => body,
            Err(status) => return status.into_response(),
        };
    deliver(&r.bot, &body, r.via, &r.sink, &mut warnings());
    StatusCode::NO_CONTENT.into_response()
}
