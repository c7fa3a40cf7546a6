//! Layer 1: listeners. Bind TCP (IPv4/IPv6) and Unix-domain listening
//! sockets with raw libc calls, or adopt the ones a parent process (or
//! systemd) handed down through `LISTEN_FDS`. [`Listeners::open`] does both:
//! each requested address is matched against the inherited sockets by the
//! socket's own `getsockname`, and bound fresh only when nothing matches.
//!
//! Every listener is `O_NONBLOCK` and `FD_CLOEXEC`. It is never `shutdown()`:
//! the socket may be shared with the other generation, and shutdown would stop
//! it for both. The old process only `close()`s its descriptor.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::sys::{self, SockAddr};

/// The default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 1024;

/// An address to listen on: `127.0.0.1:8080`, `[::1]:8080`, `localhost:0`,
/// or `unix:/run/app.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    addr: ListenAddr,
    name: String,
    inherited: bool,
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
    fn adopt(fd: OwnedFd, name: String) -> io::Result<Listener> {
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

/// The environment variable naming the readiness fd of a grace child.
pub(crate) const ENV_READY_FD: &str = "GRACE_READY_FD";
/// The environment variable carrying the child's generation number.
pub(crate) const ENV_GENERATION: &str = "GRACE_GENERATION";

/// What this process inherited at startup, read from the environment once.
#[derive(Debug, Default)]
pub(crate) struct Inherited {
    /// Listeners handed down, with their names, not yet claimed.
    pub fds: Vec<(OwnedFd, String)>,
    /// The readiness socket of a grace parent, if any.
    pub ready_fd: Option<OwnedFd>,
    /// The generation: the parent's plus one, or 0.
    pub generation: u64,
}

static INHERITED: OnceLock<Mutex<Inherited>> = OnceLock::new();

/// Reads and clears `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`,
/// `GRACE_READY_FD` and `GRACE_GENERATION` on first use.
pub(crate) fn inherited() -> &'static Mutex<Inherited> {
    INHERITED.get_or_init(|| Mutex::new(read_inherited()))
}

/// Reads the handover environment and removes it, so that nothing this
/// process starts inherits it. Call it while the process is single-threaded
/// (first thing in `main`): [`crate::init`] does.
fn read_inherited() -> Inherited {
    let pid = sys::getpid();
    let get = |k: &str| std::env::var(k).ok();
    let listen_pid = get("LISTEN_PID");
    let listen_fds = get("LISTEN_FDS");
    let names = get("LISTEN_FDNAMES");
    let ready = get(ENV_READY_FD);
    let generation = get(ENV_GENERATION);
    for k in [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        ENV_READY_FD,
        ENV_GENERATION,
    ] {
        sys::remove_env(k);
    }
    let mut out = Inherited::default();
    let Some(listen_fds) = listen_fds else {
        return out;
    };
    match listen_pid.as_deref().map(str::parse::<u32>) {
        Some(Ok(p)) if p == pid => {}
        other => {
            log::info!(
                "[{pid}] ignoring LISTEN_FDS={listen_fds}: LISTEN_PID is {:?}, not this process",
                other.map(|r| r.ok())
            );
            return out;
        }
    }
    let n: i32 = match listen_fds.parse() {
        Ok(n) if (0..=1024).contains(&n) => n,
        _ => {
            log::warn!("[{pid}] ignoring malformed LISTEN_FDS={listen_fds:?}");
            return out;
        }
    };
    let names: Vec<String> = names
        .map(|s| s.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    for i in 0..n {
        let fd = 3 + i;
        match sys::claim_inherited(fd) {
            Ok(owned) => {
                // Close-on-exec right away: nothing we spawn gets it.
                let _ = sys::set_cloexec(fd, true);
                let name = names
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("fd{fd}"));
                out.fds.push((owned, name));
            }
            Err(e) => log::warn!("[{pid}] LISTEN_FDS names fd {fd}, but it is not open: {e}"),
        }
    }
    if let Some(r) = ready {
        match r.parse::<i32>().ok().filter(|fd| *fd > 2) {
            Some(fd) => match sys::claim_inherited(fd) {
                Ok(owned) => {
                    let _ = sys::set_cloexec(fd, true);
                    out.ready_fd = Some(owned);
                }
                Err(e) => log::warn!("[{pid}] {ENV_READY_FD}={r}: {e}"),
            },
            None => log::warn!("[{pid}] ignoring malformed {ENV_READY_FD}={r:?}"),
        }
        out.generation = generation.and_then(|g| g.parse().ok()).unwrap_or(1);
    }
    log::debug!(
        "[{pid}] inherited {} listener(s){}, generation {}",
        out.fds.len(),
        if out.ready_fd.is_some() {
            " and a readiness fd from a grace parent"
        } else {
            ""
        },
        out.generation
    );
    out
}

/// Inherited sockets with these `LISTEN_FDNAMES` are never adopted as
/// listeners by [`Listeners::open`]: the control socket (`grace-control`).
pub(crate) const RESERVED_NAMES: &[&str] = &["grace-control"];

/// Takes the inherited socket named `name` (see [`RESERVED_NAMES`]), if
/// there is one and it is a listening stream socket.
pub(crate) fn take_inherited_named(name: &str) -> Option<Listener> {
    let mut inh = inherited().lock().ok()?;
    let i = inh.fds.iter().position(|(_, n)| n == name)?;
    let (fd, name) = inh.fds.remove(i);
    let raw = fd.as_raw_fd();
    match Listener::adopt(fd, name) {
        Ok(l) => Some(l),
        Err(e) => {
            log::warn!("[{}] closing inherited fd {raw}: {e}", sys::getpid());
            None
        }
    }
}

/// Reads the handover environment now, while the program is still
/// single-threaded (see [`crate::init`]).
pub(crate) fn init() {
    let _ = inherited();
}

/// Closes every inherited listener not yet claimed (the holder's copies:
/// they belong to generation 0).
pub(crate) fn drop_inherited() {
    if let Ok(mut inh) = inherited().lock() {
        inh.fds.clear();
        inh.ready_fd = None;
    }
}

/// This process's generation: 0 for the first process, the parent's + 1 for
/// each upgrade.
pub fn generation() -> u64 {
    inherited().lock().map(|i| i.generation).unwrap_or(0)
}

/// True if listeners were handed down (by a grace parent or systemd) and not
/// yet claimed by [`Listeners::open`].
pub fn has_inherited() -> bool {
    inherited()
        .lock()
        .map(|i| !i.fds.is_empty())
        .unwrap_or(false)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            "127.0.0.1:8080".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            "[::1]:0".parse::<ListenAddr>().unwrap(),
            ListenAddr::Tcp("[::1]:0".parse().unwrap())
        );
        assert_eq!(
            "unix:/tmp/x.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x.sock".into())
        );
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("nonsense".parse::<ListenAddr>().is_err());
    }

    #[test]
    fn port_zero_reports_real_port() {
        let l = Listener::bind(&"127.0.0.1:0".parse().unwrap(), 16).unwrap();
        match l.local_addr() {
            ListenAddr::Tcp(a) => assert_ne!(a.port(), 0),
            other => panic!("unexpected {other}"),
        }
        assert!(sys::cloexec(l.as_raw_fd()).unwrap());
    }

    #[test]
    fn unix_stale_replaced_live_refused() {
        let dir = std::env::temp_dir().join(format!("grace-ut-{}", sys::getpid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let addr = ListenAddr::Unix(path.clone());
        // A stale socket file: bound then closed without unlink.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let live = Listener::bind(&addr, 16).expect("stale socket replaced");
        let err = Listener::bind(&addr, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert!(err.to_string().contains("in use"), "{err}");
        live.close(true);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn matching_port_zero() {
        let want: ListenAddr = "127.0.0.1:0".parse().unwrap();
        assert!(want.matches(&"127.0.0.1:4000".parse().unwrap()));
        assert!(!want.matches(&"127.0.0.2:4000".parse().unwrap()));
        let want: ListenAddr = "127.0.0.1:4001".parse().unwrap();
        assert!(!want.matches(&"127.0.0.1:4000".parse().unwrap()));
    }
}
