//! Protocol ends. Each adapter turns wire traffic into [`Event`]s and executes [`Call`]s
//! (action name + JSON params -> JSON result or a typed [`CallError`]).
//!
//! Adapters know nothing of Rhai: they hand events to an [`EventSink`] and receive calls
//! through a [`Bot`] handle.

pub mod backoff;
pub mod console;
pub mod listener;
pub mod onebot11;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{BotConfig, BotKind, OneBotConfig, OneBotTransport};
use crate::event::{Event, Protocol};

/// Where adapters deliver events. Called on the adapter's own task; must not block.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A failed protocol call, with everything a script or a log line needs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other end answered with an error.
    #[error("{action} failed: retcode {retcode}: {message}")]
    Failed {
        /// The action called.
        action: String,
        /// The protocol's error code (OneBot `retcode`).
        retcode: i64,
        /// The protocol's message.
        message: String,
    },
    /// No answer within the call timeout.
    #[error("{action} timed out after {}ms", timeout.as_millis())]
    Timeout {
        /// The action called.
        action: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The connection is down or was lost while waiting.
    #[error("{action}: bot `{bot}` is not connected")]
    NotConnected {
        /// The action called.
        action: String,
        /// The bot's name.
        bot: String,
    },
    /// The other end answered with an HTTP error status.
    #[error("{action}: HTTP {status}: {message}")]
    Http {
        /// The action called.
        action: String,
        /// The HTTP status.
        status: u16,
        /// What it means.
        message: String,
    },
    /// A reply to an event that names no chat to answer in (a malformed or unusual event: the
    /// script did nothing wrong, so this does not count towards its quarantine).
    #[error("reply: event `{event}` has no group or user to reply to")]
    NoTarget {
        /// The event's name.
        event: String,
    },
    /// The call was rejected before anything was sent.
    #[error("{action}: {reason}")]
    Invalid {
        /// The action called.
        action: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl CallError {
    /// The protocol error code, or a negative code for local failures.
    pub fn code(&self) -> i64 {
        match self {
            CallError::Failed { retcode, .. } => *retcode,
            CallError::Timeout { .. } => -1,
            CallError::NotConnected { .. } => -2,
            CallError::Invalid { .. } => -3,
            CallError::NoTarget { .. } => -4,
            CallError::Http { status, .. } => i64::from(*status),
        }
    }

    /// The action this error belongs to.
    pub fn action(&self) -> &str {
        match self {
            CallError::Failed { action, .. }
            | CallError::Timeout { action, .. }
            | CallError::NotConnected { action, .. }
            | CallError::Http { action, .. }
            | CallError::Invalid { action, .. } => action,
            CallError::NoTarget { .. } => "reply",
        }
    }
}

/// One API call on its way to a connection task.
#[derive(Debug)]
pub struct Call {
    /// Action name, e.g. `send_group_msg`.
    pub action: String,
    /// Parameters as a JSON object.
    pub params: Value,
    /// Where the connection sends the result.
    pub reply: Reply,
    /// When the caller gives up: a call still unsent then is answered with a timeout and never
    /// sent (a reconnect must not deliver calls the script already saw fail).
    pub deadline: Instant,
}

impl Call {
    /// Whether nobody wants this call sent any more.
    pub fn given_up(&self, now: Instant) -> bool {
        now >= self.deadline || self.reply.is_abandoned()
    }
}

/// A process-unique id for a new connection (a socket, a stream, a listener), so events can say
/// which connection brought them.
pub fn connection_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What receives a call's result: a caller waiting for it, or a function run when it comes
/// (on the connection task, so it must be quick: it logs a failure, for example).
pub enum Reply {
    /// A caller waits.
    Wait(oneshot::Sender<Result<Value, CallError>>),
    /// Nobody waits; the function gets the result.
    Detached(Detached),
}

/// The function a detached call reports to. If the call is dropped unanswered (it never
/// reached a connection), the function still hears of it: nothing fails silently.
pub struct Detached(Option<Done>);

/// The function a detached call reports its result to.
type Done = Box<dyn FnOnce(Result<Value, CallError>) + Send>;

impl Detached {
    /// Wraps `done`.
    pub fn new(done: impl FnOnce(Result<Value, CallError>) + Send + 'static) -> Detached {
        Detached(Some(Box::new(done)))
    }

    fn send(mut self, result: Result<Value, CallError>) {
        if let Some(done) = self.0.take() {
            done(result);
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done(Err(CallError::Invalid { action: "reply".into(), reason: "dropped before it was sent".into() }));
        }
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reply::Wait(_) => "Reply::Wait",
            Reply::Detached(_) => "Reply::Detached",
        })
    }
}

impl Reply {
    /// Delivers the result.
    pub fn send(self, result: Result<Value, CallError>) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(result);
            }
            Reply::Detached(done) => done.send(result),
        }
    }

    /// A waiting caller that gave up (timed out): its result has nowhere to go.
    pub fn is_abandoned(&self) -> bool {
        matches!(self, Reply::Wait(tx) if tx.is_closed())
    }
}

/// A handle to one configured bot: its identity and the way to call its API.
#[derive(Debug)]
pub struct Bot {
    /// Configured name.
    pub name: String,
    /// Protocol family.
    pub protocol: Protocol,
    /// Timeout applied to every call.
    pub call_timeout: Duration,
    /// The account's own id as the protocol reports it (0 until known).
    pub self_id: std::sync::atomic::AtomicI64,
    /// The address a receiving transport listens on, once bound.
    pub listening: std::sync::Mutex<Option<std::net::SocketAddr>>,
    link: Link,
}

/// Picks the connection a bot's calls go to when that changes while running (a listener that
/// several accounts connect to).
pub trait Route: Send + Sync + std::fmt::Debug {
    /// The channel of the connection that takes calls now, or why there is none.
    fn sender(&self) -> Result<mpsc::Sender<Call>, String>;

    /// The per-account handles behind this route, for `bot(self_id)`.
    fn accounts(&self) -> Vec<Arc<Bot>> {
        Vec::new()
    }
}

#[derive(Debug)]
pub(crate) enum Link {
    /// Calls are answered in-process by the console.
    Console(console::Output),
    /// Calls go to a connection task.
    Channel(mpsc::Sender<Call>),
    /// Calls go to whichever connection the route picks at the time of the call.
    Routed(Arc<dyn Route>),
    /// Calls are HTTP requests.
    Http(onebot11::http::Api),
    /// No backend (tests of pure logic).
    Detached,
}

impl Bot {
    /// A bot with no backend; every call fails with `NotConnected`.
    pub fn detached(name: &str, protocol: Protocol) -> Arc<Bot> {
        Arc::new(Bot {
            name: name.into(),
            protocol,
            call_timeout: Duration::from_secs(1),
            self_id: Default::default(),
            listening: Default::default(),
            link: Link::Detached,
        })
    }

    /// A handle like `template` (name, protocol, call timeout) whose calls go where `route`
    /// says: one account of a listener that several accounts connect to.
    pub fn routed(template: &Bot, route: Arc<dyn Route>) -> Bot {
        Bot {
            name: template.name.clone(),
            protocol: template.protocol,
            call_timeout: template.call_timeout,
            self_id: Default::default(),
            listening: Default::default(),
            link: Link::Routed(route),
        }
    }

    /// The per-account handles of a bot that serves several accounts (none otherwise).
    pub fn accounts(&self) -> Vec<Arc<Bot>> {
        match &self.link {
            Link::Routed(route) => route.accounts(),
            _ => Vec::new(),
        }
    }

    /// The connection channel calls go to now, for socket links.
    fn channel(&self, action: &str) -> Result<mpsc::Sender<Call>, CallError> {
        match &self.link {
            Link::Channel(tx) => Ok(tx.clone()),
            Link::Routed(route) => route.sender().map_err(|reason| CallError::NotConnected {
                action: action.to_owned(),
                bot: format!("{} ({reason})", self.name),
            }),
            _ => Err(self.not_connected(action)),
        }
    }

    /// Whether this bot accepts OneBot 11 actions (`onebot::` functions).
    pub fn speaks_onebot(&self) -> bool {
        matches!(self.protocol, Protocol::OneBot11 | Protocol::Console)
    }

    /// Calls an action and waits for its result, at most `call_timeout`.
    pub async fn call(&self, action: &str, params: Value) -> Result<Value, CallError> {
        self.call_within(action, params, self.call_timeout).await
    }

    /// Calls an action and waits for its result, at most `timeout`.
    pub async fn call_within(&self, action: &str, params: Value, timeout: Duration) -> Result<Value, CallError> {
        let deadline = Instant::now() + timeout;
        let exchange = async {
            match &self.link {
                Link::Console(out) => out.call(action, &params),
                Link::Http(api) => api.call(action, params).await,
                Link::Channel(_) | Link::Routed(_) => {
                    let tx = self.channel(action)?;
                    let (reply, rx) = oneshot::channel();
                    let call = Call { action: action.to_owned(), params, reply: Reply::Wait(reply), deadline };
                    tx.send(call).await.map_err(|_| self.not_connected(action))?;
                    rx.await.map_err(|_| self.not_connected(action))?
                }
                Link::Detached => Err(self.not_connected(action)),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout { action: action.to_owned(), timeout }),
        }
    }

    /// Sends a call without waiting for its result, from a worker thread (not the reactor);
    /// `done` gets the result when it comes (connection calls time out after `call_timeout`).
    pub fn send(self: &Arc<Self>, rt: &tokio::runtime::Handle, action: &str, params: Value, done: Reply) {
        match &self.link {
            Link::Console(out) => done.send(out.call(action, &params)),
            Link::Channel(_) | Link::Routed(_) => {
                let tx = match self.channel(action) {
                    Ok(tx) => tx,
                    Err(e) => return done.send(Err(e)),
                };
                let deadline = Instant::now() + self.call_timeout;
                let call = Call { action: action.to_owned(), params, reply: done, deadline };
                // A full channel means the connection is busy: wait for room, as a waiting call would.
                let refused = match tx.try_send(call) {
                    Ok(()) => None,
                    Err(mpsc::error::TrySendError::Full(call)) => tx.blocking_send(call).err().map(|e| e.0),
                    Err(mpsc::error::TrySendError::Closed(call)) => Some(call),
                };
                if let Some(call) = refused {
                    call.reply.send(Err(self.not_connected(action)));
                }
            }
            Link::Http(_) | Link::Detached => {
                let (bot, action) = (self.clone(), action.to_owned());
                rt.spawn(async move { done.send(bot.call(&action, params).await) });
            }
        }
    }

    /// The call that answers `ev` with `message`, in this bot's protocol.
    pub fn reply_call(&self, ev: &Event, message: Value) -> Result<(&'static str, Value), CallError> {
        match self.protocol {
            Protocol::OneBot11 | Protocol::Console => onebot11::reply_call(ev, message),
        }
    }

    fn not_connected(&self, action: &str) -> CallError {
        CallError::NotConnected { action: action.to_owned(), bot: self.name.clone() }
    }
}

/// A configured bot whose connection has not started yet: scripts can be loaded against its
/// handle first, so no event arrives before there is a handler for it.
#[derive(Debug)]
pub struct Opened {
    /// The handle scripts and replies use.
    pub bot: Arc<Bot>,
    starter: Starter,
}

#[derive(Debug)]
enum Starter {
    Console,
    OneBot(Box<OneBotConfig>, onebot11::Wiring),
}

/// Creates the handle of a configured bot.
pub fn open(cfg: &BotConfig, call_timeout: Duration) -> Opened {
    let (protocol, link, starter) = match &cfg.kind {
        BotKind::Console => (Protocol::Console, console::link(), Starter::Console),
        BotKind::OneBot(ob) => match &ob.transport {
            OneBotTransport::Http { url, .. } => {
                let api = onebot11::http::Api::new(url, &ob.access_token);
                (Protocol::OneBot11, Link::Http(api), Starter::OneBot(Box::new(ob.clone()), onebot11::Wiring::Http))
            }
            OneBotTransport::Ws { .. } => {
                let (tx, rx) = mpsc::channel(1024);
                (
                    Protocol::OneBot11,
                    Link::Channel(tx),
                    Starter::OneBot(Box::new(ob.clone()), onebot11::Wiring::Channel(rx)),
                )
            }
            OneBotTransport::ReverseWs { .. } => {
                let accounts = Arc::new(onebot11::reverse::Accounts::default());
                let link = Link::Routed(accounts.clone());
                (Protocol::OneBot11, link, Starter::OneBot(Box::new(ob.clone()), onebot11::Wiring::Accounts(accounts)))
            }
        },
    };
    let bot = Arc::new(Bot {
        name: cfg.name.clone(),
        protocol,
        call_timeout,
        self_id: Default::default(),
        listening: Default::default(),
        link,
    });
    Opened { bot, starter }
}

impl Opened {
    /// Starts delivering events to `sink`. Connections close on `shutdown`; the console cancels
    /// `input_done` when its input ends. Fails when a listener cannot bind.
    pub fn start(
        self,
        sink: EventSink,
        shutdown: CancellationToken,
        input_done: CancellationToken,
        tasks: &TaskTracker,
    ) -> std::io::Result<()> {
        match self.starter {
            Starter::Console => console::spawn_reader(self.bot, sink, input_done),
            Starter::OneBot(cfg, calls) => onebot11::start(self.bot, *cfg, calls, sink, shutdown, tasks)?,
        }
        Ok(())
    }
}
