//! Scheduling, resource limits and the monotonic clock.

use std::io;

use super::{cvt, getpid, last};

/// Puts the calling thread under `SCHED_BATCH` (fair share, but a wake-up
/// does not preempt the running thread). Failure (a seccomp filter, say) is
/// logged at debug level and otherwise ignored: it only costs speed.
pub(crate) fn sched_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is a live local the kernel only reads; pid 0 is the
    // calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if r == -1 {
        log::debug!("[{}] {}", getpid(), last("sched_setscheduler(SCHED_BATCH)"));
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as Go's runtime does.
/// Returns (old soft, new soft).
pub(crate) fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    cvt(
        // SAFETY: lim is a live local rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) },
        "getrlimit",
    )?;
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        cvt(
            // SAFETY: lim is a live, initialised rlimit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) },
            "setrlimit",
        )?;
    }
    Ok((old, lim.rlim_cur))
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd's `MONOTONIC_USEC` wants.
pub(crate) fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a live local timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
