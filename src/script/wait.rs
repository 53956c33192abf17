//! A callback waiting for a later event (`ev.prompt`, `ev.next_message`, `qq::wait_for`).
//!
//! The wait is registered in the script's own lane, so the event it takes goes to the waiting
//! callback and to none of the script's handlers (other scripts still get it), even when it
//! arrived before the wait began: it was queued behind the running callback of its chat, and
//! the wait claims it from the queue. While it waits, the callback gives up its place among the
//! script's running drainers (other chats go on) and the worker pool adds a spare thread for it
//! (the pool's size stays what it was for everyone else).

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pool::Pool;
use super::{Script, Work};
use crate::event::Event;

thread_local! {
    /// The script whose drainer runs on this worker, and the pool it runs on.
    static CURRENT: RefCell<Option<(Arc<Script>, Arc<Pool>)>> = const { RefCell::new(None) };
    /// When this worker's current item began, and whether its drainer counts as blocked.
    static ITEM: Cell<(Option<Instant>, bool)> = const { Cell::new((None, false)) };
}

/// A callback running this long on the CPU counts as blocked: the script's other chats get a
/// drainer of their own rather than wait for it.
const LONG_CALLBACK: Duration = Duration::from_millis(2);

/// One item of a drainer: from its start, it can be marked blocked; the mark ends with it.
pub(super) struct Item(());

impl Item {
    pub(super) fn begin() -> Item {
        crate::storage::callback_begins();
        ITEM.set((Some(Instant::now()), false));
        Item(())
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        set_blocked(false);
        ITEM.set((None, false));
    }
}

/// Marks this worker's drainer blocked (or not): while it is, another drainer may start for
/// the script's ready chats.
fn set_blocked(on: bool) {
    let (started, blocked) = ITEM.get();
    if blocked == on || started.is_none() {
        return;
    }
    let Some((script, pool)) = CURRENT.with_borrow(Clone::clone) else { return };
    ITEM.set((started, on));
    if !on {
        script.lane.unblock();
    } else if script.lane.block() {
        super::start_drainer(&script, &pool);
    }
}

/// Runs `wait` (an API call, a request, a sleep) with this worker's drainer counted as blocked.
pub fn blocking<R>(wait: impl FnOnce() -> R) -> R {
    commit_before_waiting();
    let was = ITEM.get().1;
    set_blocked(true);
    let result = wait();
    if !was {
        set_blocked(false);
        restart_clock();
    }
    result
}

/// Commits the kv writes of the batch this worker's callbacks write to before the callback
/// waits: what it waits for may answer a reply that reports them (held until they commit), and
/// replies of other callbacks should not wait as long as it does.
fn commit_before_waiting() {
    let Some(script) = CURRENT.with_borrow(|c| c.as_ref().map(|(script, _)| script.clone())) else { return };
    if let Some(store) = script.store() {
        // A failed commit is logged by the store, and the replies that waited for it are told.
        let _ = store.commit();
    }
}

/// Time spent waiting is not time on the CPU: the long-callback clock starts again.
fn restart_clock() {
    let (started, blocked) = ITEM.get();
    if started.is_some() {
        ITEM.set((Some(Instant::now()), blocked));
    }
}

/// Called as a callback runs: past [`LONG_CALLBACK`] it counts as blocked until it ends, and
/// a batch of kv writes that fell due meanwhile commits (a long callback holds up no replies).
pub fn note_progress() {
    CURRENT.with_borrow(|current| {
        if let Some(store) = current.as_ref().and_then(|(script, _)| script.store()) {
            // A failed commit is logged by the store, and the replies that waited for it are told.
            let _ = store.commit_if_due();
        }
    });
    if let (Some(started), false) = ITEM.get()
        && started.elapsed() >= LONG_CALLBACK
    {
        set_blocked(true);
    }
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
    commit_before_waiting();
    // A suspended drainer is accounted apart from a blocked one.
    set_blocked(false);
    if script.lane.suspend() {
        super::start_drainer(&script, &pool);
    }
    let got = pool.blocking(|| ticket.rx.recv_timeout(timeout).ok());
    let got = match got {
        Some(work) => Some(work),
        // Given an item between the timeout and now: it is on the ticket.
        None if !script.lane.unwait(ticket.id) => ticket.rx.try_recv().ok(),
        None => None,
    };
    script.lane.resume(got.is_some());
    restart_clock();
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
        Some((_, pool)) => blocking(|| pool.blocking(|| std::thread::sleep(d))),
        None => std::thread::sleep(d),
    }
    super::context::extend(started.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_waiting_in_a_call_does_not_count_towards_a_long_callback() {
        let _item = Item::begin();
        blocking(|| std::thread::sleep(LONG_CALLBACK * 2));
        let (started, blocked) = ITEM.get();
        assert!(!blocked);
        assert!(started.is_some_and(|at| at.elapsed() < LONG_CALLBACK), "the wait counted as time on the CPU");
    }
}
