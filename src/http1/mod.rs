//! The HTTP/1.1 server layer: one connection at a time, on the calling thread.
//!
//! [`serve_connection`] runs the whole life of one connection: it waits for a
//! request head, parses and validates it ([`parse_head`]), hands the request to
//! a [`Handler`] with a streaming [`RequestBody`], writes the handler's
//! response, and loops for the next request (persistent connections and
//! pipelining) until one side closes.
//!
//! [`httparse`] parses the head; everything it leaves to the server is done
//! here: `Host` rules, strict `Content-Length` syntax, `Transfer-Encoding`
//! rules, request-target forms, limits (431, 414, 413), unknown codings (501),
//! bad versions (505), the chunked decoder ([`ChunkedDecoder`]), timeouts for
//! the head (slowloris), idle keep-alive, body reads and writes, and a polite
//! (lingering) close after every error response.
//!
//! The server itself serves a connection only while it has requests (the
//! crate-private `serve_ready`): at a request boundary with nothing buffered
//! the transport answers [`Idle::Park`] and the connection waits in the idle
//! poller, holding no thread, until its next request arrives.
//!
//! The layer never touches a socket: it talks to a [`Transport`]. Tests and
//! fuzz targets use [`MemTransport`].

use std::time::Duration;

mod body;
mod chunked;
pub(crate) mod conn;
mod head;
mod mem;
mod response;
mod serve;
pub mod transport;
mod upgrade;

pub use body::{BodyError, RequestBody};
pub use chunked::ChunkedDecoder;
pub use conn::{serve_connection, serve_ready, Session};
pub use head::{parse_head, Framing, Head, HttpError};
pub use mem::MemTransport;
pub use response::ResponseBody;
pub use transport::{Idle, Transport};
pub use upgrade::Upgraded;

/// Limits and timeouts. [`HttpConfig::default`] gives the production defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Largest request head (request line and header fields), in bytes; also
    /// bounds the trailer section of a chunked body. Over it: 431.
    pub max_head_bytes: usize,
    /// Most header fields in one request. Over it: 431.
    pub max_headers: usize,
    /// Longest request-target, in bytes. Over it: 414.
    pub max_target_len: usize,
    /// Largest request body. A `Content-Length` over it is answered with 413
    /// before the handler runs; a chunked body fails with 413 while it is read.
    pub max_body_bytes: u64,
    /// Longest chunk-size line (size and extensions, without CRLF). Over it: 400.
    pub max_chunk_ext_len: usize,
    /// A request body the handler left unread is read and discarded up to
    /// this many bytes so the connection can be kept; a larger one closes it.
    pub discard_body_limit: u64,
    /// The whole head must arrive within this from its first byte; a new
    /// connection must send its first head within this from accept. Else 408.
    pub head_timeout: Duration,
    /// How long an idle keep-alive connection waits for the next request.
    pub idle_timeout: Duration,
    /// How long each read of a request body may wait. Else 408.
    pub body_timeout: Duration,
    /// How long each response write may take.
    pub write_timeout: Duration,
    /// Once the server drains, how long an idle keep-alive connection still
    /// waits for a next request (answered with `Connection: close`).
    pub drain_grace: Duration,
    /// How long a polite close waits for the peer's end of stream.
    pub linger_timeout: Duration,
    /// How threads serve connections (see [`Threads`]). Default: a thread
    /// per request, idle connections parked.
    pub threads: Threads,
}

/// How [`crate::Server::serve_http`] gives connections threads. Both keep
/// every guarantee: the drain, the keep-alive race handling, the zero-loss
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Threads {
    /// A thread while a connection has a request to serve; between
    /// requests it waits in the idle poller (one epoll set for all), so an
    /// idle keep-alive connection holds no thread. The default.
    #[default]
    PerRequest,
    /// A thread owns its connection from accept to close and waits for the
    /// next request in `poll` on the socket and the drain fd: the classic
    /// thread-per-connection shape, one thread (and its stack) per open
    /// connection, no hand-off between threads.
    PerConnection,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_target_len: 8 * 1024,
            max_body_bytes: 16 * 1024 * 1024,
            max_chunk_ext_len: 1024,
            discard_body_limit: 256 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            drain_grace: Duration::from_secs(1),
            linger_timeout: Duration::from_secs(2),
            threads: Threads::PerRequest,
        }
    }
}

/// Handles requests. Implemented for plain functions and closures of the
/// right shape; see [`handler_fn`] if a closure's argument type is not
/// inferred as generic over the body's lifetime.
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. The body borrows the connection: read it (it
    /// implements [`std::io::Read`]) before returning.
    fn handle(&self, req: http::Request<RequestBody<'_>>) -> http::Response<ResponseBody>;
}

impl<F> Handler for F
where
    F: Fn(http::Request<RequestBody<'_>>) -> http::Response<ResponseBody> + Send + Sync + 'static,
{
    fn handle(&self, req: http::Request<RequestBody<'_>>) -> http::Response<ResponseBody> {
        self(req)
    }
}

/// Returns `f` unchanged, but makes the compiler infer a closure's argument as
/// `Request<RequestBody<'a>>` for every `'a`, as [`Handler`] needs.
pub fn handler_fn<F>(f: F) -> F
where
    F: for<'a> Fn(http::Request<RequestBody<'a>>) -> http::Response<ResponseBody>
        + Send
        + Sync
        + 'static,
{
    f
}

/// What happened on a connection, for logs and tests.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct ConnStats {
    /// Requests whose head was valid and that were handed to the handler.
    pub requests: u64,
    /// Status of the last error response the server itself sent (a rejected
    /// head, a body error, a timeout, a handler panic), if any.
    pub last_error: Option<http::StatusCode>,
}

#[cfg(test)]
mod tests;
