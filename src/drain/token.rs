//! The drain token: how a handler or a thread of the program learns that
//! the process is going away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Tracker;

/// Tells whoever holds it that the process is going away: a shutdown delay
/// or a drain (a shutdown, or the handover after an upgrade) has begun. A
/// long poll, an event stream or an upgraded connection should then finish
/// and close, rather than run into the drain's `stop_timeout` and be cut.
///
/// Every request of [`crate::Server::serve_http`] carries one in its
/// extensions; [`crate::Handle::drain_token`] gives one to any thread.
///
/// ```no_run
/// use std::time::Duration;
/// use grace::http::{Request, Response};
/// use grace::http1::{RequestBody, ResponseBody};
/// use grace::DrainToken;
///
/// /// A long poll: answers when there is news, or at once when the server
/// /// starts going away (rather than being cut at the stop timeout).
/// fn long_poll(req: Request<RequestBody>) -> Response<ResponseBody> {
///     let token = req.extensions().get::<DrainToken>().cloned();
///     let leaving = token.is_some_and(|t| t.wait(Duration::from_secs(25)));
///     Response::new(if leaving { "reconnect\n" } else { "no news\n" }.into())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct DrainToken {
    tracker: Arc<Tracker>,
}

impl DrainToken {
    /// True once the process is going away ([`Tracker::closing`]).
    pub fn is_draining(&self) -> bool {
        self.tracker.closing()
    }

    /// Waits up to `timeout` for the process to start going away; true if
    /// it has (at once if it already had), false at the timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        self.tracker.wait_closing(timeout)
    }
}

impl Tracker {
    /// A [`DrainToken`] of this tracker, for a handler or a thread of the
    /// program to learn that the process is going away.
    pub fn drain_token(self: &Arc<Self>) -> DrainToken {
        DrainToken {
            tracker: self.clone(),
        }
    }

    /// Waits until [`Tracker::closing`] or `timeout` passes; true if closing.
    pub(super) fn wait_closing(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut reg = self.lock();
        loop {
            if self.closing() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            reg = self
                .cond
                .wait_timeout(reg, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
