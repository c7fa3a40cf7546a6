//! Signal masks and `signalfd` (the holder's way of waiting for signals).

use std::io;
use std::mem;
use std::os::fd::{OwnedFd, RawFd};

use super::{cvt, error, last, owned};

/// A saved signal mask, to restore with [`restore_signal_mask`].
pub(crate) struct SigMask(libc::sigset_t);

fn sigset_of(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it fully.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: set is a live local sigset_t; the signal numbers are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks `signals` for the calling thread (the whole process, while it is
/// single-threaded) and returns the previous mask.
pub(crate) fn block_signals(signals: &[libc::c_int]) -> io::Result<SigMask> {
    let set = sigset_of(signals);
    // SAFETY: sigset_t is plain data; sigprocmask fills `old`.
    let mut old: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: both pointers are to live local sigset_t values.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    if r != 0 {
        return Err(error("pthread_sigmask", r));
    }
    Ok(SigMask(old))
}

/// Restores a mask saved by [`block_signals`].
pub(crate) fn restore_signal_mask(mask: &SigMask) {
    // SAFETY: mask.0 is an initialised sigset_t; the old-mask pointer may be null.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &mask.0, std::ptr::null_mut()) };
}

/// A `signalfd` (CLOEXEC, non-blocking) that reads `signals`, which the
/// caller must have blocked.
pub(crate) fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset_of(signals);
    let fd = cvt(
        // SAFETY: set is a live, initialised sigset_t; -1 asks for a new fd.
        unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) },
        "signalfd",
    )?;
    Ok(owned(fd))
}

/// A signal read from a [`signalfd`]: its number, and who sent it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SigInfo {
    /// The signal number.
    pub signo: i32,
    /// The sending process (0 when the kernel sent it, say from a terminal).
    pub pid: u32,
    /// True if a process sent it with `kill` or `sigqueue`, false if the
    /// kernel did (a terminal's Ctrl-C, a child's exit).
    pub from_process: bool,
}

/// Reads the next pending signal from a non-blocking [`signalfd`];
/// `Ok(None)` when none is pending.
pub(crate) fn read_signal(fd: RawFd) -> io::Result<Option<SigInfo>> {
    // SAFETY: signalfd_siginfo is plain data; the kernel fills it whole.
    let mut info: libc::signalfd_siginfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::signalfd_siginfo>();
    loop {
        // SAFETY: info is a live local of exactly `size` bytes.
        let n = unsafe { libc::read(fd, &mut info as *mut _ as *mut libc::c_void, size) };
        if n == -1 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(last("read(signalfd)")),
            }
        }
        if n as usize != size {
            return Ok(None);
        }
        return Ok(Some(SigInfo {
            signo: info.ssi_signo as i32,
            pid: info.ssi_pid,
            from_process: info.ssi_code == libc::SI_USER || info.ssi_code == libc::SI_QUEUE,
        }));
    }
}
