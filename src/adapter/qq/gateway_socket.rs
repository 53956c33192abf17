//! The gateway's socket loop: connects, drives the [`State`](super::gateway::State) machine
//! with what arrives, carries out its actions (identify, resume, heartbeats, reconnects), and
//! hands dispatch events on. The session (id and sequence number) is written to a file when it
//! starts, when a connection ends and at shutdown, so a restarted process resumes (the
//! platform replays what it missed; events seen twice are dropped by their ids).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::decode::decode;
use super::gateway::{Action, Input, Session, State};
use super::payload::{Head, read_head};
use super::token::Tokens;
use crate::adapter::EventSink;
use crate::adapter::backoff::Retry;
use crate::adapter::slots::Field;
use crate::adapter::ws_client::{self, Socket, TokenIn};
use crate::bot::{Bot, connection_id};
use crate::config::Backoff;
use crate::event::Raw;
use crate::logsafe::RateLimit;

/// How long a connection may take from opening to a running session (READY or RESUMED).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a rate-limited client waits before it connects again (close code 4008).
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);

/// What one gateway connection needs.
pub struct Gateway {
    /// The bot the events are for.
    pub bot: Arc<Bot>,
    /// The gateway's `wss://` URL.
    pub url: String,
    /// The AccessToken source.
    pub tokens: Arc<Tokens>,
    /// The intents to identify with, asked at each Identify (scripts reloaded since the last
    /// one may handle other events now).
    pub intents: Arc<dyn Fn() -> u32 + Send + Sync>,
    /// `[shard_id, shard_count]`.
    pub shard: [u32; 2],
    /// Where the session is kept between runs, if anywhere.
    pub session_file: Option<PathBuf>,
    /// Reconnect delays.
    pub backoff: Backoff,
    /// TLS for `wss://`.
    pub tls: crate::tls::ClientTls,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
}

impl Gateway {
    /// Runs until `shutdown` (or a close code that says retrying cannot help).
    pub async fn run(self, sink: EventSink, shutdown: CancellationToken) {
        let mut state = State::Disconnected { session: self.load_session() };
        let mut retry = Retry::new(self.backoff);
        loop {
            let socket = tokio::select! {
                _ = shutdown.cancelled() => return self.save(&state),
                s = ws_client::connect(&self.url, "", TokenIn::Header, self.max_frame_bytes, &self.tls) => s,
            };
            let mut wait = retry.next_delay();
            match socket {
                Ok(socket) => {
                    info!(bot = %self.bot.name, url = %self.url, "gateway connected");
                    let (next, action) = self.serve(state, socket, &sink, &shutdown, &mut retry).await;
                    state = next;
                    self.save(&state);
                    match action {
                        None => return,
                        Some(Action::Stop(reason)) => {
                            error!(bot = %self.bot.name, "gateway: {reason}; not reconnecting");
                            return;
                        }
                        Some(Action::ReconnectLater) => wait = wait.max(RATE_LIMIT_WAIT),
                        Some(_) => {}
                    }
                }
                Err(e) => warn!(bot = %self.bot.name, url = %self.url, "cannot reach the gateway: {e}"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return self.save(&state),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Serves one connection; returns the state after it and the action that ended it (`None`:
    /// shutdown).
    async fn serve(
        &self,
        mut state: State,
        mut socket: Socket,
        sink: &EventSink,
        shutdown: &CancellationToken,
        retry: &mut Retry,
    ) -> (State, Option<Action>) {
        let via = connection_id();
        let mut warnings = RateLimit::per_connection();
        let mut heartbeat: Option<tokio::time::Interval> = None;
        let mut pending: Vec<Input> = vec![Input::Opened];
        let mut kept = false;
        // The token this connection identified or resumed with: the one a close refuses.
        let mut sent_token = None;
        // The intents this connection identified with.
        let mut sent_intents = 0;
        let handshake_deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        // One shutdown waiter for the connection, not one registered and dropped per frame.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // Feed what happened to the machine and carry out what it says.
            for input in pending.drain(..) {
                let (next, actions) = state.step(input);
                state = next;
                for action in actions {
                    match action {
                        Action::Identify => {
                            let token = match self.tokens.get().await {
                                Ok(t) => t,
                                Err(e) => {
                                    // A passing failure (DNS, a 5xx): try again later.
                                    warn!(bot = %self.bot.name, "gateway: {e}; reconnecting");
                                    let _ = socket.close(None).await;
                                    return (State::Disconnected { session: None }, Some(Action::Reconnect));
                                }
                            };
                            sent_intents = (self.intents)();
                            let d = json!({"token": format!("QQBot {}", token.value), "intents": sent_intents,
                                           "shard": self.shard, "properties": {"$os": std::env::consts::OS,
                                           "$browser": "rhaibot", "$device": "rhaibot"}});
                            sent_token = Some(token);
                            if send(&mut socket, json!({"op": 2, "d": d})).await.is_err() {
                                return (State::Disconnected { session: None }, Some(Action::Reconnect));
                            }
                        }
                        Action::Resume(session) => {
                            let token = match self.tokens.get().await {
                                Ok(t) => t,
                                Err(e) => {
                                    warn!(bot = %self.bot.name, "gateway: {e}; reconnecting");
                                    let _ = socket.close(None).await;
                                    return (State::Disconnected { session: Some(session) }, Some(Action::Reconnect));
                                }
                            };
                            let d = json!({"token": format!("QQBot {}", token.value), "session_id": session.id, "seq": session.seq});
                            sent_token = Some(token);
                            if send(&mut socket, json!({"op": 6, "d": d})).await.is_err() {
                                return (State::Disconnected { session: Some(session) }, Some(Action::Reconnect));
                            }
                        }
                        Action::Heartbeat(seq) => {
                            if send(&mut socket, json!({"op": 1, "d": seq})).await.is_err() {
                                let (next, _) = state.step(Input::Closed(None));
                                return (next, Some(Action::Reconnect));
                            }
                        }
                        Action::WarnIdentifyRefused => crate::warn_limited!(warnings, bot = %self.bot.name,
                            intents = sent_intents,
                            "gateway: the platform refused the Identify (op 9); if this repeats, the bot may not \
                             have some of the intents asked for: set `intents` in its [[bot]] to the ones it has"),
                        Action::StartHeartbeat(every) => {
                            let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            heartbeat = Some(interval);
                        }
                        ended @ (Action::Reconnect
                        | Action::RenewTokenAndReconnect
                        | Action::ReconnectLater
                        | Action::Stop(_)) => {
                            if matches!(ended, Action::RenewTokenAndReconnect)
                                && let Some(token) = &sent_token
                            {
                                self.tokens.invalidate(token);
                            }
                            let _ = socket.close(None).await;
                            return (state, Some(ended));
                        }
                    }
                }
            }
            // A new session is kept at once, so a crash right after READY still resumes; the
            // back-off starts over only once a session runs (a server that closes right after
            // Hello must not make us identify as fast as it can).
            if !kept && matches!(state, State::Ready { .. }) {
                self.save(&state);
                retry.reset();
                kept = true;
            }
            let handshake = async {
                if kept {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep_until(handshake_deadline).await;
            };
            let beat = async {
                match heartbeat.as_mut() {
                    Some(interval) => interval.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut cancelled => {
                    let _ = socket.close(None).await;
                    return (state, None);
                }
                _ = beat => {
                    pending.push(Input::HeartbeatDue);
                    // The sequence number is kept as it goes, so a crash resumes near where it was.
                    if matches!(state, State::Ready { .. }) {
                        self.save(&state);
                    }
                }
                _ = handshake => {
                    warn!(bot = %self.bot.name, "gateway: no session within {} s; reconnecting", HANDSHAKE_TIMEOUT.as_secs());
                    let _ = socket.close(None).await;
                    let (next, _) = state.step(Input::Closed(None));
                    return (next, Some(Action::Reconnect));
                }
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > self.max_frame_bytes {
                            crate::warn_limited!(warnings, bot = %self.bot.name, size = text.len(), "oversized gateway frame skipped");
                            continue;
                        }
                        // Only the fields dispatch and decoding read are built; an event keeps the
                        // rest as text.
                        match read_head(text.as_bytes()) {
                            Ok(head) => pending.extend(self.read(head.unwrap_or_default(), text.as_bytes(), via, sink, &mut warnings)),
                            Err(e) => crate::warn_limited!(warnings, bot = %self.bot.name, "malformed gateway frame skipped: {e}"),
                        }
                    }
                    Some(Ok(Message::Close(frame))) => pending.push(Input::Closed(frame.map(|f| u16::from(f.code)))),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        warn!(bot = %self.bot.name, "gateway connection lost: {}", crate::logsafe::short(&e.to_string()));
                        pending.push(Input::Closed(None));
                    }
                    None => pending.push(Input::Closed(None)),
                },
            }
        }
    }

    /// What a payload means for the machine (read from its [`Head`]); dispatches are also handed
    /// on, with the whole payload (`text`).
    fn read(&self, head: Head<'_>, text: &[u8], via: u64, sink: &EventSink, warnings: &mut RateLimit) -> Option<Input> {
        let op = head.op.as_ref().and_then(Field::as_i64);
        let seq = head.s.as_ref().and_then(Field::as_u64);
        match op {
            Some(10) => {
                let ms = head.d.heartbeat_interval.as_ref().and_then(Field::as_u64).unwrap_or(41_250);
                Some(Input::Hello(Duration::from_millis(ms.max(1))))
            }
            Some(11) => Some(Input::HeartbeatAck),
            Some(7) => Some(Input::Reconnect),
            Some(9) => Some(Input::InvalidSession),
            Some(0) => {
                let input = match head.t.as_ref().and_then(Field::as_str).unwrap_or_default() {
                    "READY" => Input::ReadyEvent {
                        session_id: head.d.session_id.as_ref().and_then(Field::as_str).unwrap_or_default().to_owned(),
                        seq: seq.unwrap_or(0),
                    },
                    "RESUMED" => Input::Resumed,
                    _ => Input::Dispatch(seq.unwrap_or(0)),
                };
                match decode(&self.bot, head, Raw::text(text), via) {
                    Ok(ev) => sink(ev),
                    Err(e) => crate::warn_limited!(warnings, bot = %self.bot.name, "{e}; skipped"),
                }
                Some(input)
            }
            _ => None,
        }
    }

    fn load_session(&self) -> Option<Session> {
        let text = std::fs::read_to_string(self.session_file.as_ref()?).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        Some(Session { id: v.get("session_id")?.as_str()?.to_owned(), seq: v.get("seq")?.as_u64()? })
    }

    fn save(&self, state: &State) {
        let Some(path) = &self.session_file else { return };
        let session = match state {
            State::Disconnected { session: Some(s) } | State::AwaitingHello { session: Some(s) } => Some(s),
            State::Resuming { session, .. } | State::Ready { session, .. } => Some(session),
            _ => None,
        };
        let text = session.map_or_else(|| "{}".to_owned(), |s| json!({"session_id": s.id, "seq": s.seq}).to_string());
        // Written whole, then renamed: a crash never leaves half a file.
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
            warn!(bot = %self.bot.name, path = %path.display(), "cannot keep the gateway session: {e}");
        }
    }
}

async fn send(socket: &mut Socket, payload: Value) -> Result<(), ()> {
    socket.send(Message::Text(payload.to_string().into())).await.map_err(|_| ())
}
