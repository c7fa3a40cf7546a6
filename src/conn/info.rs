//! Who is at both ends of a connection, and the drain token, for handlers.

use std::sync::Arc;

use super::{Conn, SockAddr};
use crate::drain::DrainToken;
use crate::sys;

/// A connection's two ends, as a handler finds them in a request's
/// extensions (`req.extensions().get::<ConnInfo>()`) or [`Conn::info`]
/// gives them.
///
/// ```no_run
/// use grace::http::{Request, Response};
/// use grace::http1::{RequestBody, ResponseBody};
/// use grace::{ConnInfo, SockAddr};
///
/// fn whoami(req: Request<RequestBody>) -> Response<ResponseBody> {
///     let body = match req.extensions().get::<ConnInfo>() {
///         Some(ConnInfo { peer: SockAddr::Inet(a), .. }) => format!("you are {a}\n"),
///         Some(info) => format!("you came in on {}\n", info.listener),
///         None => "no connection\n".to_string(),
///     };
///     Response::new(body.into())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnInfo {
    /// The client's address: its `getpeername` (for a Unix client usually
    /// unnamed: [`SockAddr::Other`]).
    pub peer: SockAddr,
    /// This end's address: the connection's `getsockname` (for a wildcard
    /// listener, the address the client connected to).
    pub local: SockAddr,
    /// The name of the listener that accepted it (`LISTEN_FDNAMES` style:
    /// `127.0.0.1_8080` for one grace bound, or the name systemd gave).
    pub listener: Arc<str>,
    /// The generation of the process that accepted it.
    pub generation: u64,
}

impl Conn {
    /// Who is at both ends, through which listener, in which generation.
    /// The local address is asked of the kernel once (`getsockname`).
    pub fn info(&self) -> &ConnInfo {
        self.info.get_or_init(|| ConnInfo {
            peer: self.peer.clone(),
            local: sys::getsockname(self.raw()).unwrap_or(SockAddr::Other),
            listener: self.listener.clone(),
            generation: crate::listener::generation(),
        })
    }

    /// A token that says when the server starts going away.
    pub fn drain_token(&self) -> Option<DrainToken> {
        self.reg.as_ref().map(|r| r.tracker().drain_token())
    }
}
