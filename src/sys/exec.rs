//! `fork` + `execve` with inherited descriptors: everything the child needs
//! is prepared before the fork, and the child runs only async-signal-safe
//! calls.

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{last, pipe};

/// Everything the child half of `fork` needs, prepared before the fork so the
/// child allocates nothing.
pub(crate) struct ExecSpec {
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
}

/// Forks, and in the child places `spec.fds` at 3.., clears their
/// `FD_CLOEXEC`, writes its pid into `LISTEN_PID`, resets the signal mask and
/// `execve`s. Returns the child's pid and the read end of a CLOEXEC pipe that
/// yields the child's `errno` if exec failed and end-of-file if it succeeded.
///
/// The child runs only async-signal-safe calls (`fcntl`, `dup2`, `chdir`,
/// `sigprocmask`, `getpid`, `execve`, `write`, `_exit`) and allocates nothing.
pub(crate) fn fork_exec(spec: &mut ExecSpec) -> io::Result<(u32, OwnedFd)> {
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
