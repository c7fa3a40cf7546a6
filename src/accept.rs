//! The accept loop: one thread polls every listener together with a wake
//! eventfd.
//!
//! `close()` on a listener does not wake a thread blocked in `accept()` on
//! Linux, and `shutdown()` would stop the socket for the other generation
//! too, so the thread never blocks in `accept`: listeners are non-blocking,
//! and it sleeps in `poll` until a listener is readable or the wake fd fires.
//! `EAGAIN` after `poll` just means the other generation took the connection.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::conn::Conn;
use crate::drain::Tracker;
use crate::sys;

/// The longest back-off after `EMFILE`/`ENFILE`.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first back-off after `EMFILE`/`ENFILE`.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Connections accepted from one listener per wake-up before polling again,
/// so one busy listener cannot starve the others or the wake fd.
const ACCEPT_BATCH: usize = 64;
/// At most this many queued connections are accepted per listener when a
/// final shutdown stops accepting.
const SWEEP_LIMIT: usize = 4096;

/// Wakes and stops the accept thread.
pub(crate) struct Waker {
    fd: OwnedFd,
    stop: AtomicBool,
    sweep: AtomicBool,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker {
            fd: sys::eventfd()?,
            stop: AtomicBool::new(false),
            sweep: AtomicBool::new(false),
        }))
    }

    /// Asks the accept thread to stop, and wakes it. With `sweep` (a final
    /// shutdown, where nobody else will accept from these sockets), it first
    /// accepts every connection already queued, so that closing the listener
    /// resets as few clients as possible: those get their answer with
    /// `Connection: close`. After a handover the new process accepts them.
    pub(crate) fn stop(&self, tracker: &Tracker, sweep: bool) {
        self.sweep.store(sweep, Ordering::Release);
        self.stop.store(true, Ordering::Release);
        if let Err(e) = sys::eventfd_signal(self.fd.as_raw_fd()) {
            log::error!("[{}] cannot wake the accept thread: {e}", sys::getpid());
        }
        // It may be waiting for a connection slot instead of polling.
        tracker.wake_waiters();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Runs the accept loop until `waker` stops it.
pub(crate) fn accept_loop(
    listeners: &[(RawFd, Arc<str>)],
    waker: &Waker,
    tracker: &Arc<Tracker>,
    dispatch: &(dyn Fn(Conn) + Sync),
    max_connections: Option<usize>,
) {
    let pid = sys::getpid();
    let mut pfds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|(fd, _)| sys::pollfd(*fd, libc::POLLIN))
        .collect();
    pfds.push(sys::pollfd(waker.fd.as_raw_fd(), libc::POLLIN));
    let mut backoff = MIN_BACKOFF;
    let mut exhausted_logged = false;
    'outer: while !waker.stopped() {
        if let Some(max) = max_connections {
            if tracker.active() >= max {
                // Backpressure: stop accepting and let the kernel's backlog
                // hold new clients until a slot frees. Never accept-and-drop.
                log::debug!("[{pid}] {max} connections open: pausing accept");
                tracker.wait_for_slot(max, &waker.stop);
                continue;
            }
        }
        for p in pfds.iter_mut() {
            p.revents = 0;
        }
        match sys::poll(&mut pfds, None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("[{pid}] accept poll failed: {e}");
                std::thread::sleep(MIN_BACKOFF);
                continue;
            }
        }
        if pfds[listeners.len()].revents != 0 || waker.stopped() {
            break;
        }
        for (i, (fd, name)) in listeners.iter().enumerate() {
            if pfds[i].revents == 0 {
                continue;
            }
            for _ in 0..ACCEPT_BATCH {
                if let Some(max) = max_connections {
                    if tracker.active() >= max {
                        continue 'outer;
                    }
                }
                match sys::accept(*fd) {
                    Ok((conn_fd, peer)) => {
                        if exhausted_logged {
                            log::info!("[{pid}] file descriptors available again; accepting");
                            exhausted_logged = false;
                        }
                        backoff = MIN_BACKOFF;
                        log::trace!("[{pid}] accepted {peer:?} on fd {}", conn_fd.as_raw_fd());
                        let reg = tracker.register(conn_fd.as_raw_fd());
                        dispatch(Conn::new(conn_fd, peer, reg, name.clone()));
                    }
                    Err(libc::EAGAIN) => break,
                    Err(libc::EINTR) | Err(libc::ECONNABORTED) | Err(libc::EPROTO) => {}
                    Err(e @ (libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
                        let err = sys::error("accept4", e);
                        if !exhausted_logged {
                            log::warn!(
                                "[{pid}] {err}; backing off (up to {MAX_BACKOFF:?}) until \
                                 resources free up",
                            );
                            exhausted_logged = true;
                        } else {
                            log::debug!("[{pid}] {err}; backing off {}", crate::fmt::Dur(backoff));
                        }
                        // Sleep on the wake fd, so a shutdown still gets through.
                        let mut w = [sys::pollfd(waker.fd.as_raw_fd(), libc::POLLIN)];
                        let _ = sys::poll(&mut w, Some(backoff));
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue 'outer;
                    }
                    Err(e) => {
                        log::error!("[{pid}] {}", sys::error("accept4", e));
                        let mut w = [sys::pollfd(waker.fd.as_raw_fd(), libc::POLLIN)];
                        let _ = sys::poll(&mut w, Some(MIN_BACKOFF));
                        continue 'outer;
                    }
                }
            }
        }
    }
    if waker.sweep.load(Ordering::Acquire) {
        let mut swept = 0;
        'sweep: for (fd, name) in listeners {
            for _ in 0..SWEEP_LIMIT {
                if max_connections.is_some_and(|max| tracker.active() >= max) {
                    break 'sweep;
                }
                match sys::accept(*fd) {
                    Ok((conn_fd, peer)) => {
                        let reg = tracker.register(conn_fd.as_raw_fd());
                        dispatch(Conn::new(conn_fd, peer, reg, name.clone()));
                        swept += 1;
                    }
                    Err(libc::EINTR) | Err(libc::ECONNABORTED) | Err(libc::EPROTO) => {}
                    Err(_) => break,
                }
            }
        }
        if swept > 0 {
            log::debug!("[{pid}] accepted {swept} queued connection(s) before closing");
        }
    }
    log::debug!("[{pid}] accept loop stopped");
}
