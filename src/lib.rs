//! # grace
//!
//! Zero-downtime restarts for a synchronous HTTP/1.1 server (a plain thread
//! per request; idle keep-alive connections parked in one epoll set), the
//! way Go's facebookgo/grace and Cloudflare's tableflip do it: the running
//! process forks and `execve`s a fresh copy of its binary,
//! hands it the listening sockets as inherited fds (systemd's `LISTEN_FDS`
//! convention), waits for it to say ready, then drains and exits. No
//! request is refused, reset or lost; if the new process fails, the old one
//! serves on.
//!
//! Three layers, usable on their own:
//! 1. [`listener`]: bind TCP/Unix listeners with raw libc, or adopt inherited
//!    ones (from a grace parent or systemd socket activation).
//! 2. [`upgrade`]: hand the listeners to a new process and wait for ready.
//! 3. [`drain`]: count live connections; stop accepting, let in-flight work
//!    finish, close the rest after a timeout.
//!
//! [`Server`] ties them together with an accept thread, reused worker
//! threads, an idle poller and a control loop; [`http`] serves HTTP/1.1 on
//! top.
//!
//! ```no_run
//! use grace::http::{RequestBody, ResponseBody};
//!
//! fn main() -> std::io::Result<()> {
//!     grace::init(); // read inherited fds while single-threaded
//!     let addrs = ["127.0.0.1:8080".parse()?];
//!     let outcome = grace::serve(&addrs, |_req: http::Request<RequestBody>| {
//!         http::Response::new(ResponseBody::from("hello\n"))
//!     })?;
//!     std::process::exit(if outcome.reason == grace::StopReason::Aborted { 1 } else { 0 })
//! }
//! ```
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
pub use conn::{Conn, SockAddr};
pub use drain::{ConnState, DrainStats, Trackable, Tracked, Tracker};
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
