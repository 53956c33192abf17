//! A fixed pool of worker threads that run script callbacks, fed by one bounded queue.
//!
//! Rhai is synchronous and a callback may block on an API call, so callbacks never run on the
//! async reactor. The queue is bounded: when it is full the newest job is refused and the caller
//! logs and counts the drop, so memory never grows without bound.
//!
//! A callback that waits for a long time (a conversation waiting for the user's answer) runs
//! its wait in [`Pool::blocking`]: a spare thread takes its place for as long as it waits, so
//! waiting callbacks never take the workers other callbacks need. Spares are capped; an idle
//! spare leaves once nobody waits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A unit of work for a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of a worker: deeply nested scripts recurse on the native stack.
pub const STACK_SIZE: usize = 8 << 20;

/// The queue was full; the job was not accepted.
#[derive(Debug)]
pub struct QueueFull;

/// Spare threads at most, beside the workers (one per waiting callback).
pub const MAX_SPARES: usize = 1024;

/// Jobs that [`Pool::submit_soon`] queues closer together than this wake their worker later;
/// one that comes after a longer pause wakes it at once (at 500 events a second, 2 ms apart,
/// there is nothing to gather, and a wake-up later is only later).
const BUSY_GAP: Duration = Duration::from_millis(1);

/// Events handed on behind a deferred wake-up ([`Pool::submit_soon`]) before it is made at once.
const WAKE_AFTER: usize = 16;

/// How long an idle spare stays before it checks whether it is still needed.
const SPARE_IDLE: Duration = Duration::from_secs(5);

/// The worker pool.
#[derive(Debug)]
pub struct Pool {
    /// The queue the workers and spares take jobs from.
    shared: Arc<Shared>,
    /// Held by every thread; the pool's own copy goes at shutdown.
    exit_tx: Mutex<Option<std_mpsc::Sender<()>>>,
    exited: Mutex<std_mpsc::Receiver<()>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    spares: Arc<Mutex<Spares>>,
}

/// The job queue and its sleeping threads.
///
/// A worker with nothing to do sleeps at once. Nothing spins or yields: on a machine with few
/// cores a yielding worker hands its core back and forth with the reactor, a context switch
/// each time, and a worker that watched the queue for 40 µs before sleeping cost Milky and the
/// QQ gateway 2.5–3 µs per event under load while saving OneBot nothing measurable
/// (bench/NOTES.md). The thread that slept last is woken first: its stack and allocator caches
/// are warm, and the others stay asleep.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    /// Jobs queued, for [`Pool::has_queued`] to read without the lock.
    len: AtomicUsize,
    /// 0 when no [`WakeLater`] is on its way; else 1 + the events handed on since it was sent.
    deferred: AtomicUsize,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// False once shut down: nothing more is accepted, and threads leave when it is empty.
    open: bool,
    /// Threads asleep waiting for a job, the most recent last.
    sleepers: Vec<Arc<Sleeper>>,
    /// When [`Pool::submit_soon`] last queued a job.
    last_soon: Option<Instant>,
}

/// A thread asleep in [`Shared::next`].
#[derive(Debug)]
struct Sleeper {
    thread: std::thread::Thread,
    woken: AtomicBool,
}

impl Sleeper {
    fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("jobs", &self.jobs.len()).field("open", &self.open).finish_non_exhaustive()
    }
}

/// What a thread asking for work gets.
enum Next {
    Job(Job),
    /// Nothing came within the idle time.
    Idle,
    /// Shut down and empty.
    Closed,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next job, waiting for one (at most `idle_for`, when given).
    fn next(&self, idle_for: Option<Duration>) -> Next {
        let deadline = idle_for.map(|d| Instant::now() + d);
        let mut q = self.lock();
        loop {
            if let Some(job) = q.jobs.pop_front() {
                self.len.store(q.jobs.len(), Ordering::Release);
                return Next::Job(job);
            }
            if !q.open {
                return Next::Closed;
            }
            let me = Arc::new(Sleeper { thread: std::thread::current(), woken: AtomicBool::new(false) });
            q.sleepers.push(me.clone());
            drop(q);
            let timed_out = loop {
                match deadline {
                    None => std::thread::park(),
                    Some(at) => match at.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => std::thread::park_timeout(left),
                        _ => break true,
                    },
                }
                if me.woken.load(Ordering::Acquire) {
                    break false;
                }
            };
            q = self.lock();
            if timed_out && let Some(i) = q.sleepers.iter().position(|s| Arc::ptr_eq(s, &me)) {
                // Nobody woke it: it leaves the list (once taken off it, it was woken for a job).
                q.sleepers.remove(i);
                if q.jobs.is_empty() {
                    return if q.open { Next::Idle } else { Next::Closed };
                }
            }
        }
    }

    /// Wakes a sleeper for each queued job, as many as sleep.
    fn wake_for_queued(&self) {
        let woken = {
            let mut q = self.lock();
            self.deferred.store(0, Ordering::Relaxed);
            let n = q.jobs.len().min(q.sleepers.len());
            let from = q.sleepers.len() - n;
            q.sleepers.split_off(from)
        };
        for sleeper in woken.iter().rev() {
            sleeper.wake();
        }
    }

    /// Runs jobs until the pool is shut down and empty.
    fn work(&self) {
        while let Next::Job(job) = self.next(None) {
            job();
        }
    }
}

/// Wakes sleepers for the queued jobs when dropped: when its task runs, or when a runtime
/// shutting down drops the task unrun, so a queued job never waits for a wake-up that never
/// comes.
struct WakeLater(Arc<Shared>);

impl Drop for WakeLater {
    fn drop(&mut self) {
        self.0.wake_for_queued();
    }
}

/// Callbacks waiting in [`Pool::blocking`] and the spare threads standing in for them.
#[derive(Debug, Default)]
struct Spares {
    waiting: usize,
    spares: usize,
}

impl Pool {
    /// Starts `workers` threads sharing a queue of `capacity` jobs.
    pub fn new(workers: usize, capacity: usize) -> std::io::Result<Pool> {
        let queue = Queue {
            jobs: VecDeque::with_capacity(capacity.min(1024)),
            open: true,
            sleepers: Vec::new(),
            last_soon: None,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            capacity,
            len: AtomicUsize::new(0),
            deferred: AtomicUsize::new(0),
        });
        let (exit_tx, exited) = std_mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let shared = shared.clone();
            let exit_tx = exit_tx.clone();
            let handle = std::thread::Builder::new().name(format!("rhaibot-worker-{i}")).stack_size(STACK_SIZE).spawn(
                move || {
                    shared.work();
                    drop(exit_tx);
                },
            )?;
            threads.push(handle);
        }
        Ok(Pool {
            shared,
            exit_tx: Mutex::new(Some(exit_tx)),
            exited: Mutex::new(exited),
            threads: Mutex::new(threads),
            spares: Default::default(),
        })
    }

    /// Runs `wait` (which blocks this worker for long) while a spare thread does this worker's
    /// job for the others.
    pub fn blocking<R>(&self, wait: impl FnOnce() -> R) -> R {
        {
            let mut s = self.spares.lock().unwrap_or_else(PoisonError::into_inner);
            s.waiting += 1;
            if s.spares < s.waiting && s.spares < MAX_SPARES && self.spawn_spare() {
                s.spares += 1;
            }
        }
        let result = wait();
        self.spares.lock().unwrap_or_else(PoisonError::into_inner).waiting -= 1;
        result
    }

    /// Starts a spare thread; false when it could not be started (shut down, or no thread).
    fn spawn_spare(&self) -> bool {
        let Some(exit_tx) = self.exit_tx.lock().unwrap_or_else(PoisonError::into_inner).clone() else { return false };
        let (shared, spares) = (self.shared.clone(), self.spares.clone());
        let spawned =
            std::thread::Builder::new().name("rhaibot-spare".into()).stack_size(STACK_SIZE).spawn(move || {
                loop {
                    match shared.next(Some(SPARE_IDLE)) {
                        Next::Job(job) => job(),
                        Next::Idle => {}
                        Next::Closed => {
                            spares.lock().unwrap_or_else(PoisonError::into_inner).spares -= 1;
                            break;
                        }
                    }
                    // Leave once fewer callbacks wait than spares stand in for them.
                    let mut s = spares.lock().unwrap_or_else(PoisonError::into_inner);
                    if s.spares > s.waiting {
                        s.spares -= 1;
                        drop(s);
                        // Its last job may have requeued a drainer for this thread to take.
                        shared.wake_for_queued();
                        break;
                    }
                }
                drop(exit_tx);
            });
        match spawned {
            Ok(handle) => {
                let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
                threads.retain(|t| !t.is_finished());
                threads.push(handle);
                true
            }
            Err(e) => {
                tracing::warn!("cannot start a spare worker ({e}); a waiting callback holds its worker");
                false
            }
        }
    }

    /// Queues a job without blocking.
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        let sleeper = self.queue(job)?.sleepers.pop();
        if let Some(sleeper) = sleeper {
            sleeper.wake();
        }
        Ok(())
    }

    /// Queues a job from a worker's job that is about to end (a drainer yielding its worker):
    /// no sleeper is woken, since this worker goes back to the queue next (a spare that leaves
    /// instead wakes one). Waking one would only have two threads race for the job and one of
    /// them sleep again.
    pub fn requeue(&self, job: Job) -> Result<(), QueueFull> {
        self.queue(job).map(drop)
    }

    /// Puts `job` in the queue, which is still locked for the caller to wake a sleeper.
    fn queue(&self, job: Job) -> Result<MutexGuard<'_, Queue>, QueueFull> {
        let mut q = self.shared.lock();
        if !q.open || q.jobs.len() >= self.shared.capacity {
            return Err(QueueFull);
        }
        q.jobs.push_back(job);
        self.shared.len.store(q.jobs.len(), Ordering::Release);
        Ok(q)
    }

    /// Queues a job from a task of an async runtime (an adapter handing on an event). A sleeping
    /// worker is woken not at once but by a task queued on the same runtime, so only after the
    /// tasks ready now have run: the events that arrive together (the frames of one read, the
    /// answers that came in meanwhile) reach the worker together, and a worker that finishes its
    /// job in the meantime takes this one with no wake-up at all. Each wake-up costs both threads
    /// a trip through the kernel; under load this halves how often a worker sleeps and is woken.
    /// Jobs that come [`BUSY_GAP`] apart or more, and any outside a runtime, wake a worker at
    /// once, as [`Pool::submit`] does. The caller is a task that goes on to yield to its runtime:
    /// one that blocks its thread instead leaves the job waiting for the wake-up it holds up.
    pub fn submit_soon(&self, job: Job) -> Result<(), QueueFull> {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return self.submit(job) };
        let mut q = self.queue(job)?;
        // Events far apart have nothing to gather: their worker is woken at once, as ever.
        let now = Instant::now();
        let busy = q.last_soon.is_some_and(|last| now.duration_since(last) < BUSY_GAP);
        q.last_soon = Some(now);
        let at_once = if busy { None } else { q.sleepers.pop() };
        let wake_later = busy && !q.sleepers.is_empty() && self.shared.deferred.load(Ordering::Relaxed) == 0;
        if wake_later {
            self.shared.deferred.store(1, Ordering::Relaxed);
        }
        drop(q);
        if let Some(sleeper) = at_once {
            sleeper.wake();
        }
        if wake_later {
            let wake = WakeLater(self.shared.clone());
            rt.spawn(async move { drop(wake) });
        }
        Ok(())
    }

    /// An event was handed to a drainer already started: when [`WAKE_AFTER`] of them came while
    /// its worker's wake-up waits (an adapter handing on a batch of frames), the worker is woken
    /// now, to start on them while the rest of the batch is handed on.
    pub fn handed_on(&self) {
        let counted =
            self.shared.deferred.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n != 0).then_some(n + 1));
        if counted.is_ok_and(|n| n >= WAKE_AFTER) {
            self.shared.wake_for_queued();
        }
    }

    /// Whether jobs wait for a worker (without taking the queue's lock).
    pub fn has_queued(&self) -> bool {
        self.shared.len.load(Ordering::Acquire) > 0
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Stops accepting jobs, lets the queued and running ones finish, and waits at most
    /// `deadline`. Returns false when some worker was still busy at the deadline.
    pub fn shutdown(&self, deadline: Duration) -> bool {
        let sleepers = {
            let mut q = self.shared.lock();
            q.open = false;
            std::mem::take(&mut q.sleepers)
        };
        for sleeper in sleepers {
            sleeper.wake();
        }
        self.exit_tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        let until = Instant::now() + deadline;
        let exited = self.exited.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match exited.recv_timeout(left) {
                Ok(()) => continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std_mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
        for t in self.threads.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            let _ = t.join();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_job_then_drains_on_shutdown() {
        let pool = Pool::new(2, 100).unwrap();
        let n = Arc::new(AtomicUsize::new(0));
        for _ in 0..50 {
            let n = n.clone();
            pool.submit(Box::new(move || {
                n.fetch_add(1, Ordering::SeqCst);
            }))
            .unwrap();
        }
        assert!(pool.shutdown(Duration::from_secs(5)));
        assert_eq!(n.load(Ordering::SeqCst), 50);
        assert!(pool.submit(Box::new(|| {})).is_err());
    }

    #[test]
    fn a_full_queue_refuses() {
        let pool = Pool::new(1, 1).unwrap();
        let (block_tx, block_rx) = std_mpsc::channel::<()>();
        let (started_tx, started_rx) = std_mpsc::channel::<()>();
        pool.submit(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = block_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        pool.submit(Box::new(|| {})).unwrap();
        assert!(pool.submit(Box::new(|| {})).is_err());
        drop(block_tx);
    }

    /// Every job runs while all threads may be asleep: a lost wake-up shows as a job that
    /// never runs (no later submit comes to rescue it).
    #[test]
    fn no_job_is_left_queued_while_every_thread_sleeps() {
        let pool = Arc::new(Pool::new(2, 1000).unwrap());
        let submitters: Vec<_> = (0..3u64)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    let mut seed = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for i in 0..2_000u32 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let (tx, rx) = std_mpsc::channel();
                        let spare = seed % 97 == 0;
                        let p = pool.clone();
                        pool.submit(Box::new(move || {
                            if spare {
                                p.blocking(|| std::thread::sleep(Duration::from_micros(200)));
                            }
                            let _ = tx.send(());
                        }))
                        .unwrap();
                        assert!(rx.recv_timeout(Duration::from_secs(2)).is_ok(), "job {i} of submitter {t} never ran");
                        let gap = Duration::from_micros(seed % 500);
                        let until = Instant::now() + gap;
                        if seed % 3 == 0 {
                            std::thread::sleep(gap);
                        } else {
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                        }
                    }
                })
            })
            .collect();
        for s in submitters {
            s.join().unwrap();
        }
        assert!(pool.shutdown(Duration::from_secs(5)));
    }

    /// Waits (bounded) until `n` threads of `pool` sleep.
    fn until_asleep(pool: &Pool, n: usize) {
        let until = Instant::now() + Duration::from_secs(5);
        while pool.shared.lock().sleepers.len() < n {
            assert!(Instant::now() < until, "the pool's threads never went to sleep");
            std::thread::yield_now();
        }
    }

    /// A pool of `workers` threads, all asleep.
    fn sleeping(workers: usize) -> Arc<Pool> {
        let pool = Arc::new(Pool::new(workers, 100).unwrap());
        until_asleep(&pool, workers);
        pool
    }

    /// A runtime like the reactor's, for calls made from its tasks.
    fn reactor() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().unwrap()
    }

    /// Has `pool` take its next [`Pool::submit_soon`] for one of a busy stream of jobs.
    fn busy(pool: &Pool) {
        // Later than any clock reading to come: the gap to it is none.
        pool.shared.lock().last_soon = Some(Instant::now() + Duration::from_secs(3600));
    }

    /// A job queued after a pause wakes its worker at once: there is nothing to gather.
    #[test]
    fn a_job_after_a_pause_wakes_a_sleeper_at_once() {
        let pool = sleeping(1);
        let rt = reactor();
        rt.block_on(async {
            pool.shared.lock().last_soon = Some(Instant::now() - BUSY_GAP);
            let (tx, rx) = std_mpsc::channel();
            pool.submit_soon(Box::new(move || tx.send(()).unwrap())).unwrap();
            // The task has not yielded: only an immediate wake-up runs the job.
            assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "the worker is woken while the task runs");
        });
    }

    /// Jobs queued from a runtime's task wake a sleeper once that task has let the runtime run
    /// the others, one wake-up for all of them.
    #[test]
    fn jobs_queued_from_a_task_wake_a_sleeper_after_the_task_yields() {
        let pool = sleeping(1);
        busy(&pool);
        let (tx, rx) = std_mpsc::channel();
        let rt = reactor();
        rt.block_on(async {
            for i in 0..3 {
                let tx = tx.clone();
                pool.submit_soon(Box::new(move || tx.send(i).unwrap())).unwrap();
            }
            assert_eq!(pool.shared.lock().sleepers.len(), 1, "the worker is not woken while the task runs");
            tokio::task::yield_now().await;
        });
        let ran: Vec<i32> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(ran, [0, 1, 2]);
    }

    /// A batch of events handed on behind a deferred wake-up wakes the worker before the batch
    /// ends, so it starts on them while the rest are handed on.
    #[test]
    fn a_batch_handed_on_wakes_the_worker_before_the_task_yields() {
        let pool = sleeping(1);
        busy(&pool);
        let (tx, rx) = std_mpsc::channel();
        let rt = reactor();
        rt.block_on(async {
            pool.submit_soon(Box::new(move || tx.send(()).unwrap())).unwrap();
            for _ in 1..WAKE_AFTER {
                pool.handed_on();
            }
            assert_eq!(pool.shared.lock().sleepers.len(), 1, "a few events wait for the task to yield");
            pool.handed_on();
            // The job runs while this task still runs: the waking task has not run yet.
            assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "a batch wakes the worker at once");
        });
    }

    /// A job queued again by a job about to end wakes nobody: the same thread runs it next.
    #[test]
    fn a_requeued_job_runs_on_its_thread_without_waking_another() {
        let pool = sleeping(2);
        let (tx, rx) = std_mpsc::channel();
        let p = pool.clone();
        pool.submit(Box::new(move || {
            let me = std::thread::current().id();
            let tx2 = tx.clone();
            p.requeue(Box::new(move || tx2.send(std::thread::current().id() == me).unwrap())).unwrap();
            tx.send(p.shared.lock().sleepers.len() == 1).unwrap();
        }))
        .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "the other worker was woken for it");
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "another thread ran it");
    }

    /// A spare that leaves after a job that requeued another wakes a worker for it.
    #[test]
    fn a_job_requeued_by_a_leaving_spare_still_runs() {
        let pool = sleeping(1);
        let (release_tx, release_rx) = std_mpsc::channel::<()>();
        let p = pool.clone();
        // The worker waits in `blocking`: a spare stands in for it.
        pool.submit(Box::new(move || p.blocking(|| release_rx.recv().unwrap()))).unwrap();
        until_asleep(&pool, 1);
        let (ran_tx, ran_rx) = std_mpsc::channel();
        let p = pool.clone();
        pool.submit(Box::new(move || {
            // The worker's wait ends and it goes to sleep: nobody waits, so the spare leaves
            // after this job, which requeues one.
            release_tx.send(()).unwrap();
            until_asleep(&p, 1);
            p.requeue(Box::new(move || ran_tx.send(()).unwrap())).unwrap();
        }))
        .unwrap();
        assert!(ran_rx.recv_timeout(Duration::from_secs(5)).is_ok(), "the requeued job waits while the worker sleeps");
    }

    /// A runtime dropped before the waking task ran still wakes a worker for the job.
    #[test]
    fn a_job_queued_on_a_runtime_that_ends_still_runs() {
        let pool = sleeping(1);
        busy(&pool);
        let (tx, rx) = std_mpsc::channel();
        let rt = reactor();
        rt.block_on(async { pool.submit_soon(Box::new(move || tx.send(()).unwrap())).unwrap() });
        drop(rt);
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "the job waits for a wake-up that never comes");
    }

    /// Two jobs queued together get two workers: each waits for the other to start.
    #[test]
    fn jobs_queued_together_each_get_a_sleeper() {
        let pool = sleeping(2);
        busy(&pool);
        let started = Arc::new((Mutex::new(0), std::sync::Condvar::new()));
        let (tx, rx) = std_mpsc::channel();
        let rt = reactor();
        rt.block_on(async {
            for _ in 0..2 {
                let (started, tx) = (started.clone(), tx.clone());
                pool.submit_soon(Box::new(move || {
                    let (n, cv) = &*started;
                    let mut n = n.lock().unwrap();
                    *n += 1;
                    cv.notify_all();
                    let (n, _) = cv.wait_timeout_while(n, Duration::from_secs(5), |n| *n < 2).unwrap();
                    tx.send(*n == 2).unwrap();
                }))
                .unwrap();
            }
            tokio::task::yield_now().await;
        });
        for _ in 0..2 {
            assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "a job ran alone while a worker slept");
        }
    }
}
