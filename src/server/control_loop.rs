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
//! - probation (`Config::probation` > 0): the child is ready; this process
//!   stops accepting and drains (`begin_drain`) but keeps its listener fds.
//!   A watcher thread waits for end-of-file on the child's readiness socket.
//!   If it comes first, `roll_back`: accept again on the same sockets, end
//!   the drain early, restore the pid file and `MAINPID`, verdict "rolled
//!   back". If the probation deadline comes first, `commit`: close the
//!   listeners, verdict "ok".
//! - draining: after a commit (or at once without probation) or a shutdown;
//!   `Control::Drained` ends the loop.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGUSR2};

use super::handle::{Outcome, StopReason};
use super::{spawn_accept, Config, Dispatch, Resume};
use crate::accept::Waker;
use crate::control::{self, Command, Gate};
use crate::drain::{DrainStats, Tracker};
use crate::fmt::Dur;
use crate::listener::{Listener, Listeners};
use crate::sys;
use crate::upgrade::{child, parent, UpgradeError, UpgradeStats};
use crate::{notify, pidfile};

pub(crate) type UpgradeReply = crossbeam_channel::Sender<Result<UpgradeStats, UpgradeError>>;
pub(crate) type Hook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A message to the control loop.
pub(crate) enum Control {
    Signal(i32),
    Upgrade(Option<UpgradeReply>),
    Shutdown,
    /// A control-socket `status`: the reply line goes back on the channel.
    Status(crossbeam_channel::Sender<String>),
    UpgradeDone(Result<(UpgradeStats, OwnedFd), UpgradeError>),
    /// The child on probation closed its readiness socket: it ended.
    ChildGone,
    ParentGone,
    /// A drain ended; the tracker's drain epoch it belonged to.
    Drained(DrainStats, u64),
    /// The shutdown delay is over: start the drain.
    DelayOver,
}

/// What the control socket's commands do: messages to the control loop.
pub(crate) fn exec(tx: Sender<Control>) -> control::Exec {
    Arc::new(move |cmd| match cmd {
        Command::Status => {
            let (rtx, rrx) = crossbeam_channel::bounded(1);
            if tx.send(Control::Status(rtx)).is_err() {
                return control::error_json("the server is stopping");
            }
            rrx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| control::error_json("the server did not answer"))
        }
        Command::Upgrade => {
            let (rtx, rrx) = crossbeam_channel::bounded(1);
            if tx.send(Control::Upgrade(Some(rtx))).is_err() {
                return control::verdict_json(&Err(UpgradeError::ServerGone));
            }
            control::verdict_json(&rrx.recv().unwrap_or(Err(UpgradeError::ServerGone)))
        }
        Command::Shutdown => {
            let _ = tx.send(Control::Shutdown);
            "{\"ok\":true,\"result\":\"shutting down\"}".to_string()
        }
    })
}

/// What `Server::run` hands the loop.
pub(crate) struct Parts {
    pub hook: Option<Hook>,
    pub generation: u64,
    pub stop_fd: Arc<OwnedFd>,
    pub waker: Arc<Waker>,
    pub accept_thread: Option<JoinHandle<()>>,
    pub accept_fds: Vec<RawFd>,
    pub dispatch: Dispatch,
    pub resume: Option<Resume>,
    pub listeners: Option<Listeners>,
    pub control: Option<Listener>,
    pub gate: Option<Arc<Gate>>,
    pub listener_fds: Vec<(RawFd, String)>,
    pub parent_link: Option<(Arc<OwnedFd>, u32)>,
}

/// A ready child on probation.
struct Probation {
    stats: UpgradeStats,
    ready_at: Instant,
    deadline: Instant,
    waiters: Vec<UpgradeReply>,
    /// Our end of its readiness socket, watched for end-of-file.
    end: Arc<OwnedFd>,
    watch_stop: Arc<OwnedFd>,
    watch: Option<JoinHandle<()>>,
    drained: Option<DrainStats>,
}

/// The last upgrade, for `status`.
struct LastUpgrade {
    result: &'static str,
    duration: Duration,
    reason: Option<String>,
}

pub(crate) struct ControlLoop<'a> {
    pid: u32,
    cfg: &'a Config,
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
        cfg: &'a Config,
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

    fn finish(&self, stats: DrainStats) -> Outcome {
        let reason = if self.handover.is_some() {
            StopReason::Upgraded
        } else {
            StopReason::Shutdown
        };
        log::info!(
            "[{}] drained in {}: {} connection(s) open at start ({} busy), {} finished, {} forced",
            self.pid,
            Dur(stats.duration),
            stats.open_at_start,
            stats.busy_at_start,
            stats.finished,
            stats.forced
        );
        Outcome {
            reason,
            generation: self.p.generation,
            upgrade: self.handover.clone(),
            drain: Some(stats),
        }
    }

    /// True if the parent has closed its end of the readiness socket (it
    /// never writes to it, so readable means end-of-file) or we have been
    /// reparented.
    fn parent_gone_now(&mut self) -> bool {
        let Some((fd, ppid)) = &self.p.parent_link else {
            return true;
        };
        let mut pfd = [sys::pollfd(fd.as_raw_fd(), libc::POLLIN)];
        let gone = matches!(sys::poll(&mut pfd, Some(Duration::ZERO)), Ok(n) if n > 0)
            || sys::getppid() != *ppid;
        if gone {
            self.parent_alive = false;
            log::info!(
                "[{}] the previous generation has exited; upgrades allowed",
                self.pid
            );
        }
        gone
    }

    fn request_upgrade(&mut self, reply: Option<UpgradeReply>) {
        let pid = self.pid;
        let refuse = if self.upgrading.is_some() || self.probation.is_some() {
            Some(UpgradeError::InProgress)
        } else if self.draining || self.delaying {
            Some(UpgradeError::ShuttingDown)
        } else if self.parent_alive && !self.parent_gone_now() {
            Some(UpgradeError::ParentAlive)
        } else {
            None
        };
        if let Some(e) = refuse {
            log::warn!("[{pid}] refusing upgrade: {e}");
            if let Some(r) = reply {
                let _ = r.send(Err(e));
            }
            return;
        }
        let started = Instant::now();
        self.upgrading = Some(started);
        self.upgrade_waiters.extend(reply);
        notify::send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            sys::monotonic_usec()
        ));
        notify::send(&format!(
            "STATUS=upgrading: starting generation {}",
            self.p.generation + 1
        ));
        let fds = self.p.listener_fds.clone();
        let hook = self.p.hook.clone();
        let tx = self.tx.clone();
        let generation = self.p.generation;
        let timeout = self.cfg.upgrade_timeout;
        let abort_fd = self.p.stop_fd.as_raw_fd();
        let spawned = std::thread::Builder::new()
            .name("grace-upgrade".into())
            .spawn(move || {
                let res = (|| {
                    if let Some(h) = hook {
                        h().map_err(UpgradeError::Hook)?;
                    }
                    parent::upgrade(&parent::Request {
                        fds: &fds,
                        generation,
                        timeout,
                        started,
                        abort_fd,
                    })
                })();
                let _ = tx.send(Control::UpgradeDone(res));
            });
        if let Err(e) = spawned {
            self.upgrade_done(Err(UpgradeError::Prepare(e)));
        }
    }

    fn upgrade_done(&mut self, res: Result<(UpgradeStats, OwnedFd), UpgradeError>) {
        let pid = self.pid;
        let started = self.upgrading.take();
        let waiters = std::mem::take(&mut self.upgrade_waiters);
        match res {
            Ok((mut stats, end))
                if !self.draining && !self.delaying && self.pending_drain.is_none() =>
            {
                let probation = self.cfg.probation;
                if probation.is_zero() {
                    log::info!(
                        "[{pid}] child {} (generation {}) is ready after {}; draining",
                        stats.child_pid,
                        stats.child_generation,
                        Dur(stats.duration)
                    );
                    self.parent_end = Some(Arc::new(end));
                    self.handover = Some(stats.clone());
                    self.record(Ok(&stats), stats.duration);
                    for w in waiters {
                        let _ = w.send(Ok(stats.clone()));
                    }
                    self.begin_drain(false);
                    return;
                }
                log::info!(
                    "[{pid}] child {} (generation {}) is ready after {}; draining, on \
                     probation for {}",
                    stats.child_pid,
                    stats.child_generation,
                    Dur(stats.duration),
                    Dur(probation)
                );
                notify::send(&format!(
                    "STATUS=generation {} ready; on probation for {}",
                    stats.child_generation,
                    Dur(probation)
                ));
                stats.probation = probation;
                let end = Arc::new(end);
                let watch_stop = match sys::eventfd() {
                    Ok(fd) => Arc::new(fd),
                    Err(e) => {
                        log::error!("[{pid}] cannot watch the child ({e}); no probation");
                        self.parent_end = Some(end);
                        self.handover = Some(stats.clone());
                        for w in waiters {
                            let _ = w.send(Ok(stats.clone()));
                        }
                        self.begin_drain(false);
                        return;
                    }
                };
                let watch = {
                    let (end, stop, tx) = (end.clone(), watch_stop.clone(), self.tx.clone());
                    std::thread::Builder::new()
                        .name("grace-probation".into())
                        .spawn(move || {
                            if child::wait_parent_exit(&end, stop.as_raw_fd()) {
                                let _ = tx.send(Control::ChildGone);
                            }
                        })
                        .map_err(|e| log::error!("[{pid}] cannot watch the child: {e}"))
                        .ok()
                };
                let now = Instant::now();
                self.probation = Some(Probation {
                    stats,
                    ready_at: now,
                    deadline: now + probation,
                    waiters,
                    end,
                    watch_stop,
                    watch,
                    drained: None,
                });
                self.begin_drain(false);
            }
            Ok((stats, _end)) => {
                // A shutdown won the race; the child is ready but we are
                // shutting down anyway. Let it serve: it has the listeners.
                log::warn!(
                    "[{pid}] child {} became ready during shutdown",
                    stats.child_pid
                );
                for w in waiters {
                    let _ = w.send(Err(UpgradeError::ShuttingDown));
                }
            }
            Err(e) => {
                log::error!("[{pid}] upgrade failed: {e}; still serving");
                self.record(Err(&e), started.map_or(Duration::ZERO, |s| s.elapsed()));
                self.serve_again();
                if !self.draining && !self.delaying {
                    notify::send(&format!(
                        "STATUS=upgrade failed: {e}; serving generation {}",
                        self.p.generation
                    ));
                }
                for w in waiters {
                    let _ = w.send(Err(clone_err(&e)));
                }
            }
        }
        if let Some(final_) = self.pending_drain.take() {
            self.begin_drain(final_);
        }
    }

    /// After a failed upgrade or a rollback: this process is the one serving
    /// again. A child killed after it wrote the pid file left its pid there;
    /// it may also have announced itself as the main pid.
    fn serve_again(&mut self) {
        let pid = self.pid;
        if let Some(path) = &self.cfg.pid_file {
            if pidfile::read(path).ok() != Some(pidfile::own_pid()) {
                match pidfile::write(path) {
                    Ok(()) => log::info!("[{pid}] restored the pid file {}", path.display()),
                    Err(e) => log::warn!("[{pid}] restoring the pid file: {e}"),
                }
            }
        }
        if !self.draining && !self.delaying {
            notify::send(&format!("MAINPID={pid}\nREADY=1"));
        }
    }

    fn record(&mut self, res: Result<&UpgradeStats, &UpgradeError>, duration: Duration) {
        self.last_upgrade = Some(match res {
            Ok(_) => LastUpgrade {
                result: "ok",
                duration,
                reason: None,
            },
            Err(e) => LastUpgrade {
                result: if e.is_refusal() {
                    "refused"
                } else if matches!(e, UpgradeError::RolledBack { .. }) {
                    "rolled back"
                } else {
                    "failed"
                },
                duration,
                reason: Some(e.to_string()),
            },
        });
    }

    fn stop_watch(p: &mut Probation) {
        let _ = sys::eventfd_signal(p.watch_stop.as_raw_fd());
        if let Some(w) = p.watch.take() {
            let _ = w.join();
        }
    }

    /// The probation passed: the child serves for good.
    fn commit(&mut self) -> Option<Outcome> {
        let mut p = self.probation.take()?;
        Self::stop_watch(&mut p);
        let pid = self.pid;
        log::info!(
            "[{pid}] child {} passed its probation of {}; closing the listeners",
            p.stats.child_pid,
            Dur(p.stats.probation)
        );
        if let Some(l) = self.p.listeners.take() {
            // Close, never shutdown or unlink: the child serves on them.
            l.close(false);
        }
        if let Some(c) = self.p.control.take() {
            c.close(false);
        }
        self.record(Ok(&p.stats), p.stats.duration + p.stats.probation);
        for w in p.waiters.drain(..) {
            let _ = w.send(Ok(p.stats.clone()));
        }
        self.parent_end = Some(p.end.clone());
        self.handover = Some(p.stats.clone());
        p.drained.map(|stats| self.finish(stats))
    }

    /// The child ended during its probation: serve again, on the same
    /// sockets. Unless it ended cleanly (exit 0): it was asked to shut
    /// down (a `shutdown` it answered, a SIGTERM to the pid in the pid
    /// file), and so is this process then.
    fn roll_back(&mut self) -> Option<Outcome> {
        let mut p = self.probation.take()?;
        Self::stop_watch(&mut p);
        let pid = self.pid;
        let child = p.stats.child_pid;
        let lived = p.ready_at.elapsed();
        let status = parent::reap_child(child);
        if status == sys::Exit::Code(0) {
            log::info!(
                "[{pid}] child {child} shut down cleanly during its probation; shutting down too"
            );
            if let Some(l) = self.p.listeners.take() {
                l.close(true);
            }
            if let Some(c) = self.p.control.take() {
                c.close(true);
            }
            for w in p.waiters.drain(..) {
                let _ = w.send(Err(UpgradeError::ShuttingDown));
            }
            notify::send("STOPPING=1");
            return p.drained.map(|stats| self.finish(stats));
        }
        // Accept again first: every moment counts for the shared backlog.
        self.tracker.end_drain();
        if let Some(r) = &self.p.resume {
            r();
        }
        let _ = sys::eventfd_clear(self.p.stop_fd.as_raw_fd());
        match Waker::new().and_then(|w| {
            let t = spawn_accept(
                self.cfg,
                &self.p.accept_fds,
                &w,
                self.tracker,
                &self.p.dispatch,
            )?;
            Ok((w, t))
        }) {
            Ok((w, t)) => {
                self.p.waker = w;
                self.p.accept_thread = Some(t);
            }
            Err(e) => log::error!("[{pid}] cannot accept again after the rollback: {e}"),
        }
        if let Some(g) = &self.p.gate {
            g.pause(false);
        }
        self.draining = false;
        let err = UpgradeError::RolledBack {
            child_pid: child,
            status,
            lived,
        };
        log::error!(
            "[{pid}] child {child} (generation {}) ended during its probation ({status}) {} \
             after it was ready; rolled back: accepting again on the same sockets",
            p.stats.child_generation,
            Dur(lived)
        );
        self.serve_again();
        notify::send(&format!(
            "STATUS=rolled back: generation {} ended during its probation ({status}); serving \
             generation {}",
            p.stats.child_generation, self.p.generation
        ));
        self.record(Err(&err), p.stats.duration + lived);
        for w in p.waiters.drain(..) {
            let _ = w.send(Err(clone_err(&err)));
        }
        self.watchdog = self.watchdog.map(|(every, _)| (every, Instant::now()));
        None
    }

    /// A final shutdown: the drain, after the shutdown delay if there is one.
    fn begin_shutdown(&mut self) {
        let delay = self.cfg.shutdown_delay;
        notify::send("STATUS=shutting down");
        if delay.is_zero() {
            self.begin_drain(true);
            return;
        }
        // Keep accepting and serving, but say so: responses close their
        // connections, `Handle::is_draining` turns true (a readiness probe
        // answers 503), and an upgrade in flight is aborted.
        self.delaying = true;
        self.tracker.start_closing();
        let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
        notify::send("STOPPING=1");
        log::info!(
            "[{}] still accepting for the shutdown delay of {}; then draining",
            self.pid,
            Dur(delay)
        );
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("grace-delay".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(Control::DelayOver);
            });
        if let Err(e) = spawned {
            log::error!(
                "[{}] cannot time the shutdown delay ({e}); draining now",
                self.pid
            );
            self.delaying = false;
            self.begin_drain(true);
        }
    }

    /// Starts the drain: everything after this runs on a drain thread, which
    /// reports back with `Control::Drained`. On probation the listeners stay
    /// open (not accepted on) for a rollback.
    fn begin_drain(&mut self, final_: bool) {
        if self.draining {
            return;
        }
        if self.upgrading.is_some() {
            // Abort the upgrade first; the listeners must stay open until
            // the upgrade thread no longer uses their fds.
            let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
            self.pending_drain = Some(final_);
            return;
        }
        self.draining = true;
        let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
        let pid = self.pid;
        let tracker = self.tracker.clone();
        let waker = self.p.waker.clone();
        let accept = self.p.accept_thread.take();
        let keep = self.probation.is_some();
        let listeners = if keep { None } else { self.p.listeners.take() };
        let control = if keep || final_ {
            None
        } else {
            self.p.control.take()
        };
        if let Some(g) = &self.p.gate {
            // The new generation answers the control socket now.
            if final_ {
                g.stop();
            } else {
                g.pause(true);
            }
        }
        let control_final = if final_ { self.p.control.take() } else { None };
        let tx = self.tx.clone();
        let stop_timeout = self.cfg.stop_timeout;
        let force_grace = self.cfg.force_grace;
        // STOPPING=1 went out when the shutdown delay began.
        let delayed = !self.cfg.shutdown_delay.is_zero() && final_;
        // A rollback may end this drain before its thread gets going.
        let epoch = self.tracker.epoch();
        let drain = move || {
            let started = Instant::now();
            // Stop accepting first, then tell connections to go: a client
            // told `Connection: close` that reconnects then finds the
            // listener closed (refused, cleanly) or, after a handover, the
            // new process; never a queue that is about to be reset.
            waker.stop(&tracker, final_);
            if let Some(a) = accept {
                let _ = a.join();
            }
            if let Some(l) = listeners {
                // Close, never shutdown: after a handover the child shares
                // these sockets. Only a final shutdown unlinks unix paths.
                l.close(final_);
            }
            if let Some(c) = control {
                c.close(false);
            }
            if let Some(c) = control_final {
                c.close(true);
            }
            log::debug!(
                "[{pid}] {}",
                if keep {
                    "stopped accepting; listeners kept for the probation"
                } else {
                    "listeners closed"
                }
            );
            if final_ && !delayed {
                notify::send("STOPPING=1");
            }
            let Some(counts) = tracker.start_drain_in(Some(epoch)) else {
                let stats = DrainStats {
                    cancelled: true,
                    ..DrainStats::default()
                };
                let _ = tx.send(Control::Drained(stats, epoch));
                return;
            };
            log::info!(
                "[{pid}] draining {} connection(s) ({} busy); stop timeout {}",
                counts.0,
                counts.1,
                Dur(stop_timeout)
            );
            let stats = tracker.finish_drain_in(epoch, started, counts, stop_timeout, force_grace);
            let _ = tx.send(Control::Drained(stats, epoch));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("grace-drain".into())
            .spawn(drain)
        {
            log::error!("[{pid}] cannot start the drain thread: {e}");
        }
    }

    /// The reply to `status`.
    fn status_json(&self) -> String {
        use control::json_str;
        let state = if self.delaying
            || (self.draining && self.handover.is_none() && self.probation.is_none())
        {
            "draining"
        } else if self.probation.is_some() {
            "probation"
        } else if self.handover.is_some() {
            "handed over"
        } else if self.upgrading.is_some() {
            "upgrading"
        } else {
            "serving"
        };
        let listeners: Vec<String> = self
            .p
            .listeners
            .iter()
            .flat_map(|l| l.iter())
            .map(|l| json_str(&l.local_addr().to_string()))
            .collect();
        let last = match &self.last_upgrade {
            None => "null".to_string(),
            Some(u) => format!(
                "{{\"result\":\"{}\",\"duration_ms\":{},\"reason\":{}}}",
                u.result,
                u.duration.as_millis(),
                u.reason.as_deref().map_or("null".to_string(), json_str)
            ),
        };
        format!(
            "{{\"ok\":true,\"result\":\"serving\",\"state\":\"{state}\",\"pid\":{},\
             \"generation\":{},\"uptime_ms\":{},\"connections\":{{\"live\":{},\"busy\":{}}},\
             \"draining\":{},\"listeners\":[{}],\"last_upgrade\":{last}}}",
            self.pid,
            self.p.generation,
            self.started.elapsed().as_millis(),
            self.tracker.active(),
            self.tracker.busy(),
            self.draining || self.delaying,
            listeners.join(",")
        )
    }
}

fn clone_err(e: &UpgradeError) -> UpgradeError {
    match e {
        UpgradeError::InProgress => UpgradeError::InProgress,
        UpgradeError::ParentAlive => UpgradeError::ParentAlive,
        UpgradeError::ShuttingDown => UpgradeError::ShuttingDown,
        UpgradeError::Hook(s) => UpgradeError::Hook(s.clone()),
        UpgradeError::Prepare(e) => UpgradeError::Prepare(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::Fork(e) => UpgradeError::Fork(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::Exec(e) => UpgradeError::Exec(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::ChildExited(s) => UpgradeError::ChildExited(*s),
        UpgradeError::Timeout(d) => UpgradeError::Timeout(*d),
        UpgradeError::Aborted => UpgradeError::Aborted,
        UpgradeError::RolledBack {
            child_pid,
            status,
            lived,
        } => UpgradeError::RolledBack {
            child_pid: *child_pid,
            status: *status,
            lived: *lived,
        },
        UpgradeError::ServerGone => UpgradeError::ServerGone,
    }
}
