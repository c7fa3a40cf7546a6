//! The server: listeners + accept thread + worker threads + idle poller +
//! drain + upgrade, driven by one control loop.
//!
//! - `config`: [`ServerConfig`].
//! - `handle`: [`Handle`] (control from any thread), [`Outcome`].
//! - `signals`: signal-hook forwarding into the control loop.
//! - `message`: the control loop's messages, and what control-socket
//!   commands turn into.
//! - `control_loop`: the one thread that decides: upgrades (one at a
//!   time), probation and rollback, shutdown delay, drains, the control
//!   socket's commands.
//!
//! Everything that changes the server's course arrives as a message on one
//! crossbeam channel: signals, calls through a [`Handle`], control-socket
//! commands, the outcome of an upgrade, the new generation's end during its
//! probation, the old generation's exit, and the end of a drain.

mod config;
mod control_loop;
mod handle;
mod message;
mod signals;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

pub use config::ServerConfig;
pub use handle::{Handle, Outcome, StopReason};

use crate::accept::{accept_loop, Waker};
use crate::conn::Conn;
use crate::drain::Tracker;
use crate::listener::{self, ListenAddr, Listener, Listeners};
use crate::park::{ParkLot, Parked, ParkedConn};
use crate::pool::Pool;
use crate::protocol::{Protocol, Served};
use crate::upgrade::child;
use crate::{control, notify, pidfile, sys};
use control_loop::ControlLoop;
use handle::Done;
use message::{Control, Hook};
use signals::install_signals;

/// Hands an accepted connection to the pool.
pub(crate) type Dispatch = Arc<dyn Fn(Conn) + Send + Sync>;
/// Makes the idle poller serve on after a rollback ended a drain early.
pub(crate) type Resume = Arc<dyn Fn() + Send + Sync>;

/// A server over a set of listeners. See the crate docs for the life cycle.
pub struct Server {
    cfg: ServerConfig,
    listeners: Listeners,
    control: Option<Listener>,
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
    pub fn bind(cfg: ServerConfig, addrs: &[ListenAddr]) -> io::Result<Server> {
        let listeners = Listeners::open(addrs, cfg.backlog)?;
        Server::from_listeners(cfg, listeners)
    }

    /// The control socket's path, if there is one.
    pub fn control_path(&self) -> Option<&std::path::Path> {
        self.cfg.control.as_deref()
    }

    /// A server over listeners opened by the caller.
    pub fn from_listeners(cfg: ServerConfig, listeners: Listeners) -> io::Result<Server> {
        crate::upgrade::record_start();
        listener::init();
        notify::init();
        if listeners.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no listeners to serve on",
            ));
        }
        let control = match &cfg.control {
            Some(path) => Some(crate::control::open(path, cfg.backlog)?),
            None => None,
        };
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
            control,
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

    /// Serves `proto` until shut down or replaced, with a thread per
    /// request: a connection has a thread while it has a request to serve,
    /// and between requests it is parked with the idle poller
    /// (`src/park/`), so idle keep-alive connections hold no threads.
    pub fn serve_parked<P: Protocol>(self, proto: P) -> io::Result<Outcome> {
        if proto.client_speaks_first() {
            self.set_defer_accept();
        }
        let proto = Arc::new(proto);
        let lot = ParkLot::new(self.tracker.clone(), proto.clone())?;
        let resume: Resume = {
            let lot = lot.clone();
            Arc::new(move || lot.resume())
        };
        let work: crate::pool::Work<Parked<P>> = {
            let (lot, proto) = (lot.clone(), proto.clone());
            Arc::new(move |mut job: Parked<P>| loop {
                let ParkedConn { conn, session, .. } = &mut *job;
                if proto.serve(conn, session) == Served::Park {
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
        if self.cfg.harvest {
            lot.enable_harvest();
            let (a, b, c) = (lot.clone(), lot.clone(), lot.clone());
            pool.set_refill(crate::pool::Refill {
                wanted: Box::new(move || a.harvest_wanted()),
                take: Box::new(move |extra| b.harvest(extra)),
                mine: Box::new(move || c.harvesting()),
            });
        }
        lot.start(pool.clone(), self.cfg.sched_batch)?;
        let dispatch = {
            let pool = pool.clone();
            Arc::new(move |conn: Conn| pool.dispatch(ParkedConn::new(conn, &*proto)))
        };
        let result = self.serve_with(dispatch, Some(resume));
        lot.stop();
        drop(pool);
        result
    }

    /// Serves connections with `work`, a thread per connection: `work` runs
    /// for the connection's whole life, and waits in its thread while the
    /// connection is idle ([`Conn::wait_idle`] polls the socket and the
    /// drain fd). Returns when a shutdown or an upgrade finishes draining.
    /// [`crate::protocol::serve_whole`] runs a [`Protocol`] this way.
    pub fn serve_connections<F>(self, work: F) -> io::Result<Outcome>
    where
        F: Fn(Conn) + Send + Sync + 'static,
    {
        let pool = Arc::new(self.pool(Arc::new(work)));
        let dispatch = {
            let pool = pool.clone();
            Arc::new(move |conn: Conn| pool.dispatch(conn))
        };
        let result = self.serve_with(dispatch, None);
        drop(pool);
        result
    }

    /// Sets `TCP_DEFER_ACCEPT` on the TCP listeners, as
    /// [`ServerConfig::defer_accept`] says: for protocols whose client
    /// speaks first.
    pub(crate) fn set_defer_accept(&self) {
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

    fn serve_with(self, dispatch: Dispatch, resume: Option<Resume>) -> io::Result<Outcome> {
        let done = self.done.clone();
        let result = self.run(dispatch, resume);
        if let Ok(o) = &result {
            *done.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(o.clone());
            done.cond.notify_all();
        }
        result
    }

    fn run(mut self, dispatch: Dispatch, resume: Option<Resume>) -> io::Result<Outcome> {
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
        let fds: Vec<(RawFd, Arc<str>)> = self
            .listeners
            .iter()
            .map(|l| (l.as_raw_fd(), Arc::from(l.name())))
            .collect();
        let accept_thread = spawn_accept(&self.cfg, &fds, &waker, &self.tracker, &dispatch)?;
        let gate = match &self.control {
            Some(l) => {
                let gate = control::Gate::new()?;
                control::start(l.as_raw_fd(), gate.clone(), message::exec(self.tx.clone()))?;
                Some(gate)
            }
            None => None,
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
        notify::send(&format!("STATUS=serving generation {}", self.generation));
        self.done.set_ready();

        // Handed down at an upgrade: the listeners, then the control socket.
        let listener_fds: Vec<(RawFd, String)> = self
            .listeners
            .iter()
            .chain(self.control.iter())
            .map(|l| (l.as_raw_fd(), l.name().to_string()))
            .collect();
        let mut ctl = ControlLoop::new(
            &self.cfg,
            &self.tracker,
            &self.tx,
            control_loop::Parts {
                hook: self.hook.clone(),
                generation: self.generation,
                stop_fd,
                waker,
                accept_thread: Some(accept_thread),
                accept_fds: fds,
                dispatch,
                resume,
                listeners: Some(std::mem::take(&mut self.listeners)),
                control: self.control.take(),
                gate,
                listener_fds,
                parent_link,
            },
        );
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

/// Starts the accept thread over `fds`.
pub(crate) fn spawn_accept(
    cfg: &ServerConfig,
    fds: &[(RawFd, Arc<str>)],
    waker: &Arc<Waker>,
    tracker: &Arc<Tracker>,
    dispatch: &Dispatch,
) -> io::Result<JoinHandle<()>> {
    let (waker, tracker, dispatch) = (waker.clone(), tracker.clone(), dispatch.clone());
    let max = cfg.max_connections;
    let batch = cfg.sched_batch;
    let fds = fds.to_vec();
    std::thread::Builder::new()
        .name("grace-accept".into())
        .spawn(move || {
            if batch {
                sys::sched_batch();
            }
            accept_loop(&fds, &waker, &tracker, &*dispatch, max)
        })
}
