//! The holder: a stable process for the process trees where the serving
//! process may not exit (see DESIGN.md, "Process trees").
//!
//! A handover ends with the old generation exiting. That is fatal when the
//! old generation is PID 1 of a container (the kernel then kills the whole
//! namespace), the direct child of an init that exits with its child (tini,
//! dumb-init), or the pid a supervisor tracks. So in those trees
//! [`crate::init`] forks before any thread exists:
//! - the original process, whose pid the supervisor knows, becomes the
//!   holder and runs `run`: it never serves, holds no listener and runs
//!   no handler;
//! - the child continues into `main` as generation 0, and every later
//!   generation descends from it as usual.
//!
//! The holder loop, one `poll` over two fds:
//! 1. The channel (a datagram socketpair handed down to every generation
//!    as `GRACE_HOLDER_FD`, see [`crate::notify`]) carries the `sd_notify`
//!    lines grace sends anyway. A `MAINPID=` line names the generation that
//!    serves now; the other lines are relayed to a real `NOTIFY_SOCKET`.
//! 2. A `signalfd` for SIGCHLD and the signals it forwards. SIGUSR2, SIGHUP,
//!    SIGTERM, SIGINT and SIGQUIT sent by a process go to the serving
//!    generation. Ones the kernel sent to the whole foreground process group
//!    (a terminal's Ctrl-C) reached the generations too and are not sent twice.
//! 3. After every wake-up it reaps every child that ended. As PID 1 that is
//!    every orphan in the namespace. Elsewhere it is a child subreaper, so each
//!    generation is re-parented to it when its parent exits.
//! 4. When no generation is left, it exits with the status of the one that
//!    served last: its exit code, or 128+N if signal N killed it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use libc::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};

use crate::sys::{self, Exit};
use crate::{listener, notify};

/// Whether [`crate::init_with`] starts a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Supervise {
    /// Only when this process is PID 1 (of a container or PID namespace),
    /// where exiting would take the new generation down with it. The default.
    #[default]
    Auto,
    /// Always: for an init that exits with its child (tini, dumb-init) or a
    /// supervisor that tracks one pid (runit, s6, supervisord, a shell's
    /// `wait`). The demo's `--supervise`.
    Always,
    /// Never, not even as PID 1.
    Never,
}

/// The signals the holder forwards to the serving generation.
const FORWARDED: [libc::c_int; 5] = [SIGUSR2, SIGHUP, SIGTERM, SIGINT, SIGQUIT];
/// Those that need a serving generation with its handlers installed.
const UPGRADES: [libc::c_int; 2] = [SIGUSR2, SIGHUP];

/// Starts the holder if `supervise` asks for it; returns in generation 0
/// (or at once, if no holder is wanted). The holder itself never returns.
pub(crate) fn start(supervise: Supervise) {
    let me = sys::getpid();
    let want = match supervise {
        Supervise::Never => false,
        Supervise::Always => true,
        Supervise::Auto => me == 1,
    };
    // A later generation (the same argv, so the same `--supervise`) is
    // already under the holder, or was started by a grace parent.
    if !want || notify::holder_pid().is_some() || listener::generation() > 0 {
        return;
    }
    let threads = sys::thread_count();
    if threads != Some(1) {
        log::error!(
            "[{me}] cannot start the holder: {} threads are running; call grace::init() \
             first in main, before anything starts a thread",
            threads.map_or("an unknown number of".to_string(), |n| n.to_string())
        );
        return;
    }
    if let Err(e) = fork_holder(me) {
        log::error!("[{me}] cannot start the holder ({e}); serving without one");
    }
}

fn fork_holder(me: u32) -> io::Result<()> {
    let (holder_end, gen_end) = sys::datagram_pair()?;
    if me != 1 {
        // Before the fork, so no generation can ever be re-parented past us.
        sys::set_child_subreaper()?;
    }
    let mut watched = FORWARDED.to_vec();
    watched.push(SIGCHLD);
    // Blocked before the fork, so the holder never dies of a signal that
    // arrives before its signalfd exists; generation 0 restores the mask.
    let old_mask = sys::block_signals(&watched)?;
    match sys::fork_single_threaded() {
        Err(e) => {
            sys::restore_signal_mask(&old_mask);
            Err(e)
        }
        Ok(None) => {
            // Generation 0: on into main.
            sys::restore_signal_mask(&old_mask);
            drop(holder_end);
            notify::set_holder(gen_end, me);
            Ok(())
        }
        Ok(Some(first)) => {
            drop(gen_end);
            // Inherited listeners (socket activation) belong to generation 0.
            listener::drop_inherited();
            let sigfd = match sys::signalfd(&watched) {
                Ok(fd) => fd,
                Err(e) => {
                    // Without signals the holder cannot do its job; stay out
                    // of the way instead and let generation 0 be the service.
                    log::error!("[{me}] holder: signalfd failed ({e}); waiting for {first}");
                    let code = match sys::waitpid(first, true) {
                        Ok(Some(how)) => exit_code(how),
                        _ => 1,
                    };
                    std::process::exit(code);
                }
            };
            run(holder_end, sigfd, first)
        }
    }
}

/// The status a shell would report: the exit code, or 128+N for signal N.
fn exit_code(how: Exit) -> i32 {
    match how {
        Exit::Code(c) => c,
        Exit::Signal(s) => 128 + s,
    }
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        SIGUSR2 => "SIGUSR2",
        SIGHUP => "SIGHUP",
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGQUIT => "SIGQUIT",
        SIGCHLD => "SIGCHLD",
        _ => "signal",
    }
}

/// What the holder knows.
struct State {
    me: u32,
    /// Generations, oldest first; the last one serves. A `MAINPID=` line
    /// moves its pid to the end (a rolled-back parent announces itself again).
    gens: Vec<u32>,
    /// Some generation has said `READY=1`: upgrade signals may be forwarded.
    ready: bool,
    /// How the last generation that was serving when it ended, ended.
    last: Option<(u32, Exit)>,
    /// When the last upgrade signal was forwarded.
    upgrade_sent: Option<Instant>,
}

impl State {
    fn serving(&self) -> Option<u32> {
        self.gens.last().copied()
    }

    fn message(&mut self, msg: &str) {
        let mut relay: Vec<&str> = Vec::new();
        for line in msg.lines() {
            if let Some(p) = line.strip_prefix("MAINPID=") {
                match p.trim().parse::<u32>() {
                    Ok(pid) if self.serving() != Some(pid) => {
                        self.gens.retain(|g| *g != pid);
                        self.gens.push(pid);
                        match self.upgrade_sent.take() {
                            Some(t) => log::info!(
                                "[{}] holder: {pid} serves now, {} after the upgrade signal",
                                self.me,
                                crate::fmt::Dur(t.elapsed())
                            ),
                            None => log::info!("[{}] holder: {pid} serves now", self.me),
                        }
                    }
                    Ok(_) => {}
                    Err(_) => log::warn!("[{}] holder: bad line {line:?}", self.me),
                }
                continue;
            }
            if line == "READY=1" {
                self.ready = true;
            }
            relay.push(line);
        }
        // Upstream, the holder is the main pid, so MAINPID= never goes there.
        if !relay.is_empty() {
            if let Err(e) = notify::upstream(&relay.join("\n")) {
                log::warn!("[{}] holder: relaying to NOTIFY_SOCKET: {e}", self.me);
            }
        }
    }

    fn forward(&mut self, info: sys::SigInfo) {
        let name = signal_name(info.signo);
        if !info.from_process {
            // The kernel sent it to the whole foreground process group, the
            // generations included: forwarding it would deliver it twice.
            log::debug!(
                "[{}] holder: {name} from the terminal, not forwarded",
                self.me
            );
            return;
        }
        let Some(to) = self.serving() else {
            return;
        };
        if UPGRADES.contains(&info.signo) && !self.ready {
            log::warn!(
                "[{}] holder: {name} before any generation is ready: ignored",
                self.me
            );
            return;
        }
        log::info!(
            "[{}] holder: {name} from {} forwarded to {to}",
            self.me,
            info.pid
        );
        match sys::kill(to, info.signo) {
            Ok(()) if UPGRADES.contains(&info.signo) => self.upgrade_sent = Some(Instant::now()),
            Ok(()) => {}
            Err(e) => log::warn!("[{}] holder: forwarding {name} to {to}: {e}", self.me),
        }
    }

    /// Reaps every child that has ended.
    fn reap(&mut self) {
        loop {
            match sys::wait_any() {
                Ok(Some((pid, how))) => {
                    if self.gens.contains(&pid) {
                        log::info!("[{}] holder: generation {pid} ended: {how}", self.me);
                        if self.serving() == Some(pid) {
                            self.last = Some((pid, how));
                        }
                        self.gens.retain(|g| *g != pid);
                    } else {
                        log::debug!("[{}] holder: reaped {pid}: {how}", self.me);
                    }
                }
                Ok(None) => return,
                Err(e) if sys::errno_of(&e) == Some(libc::ECHILD) => return,
                Err(e) => {
                    log::error!("[{}] holder: waitpid: {e}", self.me);
                    return;
                }
            }
        }
    }
}

/// The holder loop; see the module docs. Never returns.
fn run(chan: OwnedFd, sigfd: OwnedFd, first: u32) -> ! {
    let me = sys::getpid();
    let mut st = State {
        me,
        gens: vec![first],
        ready: false,
        last: None,
        upgrade_sent: None,
    };
    log::info!(
        "[{me}] holder: generation 0 is {first}; forwarding signals to the serving \
         generation and reaping{}",
        if me == 1 {
            " every orphan (PID 1)"
        } else {
            " (child subreaper)"
        }
    );
    let mut buf = vec![0u8; 4096];
    loop {
        let mut pfds = [
            sys::pollfd(chan.as_raw_fd(), libc::POLLIN),
            sys::pollfd(sigfd.as_raw_fd(), libc::POLLIN),
        ];
        match sys::poll(&mut pfds, None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::error!("[{me}] holder: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        // The channel first: a new generation announces itself before it
        // tells its parent it is ready, so its MAINPID= is queued here before
        // the old generation can have exited.
        loop {
            match sys::recv(chan.as_raw_fd(), &mut buf, libc::MSG_DONTWAIT) {
                Ok(n) => st.message(&String::from_utf8_lossy(&buf[..n])),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::error!("[{me}] holder: reading the channel: {e}");
                    break;
                }
            }
        }
        loop {
            match sys::read_signal(sigfd.as_raw_fd()) {
                Ok(Some(info)) if info.signo == SIGCHLD => {}
                Ok(Some(info)) => st.forward(info),
                Ok(None) => break,
                Err(e) => {
                    log::error!("[{me}] holder: reading signals: {e}");
                    break;
                }
            }
        }
        st.reap();
        // A generation reaped by its own parent (a child that failed, or was
        // killed during its parent's drain) never reaches us: drop it once
        // it is gone.
        st.gens.retain(|g| sys::process_exists(*g));
        if st.gens.is_empty() {
            let code = match st.last {
                Some((pid, how)) => {
                    log::info!(
                        "[{me}] holder: no generation left; exiting with {} (as {pid} did: {how})",
                        exit_code(how)
                    );
                    exit_code(how)
                }
                None => {
                    log::error!(
                        "[{me}] holder: no generation left, and how the last one ended is \
                         unknown; exiting with 1"
                    );
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_what_a_shell_reports() {
        assert_eq!(exit_code(Exit::Code(0)), 0);
        assert_eq!(exit_code(Exit::Code(3)), 3);
        assert_eq!(exit_code(Exit::Signal(libc::SIGKILL)), 137);
        assert_eq!(exit_code(Exit::Signal(libc::SIGTERM)), 143);
    }

    #[test]
    fn mainpid_moves_the_serving_generation() {
        let mut st = State {
            me: 1,
            gens: vec![10],
            ready: false,
            last: None,
            upgrade_sent: None,
        };
        st.message("MAINPID=11\nREADY=1");
        assert_eq!(st.gens, vec![10, 11]);
        assert!(st.ready);
        assert_eq!(st.serving(), Some(11));
        // A rolled-back parent announces itself again.
        st.message("MAINPID=10\nREADY=1");
        assert_eq!(st.gens, vec![11, 10]);
        assert_eq!(st.serving(), Some(10));
    }
}
