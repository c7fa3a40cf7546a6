//! `sd_notify`: tell systemd (or anything listening on `NOTIFY_SOCKET`) what
//! the service is doing. A no-op when there is nobody to tell.
//!
//! Under a holder (see [`crate::holder`]) every message goes to the holder
//! instead, over the one channel it hands down (a datagram socket named by
//! `GRACE_HOLDER_FD`). The holder learns from the `MAINPID=` lines which
//! generation serves now, and relays the rest to the real `NOTIFY_SOCKET`,
//! if there is one, as the service's stable main process.
//!
//! `NOTIFY_SOCKET` is kept in the environment on purpose: a grace child needs
//! it to send `MAINPID=` and `READY=1` when it takes over.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Mutex, OnceLock};

use crate::sys;

/// The environment variable naming the holder channel of a generation.
pub(crate) const ENV_HOLDER_FD: &str = "GRACE_HOLDER_FD";

/// This generation's end of its holder's channel.
struct HolderLink {
    fd: OwnedFd,
    pid: u32,
}

static HOLDER: OnceLock<Mutex<Option<HolderLink>>> = OnceLock::new();

fn holder() -> &'static Mutex<Option<HolderLink>> {
    HOLDER.get_or_init(|| Mutex::new(inherited_holder()))
}

/// Reads and removes `GRACE_HOLDER_FD` (while still single-threaded: see
/// [`crate::init`]). The holder's pid is the channel's creator, which
/// `SO_PEERCRED` tells without another environment variable.
fn inherited_holder() -> Option<HolderLink> {
    let me = sys::getpid();
    let v = std::env::var(ENV_HOLDER_FD).ok()?;
    sys::remove_env(ENV_HOLDER_FD);
    let Some(raw) = v.parse::<RawFd>().ok().filter(|fd| *fd > 2) else {
        log::warn!("[{me}] ignoring malformed {ENV_HOLDER_FD}={v:?}");
        return None;
    };
    // The variable names a descriptor our parent placed for us and nothing
    // else in this process knows of; it is read once.
    let fd = match sys::claim_inherited(raw) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("[{me}] {ENV_HOLDER_FD}={v}: {e}");
            return None;
        }
    };
    let _ = sys::set_cloexec(raw, true);
    match sys::peer_cred(raw) {
        Ok((pid, _, _)) => Some(HolderLink { fd, pid }),
        Err(e) => {
            log::warn!("[{me}] {ENV_HOLDER_FD}={v} is not a holder channel: {e}");
            None
        }
    }
}

/// Records the holder channel of generation 0 (which was forked, not
/// started with an environment).
pub(crate) fn set_holder(fd: OwnedFd, pid: u32) {
    *holder().lock().unwrap_or_else(|p| p.into_inner()) = Some(HolderLink { fd, pid });
}

/// Reads the inherited holder channel and the watchdog settings now (see
/// [`crate::init`]).
pub(crate) fn init() {
    let _ = holder();
    let _ = watchdog_interval();
}

/// How often to send `WATCHDOG=1`: half of systemd's `WATCHDOG_USEC`, when
/// it is set and `WATCHDOG_PID` (if set) names this process or its holder.
/// Read once; the variables stay in the environment for the next
/// generation, which gets its own `WATCHDOG_PID`.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    static WATCHDOG: OnceLock<Option<std::time::Duration>> = OnceLock::new();
    *WATCHDOG.get_or_init(|| {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if usec == 0 {
            return None;
        }
        if let Ok(p) = std::env::var("WATCHDOG_PID") {
            let p: u32 = p.parse().ok()?;
            if p != sys::getpid() && Some(p) != holder_pid() {
                log::info!(
                    "[{}] ignoring WATCHDOG_USEC: WATCHDOG_PID={p} is another process",
                    sys::getpid()
                );
                return None;
            }
        }
        Some(std::time::Duration::from_micros(usec / 2))
    })
}

/// The pid of the holder this process serves under, if any: the pid a
/// supervisor tracks, and the one the pid file names.
pub fn holder_pid() -> Option<u32> {
    holder()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|h| h.pid)
}

/// The holder channel's fd, to hand down to a new generation. The link is
/// never dropped once set, so the number stays valid.
pub(crate) fn holder_fd() -> Option<RawFd> {
    holder()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|h| h.fd.as_raw_fd())
}

/// Sends `msg` (newline-separated `KEY=VALUE` lines) to the holder, or else
/// to `$NOTIFY_SOCKET`. Returns `Ok(false)` when there is neither.
pub fn notify(msg: &str) -> io::Result<bool> {
    if let Some(fd) = holder_fd() {
        sys::send(fd, msg.as_bytes())?;
        log::debug!(
            "[{}] to the holder: {}",
            sys::getpid(),
            msg.replace('\n', " ")
        );
        return Ok(true);
    }
    upstream(msg)
}

/// Sends `msg` to `$NOTIFY_SOCKET` itself (what the holder relays to).
pub(crate) fn upstream(msg: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), &path)?;
    }
    log::debug!("[{}] sd_notify: {}", sys::getpid(), msg.replace('\n', " "));
    Ok(true)
}

/// Sends `msg`, logging (not returning) a failure: notification is advisory.
pub(crate) fn send(msg: &str) {
    if let Err(e) = notify(msg) {
        log::warn!("[{}] sd_notify {:?} failed: {e}", sys::getpid(), msg);
    }
}
