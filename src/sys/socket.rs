//! Sockets: addresses, options, bind/listen/accept, send and receive.

use std::ffi::OsStr;
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{cvt, cvt_size, owned};

/// A socket address as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    let fd = cvt(
        // SAFETY: socket() takes no pointers.
        unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) },
        "socket",
    )?;
    Ok(owned(fd))
}

/// `setsockopt` with an `int` value.
pub(crate) fn setsockopt_int(
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
pub(crate) fn getsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
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
pub(crate) fn bind(fd: RawFd, addr: &SockAddr) -> io::Result<()> {
    let (storage, len) = to_raw(addr)?;
    cvt(
        // SAFETY: storage holds a valid sockaddr of length len.
        unsafe { libc::bind(fd, &storage as *const _ as *const libc::sockaddr, len) },
        "bind",
    )?;
    Ok(())
}

/// `listen(2)`.
pub(crate) fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::listen(fd, backlog) }, "listen")?;
    Ok(())
}

/// `getsockname(2)`.
pub(crate) fn getsockname(fd: RawFd) -> io::Result<SockAddr> {
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
pub(crate) fn accept(fd: RawFd) -> Result<(OwnedFd, SockAddr), i32> {
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

/// `send(2)` with `MSG_NOSIGNAL | MSG_DONTWAIT`: a peer that went away gives
/// `EPIPE`, never a `SIGPIPE` that would kill the process, and a full send
/// buffer gives `EAGAIN` (the caller polls with its deadline).
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    send_more(fd, buf, false)
}

/// [`send`]; with `more`, also `MSG_MORE`: a partial last segment is held
/// back until more data, a `shutdown(SHUT_WR)` or the `close`, so a last
/// response and the FIN leave in one packet.
pub(crate) fn send_more(fd: RawFd, buf: &[u8], more: bool) -> io::Result<usize> {
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
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: buf is a live, exclusively borrowed byte slice of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags) };
    cvt_size(n, "recv")
}

/// `sendmsg(2)` of several buffers with `MSG_NOSIGNAL | MSG_DONTWAIT` (a
/// vectored [`send_more`]; `more` adds `MSG_MORE`).
pub(crate) fn sendv(fd: RawFd, bufs: &[io::IoSlice<'_>], more: bool) -> io::Result<usize> {
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
pub(crate) fn shutdown(fd: RawFd, how: libc::c_int) -> io::Result<()> {
    // SAFETY: no pointers.
    cvt(unsafe { libc::shutdown(fd, how) }, "shutdown")?;
    Ok(())
}

/// A pair of connected Unix stream sockets, both CLOEXEC.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_STREAM)
}

/// A pair of connected Unix datagram sockets, both CLOEXEC: the holder's
/// notification channel (one datagram per `sd_notify`-style message).
pub(crate) fn datagram_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    unix_pair(libc::SOCK_DGRAM)
}

fn unix_pair(ty: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    cvt(
        // SAFETY: fds is a live array of two ints, as socketpair expects.
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) },
        "socketpair",
    )?;
    Ok((owned(fds[0]), owned(fds[1])))
}

/// The peer's credentials of a Unix socket (`SO_PEERCRED`): (pid, uid, gid).
/// For a socketpair they are those of the process that created it.
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<(u32, u32, u32)> {
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

/// `sendfile(2)` from `file` at `*offset` (advanced by what was sent) to the
/// socket `out`, at most `count` bytes. The socket is non-blocking
/// (`MSG_DONTWAIT` is not available here, so the caller's socket must be
/// `O_NONBLOCK` or the call may block): `WouldBlock` when it is full.
pub(crate) fn sendfile(
    out: RawFd,
    file: std::os::fd::BorrowedFd<'_>,
    offset: &mut i64,
    count: usize,
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off: libc::off_t = *offset as libc::off_t;
    // SAFETY: `off` is a live local the kernel updates; `file` is borrowed
    // for the call, so its descriptor is open.
    let n = unsafe { libc::sendfile(out, file.as_raw_fd(), &mut off, count) };
    let n = cvt_size(n, "sendfile")?;
    *offset = off as i64;
    Ok(n)
}
