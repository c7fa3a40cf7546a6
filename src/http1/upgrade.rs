//! Upgraded connections: after a `101 Switching Protocols`, the handler's
//! callback gets the connection as a byte stream ([`Upgraded`]) on the
//! thread that served the request, for as long as it wants.

use std::fmt;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use crate::drain::DrainToken;
use crate::http1::{Idle, Transport};

/// What [`crate::http1::ResponseBody::upgrade`] runs once the `101` head is
/// written.
pub(crate) type OnUpgrade = Box<dyn for<'a> FnOnce(Upgraded<'a>) + Send>;

/// A connection after `101 Switching Protocols`: `Read` + `Write` with
/// deadlines, for the protocol the client switched to (a WebSocket, say).
///
/// It is counted by the drain as [`crate::ConnState::Upgraded`]. When the
/// server starts going away, one `read` fails with
/// [`io::ErrorKind::WouldBlock`] ("the server is draining") and
/// [`Upgraded::drain_token`] says so: close politely then (a WebSocket sends
/// a close frame, code 1012 or 1001). A connection still open at the drain's
/// stop timeout is shut down by force, and its reads and writes fail.
///
/// Dropping it (returning from the callback) closes the connection.
pub struct Upgraded<'a> {
    t: &'a mut dyn Transport,
    /// Bytes the client sent after the request head, read with it.
    pending: Vec<u8>,
    read_timeout: Option<Duration>,
    write_timeout: Duration,
    token: Option<DrainToken>,
}

impl<'a> Upgraded<'a> {
    pub(crate) fn new(
        t: &'a mut dyn Transport,
        pending: Vec<u8>,
        write_timeout: Duration,
    ) -> Upgraded<'a> {
        let token = t.drain_token();
        Upgraded {
            t,
            pending,
            read_timeout: None,
            write_timeout,
            token,
        }
    }

    /// How long a `read` may wait for bytes before it fails with
    /// [`io::ErrorKind::TimedOut`]; `None` (the default) waits as long as
    /// the peer is silent (the drain still interrupts it).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// How long a `write` may wait for room (default: the server's
    /// [`crate::http1::HttpConfig::write_timeout`]).
    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// The server's drain token (`None` on an in-memory transport).
    pub fn drain_token(&self) -> Option<&DrainToken> {
        self.token.as_ref()
    }

    fn read_deadline(&self) -> Instant {
        let far = Duration::from_secs(365 * 24 * 3600);
        Instant::now() + self.read_timeout.unwrap_or(far)
    }
}

impl Read for Upgraded<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.pending.is_empty() {
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.read_deadline();
        match self.t.wait_idle(deadline)? {
            Idle::Data => self.t.read_deadline(buf, deadline),
            Idle::Eof => Ok(0),
            Idle::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "upgraded connection: read timed out",
            )),
            Idle::Drain => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "the server is draining",
            )),
            // The connection was taken off the idle poller when it was
            // upgraded; a transport that parks anyway ends the stream.
            _ => Ok(0),
        }
    }
}

impl Write for Upgraded<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = Instant::now() + self.write_timeout;
        self.t.write_all_deadline(&[buf], deadline)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Upgraded<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("pending", &self.pending.len())
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}
