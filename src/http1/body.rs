//! Request bodies: the connection's read buffer, and the [`RequestBody`]
//! reader handed to handlers (the chunked decoder is `chunked.rs`).

use std::fmt;
use std::io::{self, Read};
use std::time::Instant;

use http::StatusCode;

use crate::http1::head::Framing;
use crate::http1::{ChunkedDecoder, HttpConfig, Transport};

/// Why reading a request body failed.
///
/// [`RequestBody`] reports it inside an [`io::Error`] (see
/// [`BodyError::from_io`]); the server also remembers it and, once the handler
/// returns, answers with [`BodyError::status`] instead of the handler's
/// response and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyError {
    /// Malformed framing or a premature end of stream: 400.
    /// The [`io::Error`] kind is `InvalidData`.
    Invalid(&'static str),
    /// The body is over [`HttpConfig::max_body_bytes`]: 413.
    /// The [`io::Error`] kind is `Other`.
    TooLarge,
    /// A read waited longer than [`HttpConfig::body_timeout`]: 408.
    /// The [`io::Error`] kind is `TimedOut`.
    TimedOut,
    /// The connection failed; nothing more can be sent on it.
    Io(io::ErrorKind),
}

impl BodyError {
    /// The status the server answers with, if any.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            BodyError::Invalid(_) => Some(StatusCode::BAD_REQUEST),
            BodyError::TooLarge => Some(StatusCode::PAYLOAD_TOO_LARGE),
            BodyError::TimedOut => Some(StatusCode::REQUEST_TIMEOUT),
            BodyError::Io(_) => None,
        }
    }

    /// The `BodyError` inside an error returned by [`RequestBody`]'s `read`.
    pub fn from_io(e: &io::Error) -> Option<BodyError> {
        e.get_ref()?.downcast_ref::<BodyError>().copied()
    }

    fn to_io(self) -> io::Error {
        let kind = match self {
            BodyError::Invalid(_) => io::ErrorKind::InvalidData,
            BodyError::TooLarge => io::ErrorKind::Other,
            BodyError::TimedOut => io::ErrorKind::TimedOut,
            BodyError::Io(kind) => kind,
        };
        io::Error::new(kind, self)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Invalid(why) => write!(f, "malformed request body: {why}"),
            BodyError::TooLarge => f.write_str("request body too large"),
            BodyError::TimedOut => f.write_str("timed out reading the request body"),
            BodyError::Io(kind) => write!(f, "connection error: {kind}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The connection's read buffer: bytes read but not used yet live in
/// `buf[start..end]`. Pipelined requests and body bytes that arrived with a
/// head wait here.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl ReadBuf {
    pub(crate) fn new(initial: usize, max: usize) -> Self {
        ReadBuf {
            buf: vec![0; initial.min(max)],
            start: 0,
            end: 0,
            max,
        }
    }

    /// Empties the buffer for another connection, with a new size limit.
    pub(crate) fn reset(&mut self, max: usize) {
        self.start = 0;
        self.end = 0;
        self.max = max;
        self.buf.truncate(max);
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Moves up to `out.len()` buffered bytes into `out`.
    fn take_into(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.consume(n);
        n
    }

    /// Reads more bytes after the buffered ones. `Ok(0)` is end of stream.
    pub(crate) fn fill(&mut self, t: &mut dyn Transport, deadline: Instant) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.buf.len() < self.max {
                let len = (self.buf.len() * 2).clamp(1024, self.max);
                self.buf.resize(len, 0);
            } else {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
            }
        }
        let n = t.read_deadline(&mut self.buf[self.end..], deadline)?;
        self.end += n;
        Ok(n)
    }
}

/// Where a request body stands; owned by the connection loop, borrowed by
/// [`RequestBody`].
#[derive(Debug)]
pub(crate) struct BodyState {
    kind: Kind,
    /// `Expect: 100-continue` and no `100 Continue` sent yet.
    pub(crate) continue_pending: bool,
    /// The first error, reported again on every later read.
    pub(crate) error: Option<BodyError>,
    /// The handler's limit for this request ([`RequestBody::set_limit`]).
    limit: Option<u64>,
    /// Body bytes read so far.
    read: u64,
}

#[derive(Debug)]
enum Kind {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyState {
    pub(crate) fn new(framing: Framing, expect_continue: bool, cfg: &HttpConfig) -> Self {
        let kind = match framing {
            Framing::None | Framing::Length(0) => Kind::Done,
            Framing::Length(n) => Kind::Length(n),
            Framing::Chunked => Kind::Chunked(ChunkedDecoder::from_config(cfg)),
        };
        let continue_pending = expect_continue && !matches!(kind, Kind::Done);
        BodyState {
            kind,
            continue_pending,
            error: None,
            limit: None,
            read: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// Bytes still to come for a `Content-Length` body.
    pub(crate) fn length_left(&self) -> Option<u64> {
        match self.kind {
            Kind::Length(n) => Some(n),
            _ => None,
        }
    }
}

/// A request body, streamed from the connection. Implements [`Read`].
///
/// Bytes that arrived with the head are returned first, then the connection
/// is read with [`HttpConfig::body_timeout`] per read. `read` returns `Ok(0)` at
/// the end of the body. Errors carry a [`BodyError`].
pub struct RequestBody<'a> {
    inner: Option<BodyIo<'a>>,
}

struct BodyIo<'a> {
    t: &'a mut dyn Transport,
    rbuf: &'a mut ReadBuf,
    st: &'a mut BodyState,
    cfg: &'a HttpConfig,
}

impl RequestBody<'static> {
    /// An empty body, for calling a handler without a connection.
    pub fn empty() -> Self {
        RequestBody { inner: None }
    }
}

impl<'a> RequestBody<'a> {
    pub(crate) fn new(
        t: &'a mut dyn Transport,
        rbuf: &'a mut ReadBuf,
        st: &'a mut BodyState,
        cfg: &'a HttpConfig,
    ) -> Self {
        RequestBody {
            inner: Some(BodyIo { t, rbuf, st, cfg }),
        }
    }

    /// Limits this request's body to `max` bytes, below the server's
    /// [`HttpConfig::max_body_bytes`]: a `Content-Length` over it fails at
    /// once, a chunked body when it gets there. Reads then fail with
    /// [`BodyError::TooLarge`], and whatever the handler returns, the
    /// server answers 413 and closes the connection.
    ///
    /// ```no_run
    /// use std::io::Read;
    /// use grace::http::{Request, Response};
    /// use grace::http1::{RequestBody, ResponseBody};
    ///
    /// fn upload(mut req: Request<RequestBody>) -> Response<ResponseBody> {
    ///     req.body_mut().set_limit(64 * 1024);
    ///     let mut body = Vec::new();
    ///     match req.body_mut().read_to_end(&mut body) {
    ///         Ok(n) => Response::new(format!("{n} bytes\n").into()),
    ///         Err(_) => Response::new(ResponseBody::empty()), // the server sends 413
    ///     }
    /// }
    /// ```
    pub fn set_limit(&mut self, max: u64) {
        if let Some(io) = &mut self.inner {
            let st = &mut *io.st;
            st.limit = Some(max);
            if st.error.is_none() && st.length_left().is_some_and(|left| st.read + left > max) {
                log::debug!(
                    "[{}] request body: Content-Length over the handler's limit of {max}",
                    std::process::id()
                );
                st.error = Some(BodyError::TooLarge);
            }
        }
    }

    /// True when the whole body has been read (or there is none).
    pub fn is_finished(&self) -> bool {
        match &self.inner {
            None => true,
            Some(io) => io.st.is_done(),
        }
    }
}

impl Default for RequestBody<'static> {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for RequestBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.as_ref().map(|io| &*io.st);
        f.debug_struct("RequestBody")
            .field("state", &state)
            .finish()
    }
}

impl Read for RequestBody<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            None => Ok(0),
            Some(io) => io.read(out),
        }
    }
}

impl BodyIo<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_body(self.t, self.rbuf, self.st, self.cfg, out)
    }
}

fn io_fail(e: &io::Error) -> BodyError {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => BodyError::TimedOut,
        io::ErrorKind::InvalidData => BodyError::Invalid("line too long"),
        kind => BodyError::Io(kind),
    }
}

/// One body read; shared by [`RequestBody`] and the connection's discard.
pub(crate) fn read_body(
    t: &mut dyn Transport,
    rbuf: &mut ReadBuf,
    st: &mut BodyState,
    cfg: &HttpConfig,
    out: &mut [u8],
) -> io::Result<usize> {
    if let Some(e) = st.error {
        return Err(e.to_io());
    }
    if st.is_done() || out.is_empty() {
        return Ok(0);
    }
    match read_inner(t, rbuf, st, cfg, out) {
        Ok(n) => {
            st.read += n as u64;
            if st.limit.is_some_and(|max| st.read > max) {
                log::debug!(
                    "[{}] request body: over the handler's limit of {}",
                    std::process::id(),
                    st.limit.unwrap_or(0)
                );
                st.error = Some(BodyError::TooLarge);
                return Err(BodyError::TooLarge.to_io());
            }
            Ok(n)
        }
        Err(e) => {
            log::debug!("[{}] request body: {e}", std::process::id());
            st.error = Some(e);
            Err(e.to_io())
        }
    }
}

fn read_inner(
    t: &mut dyn Transport,
    rbuf: &mut ReadBuf,
    st: &mut BodyState,
    cfg: &HttpConfig,
    out: &mut [u8],
) -> Result<usize, BodyError> {
    if st.continue_pending {
        let deadline = Instant::now() + cfg.write_timeout;
        t.write_all_deadline(&[b"HTTP/1.1 100 Continue\r\n\r\n"], deadline)
            .map_err(|e| BodyError::Io(e.kind()))?;
        st.continue_pending = false;
    }
    match &mut st.kind {
        Kind::Done => Ok(0),
        Kind::Length(left) => {
            let want = out.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            let n = if rbuf.is_empty() {
                let deadline = Instant::now() + cfg.body_timeout;
                t.read_deadline(&mut out[..want], deadline)
                    .map_err(|e| io_fail(&e))?
            } else {
                rbuf.take_into(&mut out[..want])
            };
            if n == 0 {
                return Err(BodyError::Invalid("connection closed inside the body"));
            }
            *left -= n as u64;
            if *left == 0 {
                st.kind = Kind::Done;
            }
            Ok(n)
        }
        Kind::Chunked(dec) => loop {
            let (used, written) = dec.decode(rbuf.data(), out)?;
            rbuf.consume(used);
            if dec.is_done() {
                st.kind = Kind::Done;
                return Ok(written);
            }
            if written > 0 {
                return Ok(written);
            }
            if used > 0 {
                continue;
            }
            let deadline = Instant::now() + cfg.body_timeout;
            // Inside chunk data with nothing buffered: read straight into
            // the caller's buffer, never past the chunk.
            if let (true, Some(left)) = (rbuf.is_empty(), dec.data_left()) {
                let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = t
                    .read_deadline(&mut out[..want], deadline)
                    .map_err(|e| io_fail(&e))?;
                if n == 0 {
                    return Err(BodyError::Invalid("connection closed inside the body"));
                }
                dec.advance_data(n);
                return Ok(n);
            }
            if rbuf.fill(t, deadline).map_err(|e| io_fail(&e))? == 0 {
                return Err(BodyError::Invalid("connection closed inside the body"));
            }
        },
    }
}
