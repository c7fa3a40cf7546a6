//! The server: listeners + accept thread + worker threads + idle poller +
//! drain + upgrade, driven by one control loop.
//!
//! Everything that changes the server's course arrives as a `Control`
//! message on one crossbeam channel: signals (forwarded by a signal-hook
//! thread), calls through a [`Handle`], the outcome of an upgrade, the old
//! generation's exit, and the end of a drain. The control loop handles them
//! one at a time, so there is never more than one upgrade, and never an
//! upgrade during a drain.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};

use crate::accept::{accept_loop, Waker};
use crate::conn::Conn;
use crate::drain::{DrainStats, Tracker};
use crate::listener::{self, ListenAddr, Listeners};
use crate::park::{HttpConn, ParkLot};
use crate::pool::Pool;
use crate::upgrade::{child, parent, UpgradeError, UpgradeStats};
use crate::{notify, pidfile, sys};

/// Hands an accepted connection to the pool.
type Dispatch = Arc<dyn Fn(Conn) + Send + Sync>;

/// Server settings. `Config::default()` holds production defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// `listen(2)` backlog for sockets bound here. Default 1024.
    pub backlog: i32,
    /// [`Server::serve_http`] sets `TCP_DEFER_ACCEPT` on its TCP listeners to
    /// this (rounded up to whole seconds; `Some(Duration::ZERO)` turns it
    /// off; `None` leaves the sockets as they are, say as systemd's
    /// `DeferAcceptSec=` made them). The kernel then completes the handshake
    /// but hands a connection to `accept` only once its request's first
    /// bytes have arrived, so the connection thread finds a request to read
    /// instead of parking the connection to wait for it: one wake-up per new
    /// connection instead of two (measured with `Connection: close`: 40%
    /// less server CPU per request, 0.95x to 1.03x hyper's throughput in the
    /// same session; see DESIGN.md). Apache httpd does
    /// the same by default on Linux (`AcceptFilter http data`), nginx with
    /// `listen ... deferred`. A client that stays silent is accepted once
    /// this has passed, and its head timeout starts then. Default 1 s.
    pub defer_accept: Option<Duration>,
    /// At most this many connections at once; further clients wait in the
    /// kernel's backlog until a slot frees. Default: no limit.
    pub max_connections: Option<usize>,
    /// Stack size of connection threads. Default 256 KiB.
    pub thread_stack_size: usize,
    /// An idle connection thread retires after this. Default 10 s.
    pub thread_idle_timeout: Duration,
    /// How long a drain lets connections finish before shutting them down.
    /// Default 30 s.
    pub stop_timeout: Duration,
    /// On a shutdown (SIGTERM, SIGINT, SIGQUIT or [`Handle::shutdown`]), keep
    /// accepting and serving this long before the drain starts, while
    /// [`Handle::is_draining`] says true and every response says
    /// `Connection: close`. For load-balanced rollouts: a Kubernetes pod
    /// still receives new connections for a moment after its SIGTERM, and a
    /// readiness probe that answers 503 takes it out of the endpoints
    /// (Spring Boot and Istio call this a drain duration). A second signal
    /// during the delay exits at once. Default 0.
    pub shutdown_delay: Duration,
    /// After forcing connections, how long to wait for their threads.
    /// Default 1 s.
    pub force_grace: Duration,
    /// How long a new process may take to say it is ready. Default 60 s.
    pub upgrade_timeout: Duration,
    /// Write our pid here (atomically) before saying ready; remove it on
    /// exit if it still holds our pid.
    pub pid_file: Option<PathBuf>,
    /// Raise the soft `RLIMIT_NOFILE` to the hard limit at start, as Go's
    /// runtime does. Default true.
    pub raise_nofile_limit: bool,
    /// Install handlers for SIGUSR2 and SIGHUP (upgrade) and SIGTERM,
    /// SIGINT and SIGQUIT (graceful shutdown; a second one exits at once).
    /// Default false: an embedding program may own its signals.
    /// [`crate::serve`] turns it on.
    pub handle_signals: bool,
    /// Run the server's own threads (accept, idle poller, connection
    /// threads) under `SCHED_BATCH`. A thread woken while another of them
    /// runs then does not preempt it: the running thread usually takes the
    /// next ready connection off the queue itself, so a busy CPU switches
    /// threads a few times per hundred requests instead of once per request
    /// (measured: 0.27 context switches per request without, 0.03 with;
    /// throughput +20% at 64 keep-alive connections; see DESIGN.md). They
    /// still get their fair share of the CPU. Default true.
    pub sched_batch: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            backlog: listener::DEFAULT_BACKLOG,
            defer_accept: Some(Duration::from_secs(1)),
            max_connections: None,
            thread_stack_size: 256 * 1024,
            thread_idle_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            force_grace: Duration::from_secs(1),
            upgrade_timeout: Duration::from_secs(60),
            pid_file: None,
            raise_nofile_limit: true,
            sched_batch: true,
            handle_signals: false,
        }
    }
}

/// Why [`Server::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A shutdown was asked for and the drain finished.
    Shutdown,
    /// A new process took over and the drain finished.
    Upgraded,
    /// A second SIGTERM/SIGINT arrived during the drain: returned at once,
    /// without waiting for connections. The program should exit non-zero.
    Aborted,
}

/// What happened, returned by [`Server::serve`] and [`Handle::wait`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why serving stopped.
    pub reason: StopReason,
    /// This process's generation.
    pub generation: u64,
    /// The successful upgrade, if one ended this process.
    pub upgrade: Option<UpgradeStats>,
    /// The drain (absent when aborted).
    pub drain: Option<DrainStats>,
}

type UpgradeReply = Sender<Result<UpgradeStats, UpgradeError>>;
type Hook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A message to the control loop.
pub(crate) enum Control {
    Signal(i32),
    Upgrade(Option<UpgradeReply>),
    Shutdown,
    UpgradeDone(Result<(UpgradeStats, OwnedFd), UpgradeError>),
    ParentGone,
    Drained(DrainStats),
    /// The shutdown delay is over: start the drain.
    DelayOver,
}

#[derive(Default)]
struct Done {
    outcome: Mutex<Option<Outcome>>,
    cond: Condvar,
}

/// Controls a running server from any thread: ask for a shutdown or an
/// upgrade, and wait for the end. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Control>,
    done: Arc<Done>,
    tracker: Arc<Tracker>,
}

impl Handle {
    /// Starts a graceful shutdown (a drain) and returns at once.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Control::Shutdown);
    }

    /// Starts an upgrade and waits for its outcome: `Ok` once the new
    /// process is ready (this one then drains), `Err` if it failed (this one
    /// serves on).
    pub fn upgrade(&self) -> Result<UpgradeStats, UpgradeError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Control::Upgrade(Some(tx)))
            .map_err(|_| UpgradeError::ServerGone)?;
        rx.recv().unwrap_or(Err(UpgradeError::ServerGone))
    }

    /// Waits until [`Server::serve`] has returned, and gives its outcome.
    pub fn wait(&self) -> Outcome {
        let mut g = self.done.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(o) = g.as_ref() {
                return o.clone();
            }
            g = self.done.cond.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Like [`Handle::wait`], giving up at `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut g = self.done.outcome.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(o) = g.as_ref() {
                return Some(o.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .done
                .cond
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Shuts down and waits for the drain to finish.
    pub fn shutdown_and_wait(&self) -> Outcome {
        self.shutdown();
        self.wait()
    }

    /// Live connections right now.
    pub fn active_connections(&self) -> usize {
        self.tracker.active()
    }

    /// True from the moment this process starts going away: a shutdown
    /// (from the start of its [`Config::shutdown_delay`]) or the drain after
    /// a handover. A readiness endpoint should answer 503 then, and a long
    /// poll or event stream should end.
    pub fn is_draining(&self) -> bool {
        self.tracker.closing()
    }
}

/// A server over a set of listeners. See the crate docs for the life cycle.
pub struct Server {
    cfg: Config,
    listeners: Listeners,
    tracker: Arc<Tracker>,
    tx: Sender<Control>,
    rx: Receiver<Control>,
    done: Arc<Done>,
    hook: Option<Hook>,
    ready_fd: Option<OwnedFd>,
    generation: u64,
}

impl Server {
    /// Opens the listeners for `addrs` (adopting inherited ones, binding the
    /// rest) and prepares a server. Call [`crate::init`] at the start of
    /// `main` so the inherited environment is read before threads start.
    pub fn bind(cfg: Config, addrs: &[ListenAddr]) -> io::Result<Server> {
        let listeners = Listeners::open(addrs, cfg.backlog)?;
        Server::from_listeners(cfg, listeners)
    }

    /// A server over listeners opened by the caller.
    pub fn from_listeners(cfg: Config, listeners: Listeners) -> io::Result<Server> {
        crate::upgrade::record_start();
        listener::init();
        notify::init();
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listeners to serve on",
            ));
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let (ready_fd, generation) = {
            let mut inh = listener::inherited()
                .lock()
                .map_err(|_| io::Error::other("inherited state poisoned"))?;
            (inh.ready_fd.take(), inh.generation)
        };
        Ok(Server {
            cfg,
            listeners,
            tracker: Tracker::new()?,
            tx,
            rx,
            done: Arc::new(Done::default()),
            hook: None,
            ready_fd,
            generation,
        })
    }

    /// Runs `hook` before each upgrade; an `Err` aborts the upgrade (the
    /// server serves on) and is logged.
    pub fn pre_upgrade(&mut self, hook: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.hook = Some(Arc::new(hook));
    }

    /// A handle to control the server once it serves.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.tx.clone(),
            done: self.done.clone(),
            tracker: self.tracker.clone(),
        }
    }

    /// The addresses served (with real ports).
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.listeners.addrs()
    }

    /// This process's generation: 0 for the first, +1 per upgrade.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Serves HTTP/1.1 with `handler` until shut down or replaced.
    ///
    /// A connection has a thread while it has a request to serve; between
    /// requests it is parked with the idle poller (`src/park.rs`), so idle
    /// keep-alive connections hold no threads.
    pub fn serve_http<H: crate::http::Handler>(
        self,
        handler: H,
        http: crate::http::Config,
    ) -> io::Result<Outcome> {
        if let Some(wait) = self.cfg.defer_accept {
            for l in self.listeners.iter() {
                if let Err(e) = l.set_defer_accept(wait) {
                    log::warn!(
                        "[{}] cannot set TCP_DEFER_ACCEPT on {}: {e}",
                        sys::getpid(),
                        l.local_addr()
                    );
                }
            }
        }
        let lot = ParkLot::new(self.tracker.clone(), http.clone())?;
        let work: crate::pool::Work<HttpConn> = {
            let lot = lot.clone();
            Arc::new(move |mut job: HttpConn| loop {
                let step = crate::http::conn::serve_ready(
                    &mut job.conn,
                    &handler,
                    &http,
                    &mut job.session,
                );
                if let crate::http::conn::Step::Park = step {
                    // Handed back if its next request came in meanwhile.
                    if let Some(again) = lot.park(job) {
                        job = again;
                        continue;
                    }
                }
                break;
            })
        };
        let pool = Arc::new(self.pool(work));
        lot.start(pool.clone(), self.cfg.sched_batch)?;
        let dispatch = {
            let pool = pool.clone();
            Arc::new(move |conn: Conn| pool.dispatch(HttpConn::new(conn)))
        };
        let result = self.serve_with(dispatch);
        lot.stop();
        drop(pool);
        result
    }

    /// Serves connections with `work` (run on a connection thread per
    /// connection, which also waits while the connection is idle) until a
    /// shutdown or an upgrade finishes draining.
    pub fn serve<F>(self, work: F) -> io::Result<Outcome>
    where
        F: Fn(Conn) + Send + Sync + 'static,
    {
        let pool = Arc::new(self.pool(Arc::new(work)));
        let dispatch = {
            let pool = pool.clone();
            Arc::new(move |conn: Conn| pool.dispatch(conn))
        };
        let result = self.serve_with(dispatch);
        drop(pool);
        result
    }

    fn pool<J: Send + 'static>(&self, work: crate::pool::Work<J>) -> Pool<J> {
        Pool::new(
            work,
            self.cfg.thread_stack_size,
            self.cfg.thread_idle_timeout,
            self.cfg.max_connections,
            self.cfg.sched_batch,
        )
    }

    fn serve_with(self, dispatch: Dispatch) -> io::Result<Outcome> {
        let done = self.done.clone();
        let result = self.run(dispatch);
        if let Ok(o) = &result {
            *done.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(o.clone());
            done.cond.notify_all();
        }
        result
    }

    fn run(mut self, dispatch: Dispatch) -> io::Result<Outcome> {
        let pid = sys::getpid();
        if self.cfg.raise_nofile_limit {
            match sys::raise_nofile_limit() {
                Ok((old, new)) if old != new => {
                    log::debug!("[{pid}] raised RLIMIT_NOFILE from {old} to {new}")
                }
                Ok(_) => {}
                Err(e) => log::warn!("[{pid}] cannot raise RLIMIT_NOFILE: {e}"),
            }
        }
        // Signal handlers before anything makes this process visible (pid
        // file, accepting): until then SIGUSR2's default action would kill it.
        let signals = if self.cfg.handle_signals {
            Some(install_signals(self.tx.clone())?)
        } else {
            None
        };
        // The pid file before accepting: a child must have written it
        // before it is ready.
        if let Some(path) = &self.cfg.pid_file {
            if let Err(e) = pidfile::write(path) {
                if let Some(s) = signals {
                    s.close();
                }
                return Err(e);
            }
        }
        let stop_fd = Arc::new(sys::eventfd()?);
        let waker = Waker::new()?;
        let fds: Vec<RawFd> = self.listeners.iter().map(|l| l.as_raw_fd()).collect();
        let accept_thread = {
            let (waker, tracker) = (waker.clone(), self.tracker.clone());
            let max = self.cfg.max_connections;
            let batch = self.cfg.sched_batch;
            let fds = fds.clone();
            std::thread::Builder::new()
                .name("grace-accept".into())
                .spawn(move || {
                    if batch {
                        sys::sched_batch();
                    }
                    accept_loop(&fds, &waker, &tracker, &*dispatch, max)
                })?
        };
        let stop = |signals: Option<signal_hook::iterator::Handle>| {
            if let Some(s) = signals {
                s.close();
            }
        };
        let addrs: Vec<String> = self
            .listeners
            .addrs()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let mut parent_link = None;
        if let Some(fd) = self.ready_fd.take() {
            // Announce the new main pid before the ready byte: the parent
            // exits only after reading it, so a supervisor (systemd, the
            // holder) never sees the main process gone with no successor.
            notify::send(&format!("MAINPID={pid}\nREADY=1"));
            match child::announce_ready(&fd) {
                Ok(()) => {
                    let fd = Arc::new(fd);
                    parent_link = Some((fd.clone(), sys::getppid()));
                    log::debug!("[{pid}] told the parent ({}) we are ready", sys::getppid());
                    let tx = self.tx.clone();
                    let stop = stop_fd.clone();
                    std::thread::Builder::new()
                        .name("grace-parent-watch".into())
                        .spawn(move || {
                            if child::wait_parent_exit(&fd, stop.as_raw_fd()) {
                                let _ = tx.send(Control::ParentGone);
                            }
                        })?;
                }
                Err(e) => {
                    log::warn!("[{pid}] parent did not take our ready byte ({e}); serving anyway")
                }
            }
        } else if notify::holder_pid().is_some() {
            notify::send(&format!("MAINPID={pid}\nREADY=1"));
        } else {
            notify::send("READY=1");
        }
        log::info!(
            "[{pid}] serving on {} (generation {})",
            addrs.join(", "),
            self.generation
        );

        let listener_fds: Vec<(RawFd, String)> = self
            .listeners
            .iter()
            .map(|l| (l.as_raw_fd(), l.name().to_string()))
            .collect();
        let mut ctl = ControlLoop {
            pid,
            cfg: &self.cfg,
            tracker: &self.tracker,
            tx: &self.tx,
            hook: self.hook.clone(),
            generation: self.generation,
            stop_fd,
            waker,
            accept_thread: Some(accept_thread),
            listeners: Some(std::mem::take(&mut self.listeners)),
            listener_fds,
            upgrading: None,
            upgrade_waiters: Vec::new(),
            parent_alive: parent_link.is_some(),
            parent_link,
            draining: false,
            delaying: false,
            pending_drain: None,
            handover: None,
            parent_end: None,
        };
        let outcome = ctl.run(&self.rx);
        drop(ctl);
        stop(signals);
        if outcome.reason != StopReason::Upgraded {
            if let Some(path) = &self.cfg.pid_file {
                pidfile::remove_if_ours(path);
            }
        }
        Ok(outcome)
    }
}

fn install_signals(tx: Sender<Control>) -> io::Result<signal_hook::iterator::Handle> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGUSR2, SIGHUP, SIGTERM, SIGINT, SIGQUIT])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("grace-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Control::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(handle)
}

struct ControlLoop<'a> {
    pid: u32,
    cfg: &'a Config,
    tracker: &'a Arc<Tracker>,
    tx: &'a Sender<Control>,
    hook: Option<Hook>,
    generation: u64,
    stop_fd: Arc<OwnedFd>,
    waker: Arc<Waker>,
    accept_thread: Option<JoinHandle<()>>,
    listeners: Option<Listeners>,
    listener_fds: Vec<(RawFd, String)>,
    upgrading: Option<Instant>,
    upgrade_waiters: Vec<UpgradeReply>,
    parent_alive: bool,
    /// Our end of the readiness socket and the parent's pid, to check right
    /// away whether the parent is gone when an upgrade is asked for (the
    /// watcher thread's `ParentGone` may still be on its way).
    parent_link: Option<(Arc<OwnedFd>, u32)>,
    draining: bool,
    /// In the shutdown delay: serving on, the drain to follow.
    delaying: bool,
    /// A drain asked for while an upgrade was still running: starts when the
    /// (aborted) upgrade returns. The flag is "final" (not a handover).
    pending_drain: Option<bool>,
    handover: Option<UpgradeStats>,
    /// Our end of the new child's readiness socket, held until we return.
    parent_end: Option<OwnedFd>,
}

impl ControlLoop<'_> {
    fn run(&mut self, rx: &Receiver<Control>) -> Outcome {
        let pid = self.pid;
        loop {
            let Ok(msg) = rx.recv() else {
                // Cannot happen: we hold a sender.
                break;
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
                            generation: self.generation,
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
                Control::DelayOver => {
                    log::info!(
                        "[{pid}] shutdown delay of {} over",
                        crate::fmt::Dur(self.cfg.shutdown_delay)
                    );
                    self.delaying = false;
                    self.begin_drain(true);
                }
                Control::Upgrade(reply) => {
                    log::info!("[{pid}] upgrade requested");
                    self.request_upgrade(reply);
                }
                Control::UpgradeDone(res) => self.upgrade_done(res),
                Control::ParentGone => {
                    if std::mem::replace(&mut self.parent_alive, false) {
                        log::info!("[{pid}] the previous generation has exited; upgrades allowed");
                    }
                }
                Control::Drained(stats) => {
                    let reason = if self.handover.is_some() {
                        StopReason::Upgraded
                    } else {
                        StopReason::Shutdown
                    };
                    log::info!(
                        "[{pid}] drained in {}: {} connection(s) open at start ({} busy), \
                         {} finished, {} forced",
                        crate::fmt::Dur(stats.duration),
                        stats.open_at_start,
                        stats.busy_at_start,
                        stats.finished,
                        stats.forced
                    );
                    return Outcome {
                        reason,
                        generation: self.generation,
                        upgrade: self.handover.clone(),
                        drain: Some(stats),
                    };
                }
            }
        }
        Outcome {
            reason: StopReason::Aborted,
            generation: self.generation,
            upgrade: None,
            drain: None,
        }
    }

    /// True if the parent has closed its end of the readiness socket (it
    /// never writes to it, so readable means end-of-file) or we have been
    /// reparented.
    fn parent_gone_now(&mut self) -> bool {
        let Some((fd, ppid)) = &self.parent_link else {
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
        let refuse = if self.draining || self.delaying {
            Some(UpgradeError::ShuttingDown)
        } else if self.upgrading.is_some() {
            Some(UpgradeError::InProgress)
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
        let fds = self.listener_fds.clone();
        let hook = self.hook.clone();
        let tx = self.tx.clone();
        let generation = self.generation;
        let timeout = self.cfg.upgrade_timeout;
        let abort_fd = self.stop_fd.as_raw_fd();
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
        self.upgrading = None;
        let waiters = std::mem::take(&mut self.upgrade_waiters);
        match res {
            Ok((stats, end)) if !self.draining && self.pending_drain.is_none() => {
                log::info!(
                    "[{pid}] child {} (generation {}) is ready after {}; draining",
                    stats.child_pid,
                    stats.child_generation,
                    crate::fmt::Dur(stats.duration)
                );
                self.parent_end = Some(end);
                self.handover = Some(stats.clone());
                for w in waiters {
                    let _ = w.send(Ok(stats.clone()));
                }
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
                // A child killed after writing the pid file left its pid there.
                if let Some(path) = &self.cfg.pid_file {
                    if pidfile::read(path).ok() != Some(pidfile::own_pid()) {
                        if let Err(e) = pidfile::write(path) {
                            log::warn!("[{pid}] restoring the pid file: {e}");
                        }
                    }
                }
                if !self.draining && !self.delaying {
                    // The child may have announced itself (it does so
                    // before its ready byte): this process serves again.
                    notify::send(&format!("MAINPID={pid}\nREADY=1"));
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

    /// A final shutdown: the drain, after the shutdown delay if there is one.
    fn begin_shutdown(&mut self) {
        let delay = self.cfg.shutdown_delay;
        if delay.is_zero() {
            self.begin_drain(true);
            return;
        }
        // Keep accepting and serving, but say so: responses close their
        // connections, `Handle::is_draining` turns true (a readiness probe
        // answers 503), and an upgrade in flight is aborted.
        self.delaying = true;
        self.tracker.start_closing();
        let _ = sys::eventfd_signal(self.stop_fd.as_raw_fd());
        notify::send("STOPPING=1");
        log::info!(
            "[{}] still accepting for the shutdown delay of {}; then draining",
            self.pid,
            crate::fmt::Dur(delay)
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
    /// reports back with `Control::Drained`.
    fn begin_drain(&mut self, final_: bool) {
        if self.draining {
            return;
        }
        if self.upgrading.is_some() {
            // Abort the upgrade first; the listeners must stay open until
            // the upgrade thread no longer uses their fds.
            let _ = sys::eventfd_signal(self.stop_fd.as_raw_fd());
            self.pending_drain = Some(final_);
            return;
        }
        self.draining = true;
        let _ = sys::eventfd_signal(self.stop_fd.as_raw_fd());
        let pid = self.pid;
        let tracker = self.tracker.clone();
        let waker = self.waker.clone();
        let accept = self.accept_thread.take();
        let listeners = self.listeners.take();
        let tx = self.tx.clone();
        let stop_timeout = self.cfg.stop_timeout;
        let force_grace = self.cfg.force_grace;
        // STOPPING=1 went out when the shutdown delay began.
        let delayed = !self.cfg.shutdown_delay.is_zero() && final_;
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
            log::debug!("[{pid}] listeners closed");
            if final_ && !delayed {
                notify::send("STOPPING=1");
            }
            let counts = tracker.start_drain();
            log::info!(
                "[{pid}] draining {} connection(s) ({} busy); stop timeout {}",
                counts.0,
                counts.1,
                crate::fmt::Dur(stop_timeout)
            );
            let stats = tracker.finish_drain(started, counts, stop_timeout, force_grace);
            let _ = tx.send(Control::Drained(stats));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("grace-drain".into())
            .spawn(drain)
        {
            log::error!("[{pid}] cannot start the drain thread: {e}");
        }
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
        UpgradeError::ServerGone => UpgradeError::ServerGone,
    }
}
