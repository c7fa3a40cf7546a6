//! The new process's side of an upgrade (the part after adopting the
//! listeners, which [`crate::listener`] does).
//!
//! The readiness socket is inherited at the fd named by `GRACE_READY_FD`.
//! The child writes one byte to it once it is really serving (listeners
//! adopted, accept thread running, pid file written) and keeps it open. The
//! parent holds its end until it exits, so end-of-file here means the old
//! generation is gone: only then may the next upgrade start.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::sys;

/// Tells the parent we are serving.
pub(crate) fn announce_ready(fd: &OwnedFd) -> io::Result<()> {
    sys::send(fd.as_raw_fd(), b"R").map(|_| ())
}

/// Blocks until the parent closes its end of the readiness socket (true) or
/// `stop_fd` becomes readable (false).
pub(crate) fn wait_parent_exit(fd: &OwnedFd, stop_fd: RawFd) -> bool {
    let mut buf = [0u8; 16];
    loop {
        let mut pfds = [
            sys::pollfd(fd.as_raw_fd(), libc::POLLIN),
            sys::pollfd(stop_fd, libc::POLLIN),
        ];
        match sys::poll(&mut pfds, None) {
            Ok(_) if pfds[1].revents != 0 => return false,
            Ok(_) => match sys::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    continue
                }
                Err(_) => return true,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}
