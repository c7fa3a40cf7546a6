//! The control loop: one thread that decides the server's course, one
//! message at a time, so there is never more than one upgrade and never an
//! upgrade during a drain or a probation.
//!
//! States, and what moves between them:
//! - serving: accepting. An upgrade request starts the upgrade thread
//!   (`request_upgrade`); a shutdown starts the shutdown delay or the drain
//!   (`begin_shutdown`).
//! - upgrading: the upgrade thread forks, execs and waits for the ready byte
//!   (`upgrade::parent::upgrade`); `upgrade_done` takes its result. A
//!   failure: serving again, with the verdict "failed".
//! - probation (`ServerConfig::probation` > 0): the child is ready; this process
//!   stops accepting and drains (`begin_drain`) but keeps its listener fds.
//!   A watcher thread waits for end-of-file on the child's readiness socket.
//!   If it comes first, `roll_back`: accept again on the same sockets, end
//!   the drain early, restore the pid file and `MAINPID`, verdict "rolled
//!   back". If the probation deadline comes first, `commit`: close the
//!   listeners, verdict "ok".
//! - draining: after a commit (or at once without probation) or a shutdown;
//!   `Control::Drained` ends the loop.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGUSR2};

mod probation;
mod shutdown;
mod upgrade;

use super::handle::{Outcome, StopReason};
use super::message::{Control, Hook, UpgradeReply};
use super::{Dispatch, Resume, ServerConfig};
use crate::accept::Waker;
use crate::control::Gate;
use crate::drain::Tracker;
use crate::fmt::Dur;
use crate::listener::{Listener, Listeners};
use crate::notify;
use crate::sys;
use crate::upgrade::UpgradeStats;
use probation::Probation;

/// What `Server::run` hands the loop.
pub(crate) struct Parts {
    pub hook: Option<Hook>,
    pub generation: u64,
    pub stop_fd: Arc<OwnedFd>,
    pub waker: Arc<Waker>,
    pub accept_thread: Option<JoinHandle<()>>,
    pub accept_fds: Vec<(RawFd, Arc<str>)>,
    pub dispatch: Dispatch,
    pub resume: Option<Resume>,
    pub listeners: Option<Listeners>,
    pub control: Option<Listener>,
    pub gate: Option<Arc<Gate>>,
    pub listener_fds: Vec<(RawFd, String)>,
    pub parent_link: Option<(Arc<OwnedFd>, u32)>,
}

/// The last upgrade, for `status`.
struct LastUpgrade {
    result: &'static str,
    duration: Duration,
    reason: Option<String>,
}

pub(crate) struct ControlLoop<'a> {
    pid: u32,
    cfg: &'a ServerConfig,
    tracker: &'a Arc<Tracker>,
    tx: &'a Sender<Control>,
    p: Parts,
    started: Instant,
    upgrading: Option<Instant>,
    upgrade_waiters: Vec<UpgradeReply>,
    parent_alive: bool,
    draining: bool,
    /// In the shutdown delay: serving on, the drain to follow.
    delaying: bool,
    /// A drain asked for while an upgrade was still running: starts when the
    /// (aborted) upgrade returns. The flag is "final" (not a handover).
    pending_drain: Option<bool>,
    probation: Option<Probation>,
    handover: Option<UpgradeStats>,
    /// Our end of the new child's readiness socket, held until we return.
    parent_end: Option<Arc<OwnedFd>>,
    last_upgrade: Option<LastUpgrade>,
    /// Send `WATCHDOG=1` this often while serving (systemd's
    /// `WATCHDOG_USEC`/2), and when next.
    watchdog: Option<(Duration, Instant)>,
}

impl<'a> ControlLoop<'a> {
    pub(crate) fn new(
        cfg: &'a ServerConfig,
        tracker: &'a Arc<Tracker>,
        tx: &'a Sender<Control>,
        p: Parts,
    ) -> ControlLoop<'a> {
        let watchdog = notify::watchdog_interval().map(|d| (d, Instant::now()));
        ControlLoop {
            pid: sys::getpid(),
            cfg,
            tracker,
            tx,
            parent_alive: p.parent_link.is_some(),
            p,
            started: Instant::now(),
            upgrading: None,
            upgrade_waiters: Vec::new(),
            draining: false,
            delaying: false,
            pending_drain: None,
            probation: None,
            handover: None,
            parent_end: None,
            last_upgrade: None,
            watchdog,
        }
    }

    /// The next timer: the probation deadline or the next watchdog ping.
    fn next_timer(&self) -> Option<Instant> {
        let probation = self.probation.as_ref().map(|p| p.deadline);
        let ping = self
            .watchdog
            .filter(|_| self.pinging())
            .map(|(_, next)| next);
        match (probation, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// This process pings the watchdog while it is the one serving: not
    /// once a child has announced itself (before its ready byte), again
    /// after a rollback.
    fn pinging(&self) -> bool {
        self.probation.is_none() && self.handover.is_none()
    }

    fn on_timers(&mut self) -> Option<Outcome> {
        let now = Instant::now();
        if let Some((every, next)) = self.watchdog {
            if self.pinging() && now >= next {
                notify::send("WATCHDOG=1");
                self.watchdog = Some((every, now + every));
            }
        }
        if self.probation.as_ref().is_some_and(|p| now >= p.deadline) {
            return self.commit();
        }
        None
    }

    pub(crate) fn run(&mut self, rx: &Receiver<Control>) -> Outcome {
        let outcome = self.run_loop(rx);
        if let Some(g) = &self.p.gate {
            g.stop();
            g.wait_clients(Duration::from_secs(2));
        }
        outcome
    }

    fn run_loop(&mut self, rx: &Receiver<Control>) -> Outcome {
        let pid = self.pid;
        loop {
            let msg = match self.next_timer() {
                Some(t) => match rx.recv_timeout(t.saturating_duration_since(Instant::now())) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(o) = self.on_timers() {
                            return o;
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    // Cannot happen: we hold a sender.
                    Err(_) => break,
                },
            };
            match msg {
                Control::Signal(sig @ (SIGUSR2 | SIGHUP)) => {
                    let name = if sig == SIGHUP { "SIGHUP" } else { "SIGUSR2" };
                    log::info!("[{pid}] {name}: upgrade requested");
                    self.request_upgrade(None);
                }
                Control::Signal(sig) => {
                    let name = match sig {
                        SIGINT => "SIGINT",
                        SIGQUIT => "SIGQUIT",
                        _ => "SIGTERM",
                    };
                    if self.draining || self.delaying {
                        log::warn!("[{pid}] second {name} during the drain: exiting at once");
                        return Outcome {
                            reason: StopReason::Aborted,
                            generation: self.p.generation,
                            upgrade: self.handover.clone(),
                            drain: None,
                        };
                    }
                    log::info!("[{pid}] {name}: graceful shutdown");
                    self.begin_shutdown();
                }
                Control::Shutdown => {
                    if !self.draining && !self.delaying {
                        log::info!("[{pid}] shutdown requested");
                        self.begin_shutdown();
                    }
                }
                Control::Status(reply) => {
                    let _ = reply.send(self.status_json());
                }
                Control::DelayOver => {
                    log::info!(
                        "[{pid}] shutdown delay of {} over",
                        Dur(self.cfg.shutdown_delay)
                    );
                    self.delaying = false;
                    self.begin_drain(true);
                }
                Control::Upgrade(reply) => {
                    log::info!("[{pid}] upgrade requested");
                    self.request_upgrade(reply);
                }
                Control::UpgradeDone(res) => self.upgrade_done(res),
                Control::ChildGone => {
                    if let Some(o) = self.roll_back() {
                        return o;
                    }
                }
                Control::ParentGone => {
                    if std::mem::replace(&mut self.parent_alive, false) {
                        log::info!("[{pid}] the previous generation has exited; upgrades allowed");
                    }
                }
                // Ended early by a rollback, or finished just before one.
                Control::Drained(stats, epoch)
                    if stats.cancelled || epoch != self.tracker.epoch() => {}
                Control::Drained(stats, _) => {
                    if let Some(p) = self.probation.as_mut() {
                        // Drained, but on probation: stay until it passes.
                        log::info!(
                            "[{pid}] drained in {}; staying for the probation",
                            Dur(stats.duration)
                        );
                        p.drained = Some(stats);
                        continue;
                    }
                    return self.finish(stats);
                }
            }
        }
        Outcome {
            reason: StopReason::Aborted,
            generation: self.p.generation,
            upgrade: None,
            drain: None,
        }
    }
}
