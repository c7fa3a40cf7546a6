//! The old process's side of an upgrade.
//!
//! 1. Resolve the binary from the recorded `argv[0]` (again, now: it may have
//!    been replaced), build argv and envp, all before `fork`.
//! 2. [`sys::fork_exec`]: the child places the listeners at 3.. and the
//!    readiness socket right after them, clears `FD_CLOEXEC`, writes its own
//!    pid into `LISTEN_PID`, resets the signal mask and `execve`s.
//! 3. Read the CLOEXEC error pipe: an errno means exec failed; end-of-file
//!    means it succeeded.
//! 4. Wait for one byte on the readiness socket. End-of-file instead means the
//!    child died (or gave up) before it was ready. At the deadline, or when a
//!    shutdown aborts the upgrade, SIGKILL it. Every failed child is reaped.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{record_start, resolve_binary, UpgradeError, UpgradeStats};
use crate::listener::{ENV_GENERATION, ENV_READY_FD};
use crate::notify::{self, ENV_HOLDER_FD};
use crate::sys::{self, Exit};

/// What [`upgrade`] needs.
pub(crate) struct Request<'a> {
    /// Listener fds and their names, in order.
    pub fds: &'a [(RawFd, String)],
    /// This process's generation.
    pub generation: u64,
    /// The upgrade timeout, counted from `started`.
    pub timeout: Duration,
    /// When the upgrade was asked for.
    pub started: Instant,
    /// An fd that becomes readable when the upgrade must be aborted.
    pub abort_fd: RawFd,
}

enum Wait {
    Ready,
    TimedOut,
    Aborted,
}

fn wait_readable(fd: RawFd, abort_fd: RawFd, deadline: Instant) -> io::Result<Wait> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Wait::TimedOut);
        }
        let mut pfds = [
            sys::pollfd(fd, libc::POLLIN),
            sys::pollfd(abort_fd, libc::POLLIN),
        ];
        match sys::poll(&mut pfds, Some(deadline - now)) {
            Ok(0) => continue,
            Ok(_) if pfds[1].revents != 0 => return Ok(Wait::Aborted),
            Ok(_) => return Ok(Wait::Ready),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// How long a child whose readiness socket closed may take to exit by
/// itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Reaps `pid` if it exits before `deadline`.
fn reap_within(pid: u32, deadline: Instant) -> Option<Exit> {
    loop {
        match sys::waitpid(pid, false) {
            Ok(Some(status)) => {
                log::info!("[{}] reaped child {pid}: {status}", sys::getpid());
                return Some(status);
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reaps a child that closed its readiness socket (it ended, or is ending):
/// it gets [`EXIT_GRACE`] to exit by itself, then SIGKILL.
pub(crate) fn reap_child(pid: u32) -> Exit {
    reap_within(pid, Instant::now() + EXIT_GRACE)
        .or_else(|| kill_and_reap(pid))
        .unwrap_or(Exit::Signal(libc::SIGKILL))
}

/// Kills (if still running) and reaps a child that will not take over.
fn kill_and_reap(pid: u32) -> Option<Exit> {
    let me = sys::getpid();
    if let Err(e) = sys::kill(pid, libc::SIGKILL) {
        log::debug!("[{me}] kill {pid}: {e}");
    }
    match sys::waitpid(pid, true) {
        Ok(status) => {
            log::info!(
                "[{me}] reaped child {pid}: {}",
                status.map_or("?".to_string(), |s| s.to_string())
            );
            status
        }
        Err(e) => {
            log::error!("[{me}] waitpid {pid}: {e}");
            None
        }
    }
}

fn handover_env(n: usize, names: &str, generation: u64, holder: bool) -> Vec<Vec<u8>> {
    let mut env: Vec<Vec<u8>> = std::env::vars_os()
        .filter(|(k, _)| {
            let k = k.as_bytes();
            !(k.starts_with(b"LISTEN_")
                || k == b"WATCHDOG_PID"
                || k == ENV_READY_FD.as_bytes()
                || k == ENV_GENERATION.as_bytes()
                || k == ENV_HOLDER_FD.as_bytes())
        })
        .map(|(k, v)| {
            let mut e = k.as_bytes().to_vec();
            e.push(b'=');
            e.extend_from_slice(v.as_bytes());
            e
        })
        .collect();
    env.push(format!("LISTEN_FDS={n}").into_bytes());
    env.push(format!("LISTEN_FDNAMES={names}").into_bytes());
    env.push(format!("{ENV_READY_FD}={}", 3 + n).into_bytes());
    env.push(format!("{ENV_GENERATION}={}", generation + 1).into_bytes());
    if holder {
        // The one thing a holder adds: its channel, right after the
        // readiness socket.
        env.push(format!("{ENV_HOLDER_FD}={}", 3 + n + 1).into_bytes());
    }
    env
}

/// Starts the new process and waits until it is ready. On success returns
/// the stats and this side of the readiness socket, which the caller keeps
/// open until it exits: its end-of-file tells the child the old generation
/// is gone.
pub(crate) fn upgrade(req: &Request<'_>) -> Result<(UpgradeStats, OwnedFd), UpgradeError> {
    let me = sys::getpid();
    let start = record_start();
    let argv0 = start.argv.first().cloned().unwrap_or_default();
    let path = resolve_binary(Path::new(&argv0), &start.cwd).map_err(UpgradeError::Prepare)?;
    let (parent_end, child_end) = sys::socketpair().map_err(UpgradeError::Prepare)?;
    let n = req.fds.len();
    let names: Vec<&str> = req.fds.iter().map(|(_, name)| name.as_str()).collect();
    let holder_fd = notify::holder_fd();
    let env = handover_env(n, &names.join(":"), req.generation, holder_fd.is_some());
    let mut fds: Vec<RawFd> = req.fds.iter().map(|(fd, _)| *fd).collect();
    fds.push(child_end.as_raw_fd());
    fds.extend(holder_fd);
    let argv: Vec<OsString> = if start.argv.is_empty() {
        vec![path.clone().into_os_string()]
    } else {
        start.argv.clone()
    };
    // The child takes the watchdog over: WATCHDOG_PID names it, the way
    // LISTEN_PID does (WATCHDOG_USEC is passed on as it is).
    let pid_vars: &[&str] = if notify::watchdog_interval().is_some() {
        &["LISTEN_PID", "WATCHDOG_PID"]
    } else {
        &["LISTEN_PID"]
    };
    let mut spec = sys::ExecSpec::new(&path, &argv, &env, pid_vars, fds, Some(&start.cwd))
        .map_err(UpgradeError::Prepare)?;
    log::debug!(
        "[{me}] forking to exec {} with {n} listener(s) at fds 3..{}, the readiness socket at fd {}{}",
        path.display(),
        3 + n,
        3 + n,
        if holder_fd.is_some() {
            format!(" and the holder channel at fd {}", 3 + n + 1)
        } else {
            String::new()
        }
    );
    let (pid, err_pipe) = sys::fork_exec(&mut spec).map_err(UpgradeError::Fork)?;
    drop(spec);
    drop(child_end);
    let deadline = req.started + req.timeout;

    // Did exec succeed? The error pipe is CLOEXEC: EOF means yes.
    match wait_readable(err_pipe.as_raw_fd(), req.abort_fd, deadline) {
        Ok(Wait::Ready) => {
            let mut buf = [0u8; 4];
            match sys::read(err_pipe.as_raw_fd(), &mut buf) {
                Ok(4) => {
                    let errno = i32::from_ne_bytes(buf);
                    kill_and_reap(pid);
                    return Err(UpgradeError::Exec(sys::error("execve", errno)));
                }
                Ok(_) => {}
                Err(e) => log::warn!("[{me}] reading the exec error pipe: {e}"),
            }
        }
        Ok(Wait::TimedOut) => {
            kill_and_reap(pid);
            return Err(UpgradeError::Timeout(req.timeout));
        }
        Ok(Wait::Aborted) => {
            kill_and_reap(pid);
            return Err(UpgradeError::Aborted);
        }
        Err(e) => {
            kill_and_reap(pid);
            return Err(UpgradeError::Prepare(e));
        }
    }
    drop(err_pipe);
    log::info!(
        "[{me}] started child {pid} ({}); waiting up to {} for it to be ready",
        path.display(),
        crate::fmt::Dur(deadline.saturating_duration_since(Instant::now()))
    );

    // Wait for the ready byte.
    loop {
        match wait_readable(parent_end.as_raw_fd(), req.abort_fd, deadline) {
            Ok(Wait::Ready) => {
                let mut b = [0u8; 1];
                match sys::read(parent_end.as_raw_fd(), &mut b) {
                    Ok(1) => break,
                    Ok(_) => {
                        // EOF: the child exited (or closed the socket) first.
                        // Let it finish exiting (and logging why) by itself
                        // for a moment before killing it.
                        let status = reap_within(pid, Instant::now() + EXIT_GRACE)
                            .or_else(|| kill_and_reap(pid));
                        return Err(UpgradeError::ChildExited(
                            status.unwrap_or(Exit::Signal(libc::SIGKILL)),
                        ));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::warn!("[{me}] reading the readiness socket: {e}");
                        let status = kill_and_reap(pid);
                        return Err(UpgradeError::ChildExited(
                            status.unwrap_or(Exit::Signal(libc::SIGKILL)),
                        ));
                    }
                }
            }
            Ok(Wait::TimedOut) => {
                kill_and_reap(pid);
                return Err(UpgradeError::Timeout(req.timeout));
            }
            Ok(Wait::Aborted) => {
                kill_and_reap(pid);
                return Err(UpgradeError::Aborted);
            }
            Err(e) => {
                kill_and_reap(pid);
                return Err(UpgradeError::Prepare(e));
            }
        }
    }
    let stats = UpgradeStats {
        child_pid: pid,
        child_generation: req.generation + 1,
        duration: req.started.elapsed(),
        probation: Duration::ZERO,
    };
    Ok((stats, parent_end))
}
