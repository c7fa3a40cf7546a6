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

use crate::drain::{ConnState, DrainToken, Registration};
use crate::sys;
pub use crate::sys::SockAddr;

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

/// A connection's two ends, as a handler finds them in a request's
/// extensions (`req.extensions().get::<ConnInfo>()`) or [`Conn::info`]
/// gives them.
///
/// ```no_run
/// use grace::http::{Request, Response};
/// use grace::http1::{RequestBody, ResponseBody};
/// use grace::{ConnInfo, SockAddr};
///
/// fn whoami(req: Request<RequestBody>) -> Response<ResponseBody> {
///     let body = match req.extensions().get::<ConnInfo>() {
///         Some(ConnInfo { peer: SockAddr::Inet(a), .. }) => format!("you are {a}\n"),
///         Some(info) => format!("you came in on {}\n", info.listener),
///         None => "no connection\n".to_string(),
///     };
///     Response::new(body.into())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The client's address: its `getpeername` (for a Unix client usually
    /// unnamed: [`SockAddr::Other`]).
    pub peer: SockAddr,
    /// This end's address: the connection's `getsockname` (for a wildcard
    /// listener, the address the client connected to).
    pub local: SockAddr,
    /// The name of the listener that accepted it (`LISTEN_FDNAMES` style:
    /// `127.0.0.1_8080` for one grace bound, or the name systemd gave).
    pub listener: Arc<str>,
    /// The generation of the process that accepted it.
    pub generation: u64,
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

    /// Who is at both ends, through which listener, in which generation.
    /// The local address is asked of the kernel once (`getsockname`).
    pub fn info(&self) -> &ConnInfo {
        self.info.get_or_init(|| ConnInfo {
            peer: self.peer.clone(),
            local: sys::getsockname(self.raw()).unwrap_or(SockAddr::Other),
            listener: self.listener.clone(),
            generation: crate::listener::generation(),
        })
    }

    /// How long a [`io::Read::read`] or [`io::Write::write`] on the connection may
    /// wait before it fails with [`io::ErrorKind::TimedOut`] (default 30 s).
    /// The `_deadline` methods take their own.
    pub fn set_io_timeout(&mut self, timeout: std::time::Duration) {
        self.io_timeout = timeout;
    }

    /// A token that says when the server starts going away.
    pub fn drain_token(&self) -> Option<DrainToken> {
        self.reg.as_ref().map(|r| r.tracker().drain_token())
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

    /// Many writes follow (a streamed body, an upgraded protocol): sets
    /// `TCP_NODELAY` on a TCP connection, once, so that each write leaves at
    /// once. Without it the last, small write of a stream (a chunked body's
    /// terminator) waits for the peer's delayed ACK, 40 ms on Linux. A
    /// fixed response needs none of this: it goes out in one send.
    pub fn stream_begins(&mut self) {
        if self.nodelay || !matches!(self.peer, SockAddr::Inet(_)) {
            return;
        }
        self.nodelay = true;
        if let Err(e) = sys::setsockopt_int(self.raw(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1) {
            log::debug!("[{}] TCP_NODELAY: {e}", sys::getpid());
        }
    }

    /// Sends `len` bytes of `file` from `offset` with `sendfile(2)`: the
    /// kernel copies from the page cache to the socket, never through this
    /// process. Waits at most `stall` for room each time the socket buffer is
    /// full. Returns the bytes sent, fewer than `len` only if the file is
    /// shorter.
    pub fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        stall: std::time::Duration,
    ) -> io::Result<u64> {
        use std::os::fd::AsFd;
        if !self.nonblocking {
            // sendfile has no MSG_DONTWAIT; every other call passes it, so
            // O_NONBLOCK can stay on for the connection's life.
            sys::set_nonblocking(self.raw(), true)?;
            self.nonblocking = true;
        }
        let mut off = offset as i64;
        let mut sent = 0u64;
        while sent < len {
            let want = usize::try_from(len - sent)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            match sys::sendfile(self.raw(), file.as_fd(), &mut off, want) {
                Ok(0) => break,
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLOUT, Instant::now() + stall)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
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

/// Reads with [`Conn::read_deadline`] and the connection's I/O timeout
/// ([`Conn::set_io_timeout`]): a wrapped stream (TLS over the connection,
/// say) uses these. After a hand-off from the idle poller with nothing to
/// read, a read fails with [`io::ErrorKind::WouldBlock`] (park it again).
impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.io_timeout;
        self.read_deadline(buf, deadline)
    }
}

/// Writes all of each buffer with [`Conn::write_all_deadline`] and the
/// connection's I/O timeout.
impl io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.io_timeout;
        self.write_all_deadline(&[buf], deadline)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}
