//! The byte stream the HTTP layer talks to.
//!
//! The per-connection HTTP loop never touches a socket directly: it goes through
//! [`Transport`]. It is implemented here on the server's connection socket
//! ([`crate::conn::Conn`]), and on memory for tests and fuzz targets
//! ([`crate::http1::mem::MemTransport`]).

use std::io;
use std::time::Instant;

pub use crate::conn::Idle;
use crate::conn::{Conn, ConnInfo};
use crate::drain::ConnState;
use crate::drain::DrainToken;

/// What the HTTP layer needs from a connection.
///
/// Deadlines are absolute. Every method must return by its deadline (give or
/// take scheduling), so no peer can hold a thread forever.
pub trait Transport {
    /// Reads at least one byte into `buf`, waiting until `deadline`.
    ///
    /// `Ok(0)` means end of stream. At the deadline it fails with
    /// [`io::ErrorKind::TimedOut`]. A transport that parks idle connections
    /// may instead fail at once with [`io::ErrorKind::WouldBlock`] on the
    /// first read after [`Transport::wait_idle`] said `Data`, when there was
    /// nothing to read after all: the connection loop then parks it again.
    fn read_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize>;

    /// Waits, without reading, until the next request's first byte arrives, the
    /// peer closes, `deadline` passes, or (once) the server starts draining.
    fn wait_idle(&mut self, deadline: Instant) -> io::Result<Idle>;

    /// Writes all of `bufs` in order (vectored where the transport can),
    /// failing with [`io::ErrorKind::TimedOut`] at `deadline`.
    fn write_all_deadline(&mut self, bufs: &[&[u8]], deadline: Instant) -> io::Result<()>;

    /// True once the server has started draining: the response being written
    /// must carry `Connection: close`.
    fn draining(&self) -> bool;

    /// Marks the connection busy (a request is being handled) or idle, for the
    /// drain's bookkeeping.
    fn set_busy(&mut self, busy: bool);

    /// Closes the connection. With `linger`, it first shuts down the write
    /// side and reads and discards input until end of stream or the linger
    /// deadline, so that unread bytes do not turn into a reset that destroys
    /// the last response in flight.
    fn close(&mut self, linger: Option<Instant>);

    /// The fixed-size response about to be written is the connection's last
    /// (a close follows at once): the transport may hold back a partial
    /// last segment until the close, so the response and the FIN leave in
    /// one packet. Never called before a streamed body. Default: nothing.
    fn last_response(&mut self) {}

    /// Sends `len` bytes of `file` from `offset`, waiting at most `stall`
    /// for room each time; returns the bytes sent (fewer only if the file is
    /// shorter). Default: read and [`Transport::write_all_deadline`]
    /// in 64 KiB pieces; the server's socket uses `sendfile(2)`.
    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        stall: std::time::Duration,
    ) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let want = buf
                .len()
                .min(usize::try_from(len - sent).unwrap_or(usize::MAX));
            let n = file.read_at(&mut buf[..want], offset + sent)?;
            if n == 0 {
                break;
            }
            self.write_all_deadline(&[&buf[..n]], Instant::now() + stall)?;
            sent += n as u64;
        }
        Ok(sent)
    }

    /// A body of many writes begins (a stream, a file, an upgraded
    /// protocol): each write should leave at once. The server's socket sets
    /// `TCP_NODELAY`. Default: nothing.
    fn stream_begins(&mut self) {}

    /// The connection switched protocols (a `101` was written): from now on
    /// it stays with the calling thread ([`Transport::wait_idle`] waits
    /// here, and reports the drain once, instead of parking) and the drain
    /// counts it as [`crate::ConnState::Upgraded`]. Default: nothing.
    fn upgrade(&mut self) {}

    /// The connection's two ends, put into each request's extensions.
    /// Default: none (an in-memory transport has no addresses).
    fn conn_info(&self) -> Option<ConnInfo> {
        None
    }

    /// A token that says when the server starts going away, put into each
    /// request's extensions. Default: none.
    fn drain_token(&self) -> Option<DrainToken> {
        None
    }
}

/// The server's connection socket, as the HTTP loop sees it.
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
        // Closing, not only draining: during a shutdown delay responses
        // already say `Connection: close`.
        self.closing()
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

    fn last_response(&mut self) {
        self.set_last_response();
    }

    fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: u64,
        stall: std::time::Duration,
    ) -> io::Result<u64> {
        Conn::send_file(self, file, offset, len, stall)
    }

    fn stream_begins(&mut self) {
        Conn::stream_begins(self);
    }

    fn upgrade(&mut self) {
        self.set_parking(crate::conn::Parking::Off);
        self.set_state(ConnState::Upgraded);
    }

    fn conn_info(&self) -> Option<ConnInfo> {
        Some(self.info().clone())
    }

    fn drain_token(&self) -> Option<DrainToken> {
        Conn::drain_token(self)
    }
}
