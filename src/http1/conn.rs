//! The per-connection loop: persistent connections and pipelining.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use http::{Method, Request, StatusCode, Version};

use crate::http1::body::{read_body, BodyState, ReadBuf};
use crate::http1::head::{parse_head, Head, HttpError};
use crate::http1::response::Inner;
use crate::http1::{ConnStats, Handler, HttpConfig, Idle, RequestBody, Transport};
use crate::protocol::Served;

mod write;

/// Initial size of a connection's read buffer.
const READ_BUF_INITIAL: usize = 4 * 1024;
/// Fixed bodies up to this size are copied after the head and sent in one
/// piece; larger ones go as a second slice of a vectored write.
const COPY_BODY_MAX: usize = 16 * 1024;
/// Read size for streamed response bodies.
const STREAM_BUF: usize = 16 * 1024;
/// Content-Type of the server's own error responses.
const ERROR_CONTENT_TYPE: &[u8] = b"Content-Type: text/plain; charset=utf-8\r\n";

/// Serves requests on one connection until it closes; then calls
/// [`Transport::close`], lingering after error responses and server-initiated
/// closes.
///
/// The caller should call this right after accepting: a new connection must
/// send its first head within [`HttpConfig::head_timeout`] of the call. A
/// transport whose [`Transport::wait_idle`] returns [`Idle::Park`] is closed
/// at that point: only the server's own runner can park a connection.
pub fn serve_connection<T: Transport, H: Handler + ?Sized>(
    t: &mut T,
    handler: &H,
    cfg: &HttpConfig,
) -> ConnStats {
    let mut session = Session::new();
    if let Served::Park = serve_ready(t, handler, cfg, &mut session) {
        t.close(None);
    }
    session.stats
}

/// A connection's HTTP state between requests: all that is kept while the
/// connection is parked (its buffers belong to the thread serving it). The
/// `Session` of a [`crate::Protocol`] that serves HTTP/1.1 over a wrapped
/// stream (TLS, say) holds one, and passes it to [`serve_ready`].
#[derive(Debug)]
pub struct Session {
    accepted: Instant,
    /// No request head read yet: the head deadline counts from `accepted`.
    first: bool,
    /// The transport reported a drain while idle.
    drained: bool,
    pub(crate) stats: ConnStats,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    /// The state of a connection accepted now.
    pub fn new() -> Session {
        Session {
            accepted: Instant::now(),
            first: true,
            drained: false,
            stats: ConnStats::default(),
        }
    }

    /// When a parked connection that has sent nothing must be closed: the
    /// first head's deadline for a new connection, else the idle timeout.
    pub fn idle_deadline(&self, cfg: &HttpConfig, now: Instant) -> Instant {
        if self.first {
            self.accepted + cfg.head_timeout
        } else {
            now + cfg.idle_timeout
        }
    }
}

impl Session {
    /// What happened on the connection so far.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }
}

/// A thread's buffers, reused by every connection it serves.
struct Bufs {
    rbuf: ReadBuf,
    wbuf: Vec<u8>,
    stream_buf: Vec<u8>,
}

thread_local! {
    static BUFS: Cell<Option<Bufs>> = const { Cell::new(None) };
}

/// Serves requests on `t` while it has them: what a [`crate::Protocol`]
/// serving HTTP/1.1 calls from its `serve`. This is how HTTP/1.1 runs over
/// a wrapped stream (TLS, say) and keeps idle parking and the drain: the
/// protocol's session holds the wrapper's state and a [`Session`], and
/// `serve` builds a [`Transport`] over the connection and the wrapper
/// whose `wait_idle` passes the connection's [`Idle::Park`] up when the
/// wrapper has nothing buffered. `examples/tls.rs` does it with rustls. Returns [`Served::Park`] when
/// the transport asks to park between requests ([`Idle::Park`], or a read
/// that fails with `WouldBlock` before a request's first byte), or
/// [`Served::Close`] once the connection is closed (as [`serve_connection`]
/// closes it).
pub fn serve_ready<T: Transport, H: Handler + ?Sized>(
    t: &mut T,
    handler: &H,
    cfg: &HttpConfig,
    session: &mut Session,
) -> Served {
    let max_buf = cfg
        .max_head_bytes
        .max(cfg.max_chunk_ext_len.saturating_add(64))
        .max(1024);
    let bufs = match BUFS.with(|b| b.take()) {
        Some(mut b) => {
            b.rbuf.reset(max_buf);
            b
        }
        None => Bufs {
            rbuf: ReadBuf::new(READ_BUF_INITIAL, max_buf),
            wbuf: Vec::with_capacity(512),
            stream_buf: Vec::new(),
        },
    };
    let mut conn = Conn {
        t,
        cfg,
        rbuf: bufs.rbuf,
        wbuf: bufs.wbuf,
        stream_buf: bufs.stream_buf,
        stats: std::mem::take(&mut session.stats),
        busy: false,
    };
    let next = conn.run(handler, session);
    if conn.busy {
        conn.t.set_busy(false);
    }
    session.stats = std::mem::take(&mut conn.stats);
    let Conn {
        t,
        rbuf,
        wbuf,
        stream_buf,
        ..
    } = conn;
    BUFS.with(|b| {
        b.set(Some(Bufs {
            rbuf,
            wbuf,
            stream_buf,
        }))
    });
    match next {
        Next::KeepAlive => Served::Park,
        Next::Close { linger } => {
            t.close(linger.then(|| Instant::now() + cfg.linger_timeout));
            Served::Close
        }
    }
}

struct Conn<'c> {
    t: &'c mut dyn Transport,
    cfg: &'c HttpConfig,
    rbuf: ReadBuf,
    /// Response heads (and small bodies) are serialized here.
    wbuf: Vec<u8>,
    /// For streamed response bodies; allocated on first use.
    stream_buf: Vec<u8>,
    stats: ConnStats,
    busy: bool,
}

/// After a response: keep going (or park), or close (lingering or not).
enum Next {
    KeepAlive,
    Close { linger: bool },
}

/// Why no head could be read.
enum HeadFail {
    /// The peer closed or the connection broke: close without a response.
    Gone,
    /// Answer with this error and close.
    Reject(HttpError),
    /// Nothing to read after all (a new connection whose request is not
    /// there yet, or one handed over for bytes an earlier read already
    /// took): park it.
    Idle,
}

/// How writing a response went.
struct Written {
    /// The connection must close after it.
    close: bool,
    /// The whole response went out.
    complete: bool,
}

impl Conn<'_> {
    /// Runs the loop until the connection must close, or (as
    /// [`Next::KeepAlive`]) the transport parks it between requests.
    fn run<H: Handler + ?Sized>(&mut self, handler: &H, s: &mut Session) -> Next {
        let cfg = self.cfg;
        loop {
            let head_deadline = if self.rbuf.is_empty() {
                let now = Instant::now();
                match self.t.wait_idle(s.idle_deadline(cfg, now)) {
                    Ok(Idle::Data) => {}
                    Ok(Idle::Park) => return Next::KeepAlive,
                    Ok(Idle::Drain) => {
                        s.drained = true;
                        match self.t.wait_idle(Instant::now() + cfg.drain_grace) {
                            Ok(Idle::Data) => {}
                            Ok(Idle::Eof) | Err(_) => return Next::Close { linger: false },
                            Ok(Idle::TimedOut | Idle::Drain | Idle::Park) => {
                                log::debug!(
                                    "[{}] closing idle connection: draining",
                                    std::process::id()
                                );
                                return Next::Close { linger: true };
                            }
                        }
                    }
                    Ok(Idle::Eof) | Err(_) => return Next::Close { linger: false },
                    Ok(Idle::TimedOut) => {
                        log::debug!(
                            "[{}] closing idle connection: timed out",
                            std::process::id()
                        );
                        return Next::Close { linger: true };
                    }
                }
                if s.first {
                    s.accepted + cfg.head_timeout
                } else {
                    Instant::now() + cfg.head_timeout
                }
            } else {
                // Pipelined bytes: serve them at once.
                Instant::now() + cfg.head_timeout
            };
            let head = match self.read_head(head_deadline) {
                Ok(head) => head,
                Err(HeadFail::Gone) => return Next::Close { linger: false },
                Err(HeadFail::Idle) => return Next::KeepAlive,
                Err(HeadFail::Reject(e)) => {
                    log::debug!(
                        "[{}] rejecting request: {} ({})",
                        std::process::id(),
                        e.status,
                        e.reason
                    );
                    let _ = self.send_error(e.status, false);
                    return Next::Close { linger: true };
                }
            };
            s.first = false;
            match self.serve_one(handler, head, s.drained) {
                Next::KeepAlive => {}
                close => return close,
            }
        }
    }

    /// Reads until a whole head is buffered and parses it.
    fn read_head(&mut self, deadline: Instant) -> Result<Head, HeadFail> {
        loop {
            if !self.rbuf.is_empty() {
                match parse_head(self.rbuf.data(), self.cfg) {
                    Ok(Some((head, len))) => {
                        self.rbuf.consume(len);
                        return Ok(head);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(HeadFail::Reject(e)),
                }
            }
            // A real transport may keep returning bytes after the deadline
            // (a dribbling client): check it ourselves.
            if Instant::now() >= deadline {
                return Err(HeadFail::Reject(HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request head not received in time",
                )));
            }
            match self.rbuf.fill(&mut *self.t, deadline) {
                Ok(0) => {
                    if !self.rbuf.is_empty() {
                        log::debug!(
                            "[{}] peer closed the connection inside a request head",
                            std::process::id()
                        );
                    }
                    return Err(HeadFail::Gone);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.rbuf.is_empty() => {
                    return Err(HeadFail::Idle);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    return Err(HeadFail::Reject(HttpError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "request head not received in time",
                    )));
                }
                Err(e) => {
                    log::debug!("[{}] reading request head: {e}", std::process::id());
                    return Err(HeadFail::Gone);
                }
            }
        }
    }

    /// Runs the handler for one request and writes its response.
    fn serve_one<H: Handler + ?Sized>(&mut self, handler: &H, head: Head, drained: bool) -> Next {
        let cfg = self.cfg;
        self.t.set_busy(true);
        self.busy = true;
        self.stats.requests += 1;

        let Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let is_head = method == Method::HEAD;
        let http10 = version == Version::HTTP_10;
        let upgrade_asked = !http10 && asks_upgrade(&headers);
        let mut st = BodyState::new(framing, expect_continue, cfg);
        let (info, token) = (self.t.conn_info(), self.t.drain_token());
        let result = {
            let body = RequestBody::new(&mut *self.t, &mut self.rbuf, &mut st, cfg);
            let mut req = Request::new(body);
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            *req.headers_mut() = headers;
            if let Some(info) = info {
                req.extensions_mut().insert(info);
            }
            if let Some(token) = token {
                req.extensions_mut().insert(token);
            }
            catch_unwind(AssertUnwindSafe(|| handler.handle(req)))
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(_) => {
                log::warn!(
                    "[{}] request handler panicked: answering 500",
                    std::process::id()
                );
                let _ = self.send_error(StatusCode::INTERNAL_SERVER_ERROR, is_head);
                return Next::Close { linger: true };
            }
        };
        if let Some(err) = st.error {
            drop(resp);
            return match err.status() {
                Some(status) => {
                    log::debug!(
                        "[{}] request body failed: {err}: answering {status}",
                        std::process::id()
                    );
                    let _ = self.send_error(status, is_head);
                    Next::Close { linger: true }
                }
                None => Next::Close { linger: false },
            };
        }

        if matches!(resp.body().0, Inner::Upgrade(_)) {
            return self.switch_protocols(resp, upgrade_asked && st.is_done(), is_head);
        }

        // A body the handler left unread must go before the next request.
        let mut must_close = false;
        if !st.is_done() {
            if st.continue_pending {
                // The client waits for 100 Continue: it never sent the body.
                must_close = true;
            } else if !self.discard_body(&mut st) {
                must_close = true;
            }
        }

        let close = !keep_alive || must_close || drained || self.t.draining();
        let written = match self.write_response(resp, is_head, http10, close) {
            Ok(w) => w,
            Err(e) => {
                log::debug!("[{}] writing response: {e}", std::process::id());
                return Next::Close { linger: false };
            }
        };
        self.t.set_busy(false);
        self.busy = false;
        if !written.close {
            return Next::KeepAlive;
        }
        // The client asked to close and got everything: no need to linger.
        let polite = !keep_alive && !must_close && written.complete && self.rbuf.is_empty();
        Next::Close { linger: !polite }
    }

    /// Reads and drops what is left of the request body, up to the discard
    /// limit. False if the connection cannot be reused.
    fn discard_body(&mut self, st: &mut BodyState) -> bool {
        let limit = self.cfg.discard_body_limit;
        if st.length_left().is_some_and(|left| left > limit) {
            log::debug!(
                "[{}] unread request body over the discard limit: closing",
                std::process::id()
            );
            return false;
        }
        let mut scratch = [0u8; 8 * 1024];
        let mut total = 0u64;
        loop {
            match read_body(&mut *self.t, &mut self.rbuf, st, self.cfg, &mut scratch) {
                Ok(0) => return true,
                Ok(n) => {
                    total += n as u64;
                    if total > limit {
                        log::debug!(
                            "[{}] unread request body over the discard limit: closing",
                            std::process::id()
                        );
                        return false;
                    }
                }
                Err(e) => {
                    log::debug!("[{}] discarding request body: {e}", std::process::id());
                    return false;
                }
            }
        }
    }
}

/// True if the request asks to switch protocols: an `Upgrade` header and
/// `upgrade` among the `Connection` options (RFC 9110 7.8).
fn asks_upgrade(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        && headers.get_all(http::header::CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}
