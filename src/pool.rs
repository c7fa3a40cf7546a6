//! Connection threads, reused.
//!
//! An accepted connection goes over a crossbeam channel to an idle thread; a
//! new thread is spawned only when none is idle, and an idle thread retires
//! after `idle_timeout`. Spawning a thread per connection is what makes a
//! naive thread-per-connection server slow on short connections.
//!
//! The `idle` counter is a ticket count: a thread adds one when it starts
//! waiting, and whoever takes a ticket away owns that wait. The accept thread
//! takes one before sending (so a sent connection always has a receiver); a
//! thread whose wait timed out takes one before retiring, and if none is
//! left, a connection is on its way to it and it must wait again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::conn::Conn;
use crate::sys;

/// The work done on each connection.
pub(crate) type Work = Arc<dyn Fn(Conn) + Send + Sync>;

pub(crate) struct Pool {
    tx: Sender<Conn>,
    rx: Receiver<Conn>,
    shared: Arc<Shared>,
    work: Work,
    stack_size: usize,
    idle_timeout: Duration,
}

struct Shared {
    idle: AtomicUsize,
    threads: AtomicUsize,
}

fn take_ticket(idle: &AtomicUsize) -> bool {
    idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Pool {
    pub(crate) fn new(work: Work, stack_size: usize, idle_timeout: Duration) -> Pool {
        let (tx, rx) = crossbeam_channel::unbounded();
        Pool {
            tx,
            rx,
            shared: Arc::new(Shared {
                idle: AtomicUsize::new(0),
                threads: AtomicUsize::new(0),
            }),
            work,
            stack_size,
            idle_timeout,
        }
    }

    /// Hands `conn` to an idle thread, or to a new one.
    pub(crate) fn dispatch(&self, conn: Conn) {
        if take_ticket(&self.shared.idle) {
            if let Err(e) = self.tx.send(conn) {
                // Cannot happen while we hold `rx`; drop the connection.
                log::error!("[{}] connection channel closed: {e}", sys::getpid());
            }
            return;
        }
        let rx = self.rx.clone();
        let shared = self.shared.clone();
        let work = self.work.clone();
        let idle_timeout = self.idle_timeout;
        shared.threads.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("grace-conn".into())
            .stack_size(self.stack_size)
            .spawn(move || worker(conn, rx, shared, work, idle_timeout));
        if let Err(e) = spawned {
            self.shared.threads.fetch_sub(1, Ordering::Relaxed);
            // The connection was moved into the failed closure and is closed
            // with it; the client sees the connection close.
            log::error!(
                "[{}] cannot spawn a connection thread, dropping the connection: {e}",
                sys::getpid()
            );
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

fn worker(first: Conn, rx: Receiver<Conn>, shared: Arc<Shared>, work: Work, idle: Duration) {
    run(&work, first);
    loop {
        shared.idle.fetch_add(1, Ordering::AcqRel);
        let conn = loop {
            match rx.recv_timeout(idle) {
                Ok(c) => break Some(c),
                Err(RecvTimeoutError::Timeout) => {
                    if take_ticket(&shared.idle) {
                        break None;
                    }
                    // Our ticket was taken: a connection is on its way.
                }
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        match conn {
            Some(c) => run(&work, c),
            None => break,
        }
    }
    shared.threads.fetch_sub(1, Ordering::Relaxed);
}
