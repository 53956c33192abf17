//! One OneBot 11 WebSocket conversation, whatever opened it (forward client or reverse server):
//! frames in (events to the sink, responses matched to pending calls by `echo`), calls out,
//! and a watchdog that ends the session when nothing arrived for three heartbeat intervals.
//!
//! Calls reach the socket two ways: through the connection's channel, written by this task,
//! or straight from the worker that sends them ([`Writer`] as the outbox's [`DirectWrite`]),
//! which spares the reactor a wake-up per reply. Both write under one lock, and a direct
//! write never overtakes a call queued before it.
//!
//! Generic over the socket's halves so the tungstenite client and the axum server share it.

use std::collections::VecDeque;
use std::fmt::Display;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::payload::read_head;
use crate::adapter::EventSink;
use crate::adapter::slots::Field;
use crate::bot::{Bot, Call, CallError, DirectWrite, Outbox, Reply, connection_id};
use crate::event::Raw;
use crate::logsafe::RateLimit;
pub use crate::logsafe::preview;

/// What the socket delivered.
pub enum Incoming {
    /// A text or binary frame.
    Data(Bytes),
    /// A ping, pong or other control frame: the peer is alive.
    Alive,
    /// The peer closed, or the socket failed.
    Closed(String),
}

/// Why a session ended.
pub enum End {
    /// The runtime is stopping (or the bot's call channel closed).
    Shutdown,
    /// The connection is gone; the caller may reconnect.
    Lost(String),
}

/// Where a session takes calls from: the channel's receiving end and its outbox.
pub struct Calls<'a> {
    /// The channel calls queue in.
    pub rx: &'a mut mpsc::Receiver<Call>,
    /// The outbox senders use, which this session lets write directly while it runs.
    pub outbox: &'a Outbox,
}

/// Calls sent and not yet answered, by echo: action, where the result goes, when it was sent.
type Pending = foldhash::HashMap<u64, (String, Reply, Instant)>;

/// How long a closing session waits for answers to calls already sent.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Most calls written before one flush.
const WRITE_BATCH: usize = 64;

/// Most frames already read that are handled before the calls they caused are written.
const READ_BATCH: usize = 64;

/// The socket's writing half and the calls written to it, shared by the session task and the
/// workers that write their calls directly.
struct Writer {
    state: Mutex<WriterState>,
    /// Tells the session task that a direct write left a frame to flush, or failed.
    notify: Arc<Notify>,
    /// Wakes `notify`: the waker direct writes poll the sink with.
    waker: Waker,
}

struct WriterState {
    sink: Pin<Box<dyn Sink<String, Error = String> + Send>>,
    /// Frames encoded by the session task that the sink has not taken yet, oldest first.
    outgoing: VecDeque<String>,
    /// The sink holds frames it has not flushed.
    unflushed: bool,
    pending: Pending,
    next_echo: u64,
    /// Why a direct write failed, for the session task to end on.
    failed: Option<String>,
    /// The session is ending: no more direct writes.
    closed: bool,
}

/// Wakes the session task through its [`Notify`].
struct NotifyWaker(Arc<Notify>);

impl Wake for NotifyWaker {
    fn wake(self: Arc<Self>) {
        self.0.notify_one();
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    fn new(sink: Pin<Box<dyn Sink<String, Error = String> + Send>>) -> Writer {
        let notify = Arc::new(Notify::new());
        let waker = Waker::from(Arc::new(NotifyWaker(notify.clone())));
        let state = WriterState {
            sink,
            outgoing: VecDeque::new(),
            unflushed: false,
            pending: Pending::default(),
            next_echo: 0,
            failed: None,
            closed: false,
        };
        Writer { state: Mutex::new(state), notify, waker }
    }

    fn lock(&self) -> MutexGuard<'_, WriterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the outgoing frames and flushes, by `by` at the latest.
    async fn flush(&self, by: Instant) -> Result<(), String> {
        let write = std::future::poll_fn(|cx| self.lock().poll_write(cx));
        match tokio::time::timeout_at(by, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send failed: {}", crate::logsafe::short(&e))),
            Err(_) => Err("a write stalled: the other end stopped reading".into()),
        }
    }

    /// Stops direct writes and closes the socket's writing half.
    async fn close(&self) {
        self.lock().closed = true;
        let _ = std::future::poll_fn(|cx| self.lock().sink.as_mut().poll_close(cx)).await;
    }
}

impl WriterState {
    /// The frame for `call`, remembered as pending under a fresh echo.
    fn encode(&mut self, call: Call) -> String {
        self.next_echo += 1;
        let frame = encode_call(&call.action, &call.params, self.next_echo);
        self.pending.insert(self.next_echo, (call.action, call.reply, Instant::now()));
        frame
    }

    /// Gives the outgoing frames to the sink and flushes it.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        while !self.outgoing.is_empty() {
            ready!(self.sink.as_mut().poll_ready(cx))?;
            if let Some(frame) = self.outgoing.pop_front() {
                self.sink.as_mut().start_send(frame)?;
                self.unflushed = true;
            }
        }
        if self.unflushed {
            ready!(self.sink.as_mut().poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl DirectWrite for Writer {
    fn try_write(&self, call: Call, queued: &AtomicUsize) -> Result<(), Call> {
        let Ok(mut w) = self.state.try_lock() else { return Err(call) };
        let behind = w.unflushed || !w.outgoing.is_empty() || queued.load(Ordering::Acquire) > 0;
        // Calls still unanswered mean a busy connection, whose task is awake anyway and writes
        // queued calls many to a system call; a direct write pays off when the reactor sleeps.
        let busy = !w.pending.is_empty();
        if w.closed || w.failed.is_some() || behind || busy || call.given_up(std::time::Instant::now()) {
            return Err(call);
        }
        let mut cx = Context::from_waker(&self.waker);
        if !matches!(w.sink.as_mut().poll_ready(&mut cx), Poll::Ready(Ok(()))) {
            return Err(call);
        }
        let frame = w.encode(call);
        let sent = w.sink.as_mut().start_send(frame).map(|()| {
            w.unflushed = true;
            w.sink.as_mut().poll_flush(&mut cx)
        });
        match sent {
            Ok(Poll::Ready(Ok(()))) => w.unflushed = false,
            // The session task flushes the rest when the socket takes it.
            Ok(Poll::Pending) => self.notify.notify_one(),
            Ok(Poll::Ready(Err(e))) | Err(e) => {
                w.failed = Some(e);
                self.notify.notify_one();
            }
        }
        Ok(())
    }
}

/// Serves one connection until it ends. `calls` is `None` for an event-only socket;
/// `on_frame` runs for every data frame (the forward client resets its back-off there).
#[allow(clippy::too_many_arguments)]
pub async fn run<S, K>(
    bot: &Arc<Bot>,
    max_frame_bytes: usize,
    mut rx: S,
    tx: K,
    mut calls: Option<Calls<'_>>,
    sink: &EventSink,
    shutdown: &CancellationToken,
    mut on_frame: impl FnMut(),
) -> End
where
    S: Stream<Item = Incoming> + Unpin,
    K: Sink<String> + Send + 'static,
    K::Error: Display,
{
    let writer = Arc::new(Writer::new(Box::pin(tx.sink_map_err(|e| e.to_string()))));
    if let Some(c) = &calls {
        c.outbox.attach(writer.clone());
    }
    let via = connection_id();
    let mut warnings = RateLimit::per_connection();
    let mut heartbeat: Option<Duration> = None;
    let mut last_frame = Instant::now();
    // Unanswered calls nobody waits for time out here.
    let mut sweep = tokio::time::interval(bot.call_timeout.max(Duration::from_millis(100)));
    // At shutdown, answers to calls already sent still get a moment to arrive.
    let mut closing: Option<Instant> = None;
    let end = loop {
        if closing.is_some() && writer.lock().pending.is_empty() {
            writer.close().await;
            break End::Shutdown;
        }
        let grace_over = async {
            match closing {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let watchdog = async {
            match heartbeat {
                Some(interval) => tokio::time::sleep_until(last_frame + interval * 3).await,
                None => std::future::pending().await,
            }
        };
        let next_call = async {
            match calls.as_mut() {
                Some(c) => c.rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled(), if closing.is_none() => closing = Some(Instant::now() + SHUTDOWN_GRACE),
            _ = grace_over => {
                writer.close().await;
                break End::Shutdown;
            }
            _ = watchdog => break End::Lost("no frame for 3 heartbeat intervals".into()),
            _ = sweep.tick() => expire(bot, &writer),
            _ = writer.notify.notified() => {
                let failed = writer.lock().failed.take();
                if let Some(e) = failed {
                    break End::Lost(format!("send failed: {}", crate::logsafe::short(&e)));
                }
                if let Err(why) = writer.flush(write_by(bot, heartbeat, last_frame)).await {
                    break End::Lost(why);
                }
            }
            call = next_call => {
                let Some(call) = call else { break End::Shutdown };
                let Some(c) = calls.as_mut() else { continue };
                if writer.lock().pending.len() >= 1024 {
                    expire(bot, &writer);
                }
                // Calls that queued up meanwhile go out together: one write for the batch.
                let mut late = Vec::new();
                {
                    let mut w = writer.lock();
                    let mut next = Some(call);
                    let mut taken = 0;
                    while let Some(call) = next.take() {
                        if call.given_up(std::time::Instant::now()) {
                            // The caller saw it fail already: never send it late.
                            late.push(call);
                        } else {
                            let frame = w.encode(call);
                            w.outgoing.push_back(frame);
                        }
                        // Counted down under the lock, after the frame is queued: a direct
                        // write that sees no call queued comes after this one.
                        c.outbox.taken();
                        taken += 1;
                        if taken < WRITE_BATCH {
                            next = c.rx.try_recv().ok();
                        }
                    }
                }
                for call in late {
                    call.reply.send(Err(CallError::Timeout { action: call.action, timeout: bot.call_timeout }));
                }
                if let Err(why) = writer.flush(write_by(bot, heartbeat, last_frame)).await {
                    break End::Lost(why);
                }
            }
            frame = rx.next() => {
                let (mut frame, mut read) = (frame, 1);
                let lost = loop {
                    match frame {
                        None => break Some("closed by the other end".to_owned()),
                        Some(Incoming::Closed(why)) => break Some(crate::logsafe::short(&why)),
                        Some(Incoming::Alive) => last_frame = Instant::now(),
                        Some(Incoming::Data(bytes)) => {
                            last_frame = Instant::now();
                            on_frame();
                            if bytes.len() > max_frame_bytes {
                                crate::warn_limited!(warnings, bot = %bot.name, size = bytes.len(), limit = max_frame_bytes, "oversized frame skipped");
                            } else {
                                handle_frame(bot, &bytes, &writer, &mut heartbeat, sink, via, &mut warnings);
                            }
                        }
                    }
                    // Frames already read join this one before the loop turns to writing: the
                    // replies to a burst then leave together, in one write.
                    if read == READ_BATCH {
                        break None;
                    }
                    match rx.next().now_or_never() {
                        Some(next) => (frame, read) = (next, read + 1),
                        None => break None,
                    }
                };
                if let Some(why) = lost {
                    break End::Lost(why);
                }
            }
        }
    };
    if let Some(c) = &calls {
        c.outbox.detach();
    }
    let pending: Vec<_> = {
        let mut w = writer.lock();
        w.closed = true;
        w.pending.drain().collect()
    };
    for (_, (action, reply, _)) in pending {
        fail(reply, &action, bot);
    }
    end
}

/// A peer that stopped reading blocks a write: it is given up by the write timeout, or sooner
/// when the watchdog would have fired meanwhile.
fn write_by(bot: &Bot, heartbeat: Option<Duration>, last_frame: Instant) -> Instant {
    let by = Instant::now() + bot.call_timeout;
    heartbeat.map_or(by, |interval| by.min(last_frame + interval * 3))
}

/// The action frame `{"action", "params", "echo"}`, around the params' text as written.
fn encode_call(action: &str, params: &RawValue, echo: u64) -> String {
    #[derive(serde::Serialize)]
    struct Frame<'a> {
        action: &'a str,
        params: &'a RawValue,
        echo: u64,
    }
    serde_json::to_string(&Frame { action, params, echo }).unwrap_or_default()
}

/// Forgets callers that gave up, and times out calls nobody waits for.
fn expire(bot: &Bot, writer: &Writer) {
    let now = Instant::now();
    let expired: Vec<_> = writer
        .lock()
        .pending
        .extract_if(|_, (_, reply, sent)| reply.is_abandoned() || now.duration_since(*sent) > bot.call_timeout)
        .collect();
    for (_, (action, reply, _)) in expired {
        reply.send(Err(CallError::Timeout { action, timeout: bot.call_timeout }));
    }
}

fn handle_frame(
    bot: &Arc<Bot>,
    bytes: &[u8],
    writer: &Writer,
    heartbeat: &mut Option<Duration>,
    sink: &EventSink,
    via: u64,
    warnings: &mut RateLimit,
) {
    // Only the fields decoding reads are built; an event keeps the rest as text.
    let head = match read_head(bytes) {
        Ok(head) => head,
        Err(e) => {
            crate::warn_limited!(warnings, bot = %bot.name, "malformed frame skipped: {e}: {}", preview(bytes));
            return;
        }
    };
    match head {
        Some(head) if head.post_type.is_some() => {
            if head.meta_event_type.as_ref().and_then(Field::as_str) == Some("heartbeat") {
                *heartbeat =
                    head.interval.as_ref().and_then(Field::as_u64).filter(|ms| *ms > 0).map(Duration::from_millis);
            }
            match super::decode(bot, head, Raw::text(bytes), via) {
                Ok(ev) => sink(ev),
                Err(e) => crate::warn_limited!(warnings, bot = %bot.name, "{e}; skipped"),
            }
        }
        Some(mut head) if head.echo.is_some() => {
            let echo = head.echo.take();
            let found = echo_id(&echo).and_then(|id| writer.lock().pending.remove(&id));
            let Some((action, reply, _)) = found else {
                let echo = echo.map_or(Value::Null, Field::into_value);
                let echo = crate::logsafe::short(&echo.to_string());
                crate::warn_limited!(warnings, bot = %bot.name, %echo, "response with unknown echo skipped");
                return;
            };
            let result = head.response().map_err(|(code, message)| CallError::Failed {
                action,
                code,
                message,
                trace_id: None,
                answer: None,
            });
            reply.send(result);
        }
        _ => crate::warn_limited!(warnings, bot = %bot.name, "frame of unknown shape skipped: {}", preview(bytes)),
    }
}

/// The call a response answers: the echo we sent, a number (some implementations send it
/// back as text).
fn echo_id(echo: &Option<Field<'_>>) -> Option<u64> {
    match echo.as_ref()? {
        Field::Other(value) => value.as_u64(),
        Field::Text(text) => text.parse().ok(),
    }
}

/// Answers a call with `NotConnected`.
pub fn fail(reply: Reply, action: &str, bot: &Bot) {
    reply.send(Err(CallError::NotConnected { action: action.to_owned(), bot: bot.name.clone() }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::Detached;
    use serde_json::json;

    /// A sink that records what it was given and can refuse to take more for a while.
    #[derive(Clone, Default)]
    struct Socket {
        written: Arc<Mutex<Vec<String>>>,
        full: Arc<std::sync::atomic::AtomicBool>,
        /// How many frames each flush that had any put on the wire.
        flushed: Arc<Mutex<Vec<usize>>>,
    }

    impl Sink<String> for Socket {
        type Error = String;
        fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
            if self.full.load(Ordering::SeqCst) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(Ok(()))
        }
        fn start_send(self: Pin<&mut Self>, frame: String) -> Result<(), String> {
            self.written.lock().unwrap().push(frame);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            let written = self.written.lock().unwrap().len();
            let mut flushed = self.flushed.lock().unwrap();
            let before: usize = flushed.iter().sum();
            if written > before {
                flushed.push(written - before);
            }
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
    }

    fn call(text: &str) -> Call {
        Call {
            action: "send_msg".into(),
            params: crate::bot::json_text(&super::super::prepare_params(json!({"message": text}))),
            reply: Reply::Detached(Detached::new(|_| {})),
            deadline: std::time::Instant::now() + Duration::from_secs(5),
        }
    }

    fn texts(socket: &Socket) -> Vec<String> {
        let frames = socket.written.lock().unwrap();
        frames
            .iter()
            .map(|f| serde_json::from_str::<Value>(f).unwrap()["params"]["message"][0]["data"]["text"].to_string())
            .collect()
    }

    #[test]
    fn a_direct_write_never_overtakes_a_queued_call() {
        let socket = Socket::default();
        let writer = Writer::new(Box::pin(socket.clone()));
        let queued = AtomicUsize::new(0);

        assert!(writer.try_write(call("1"), &queued).is_ok(), "nothing ahead: written at once");
        assert_eq!(texts(&socket).len(), 1);
        assert_eq!(writer.lock().pending.len(), 1, "its answer is expected");
        // Unanswered, it marks the connection busy: the next call is batched by the session.
        assert!(writer.try_write(call("1b"), &queued).is_err());
        writer.lock().pending.clear();

        // A call waits in the channel: the next one must queue behind it.
        queued.store(1, Ordering::SeqCst);
        assert!(writer.try_write(call("2"), &queued).is_err());
        queued.store(0, Ordering::SeqCst);

        // The session holds encoded frames the socket has not taken: the same.
        let frame = writer.lock().encode(call("3"));
        writer.lock().outgoing.push_back(frame);
        assert!(writer.try_write(call("4"), &queued).is_err());
        writer.lock().outgoing.clear();
        writer.lock().pending.clear();

        // A socket that cannot take a frame now: given back, nothing half written.
        socket.full.store(true, Ordering::SeqCst);
        assert!(writer.try_write(call("5"), &queued).is_err());
        socket.full.store(false, Ordering::SeqCst);
        assert!(writer.try_write(call("6"), &queued).is_ok());
        assert_eq!(texts(&socket), ["\"1\"", "\"6\""]);
        writer.lock().pending.clear();

        // A closing session takes no more.
        writer.lock().closed = true;
        assert!(writer.try_write(call("7"), &queued).is_err());
    }

    /// Frames that arrive together are all handled before the calls they caused are written,
    /// so the replies to a burst leave in one write instead of one each.
    #[test]
    fn replies_to_frames_read_together_leave_together() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            const FRAMES: usize = 20;
            let (outbox, mut rx) = Outbox::new(super::super::prepare_params);
            let bot = Arc::new(Bot::new("t", &super::super::PROTOCOL, Duration::from_secs(5), crate::bot::Link::Channel(outbox.clone())));
            // A script that answers at once: each event's reply is sent while it is dispatched
            // (on the session's own thread here, where a worker would send it in the runtime).
            let answering = outbox.clone();
            let sink: EventSink = Arc::new(move |ev| {
                let done = Reply::Detached(Detached::new(|_| {}));
                let call = answering.call("send_msg", json!({"message": ev.text}), done, std::time::Instant::now() + Duration::from_secs(5));
                assert!(answering.send_blocking(call).is_ok());
            });
            let frames = (0..FRAMES).map(|i| {
                let event = json!({"post_type": "message", "message_type": "private", "user_id": 1, "self_id": 2, "message": format!("m{i}")});
                Incoming::Data(Bytes::from(event.to_string()))
            });
            let socket = Socket::default();
            let shutdown = CancellationToken::new();
            // The peer hangs up once every reply is written.
            let (hang_up, hung_up) = tokio::sync::oneshot::channel::<()>();
            let hung_up = futures_util::stream::once(async move {
                let _ = hung_up.await;
                Incoming::Closed("hung up".into())
            });
            let frames = Box::pin(futures_util::stream::iter(frames).chain(hung_up));
            let calls = Some(Calls { rx: &mut rx, outbox: &outbox });
            let session = run(&bot, 1 << 20, frames, socket.clone(), calls, &sink, &shutdown, || {});
            // Everything is ready at once: a few hundred turns of the runtime are plenty.
            let watch = async {
                for _ in 0..10_000 {
                    if socket.written.lock().unwrap().len() >= FRAMES {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let _ = hang_up.send(());
            };
            let (end, ()) = tokio::join!(session, watch);
            assert!(matches!(end, End::Lost(why) if why == "hung up"));
            let sent: Vec<String> = (0..FRAMES).map(|i| format!("\"m{i}\"")).collect();
            assert_eq!(texts(&socket), sent, "every reply, in order");
            // The first reply goes straight to the idle socket; while it is unanswered (here,
            // for good) the connection counts as busy, so the rest queue and leave together.
            let flushed = socket.flushed.lock().unwrap().clone();
            assert_eq!(flushed, [1, FRAMES - 1], "writes per flush");
        });
    }
}
