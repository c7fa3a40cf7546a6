//! Descriptors: ownership, flags, `poll`, `epoll`, eventfds and pipes.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use super::{cvt, cvt_size, last, owned};

/// Numbers already claimed by [`claim_inherited`].
static CLAIMED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes ownership of a descriptor that the handover environment
/// (`LISTEN_FDS`, `GRACE_READY_FD`, `GRACE_HOLDER_FD`) hands this process.
///
/// That environment is what grants the ownership: the process that started
/// us placed those descriptors for us, and it is read once, at startup (see
/// `grace::init`), before anything else in the process opens a descriptor.
/// Each number can be claimed once for the life of the process, so no two
/// `OwnedFd` ever own one descriptor; stdio (0-2) and closed numbers are
/// refused.
pub(crate) fn claim_inherited(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fd {fd} is stdio, not an inherited socket"),
        ));
    }
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if claimed.contains(&fd) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("fd {fd} was claimed already"),
        ));
    }
    // F_GETFD fails with EBADF on a closed descriptor, so we never wrap one.
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }, "fcntl(F_GETFD)")?;
    claimed.push(fd);
    Ok(owned(fd))
}

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub(crate) fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD read and write the descriptor flags of an fd we
    // were handed; no memory is involved.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFD), "fcntl(F_GETFD)")?;
        let new = if on {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        if new != flags {
            cvt(libc::fcntl(fd, libc::F_SETFD, new), "fcntl(F_SETFD)")?;
        }
    }
    Ok(())
}

/// True if `FD_CLOEXEC` is set on `fd`.
#[cfg(test)]
pub(crate) fn cloexec(fd: RawFd) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }, "fcntl(F_GETFD)")?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL read and write status flags; no memory involved.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL), "fcntl(F_GETFL)")?;
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags {
            cvt(libc::fcntl(fd, libc::F_SETFL, new), "fcntl(F_SETFL)")?;
        }
    }
    Ok(())
}

/// `poll(2)`; `timeout` of `None` waits forever. Returns the number of ready fds.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    // SAFETY: fds is a live, exclusively borrowed slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n == -1 {
        Err(last("poll"))
    } else {
        Ok(n as usize)
    }
}

/// A `poll`/`epoll_wait` timeout in ms: `None` is -1 (forever); rounded up
/// so that a 0.4 ms remainder does not become a busy loop.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => d.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int,
    }
}

/// Builds a `pollfd`.
pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// An `eventfd` (CLOEXEC, non-blocking): a wake-up that stays readable once
/// written, until read.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    let fd = cvt(
        // SAFETY: no pointers.
        unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
        "eventfd",
    )?;
    Ok(owned(fd))
}

/// Adds one to an eventfd's counter, making it readable.
pub(crate) fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    let n = unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    cvt_size(n, "write(eventfd)").map(|_| ())
}

/// `read(2)`.
pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, exclusively borrowed byte slice of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    cvt_size(n, "read")
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    let fd = cvt(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    Ok(owned(fd))
}

/// `epoll_ctl(2)`: `op` is `EPOLL_CTL_ADD`, `MOD` or `DEL`; `token` comes
/// back in the event's data.
pub(crate) fn epoll_ctl(
    epfd: RawFd,
    op: libc::c_int,
    fd: RawFd,
    events: u32,
    token: u64,
) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    cvt(
        // SAFETY: ev is a live local; the kernel only reads it.
        unsafe { libc::epoll_ctl(epfd, op, fd, &mut ev) },
        "epoll_ctl",
    )?;
    Ok(())
}

/// An empty `epoll_event` buffer entry.
pub(crate) fn epoll_event() -> libc::epoll_event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// `epoll_wait(2)` into `events`; `timeout` of `None` waits forever.
/// Returns how many entries were filled.
pub(crate) fn epoll_wait(
    epfd: RawFd,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: events is a live, exclusively borrowed slice of at least `max`
    // entries, which the kernel fills.
    let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), max, ms) };
    cvt(n, "epoll_wait").map(|n| n as usize)
}

/// Reads (and so resets) an eventfd's counter; `Ok(false)` if it was 0.
pub(crate) fn eventfd_clear(fd: RawFd) -> io::Result<bool> {
    let mut v = [0u8; 8];
    match read(fd, &mut v) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// A CLOEXEC pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(
        // SAFETY: fds is a live array of two ints, as pipe2 expects.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    Ok((owned(fds[0]), owned(fds[1])))
}
