//! What a protocol gives the server so that its idle connections hold no
//! thread: the state a connection keeps between requests, and a way to
//! serve it while it has work.
//!
//! A thread serves a connection while it has something to do
//! ([`Protocol::serve`]). When the connection would wait for its next
//! request, [`crate::Conn::wait_idle`] answers [`crate::Idle::Park`] (or the
//! first read after a hand-off fails with `WouldBlock`), `serve` returns
//! [`Served::Park`], and the thread goes back to the pool. The idle poller
//! then holds the connection and its [`Protocol::Session`] in one epoll set
//! until the next bytes arrive, its [`Protocol::idle_deadline`] passes, or a
//! drain gives it [`Protocol::drain_grace`] to send one more request.
//!
//! grace's HTTP/1.1 server is one such protocol (see `crate::http1`);
//! `examples/echo.rs` is another, in thirty lines.

use std::time::{Duration, Instant};

use crate::conn::Conn;

/// How [`Protocol::serve`] left the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Between requests with nothing to read: park it until it is readable.
    Park,
    /// Done: the connection is dropped, which closes it. Call
    /// [`Conn::close`] first for a polite close.
    Close,
}

/// A protocol served on connections that are parked between requests.
/// Pass one to [`crate::Server::serve_parked`].
pub trait Protocol: Send + Sync + 'static {
    /// What a connection keeps between requests (counters, a partial line,
    /// whether it saw the drain). Buffers are better kept per thread.
    type Session: Send + 'static;

    /// The state of a connection just accepted.
    fn open(&self, conn: &Conn) -> Self::Session;

    /// Serves `conn` while it has work. Return [`Served::Park`] when
    /// [`Conn::wait_idle`] says [`crate::Idle::Park`], or when a read fails
    /// with [`std::io::ErrorKind::WouldBlock`] (a hand-off with nothing to
    /// read after all); [`Served::Close`] when the connection is finished.
    ///
    /// On a server that does not park ([`crate::Server::serve_connections`]
    /// with [`serve_whole`]), `wait_idle` waits in this thread instead and
    /// `serve` runs for the connection's whole life.
    fn serve(&self, conn: &mut Conn, session: &mut Self::Session) -> Served;

    /// Until when a connection parked `now` may stay silent before the
    /// poller closes it.
    fn idle_deadline(&self, session: &Self::Session, now: Instant) -> Instant;

    /// After a drain starts, how long a parked connection gets to send one
    /// more request before it is closed. Default: 1 s.
    fn drain_grace(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// How long a connection the poller closes politely (write side shut,
    /// input read and discarded) may take to close its side. Default: 2 s.
    fn linger_timeout(&self) -> Duration {
        Duration::from_secs(2)
    }

    /// The client speaks first: with [`crate::ServerConfig::defer_accept`] the
    /// kernel holds a new connection until its first bytes arrive (Linux's
    /// `TCP_DEFER_ACCEPT`). Default: false.
    fn client_speaks_first(&self) -> bool {
        false
    }
}

/// Serves `conn` with `proto` for its whole life on the calling thread:
/// what a thread-per-connection server runs. `wait_idle` waits in this
/// thread (in `poll` on the socket and the drain fd), so `serve` returns
/// only when the connection is done; a [`Served::Park`] (from a connection
/// set up for parking) is treated as the end.
pub fn serve_whole<P: Protocol>(proto: &P, mut conn: Conn) {
    let mut session = proto.open(&conn);
    let _ = proto.serve(&mut conn, &mut session);
}
