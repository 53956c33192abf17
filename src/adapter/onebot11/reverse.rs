//! OneBot 11 reverse WebSocket: the implementation connects to the runtime. It says what the
//! socket is for in `X-Client-Role` (`Universal`, `API` or `Event`; Universal when absent) and
//! who it is in `X-Self-ID`. With an access token configured, `Authorization: Bearer <token>`
//! (or `?access_token=`) must match: a missing token gets 401, a wrong one 403, before the
//! upgrade. Without one, anything is accepted (LLBot and NapCat then send a bare `Bearer `).
//!
//! Several accounts may connect to one listener. Each account (by `X-Self-ID`; a connection
//! without one is an account of its own) gets its own bot handle: its events carry it, so calls
//! made while handling them go back to the same account, and `bot(self_id)` picks it. An
//! account's `API` and `Event` connections pair up; a newer connection of the same role
//! replaces the older one. The configured bot's handle reaches the one connected account, and
//! says so when several are connected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::OneBotConfig;
use super::session::{self, Calls, End, Incoming};
use crate::adapter::EventSink;
use crate::bot::{Bot, BotId, Outbox, Route, connection_id};

/// The accounts connected to one reverse WebSocket listener, and where their calls go.
#[derive(Debug, Default)]
pub struct Accounts {
    by_key: Mutex<HashMap<Key, Account>>,
    /// The configured bot, whose name and settings each account's handle copies.
    template: std::sync::OnceLock<std::sync::Weak<Bot>>,
}

/// Who an account is: its `X-Self-ID`, or for a connection without one, the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    SelfId(i64),
    Connection(u64),
}

#[derive(Debug)]
struct Account {
    handle: Arc<Bot>,
    route: Arc<AccountRoute>,
    /// Live connections by role, newest per role: id, close token, where its calls go.
    roles: HashMap<Role, (u64, CancellationToken, Arc<Outbox>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Universal,
    Api,
    Event,
}

impl Role {
    fn parse(header: Option<&str>) -> Role {
        match header.map(str::to_ascii_lowercase).as_deref() {
            Some("api") => Role::Api,
            Some("event") => Role::Event,
            _ => Role::Universal,
        }
    }

    fn takes_calls(self) -> bool {
        self != Role::Event
    }
}

/// Where one account's calls go: the newest connection of it that takes calls.
#[derive(Debug, Default)]
struct AccountRoute(Mutex<Option<(u64, Arc<Outbox>)>>);

impl Route for AccountRoute {
    fn sender(&self) -> Result<Arc<Outbox>, String> {
        match &*self.0.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((_, tx)) => Ok(tx.clone()),
            None => Err("no API connection of this account is open".into()),
        }
    }
}

impl Route for Accounts {
    fn sender(&self) -> Result<Arc<Outbox>, String> {
        let accounts = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        let mut open = accounts.values().filter_map(|a| a.route.sender().ok());
        match (open.next(), open.next()) {
            (Some(tx), None) => Ok(tx),
            (None, _) => Err("no implementation is connected".into()),
            (Some(_), Some(_)) => Err(format!(
                "{} accounts are connected; outside an event callback pick one with bot(self_id)",
                accounts.len()
            )),
        }
    }

    fn accounts(&self) -> Vec<Arc<Bot>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner).values().map(|a| a.handle.clone()).collect()
    }
}

impl Accounts {
    /// Remembers the configured bot; accounts copy its name and call timeout.
    pub fn set_template(&self, bot: &Arc<Bot>) {
        let _ = self.template.set(Arc::downgrade(bot));
    }

    /// Registers a new connection of `key` in `role`: returns the account's handle and the
    /// connection's close token. A connection of the same role it replaces is closed.
    fn join(
        &self,
        key: Key,
        role: Role,
        conn: u64,
        calls: Arc<Outbox>,
        parent: &CancellationToken,
    ) -> Option<(Arc<Bot>, CancellationToken)> {
        let template = self.template.get().and_then(std::sync::Weak::upgrade)?;
        let mut accounts = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        let account = accounts.entry(key).or_insert_with(|| {
            let route = Arc::new(AccountRoute::default());
            let handle = Arc::new(Bot::routed(&template, route.clone()));
            if let Key::SelfId(id) = key {
                handle.set_self_id(BotId::Number(id));
            }
            Account { handle, route, roles: HashMap::new() }
        });
        let close = parent.child_token();
        if let Some((old, old_close, _)) = account.roles.insert(role, (conn, close.clone(), calls.clone())) {
            warn!(bot = %template.name, ?role, ?key, "a newer connection of this account replaces connection {old}");
            old_close.cancel();
        }
        if role.takes_calls() {
            *account.route.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((conn, calls));
        }
        Some((account.handle.clone(), close))
    }

    /// Forgets a closed connection; the account goes with its last connection.
    fn leave(&self, key: Key, role: Role, conn: u64) {
        let mut accounts = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(account) = accounts.get_mut(&key) else { return };
        if account.roles.get(&role).is_some_and(|(id, _, _)| *id == conn) {
            account.roles.remove(&role);
        }
        let mut route = account.route.0.lock().unwrap_or_else(PoisonError::into_inner);
        if route.as_ref().is_some_and(|(id, _)| *id == conn) {
            // Calls go to the account's other connection that takes them, if one is left.
            *route = account
                .roles
                .iter()
                .find(|(role, _)| role.takes_calls())
                .map(|(_, (id, _, calls))| (*id, calls.clone()));
        }
        drop(route);
        if account.roles.is_empty() {
            accounts.remove(&key);
        }
    }
}

#[derive(Clone)]
struct Server {
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    self_id: Option<i64>,
    sink: EventSink,
    shutdown: CancellationToken,
    accounts: Arc<Accounts>,
}

/// Listens on `listen` and serves every account that connects.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    bot: Arc<Bot>,
    cfg: OneBotConfig,
    listen: &str,
    self_id: Option<i64>,
    accounts: Arc<Accounts>,
    sink: EventSink,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> std::io::Result<()> {
    let listener = crate::adapter::listener::bind(&bot, listen)?;
    accounts.set_template(&bot);
    let guard = cfg.listener;
    let name = bot.name.clone();
    let server = Server { bot, cfg, self_id, sink, shutdown: shutdown.clone(), accounts };
    let app = axum::Router::new()
        .route("/", axum::routing::any(upgrade))
        .route("/{*path}", axum::routing::any(upgrade))
        .with_state(server);
    tasks.spawn(crate::adapter::listener::serve(name, listener, app, guard, None, shutdown));
    Ok(())
}

async fn upgrade(
    State(server): State<Server>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
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
    let role = Role::parse(header("x-client-role"));
    let backstop = server.cfg.max_frame_bytes.saturating_mul(4).max(64 << 20);
    ws.max_message_size(backstop).on_upgrade(move |socket| connection(server, socket, role, self_id))
}

async fn connection(server: Server, socket: WebSocket, role: Role, self_id: Option<i64>) {
    let conn = connection_id();
    let key = self_id.map_or(Key::Connection(conn), Key::SelfId);
    let (outbox, mut call_rx) = Outbox::new(super::prepare_params);
    let Some((account, close)) = server.accounts.join(key, role, conn, outbox.clone(), &server.shutdown) else {
        return;
    };
    info!(bot = %account.name, ?role, ?self_id, conn, "reverse WebSocket connected");
    let (tx, rx) = socket.split();
    let tx = Box::pin(tx.with(|text: String| async move { Ok::<_, axum::Error>(Message::Text(text.into())) }));
    let rx = rx.map(|m| match m {
        Ok(Message::Text(t)) => Incoming::Data(axum::body::Bytes::from(t.as_str().to_owned())),
        Ok(Message::Binary(b)) => Incoming::Data(b),
        Ok(Message::Close(c)) => Incoming::Closed(format!("close frame {c:?}")),
        Ok(_) => Incoming::Alive,
        Err(e) => Incoming::Closed(e.to_string()),
    });
    let calls = role.takes_calls().then_some(Calls { rx: &mut call_rx, outbox: &outbox });
    let end = session::run(&account, server.cfg.max_frame_bytes, rx, tx, calls, &server.sink, &close, || {}).await;
    server.accounts.leave(key, role, conn);
    // Calls routed here that the session never took fail now rather than at their timeout.
    call_rx.close();
    while let Ok(call) = call_rx.try_recv() {
        outbox.taken();
        session::fail(call.reply, &call.action, &account);
    }
    if let End::Lost(why) = end {
        warn!(bot = %account.name, ?role, conn, "reverse WebSocket closed: {why}");
    }
}

/// Compares secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
