//! OneBot 11 forward WebSocket client: the universal endpoint (`/`, events and calls on one
//! socket) or split endpoints (`/api` for calls, `/event` for events, each its own socket).
//!
//! Each socket heals itself: exponential back-off with jitter between attempts, and the
//! session's heartbeat watchdog.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::OneBotConfig;
use super::session::{self, Calls, End, Incoming};
use crate::adapter::EventSink;
use crate::adapter::backoff::Retry;
use crate::adapter::ws_client::{self, TokenIn};
use crate::bot::{Bot, Call, Outbox};

/// Starts the bot's sockets: one universal socket, or an API and an event socket.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    url: String,
    split: bool,
    calls: (Arc<Outbox>, mpsc::Receiver<Call>),
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) {
    if split {
        let base = url.trim_end_matches('/').to_owned();
        let (api, event) = (format!("{base}/api"), format!("{base}/event"));
        tasks.spawn(run(bot.clone(), cfg.clone(), api, Some(calls), sink.clone(), shutdown.clone()));
        tasks.spawn(run(bot, cfg, event, None, sink, shutdown));
    } else {
        tasks.spawn(run(bot, cfg, url, Some(calls), sink, shutdown));
    }
}

/// Runs one socket until `shutdown`: connect, serve, back off, reconnect. While disconnected,
/// calls fail at once with `NotConnected`.
async fn run(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    url: String,
    mut calls: Option<(Arc<Outbox>, mpsc::Receiver<Call>)>,
    sink: EventSink,
    shutdown: CancellationToken,
) {
    let mut retry = Retry::new(cfg.backoff);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = ws_client::connect(&url, &cfg.access_token.0, TokenIn::Header, cfg.max_frame_bytes, &cfg.tls) => c,
        };
        match connected {
            Ok(ws) => {
                info!(bot = %bot.name, %url, "connected");
                let (tx, rx) = ws.split();
                let tx = tx.with(|text: String| async move { Ok::<_, WsError>(Message::Text(text.into())) });
                let rx = rx.map(|m| match m {
                    Ok(Message::Text(t)) => Incoming::Data(t.into()),
                    Ok(Message::Binary(b)) => Incoming::Data(b),
                    Ok(Message::Close(c)) => Incoming::Closed(format!("close frame {c:?}")),
                    Ok(_) => Incoming::Alive,
                    Err(e) => Incoming::Closed(e.to_string()),
                });
                let reset = || retry.reset();
                let calls = calls.as_mut().map(|(outbox, rx)| Calls { rx, outbox });
                let end = session::run(&bot, cfg.max_frame_bytes, rx, tx, calls, &sink, &shutdown, reset).await;
                match end {
                    End::Shutdown => return,
                    End::Lost(why) => warn!(bot = %bot.name, %url, "connection lost: {why}; reconnecting"),
                }
            }
            Err(e) => warn!(bot = %bot.name, %url, "cannot connect: {e}"),
        }
        let wake = Instant::now() + retry.next_delay();
        loop {
            let next_call = async {
                match calls.as_mut() {
                    Some((outbox, rx)) => rx.recv().await.inspect(|_| outbox.taken()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => break,
                call = next_call => match call {
                    Some(call) => session::fail(call.reply, &call.action, &bot),
                    None => return,
                },
            }
        }
    }
}
