//! Layer 2: upgrade. Hand the listeners to a fresh copy of the binary and
//! wait for it to say it is serving.
//!
//! - `parent`: the old process's side: resolve the binary, build argv and
//!   envp, `fork` + `execve` with the listeners at fds 3.., then wait for the
//!   exec to succeed and for the child's ready byte, or kill and reap it.
//! - `child`: the new process's side: say ready over the readiness socket,
//!   and learn from its end-of-file when the parent has exited.
//!
//! Adopting inherited listeners (also the child's side) is in
//! [`crate::listener`], because systemd socket activation uses it too.
//!
//! Used alone, without [`crate::Server`] (which does all of this, and the
//! drain, probation and signals, for you):
//!
//! ```no_run
//! use std::time::Duration;
//! use grace::{ListenAddr, Listeners};
//!
//! fn main() -> std::io::Result<()> {
//!     grace::init(); // before any thread: reads LISTEN_FDS
//!     let addrs: Vec<ListenAddr> = vec!["127.0.0.1:8080".parse()?];
//!     // Adopts the parent's socket after an upgrade, binds on a first start.
//!     let listeners = Listeners::open(&addrs, 1024)?;
//!     // ... start accepting on `listeners` ...
//!     // A grace parent is waiting for this byte; a no-op otherwise.
//!     grace::upgrade::ready()?;
//!     // Later, on SIGUSR2 say:
//!     match grace::upgrade::start(&listeners, Duration::from_secs(10)) {
//!         Ok(handover) => {
//!             println!("generation {} serves", handover.stats().child_generation);
//!             // Stop accepting, drain, exit; `handover` is dropped last.
//!         }
//!         Err(e) => eprintln!("upgrade failed, serving on: {e}"),
//!     }
//!     Ok(())
//! }
//! ```

pub(crate) mod child;
pub(crate) mod parent;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::listener::Listeners;

pub use crate::sys::Exit;

/// How this process was started: what an upgrade re-runs.
#[derive(Debug, Clone)]
pub(crate) struct Start {
    pub argv: Vec<OsString>,
    pub cwd: PathBuf,
}

static START: OnceLock<Start> = OnceLock::new();

/// Records argv and the working directory at startup (see [`crate::init`]).
pub(crate) fn record_start() -> &'static Start {
    START.get_or_init(|| Start {
        argv: std::env::args_os().collect(),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    })
}

/// Finds the program `argv0` names, as the shell did when it started us:
/// a path with a `/` is taken as is (relative to the starting directory
/// `cwd`), a bare name is looked up in `PATH`.
///
/// Called at every upgrade, so a replaced file or a moved symlink is picked
/// up. Never `/proc/self/exe`: once the file is replaced, that still names
/// the old inode.
pub fn resolve_binary(argv0: &Path, cwd: &Path) -> io::Result<PathBuf> {
    let not_found = |what: String| io::Error::new(io::ErrorKind::NotFound, what);
    let path = if argv0.as_os_str().is_empty() {
        return Err(not_found("argv[0] is empty".into()));
    } else if argv0.as_os_str().as_encoded_bytes().contains(&b'/') {
        cwd.join(argv0)
    } else {
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path_var)
            .map(|dir| {
                if dir.as_os_str().is_empty() {
                    cwd.join(argv0)
                } else {
                    cwd.join(dir).join(argv0)
                }
            })
            .find(|p| is_executable(p));
        match found {
            Some(p) => p,
            None => return Err(not_found(format!("{} not found in PATH", argv0.display()))),
        }
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        )),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("binary {}: {e}", path.display()),
        )),
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why an upgrade did not happen. In every case the old process keeps
/// serving as if nothing happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Another upgrade is in progress.
    InProgress,
    /// This process's parent is still draining; upgrade after it exits.
    ParentAlive,
    /// The server is shutting down.
    ShuttingDown,
    /// The pre-upgrade hook refused.
    Hook(String),
    /// The binary could not be found, or the argv/env could not be built.
    Prepare(io::Error),
    /// `fork` failed.
    Fork(io::Error),
    /// `execve` (or fd placement before it) failed in the child.
    Exec(io::Error),
    /// The child exited before it was ready.
    ChildExited(Exit),
    /// The child was not ready within the upgrade timeout; it was killed.
    Timeout(Duration),
    /// A shutdown began while waiting; the child was killed.
    Aborted,
    /// The child was ready, but exited during its probation: this process
    /// accepts on the same sockets again.
    RolledBack {
        /// The child.
        child_pid: u32,
        /// How it ended.
        status: Exit,
        /// From its ready byte to its end.
        lived: Duration,
    },
    /// The server is gone (a [`crate::Handle`] outlived it).
    ServerGone,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::InProgress => write!(f, "an upgrade is already in progress"),
            UpgradeError::ParentAlive => {
                write!(f, "the previous generation is still draining")
            }
            UpgradeError::ShuttingDown => write!(f, "the server is shutting down"),
            UpgradeError::Hook(e) => write!(f, "pre-upgrade hook failed: {e}"),
            UpgradeError::Prepare(e) => write!(f, "cannot prepare the new process: {e}"),
            UpgradeError::Fork(e) => write!(f, "fork failed: {e}"),
            UpgradeError::Exec(e) => write!(f, "exec failed in the child: {e}"),
            UpgradeError::ChildExited(s) => write!(f, "the child ended before ready ({s})"),
            UpgradeError::Timeout(d) => {
                write!(
                    f,
                    "the child was not ready within the upgrade timeout ({}); killed it",
                    crate::fmt::Dur(*d)
                )
            }
            UpgradeError::Aborted => write!(f, "aborted by a shutdown; killed the child"),
            UpgradeError::RolledBack {
                child_pid,
                status,
                lived,
            } => write!(
                f,
                "rolled back: child {child_pid} ended during its probation ({status}) {} after \
                 it was ready",
                crate::fmt::Dur(*lived)
            ),
            UpgradeError::ServerGone => write!(f, "the server is not running"),
        }
    }
}

impl std::error::Error for UpgradeError {}

impl UpgradeError {
    /// True if the upgrade was refused before anything started (one already
    /// running, the previous generation still draining or on probation, a
    /// shutdown): ask again later. False if a child was tried and failed.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            UpgradeError::InProgress | UpgradeError::ParentAlive | UpgradeError::ShuttingDown
        )
    }
}

/// A successful upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeStats {
    /// The new process.
    pub child_pid: u32,
    /// Its generation.
    pub child_generation: u64,
    /// From the request (signal or call) to the child's ready byte.
    pub duration: Duration,
    /// The probation the child then passed (zero: none).
    pub probation: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        let cwd = std::env::current_dir().unwrap();
        let sh = resolve_binary(Path::new("sh"), &cwd).unwrap();
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert!(resolve_binary(Path::new("/bin/sh"), &cwd).is_ok());
        let err = resolve_binary(Path::new("./definitely-not-here"), &cwd).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(resolve_binary(Path::new("no-such-grace-binary"), &cwd).is_err());
    }
}

/// A new generation that is serving: what [`start`] returns. Keep it until
/// this process exits: the child learns that its parent is gone from the end
/// of the readiness socket this holds, and refuses to upgrade again before.
#[derive(Debug)]
pub struct Handover {
    stats: UpgradeStats,
    _link: OwnedFd,
}

impl Handover {
    /// The new generation and how long it took to be ready.
    pub fn stats(&self) -> &UpgradeStats {
        &self.stats
    }
}

/// Starts a new generation of this binary on `listeners` and waits, up to
/// `timeout`, for it to say it is ready ([`ready`]): the upgrade layer alone.
/// On success stop accepting, drain and exit; on failure (the error says
/// why) the child was killed and reaped, and this process serves on.
///
/// [`crate::Server`] does this for you on SIGUSR2/SIGHUP, with one upgrade
/// at a time, probation and rollback.
pub fn start(listeners: &Listeners, timeout: Duration) -> Result<Handover, UpgradeError> {
    let started = Instant::now();
    let fds: Vec<(RawFd, String)> = listeners
        .iter()
        .map(|l| (l.as_raw_fd(), l.name().to_string()))
        .collect();
    // Nothing aborts this upgrade but its timeout.
    let never = crate::sys::eventfd().map_err(UpgradeError::Prepare)?;
    let req = parent::Request {
        fds: &fds,
        generation: crate::listener::generation(),
        timeout,
        started,
        abort_fd: never.as_raw_fd(),
    };
    parent::upgrade(&req).map(|(stats, link)| Handover { stats, _link: link })
}

/// Tells a grace parent that this process is serving: call it once the
/// listeners are open and accepting. Returns false (and does nothing) if
/// this process was not started by an upgrade. [`crate::Server`] calls it
/// for you.
pub fn ready() -> io::Result<bool> {
    let fd = crate::listener::inherited()
        .lock()
        .map_err(|_| io::Error::other("inherited state poisoned"))?
        .ready_fd
        .take();
    match fd {
        Some(fd) => {
            crate::notify::send(&format!("MAINPID={}\nREADY=1", crate::sys::getpid()));
            child::announce_ready(&fd)?;
            // Kept open for the life of the process: the parent's exit
            // closes the other end.
            static LINK: OnceLock<OwnedFd> = OnceLock::new();
            let _ = LINK.set(fd);
            Ok(true)
        }
        None => Ok(false),
    }
}
