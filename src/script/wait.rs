//! A callback waiting for a later event (`ev.prompt`, `ev.next_message`, `qq::wait_for`).
//!
//! The wait is registered in the script's own lane, so the event it takes goes to the waiting
//! callback and to none of the script's handlers (other scripts still get it), even when it
//! arrived before the wait began: it was queued behind the running callback of its chat, and
//! the wait claims it from the queue. While it waits, the callback gives up its place among the
//! script's running drainers (other chats go on) and the worker pool adds a spare thread for it
//! (the pool's size stays what it was for everyone else).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use super::pool::Pool;
use super::{Script, Work};
use crate::event::Event;

thread_local! {
    /// The script whose drainer runs on this worker, and the pool it runs on.
    static CURRENT: RefCell<Option<(Arc<Script>, Arc<Pool>)>> = const { RefCell::new(None) };
}

/// Marks this worker as draining `script` until dropped.
pub(super) struct Draining(Option<(Arc<Script>, Arc<Pool>)>);

impl Draining {
    pub(super) fn enter(script: Arc<Script>, pool: Arc<Pool>) -> Draining {
        Draining(CURRENT.replace(Some((script, pool))))
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        CURRENT.set(self.0.take());
    }
}

/// Blocks the running callback until an event that `matches` comes, at most `timeout`: the
/// event, `Ok(None)` at the timeout, `Err` outside a script callback.
pub fn wait_for_event(
    matches: impl Fn(&Event) -> bool + Send + Sync + 'static,
    timeout: Duration,
) -> Result<Option<Arc<Event>>, &'static str> {
    let Some((script, pool)) = CURRENT.with_borrow(Clone::clone) else {
        return Err("only a callback of a running script can wait for an event");
    };
    let matcher = Box::new(move |w: &Work| matches!(w, Work::Event(ev) if matches(ev)));
    let ticket = match script.lane.wait(matcher) {
        Ok(ticket) => ticket,
        Err(Work::Event(ev)) => return Ok(Some(ev)),
        Err(Work::Job(_)) => return Ok(None),
    };
    if script.lane.suspend() {
        let (again, p) = (script.clone(), pool.clone());
        if pool.submit(Box::new(move || super::drain(again, p))).is_err() {
            script.lane.drainer_not_started();
        }
    }
    let got = pool.blocking(|| ticket.rx.recv_timeout(timeout).ok());
    let got = match got {
        Some(work) => Some(work),
        // Given an item between the timeout and now: it is on the ticket.
        None if !script.lane.unwait(ticket.id) => ticket.rx.try_recv().ok(),
        None => None,
    };
    script.lane.resume(got.is_some());
    Ok(match got {
        Some(Work::Event(ev)) => Some(ev),
        _ => None,
    })
}

/// Sleeps the running callback for `d`, never past its total budget, on a spare thread's
/// account (the worker's place is taken while it sleeps). Time asleep is not running time: it
/// moves the running deadline, as waiting for a call does.
pub fn sleep(d: Duration) {
    let d = super::context::total_left().map_or(d, |left| d.min(left));
    let started = std::time::Instant::now();
    match CURRENT.with_borrow(Clone::clone) {
        Some((_, pool)) => pool.blocking(|| std::thread::sleep(d)),
        None => std::thread::sleep(d),
    }
    super::context::extend(started.elapsed());
}
