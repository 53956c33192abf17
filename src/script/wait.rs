//! Callbacks waiting for a later event (`qq::wait_for`): a waiting callback registers what it
//! waits for, and dispatch hands the first event that matches to it instead of to the scripts'
//! handlers. Checking costs one atomic load while nobody waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use crate::event::Event;

/// What a waiter waits for.
pub type Matcher = Box<dyn Fn(&Event) -> bool + Send + Sync>;

/// Waiters at most at once (each holds a worker; more are refused with an error).
pub const MAX_WAITERS: usize = 1024;

struct Waiter {
    id: u64,
    matches: Matcher,
    tx: mpsc::SyncSender<Arc<Event>>,
}

/// The callbacks waiting for events.
#[derive(Default)]
pub struct Waiters {
    count: AtomicUsize,
    next_id: AtomicUsize,
    list: Mutex<Vec<Waiter>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters").field("count", &self.count.load(Ordering::Relaxed)).finish()
    }
}

impl Waiters {
    /// Blocks this (worker) thread until an event `matches`, at most `timeout`; `None` when none
    /// came, `Err` when too many callbacks wait already.
    pub fn wait(&self, matches: Matcher, timeout: Duration) -> Result<Option<Arc<Event>>, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        {
            let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
            if list.len() >= MAX_WAITERS {
                return Err(format!("{MAX_WAITERS} callbacks are waiting already"));
            }
            list.push(Waiter { id, matches, tx });
            self.count.store(list.len(), Ordering::Release);
        }
        let got = rx.recv_timeout(timeout).ok();
        if got.is_none() {
            let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
            list.retain(|w| w.id != id);
            self.count.store(list.len(), Ordering::Release);
            // It may have been handed over between the timeout and the lock.
            return Ok(rx.try_recv().ok());
        }
        Ok(got)
    }

    /// Hands `ev` to the first waiter it matches; `true` when one took it (it then goes to no
    /// handler). Never blocks.
    pub fn offer(&self, ev: &Arc<Event>) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(i) = list.iter().position(|w| (w.matches)(ev)) else { return false };
        let waiter = list.remove(i);
        self.count.store(list.len(), Ordering::Release);
        waiter.tx.try_send(ev.clone()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::{Bot, Protocol};

    static P: Protocol = Protocol { name: "t", namespace: "t" };

    fn ev(text: &str) -> Arc<Event> {
        let mut e = Event::new(Bot::detached("b", &P), "t.message".into(), &["message"], serde_json::json!({}));
        e.text = text.into();
        Arc::new(e)
    }

    #[test]
    fn the_first_matching_event_goes_to_the_waiter_and_no_further() {
        let waiters = Arc::new(Waiters::default());
        assert!(!waiters.offer(&ev("nobody waits")));
        let w = waiters.clone();
        let waiting = std::thread::spawn(move || w.wait(Box::new(|e| e.text == "yes"), Duration::from_secs(30)));
        // Offer until the waiter has registered (offer never blocks).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !waiters.offer(&ev("yes")) {
            assert!(!waiters.offer(&ev("no")), "a non-matching event is not taken");
            assert!(std::time::Instant::now() < deadline, "the waiter never registered");
            std::thread::yield_now();
        }
        assert_eq!(waiting.join().unwrap().unwrap().unwrap().text, "yes");
        assert!(!waiters.offer(&ev("yes")), "a waiter takes one event");
    }

    #[test]
    fn a_wait_ends_empty_at_its_timeout() {
        let waiters = Waiters::default();
        assert!(waiters.wait(Box::new(|_| true), Duration::ZERO).unwrap().is_none());
        assert_eq!(waiters.count.load(Ordering::Relaxed), 0);
    }
}
