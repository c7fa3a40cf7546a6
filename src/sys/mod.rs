//! Thin wrappers over the libc calls grace needs. All of grace's `unsafe`
//! code lives in this module; every block says why it is sound.
//!
//! Each wrapper turns a `-1` return into an [`io::Error`] that names the call
//! that failed (`accept4: Too many open files (os error 24)`), except for the
//! would-block and interrupted cases on hot paths, which stay allocation-free
//! raw OS errors because callers handle them in a loop.
//!
//! Private to the crate, split by concern:
//! - `fd`: descriptor ownership and flags, `poll`, `epoll`, eventfds, pipes;
//! - `socket`: addresses, options, bind/listen/accept, send/recv, socket pairs;
//! - `process`: pids, `kill`, `waitpid`, the subreaper, the holder's fork;
//! - `exec`: `ExecSpec` and `fork_exec` (the child side of an upgrade);
//! - `signal`: signal masks and `signalfd`;
//! - `limits`: `SCHED_BATCH`, `RLIMIT_NOFILE`, the monotonic clock.
//!
//! The functions that take a `RawFd` only pass it to a syscall that uses
//! it; none closes or takes ownership of a descriptor it was given, except
//! [`fd::claim_inherited`], whose claims are checked.

mod exec;
mod fd;
mod limits;
mod process;
mod signal;
mod socket;

pub(crate) use exec::*;
pub(crate) use fd::*;
pub(crate) use limits::*;
pub use process::Exit;
pub(crate) use process::*;
pub(crate) use signal::*;
pub use socket::SockAddr;
pub(crate) use socket::*;

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// An OS error tagged with the call that produced it.
#[derive(Debug)]
pub(crate) struct SysError {
    /// The libc call, for example `"accept4"`.
    pub call: &'static str,
    /// The `errno` value it failed with.
    pub errno: i32,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}",
            self.call,
            io::Error::from_raw_os_error(self.errno)
        )
    }
}

impl std::error::Error for SysError {}

/// Builds the error for a failed `call` from `errno`.
pub(crate) fn error(call: &'static str, errno: i32) -> io::Error {
    let raw = io::Error::from_raw_os_error(errno);
    match raw.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => raw,
        kind => io::Error::new(kind, SysError { call, errno }),
    }
}

fn last(call: &'static str) -> io::Error {
    error(call, io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// The `errno` inside an error made by this module (or a raw OS error).
pub(crate) fn errno_of(e: &io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<SysError>())
        .map(|s| s.errno)
}

fn cvt(ret: libc::c_int, call: &'static str) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(last(call))
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t, call: &'static str) -> io::Result<usize> {
    if ret == -1 {
        Err(last(call))
    } else {
        Ok(ret as usize)
    }
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor that a syscall has just returned
    // to us, or one `fd::claim_inherited` checked was granted to us and never
    // claimed before: either way nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
