//! OneBot 11 reverse WebSocket: the implementation connects to the runtime. It says what the
//! socket is for in `X-Client-Role` (`Universal`, `API` or `Event`; Universal when absent) and
//! who it is in `X-Self-ID`. With an access token configured, `Authorization: Bearer <token>`
//! (or `?access_token=`) must match: a missing token gets 401, a wrong one 403, before the
//! upgrade. Without one, anything is accepted (LLBot and NapCat then send a bare `Bearer `).

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::session::{self, End, Incoming};
use crate::adapter::{Bot, Call, EventSink};
use crate::config::OneBotConfig;

#[derive(Clone)]
struct Server {
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    self_id: Option<i64>,
    sink: EventSink,
    shutdown: CancellationToken,
    /// Where calls go: the newest connection that takes them (Universal or API).
    api: Arc<Mutex<Option<mpsc::Sender<Call>>>>,
}

/// Listens on `listen` and routes the bot's `calls` to the current API-capable connection.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    listen: &str,
    self_id: Option<i64>,
    mut calls: mpsc::Receiver<Call>,
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    let listener = super::bind(&bot, listen)?;
    let api: Arc<Mutex<Option<mpsc::Sender<Call>>>> = Arc::default();
    let server = Server { bot: bot.clone(), cfg, self_id, sink, shutdown: shutdown.clone(), api: api.clone() };
    let app = axum::Router::new()
        .route("/", axum::routing::any(upgrade))
        .route("/{*path}", axum::routing::any(upgrade))
        .with_state(server);
    let stop = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await {
            warn!("reverse WebSocket server stopped: {e}");
        }
    });
    tasks.spawn(async move {
        loop {
            let call = tokio::select! {
                _ = shutdown.cancelled() => return,
                call = calls.recv() => match call { Some(c) => c, None => return },
            };
            let target = api.lock().unwrap_or_else(PoisonError::into_inner).clone();
            match target {
                Some(tx) => {
                    if let Err(mpsc::error::SendError(call)) = tx.send(call).await {
                        session::fail(call.reply, &call.action, &bot);
                    }
                }
                None => session::fail(call.reply, &call.action, &bot),
            }
        }
    });
    Ok(())
}

async fn upgrade(
    State(server): State<Server>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let token = &server.cfg.access_token.0;
    if !token.is_empty() {
        let given = header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("Token ")))
            .map(str::to_owned)
            .or_else(|| query.get("access_token").cloned());
        let status = match given {
            None => Some(StatusCode::UNAUTHORIZED),
            Some(g) if !constant_time_eq(g.trim().as_bytes(), token.as_bytes()) => Some(StatusCode::FORBIDDEN),
            Some(_) => None,
        };
        if let Some(status) = status {
            warn!(bot = %server.bot.name, status = status.as_u16(), "reverse WebSocket refused: missing or wrong access token");
            return status.into_response();
        }
    }
    let self_id = header("x-self-id").and_then(|s| s.parse::<i64>().ok());
    if let Some(expected) = server.self_id
        && self_id != Some(expected)
    {
        warn!(bot = %server.bot.name, ?self_id, expected, "reverse WebSocket refused: another account");
        return StatusCode::FORBIDDEN.into_response();
    }
    let role = header("x-client-role").unwrap_or("Universal").to_ascii_lowercase();
    let backstop = server.cfg.max_frame_bytes.saturating_mul(4).max(64 << 20);
    ws.max_message_size(backstop).on_upgrade(move |socket| connection(server, socket, role, self_id))
}

async fn connection(server: Server, socket: WebSocket, role: String, self_id: Option<i64>) {
    let bot = &server.bot;
    info!(bot = %bot.name, %role, ?self_id, "reverse WebSocket connected");
    let (tx, rx) = socket.split();
    let tx = Box::pin(tx.with(|text: String| async move { Ok::<_, axum::Error>(Message::Text(text.into())) }));
    let rx = rx.map(|m| match m {
        Ok(Message::Text(t)) => Incoming::Data(axum::body::Bytes::from(t.as_str().to_owned())),
        Ok(Message::Binary(b)) => Incoming::Data(b),
        Ok(Message::Close(c)) => Incoming::Closed(format!("close frame {c:?}")),
        Ok(_) => Incoming::Alive,
        Err(e) => Incoming::Closed(e.to_string()),
    });
    let takes_calls = role != "event";
    let (call_tx, mut call_rx) = mpsc::channel(1024);
    if takes_calls {
        *server.api.lock().unwrap_or_else(PoisonError::into_inner) = Some(call_tx.clone());
    }
    let calls = takes_calls.then_some(&mut call_rx);
    let end = session::run(bot, server.cfg.max_frame_bytes, rx, tx, calls, &server.sink, &server.shutdown, || {}).await;
    if takes_calls {
        let mut api = server.api.lock().unwrap_or_else(PoisonError::into_inner);
        if api.as_ref().is_some_and(|current| current.same_channel(&call_tx)) {
            *api = None;
        }
    }
    if let End::Lost(why) = end {
        warn!(bot = %bot.name, %role, "reverse WebSocket closed: {why}");
    }
}

/// Compares secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
