//! Processes: ids, signals to them, waiting, the subreaper, the holder's fork.

use std::fmt;
use std::io;

use super::{cvt, error, last};

/// This process's id.
pub(crate) fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

/// The parent process's id.
pub(crate) fn getppid() -> u32 {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// Sends `sig` to process `pid`.
pub(crate) fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
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
pub(crate) fn waitpid(pid: u32, block: bool) -> io::Result<Option<Exit>> {
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
pub(crate) fn set_child_subreaper() -> io::Result<()> {
    cvt(
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) },
        "prctl(PR_SET_CHILD_SUBREAPER)",
    )?;
    Ok(())
}

/// Removes an environment variable.
///
/// Only called while the process is still single-threaded (adopting inherited
/// listeners at startup), where `unsetenv` cannot race a reader.
pub(crate) fn remove_env(key: &str) {
    std::env::remove_var(key);
}

/// The number of threads of this process, from `/proc/self/status`.
pub(crate) fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Forks this process if it has exactly one thread, and fails otherwise.
/// Returns the child's pid in the parent and `None` in the child, which may
/// then go on running ordinary code: it is a full copy of the only thread,
/// so no lock can be held by a thread that does not exist in it.
///
/// The check cannot go stale before the fork: only the calling thread,
/// being the only one, could start another.
pub(crate) fn fork_single_threaded() -> io::Result<Option<u32>> {
    match thread_count() {
        Some(1) => {}
        n => {
            return Err(io::Error::other(format!(
                "cannot fork a copy of this process: {} threads are running",
                n.map_or("an unknown number of".to_string(), |n| n.to_string())
            )))
        }
    }
    // SAFETY: fork has no memory preconditions, and the process has one
    // thread (checked above), so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(last("fork")),
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}

/// Reaps any one child that has ended, without blocking: `Ok(Some((pid,
/// how)))`, `Ok(None)` if children remain but none has ended, or an
/// `ECHILD` error if there are no children at all.
pub(crate) fn wait_any() -> io::Result<Option<(u32, Exit)>> {
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
pub(crate) fn process_exists(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's effective user id.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}
