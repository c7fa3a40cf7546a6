//! [`ServerConfig`]: the server's settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::listener;

/// Server settings. `ServerConfig::default()` holds production defaults; set the
/// fields you need on it (`ServerConfig { stop_timeout, ..ServerConfig::default() }`
/// does not compile from outside the crate: the struct is
/// `#[non_exhaustive]`, so that new settings are not breaking changes).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// `listen(2)` backlog for sockets bound here. Default 1024.
    pub backlog: i32,
    /// [`crate::Server::serve_parked`] (and so `serve_http`), for a protocol
    /// whose client speaks first, sets `TCP_DEFER_ACCEPT` on its TCP listeners to
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
    /// On a shutdown (SIGTERM, SIGINT, SIGQUIT or [`crate::Handle::shutdown`]), keep
    /// accepting and serving this long before the drain starts, while
    /// [`crate::Handle::is_draining`] says true and every response says
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
    /// After the new process is ready, this process stops accepting and
    /// drains as usual but keeps its listener fds for this long. If the new
    /// process exits meanwhile, this one accepts on the same sockets again
    /// (connections queued in the shared backlog are served, none refused),
    /// restores the pid file and `MAINPID`, and the upgrade's verdict is
    /// "rolled back". Only when it has passed is the verdict "ok", and this
    /// process exits. A new upgrade is refused until then. Default 2 s: the
    /// commonest bad deploy dies in its first second (a config it cannot
    /// read, a failing background task, a crash on its first requests), and
    /// the old process lingers, idle, only that long. Zero turns it off.
    pub probation: Duration,
    /// A control socket at this path (a Unix stream socket, mode 0600):
    /// `status`, `upgrade` (answered with the verdict) and `shutdown`, one
    /// command line in and one JSON line out; see [`crate::control`]. It is
    /// handed down to each new generation like a listener.
    pub control: Option<PathBuf>,
    /// Write our pid here (atomically) before saying ready; remove it on
    /// exit if it still holds our pid.
    pub pid_file: Option<PathBuf>,
    /// Raise the soft `RLIMIT_NOFILE` to the hard limit at start, as Go's
    /// runtime does. Default true.
    pub raise_nofile_limit: bool,
    /// Install handlers for SIGUSR2 and SIGHUP (upgrade) and SIGTERM,
    /// SIGINT and SIGQUIT (graceful shutdown; a second one exits at once).
    /// Default false: an embedding program may own its signals.
    /// [`crate::serve_http`] turns it on.
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
    /// Thread per request ([`crate::Server::serve_parked`]) only: a worker
    /// that runs out of queued work polls the idle connections itself and
    /// serves those that are ready, one after another, while the idle
    /// poller thread stands by. A busy server then goes from request to
    /// request on one thread, with no hand-off between the poller and a
    /// worker. The poller checks on it every 500 µs and takes over when it
    /// has been inside one request for a whole check (a handler that
    /// blocks); sessions then pause, from 50 ms doubling to 1 s. Measured
    /// in DESIGN.md ("Harvesting"). Default true.
    pub harvest: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            backlog: listener::DEFAULT_BACKLOG,
            defer_accept: Some(Duration::from_secs(1)),
            max_connections: None,
            thread_stack_size: 256 * 1024,
            thread_idle_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            force_grace: Duration::from_secs(1),
            upgrade_timeout: Duration::from_secs(60),
            probation: Duration::from_secs(2),
            control: None,
            pid_file: None,
            raise_nofile_limit: true,
            sched_batch: true,
            harvest: true,
            handle_signals: false,
        }
    }
}
