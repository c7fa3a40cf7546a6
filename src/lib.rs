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
pub mod drain;
pub mod http;
pub mod listener;
pub mod notify;
mod park;
pub mod pidfile;
mod pool;
pub mod server;
pub mod sys;
pub mod upgrade;

pub use conn::Conn;
pub use drain::{ConnState, DrainStats, Tracker};
pub use http::transport::{Idle, Transport};
pub use listener::{generation, init, ListenAddr, Listener, Listeners};
pub use server::{Config, Handle, Outcome, Server, StopReason};
pub use upgrade::{UpgradeError, UpgradeStats};

/// Serves HTTP/1.1 on `addrs` with `handler`, default settings and signal
/// handling (SIGUSR2 upgrades, SIGTERM/SIGINT drain). Returns when this
/// process has drained, after a shutdown or a successful upgrade.
pub fn serve<H: http::Handler>(addrs: &[ListenAddr], handler: H) -> std::io::Result<Outcome> {
    let cfg = Config {
        handle_signals: true,
        ..Config::default()
    };
    Server::bind(cfg, addrs)?.serve_http(handler, http::Config::default())
}
