//! Protocol ends. Each adapter turns wire traffic into [`Event`]s and executes
//! [`Call`](crate::bot::Call)s; each is described once by an [`Adapter`] (its protocol, action
//! table, event table, and how to reply to an event it produced).
//!
//! Adapters know nothing of Rhai: they hand events to an [`EventSink`] and receive calls
//! through a [`Bot`] handle. Adding a protocol is a folder here plus its line in [`ADAPTERS`]
//! and [`open`] (and its tagged shape in `config::RawBot`).

pub mod api_client;
pub mod backoff;
pub mod console;
pub mod head;
pub mod http_api;
pub mod listener;
pub mod milky;
pub mod onebot11;
pub mod qq;
pub mod slots;
pub mod sse;
pub mod summary;
pub mod ws_client;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::Action;
use crate::bot::{Bot, CallError, Protocol};
use crate::config::{BotConfig, BotKind};
use crate::event::Event;

/// Where adapters deliver events. Called on the adapter's own task; must not block.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// The call that answers an event with a message, in the event's protocol.
pub type ReplyCall = fn(&Event, Value) -> Result<(&'static str, Value), CallError>;

/// A cross-protocol verb: what a script asks for, whatever the protocol (`chat::`).
#[derive(Debug)]
pub enum Verb<'a> {
    /// Send `message` to a group.
    SendGroup {
        /// The group.
        group: Value,
        /// The message.
        message: Value,
    },
    /// Send `message` to a user.
    SendPrivate {
        /// The user.
        user: Value,
        /// The message.
        message: Value,
    },
    /// Recall message `id` of a group.
    RecallGroup {
        /// The group.
        group: Value,
        /// The message's id (OneBot `message_id`, Milky `message_seq`).
        id: Value,
    },
    /// Recall message `id` of a private chat.
    RecallPrivate {
        /// The user.
        user: Value,
        /// The message's id.
        id: Value,
    },
    /// Mute a member for `seconds` (0 lifts it).
    Mute {
        /// The group.
        group: Value,
        /// The member.
        user: Value,
        /// How long.
        seconds: i64,
    },
    /// Remove a member from a group.
    Kick {
        /// The group.
        group: Value,
        /// The member.
        user: Value,
    },
    /// A member's information.
    MemberInfo {
        /// The group.
        group: Value,
        /// The member.
        user: Value,
    },
    /// Approve or reject the friend or group request `event` is about.
    Answer {
        /// The request event.
        event: &'a Event,
        /// Approve (true) or reject.
        approve: bool,
    },
}

impl Verb<'_> {
    /// The verb's script name, for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Verb::SendGroup { .. } => "chat::send_group",
            Verb::SendPrivate { .. } => "chat::send_private",
            Verb::RecallGroup { .. } => "chat::recall_group",
            Verb::RecallPrivate { .. } => "chat::recall_private",
            Verb::Mute { .. } => "chat::mute",
            Verb::Kick { .. } => "chat::kick",
            Verb::MemberInfo { .. } => "chat::member_info",
            Verb::Answer { .. } => "chat::approve",
        }
    }

    /// The error for a verb a protocol cannot carry out.
    pub fn unsupported(&self, protocol: &Protocol, why: &str) -> CallError {
        CallError::Invalid { action: self.name().into(), reason: format!("not available on {}: {why}", protocol.name) }
    }
}

/// The action that carries out a verb, in one protocol.
pub type VerbCall = fn(&Verb<'_>) -> Result<(&'static str, Value), CallError>;

/// One protocol's adapter, described once.
#[derive(Debug)]
pub struct Adapter {
    /// The protocol its bots speak.
    pub protocol: &'static Protocol,
    /// The actions of its script namespace (empty when it borrows another's, as the console
    /// borrows OneBot's).
    pub actions: &'static [Action],
    /// The native event names it produces, each with a one-line description.
    pub events: &'static [(&'static str, &'static str)],
    /// How to reply to an event it produced.
    pub reply: ReplyCall,
    /// How it carries out the cross-protocol verbs.
    pub verb: VerbCall,
}

/// Every adapter: the one registration point of a protocol.
pub const ADAPTERS: &[&Adapter] =
    &[&console::ADAPTER, &console::MILKY_ADAPTER, &onebot11::ADAPTER, &milky::ADAPTER, &qq::ADAPTER];

/// The adapter of `protocol`.
pub fn adapter(protocol: &Protocol) -> Option<&'static Adapter> {
    ADAPTERS.iter().copied().find(|a| std::ptr::eq(a.protocol, protocol))
}

/// The call that answers `ev` with `message`, in the protocol of the bot that delivered it.
pub fn reply_call(ev: &Event, message: Value) -> Result<(&'static str, Value), CallError> {
    match adapter(ev.bot.protocol) {
        Some(a) => (a.reply)(ev, message),
        None => Err(CallError::Invalid {
            action: "reply".into(),
            reason: format!("no adapter for protocol {}", ev.bot.protocol.name),
        }),
    }
}

/// A JSON object of `members`, their values moved in: `json!` copies each value it is given
/// (it serializes it anew), which for a reply's message is the whole message.
pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(members.into_iter().map(|(name, value)| (name.to_owned(), value)).collect())
}

/// The action that carries out `verb` on `bot`'s protocol.
pub fn verb_call(bot: &Bot, verb: &Verb<'_>) -> Result<(&'static str, Value), CallError> {
    match adapter(bot.protocol) {
        Some(a) => (a.verb)(verb),
        None => Err(verb.unsupported(bot.protocol, "no adapter")),
    }
}

/// What starting a bot's connection needs.
pub struct Start<'a> {
    /// Where events go.
    pub sink: EventSink,
    /// Connections close when this is cancelled.
    pub shutdown: CancellationToken,
    /// The console cancels this when its input ends.
    pub input_done: CancellationToken,
    /// Tracks the connection tasks, so shutdown can wait for them.
    pub tasks: &'a TaskTracker,
    /// The event names scripts handle now (normalised), for protocols that subscribe.
    pub subscribed: Subscribed,
    /// Whether the scripts are idle (nothing queued or running), for the console's transcript.
    pub idle: Idle,
}

/// Whether the scripts are idle at the moment of asking.
pub type Idle = Arc<dyn Fn() -> bool + Send + Sync>;

/// The event names scripts handle at the moment of asking.
pub type Subscribed = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// Starts a bot's connection; fails when a listener cannot bind.
pub type Starter = Box<dyn for<'a> FnOnce(Arc<Bot>, Start<'a>) -> std::io::Result<()> + Send>;

/// A configured bot whose connection has not started yet: scripts can be loaded against its
/// handle first, so no event arrives before there is a handler for it.
pub struct Opened {
    /// The handle scripts and replies use.
    pub bot: Arc<Bot>,
    starter: Starter,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").field("bot", &self.bot.name).finish_non_exhaustive()
    }
}

impl Opened {
    /// A bot and how to start it.
    pub fn new(bot: Bot, starter: Starter) -> Opened {
        Opened { bot: Arc::new(bot), starter }
    }

    /// Starts delivering events.
    pub fn start(self, start: Start<'_>) -> std::io::Result<()> {
        (self.starter)(self.bot, start)
    }
}

/// Creates the handle of a configured bot; `data_dir` keeps what a connection must remember
/// across restarts (the official gateway's session).
pub fn open(cfg: &BotConfig, call_timeout: Duration, data_dir: &std::path::Path) -> Opened {
    let opened = match &cfg.kind {
        BotKind::Console { milky } => console::open(&cfg.name, call_timeout, *milky),
        BotKind::OneBot11(ob) => onebot11::open(&cfg.name, ob, call_timeout),
        BotKind::Milky(m) => milky::open(&cfg.name, m, call_timeout),
        BotKind::Qq(q) => qq::open(&cfg.name, q, call_timeout, data_dir),
    };
    opened.bot.set_superusers(cfg.superusers.clone());
    opened
}
