//! A connection socket, as the per-connection thread sees it.
//!
//! The socket is non-blocking (from `accept4`), so every wait is an explicit
//! `poll` with a deadline: no peer can hold a thread forever, and an idle
//! connection waits on its socket *and* the drain eventfd at once, so a drain
//! wakes every idle thread immediately.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::drain::{ConnState, Registration};
use crate::http::transport::{Idle, Transport};
use crate::sys::{self, SockAddr};

/// How much a lingering close reads and discards at most.
const LINGER_DISCARD_LIMIT: usize = 1 << 20;

/// One accepted connection, registered with the drain tracker.
///
/// Dropping it deregisters the connection (so the drain's count goes down)
/// and then closes the socket.
#[derive(Debug)]
pub struct Conn {
    reg: Option<Registration>,
    fd: Option<OwnedFd>,
    peer: SockAddr,
    drain_seen: bool,
    /// TCP (idle waits may block in `recv`), as opposed to a Unix socket.
    tcp: bool,
    /// Bytes a blocking idle `recv` read ahead of the next `read_deadline`.
    stash: Vec<u8>,
    stash_pos: usize,
    stash_end: usize,
    /// The `SO_RCVTIMEO` currently set, rounded to 100 ms.
    recv_timeout: Option<Duration>,
}

/// How long a woken (read-side shut down) connection sleeps between
/// non-blocking reads while it waits for a last request.
const WOKEN_POLL: Duration = Duration::from_millis(5);
/// Size of the read-ahead buffer of a blocking idle `recv`.
const STASH: usize = 4096;

impl Conn {
    pub(crate) fn new(fd: OwnedFd, peer: SockAddr, reg: Registration) -> Conn {
        let tcp = matches!(peer, SockAddr::Inet(_));
        Conn {
            reg: Some(reg),
            fd: Some(fd),
            peer,
            drain_seen: false,
            tcp,
            stash: Vec::new(),
            stash_pos: 0,
            stash_end: 0,
            recv_timeout: None,
        }
    }

    fn raw(&self) -> RawFd {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// The peer's address (`SockAddr::Other` for an unnamed Unix peer).
    pub fn peer_addr(&self) -> &SockAddr {
        &self.peer
    }

    /// Sets the connection's state for the drain's bookkeeping.
    pub fn set_state(&mut self, state: ConnState) {
        if let Some(r) = &self.reg {
            r.set_state(state);
        }
    }

    /// The connection's state.
    pub fn state(&self) -> ConnState {
        self.reg.as_ref().map_or(ConnState::Closed, |r| r.state())
    }

    /// True if the drain shut this connection down by force.
    pub fn was_forced(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.was_forced())
    }

    /// Waits until the socket is ready for `events` or `deadline` passes.
    fn wait(&self, events: libc::c_short, deadline: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            let mut pfd = [sys::pollfd(self.raw(), events)];
            match sys::poll(&mut pfd, Some(deadline - now)) {
                Ok(0) => continue,
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what is there, or waits for it until `deadline`. `Ok(0)` is EOF.
    pub fn read_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        if self.stash_pos < self.stash_end {
            let n = buf.len().min(self.stash_end - self.stash_pos);
            buf[..n].copy_from_slice(&self.stash[self.stash_pos..self.stash_pos + n]);
            self.stash_pos += n;
            return Ok(n);
        }
        loop {
            match sys::recv(self.raw(), buf, libc::MSG_DONTWAIT) {
                Ok(0) if !buf.is_empty() && self.woken() => {
                    // Our own SHUT_RD makes an empty queue read as 0: only
                    // TCP_INFO tells whether the peer really closed.
                    if sys::tcp_peer_closed(self.raw()) {
                        return Ok(0);
                    }
                    self.sleep_until(deadline)?;
                }
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn woken(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.woken())
    }

    /// Sleeps one [`WOKEN_POLL`] step, or fails at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> io::Result<()> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
        std::thread::sleep(WOKEN_POLL.min(deadline - now));
        Ok(())
    }

    /// Writes all of `bufs`, waiting for room until `deadline`.
    pub fn write_all_deadline(&mut self, bufs: &[&[u8]], deadline: Instant) -> io::Result<()> {
        let mut idx = 0;
        let mut off = 0;
        while idx < bufs.len() {
            if bufs[idx].len() == off {
                idx += 1;
                off = 0;
                continue;
            }
            let res = if idx + 1 == bufs.len() {
                sys::send(self.raw(), &bufs[idx][off..])
            } else {
                let mut slices = [io::IoSlice::new(&[]); 8];
                let mut n = 0;
                slices[0] = io::IoSlice::new(&bufs[idx][off..]);
                n += 1;
                for b in &bufs[idx + 1..] {
                    if n == slices.len() {
                        break;
                    }
                    slices[n] = io::IoSlice::new(b);
                    n += 1;
                }
                sys::sendv(self.raw(), &slices[..n])
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    while n > 0 && idx < bufs.len() {
                        let left = bufs[idx].len() - off;
                        if n >= left {
                            n -= left;
                            idx += 1;
                            off = 0;
                        } else {
                            off += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLOUT, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits for the first byte of the next request, the peer's close, the
    /// deadline, or (once) the start of a drain.
    pub fn wait_idle(&mut self, deadline: Instant) -> io::Result<Idle> {
        if self.stash_pos < self.stash_end {
            return Ok(Idle::Data);
        }
        let drain_fd = self.reg.as_ref().map(|r| r.tracker().drain_fd());
        if !self.drain_seen && self.draining() {
            self.drain_seen = true;
            return Ok(Idle::Drain);
        }
        if self.woken() {
            return self.wait_woken(deadline);
        }
        if self.tcp && !self.drain_seen && self.state() == ConnState::Idle {
            return self.wait_blocking(deadline);
        }
        loop {
            let watch_drain = !self.drain_seen && drain_fd.is_some();
            if watch_drain && self.draining() {
                self.drain_seen = true;
                return Ok(Idle::Drain);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Idle::TimedOut);
            }
            let mut pfd = [
                sys::pollfd(self.raw(), libc::POLLIN),
                sys::pollfd(drain_fd.unwrap_or(-1), libc::POLLIN),
            ];
            let n = if watch_drain { 2 } else { 1 };
            match sys::poll(&mut pfd[..n], Some(deadline - now)) {
                Ok(0) => continue,
                Ok(_) => {
                    if pfd[0].revents != 0 {
                        if pfd[0].revents & libc::POLLIN == 0
                            && pfd[0].revents & (libc::POLLHUP | libc::POLLERR) != 0
                        {
                            return Ok(Idle::Eof);
                        }
                        return Ok(Idle::Data);
                    }
                    if watch_drain && pfd[1].revents != 0 {
                        self.drain_seen = true;
                        return Ok(Idle::Drain);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A kept-alive TCP connection's idle wait: block in `recv` (one
    /// syscall, woken straight by the socket) instead of `poll` + `read`.
    /// `SO_RCVTIMEO` bounds it; a drain wakes it with `shutdown(SHUT_RD)`
    /// (see [`crate::Tracker::start_drain`]), which makes the read return 0.
    fn wait_blocking(&mut self, deadline: Instant) -> io::Result<Idle> {
        if self.stash.is_empty() {
            self.stash = vec![0; STASH];
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(Idle::TimedOut);
            }
            // Round up to 100 ms so that the steady keep-alive case sets it once.
            let want =
                Duration::from_millis((deadline - now).as_millis().div_ceil(100) as u64 * 100);
            if self.recv_timeout != Some(want) {
                sys::set_recv_timeout(self.raw(), want)?;
                self.recv_timeout = Some(want);
            }
            match sys::recv(self.raw(), &mut self.stash, 0) {
                Ok(0) => {
                    if self.woken() && !sys::tcp_peer_closed(self.raw()) {
                        self.drain_seen = true;
                        return Ok(Idle::Drain);
                    }
                    return Ok(Idle::Eof);
                }
                Ok(n) => {
                    self.stash_pos = 0;
                    self.stash_end = n;
                    return Ok(Idle::Data);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Idle::Eof),
                Err(e) => return Err(e),
            }
        }
    }

    /// Waiting on a woken connection, whose socket always polls readable:
    /// non-blocking reads a few ms apart until data, the peer's close, or
    /// `deadline` (the drain grace: short, and only during a drain).
    fn wait_woken(&mut self, deadline: Instant) -> io::Result<Idle> {
        if self.stash.is_empty() {
            self.stash = vec![0; STASH];
        }
        loop {
            match sys::recv(self.raw(), &mut self.stash, libc::MSG_DONTWAIT) {
                Ok(0) => {
                    if sys::tcp_peer_closed(self.raw()) {
                        return Ok(Idle::Eof);
                    }
                }
                Ok(n) => {
                    self.stash_pos = 0;
                    self.stash_end = n;
                    return Ok(Idle::Data);
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Idle::Eof),
                Err(e) => return Err(e),
            }
            if self.sleep_until(deadline).is_err() {
                return Ok(Idle::TimedOut);
            }
        }
    }

    /// True once the server has started draining.
    pub fn draining(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.tracker().draining())
    }

    /// Closes the connection; with `linger`, politely: shut down the write
    /// side (the peer sees FIN after our last byte), then read and discard
    /// until EOF or the deadline, so unread input never turns into a reset
    /// that would destroy the response in flight.
    pub fn close(&mut self, linger: Option<Instant>) {
        if self.fd.is_none() {
            return;
        }
        self.set_state(ConnState::Closed);
        if let Some(deadline) = linger {
            if sys::shutdown(self.raw(), libc::SHUT_WR).is_ok() {
                let mut buf = [0u8; 4096];
                let mut total = 0;
                while total < LINGER_DISCARD_LIMIT {
                    match self.read_deadline(&mut buf, deadline) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            }
        }
        // Deregister first, then close: the drain may be shutting down
        // registered fds, and must never touch a reused descriptor number.
        self.reg.take();
        self.fd.take();
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reg.take();
        self.fd.take();
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

impl Transport for Conn {
    fn read_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        Conn::read_deadline(self, buf, deadline)
    }

    fn wait_idle(&mut self, deadline: Instant) -> io::Result<Idle> {
        Conn::wait_idle(self, deadline)
    }

    fn write_all_deadline(&mut self, bufs: &[&[u8]], deadline: Instant) -> io::Result<()> {
        Conn::write_all_deadline(self, bufs, deadline)
    }

    fn draining(&self) -> bool {
        Conn::draining(self)
    }

    fn set_busy(&mut self, busy: bool) {
        self.set_state(if busy {
            ConnState::Busy
        } else {
            ConnState::Idle
        });
    }

    fn close(&mut self, linger: Option<Instant>) {
        Conn::close(self, linger)
    }
}
