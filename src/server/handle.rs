//! [`Handle`]: control a running server from any thread; [`Outcome`]: how
//! serving ended.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::message::Control;
use crate::drain::{DrainStats, Tracker};
use crate::upgrade::{UpgradeError, UpgradeStats};

/// Why [`Server::serve_connections`](super::Server::serve_connections) returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// A shutdown was asked for and the drain finished.
    Shutdown,
    /// A new process took over and the drain finished.
    Upgraded,
    /// A second SIGTERM/SIGINT arrived during the drain: returned at once,
    /// without waiting for connections. The program should exit non-zero.
    Aborted,
}

/// What happened, returned by [`Server::serve_connections`](super::Server::serve_connections) and
/// [`Handle::wait`].
#[derive(Debug, Clone)]
#[non_exhaustive]
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

/// Where [`Server::serve_connections`](super::Server::serve_connections) leaves its outcome for
/// [`Handle::wait`].
#[derive(Default)]
pub(crate) struct Done {
    pub(crate) outcome: Mutex<Option<Outcome>>,
    pub(crate) cond: Condvar,
    /// Set once the server serves (accepting, ready byte sent).
    pub(crate) ready: Mutex<bool>,
    pub(crate) ready_cond: Condvar,
}

impl Done {
    pub(crate) fn set_ready(&self) {
        *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.ready_cond.notify_all();
    }
}

/// Controls a running server from any thread: ask for a shutdown or an
/// upgrade, and wait for the end. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub(crate) tx: Sender<Control>,
    pub(crate) done: Arc<Done>,
    pub(crate) tracker: Arc<Tracker>,
}

impl Handle {
    /// Starts a graceful shutdown (a drain) and returns at once.
    pub fn shutdown(&self) {
        let _ = self.tx.send(Control::Shutdown);
    }

    /// Starts an upgrade and waits for its verdict: `Ok` once the new
    /// process is ready and has passed its [`ServerConfig::probation`](super::ServerConfig::probation)
    /// (this one then exits), `Err` if it failed or was rolled back (this
    /// one serves on).
    pub fn upgrade(&self) -> Result<UpgradeStats, UpgradeError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tx
            .send(Control::Upgrade(Some(tx)))
            .map_err(|_| UpgradeError::ServerGone)?;
        rx.recv().unwrap_or(Err(UpgradeError::ServerGone))
    }

    /// Waits until [`Server::serve_connections`](super::Server::serve_connections) has returned, and
    /// gives its outcome.
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
        wait_until(&self.done.outcome, &self.done.cond, timeout, |o| o.clone())
    }

    /// Waits up to `timeout` until the server serves: accepting, and (for a
    /// new generation) its parent told. True if it does.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        wait_until(&self.done.ready, &self.done.ready_cond, timeout, |r| {
            r.then_some(())
        })
        .is_some()
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
    /// (from the start of its [`ServerConfig::shutdown_delay`](super::ServerConfig::shutdown_delay)) or the drain after
    /// a handover. A readiness endpoint should answer 503 then, and a long
    /// poll or event stream should end.
    pub fn is_draining(&self) -> bool {
        self.tracker.closing()
    }

    /// A token that says when the server starts going away, for threads of
    /// the program (handlers find one in each request's extensions).
    pub fn drain_token(&self) -> crate::DrainToken {
        self.tracker.drain_token()
    }
}

/// Waits on `cond` until `f` finds what it wants under `m`, or `timeout`
/// passes (`None`).
fn wait_until<T, R>(
    m: &Mutex<T>,
    cond: &Condvar,
    timeout: Duration,
    f: impl Fn(&T) -> Option<R>,
) -> Option<R> {
    let deadline = Instant::now() + timeout;
    let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if let Some(r) = f(&g) {
            return Some(r);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        g = cond
            .wait_timeout(g, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}
