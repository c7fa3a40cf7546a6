//! One listening socket: bind (with the stale Unix socket check), adopt,
//! options.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use super::ListenAddr;
use crate::sys::{self};

/// The identity of the file a Unix socket was bound at, so that a final
/// shutdown unlinks the path only while it still names our socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &Path) -> Option<FileId> {
    std::fs::symlink_metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

/// One listening socket.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    pub(super) addr: ListenAddr,
    pub(super) name: String,
    pub(super) inherited: bool,
    unix_id: Option<FileId>,
}

impl Listener {
    /// Binds a new listening socket at `addr` with `SO_REUSEADDR` and the
    /// given backlog. A Unix socket file left behind by a dead server is
    /// replaced; one that a live server accepts on is refused with
    /// `AddrInUse`.
    pub fn bind(addr: &ListenAddr, backlog: i32) -> io::Result<Listener> {
        Listener::bind_mode(addr, backlog, None)
    }

    /// [`Listener::bind`]; a Unix socket file gets permission bits `mode`
    /// between `bind` and `listen`, so nobody can connect before they apply.
    pub fn bind_mode(addr: &ListenAddr, backlog: i32, mode: Option<u32>) -> io::Result<Listener> {
        let ctx = |e: io::Error| io::Error::new(e.kind(), format!("listen on {addr}: {e}"));
        let (domain, unix_path) = match addr {
            ListenAddr::Tcp(SocketAddr::V4(_)) => (libc::AF_INET, None),
            ListenAddr::Tcp(SocketAddr::V6(_)) => (libc::AF_INET6, None),
            ListenAddr::Unix(p) => (libc::AF_UNIX, Some(p.as_path())),
        };
        if let Some(path) = unix_path {
            clear_stale_unix_socket(path).map_err(ctx)?;
        }
        let fd = sys::socket(domain, libc::SOCK_STREAM).map_err(ctx)?;
        if domain != libc::AF_UNIX {
            sys::setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                .map_err(ctx)?;
        }
        if domain == libc::AF_INET6 {
            // `[::]:80` means IPv6 only; bind 0.0.0.0 separately for IPv4.
            sys::setsockopt_int(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
                .map_err(ctx)?;
        }
        sys::bind(fd.as_raw_fd(), &addr.sock_addr()).map_err(ctx)?;
        if let (Some(path), Some(mode)) = (unix_path, mode) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(ctx)?;
        }
        sys::listen(fd.as_raw_fd(), backlog).map_err(ctx)?;
        let actual = sys::getsockname(fd.as_raw_fd())
            .ok()
            .and_then(|a| ListenAddr::from_sock_addr(&a))
            .unwrap_or_else(|| addr.clone());
        let unix_id = unix_path.and_then(file_id);
        log::debug!("[{}] bound {actual} (fd {})", sys::getpid(), fd.as_raw_fd());
        Ok(Listener {
            name: addr.fd_name(),
            fd,
            addr: actual,
            inherited: false,
            unix_id,
        })
    }

    /// Wraps an inherited listening socket: checks it is a listening stream
    /// socket, makes it non-blocking and CLOEXEC.
    pub(super) fn adopt(fd: OwnedFd, name: String) -> io::Result<Listener> {
        let raw = fd.as_raw_fd();
        let ty = sys::getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_TYPE)?;
        let listening = sys::getsockopt_int(raw, libc::SOL_SOCKET, libc::SO_ACCEPTCONN)?;
        if ty != libc::SOCK_STREAM || listening == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inherited fd {raw} is not a listening stream socket"),
            ));
        }
        let addr = ListenAddr::from_sock_addr(&sys::getsockname(raw)?).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inherited fd {raw} has an unsupported address"),
            )
        })?;
        sys::set_cloexec(raw, true)?;
        // O_NONBLOCK lives on the open file description, which the other
        // generation shares: both expect it, and EAGAIN after poll just means
        // the other process took the connection.
        sys::set_nonblocking(raw, true)?;
        let unix_id = match &addr {
            ListenAddr::Unix(p) => file_id(p),
            _ => None,
        };
        Ok(Listener {
            fd,
            addr,
            name,
            inherited: true,
            unix_id,
        })
    }

    /// The address the socket is bound to (with the real port when 0 was asked).
    pub fn local_addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// The name passed down in `LISTEN_FDNAMES`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames it (the name passed down in `LISTEN_FDNAMES`).
    pub(crate) fn set_name(&mut self, name: &str) {
        self.name = name.to_string();
    }

    /// Sets `TCP_DEFER_ACCEPT` to `wait`, rounded up to whole seconds
    /// (`Duration::ZERO` turns it off): the kernel then hands a connection
    /// to `accept` only once its first bytes have arrived, or, for a client
    /// that stays silent, once `wait` has passed. A no-op on Unix sockets.
    pub fn set_defer_accept(&self, wait: Duration) -> io::Result<()> {
        if !matches!(self.addr, ListenAddr::Tcp(_)) {
            return Ok(());
        }
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = secs.min(i32::MAX as u64) as libc::c_int;
        sys::setsockopt_int(
            self.fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            secs,
        )
    }

    /// True if this socket came from the parent process or systemd.
    pub fn is_inherited(&self) -> bool {
        self.inherited
    }

    /// Closes the listener. With `unlink`, a Unix socket path is removed, but
    /// only if it still names the socket this listener was bound at (a newer
    /// server may have replaced it). The old generation of a handover never
    /// unlinks: the path belongs to the child now.
    pub fn close(self, unlink: bool) {
        if let (true, ListenAddr::Unix(path), Some(id)) = (unlink, &self.addr, self.unix_id) {
            if file_id(path) == Some(id) {
                match std::fs::remove_file(path) {
                    Ok(()) => log::debug!("[{}] unlinked {}", sys::getpid(), path.display()),
                    Err(e) => log::warn!("[{}] unlink {}: {e}", sys::getpid(), path.display()),
                }
            }
        }
        drop(self.fd);
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Removes a socket file nobody listens on. Refuses a live one, and any path
/// that is not a socket.
fn clear_stale_unix_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is in use: a live server accepts connections on it",
                path.display()
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!(
                "[{}] removing stale unix socket {} (nothing listens on it)",
                sys::getpid(),
                path.display()
            );
            std::fs::remove_file(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether {} is in use: {e}", path.display()),
        )),
    }
}
