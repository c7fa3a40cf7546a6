//! Layer 1: listeners. Bind TCP (IPv4/IPv6) and Unix-domain listening
//! sockets with raw libc calls, or adopt the ones a parent process (or
//! systemd) handed down through `LISTEN_FDS`. [`Listeners::open`] does both:
//! each requested address is matched against the inherited sockets by the
//! socket's own `getsockname`, and bound fresh only when nothing matches.
//!
//! Every listener is `O_NONBLOCK` and `FD_CLOEXEC`. It is never `shutdown()`:
//! the socket may be shared with the other generation, and shutdown would stop
//! it for both. The old process only `close()`s its descriptor.
//!
//! - this file: [`ListenAddr`] and [`Listeners`] (open a set: adopt what
//!   matches, bind the rest);
//! - `socket`: [`Listener`], one listening socket (bind, adopt, options);
//! - `inherited`: what the process was handed at startup (`LISTEN_FDS`,
//!   the readiness fd, the generation), read once.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::str::FromStr;

use crate::sys::{self, SockAddr};

mod inherited;
mod socket;
#[cfg(test)]
mod tests;

pub(crate) use inherited::{
    drop_inherited, inherited, init, take_inherited_named, ENV_GENERATION, ENV_READY_FD,
    RESERVED_NAMES,
};
pub use inherited::{generation, has_inherited};
pub use socket::Listener;

/// The default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// An address to listen on: `127.0.0.1:8080`, `[::1]:8080`, `localhost:0`,
/// or `unix:/run/app.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListenAddr {
    /// A TCP address (IPv4 or IPv6). Port 0 picks a free port.
    Tcp(SocketAddr),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = io::Error;

    fn from_str(s: &str) -> io::Result<ListenAddr> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "empty unix socket path in `unix:`",
                ));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(a));
        }
        let mut addrs = s.to_socket_addrs().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad listen address {s:?} (want HOST:PORT, [V6]:PORT or unix:/path): {e}"),
            )
        })?;
        addrs.next().map(ListenAddr::Tcp).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("listen address {s:?} resolved to nothing"),
            )
        })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl From<SocketAddr> for ListenAddr {
    fn from(a: SocketAddr) -> ListenAddr {
        ListenAddr::Tcp(a)
    }
}

impl ListenAddr {
    fn sock_addr(&self) -> SockAddr {
        match self {
            ListenAddr::Tcp(a) => SockAddr::Inet(*a),
            ListenAddr::Unix(p) => SockAddr::Unix(p.clone()),
        }
    }

    fn from_sock_addr(a: &SockAddr) -> Option<ListenAddr> {
        match a {
            SockAddr::Inet(a) => Some(ListenAddr::Tcp(*a)),
            SockAddr::Unix(p) => Some(ListenAddr::Unix(p.clone())),
            _ => None,
        }
    }

    /// Whether a socket bound to `actual` satisfies a request for `self`.
    /// A requested port 0 matches any port on the same IP, so a child started
    /// with the parent's `--listen 127.0.0.1:0` adopts the port the parent got.
    fn matches(&self, actual: &ListenAddr) -> bool {
        match (self, actual) {
            (ListenAddr::Tcp(want), ListenAddr::Tcp(got)) => {
                want.ip() == got.ip() && (want.port() == 0 || want.port() == got.port())
            }
            (ListenAddr::Unix(want), ListenAddr::Unix(got)) => want == got,
            _ => false,
        }
    }

    /// A name for `LISTEN_FDNAMES` (which may not contain `:`).
    fn fd_name(&self) -> String {
        let s = self.to_string();
        s.chars()
            .map(|c| if c == ':' || c.is_control() { '_' } else { c })
            .take(255)
            .collect()
    }
}

/// A set of listeners, bound or adopted.
#[derive(Debug, Default)]
pub struct Listeners {
    list: Vec<Listener>,
}

impl Listeners {
    /// Opens a listener for each of `addrs`: an inherited socket whose
    /// `getsockname` matches, else a fresh bind with `backlog`. Inherited
    /// sockets that no address asked for are logged and closed.
    ///
    /// With an empty `addrs`, every inherited socket is adopted (socket
    /// activation without naming addresses).
    pub fn open(addrs: &[ListenAddr], backlog: i32) -> io::Result<Listeners> {
        let pid = sys::getpid();
        let mut inh = inherited()
            .lock()
            .map_err(|_| io::Error::other("inherited listener table poisoned"))?;
        let mut candidates: Vec<Listener> = Vec::new();
        // The control socket is not an HTTP listener: left for
        // `take_inherited_named`.
        let (reserved, fds): (Vec<_>, Vec<_>) = inh
            .fds
            .drain(..)
            .partition(|(_, name)| RESERVED_NAMES.contains(&name.as_str()));
        inh.fds = reserved;
        for (fd, name) in fds {
            let raw = fd.as_raw_fd();
            match Listener::adopt(fd, name) {
                Ok(l) => candidates.push(l),
                Err(e) => log::warn!("[{pid}] closing inherited fd {raw}: {e}"),
            }
        }
        drop(inh);
        let mut list = Vec::new();
        if addrs.is_empty() {
            for l in candidates.drain(..) {
                log::info!(
                    "[{pid}] adopted {} (fd {}, name {:?})",
                    l.addr,
                    l.as_raw_fd(),
                    l.name
                );
                list.push(l);
            }
        }
        for want in addrs {
            if let Some(i) = candidates.iter().position(|l| want.matches(&l.addr)) {
                let l = candidates.remove(i);
                log::info!(
                    "[{pid}] adopted {} for {want} (fd {}, name {:?})",
                    l.addr,
                    l.as_raw_fd(),
                    l.name
                );
                list.push(l);
            } else {
                list.push(Listener::bind(want, backlog)?);
            }
        }
        for l in candidates {
            log::warn!(
                "[{pid}] closing inherited listener {} (fd {}, name {:?}): no address asked for it",
                l.addr,
                l.as_raw_fd(),
                l.name
            );
            l.close(false);
        }
        Ok(Listeners { list })
    }

    /// Wraps listeners built by hand.
    pub fn from_vec(list: Vec<Listener>) -> Listeners {
        Listeners { list }
    }

    /// The listeners.
    pub fn iter(&self) -> std::slice::Iter<'_, Listener> {
        self.list.iter()
    }

    /// The bound addresses, in order.
    pub fn addrs(&self) -> Vec<ListenAddr> {
        self.list.iter().map(|l| l.addr.clone()).collect()
    }

    /// Number of listeners.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Closes them all; see [`Listener::close`] for `unlink`.
    pub fn close(self, unlink: bool) {
        for l in self.list {
            l.close(unlink);
        }
    }
}
