//! What every protocol shares: the [`Bot`] handle scripts and replies use, a [`Call`] on its
//! way to a connection, where its result goes ([`Reply`]), and [`CallError`] with the
//! protocol's code, message and trace id.
//!
//! This module knows no protocol and no event: adapters build bots with a [`Link`] (a
//! connection's channel, a [`Route`] picked per call, an in-process or request-based
//! transport), and the bindings call them.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

mod outbox;
#[cfg(test)]
pub use outbox::json_text;
pub use outbox::{DirectWrite, Outbox};

/// Which protocol family a bot speaks: its name (`ev.protocol`, logs) and the script
/// namespace whose actions it accepts (`onebot` for OneBot 11 and the console).
#[derive(Debug, PartialEq, Eq)]
pub struct Protocol {
    /// `console`, `onebot11`, ...
    pub name: &'static str,
    /// The namespace of the actions it accepts, e.g. `onebot`.
    pub namespace: &'static str,
}

/// A bot's own account id, shaped as its protocol gives it: a number (OneBot, Milky) or a
/// string (the official platform's openids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotId {
    /// A QQ number.
    Number(i64),
    /// A string id.
    Text(Arc<str>),
}

impl std::fmt::Display for BotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BotId::Number(n) => write!(f, "{n}"),
            BotId::Text(s) => f.write_str(s),
        }
    }
}

/// A failed protocol call, with everything a script or a log line needs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other end answered with an error.
    #[error("{action} failed: retcode {code}: {message}")]
    Failed {
        /// The action called.
        action: String,
        /// The protocol's error code (OneBot `retcode`).
        code: i64,
        /// The protocol's message.
        message: String,
        /// The protocol's trace id of the request, when it gives one.
        trace_id: Option<String>,
        /// The whole answer, for protocols whose functions return failures as values (the
        /// official platform's `#{data, http_code, trace_id, result: false}`, as qg_botsdk does):
        /// a script calling the namespace gets it, replies and verbs get the error.
        answer: Option<Box<Value>>,
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
            CallError::Failed { code, .. } => *code,
            CallError::Timeout { .. } => -1,
            CallError::NotConnected { .. } => -2,
            CallError::Invalid { .. } => -3,
            CallError::NoTarget { .. } => -4,
            CallError::Http { status, .. } => i64::from(*status),
        }
    }

    /// The protocol's trace id of the failed request, when it gave one.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            CallError::Failed { trace_id, .. } => trace_id.as_deref(),
            _ => None,
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
    /// Parameters as the connection writes them: JSON text, written by the thread that made
    /// the call (see [`Outbox::call`]).
    pub params: Box<serde_json::value::RawValue>,
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
    pub protocol: &'static Protocol,
    /// Timeout applied to every call.
    pub call_timeout: Duration,
    /// The account's own id as the protocol reports it, once known.
    self_id: RwLock<Option<BotId>>,
    /// The address a receiving transport listens on, once bound.
    pub listening: Mutex<Option<std::net::SocketAddr>>,
    link: Link,
    /// The users (account ids as text) this bot obeys whatever their role (config `superusers`).
    superusers: std::sync::OnceLock<Vec<String>>,
    /// Detached request-based calls waiting their turn, by order key (a chat).
    ordered: Mutex<foldhash::HashMap<u64, std::collections::VecDeque<Pending>>>,
}

/// A detached call waiting behind earlier ones of its chat.
#[derive(Debug)]
struct Pending {
    action: String,
    params: Params,
    done: Reply,
}

/// Detached calls one chat may have waiting on a request-based link before more are refused.
const MAX_PENDING_PER_CHAT: usize = 1024;

/// `call`'s result, or a timeout after `timeout`.
async fn within(
    action: &str,
    timeout: Duration,
    call: impl Future<Output = Result<Value, CallError>>,
) -> Result<Value, CallError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(CallError::Timeout { action: action.to_owned(), timeout }),
    }
}

/// The refusal of a call whose chat has [`MAX_PENDING_PER_CHAT`] calls waiting.
fn chat_full(action: String) -> CallError {
    CallError::Invalid { action, reason: format!("{MAX_PENDING_PER_CHAT} calls of this chat are waiting already") }
}

/// Picks the connection a bot's calls go to when that changes while running (a listener that
/// several accounts connect to).
pub trait Route: Send + Sync + std::fmt::Debug {
    /// The outbox of the connection that takes calls now, or why there is none.
    fn sender(&self) -> Result<Arc<Outbox>, String>;

    /// The per-account handles behind this route, for `bot(self_id)`.
    fn accounts(&self) -> Vec<Arc<Bot>> {
        Vec::new()
    }
}

/// Answers calls in-process, on the caller's thread (the console).
pub trait InProcess: Send + Sync + std::fmt::Debug {
    /// Executes `action` and returns its result.
    fn call(&self, action: &str, params: &Value) -> Result<Value, CallError>;
}

/// The future of a request-based call.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, CallError>> + Send + 'a>>;

/// Answers each call with a request of its own (an HTTP API).
pub trait Requests: Send + Sync + std::fmt::Debug {
    /// Sends `action` and waits for its answer (the caller applies the timeout). `answered` is
    /// false for a detached call: nobody reads what it answers but its failure, so the link may
    /// answer its success with `Null`.
    fn call<'a>(&'a self, action: &'a str, params: Params, answered: bool) -> CallFuture<'a>;

    /// Turns a detached call's parameters into its request body on the thread that makes the
    /// call (a script's worker), so the reactor only writes it, and the tree is freed where it
    /// was built. The default leaves them as given, for the link to turn into a request itself.
    fn encode(&self, _action: &str, params: Value) -> Result<Params, CallError> {
        Ok(Params::Given(params))
    }
}

/// A call's parameters on a request-based link.
#[derive(Debug)]
pub enum Params {
    /// As the caller gave them.
    Given(Value),
    /// The request body of a detached call, made by [`Requests::encode`].
    Encoded(Vec<u8>),
}

/// How a bot's calls reach the other end.
#[derive(Debug)]
pub enum Link {
    /// Calls are answered in-process.
    InProcess(Arc<dyn InProcess>),
    /// Calls go to a connection.
    Channel(Arc<Outbox>),
    /// Calls go to whichever connection the route picks at the time of the call.
    Routed(Arc<dyn Route>),
    /// Calls are requests.
    Requests(Arc<dyn Requests>),
    /// No backend (tests of pure logic).
    Detached,
}

impl Bot {
    /// A bot called `name` speaking `protocol` whose calls go over `link`.
    pub fn new(name: &str, protocol: &'static Protocol, call_timeout: Duration, link: Link) -> Bot {
        Bot {
            name: name.to_owned(),
            protocol,
            call_timeout,
            self_id: RwLock::new(None),
            listening: Mutex::new(None),
            link,
            superusers: std::sync::OnceLock::new(),
            ordered: Mutex::default(),
        }
    }

    /// A bot with no backend; every call fails with `NotConnected`.
    pub fn detached(name: &str, protocol: &'static Protocol) -> Arc<Bot> {
        Arc::new(Bot::new(name, protocol, Duration::from_secs(1), Link::Detached))
    }

    /// The account's own id, once the protocol told it.
    pub fn self_id(&self) -> Option<BotId> {
        self.self_id.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records the account's own id (cheap when unchanged: every event repeats it).
    pub fn set_self_id(&self, id: BotId) {
        if self.self_id.read().unwrap_or_else(PoisonError::into_inner).as_ref() != Some(&id) {
            *self.self_id.write().unwrap_or_else(PoisonError::into_inner) = Some(id);
        }
    }

    /// Whether `key` names this bot: its configured name or its account id.
    pub fn is_named(&self, key: &str) -> bool {
        self.name == key || self.self_id().is_some_and(|id| id.to_string() == key)
    }

    /// Where a receiving transport listens, once bound.
    pub fn listening(&self) -> Option<std::net::SocketAddr> {
        *self.listening.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A handle like `template` (name, protocol, call timeout) whose calls go where `route`
    /// says: one account of a listener that several accounts connect to.
    pub fn routed(template: &Bot, route: Arc<dyn Route>) -> Bot {
        let bot = Bot::new(&template.name, template.protocol, template.call_timeout, Link::Routed(route));
        bot.set_superusers(template.superusers().to_vec());
        bot
    }

    /// Sets the users this bot obeys whatever their role (once, when it is configured).
    pub fn set_superusers(&self, users: Vec<String>) {
        let _ = self.superusers.set(users);
    }

    /// The users this bot obeys whatever their role.
    pub fn superusers(&self) -> &[String] {
        self.superusers.get().map_or(&[], Vec::as_slice)
    }

    /// The per-account handles of a bot that serves several accounts (none otherwise).
    pub fn accounts(&self) -> Vec<Arc<Bot>> {
        match &self.link {
            Link::Routed(route) => route.accounts(),
            _ => Vec::new(),
        }
    }

    /// The connection calls go to now, for socket links.
    fn channel(&self, action: &str) -> Result<Arc<Outbox>, CallError> {
        match &self.link {
            Link::Channel(tx) => Ok(tx.clone()),
            Link::Routed(route) => route.sender().map_err(|reason| CallError::NotConnected {
                action: action.to_owned(),
                bot: format!("{} ({reason})", self.name),
            }),
            _ => Err(self.not_connected(action)),
        }
    }

    /// Whether this bot accepts the actions of the script namespace `namespace`.
    pub fn speaks(&self, namespace: &str) -> bool {
        self.protocol.namespace == namespace
    }

    /// Calls an action and waits for its result, at most `call_timeout`.
    pub async fn call(&self, action: &str, params: Value) -> Result<Value, CallError> {
        self.call_within(action, params, self.call_timeout).await
    }

    /// Calls an action and waits for its result, at most `timeout`.
    pub async fn call_within(&self, action: &str, params: Value, timeout: Duration) -> Result<Value, CallError> {
        let exchange = async {
            match &self.link {
                Link::Requests(requests) => requests.call(action, Params::Given(params), true).await,
                Link::InProcess(local) => local.call(action, &params),
                Link::Channel(_) | Link::Routed(_) => {
                    let tx = self.channel(action)?;
                    let (reply, rx) = oneshot::channel();
                    let call = tx.call(action, params, Reply::Wait(reply), Instant::now() + timeout);
                    tx.send(call).await.map_err(|_| self.not_connected(action))?;
                    rx.await.map_err(|_| self.not_connected(action))?
                }
                Link::Detached => Err(self.not_connected(action)),
            }
        };
        within(action, timeout, exchange).await
    }

    /// Sends a call without waiting for its result, from a worker thread (not the reactor);
    /// `done` gets the result when it comes (connection calls time out after `call_timeout`).
    /// Calls with the same `order` key (a chat) reach the other end in the order they were sent:
    /// a connection keeps its order, and request-based links send one chat's calls one after
    /// another.
    pub fn send(self: &Arc<Self>, rt: &tokio::runtime::Handle, action: &str, params: Value, done: Reply, order: u64) {
        match &self.link {
            Link::InProcess(local) => done.send(local.call(action, &params)),
            Link::Channel(_) | Link::Routed(_) => {
                let tx = match self.channel(action) {
                    Ok(tx) => tx,
                    Err(e) => return done.send(Err(e)),
                };
                let deadline = Instant::now() + self.call_timeout;
                let call = tx.call(action, params, done, deadline);
                // Written at once when the socket takes it; a full channel means the connection
                // is busy: wait for room, as a waiting call would.
                if let Err(call) = tx.send_blocking(call) {
                    call.reply.send(Err(self.not_connected(action)));
                }
            }
            Link::Requests(_) | Link::Detached => {
                let params = match &self.link {
                    Link::Requests(requests) if matches!(done, Reply::Detached(_)) => {
                        match requests.encode(action, params) {
                            Ok(params) => params,
                            Err(e) => return done.send(Err(e)),
                        }
                    }
                    _ => Params::Given(params),
                };
                match self.enqueue(order, Pending { action: action.to_owned(), params, done }) {
                    Ok(Some(first)) => {
                        rt.spawn(self.clone().send_in_order(order, first));
                    }
                    Ok(None) => {}
                    Err(full) => full.done.send(Err(chat_full(full.action))),
                }
            }
        }
    }

    /// Calls `action` after the calls already queued for `order` (a chat) on a request-based
    /// link, and waits for its result at most `timeout`; on other links, a plain call (a
    /// connection keeps its order).
    pub async fn call_in_order(
        self: &Arc<Self>,
        order: u64,
        action: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        if !matches!(self.link, Link::Requests(_)) {
            return self.call_within(action, params, timeout).await;
        }
        let (tx, rx) = oneshot::channel();
        let pending = Pending { action: action.to_owned(), params: Params::Given(params), done: Reply::Wait(tx) };
        let start = self.enqueue(order, pending).map_err(|full| chat_full(full.action))?;
        let run = async {
            if let Some(first) = start {
                // This call starts the chat's sender; the calls queued behind it run on after it
                // returns, on their own task.
                tokio::spawn(self.clone().send_in_order(order, first));
            }
            rx.await.map_err(|_| self.not_connected(action))?
        };
        within(action, timeout, run).await
    }

    /// Puts `pending` behind the calls queued for `order` (a chat) on a request-based link.
    /// `Ok(Some(_))`: no sender runs for the chat; the caller starts one with the call given
    /// back. `Err(_)`: the chat's queue is full.
    fn enqueue(&self, order: u64, pending: Pending) -> Result<Option<Pending>, Pending> {
        let mut queues = self.ordered.lock().unwrap_or_else(PoisonError::into_inner);
        match queues.get_mut(&order) {
            Some(queue) if queue.len() >= MAX_PENDING_PER_CHAT => Err(pending),
            // A sender for this chat runs: it takes this call after the earlier ones.
            Some(queue) => {
                queue.push_back(pending);
                Ok(None)
            }
            None => {
                queues.insert(order, std::collections::VecDeque::new());
                Ok(Some(pending))
            }
        }
    }

    /// Sends `first`, then every call queued behind it for `order`, one at a time. If this task
    /// ends early (a panic, a runtime shutting down), the calls still queued are failed and the
    /// chat's queue is removed, so later calls of the chat start afresh.
    async fn send_in_order(self: Arc<Self>, order: u64, first: Pending) {
        /// Fails what is left if the task ends early: first the chat's queue goes (later calls
        /// start afresh), then the call in flight and the queued ones hear of it.
        struct Finish<'a> {
            bot: &'a Bot,
            order: u64,
            done: bool,
            current: Option<(String, Reply)>,
        }
        impl Drop for Finish<'_> {
            fn drop(&mut self) {
                if self.done {
                    return;
                }
                let left = self.bot.ordered.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.order);
                let fail = |action: String| CallError::NotConnected { action, bot: self.bot.name.clone() };
                if let Some((action, reply)) = self.current.take() {
                    reply.send(Err(fail(action)));
                }
                for p in left.into_iter().flatten() {
                    p.done.send(Err(fail(p.action)));
                }
            }
        }
        let mut finish = Finish { bot: &self, order, done: false, current: None };
        let mut next = Some(first);
        while let Some(Pending { action, params, done }) = next.take() {
            if !done.is_abandoned() {
                let answered = !matches!(done, Reply::Detached(_));
                finish.current = Some((action.clone(), done));
                // The link is called here, not through `call_within`: this task holds the future
                // across every call, and tokio copies a task's future whole when it spawns and
                // finishes it; `call_within`'s channel arms made it a kilobyte.
                let result = match &self.link {
                    Link::Requests(requests) => {
                        let call = requests.call(&action, params, answered);
                        within(&action, self.call_timeout, call).await
                    }
                    _ => Err(self.not_connected(&action)),
                };
                if let Some((_, done)) = finish.current.take() {
                    done.send(result);
                }
            }
            let mut queues = self.ordered.lock().unwrap_or_else(PoisonError::into_inner);
            next = queues.get_mut(&order).and_then(std::collections::VecDeque::pop_front);
            if next.is_none() {
                queues.remove(&order);
            }
        }
        finish.done = true;
    }

    fn not_connected(&self, action: &str) -> CallError {
        CallError::NotConnected { action: action.to_owned(), bot: self.name.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static P: Protocol = Protocol { name: "t", namespace: "t" };

    /// Records the order calls arrive in, and which nobody waits for; `slow` takes a while,
    /// `boom` panics.
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<String>>, Mutex<Vec<String>>);

    impl Requests for Recorder {
        fn call<'a>(&'a self, action: &'a str, params: Params, answered: bool) -> CallFuture<'a> {
            let action = match params {
                Params::Encoded(body) => format!("{action} {}", String::from_utf8_lossy(&body)),
                Params::Given(_) => action.to_owned(),
            };
            if !answered {
                self.1.lock().unwrap().push(action.clone());
            }
            Box::pin(async move {
                match action.as_str() {
                    "slow" => tokio::time::sleep(Duration::from_millis(50)).await,
                    "boom" => panic!("the link broke"),
                    _ => {}
                }
                self.0.lock().unwrap().push(action);
                Ok(Value::Null)
            })
        }

        /// Encodes `encoded` calls and refuses `unencodable` ones; the rest stay as given.
        fn encode(&self, action: &str, params: Value) -> Result<Params, CallError> {
            match action {
                "encoded" => Ok(Params::Encoded(params.to_string().into_bytes())),
                "unencodable" => Err(CallError::Invalid { action: action.to_owned(), reason: "no".to_owned() }),
                _ => Ok(Params::Given(params)),
            }
        }
    }

    fn bot() -> (Arc<Bot>, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        (Arc::new(Bot::new("b", &P, Duration::from_secs(5), Link::Requests(rec.clone()))), rec)
    }

    #[test]
    fn a_waiting_call_does_not_overtake_a_reply_of_its_chat() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (bot, rec) = bot();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Reply::Detached(Detached::new(move |_| {
            let _ = tx.send(());
        }));
        bot.send(rt.handle(), "slow", Value::Null, done, 7);
        rt.block_on(bot.call_in_order(7, "fast", Value::Null, Duration::from_secs(5))).unwrap();
        rx.recv().unwrap();
        assert_eq!(*rec.0.lock().unwrap(), ["slow", "fast"]);
    }

    #[test]
    fn a_detached_call_is_encoded_on_the_callers_thread_and_a_refusal_answers_it() {
        let (bot, rec) = bot();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for action in ["unencodable", "encoded", "given"] {
            let tx = tx.clone();
            let done =
                Reply::Detached(Detached::new(move |r| tx.send((action, r.map_err(|e| e.to_string()))).unwrap()));
            bot.send(rt.handle(), action, serde_json::json!({"a": 1}), done, 7);
        }
        // The refusal is answered at once, on the caller's thread, before the runtime runs.
        let (action, refused) = rx.try_recv().unwrap();
        assert_eq!(action, "unencodable");
        assert!(refused.unwrap_err().contains("no"));
        let answered: Vec<_> = rt.block_on(async {
            let mut answered = Vec::new();
            for _ in 0..2 {
                let next = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
                let (action, result) = next.expect("answered within 5 s").expect("the channel is open");
                answered.push((action, result.is_ok()));
            }
            answered
        });
        assert_eq!(answered, [("encoded", true), ("given", true)]);
        assert_eq!(*rec.0.lock().unwrap(), [r#"encoded {"a":1}"#, "given"], "only the encoded one was encoded");
        assert_eq!(*rec.1.lock().unwrap(), [r#"encoded {"a":1}"#, "given"], "neither is waited for");
    }

    #[test]
    fn a_chat_whose_sender_died_starts_afresh() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (bot, rec) = bot();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        bot.send(
            rt.handle(),
            "boom",
            Value::Null,
            Reply::Detached(Detached::new(move |r| tx.send(r.is_ok()).unwrap())),
            7,
        );
        assert!(!rx.recv().unwrap(), "the call that broke is failed, not lost");
        bot.send(
            rt.handle(),
            "after",
            Value::Null,
            Reply::Detached(Detached::new(move |r| tx2.send(r.is_ok()).unwrap())),
            7,
        );
        assert!(rx.recv().unwrap());
        assert_eq!(*rec.0.lock().unwrap(), ["after"]);
    }

    #[test]
    fn a_waiting_call_that_timed_out_behind_its_chat_is_not_sent_later() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (bot, rec) = bot();
        bot.send(rt.handle(), "slow", Value::Null, Reply::Detached(Detached::new(|_| {})), 7);
        let r = rt.block_on(bot.call_in_order(7, "late", Value::Null, Duration::from_millis(10)));
        assert!(matches!(r, Err(CallError::Timeout { .. })));
        // The chat's calls go in order: once a later one is through, `late` had its turn.
        rt.block_on(bot.call_in_order(7, "marker", Value::Null, Duration::from_secs(5))).unwrap();
        assert_eq!(*rec.0.lock().unwrap(), ["slow", "marker"], "the script saw `late` fail; it must not be sent");
    }
}
