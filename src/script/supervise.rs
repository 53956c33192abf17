//! Per-script supervision: counters for `rhaibot status`, and quarantine of a script whose
//! callbacks keep failing, so one broken script cannot flood the log or the workers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Returned normally.
    Ok,
    /// Threw, or the host panicked.
    Error,
    /// Stopped at its deadline or operation budget.
    Timeout,
}

/// Counters and quarantine state of one script version.
#[derive(Debug)]
pub struct Supervisor {
    callbacks: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    dropped: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    quarantined: AtomicBool,
    recent_failures: Mutex<VecDeque<Instant>>,
    policy: Quarantine,
    /// Callbacks running now, by name: shutdown says which it had to abandon.
    running: Mutex<Vec<Arc<str>>>,
}

/// Counts a callback as running while alive (see [`Supervisor::enter`]).
#[must_use = "the callback counts as running while this guard lives"]
pub struct Active<'s> {
    supervisor: &'s Supervisor,
    who: Arc<str>,
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        let mut running = self.supervisor.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = running.iter().position(|w| Arc::ptr_eq(w, &self.who)) {
            running.swap_remove(i);
        }
    }
}

/// When a script is quarantined: `failures` failed callbacks within `window`.
#[derive(Debug, Clone, Copy)]
pub struct Quarantine {
    /// Failures (errors or timeouts) that trigger quarantine; 0 disables it.
    pub failures: usize,
    /// The window they must fall in.
    pub window: Duration,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Serialize)]
pub struct Counters {
    /// Callbacks run.
    pub callbacks: u64,
    /// Callbacks that threw or panicked.
    pub errors: u64,
    /// Callbacks stopped at their limits.
    pub timeouts: u64,
    /// Events dropped because the script's queue was full.
    pub dropped: u64,
    /// Mean callback time, microseconds.
    pub avg_us: u64,
    /// Longest callback time, microseconds.
    pub max_us: u64,
}

impl Supervisor {
    /// Fresh counters under `policy`.
    pub fn new(policy: Quarantine) -> Supervisor {
        Supervisor {
            callbacks: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
            quarantined: AtomicBool::new(false),
            recent_failures: Mutex::new(VecDeque::new()),
            policy,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Marks the callback `who` as running until the guard drops.
    pub fn enter(&self, who: &Arc<str>) -> Active<'_> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).push(who.clone());
        Active { supervisor: self, who: who.clone() }
    }

    /// The callbacks running now.
    pub fn running(&self) -> Vec<Arc<str>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records a finished callback; returns true when this failure put the script into
    /// quarantine (the caller logs it once).
    pub fn record(&self, outcome: Outcome, took: Duration) -> bool {
        self.record_at(outcome, took, Instant::now())
    }

    fn record_at(&self, outcome: Outcome, took: Duration, now: Instant) -> bool {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        match outcome {
            Outcome::Ok => return false,
            Outcome::Error => self.errors.fetch_add(1, Ordering::Relaxed),
            Outcome::Timeout => self.timeouts.fetch_add(1, Ordering::Relaxed),
        };
        if self.policy.failures == 0 {
            return false;
        }
        let mut recent = self.recent_failures.lock().unwrap_or_else(PoisonError::into_inner);
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > self.policy.window) {
            recent.pop_front();
        }
        recent.len() >= self.policy.failures && !self.quarantined.swap(true, Ordering::AcqRel)
    }

    /// Counts an event dropped at a full queue.
    pub fn dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Whether callbacks are suspended.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Lifts the quarantine (an explicit `rhaibot resume`).
    pub fn resume(&self) {
        self.recent_failures.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.quarantined.store(false, Ordering::Release);
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        let callbacks = self.callbacks.load(Ordering::Relaxed);
        Counters {
            callbacks,
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            avg_us: self.total_us.load(Ordering::Relaxed).checked_div(callbacks).unwrap_or(0),
            max_us: self.max_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_once_after_n_failures_in_the_window_and_resumes() {
        let s = Supervisor::new(Quarantine { failures: 3, window: Duration::from_secs(60) });
        let ms = Duration::from_millis(1);
        assert!(!s.record(Outcome::Error, ms));
        assert!(!s.record(Outcome::Ok, ms));
        assert!(!s.record(Outcome::Timeout, ms));
        assert!(s.record(Outcome::Error, ms), "third failure quarantines");
        assert!(!s.record(Outcome::Error, ms), "and says so only once");
        assert!(s.is_quarantined());
        s.resume();
        assert!(!s.is_quarantined());
        let c = s.counters();
        assert_eq!((c.callbacks, c.errors, c.timeouts), (5, 3, 1));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let s = Supervisor::new(Quarantine { failures: 2, window: Duration::from_secs(10) });
        let t0 = Instant::now();
        assert!(!s.record_at(Outcome::Error, Duration::ZERO, t0));
        assert!(!s.record_at(Outcome::Error, Duration::ZERO, t0 + Duration::from_secs(11)), "the first one aged out");
        assert!(s.record_at(Outcome::Error, Duration::ZERO, t0 + Duration::from_secs(12)));
    }
}
