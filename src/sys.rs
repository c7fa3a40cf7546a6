//! Thin wrappers over the libc calls grace needs. All of grace's `unsafe`
//! code lives in this module; every block says why it is sound.
//!
//! Each wrapper turns a `-1` return into an [`io::Error`] that names the call
//! that failed (`accept4: Too many open files (os error 24)`), except for the
//! would-block and interrupted cases on hot paths, which stay allocation-free
//! raw OS errors because callers handle them in a loop.

use std::ffi::{CStr, CString, OsStr};
use std::fmt;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An OS error tagged with the call that produced it.
#[derive(Debug)]
pub struct SysError {
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
pub fn error(call: &'static str, errno: i32) -> io::Error {
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
pub fn errno_of(e: &io::Error) -> Option<i32> {
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
    // to us and that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Takes ownership of an inherited descriptor number.
///
/// The caller must know that `fd` is open and owned by nobody else in this
/// process (for example an fd handed down through `LISTEN_FDS`).
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // F_GETFD fails with EBADF on a closed descriptor, so we never wrap one.
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }, "fcntl(F_GETFD)")?;
    Ok(owned(fd))
}

/// True if `fd` is an open descriptor.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Sets or clears `FD_CLOEXEC` on `fd`.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
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
pub fn cloexec(fd: RawFd) -> io::Result<bool> {
    // SAFETY: fcntl(F_GETFD) only reads the descriptor's flags.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) }, "fcntl(F_GETFD)")?;
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// Sets or clears `O_NONBLOCK` on the open file description behind `fd`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
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

/// A socket address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    /// IPv4 or IPv6.
    Inet(SocketAddr),
    /// A Unix-domain socket bound to a path.
    Unix(PathBuf),
    /// A Unix socket in the abstract namespace (the name without its NUL).
    Abstract(Vec<u8>),
    /// Unnamed, or a family grace does not handle.
    Other,
}

fn to_raw(addr: &SockAddr) -> io::Result<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SockAddr::Inet(SocketAddr::V4(a)) => {
            // SAFETY: sockaddr_storage is large enough and suitably aligned for
            // sockaddr_in; we write only through this typed pointer.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SockAddr::Inet(SocketAddr::V6(a)) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            mem::size_of::<libc::sockaddr_in6>()
        }
        SockAddr::Unix(path) => {
            // SAFETY: as above, for sockaddr_un.
            let sun = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_un) };
            sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_os_str().as_bytes();
            if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "unix socket path {:?} must be 1..{} bytes without NUL",
                        path,
                        sun.sun_path.len() - 1
                    ),
                ));
            }
            for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
                *dst = *src as libc::c_char;
            }
            mem::size_of::<libc::sa_family_t>() + bytes.len() + 1
        }
        SockAddr::Abstract(_) | SockAddr::Other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot bind this address family",
            ))
        }
    };
    Ok((storage, len as libc::socklen_t))
}

fn from_raw(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> SockAddr {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for family AF_INET.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            SockAddr::Inet(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for family AF_INET6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            SockAddr::Inet(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        libc::AF_UNIX => {
            // SAFETY: the kernel wrote a sockaddr_un for family AF_UNIX.
            let sun = unsafe { &*(storage as *const _ as *const libc::sockaddr_un) };
            let path_len = (len as usize).saturating_sub(mem::size_of::<libc::sa_family_t>());
            let raw: Vec<u8> = sun.sun_path[..path_len.min(sun.sun_path.len())]
                .iter()
                .map(|c| *c as u8)
                .collect();
            if raw.is_empty() {
                SockAddr::Other
            } else if raw[0] == 0 {
                SockAddr::Abstract(raw[1..].to_vec())
            } else {
                let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
                SockAddr::Unix(PathBuf::from(OsStr::from_bytes(&raw[..end])))
            }
        }
        _ => SockAddr::Other,
    }
}

/// Creates a socket with `SOCK_CLOEXEC | SOCK_NONBLOCK`.
pub fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(
        // SAFETY: socket() takes no pointers.
        unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) },
        "socket",
    )?;
    Ok(owned(fd))
}

/// `setsockopt` with an `int` value.
pub fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    cvt(
        // SAFETY: we pass a pointer to a live c_int and its exact size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        },
        "setsockopt",
    )?;
    Ok(())
}

/// `getsockopt` with an `int` value.
pub fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    cvt(
        // SAFETY: value and len are live locals; the kernel writes at most len bytes.
        unsafe {
            libc::getsockopt(
                fd,
                level,
                name,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        },
        "getsockopt",
    )?;
    Ok(value)
}

/// `bind(2)`.
pub fn bind(fd: RawFd, addr: &SockAddr) -> io::Result<()> {
    let (storage, len) = to_raw(addr)?;
    cvt(
        // SAFETY: storage holds a valid sockaddr of length len.
        unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) },
        "bind",
    )?;
    Ok(())
}

/// `listen(2)`.
pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::listen(fd, backlog) }, "listen")?;
    Ok(())
}

/// `getsockname(2)`.
pub fn getsockname(fd: RawFd) -> io::Result<SockAddr> {
    // SAFETY: all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    cvt(
        // SAFETY: storage/len are live locals sized for any address family.
        unsafe { libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) },
        "getsockname",
    )?;
    Ok(from_raw(&storage, len))
}

/// `accept4(2)` with `SOCK_CLOEXEC`: connection fds never leak into a child
/// process. The socket is left in blocking mode: a kept-alive TCP
/// connection's thread blocks in `recv` for the next request (see
/// `conn::Conn::wait_idle`); every other read and write passes
/// `MSG_DONTWAIT` and waits in `poll` with a deadline.
///
/// Returns the raw OS error (no call name) so the accept loop can match on it
/// without allocating.
pub fn accept(fd: RawFd) -> Result<(OwnedFd, SockAddr), i32> {
    // SAFETY: all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len are live locals sized for any address family.
    let ret = unsafe {
        libc::accept4(
            fd,
            &mut storage as *mut _ as *mut libc::sockaddr,
            &mut len,
            libc::SOCK_CLOEXEC,
        )
    };
    if ret == -1 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok((owned(ret), from_raw(&storage, len)))
}

/// `poll(2)`; `timeout` of `None` waits forever. Returns the number of ready fds.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
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
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// An `eventfd` (CLOEXEC, non-blocking): a wake-up that stays readable once
/// written, until read.
pub fn eventfd() -> io::Result<OwnedFd> {
    let fd = cvt(
        // SAFETY: no pointers.
        unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) },
        "eventfd",
    )?;
    Ok(owned(fd))
}

/// Adds one to an eventfd's counter, making it readable.
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64.
    let n = unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
    cvt_size(n, "write(eventfd)").map(|_| ())
}

/// `read(2)`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a live, exclusively borrowed byte slice of buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    cvt_size(n, "read")
}

/// `write(2)`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a live byte slice of buf.len() bytes.
    let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    cvt_size(n, "write")
}

/// `send(2)` with `MSG_NOSIGNAL | MSG_DONTWAIT`: a peer that went away gives
/// `EPIPE`, never a `SIGPIPE` that would kill the process, and a full send
/// buffer gives `EAGAIN` (the caller polls with its deadline).
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send_more(fd, buf, false)
}

/// [`send`]; with `more`, also `MSG_MORE`: a partial last segment is held
/// back until more data, a `shutdown(SHUT_WR)` or the `close`, so a last
/// response and the FIN leave in one packet.
pub fn send_more(fd: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = send_flags(more);
    // SAFETY: buf is a live byte slice of buf.len() bytes.
    let n = unsafe { libc::send(fd, buf.as_ptr() as *const libc::c_void, buf.len(), flags) };
    cvt_size(n, "send")
}

/// `MSG_NOSIGNAL | MSG_DONTWAIT`, plus `MSG_MORE` with `more`.
fn send_flags(more: bool) -> libc::c_int {
    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | if more { libc::MSG_MORE } else { 0 }
}

/// `recv(2)` with `flags` (`MSG_DONTWAIT` for a non-blocking read).
pub fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is a live, exclusively borrowed byte slice of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags) };
    cvt_size(n, "recv")
}

/// `epoll_create1(EPOLL_CLOEXEC)`.
pub fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers.
    let fd = cvt(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    Ok(owned(fd))
}

/// `epoll_ctl(2)`: `op` is `EPOLL_CTL_ADD`, `MOD` or `DEL`; `token` comes
/// back in the event's data.
pub fn epoll_ctl(
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
pub fn epoll_event() -> libc::epoll_event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// `epoll_wait(2)` into `events`; `timeout` of `None` waits forever.
/// Returns how many entries were filled.
pub fn epoll_wait(
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

/// Puts the calling thread under `SCHED_BATCH` (fair share, but a wake-up
/// does not preempt the running thread). Failure (a seccomp filter, say) is
/// logged at debug level and otherwise ignored: it only costs speed.
pub fn sched_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a live local the kernel only reads; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r == -1 {
        log::debug!("[{}] {}", getpid(), last("sched_setscheduler(SCHED_BATCH)"));
    }
}

/// Reads (and so resets) an eventfd's counter; `Ok(false)` if it was 0.
pub fn eventfd_clear(fd: RawFd) -> io::Result<bool> {
    let mut v = [0u8; 8];
    match read(fd, &mut v) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// `sendmsg(2)` of several buffers with `MSG_NOSIGNAL | MSG_DONTWAIT` (a
/// vectored [`send_more`]; `more` adds `MSG_MORE`).
pub fn sendv(fd: RawFd, bufs: &[io::IoSlice<'_>], more: bool) -> io::Result<usize> {
    // SAFETY: all-zero msghdr is valid (null name, no control data).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(libc::UIO_MAXIOV as usize) as _;
    let flags = send_flags(more);
    // SAFETY: msg points at live iovecs describing live borrowed buffers.
    let n = unsafe { libc::sendmsg(fd, &msg, flags) };
    cvt_size(n, "sendmsg")
}

/// `shutdown(2)`. Only ever used on connection sockets, never on listeners
/// (a listener is shared with the other generation).
pub fn shutdown(fd: RawFd, how: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::shutdown(fd, how) }, "shutdown")?;
    Ok(())
}

/// A pair of connected Unix stream sockets, both CLOEXEC.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(
        // SAFETY: fds is a live array of two ints, as socketpair expects.
        unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        },
        "socketpair",
    )?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// A CLOEXEC pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(
        // SAFETY: fds is a live array of two ints, as pipe2 expects.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    )?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// This process's id.
pub fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The parent process's id.
pub fn getppid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }, "kill")?;
    Ok(())
}

/// How a waited-for process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit(code)`.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// `waitpid(pid)`; with `block == false` returns `Ok(None)` while it still runs.
pub fn waitpid(pid: u32, block: bool) -> io::Result<Option<Exit>> {
    let mut status: libc::c_int = 0;
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: status is a live local int.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error("waitpid", e.raw_os_error().unwrap_or(0)));
        }
        if r == 0 {
            return Ok(None);
        }
        return Ok(Some(if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }));
    }
}

/// Makes this process a child subreaper: orphaned descendants are reparented
/// to it instead of PID 1, so it can reap every generation it starts.
pub fn set_child_subreaper() -> io::Result<()> {
    cvt(
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) },
        "prctl(PR_SET_CHILD_SUBREAPER)",
    )?;
    Ok(())
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does.
/// Returns (old soft, new soft).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    cvt(
        // SAFETY: lim is a live local rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) },
        "getrlimit",
    )?;
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        cvt(
            // SAFETY: lim is a live, initialised rlimit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) },
            "setrlimit",
        )?;
    }
    Ok((old, lim.rlim_cur))
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC` wants.
pub fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live local timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Removes an environment variable.
///
/// Only called while the process is still single-threaded (adopting inherited
/// listeners at startup), where `unsetenv` cannot race a reader.
pub fn remove_env(key: &str) {
    std::env::remove_var(key);
}

/// Everything the child half of `fork` needs, prepared before the fork so the
/// child allocates nothing.
pub struct ExecSpec {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env: Vec<Vec<u8>>,
    envp: Vec<*const libc::c_char>,
    /// Indexes in `env` of the `NAME=` entries (`LISTEN_PID=`,
    /// `WATCHDOG_PID=`) whose digits the child fills in with its own pid,
    /// with the length of their `NAME=` prefix.
    pid_entries: Vec<(usize, usize)>,
    /// Fds to place at 3, 4, ... in the child, in order.
    fds: Vec<RawFd>,
    cwd: Option<CString>,
}

/// Room for the digits of any pid after `LISTEN_PID=`.
const PID_DIGITS: usize = 20;
/// At most this many `NAME=<child pid>` entries.
const MAX_PID_VARS: usize = 2;

impl ExecSpec {
    /// Prepares `path` to run with `argv`, environment `env` (`KEY=VALUE`
    /// strings), and `fds` placed at 3, 4, .... For each name in `pid_vars`
    /// (at most two: `LISTEN_PID`, `WATCHDOG_PID`) an entry is added whose
    /// value the child fills in with its own pid, unknown before the fork.
    pub fn new(
        path: &Path,
        argv: &[std::ffi::OsString],
        env: &[Vec<u8>],
        pid_vars: &[&str],
        fds: Vec<RawFd>,
        cwd: Option<&Path>,
    ) -> io::Result<ExecSpec> {
        let nul = |b: &[u8]| {
            CString::new(b.to_vec()).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in exec argument")
            })
        };
        let path = nul(path.as_os_str().as_bytes())?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| nul(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envs: Vec<Vec<u8>> = Vec::with_capacity(env.len() + 1);
        for e in env {
            if e.contains(&0) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL byte in environment",
                ));
            }
            let mut v = e.clone();
            v.push(0);
            envs.push(v);
        }
        if pid_vars.len() > MAX_PID_VARS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "too many pid variables",
            ));
        }
        let mut pid_entries = Vec::new();
        for name in pid_vars {
            let mut v = format!("{name}=").into_bytes();
            let prefix = v.len();
            v.extend(std::iter::repeat(0u8).take(PID_DIGITS + 1));
            pid_entries.push((envs.len(), prefix));
            envs.push(v);
        }
        let mut envp: Vec<*const libc::c_char> = envs
            .iter()
            .map(|e| e.as_ptr() as *const libc::c_char)
            .collect();
        envp.push(std::ptr::null());
        let cwd = match cwd {
            Some(c) => Some(nul(c.as_os_str().as_bytes())?),
            None => None,
        };
        Ok(ExecSpec {
            path,
            _argv: argv,
            argv_ptrs,
            env: envs,
            envp,
            pid_entries,
            fds,
            cwd,
        })
    }

    /// The program path.
    pub fn path(&self) -> &CStr {
        &self.path
    }
}

/// Forks, and in the child places `spec.fds` at 3.., clears their
/// `FD_CLOEXEC`, writes its pid into `LISTEN_PID`, resets the signal mask and
/// `execve`s. Returns the child's pid and the read end of a CLOEXEC pipe that
/// yields the child's `errno` if exec failed and end-of-file if it succeeded.
///
/// The child runs only async-signal-safe calls (`fcntl`, `dup2`, `chdir`,
/// `sigprocmask`, `getpid`, `execve`, `write`, `_exit`) and allocates nothing.
pub fn fork_exec(spec: &mut ExecSpec) -> io::Result<(u32, OwnedFd)> {
    let (err_r, err_w) = pipe()?;
    let n = spec.fds.len() as RawFd;
    // The temporaries of the first pass go above every target and source fd.
    let high = spec
        .fds
        .iter()
        .copied()
        .chain([err_w.as_raw_fd(), 3 + n])
        .max()
        .unwrap_or(3)
        + 1;
    let mut pid_ptrs: [*mut u8; MAX_PID_VARS] = [std::ptr::null_mut(); MAX_PID_VARS];
    for (slot, &(i, prefix)) in pid_ptrs.iter_mut().zip(&spec.pid_entries) {
        // SAFETY: `prefix` is the length of the `NAME=` start of this entry,
        // which has PID_DIGITS + 1 more bytes after it.
        *slot = unsafe { spec.env[i].as_mut_ptr().add(prefix) };
    }
    let fds_ptr = spec.fds.as_ptr();
    let nfds = spec.fds.len();
    let path = spec.path.as_ptr();
    let argv = spec.argv_ptrs.as_ptr();
    let envp = spec.envp.as_ptr();
    let cwd = spec.cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let err_w_raw = err_w.as_raw_fd();

    // SAFETY: fork() has no memory preconditions. In the child, which is a
    // copy of one thread of a possibly multi-threaded process, we call only
    // async-signal-safe functions and touch only memory prepared above
    // (`spec`'s buffers stay alive: the parent holds `spec` across the call
    // and the child's copy is never freed before execve or _exit).
    let pid = unsafe { libc::fork() };
    if pid == -1 {
        return Err(last("fork"));
    }
    if pid == 0 {
        // SAFETY: the child half; see `child_after_fork`.
        unsafe {
            child_after_fork(
                fds_ptr, nfds, high, err_w_raw, pid_ptrs, cwd, path, argv, envp,
            )
        }
    }
    drop(err_w);
    Ok((pid as u32, err_r))
}

/// The child's side of [`fork_exec`]; never returns.
///
/// # Safety
/// Must only be called in the child right after `fork`, with pointers into
/// buffers that were valid in the parent at the time of the fork.
#[allow(clippy::too_many_arguments)]
unsafe fn child_after_fork(
    fds: *const RawFd,
    nfds: usize,
    high: RawFd,
    err_w: RawFd,
    pid_ptrs: [*mut u8; MAX_PID_VARS],
    cwd: *const libc::c_char,
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) -> ! {
    // Report errno over the error pipe and exit without running any
    // destructor or atexit handler of the parent's copy.
    let fail = |err_w: RawFd| -> ! {
        let e = *libc::__errno_location();
        let bytes = e.to_ne_bytes();
        libc::write(err_w, bytes.as_ptr() as *const libc::c_void, bytes.len());
        libc::_exit(127)
    };

    // Move the error pipe out of the way of the target range first.
    let moved = libc::fcntl(err_w, libc::F_DUPFD_CLOEXEC, high);
    if moved == -1 {
        // Nothing has been placed yet, so the original end still works.
        fail(err_w);
    }
    let err_w = moved;
    // Pass 1: copy every source to a temporary above all targets (CLOEXEC,
    // so the temporaries vanish at exec). Without this, placing fd 3 could
    // clobber a source that happens to live at 3.
    let mut tmp: [RawFd; 64] = [-1; 64];
    if nfds > tmp.len() {
        *libc::__errno_location() = libc::EMFILE;
        fail(err_w);
    }
    for (i, slot) in tmp.iter_mut().enumerate().take(nfds) {
        let t = libc::fcntl(*fds.add(i), libc::F_DUPFD_CLOEXEC, high);
        if t == -1 {
            fail(err_w);
        }
        *slot = t;
    }
    // Pass 2: dup2 each temporary onto its target. dup2 onto a different fd
    // yields a descriptor without FD_CLOEXEC; clear it explicitly anyway,
    // since dup2(i, i) would not.
    for (i, t) in tmp.iter().enumerate().take(nfds) {
        let target = 3 + i as RawFd;
        if libc::dup2(*t, target) == -1 {
            fail(err_w);
        }
        let flags = libc::fcntl(target, libc::F_GETFD);
        if flags == -1 || libc::fcntl(target, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
            fail(err_w);
        }
    }
    // LISTEN_PID=<our pid> (and WATCHDOG_PID=), written into the
    // placeholders without allocating.
    let mut pid = libc::getpid() as u32;
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (pid % 10) as u8;
        len += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for value in pid_ptrs {
        if value.is_null() {
            continue;
        }
        for i in 0..len {
            *value.add(i) = digits[len - 1 - i];
        }
        *value.add(len) = 0;
    }
    if !cwd.is_null() && libc::chdir(cwd) == -1 {
        fail(err_w);
    }
    // The blocked-signal mask survives execve; the new program starts clean.
    let mut set: libc::sigset_t = mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    libc::execve(path, argv, envp);
    fail(err_w)
}

/// Closes `fd` now (for raw descriptors that no `OwnedFd` owns).
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// Lists this process's open descriptors (from `/proc/self/fd`).
pub fn open_fds() -> io::Result<Vec<RawFd>> {
    let mut v: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// A pair of connected Unix datagram sockets, both CLOEXEC: the holder's
/// notification channel (one datagram per `sd_notify`-style message).
pub fn datagram_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(
        // SAFETY: fds is a live array of two ints, as socketpair expects.
        unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        },
        "socketpair",
    )?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// The peer's credentials of a Unix socket (`SO_PEERCRED`): (pid, uid, gid).
/// For a socketpair they are those of the process that created it.
pub fn peer_cred(fd: RawFd) -> io::Result<(u32, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    cvt(
        // SAFETY: cred and len are live locals; the kernel writes at most len bytes.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                &mut cred as *mut libc::ucred as *mut libc::c_void,
                &mut len,
            )
        },
        "getsockopt(SO_PEERCRED)",
    )?;
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// A saved signal mask, to restore with [`restore_signal_mask`].
pub struct SigMask(libc::sigset_t);

fn sigset_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: set is a live local sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks `signals` for the calling thread (the whole process, while it is
/// single-threaded) and returns the previous mask.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<SigMask> {
    let set = sigset_of(signals);
    // SAFETY: sigset_t is plain data; sigprocmask fills `old`.
    let mut old: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: both pointers are to live local sigset_t values.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if r != 0 {
        return Err(error("pthread_sigmask", r));
    }
    Ok(SigMask(old))
}

/// Restores a mask saved by [`block_signals`].
pub fn restore_signal_mask(mask: &SigMask) {
    // SAFETY: mask.0 is an initialised sigset_t; the old-mask pointer may be null.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask.0, std::ptr::null_mut()) };
}

/// A `signalfd` (CLOEXEC, non-blocking) that reads `signals`, which the
/// caller must have blocked.
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset_of(signals);
    let fd = cvt(
        // SAFETY: set is a live, initialised sigset_t; -1 asks for a new fd.
        unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) },
        "signalfd",
    )?;
    Ok(owned(fd))
}

/// A signal read from a [`signalfd`]: its number, and who sent it.
#[derive(Debug, Clone, Copy)]
pub struct SigInfo {
    /// The signal number.
    pub signo: i32,
    /// The sending process (0 when the kernel sent it, say from a terminal).
    pub pid: u32,
    /// True if a process sent it with `kill` or `sigqueue`, false if the
    /// kernel did (a terminal's Ctrl-C, a child's exit).
    pub from_process: bool,
}

/// Reads the next pending signal from a non-blocking [`signalfd`];
/// `Ok(None)` when none is pending.
pub fn read_signal(fd: RawFd) -> io::Result<Option<SigInfo>> {
    // SAFETY: signalfd_siginfo is plain data; the kernel fills it whole.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: info is a live local of exactly `size` bytes.
        let n = unsafe { libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size) };
        if n == -1 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(last("read(signalfd)")),
            }
        }
        if n as usize != size {
            return Ok(None);
        }
        return Ok(Some(SigInfo {
            signo: info.ssi_signo as i32,
            pid: info.ssi_pid,
            from_process: info.ssi_code == libc::SI_USER || info.ssi_code == libc::SI_QUEUE,
        }));
    }
}

/// Forks a process that is known to be single-threaded. Returns the child's
/// pid in the parent and `None` in the child, which may then go on running
/// ordinary code (it is a full copy of the only thread).
///
/// # Safety
/// The calling process must have exactly one thread: in a multi-threaded
/// process the child could inherit a lock held by a thread that does not
/// exist in it, and only async-signal-safe calls would be allowed after the
/// fork.
pub unsafe fn fork_single_threaded() -> io::Result<Option<u32>> {
    // SAFETY: fork has no memory preconditions; the caller guarantees the
    // process is single-threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(last("fork")),
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}

/// Reaps any one child that has ended, without blocking: `Ok(Some((pid,
/// how)))`, `Ok(None)` if children remain but none has ended, or an
/// `ECHILD` error if there are no children at all.
pub fn wait_any() -> io::Result<Option<(u32, Exit)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: status is a live local int.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(last("waitpid"));
        }
        if r == 0 {
            return Ok(None);
        }
        let how = if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        };
        return Ok(Some((r as u32, how)));
    }
}

/// True if process `pid` exists (a zombie counts until it is reaped).
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's effective user id.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}
