//! One script's queue of pending events, with its concurrency limit.
//!
//! Dispatch pushes an event; when fewer than `limit` drainers run for the script, the caller
//! starts one on the worker pool. A drainer takes events until the queue is empty, so under
//! load one pool hand-off serves many events. The queue is bounded: a full queue refuses the
//! event and the caller counts the drop.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// A script's event queue and its running drainers.
#[derive(Debug)]
pub struct Lane<T> {
    state: Mutex<State<T>>,
    limit: usize,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    running: usize,
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
        Lane { state: Mutex::new(State { queue: VecDeque::new(), running: 0 }), limit: limit.max(1), capacity }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item`.
    pub fn push(&self, item: T) -> Pushed {
        let mut s = self.state();
        if s.queue.len() >= self.capacity {
            return Pushed::Full;
        }
        s.queue.push_back(item);
        if s.running < self.limit {
            s.running += 1;
            Pushed::StartDrainer
        } else {
            Pushed::Queued
        }
    }

    /// The next item for a drainer; `None` means the queue is empty and this drainer is done
    /// (it no longer counts as running).
    pub fn next(&self) -> Option<T> {
        let mut s = self.state();
        let item = s.queue.pop_front();
        if item.is_none() {
            s.running -= 1;
        }
        item
    }

    /// A drainer that was counted by [`Pushed::StartDrainer`] could not be started.
    pub fn drainer_not_started(&self) {
        self.state().running -= 1;
    }

    /// Items waiting.
    pub fn waiting(&self) -> usize {
        self.state().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_up_to_limit_drainers_and_bounds_the_queue() {
        let lane = Lane::new(2, 3);
        assert_eq!(lane.push(1), Pushed::StartDrainer);
        assert_eq!(lane.push(2), Pushed::StartDrainer);
        assert_eq!(lane.push(3), Pushed::Queued);
        assert_eq!(lane.push(4), Pushed::Full);
        assert_eq!((lane.next(), lane.next(), lane.next()), (Some(1), Some(2), Some(3)));
        assert_eq!(lane.next(), None); // first drainer done
        assert_eq!(lane.push(5), Pushed::StartDrainer, "one drainer finished, so one may start");
        assert_eq!(lane.next(), Some(5));
        assert_eq!((lane.next(), lane.next()), (None, None));
        assert_eq!(lane.push(6), Pushed::StartDrainer);
        lane.drainer_not_started();
        assert_eq!(lane.push(7), Pushed::StartDrainer);
    }
}
