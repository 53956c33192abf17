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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{Events, MilkyConfig};
use super::decode;
use super::payload::read_head;
use crate::adapter::backoff::Retry;
use crate::adapter::sse::{self, Source};
use crate::adapter::ws_client::{self, TokenIn};
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
        Events::Webhook { listen, path, guard, token } => {
            let listener = crate::adapter::listener::bind(&bot, &listen)?;
            // Judged by the address bound: any 127.x or ::1 is loopback.
            let open = listener.local_addr().map_or(true, |a| !a.ip().is_loopback());
            if open && token.0.is_empty() {
                warn!(
                    bot = %bot.name,
                    %listen,
                    "the Milky webhook listens beyond loopback with no webhook_token (webhook_open = true): anyone who can reach {listen} can post events"
                );
            }
            s.tasks.spawn(log_impl_info(bot.clone()));
            let receiver = Receiver {
                bot: bot.clone(),
                sink: s.sink,
                token: token.0,
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
    // An implementation that closes the socket it just accepted does so on every attempt.
    let mut refusals = RateLimit::new(1, Duration::from_secs(600));
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            c = ws_client::connect(&url, &cfg.access_token.0, token_in, cfg.max_frame_bytes, &cfg.tls) => c,
        };
        match connected {
            Ok(ws) => {
                info!(bot = %bot.name, %url, "event socket open");
                tokio::spawn(log_impl_info(bot.clone()));
                match read_ws(&bot, cfg.max_frame_bytes, ws, &sink, &shutdown, &mut retry).await {
                    None => return,
                    Some(Lost::Dropped(why)) => warn!(bot = %bot.name, %url, "event socket lost: {why}; reconnecting"),
                    Some(Lost::Refused { code, reason }) => {
                        let hint =
                            if code == CloseCode::Policy { "; a wrong access_token is the likely cause" } else { "" };
                        crate::warn_limited!(refusals, bot = %bot.name, %url, "the Milky implementation closed the event socket with {code} \"{reason}\"{hint}; reconnecting with back-off");
                    }
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

/// Why an event socket ended, other than shutdown.
#[derive(Debug, PartialEq)]
enum Lost {
    /// Broken, silent, or closed without a word.
    Dropped(String),
    /// Closed with a policy code (1008) or a reason: the implementation turned the connection
    /// down, as LLBot does a wrong token right after accepting the upgrade.
    Refused {
        /// The close code.
        code: CloseCode,
        /// The reason given, escaped and cut short.
        reason: String,
    },
}

impl Lost {
    fn closed(frame: Option<CloseFrame>) -> Lost {
        match frame {
            Some(f) if f.code == CloseCode::Policy || !f.reason.is_empty() => {
                Lost::Refused { code: f.code, reason: crate::logsafe::short(&f.reason) }
            }
            other => Lost::Dropped(format!("close frame {other:?}")),
        }
    }
}

/// Reads events until the socket ends (`Some(why)`) or shutdown (`None`). An event, or a ping
/// or pong (a quiet connection that works), resets `retry`: a socket closed as soon as it opens
/// keeps backing off.
async fn read_ws<S: AsyncRead + AsyncWrite + Unpin>(
    bot: &Arc<Bot>,
    max_frame_bytes: usize,
    mut ws: WebSocketStream<S>,
    sink: &EventSink,
    shutdown: &CancellationToken,
    retry: &mut Retry,
) -> Option<Lost> {
    let via = connection_id();
    let mut warnings = RateLimit::per_connection();
    let mut silent_for = 0u32;
    // One timer and one shutdown waiter for the socket's life, not one of each per frame: a
    // frame only notes when it came, and the timer, when it fires, checks that note.
    let mut heard = Instant::now();
    let silence = tokio::time::sleep(PING_EVERY);
    let cancelled = shutdown.cancelled();
    tokio::pin!(silence, cancelled);
    loop {
        let frame = tokio::select! {
            // In this order: a frame already waiting counts before the timer that it answers.
            biased;
            _ = &mut cancelled => {
                let _ = ws.close(None).await;
                return None;
            }
            frame = ws.next() => frame,
            () = &mut silence => {
                let quiet_until = heard + PING_EVERY;
                if quiet_until > Instant::now() {
                    silence.as_mut().reset(quiet_until);
                    continue;
                }
                // Silence: ping, and give up after three silent periods.
                silent_for += 1;
                if silent_for >= 3 {
                    return Some(Lost::Dropped("silent for 3 ping intervals".into()));
                }
                let ping = tokio::time::timeout(PING_EVERY, ws.send(Message::Ping(Vec::new().into()))).await;
                if !matches!(ping, Ok(Ok(()))) {
                    return Some(Lost::Dropped("cannot ping".into()));
                }
                heard = Instant::now();
                silence.as_mut().reset(heard + PING_EVERY);
                continue;
            }
        };
        let message = match frame {
            None => return Some(Lost::Dropped("closed by the other end".into())),
            Some(Err(e)) => return Some(Lost::Dropped(crate::logsafe::short(&e.to_string()))),
            Some(Ok(message)) => message,
        };
        heard = Instant::now();
        silent_for = 0;
        let data = match message {
            Message::Text(t) => Bytes::from(t),
            Message::Binary(b) => b,
            Message::Close(c) => return Some(Lost::closed(c)),
            Message::Ping(_) | Message::Pong(_) => {
                retry.reset();
                continue;
            }
            Message::Frame(_) => continue,
        };
        retry.reset();
        if data.len() > max_frame_bytes {
            crate::warn_limited!(warnings, bot = %bot.name, size = data.len(), limit = max_frame_bytes, "oversized event skipped");
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
            crate::warn_limited!(warnings(), bot = %r.bot.name, status = status.as_u16(), "webhook event refused: missing or wrong webhook_token");
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// Silence is measured from the last frame: a frame puts the ping off, each silent period
    /// sends one, and the third ends the socket. In-process (a duplex pipe) on a paused clock,
    /// so no real socket's timing is in it; the other end reads raw bytes, so no pong answers.
    #[tokio::test(start_paused = true)]
    async fn a_silent_event_socket_is_pinged_each_period_and_given_up_on_the_third() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let start = Instant::now();
        let server = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(20)).await;
            // An unmasked text frame `{}`, as a server sends it.
            theirs.write_all(&[0x81, 2, b'{', b'}']).await.unwrap();
            // An empty ping from a client is 0x89 0x80 and a 4-byte mask.
            let (mut pings, mut frame) = (Vec::new(), [0u8; 6]);
            while theirs.read_exact(&mut frame).await.is_ok() && frame[..2] == [0x89, 0x80] {
                pings.push((Instant::now() - start).as_secs());
            }
            pings
        });
        let ws = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
        let bot = Bot::detached("milky", &super::super::PROTOCOL);
        let sink: EventSink = Arc::new(|_| {});
        let backoff = crate::config::Backoff { min: Duration::from_secs(1), max: Duration::from_secs(2) };
        let (shutdown, mut retry) = (CancellationToken::new(), Retry::new(backoff));
        let reading = read_ws(&bot, 1 << 20, ws, &sink, &shutdown, &mut retry);
        let why = tokio::time::timeout(Duration::from_secs(1000), reading).await.expect("it gives up");
        assert_eq!(why, Some(Lost::Dropped("silent for 3 ping intervals".into())));
        assert_eq!((Instant::now() - start).as_secs(), 20 + 3 * PING_EVERY.as_secs());
        assert_eq!(server.await.unwrap(), [20 + PING_EVERY.as_secs(), 20 + 2 * PING_EVERY.as_secs()]);
    }

    /// A socket closed at once (LLBot refusing a token: 1008 right after the upgrade) leaves the
    /// back-off where it was, and says why; one that delivered an event first resets it. The
    /// server's frames are written as raw bytes into a pipe before the reader starts.
    #[tokio::test]
    async fn only_a_working_socket_resets_the_back_off_and_a_refusal_is_named() {
        // An unmasked close frame: 1008 (0x03f0) and "Unauthorized", as a server sends it.
        let mut close = vec![0x88, 14, 0x03, 0xf0];
        close.extend_from_slice(b"Unauthorized");
        let event = [0x81, 2, b'{', b'}'];
        // A pong: the answer to our ping on a quiet connection that works.
        let pong = [0x8a, 0];
        for (frames, reset) in
            [(close.clone(), false), ([&event[..], &close].concat(), true), ([&pong[..], &close].concat(), true)]
        {
            let (ours, mut theirs) = tokio::io::duplex(4096);
            theirs.write_all(&frames).await.unwrap();
            let ws = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
            let bot = Bot::detached("milky", &super::super::PROTOCOL);
            let sink: EventSink = Arc::new(|_| {});
            let backoff = crate::config::Backoff { min: Duration::from_secs(1), max: Duration::from_secs(60) };
            let mut retry = Retry::new(backoff);
            for _ in 0..3 {
                retry.next_delay();
            }
            let why = read_ws(&bot, 1 << 20, ws, &sink, &CancellationToken::new(), &mut retry).await;
            assert_eq!(why, Some(Lost::Refused { code: CloseCode::Policy, reason: "Unauthorized".into() }));
            // The fourth attempt waits 4-8 s; a reset one, at most the first step.
            let next = retry.next_delay();
            assert_eq!(next <= Duration::from_secs(1), reset, "{next:?} after {frames:?}");
        }
    }
}
