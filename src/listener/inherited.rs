//! What this process was handed at startup, read from the environment once.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use super::Listener;
use crate::sys::{self};

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
/// listeners by [`super::Listeners::open`]: the control socket (`grace-control`).
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
/// yet claimed by [`super::Listeners::open`].
pub fn has_inherited() -> bool {
    inherited()
        .lock()
        .map(|i| !i.fds.is_empty())
        .unwrap_or(false)
}
