//! One script's queue of pending work, keyed by conversation, with its concurrency limit.
//!
//! Items of one key (one chat, or one job) are handed out in order and one at a time: a key
//! that a drainer holds is not given to another drainer until it is released. Different keys run
//! in parallel, up to `limit` drainers. Dispatch pushes an item; when it made a key ready and
//! fewer than `limit` drainers run, the caller starts one on the worker pool. A drainer takes
//! item after item (round-robin over the ready keys), so under load one pool hand-off serves many
//! items. The queue is bounded across keys: a full queue refuses the item and the caller counts
//! the drop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// A script's keyed queue and its running drainers.
#[derive(Debug)]
pub struct Lane<T> {
    state: Mutex<State<T>>,
    limit: usize,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    /// Keys that have waiting items or that a drainer holds.
    keys: HashMap<u64, Key<T>>,
    /// Keys with waiting items that no drainer holds, oldest first.
    ready: VecDeque<u64>,
    /// Items waiting across all keys.
    queued: usize,
    /// Drainers counted as running.
    running: usize,
    /// Keys held by drainers (the other running drainers are about to take a ready key).
    holding: usize,
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
    /// The queue is full; the item was not taken.
    Full,
}

impl<T> Lane<T> {
    /// A lane running at most `limit` drainers over at most `capacity` queued items.
    pub fn new(limit: usize, capacity: usize) -> Lane<T> {
        let state = State { keys: HashMap::new(), ready: VecDeque::new(), queued: 0, running: 0, holding: 0 };
        Lane { state: Mutex::new(state), limit: limit.max(1), capacity }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` behind the earlier items of `key`.
    pub fn push(&self, key: u64, item: T) -> Pushed {
        let mut guard = self.state();
        let s = &mut *guard;
        if s.queued >= self.capacity {
            return Pushed::Full;
        }
        let k = s.keys.entry(key).or_insert_with(|| Key { items: VecDeque::new(), held: false });
        k.items.push_back(item);
        s.queued += 1;
        if !k.held && k.items.len() == 1 {
            s.ready.push_back(key);
        }
        // One more drainer when more keys are ready than drainers are free to take them.
        if s.running < self.limit && s.ready.len() > s.running.saturating_sub(s.holding) {
            s.running += 1;
            Pushed::StartDrainer
        } else {
            Pushed::Queued
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
                s.holding += 1;
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

    /// Items waiting.
    pub fn waiting(&self) -> usize {
        self.state().queued
    }
}

impl<T> State<T> {
    fn release(&mut self, key: u64) {
        let Some(k) = self.keys.get_mut(&key) else { return };
        if k.held {
            self.holding -= 1;
        }
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
        assert_eq!(lane.push(2, "b1"), Pushed::StartDrainer);
        assert_eq!(lane.push(3, "c1"), Pushed::Queued, "limit reached");
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
        assert_eq!(lane.push(3, 3), Pushed::Queued);
        assert_eq!(lane.push(4, 4), Pushed::Full);
        assert_eq!(lane.next(None), Some((1, 1)));
        assert_eq!(lane.next(Some(1)), Some((2, 2)));
        assert_eq!(lane.next(Some(2)), Some((3, 3)));
        assert_eq!(lane.next(Some(3)), None);
        assert_eq!(lane.waiting(), 0);
    }
}
