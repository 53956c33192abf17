//! One connected client: pushing events, taking in what the server noted, and matching replies to
//! events. The same for every protocol: the server's tasks answer the client and turn each message it
//! sends into a [`Note`].

use std::pin::pin;
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Connected, Note};
use crate::wire::EventTemplate;

/// Notes taken from the channel at once.
const NOTE_BATCH: usize = 256;

/// A connected client and the bookkeeping shared by all phases of a run.
pub struct Session {
    /// What the server's tasks noted: replies, malformed input, the event socket ending.
    notes: mpsc::UnboundedReceiver<Note>,
    /// Notes taken from the channel and not yet handled.
    batch: Vec<Note>,
    /// Outgoing event frames, written by the writer task so that reading never waits on writing.
    out: mpsc::UnboundedSender<Message>,
    /// The task that writes `out` to the event socket.
    writer: JoinHandle<()>,
    /// Builds the event frames.
    events: EventTemplate,
    /// How long to wait for outstanding replies once nothing more is being sent.
    timeout: Duration,
    /// Sequence number of the next event.
    next_seq: u64,
    /// Input from the client that could not be read and was skipped.
    pub malformed: u64,
    /// Why the event socket ended, once it has.
    pub closed: Option<String>,
}

/// The result of sending one batch of events.
#[derive(Debug)]
pub struct Outcome {
    /// Events sent.
    pub sent: u64,
    /// Replies matched to a sent event, each event at most once.
    pub matched: u64,
    /// Replies with no number, a number of no sent event, or a number already matched.
    pub unexpected: u64,
    /// Latency of each matched event in microseconds, in the order the replies arrived.
    pub latencies_us: Vec<u32>,
    /// From the first send to the last matched reply.
    pub seconds: f64,
    /// Latency mode: how late each event was queued after its scheduled time, in µs.
    pub send_lag_us: Vec<u32>,
    /// Whether the phase gave up waiting for replies.
    pub timed_out: bool,
}

impl Outcome {
    /// Sent events that got no reply.
    pub fn missing(&self) -> u64 {
        self.sent - self.matched
    }
}

impl Session {
    /// Takes over a connected event socket and the server's notes; events will be built from `events`.
    pub fn new(
        socket: Connected,
        notes: mpsc::UnboundedReceiver<Note>,
        events: EventTemplate,
        timeout: Duration,
    ) -> Self {
        Session {
            notes,
            batch: Vec::with_capacity(NOTE_BATCH),
            out: socket.frames,
            writer: socket.writer,
            events,
            timeout,
            next_seq: 1,
            malformed: 0,
            closed: None,
        }
    }

    /// Queues an event frame.
    fn send(&self, frame: String) {
        // A failed send means the writer is gone, which the reading side reports.
        let _ = self.out.send(Message::text(frame));
    }

    /// Takes in notes for `time` without sending events (the server answers calls meanwhile).
    pub async fn idle(&mut self, time: Duration) {
        let mut tracker = Tracker::new(self.next_seq, 0, Sends::Recorded(Vec::new()));
        let mut until = pin!(sleep(time));
        while self.closed.is_none() {
            tokio::select! {
                n = self.notes.recv_many(&mut self.batch, NOTE_BATCH) => self.on_notes(n, &mut tracker),
                () = &mut until => break,
            }
        }
    }

    /// Sends `count` events keeping at most `window` unanswered, until all are answered or nothing
    /// could be sent for the timeout.
    pub async fn window(&mut self, count: u64, window: u64) -> Outcome {
        let mut t = Tracker::new(self.next_seq, count, Sends::Recorded(Vec::with_capacity(count as usize)));
        self.next_seq += count;
        let start = Instant::now();
        let mut last_send = start;
        // Reset only when it fires, rather than on every send.
        let mut deadline = pin!(sleep_until((start + self.timeout).into()));
        let mut timed_out = false;
        while self.closed.is_none() {
            while t.sent < count && t.sent - t.matched < window {
                self.send(self.events.frame(t.first + t.sent));
                last_send = Instant::now();
                t.record_send(last_send);
            }
            if t.matched == count {
                break;
            }
            tokio::select! {
                n = self.notes.recv_many(&mut self.batch, NOTE_BATCH) => self.on_notes(n, &mut t),
                () = &mut deadline => {
                    if last_send.elapsed() >= self.timeout {
                        timed_out = true;
                        break;
                    }
                    deadline.as_mut().reset((last_send + self.timeout).into());
                }
            }
        }
        t.outcome(start, timed_out)
    }

    /// Sends `count` events at `rate` per second regardless of replies, then waits up to the timeout
    /// for the remaining replies. Latency counts from each event's scheduled send time.
    ///
    /// The schedule is kept by a thread sleeping with the OS timer's precision (tens of µs, see
    /// `main`'s timer slack) rather than by tokio's millisecond timer, whose lateness would be counted
    /// as latency. How late the pacer itself was is returned as `send_lag_us`.
    pub async fn paced(&mut self, count: u64, rate: f64) -> Outcome {
        let schedule = Schedule { start: Instant::now(), nanos_per_event: 1e9 / rate };
        let mut t = Tracker::new(self.next_seq, count, Sends::Scheduled(schedule));
        self.next_seq += count;
        let (stop, stopped) = std_mpsc::channel::<()>();
        let (done, mut sending_done) = oneshot::channel::<Instant>();
        let pacer = {
            let (out, events, first) = (self.out.clone(), self.events.clone(), t.first);
            std::thread::spawn(move || {
                let lags = pace(&out, &events, first, count, schedule, &stopped);
                let _ = done.send(Instant::now());
                lags
            })
        };
        // Armed once everything is sent; never polled before.
        let mut deadline = pin!(sleep(self.timeout));
        let mut all_sent = false;
        let mut timed_out = false;
        while self.closed.is_none() && t.matched < count {
            tokio::select! {
                n = self.notes.recv_many(&mut self.batch, NOTE_BATCH) => self.on_notes(n, &mut t),
                at = &mut sending_done, if !all_sent => {
                    all_sent = true;
                    deadline.as_mut().reset((at.unwrap_or_else(|_| Instant::now()) + self.timeout).into());
                }
                () = &mut deadline, if all_sent => {
                    timed_out = true;
                    break;
                }
            }
        }
        drop(stop);
        // The pacer only fails to return if it panicked, which cannot happen short of OOM.
        let send_lag_us = pacer.join().unwrap_or_default();
        t.sent = send_lag_us.len() as u64;
        Outcome { send_lag_us, ..t.outcome(schedule.start, timed_out) }
    }

    /// Handles the `n` notes just taken into the batch (none: the server is gone).
    fn on_notes(&mut self, n: usize, t: &mut Tracker) {
        if n == 0 {
            self.closed = Some("the server stopped".into());
        }
        for note in self.batch.drain(..) {
            match note {
                Note::Reply { number, at } => t.on_reply(number, at),
                Note::Malformed => self.malformed += 1,
                Note::Closed(why) => self.closed = Some(why),
            }
        }
    }

    /// Flushes what is queued, closes the event socket and waits briefly for the writer.
    pub async fn close(self) {
        let Session { out, writer, .. } = self;
        let _ = out.send(Message::Close(None));
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }
}

/// Queues events `first..first + count` at their scheduled times until done or `stop` is dropped;
/// returns how late (µs) each queued event was.
fn pace(
    out: &mpsc::UnboundedSender<Message>,
    events: &EventTemplate,
    first: u64,
    count: u64,
    schedule: Schedule,
    stop: &std_mpsc::Receiver<()>,
) -> Vec<u32> {
    let mut lags = Vec::with_capacity(count as usize);
    for k in 0..count {
        let due = schedule.due(k);
        let wait = due.saturating_duration_since(Instant::now());
        let stopped = if wait.is_zero() {
            stop.try_recv() != Err(TryRecvError::Empty)
        } else {
            stop.recv_timeout(wait) != Err(RecvTimeoutError::Timeout)
        };
        // Taken before queueing: once the runtime thread is woken it may preempt this one.
        let lag = micros(Instant::now().saturating_duration_since(due));
        if stopped || out.send(Message::text(events.frame(first + k))).is_err() {
            break;
        }
        lags.push(lag);
    }
    lags
}

/// `d` in whole microseconds, saturating.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Evenly spaced send times.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// When event 0 is due.
    start: Instant,
    /// The spacing between events.
    nanos_per_event: f64,
}

impl Schedule {
    /// When the `k`th event is due.
    fn due(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos((k as f64 * self.nanos_per_event) as u64)
    }
}

/// When the events of a phase were sent.
enum Sends {
    /// The send time of each event sent so far, in order.
    Recorded(Vec<Instant>),
    /// Each event was sent when it was due.
    Scheduled(Schedule),
}

/// Which events of one phase were sent when and which were answered.
struct Tracker {
    /// Sequence number of the phase's first event.
    first: u64,
    /// Number of events in the phase.
    count: u64,
    /// Send times.
    sends: Sends,
    /// Whether each event was answered.
    replied: Vec<bool>,
    /// Events sent.
    sent: u64,
    /// Replies matched.
    matched: u64,
    /// Replies not matched.
    unexpected: u64,
    /// Latency of each matched reply, in µs.
    latencies_us: Vec<u32>,
    /// When the last matched reply arrived.
    last_reply: Option<Instant>,
}

impl Tracker {
    /// Tracks events `first..first + count`.
    fn new(first: u64, count: u64, sends: Sends) -> Self {
        let len = count as usize;
        Tracker {
            first,
            count,
            sends,
            replied: vec![false; len],
            sent: 0,
            matched: 0,
            unexpected: 0,
            latencies_us: Vec::with_capacity(len),
            last_reply: None,
        }
    }

    /// Records that the next event was sent at `at`.
    fn record_send(&mut self, at: Instant) {
        if let Sends::Recorded(times) = &mut self.sends {
            times.push(at);
        }
        self.sent += 1;
    }

    /// When the `k`th event was sent, if it has been by `now`.
    fn sent_at(&self, k: u64, now: Instant) -> Option<Instant> {
        match &self.sends {
            Sends::Recorded(times) => times.get(k as usize).copied(),
            Sends::Scheduled(schedule) => Some(schedule.due(k)).filter(|due| *due <= now),
        }
    }

    /// Counts a reply carrying `number`, received at `now`.
    fn on_reply(&mut self, number: Option<u64>, now: Instant) {
        let index = number.and_then(|n| n.checked_sub(self.first)).filter(|&k| k < self.count);
        let Some((k, sent)) = index.and_then(|k| Some((k, self.sent_at(k, now)?))) else {
            self.unexpected += 1;
            return;
        };
        if std::mem::replace(&mut self.replied[k as usize], true) {
            self.unexpected += 1;
            return;
        }
        self.matched += 1;
        self.latencies_us.push(micros(now.saturating_duration_since(sent)));
        self.last_reply = Some(now);
    }

    /// The phase's result, timed from `start`.
    fn outcome(self, start: Instant, timed_out: bool) -> Outcome {
        Outcome {
            sent: self.sent,
            matched: self.matched,
            unexpected: self.unexpected,
            latencies_us: self.latencies_us,
            send_lag_us: Vec::new(),
            seconds: self.last_reply.map_or(0.0, |at| at.saturating_duration_since(start).as_secs_f64()),
            timed_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_matches_each_event_once() {
        let start = Instant::now();
        let mut t = Tracker::new(10, 3, Sends::Recorded(Vec::new()));
        t.record_send(start);
        t.record_send(start);
        t.on_reply(Some(11), start + Duration::from_micros(250));
        t.on_reply(Some(11), start); // duplicate
        t.on_reply(Some(12), start); // not sent yet
        t.on_reply(Some(9), start); // before the phase
        t.on_reply(None, start); // no number
        t.on_reply(Some(10), start + Duration::from_millis(2));
        let o = t.outcome(start, false);
        assert_eq!((o.sent, o.matched, o.unexpected, o.missing()), (2, 2, 4, 0));
        assert_eq!(o.latencies_us, vec![250, 2000]);
        assert!((o.seconds - 0.002).abs() < 1e-9);
    }

    #[test]
    fn scheduled_events_count_from_their_due_time() {
        let start = Instant::now();
        let schedule = Schedule { start, nanos_per_event: 2e6 };
        assert_eq!(schedule.due(3), start + Duration::from_millis(6));
        let mut t = Tracker::new(1, 5, Sends::Scheduled(schedule));
        t.on_reply(Some(3), start + Duration::from_millis(5));
        t.on_reply(Some(5), start + Duration::from_millis(5)); // due at 8 ms: not sent yet
        t.sent = 5;
        let o = t.outcome(start, true);
        assert_eq!((o.matched, o.unexpected, o.missing()), (1, 1, 4));
        assert_eq!(o.latencies_us, vec![1000]);
    }
}
