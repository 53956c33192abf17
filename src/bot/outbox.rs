//! The way into one connection for calls: its channel, and a writer that lets the calling
//! worker put a call on the socket itself.
//!
//! A reply sent through the channel wakes the reactor just to write it; when events arrive
//! one by one that wake-up is a large part of what an event costs. So a worker first tries
//! to write the call straight to the socket, without waiting: it succeeds when the socket
//! takes the frame at once and nothing is queued ahead of it. Otherwise the call goes
//! through the channel as before, and the calls behind it follow it there, so the order in
//! which calls were sent is the order they reach the other end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Call, Reply};

/// Calls a connection's channel holds before senders wait for room.
pub const CHANNEL_CAPACITY: usize = 1024;

/// Writes a call to a connection's socket at once, from any thread.
pub trait DirectWrite: Send + Sync + std::fmt::Debug {
    /// Writes `call` now if the socket takes it without waiting and `queued` (calls in the
    /// channel not yet written) is zero; gives it back otherwise.
    fn try_write(&self, call: Call, queued: &AtomicUsize) -> Result<(), Call>;
}

/// One connection's way in for calls.
#[derive(Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Call>,
    /// Calls given to the channel that the connection has not written (or dropped) yet: a
    /// direct write must not overtake them.
    queued: AtomicUsize,
    /// The connection's writer while it is up.
    writer: RwLock<Option<Arc<dyn DirectWrite>>>,
    /// Turns a caller's parameters into what the protocol sends (see [`Outbox::call`]).
    prepare: fn(Value) -> Value,
}

impl Outbox {
    /// A new outbox whose calls' parameters are `prepare`d, and the receiving end its
    /// connection takes calls from.
    pub fn new(prepare: fn(Value) -> Value) -> (Arc<Outbox>, mpsc::Receiver<Call>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (Arc::new(Outbox { tx, queued: AtomicUsize::new(0), writer: RwLock::new(None), prepare }), rx)
    }

    /// The call of `action` with `params`, prepared and written as JSON text here, on the
    /// caller's thread: the tree is built, read and freed by one thread, and the connection
    /// copies the text and frees one block, not a tree. (A block freed by another thread than
    /// the one that allocated it takes the allocator's lock for that thread, which the
    /// connection would then contend for with every worker.)
    pub fn call(&self, action: &str, params: Value, reply: Reply, deadline: Instant) -> Call {
        Call { action: action.to_owned(), params: json_text(&(self.prepare)(params)), reply, deadline }
    }

    /// Lets callers write to `writer` directly (a connection is up).
    pub fn attach(&self, writer: Arc<dyn DirectWrite>) {
        *self.writer.write().unwrap_or_else(PoisonError::into_inner) = Some(writer);
    }

    /// Calls go through the channel only (the connection is gone).
    pub fn detach(&self) {
        self.writer.write().unwrap_or_else(PoisonError::into_inner).take();
    }

    /// The connection took a call from the channel and has written or dropped it.
    pub fn taken(&self) {
        // Never below zero, whatever a caller miscounts.
        let _ = self.queued.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Hands `call` to the connection from a worker thread: written at once when the socket
    /// takes it, else queued (waiting for room when the channel is full). `Err` gives the call
    /// back when the connection is closed.
    pub fn send_blocking(&self, call: Call) -> Result<(), Call> {
        let writer = self.writer.read().unwrap_or_else(PoisonError::into_inner).clone();
        let call = match writer {
            Some(w) if self.queued.load(Ordering::Acquire) == 0 => match w.try_write(call, &self.queued) {
                Ok(()) => return Ok(()),
                Err(call) => call,
            },
            _ => call,
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        let refused = match self.tx.try_send(call) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(call)) => self.tx.blocking_send(call).err().map(|e| e.0),
            Err(mpsc::error::TrySendError::Closed(call)) => Some(call),
        };
        match refused {
            Some(call) => {
                self.taken();
                Err(call)
            }
            None => Ok(()),
        }
    }

    /// Queues `call` for the connection from async code. `Err` gives it back when the
    /// connection is closed.
    pub async fn send(&self, call: Call) -> Result<(), Call> {
        // Counted only once there is room: a caller that gives up while waiting for room
        // (a timeout around this future) must leave nothing counted.
        let Ok(permit) = self.tx.reserve().await else { return Err(call) };
        self.queued.fetch_add(1, Ordering::AcqRel);
        permit.send(call);
        Ok(())
    }
}

/// `value` as JSON text.
pub fn json_text(value: &Value) -> Box<RawValue> {
    // Writing a `Value` cannot fail: its keys are strings and its numbers finite.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::{Detached, Reply};
    use std::time::{Duration, Instant};

    fn call() -> Call {
        Call {
            action: "send_msg".into(),
            params: RawValue::NULL.to_owned(),
            reply: Reply::Detached(Detached::new(|_| {})),
            deadline: Instant::now() + Duration::from_secs(5),
        }
    }

    /// `Bot::call_within` wraps `Outbox::send` in a timeout: a caller that gives up while the
    /// channel is full must not leave `queued` counted, or direct writes stop for good.
    #[test]
    fn a_send_given_up_while_waiting_for_room_leaves_nothing_counted() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (outbox, mut rx) = Outbox::new(std::convert::identity);
            for _ in 0..CHANNEL_CAPACITY {
                outbox.send(call()).await.unwrap();
            }
            let gave_up = tokio::time::timeout(Duration::from_millis(20), outbox.send(call())).await;
            assert!(gave_up.is_err(), "the channel is full: the caller times out waiting for room");
            // The connection takes every call in the channel.
            while rx.try_recv().is_ok() {
                outbox.taken();
            }
            assert_eq!(outbox.queued.load(Ordering::SeqCst), 0, "nothing is queued, yet direct writes stay off");
        });
    }
}
