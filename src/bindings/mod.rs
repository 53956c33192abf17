//! What scripts see: the protocol namespaces generated from the action tables (`onebot::`),
//! message builders (`msg::`), the `Event` type, and logging.
//!
//! [`Services`] is the one shared handle the bindings use to reach bots; it is built once per
//! runtime and captured by every script's engine.

pub mod chat;
pub mod convert;
pub mod event;
pub mod http;
pub mod kv;
pub mod msg;
pub mod protocol;
pub mod qq;
pub mod random;
pub mod schedule;
pub mod text;
pub mod time;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bot::{Bot, CallError};
use crate::script::context;

/// A registration that carries its parameters (`name: type`, `name?` when optional) and a
/// one-line description into the engine's metadata, which `rhaibot api list` and the docs read:
/// what a script can call and what is listed come from the same place.
pub fn documented(name: &str, params: &[&str], doc: &str) -> rhai::FuncRegistration {
    rhai::FuncRegistration::new(name).with_params_info(params).with_comments([format!("/// {doc}")])
}

/// The runtime's bots and the reactor that drives their connections.
#[derive(Debug)]
pub struct Services {
    /// Every configured bot.
    pub bots: Vec<Arc<Bot>>,
    /// The async runtime; `None` for offline uses (`rhaibot check`, `api list`).
    pub rt: Option<tokio::runtime::Handle>,
    /// The scripts' HTTP client; `None` offline.
    pub http: Option<http::Client>,
    /// The longest a callback may wait for a user's next message.
    pub max_wait: Duration,
    /// How commands are recognised and refused.
    pub commands: crate::script::command::Settings,
    /// The store the scripts' `kv::` uses; what a script sends waits for the commit of the
    /// writes made before it. Without one, `kv::` is not registered.
    pub store: Option<Arc<crate::storage::Store>>,
}

impl Services {
    /// Services with no bots, for compiling and listing (with `store`, `kv::` is registered).
    pub fn offline(store: Option<Arc<crate::storage::Store>>) -> Arc<Services> {
        Arc::new(Services {
            bots: Vec::new(),
            rt: None,
            http: None,
            max_wait: Duration::from_secs(600),
            commands: Default::default(),
            store,
        })
    }

    /// The bot a call from a script goes to: the one that delivered the current event, or else
    /// the only bot that accepts the `namespace`'s actions.
    pub fn pick_bot(&self, namespace: &str) -> Result<Arc<Bot>, String> {
        if let Some(bot) = context::event_bot().filter(|b| b.speaks(namespace)) {
            return Ok(bot);
        }
        let mut fitting = self.bots.iter().filter(|b| b.speaks(namespace));
        match (fitting.next(), fitting.next()) {
            (Some(bot), None) => Ok(bot.clone()),
            (None, _) => Err(format!("no configured bot speaks {namespace}")),
            (Some(_), Some(_)) => {
                Err(format!("several bots speak {namespace}; outside an event callback name one with bot(\"name\")"))
            }
        }
    }

    /// Sends `action` to `bot` without waiting, after the earlier sends of the same `order`
    /// key (a chat); a failure is logged with the script and the callback that sent it.
    pub fn send_logged(&self, bot: &Arc<Bot>, action: &str, params: Value, order: u64) {
        let who = context::who();
        let done = crate::bot::Reply::Detached(crate::bot::Detached::new(move |result| {
            if let Err(e) = result {
                tracing::error!(callback = who.as_deref().unwrap_or("?"), "{e}");
            }
        }));
        let Some(rt) = &self.rt else {
            return done.send(Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() }));
        };
        let Some(store) = self.store.as_ref().filter(|s| s.effects_wait()) else {
            return bot.send(rt, action, params, done, order);
        };
        // A reply may report a kv write (`count: 5`): it leaves once that write is durable.
        let (bot, rt, action) = (bot.clone(), rt.clone(), action.to_owned());
        store.after_commit(move |saved| match saved {
            Ok(()) => bot.send(&rt, &action, params, done, order),
            Err(e) => {
                let reason = format!("not sent: the kv writes made before it were lost ({e})");
                done.send(Err(CallError::Invalid { action, reason }))
            }
        });
    }

    /// Commits the store's open batch before a call leaves that may carry what the callback
    /// wrote or read; the call fails when those writes were lost.
    pub fn commit_before_sending(&self, action: &str) -> Result<(), CallError> {
        match self.store.as_ref().map(|s| s.commit_before_sending()) {
            Some(Err(e)) => Err(CallError::Invalid { action: action.to_owned(), reason: format!("not sent: {e}") }),
            _ => Ok(()),
        }
    }

    /// Calls `action` on `bot` from a worker thread, blocking only this thread. Time spent
    /// waiting does not count against the callback's running-time deadline (the call has its own
    /// timeout), but it does against its total budget: a call never waits past it.
    pub fn call_blocking(&self, bot: &Bot, action: &str, params: Value) -> Result<Value, CallError> {
        self.block_on_call(bot, action, |timeout| bot.call_within(action, params, timeout))
    }

    /// Blocks this worker on `call`, given the time it may take: the call's timeout, never past
    /// the callback's total budget. The wait counts as blocked, not as running time.
    fn block_on_call<F>(&self, bot: &Bot, action: &str, call: impl FnOnce(Duration) -> F) -> Result<Value, CallError>
    where
        F: std::future::Future<Output = Result<Value, CallError>>,
    {
        let Some(rt) = &self.rt else {
            return Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() });
        };
        self.commit_before_sending(action)?;
        let timeout = context::total_left().map_or(bot.call_timeout, |left| left.min(bot.call_timeout));
        let started = Instant::now();
        let result = crate::script::wait::blocking(|| rt.block_on(call(timeout)));
        context::extend(started.elapsed());
        result
    }

    /// [`Services::call_blocking`] for a script: the result as a script value, a failure as a
    /// catchable error, and a callback past its total budget stopped (not catchable).
    pub fn call_script(
        &self,
        bot: &Bot,
        action: &str,
        params: Value,
    ) -> Result<rhai::Dynamic, Box<rhai::EvalAltResult>> {
        self.call_value(bot, action, params)?.map(|v| convert::to_dynamic(&v)).map_err(convert::call_error)
    }

    /// Like [`Services::call_script`], after the calls already on their way to the chat
    /// `order` (a reply that waits must not overtake one that does not).
    pub fn call_script_in_order(
        &self,
        bot: &Arc<Bot>,
        order: u64,
        action: &str,
        params: Value,
    ) -> Result<rhai::Dynamic, Box<rhai::EvalAltResult>> {
        within_budget(|| self.block_on_call(bot, action, |timeout| bot.call_in_order(order, action, params, timeout)))?
            .map(|v| convert::to_dynamic(&v))
            .map_err(convert::call_error)
    }

    /// [`Services::call_blocking`] for a script, its result still JSON: a callback past its
    /// total budget is stopped (the outer error, not catchable); the call's own failure is the
    /// caller's to turn into a script error.
    pub fn call_value(
        &self,
        bot: &Bot,
        action: &str,
        params: Value,
    ) -> Result<Result<Value, CallError>, Box<rhai::EvalAltResult>> {
        within_budget(|| self.call_blocking(bot, action, params))
    }
}

/// Runs `call` unless the callback is past its total budget, and stops the callback if it is
/// past it afterwards (the outer error, not catchable).
fn within_budget(
    call: impl FnOnce() -> Result<Value, CallError>,
) -> Result<Result<Value, CallError>, Box<rhai::EvalAltResult>> {
    out_of_time()?;
    let result = call();
    out_of_time()?;
    Ok(result)
}

/// Blocks the running callback until an event that `matches` comes, at most `timeout` (the
/// time waited is not charged to its budgets): the event, or `None` at the timeout.
pub fn wait_event(
    matches: impl Fn(&crate::event::Event) -> bool + Send + Sync + 'static,
    timeout: std::time::Duration,
) -> Result<Option<Arc<crate::event::Event>>, Box<rhai::EvalAltResult>> {
    out_of_time()?;
    let started = Instant::now();
    let got = crate::script::wait::wait_for_event(matches, timeout).map_err(|e| convert::script_error(e.into()));
    context::extend_all(started.elapsed());
    got
}

/// Stops a callback that used up its total budget (blocked in calls, it never reaches the
/// engine's progress check), the way the engine stops a runaway.
pub fn out_of_time() -> Result<(), Box<rhai::EvalAltResult>> {
    match context::total_left() {
        Some(left) if left.is_zero() => {
            Err(rhai::EvalAltResult::ErrorTerminated(context::TOTAL_TOKEN.into(), rhai::Position::NONE).into())
        }
        _ => Ok(()),
    }
}
