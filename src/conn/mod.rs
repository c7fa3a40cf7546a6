//! A connection socket, as the thread serving it sees it.
//!
//! Every read and write is non-blocking (`MSG_DONTWAIT`), and every wait is
//! an explicit `poll` with a deadline: no peer can hold a thread forever.
//!
//! Between requests, a connection served by [`crate::Server::serve_parked`]
//! is *parked*: [`Conn::wait_idle`] returns [`Idle::Park`] and the
//! connection goes to the idle poller (`src/park/`), which watches every
//! idle connection (and the drain) in one epoll set, so an idle keep-alive
//! connection holds no thread. A connection served by a plain
//! [`crate::Server::serve_connections`] work function waits in its own
//! thread instead,
//! in `poll` on its socket *and* the drain eventfd, so a drain wakes every
//! idle thread at once.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::drain::{ConnState, Registration};
use crate::sys;
pub use crate::sys::SockAddr;

mod info;
mod stream;

pub use info::ConnInfo;

/// What a wait for the next request on an idle connection ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Idle {
    /// Bytes are ready to read.
    Data,
    /// The peer closed its side (or reset the connection).
    Eof,
    /// The deadline passed with nothing to read.
    TimedOut,
    /// The server started draining while the connection was idle. Returned at
    /// most once per connection; the caller then waits for a short grace with
    /// [`Conn::wait_idle`] again and answers any request with
    /// `Connection: close`.
    Drain,
    /// Nothing to read yet, and the connection belongs to a server that
    /// parks idle connections: the protocol's loop returns
    /// [`crate::Served::Park`], and the server's idle poller hands the
    /// connection back to a thread once its next request arrives. Only
    /// connections served by [`crate::Server::serve_parked`] (and so
    /// [`crate::Server::serve_http`]) return it.
    Park,
}

/// How much a lingering close reads and discards at most.
pub(crate) const LINGER_DISCARD_LIMIT: usize = 1 << 20;

/// One accepted connection, registered with the drain tracker.
///
/// Dropping it deregisters the connection (so the drain's count goes down)
/// and then closes the socket.
#[derive(Debug)]
pub struct Conn {
    reg: Option<Registration>,
    fd: Option<OwnedFd>,
    peer: SockAddr,
    /// The name of the listener that accepted it.
    listener: Arc<str>,
    /// What [`Conn::info`] returns, made on first use.
    info: OnceLock<ConnInfo>,
    /// `O_NONBLOCK` is set (for `sendfile`).
    nonblocking: bool,
    /// `TCP_NODELAY` is set (see [`Conn::stream_begins`]).
    nodelay: bool,
    /// How long `Read::read` and `Write::write` may wait.
    io_timeout: std::time::Duration,
    drain_seen: bool,
    parking: Parking,
    /// The response being written is the last before the close: sends use
    /// `MSG_MORE`, and the close pushes the tail out with the FIN.
    last_response: bool,
    /// The last read came back short of its buffer: the kernel had nothing
    /// more, so bytes that arrive later raise a fresh edge-triggered event
    /// (the idle poller relies on it; see `ParkLot::park`).
    pub(crate) drained: bool,
    /// Handed over ([`Parking::Ready`]) and not read from since: if there is
    /// nothing to read after all (a new connection whose request is not
    /// there yet, or an event for bytes an earlier read already took),
    /// `read_deadline` says so instead of waiting.
    handoff: bool,
}

/// Whether, and how, [`Conn::wait_idle`] parks the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parking {
    /// Never: idle waits happen in this thread (plain work functions).
    Off,
    /// Bytes are probably there (a new connection, or the idle poller saw
    /// it readable): the next wait returns at once, and if the first read
    /// then finds nothing, it fails with `WouldBlock` so that the
    /// connection is parked instead of waited on.
    Ready,
    /// Served: the next idle wait parks.
    Park,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd, peer: SockAddr, reg: Registration, listener: Arc<str>) -> Conn {
        Conn {
            reg: Some(reg),
            fd: Some(fd),
            peer,
            listener,
            info: OnceLock::new(),
            nonblocking: false,
            nodelay: false,
            io_timeout: std::time::Duration::from_secs(30),
            drain_seen: false,
            parking: Parking::Off,
            last_response: false,
            drained: false,
            handoff: false,
        }
    }

    pub(crate) fn set_parking(&mut self, p: Parking) {
        self.parking = p;
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
        loop {
            match sys::recv(self.raw(), buf, libc::MSG_DONTWAIT) {
                Ok(n) => {
                    self.drained = n < buf.len();
                    self.handoff = false;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.handoff => {
                    self.handoff = false;
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "nothing to read after the hand-off",
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLIN, deadline)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and discards what is there without waiting: `Ok(true)` once the
    /// peer has closed (or the connection broke, or `limit` bytes were
    /// discarded), `Ok(false)` when nothing more is there yet.
    pub(crate) fn discard_ready(&mut self, limit: &mut usize) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match sys::recv(self.raw(), &mut buf, libc::MSG_DONTWAIT) {
                Ok(0) => return true,
                Ok(n) => {
                    *limit = limit.saturating_sub(n);
                    if *limit == 0 {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return e.kind() != io::ErrorKind::WouldBlock,
            }
        }
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
                sys::send_more(self.raw(), &bufs[idx][off..], self.last_response)
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
                sys::sendv(self.raw(), &slices[..n], self.last_response)
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
    /// deadline, or (once) the start of a drain. A connection the server
    /// parks between requests returns [`Idle::Park`] instead of waiting.
    pub fn wait_idle(&mut self, deadline: Instant) -> io::Result<Idle> {
        match self.parking {
            Parking::Off => {}
            Parking::Ready => {
                self.parking = Parking::Park;
                self.handoff = true;
                return Ok(Idle::Data);
            }
            Parking::Park => return Ok(Idle::Park),
        }
        let drain_fd = self
            .reg
            .as_ref()
            .map(|r| r.tracker().drain_fd().as_raw_fd());
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

    /// True once the server has started draining.
    pub fn draining(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.tracker().draining())
    }

    /// True once the server is leaving: draining, or in its shutdown delay
    /// ([`crate::ServerConfig::shutdown_delay`]), when it still serves but every
    /// response should end its connection.
    pub fn closing(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.tracker().closing())
    }

    /// The response being written is the connection's last: sends use
    /// `MSG_MORE`, so that its tail leaves with the FIN of the close.
    pub(crate) fn set_last_response(&mut self) {
        self.last_response = true;
    }

    /// Starts a polite close without waiting: marks the connection closing
    /// and shuts down the write side. False if the socket is already gone.
    pub(crate) fn begin_linger(&mut self) -> bool {
        self.set_state(ConnState::Closed);
        sys::shutdown(self.raw(), libc::SHUT_WR).is_ok()
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
