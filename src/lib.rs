//! # grace
//!
//! Zero-downtime restarts for a synchronous HTTP/1.1 server, the way Go's
//! facebookgo/grace and Cloudflare's tableflip do it: the running process
//! forks and `execve`s a fresh copy of its binary, hands it the listening
//! sockets as inherited fds (systemd's `LISTEN_FDS` convention), waits for
//! it to say ready, then drains and exits. No request is refused, reset or
//! lost; if the new process fails, the old one serves on.
//!
//! ## Serving HTTP
//!
//! A thread per request (blocking handlers are fine); idle keep-alive
//! connections wait in one epoll set instead of holding threads.
//!
//! ```no_run
//! use grace::http::{Request, Response};
//! use grace::http1::{RequestBody, ResponseBody};
//!
//! fn main() -> std::io::Result<()> {
//!     grace::init(); // first in main: reads inherited fds while single-threaded
//!     let addrs = ["127.0.0.1:8080".parse()?];
//!     // SIGUSR2 or SIGHUP upgrades, SIGTERM/SIGINT/SIGQUIT drain and return.
//!     let outcome = grace::serve_http(&addrs, |_req: Request<RequestBody>| {
//!         Response::new(ResponseBody::from("hello\n"))
//!     })?;
//!     std::process::exit(if outcome.reason == grace::StopReason::Aborted { 1 } else { 0 })
//! }
//! ```
//!
//! [`http`] is the `http` crate, re-exported: one dependency is enough.
//! [`Server`] with a [`ServerConfig`] and an [`http1::HttpConfig`] sets every
//! limit and timeout; a [`Handle`] shuts down or upgrades from any thread.
//!
//! ## A protocol of your own
//!
//! The runtime does not know HTTP: [`http1`] is one [`Protocol`]. A
//! protocol keeps a connection's state between requests in its `Session`,
//! and its idle connections are parked like HTTP's.
//!
//! ```no_run
//! use std::time::{Duration, Instant};
//! use grace::{Conn, Idle, Protocol, Served, Server, ServerConfig};
//!
//! /// Answers each byte with its upper case.
//! struct Shout;
//!
//! impl Protocol for Shout {
//!     type Session = ();
//!     fn open(&self, _conn: &Conn) {}
//!     fn serve(&self, conn: &mut Conn, _s: &mut ()) -> Served {
//!         let mut buf = [0u8; 512];
//!         loop {
//!             match conn.wait_idle(Instant::now() + Duration::from_secs(60)) {
//!                 Ok(Idle::Data) => {}
//!                 Ok(Idle::Park) => return Served::Park, // no thread while idle
//!                 _ => return Served::Close,
//!             }
//!             let n = match conn.read_deadline(&mut buf, Instant::now() + Duration::from_secs(5)) {
//!                 Ok(0) => return Served::Close,
//!                 Ok(n) => n,
//!                 Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Served::Park,
//!                 Err(_) => return Served::Close,
//!             };
//!             buf[..n].make_ascii_uppercase();
//!             let deadline = Instant::now() + Duration::from_secs(5);
//!             if conn.write_all_deadline(&[&buf[..n]], deadline).is_err() {
//!                 return Served::Close;
//!             }
//!         }
//!     }
//!     fn idle_deadline(&self, _s: &(), now: Instant) -> Instant {
//!         now + Duration::from_secs(60)
//!     }
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     grace::init();
//!     let mut cfg = ServerConfig::default();
//!     cfg.handle_signals = true;
//!     Server::bind(cfg, &["127.0.0.1:7000".parse()?])?.serve_parked(Shout)?;
//!     Ok(())
//! }
//! ```
//!
//! `examples/echo.rs` is a complete one (a line echo server);
//! [`Server::serve_connections`] runs a function per connection on a thread
//! of its own instead.
//!
//! ## The layers alone
//!
//! 1. [`listener`]: bind TCP/Unix listeners with raw libc, or adopt the ones
//!    a grace parent or systemd handed down ([`Listeners::open`] does both).
//! 2. [`upgrade`]: hand the listeners to a new process and wait for it to be
//!    ready ([`upgrade::start`]; the child calls [`upgrade::ready`]).
//! 3. [`drain`]: count live connections; stop, wait, force the rest
//!    ([`Tracker`]).
//!
//! ```no_run
//! use std::net::TcpListener;
//! use std::os::fd::AsRawFd;
//! use std::time::{Duration, Instant};
//! use grace::{ConnState, Listeners, Tracker};
//!
//! fn main() -> std::io::Result<()> {
//!     grace::init();
//!     // 1. Listeners: the parent's after an upgrade, fresh ones otherwise.
//!     let listeners = Listeners::open(&["127.0.0.1:9000".parse()?], 1024)?;
//!     let fd = listeners.iter().next().expect("one listener").as_raw_fd();
//!     // 2. Upgrade: tell a waiting parent we serve (false: we are the first).
//!     let _had_parent = grace::upgrade::ready()?;
//!     // 3. Drain: every accepted connection counted until it is dropped.
//!     let tracker = Tracker::new()?;
//!     # let _ = fd;
//!     # let server = TcpListener::bind("127.0.0.1:0")?; // stands for your accept loop
//!     let (stream, _peer) = server.accept()?;
//!     let conn = tracker.track(stream);
//!     conn.set_state(ConnState::Busy);
//!     // ... on SIGUSR2: start the new generation, then drain and exit.
//!     let handover = grace::upgrade::start(&listeners, Duration::from_secs(30))
//!         .map_err(std::io::Error::other)?;
//!     tracker.start_drain();
//!     if !tracker.wait_empty(Instant::now() + Duration::from_secs(30)) {
//!         tracker.force_close();
//!     }
//!     drop(handover);
//!     Ok(())
//! }
//! ```
//!
//! [`Server`] ties the layers together with an accept thread, reused worker
//! threads, the idle poller and a control loop (signals, the control socket,
//! probation and rollback); `DESIGN.md` explains each step.
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod accept;
pub mod conn;
pub mod control;
pub mod drain;
mod fmt;
pub mod holder;
pub mod http1;
pub use http;
pub mod listener;
pub mod notify;
mod park;
pub mod pidfile;
mod pool;
pub mod protocol;
pub mod server;
mod sys;
pub mod upgrade;

pub use conn::Idle;
pub use conn::{Conn, ConnInfo, SockAddr};
pub use drain::{ConnState, DrainStats, DrainToken, Trackable, Tracked, Tracker};
pub use holder::Supervise;
pub use listener::{generation, ListenAddr, Listener, Listeners};
pub use protocol::{Protocol, Served};
pub use server::{Handle, Outcome, Server, ServerConfig, StopReason};
pub use upgrade::{Exit, UpgradeError, UpgradeStats};

/// Prepares the process for grace, first thing in `main`, while it is still
/// single-threaded: reads and clears the handover environment (inherited
/// listeners, the readiness socket, the holder channel) and records how the
/// binary was started, for upgrades.
///
/// As PID 1 (of a container or PID namespace) it also starts the holder
/// (see [`holder`]): this process keeps its pid and only forwards signals and
/// reaps, while a forked child returns from `init` as generation 0. Use
/// [`init_with`] to ask for the holder elsewhere.
///
/// Everything that needs this state reads it on first use, so forgetting
/// `init` only matters if threads were started before (and for the holder).
pub fn init() {
    init_with(Supervise::Auto)
}

/// [`init`], choosing when to start the holder: [`Supervise::Always`] under an
/// init that exits with its child (tini, dumb-init) or a supervisor that
/// tracks one pid. This is an argument of `init` and not a [`ServerConfig`] field
/// because the holder must fork before any thread exists.
pub fn init_with(supervise: Supervise) {
    upgrade::record_start();
    listener::init();
    notify::init();
    holder::start(supervise);
}

/// Serves HTTP/1.1 on `addrs` with `handler`, default settings and signal
/// handling (SIGUSR2 upgrades, SIGTERM/SIGINT drain). Returns when this
/// process has drained, after a shutdown or a successful upgrade.
pub fn serve_http<H: http1::Handler>(addrs: &[ListenAddr], handler: H) -> std::io::Result<Outcome> {
    let cfg = ServerConfig {
        handle_signals: true,
        ..ServerConfig::default()
    };
    Server::bind(cfg, addrs)?.serve_http(handler, http1::HttpConfig::default())
}
