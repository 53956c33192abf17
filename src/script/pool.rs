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

use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};

/// A unit of work for a worker.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Stack size of a worker: deeply nested scripts recurse on the native stack.
pub const STACK_SIZE: usize = 8 << 20;

/// The queue was full; the job was not accepted.
#[derive(Debug)]
pub struct QueueFull;

/// Spare threads at most, beside the workers (one per waiting callback).
pub const MAX_SPARES: usize = 1024;

/// How long an idle spare stays before it checks whether it is still needed.
const SPARE_IDLE: Duration = Duration::from_secs(5);

/// The worker pool.
#[derive(Debug)]
pub struct Pool {
    queue: RwLock<Option<Sender<Job>>>,
    /// What spares take jobs from.
    jobs: Receiver<Job>,
    /// Held by every thread; the pool's own copy goes at shutdown.
    exit_tx: Mutex<Option<std_mpsc::Sender<()>>>,
    exited: Mutex<std_mpsc::Receiver<()>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    spares: std::sync::Arc<Mutex<Spares>>,
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
        let (tx, rx) = bounded::<Job>(capacity);
        let (exit_tx, exited) = std_mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            let exit_tx = exit_tx.clone();
            let handle = std::thread::Builder::new().name(format!("rhaibot-worker-{i}")).stack_size(STACK_SIZE).spawn(
                move || {
                    for job in rx.iter() {
                        job();
                    }
                    drop(exit_tx);
                },
            )?;
            threads.push(handle);
        }
        Ok(Pool {
            queue: RwLock::new(Some(tx)),
            jobs: rx,
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
        let (jobs, spares) = (self.jobs.clone(), self.spares.clone());
        let spawned =
            std::thread::Builder::new().name("rhaibot-spare".into()).stack_size(STACK_SIZE).spawn(move || {
                loop {
                    match jobs.recv_timeout(SPARE_IDLE) {
                        Ok(job) => job(),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => {
                            spares.lock().unwrap_or_else(PoisonError::into_inner).spares -= 1;
                            break;
                        }
                    }
                    // Leave once fewer callbacks wait than spares stand in for them.
                    let mut s = spares.lock().unwrap_or_else(PoisonError::into_inner);
                    if s.spares > s.waiting {
                        s.spares -= 1;
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
        let queue = self.queue.read().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = queue.as_ref() else { return Err(QueueFull) };
        queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) | TrySendError::Disconnected(_) => QueueFull,
        })
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.read().unwrap_or_else(PoisonError::into_inner).as_ref().map_or(0, Sender::len)
    }

    /// Stops accepting jobs, lets the queued and running ones finish, and waits at most
    /// `deadline`. Returns false when some worker was still busy at the deadline.
    pub fn shutdown(&self, deadline: Duration) -> bool {
        self.queue.write().unwrap_or_else(PoisonError::into_inner).take();
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
    use std::sync::Arc;
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
}
