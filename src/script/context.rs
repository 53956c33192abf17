//! Per-thread state of the callback running on this worker: its wall-clock deadlines (running
//! time, and the total that includes time blocked in calls) and the bot that delivered its
//! event. A worker runs one callback at a time, so a thread-local is exact and costs no lock.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bot::Bot;

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static TOTAL: Cell<Option<Instant>> = const { Cell::new(None) };
    static EVENT_BOT: RefCell<Option<Arc<Bot>>> = const { RefCell::new(None) };
    static WHO: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    static EVENT: RefCell<Option<Arc<crate::event::Event>>> = const { RefCell::new(None) };
}

/// Marks the start of a callback; restores the previous state when dropped (top-level runs
/// may nest inside a callback when a script is loaded from one).
#[must_use = "the callback context ends when this guard drops"]
pub struct Running {
    deadline: Option<Instant>,
    total: Option<Instant>,
    bot: Option<Arc<Bot>>,
    who: Option<Arc<str>>,
    event: Option<Arc<crate::event::Event>>,
}

/// Starts a callback with `budget` of running time and `total` in all (blocked in calls or
/// not), for `event` if it has one (its bot answers the callback's calls); `who` names the
/// script and callback in logs written on its behalf later (a failed reply).
pub fn enter(
    budget: Duration,
    total: Duration,
    event: Option<Arc<crate::event::Event>>,
    who: Option<Arc<str>>,
) -> Running {
    let now = Instant::now();
    let deadline = DEADLINE.replace(Some(now + budget));
    let total = TOTAL.replace(Some(now + total));
    let bot = EVENT_BOT.replace(event.as_ref().map(|e| e.bot.clone()));
    let who = WHO.replace(who);
    let event = EVENT.replace(event);
    Running { deadline, total, bot, who, event }
}

impl Drop for Running {
    fn drop(&mut self) {
        DEADLINE.set(self.deadline);
        TOTAL.set(self.total);
        EVENT_BOT.set(self.bot.take());
        WHO.set(self.who.take());
        EVENT.set(self.event.take());
    }
}

/// The event the running callback handles, if it handles one.
pub fn event() -> Option<Arc<crate::event::Event>> {
    EVENT.with_borrow(|e| e.clone())
}

/// The script and callback running on this thread, e.g. `hello.rhai on("message")`.
pub fn who() -> Option<Arc<str>> {
    WHO.with_borrow(|w| w.clone())
}

/// Which budget the running callback is past, if any: [`DEADLINE_TOKEN`] or [`TOTAL_TOKEN`].
pub fn expired() -> Option<&'static str> {
    let now = Instant::now();
    if TOTAL.get().is_some_and(|t| now >= t) {
        Some(TOTAL_TOKEN)
    } else if DEADLINE.get().is_some_and(|d| now >= d) {
        Some(DEADLINE_TOKEN)
    } else {
        None
    }
}

/// Names a callback stopped at its running-time deadline.
pub const DEADLINE_TOKEN: &str = "deadline";
/// Names a callback stopped at its total budget.
pub const TOTAL_TOKEN: &str = "total";

/// What is left of the running callback's total budget (`None` outside callbacks).
pub fn total_left() -> Option<Duration> {
    TOTAL.get().map(|t| t.saturating_duration_since(Instant::now()))
}

/// Moves the deadline by `waited`: time blocked in an API call is bounded by the call timeout,
/// not charged to the script's running time.
pub fn extend(waited: Duration) {
    if let Some(d) = DEADLINE.get() {
        DEADLINE.set(Some(d + waited));
    }
}

/// Moves both deadlines by `waited`: time spent waiting for a user's answer is bounded by its
/// own timeout, not charged to the callback's budgets.
pub fn extend_all(waited: Duration) {
    extend(waited);
    if let Some(t) = TOTAL.get() {
        TOTAL.set(Some(t + waited));
    }
}

/// The bot calls of this callback go to: the one that delivered the event, or the one chosen
/// with `bot("name")`.
pub fn event_bot() -> Option<Arc<Bot>> {
    EVENT_BOT.with_borrow(|b| b.clone())
}

/// Sends the rest of this callback's calls to `bot` (`bot("name")` in scripts).
pub fn use_bot(bot: Arc<Bot>) {
    EVENT_BOT.set(Some(bot));
}
