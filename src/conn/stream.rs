//! What wrapped streams and large bodies use: `Read`/`Write` with the
//! connection's I/O timeout, `TCP_NODELAY` for streams, `sendfile(2)`.

use std::io;
use std::time::Instant;

use super::{Conn, SockAddr};
use crate::sys;

impl Conn {
    /// How long a [`io::Read::read`] or [`io::Write::write`] on the connection may
    /// wait before it fails with [`io::ErrorKind::TimedOut`] (default 30 s).
    /// The `_deadline` methods take their own.
    pub fn set_io_timeout(&mut self, timeout: std::time::Duration) {
        self.io_timeout = timeout;
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
