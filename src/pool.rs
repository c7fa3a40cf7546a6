//! Connection threads, reused.
//!
//! An accepted connection goes over a crossbeam channel to an idle thread; a
//! new thread is spawned only when none is idle, and an idle thread retires
//! after `idle_timeout`. Spawning a thread per connection is what makes a
//! naive thread-per-connection server slow on short connections.
//!
//! Idle threads wait on a LIFO stack: the most recently idle thread (the one
//! with the warmest stack and caches) gets the next connection, and threads
//! at the bottom retire first. Each idle thread owns a one-slot channel; the
//! accept thread pops a thread off the stack, sends the connection into its
//! channel and unparks it. A thread waits with `try_recv` + `park_timeout`
//! rather than a blocking `recv`, whose spin-then-yield back-off costs
//! several `sched_yield` context switches per connection on a busy CPU.
//!
//! Retiring is race-free: a thread whose wait timed out retires only if it
//! can remove itself from the stack under the lock; if it is no longer there,
//! the accept thread has popped it and a connection is on its way.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::conn::Conn;
use crate::sys;

/// The work done on each connection.
pub(crate) type Work = Arc<dyn Fn(Conn) + Send + Sync>;

/// An idle thread: where to send it a connection, and how to wake it.
struct Idle {
    id: u64,
    tx: Sender<Conn>,
    thread: Thread,
}

#[derive(Default)]
struct Shared {
    /// Idle threads, most recent last.
    idle: Mutex<Vec<Idle>>,
    /// Signalled when a thread goes idle, for a dispatch waiting at the
    /// thread cap.
    went_idle: Condvar,
    /// Live connection threads.
    threads: AtomicUsize,
    next_id: AtomicU64,
    /// Set when the pool is dropped: idle threads retire.
    closed: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Pool {
    shared: Arc<Shared>,
    work: Work,
    stack_size: usize,
    idle_timeout: Duration,
    /// With `max_connections`, never more threads than that: a thread that
    /// just freed a connection slot may not be back on the idle stack yet
    /// when the accept thread dispatches the next connection.
    max_threads: Option<usize>,
}

/// How long a dispatch at the thread cap waits for a thread to go idle
/// before spawning one anyway.
const CAP_WAIT: Duration = Duration::from_secs(1);

impl Pool {
    pub(crate) fn new(
        work: Work,
        stack_size: usize,
        idle_timeout: Duration,
        max_threads: Option<usize>,
    ) -> Pool {
        Pool {
            shared: Arc::new(Shared::default()),
            work,
            stack_size,
            idle_timeout,
            max_threads,
        }
    }

    /// Hands `conn` to an idle thread, or to a new one.
    pub(crate) fn dispatch(&self, conn: Conn) {
        let mut stack = self.shared.lock();
        let mut idle = stack.pop();
        if idle.is_none() {
            if let Some(max) = self.max_threads {
                let deadline = Instant::now() + CAP_WAIT;
                while idle.is_none() && self.shared.threads.load(Ordering::Acquire) >= max {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    stack = self
                        .shared
                        .went_idle
                        .wait_timeout(stack, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    idle = stack.pop();
                }
            }
        }
        drop(stack);
        if let Some(w) = idle {
            // The slot is empty: a thread is pushed only with an empty
            // channel, and popped (here) only once per wait.
            match w.tx.try_send(conn) {
                Ok(()) => w.thread.unpark(),
                Err(e) => {
                    log::error!("[{}] idle thread's slot unusable: {e}", sys::getpid());
                }
            }
            return;
        }
        let shared = self.shared.clone();
        let work = self.work.clone();
        let idle_timeout = self.idle_timeout;
        let capped = self.max_threads.is_some();
        self.shared.threads.fetch_add(1, Ordering::AcqRel);
        let spawned = std::thread::Builder::new()
            .name("grace-conn".into())
            .stack_size(self.stack_size)
            .spawn(move || worker(conn, shared, work, idle_timeout, capped));
        if let Err(e) = spawned {
            self.shared.threads.fetch_sub(1, Ordering::AcqRel);
            // The connection was moved into the failed closure and is closed
            // with it; the client sees the connection close.
            log::error!(
                "[{}] cannot spawn a connection thread, dropping the connection: {e}",
                sys::getpid()
            );
        }
    }
}

impl Drop for Pool {
    /// Wakes every idle thread so it retires now.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let idle = std::mem::take(&mut *self.shared.lock());
        for w in idle {
            drop(w.tx);
            w.thread.unpark();
        }
    }
}

fn run(work: &Work, conn: Conn) {
    // The HTTP layer catches handler panics itself; this is the safety net
    // for any other work function, so a panic costs one connection and never
    // the thread's bookkeeping.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))).is_err() {
        log::error!(
            "[{}] connection worker panicked; connection closed",
            sys::getpid()
        );
    }
}

fn worker(
    first: Conn,
    shared: Arc<Shared>,
    work: Work,
    idle_timeout: Duration,
    max_threads_set: bool,
) {
    run(&work, first);
    let (tx, rx): (Sender<Conn>, Receiver<Conn>) = crossbeam_channel::bounded(1);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    loop {
        shared.lock().push(Idle {
            id,
            tx: tx.clone(),
            thread: std::thread::current(),
        });
        if max_threads_set {
            shared.went_idle.notify_one();
        }
        let deadline = Instant::now() + idle_timeout;
        let conn = loop {
            if let Ok(c) = rx.try_recv() {
                break Some(c);
            }
            if shared.closed.load(Ordering::Acquire) {
                break None;
            }
            let now = Instant::now();
            if now >= deadline {
                let mut idle = shared.lock();
                if let Some(i) = idle.iter().position(|w| w.id == id) {
                    idle.remove(i);
                    break None;
                }
                // Popped by the accept thread: the connection is on its way.
                drop(idle);
                std::thread::park_timeout(Duration::from_millis(50));
                continue;
            }
            std::thread::park_timeout(deadline - now);
        };
        match conn {
            Some(c) => run(&work, c),
            None => break,
        }
    }
    shared.threads.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::Tracker;
    use std::os::fd::AsRawFd;
    use std::sync::mpsc;

    fn conn(tracker: &Arc<Tracker>) -> Conn {
        let (a, _b) = sys::socketpair().unwrap();
        let reg = tracker.register(a.as_raw_fd(), false);
        Conn::new(a, sys::SockAddr::Other, reg)
    }

    #[test]
    fn reuses_idle_threads_and_retires_them() {
        let tracker = Tracker::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let work: Work = Arc::new(move |_c: Conn| {
            tx.lock()
                .unwrap()
                .send(std::thread::current().id())
                .unwrap();
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_millis(100), None);
        let t = Duration::from_secs(10);
        pool.dispatch(conn(&tracker));
        let first = rx.recv_timeout(t).unwrap();
        // Wait until that thread is idle on the stack, then reuse it.
        let deadline = Instant::now() + t;
        while pool.shared.lock().is_empty() {
            assert!(Instant::now() < deadline, "thread never became idle");
            std::thread::sleep(Duration::from_millis(1));
        }
        pool.dispatch(conn(&tracker));
        assert_eq!(
            rx.recv_timeout(t).unwrap(),
            first,
            "the idle thread is reused"
        );
        // It goes idle again, and after the idle timeout it retires.
        let deadline = Instant::now() + t;
        while pool.shared.lock().is_empty() {
            assert!(Instant::now() < deadline, "thread never became idle");
            std::thread::sleep(Duration::from_millis(1));
        }
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if pool.shared.lock().is_empty() && tracker.active() == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "idle thread did not retire");
        }
    }
}
