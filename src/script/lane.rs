//! One script's queue of pending work, keyed by conversation, with its concurrency limit.
//!
//! Items of one key (one person in one chat, or one job) are handed out in order and one at a time: a key
//! that a drainer holds is not given to another drainer until it is released. Different keys run
//! in parallel, up to `limit` drainers. Dispatch pushes an item; when it made a key ready and
//! fewer than `limit` drainers run, the caller starts one on the worker pool. A drainer takes
//! item after item (round-robin over the ready keys), so under load one pool hand-off serves many
//! items. The queue is bounded across keys: a full queue refuses the item and the caller counts
//! the drop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};

/// Callbacks of one script that may wait at once; more end their wait at once, empty.
pub const MAX_WAITERS: usize = 512;

/// What a waiting callback waits for.
pub type Matcher<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// A script's keyed queue and its running drainers.
#[derive(Debug)]
pub struct Lane<T> {
    state: Mutex<State<T>>,
    limit: usize,
    capacity: usize,
    /// How many callbacks wait (read without the lock by dispatch).
    waiting: AtomicUsize,
    /// How many keys have items or a drainer (kept by [`Guard`]; read without the lock).
    keys: AtomicUsize,
}

/// The lane's locked state; on release it records how many keys are in use.
struct Guard<'a, T> {
    state: std::sync::MutexGuard<'a, State<T>>,
    in_use: &'a AtomicUsize,
}

impl<T> std::ops::Deref for Guard<'_, T> {
    type Target = State<T>;
    fn deref(&self) -> &State<T> {
        &self.state
    }
}

impl<T> std::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut State<T> {
        &mut self.state
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.in_use.store(self.state.keys.len(), Ordering::Release);
    }
}

/// A callback waiting for an item (a conversation's next message).
struct Waiter<T> {
    id: u64,
    matches: Matcher<T>,
    tx: mpsc::SyncSender<T>,
}

impl<T> std::fmt::Debug for Waiter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A registered wait: its id and where the item will come.
#[derive(Debug)]
pub struct Ticket<T> {
    /// The registration, for [`Lane::unwait`].
    pub id: u64,
    /// Receives the item.
    pub rx: mpsc::Receiver<T>,
}

#[derive(Debug)]
struct State<T> {
    /// Keys that have waiting items or that a drainer holds.
    keys: foldhash::HashMap<u64, Key<T>>,
    /// Keys with waiting items that no drainer holds, oldest first.
    ready: VecDeque<u64>,
    /// Items waiting across all keys.
    queued: usize,
    /// Drainers counted as running.
    running: usize,
    /// Drainers waiting in a callback: they hold their key but not a place among `running`.
    suspended: usize,
    /// Running drainers that make no progress for now: blocked in a call or asleep, or long in
    /// one callback.
    blocked: usize,
    /// Items handed to a waiting callback that has not resumed yet.
    handed: usize,
    /// Callbacks waiting for an item, oldest first.
    waiters: Vec<Waiter<T>>,
    next_waiter: u64,
    /// Set at shutdown: new waits end at once.
    closed: bool,
    /// Waits refused because too many callbacks waited.
    refused_waits: u64,
}

#[derive(Debug)]
struct Key<T> {
    items: VecDeque<T>,
    held: bool,
}

/// What the caller of [`Lane::push`] must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; a running drainer will take it.
    Queued,
    /// Queued; start a drainer (the lane already counts it as running).
    StartDrainer,
    /// A waiting callback took it.
    Taken,
    /// The queue is full; the item was not taken.
    Full,
}

impl<T> Lane<T> {
    /// A lane running at most `limit` drainers over at most `capacity` queued items.
    pub fn new(limit: usize, capacity: usize) -> Lane<T> {
        let state = State {
            keys: foldhash::HashMap::default(),
            ready: VecDeque::new(),
            queued: 0,
            running: 0,
            suspended: 0,
            blocked: 0,
            handed: 0,
            waiters: Vec::new(),
            next_waiter: 0,
            closed: false,
            refused_waits: 0,
        };
        Lane {
            state: Mutex::new(state),
            limit: limit.max(1),
            capacity,
            waiting: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
        }
    }

    fn state(&self) -> Guard<'_, T> {
        Guard { state: self.state.lock().unwrap_or_else(PoisonError::into_inner), in_use: &self.keys }
    }

    /// Queues `item` behind the earlier items of `key`, unless a waiting callback takes it.
    pub fn push(&self, key: u64, item: T) -> Pushed {
        let mut guard = self.state();
        let s = &mut *guard;
        let item = match s.hand_to_waiter(item, &self.waiting) {
            Ok(()) => return Pushed::Taken,
            Err(item) => item,
        };
        if s.queued >= self.capacity {
            return Pushed::Full;
        }
        let k = s.keys.entry(key).or_insert_with(|| Key { items: VecDeque::new(), held: false });
        k.items.push_back(item);
        s.queued += 1;
        if !k.held && k.items.len() == 1 {
            s.ready.push_back(key);
        }
        if s.wants_drainer(self.limit) {
            s.running += 1;
            Pushed::StartDrainer
        } else {
            Pushed::Queued
        }
    }

    /// Hands `item` to a waiting callback it matches, if any (`Err` gives it back).
    pub fn offer(&self, item: T) -> Result<(), T> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return Err(item);
        }
        self.state().hand_to_waiter(item, &self.waiting)
    }

    /// Whether some callback of this lane waits for an item.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Whether `key` has a callback running or waiting to run (what comes next in that
    /// conversation may be what it will wait for).
    pub fn holds(&self, key: u64) -> bool {
        // Dispatch asks this of every script a message is not for: an idle lane answers
        // without its lock.
        self.keys.load(Ordering::Acquire) > 0 && self.state().keys.contains_key(&key)
    }

    /// Waits for an item that `matches`: one already queued is taken at once (`Err`), else the
    /// wait is registered and the item will come on the ticket.
    pub fn wait(&self, matches: Matcher<T>) -> Result<Ticket<T>, T> {
        let mut guard = self.state();
        let s = &mut *guard;
        let order: Vec<u64> = s.ready.iter().copied().chain(s.keys.keys().copied()).collect();
        for key in order {
            let Some(k) = s.keys.get_mut(&key) else { continue };
            let Some(i) = k.items.iter().position(&matches) else { continue };
            let item = k.items.remove(i).expect("the position exists");
            s.queued -= 1;
            if k.items.is_empty() && !k.held {
                s.keys.remove(&key);
                s.ready.retain(|r| *r != key);
            }
            return Err(item);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let id = s.next_waiter;
        s.next_waiter += 1;
        // Shutting down, or too many waiting already: the wait ends at once (each waiting
        // callback holds a thread).
        if !s.closed && s.waiters.len() >= MAX_WAITERS {
            s.refused_waits += 1;
            if s.refused_waits.is_power_of_two() {
                tracing::warn!(
                    refused = s.refused_waits,
                    "{MAX_WAITERS} callbacks of a script wait already; new waits end at once"
                );
            }
        }
        if s.closed || s.waiters.len() >= MAX_WAITERS {
            // Shutting down: nothing more will come; the wait ends at once.
            drop(tx);
            return Ok(Ticket { id, rx });
        }
        s.waiters.push(Waiter { id, matches, tx });
        self.waiting.store(s.waiters.len(), Ordering::Release);
        Ok(Ticket { id, rx })
    }

    /// Ends a wait; `false` when it was already given an item (read it from the ticket).
    pub fn unwait(&self, id: u64) -> bool {
        let mut s = self.state();
        let before = s.waiters.len();
        s.waiters.retain(|w| w.id != id);
        self.waiting.store(s.waiters.len(), Ordering::Release);
        s.waiters.len() < before
    }

    /// Ends every wait with nothing, now and from now on (shutting down).
    pub fn cancel_waiters(&self) {
        let mut s = self.state();
        s.closed = true;
        s.waiters.clear();
        self.waiting.store(0, Ordering::Release);
    }

    /// A drainer is about to wait in its callback: it keeps its key but gives up its place
    /// among the running drainers. `true` means the caller must start a drainer for the keys
    /// that are ready (the lane counts it as running).
    pub fn suspend(&self) -> bool {
        let mut s = self.state();
        s.running -= 1;
        s.suspended += 1;
        if s.wants_drainer(self.limit) {
            s.running += 1;
            true
        } else {
            false
        }
    }

    /// A running drainer stops making progress for a while (a call, a sleep, a long callback).
    /// `true` means the caller must start a drainer for the keys that are ready (the lane
    /// counts it as running).
    pub fn block(&self) -> bool {
        let mut s = self.state();
        s.blocked += 1;
        if s.wants_drainer(self.limit) {
            s.running += 1;
            true
        } else {
            false
        }
    }

    /// The blocked drainer makes progress again.
    pub fn unblock(&self) {
        let mut s = self.state();
        s.blocked = s.blocked.saturating_sub(1);
    }

    /// The waiting drainer goes on (it may take the running count past the limit briefly).
    pub fn resume(&self, got_item: bool) {
        let mut s = self.state();
        s.suspended -= 1;
        s.running += 1;
        if got_item {
            s.handed -= 1;
        }
    }

    /// Releases `held` (the key the drainer finished an item of, if any) and hands out the next
    /// item of a ready key, with its key, which the drainer then holds. `None` means nothing is
    /// ready and this drainer is done (it no longer counts as running).
    pub fn next(&self, held: Option<u64>) -> Option<(u64, T)> {
        let mut guard = self.state();
        let s = &mut *guard;
        if let Some(key) = held {
            s.release(key);
        }
        while let Some(key) = s.ready.pop_front() {
            if let Some(k) = s.keys.get_mut(&key)
                && let Some(item) = k.items.pop_front()
            {
                k.held = true;
                s.queued -= 1;
                return Some((key, item));
            }
        }
        s.running -= 1;
        None
    }

    /// Releases a held key without taking more (a drainer yielding its worker; it still counts
    /// as running and calls [`Lane::next`] with `None` when it resumes).
    pub fn release(&self, key: u64) {
        self.state().release(key);
    }

    /// A drainer that was counted by [`Pushed::StartDrainer`] could not be started.
    pub fn drainer_not_started(&self) {
        self.state().running -= 1;
    }

    /// Whether nothing is queued and no drainer runs (a callback waiting in a conversation
    /// does not count as running).
    pub fn is_idle(&self) -> bool {
        let s = self.state();
        s.queued == 0 && s.running == 0 && s.handed == 0
    }

    /// Items waiting.
    pub fn waiting(&self) -> usize {
        self.state().queued
    }
}

impl<T> State<T> {
    fn wants_drainer(&self, limit: usize) -> bool {
        // A drainer busy in a callback takes the next ready key when it is done: another one is
        // started only when every running drainer is blocked. Starting one per ready key would
        // wake a thread per event under load, and on few cores they would only take turns.
        self.running < limit && !self.ready.is_empty() && self.running <= self.blocked
    }

    fn hand_to_waiter(&mut self, item: T, waiting: &AtomicUsize) -> Result<(), T> {
        let Some(i) = self.waiters.iter().position(|w| (w.matches)(&item)) else { return Err(item) };
        let waiter = self.waiters.remove(i);
        waiting.store(self.waiters.len(), Ordering::Release);
        waiter.tx.try_send(item).map_err(|e| match e {
            mpsc::TrySendError::Full(item) | mpsc::TrySendError::Disconnected(item) => item,
        })?;
        self.handed += 1;
        Ok(())
    }

    fn release(&mut self, key: u64) {
        let Some(k) = self.keys.get_mut(&key) else { return };
        k.held = false;
        if k.items.is_empty() {
            self.keys.remove(&key);
        } else {
            self.ready.push_back(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_is_served_in_order_by_one_drainer_at_a_time() {
        let lane = Lane::new(4, 100);
        assert_eq!(lane.push(7, 1), Pushed::StartDrainer);
        assert_eq!(lane.push(7, 2), Pushed::Queued, "the key is already ready: no second drainer");
        let (key, first) = lane.next(None).unwrap();
        assert_eq!((key, first), (7, 1));
        assert_eq!(lane.push(7, 3), Pushed::Queued, "the key is held: no second drainer");
        assert_eq!(lane.next(Some(7)), Some((7, 2)));
        assert_eq!(lane.next(Some(7)), Some((7, 3)));
        assert_eq!(lane.next(Some(7)), None);
        assert_eq!(lane.waiting(), 0);
    }

    #[test]
    fn different_keys_run_in_parallel_up_to_the_limit_and_take_turns() {
        let lane = Lane::new(2, 100);
        assert_eq!(lane.push(1, "a1"), Pushed::StartDrainer);
        assert_eq!(lane.push(2, "b1"), Pushed::Queued, "the running drainer takes it next");
        assert!(lane.block(), "the drainer blocks (in a call): a second one starts for key 2");
        assert_eq!(lane.push(3, "c1"), Pushed::Queued, "limit reached");
        assert!(!lane.block(), "limit reached");
        lane.unblock();
        lane.unblock();
        lane.push(1, "a2");
        let (ka, a) = lane.next(None).unwrap();
        let (kb, b) = lane.next(None).unwrap();
        assert_eq!((a, b), ("a1", "b1"));
        // Round-robin: the drainer done with key 1 takes key 3 (ready first), then key 1 again.
        assert_eq!(lane.next(Some(ka)), Some((3, "c1")));
        assert_eq!(lane.next(Some(3)), Some((1, "a2")));
        assert_eq!(lane.next(Some(kb)), None);
        assert_eq!(lane.next(Some(1)), None);
    }

    #[test]
    fn the_queue_is_bounded_across_keys_and_a_failed_start_is_undone() {
        let lane = Lane::new(1, 3);
        assert_eq!(lane.push(1, 1), Pushed::StartDrainer);
        lane.drainer_not_started();
        assert_eq!(lane.push(2, 2), Pushed::StartDrainer, "the uncounted drainer may start again");
        assert!(!lane.block(), "limit reached");
        lane.unblock();
        assert_eq!(lane.push(3, 3), Pushed::Queued);
        assert_eq!(lane.push(4, 4), Pushed::Full);
        assert_eq!(lane.next(None), Some((1, 1)));
        assert_eq!(lane.next(Some(1)), Some((2, 2)));
        assert_eq!(lane.next(Some(2)), Some((3, 3)));
        assert_eq!(lane.next(Some(3)), None);
        assert_eq!(lane.waiting(), 0);
    }

    #[test]
    fn a_handed_item_keeps_the_lane_busy_until_its_waiter_resumes() {
        let lane: Lane<u32> = Lane::new(1, 10);
        assert_eq!(lane.push(1, 0), Pushed::StartDrainer);
        let (_key, _first) = lane.next(None).unwrap();
        let ticket = lane.wait(Box::new(|x: &u32| *x == 5)).unwrap();
        assert!(!lane.suspend(), "nothing else is ready");
        assert_eq!(lane.push(1, 5), Pushed::Taken);
        assert_eq!(ticket.rx.try_recv().ok(), Some(5));
        // The waiting thread has not woken yet: `rhaibot test`'s settle must not see idle here.
        assert!(!lane.is_idle(), "an item handed to a waiter that has not resumed is work in flight");
    }

    /// A random model of drainers over the real lane: whatever they do, the counts match and
    /// no item is left queued once every drainer has run to its end.
    #[test]
    fn random_drainers_never_strand_an_item() {
        #[derive(Clone, Copy, PartialEq, Debug)]
        enum D {
            Start,
            Item { key: u64, blocked: bool, suspended: bool },
        }
        for seed in 1..3000u64 {
            let mut r = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut rnd = |n: u64| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                r % n
            };
            let limit = 1 + rnd(3) as usize;
            let lane: Lane<u32> = Lane::new(limit, 1000);
            let mut ds: Vec<D> = Vec::new();
            let check = |lane: &Lane<u32>, ds: &[D]| {
                let s = lane.state();
                let running = ds.iter().filter(|d| !matches!(d, D::Item { suspended: true, .. })).count();
                let blocked = ds.iter().filter(|d| matches!(d, D::Item { blocked: true, .. })).count();
                assert_eq!((s.running, s.blocked), (running, blocked), "seed {seed}: {ds:?}");
                assert!(!s.wants_drainer(lane.limit), "seed {seed}: a drainer is wanted and none started: {ds:?}");
                assert!(s.ready.is_empty() || s.running > 0, "seed {seed}: ready keys, no drainer: {ds:?}");
            };
            for step in 0..200 {
                let finishing = step >= 150;
                let pick = rnd(8);
                if !finishing && pick == 0 {
                    if lane.push(rnd(4), 0) == Pushed::StartDrainer {
                        ds.push(D::Start);
                    }
                } else if !ds.is_empty() {
                    let i = rnd(ds.len() as u64) as usize;
                    match ds[i] {
                        D::Start => match lane.next(None) {
                            Some((key, _)) => ds[i] = D::Item { key, blocked: false, suspended: false },
                            None => {
                                ds.remove(i);
                            }
                        },
                        D::Item { key, blocked, suspended: true } => {
                            lane.resume(false);
                            ds[i] = D::Item { key, blocked, suspended: false };
                        }
                        D::Item { key, blocked, suspended: false } => match (finishing, rnd(5)) {
                            (false, 0) if !blocked => {
                                ds[i] = D::Item { key, blocked: true, suspended: false };
                                if lane.block() {
                                    ds.push(D::Start);
                                }
                            }
                            (false, 1) => {
                                if blocked {
                                    lane.unblock();
                                }
                                ds[i] = D::Item { key, blocked: false, suspended: true };
                                if lane.suspend() {
                                    ds.push(D::Start);
                                }
                            }
                            (false, 2) => {
                                // Yields its worker after a batch: still running.
                                if blocked {
                                    lane.unblock();
                                }
                                lane.release(key);
                                ds[i] = D::Start;
                            }
                            _ => {
                                if blocked {
                                    lane.unblock();
                                }
                                match lane.next(Some(key)) {
                                    Some((key, _)) => ds[i] = D::Item { key, blocked: false, suspended: false },
                                    None => {
                                        ds.remove(i);
                                    }
                                }
                            }
                        },
                    }
                }
                check(&lane, &ds);
            }
            // Every drainer runs to its end.
            while !ds.is_empty() {
                let i = ds.len() - 1;
                match ds[i] {
                    D::Start => match lane.next(None) {
                        Some((key, _)) => ds[i] = D::Item { key, blocked: false, suspended: false },
                        None => {
                            ds.pop();
                        }
                    },
                    D::Item { key, blocked, suspended } => {
                        if suspended {
                            lane.resume(false);
                        }
                        if blocked {
                            lane.unblock();
                        }
                        match lane.next(Some(key)) {
                            Some((key, _)) => ds[i] = D::Item { key, blocked: false, suspended: false },
                            None => {
                                ds.pop();
                            }
                        }
                    }
                }
                check(&lane, &ds);
            }
            assert_eq!(lane.waiting(), 0, "seed {seed}: items stranded with no drainer");
            assert!(lane.is_idle(), "seed {seed}");
        }
    }
}
