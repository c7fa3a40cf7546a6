//! Request bodies: the connection's read buffer, the chunked decoder and the
//! [`RequestBody`] reader handed to handlers.

use std::fmt;
use std::io::{self, Read};
use std::time::Instant;

use http::StatusCode;

use crate::http::head::Framing;
use crate::http::{Config, Transport};

/// Why reading a request body failed.
///
/// [`RequestBody`] reports it inside an [`io::Error`] (see
/// [`BodyError::from_io`]); the server also remembers it and, once the handler
/// returns, answers with [`BodyError::status`] instead of the handler's
/// response and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Malformed framing or a premature end of stream: 400.
    /// The [`io::Error`] kind is `InvalidData`.
    Invalid(&'static str),
    /// The body is over [`Config::max_body_bytes`]: 413.
    /// The [`io::Error`] kind is `Other`.
    TooLarge,
    /// A read waited longer than [`Config::body_timeout`]: 408.
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A strict decoder for the chunked transfer coding (RFC 9112 7.1).
///
/// Chunk-size lines are 1 to 16 hex digits, optionally followed by
/// `;extensions`, bounded by `max_line` bytes and ended by CRLF (a bare LF is
/// an error, as is an empty size line). Chunk data must be followed by CRLF.
/// Trailer fields are read, bounded in total by `max_trailers` bytes, and
/// discarded. More than `max_body` decoded bytes is [`BodyError::TooLarge`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    total: u64,
    trailer_bytes: usize,
    max_body: u64,
    max_line: usize,
    max_trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder with explicit limits.
    pub fn new(max_body: u64, max_line: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            total: 0,
            trailer_bytes: 0,
            max_body,
            max_line,
            max_trailers,
        }
    }

    /// A decoder with the limits of `cfg`.
    pub fn from_config(cfg: &Config) -> Self {
        Self::new(
            cfg.max_body_bytes,
            cfg.max_chunk_ext_len,
            cfg.max_head_bytes,
        )
    }

    /// True once the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decoded body bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Decodes from `input` into `out`. Returns `(consumed, written)`: the
    /// caller drops `consumed` bytes of input. `(0, 0)` while not
    /// [`is_done`](Self::is_done) means more input is needed (or `out` is
    /// empty).
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), BodyError> {
        let mut used = 0;
        let mut written = 0;
        loop {
            let avail = &input[used..];
            match self.state {
                ChunkState::Done => break,
                ChunkState::Size => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if avail.len() > self.max_line + 1 {
                            return Err(BodyError::Invalid("chunk-size line too long"));
                        }
                        break;
                    };
                    let size = self.size_line(&avail[..nl])?;
                    used += nl + 1;
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                    } else {
                        if self.max_body - self.total < size {
                            return Err(BodyError::TooLarge);
                        }
                        self.total += size;
                        self.state = ChunkState::Data(size);
                    }
                }
                ChunkState::Data(left) => {
                    let room = out.len() - written;
                    if avail.is_empty() || room == 0 {
                        break;
                    }
                    let n = avail
                        .len()
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out[written..written + n].copy_from_slice(&avail[..n]);
                    written += n;
                    used += n;
                    self.advance_data(n);
                }
                ChunkState::DataEnd => {
                    match avail {
                        [b'\r', b'\n', ..] => used += 2,
                        [] | [b'\r'] => break,
                        _ => return Err(BodyError::Invalid("chunk data not followed by CRLF")),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + avail.len() > self.max_trailers {
                            return Err(BodyError::Invalid("trailer section too large"));
                        }
                        break;
                    };
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > self.max_trailers {
                        return Err(BodyError::Invalid("trailer section too large"));
                    }
                    let line = &avail[..nl];
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(BodyError::Invalid("bare LF in trailer section"));
                    };
                    if line.iter().any(|&b| b == b'\r' || b == 0) {
                        return Err(BodyError::Invalid("invalid byte in trailer"));
                    }
                    used += nl + 1;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
        Ok((used, written))
    }

    /// Parses one chunk-size line (without its LF).
    fn size_line(&self, line: &[u8]) -> Result<u64, BodyError> {
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(BodyError::Invalid("chunk-size line not ended by CRLF"));
        };
        if line.len() > self.max_line {
            return Err(BodyError::Invalid("chunk-size line too long"));
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(BodyError::Invalid("missing chunk size"));
        }
        if digits > 16 {
            return Err(BodyError::Invalid("chunk size overflows"));
        }
        let mut size: u64 = 0;
        for &b in &line[..digits] {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => b - b'A' + 10,
            };
            size = (size << 4) | u64::from(d);
        }
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
        let ext = &line[digits..];
        let after_ws = ext
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(ext.len());
        match ext.get(after_ws) {
            None if after_ws == 0 => {}
            Some(b';') => {
                if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err(BodyError::Invalid("invalid byte in chunk extension"));
                }
            }
            _ => return Err(BodyError::Invalid("invalid chunk-size line")),
        }
        Ok(size)
    }

    /// Bytes left in the current chunk's data, if in chunk data.
    pub(crate) fn data_left(&self) -> Option<u64> {
        match self.state {
            ChunkState::Data(left) => Some(left),
            _ => None,
        }
    }

    /// Records `n` bytes of chunk data read outside [`decode`](Self::decode).
    pub(crate) fn advance_data(&mut self, n: usize) {
        if let ChunkState::Data(left) = self.state {
            let left = left - n as u64;
            self.state = if left == 0 {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left)
            };
        }
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
}

#[derive(Debug)]
enum Kind {
    Done,
    Length(u64),
    Chunked(ChunkedDecoder),
}

impl BodyState {
    pub(crate) fn new(framing: Framing, expect_continue: bool, cfg: &Config) -> Self {
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
/// is read with [`Config::body_timeout`] per read. `read` returns `Ok(0)` at
/// the end of the body. Errors carry a [`BodyError`].
pub struct RequestBody<'a> {
    inner: Option<BodyIo<'a>>,
}

struct BodyIo<'a> {
    t: &'a mut dyn Transport,
    rbuf: &'a mut ReadBuf,
    st: &'a mut BodyState,
    cfg: &'a Config,
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
        cfg: &'a Config,
    ) -> Self {
        RequestBody {
            inner: Some(BodyIo { t, rbuf, st, cfg }),
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
    cfg: &Config,
    out: &mut [u8],
) -> io::Result<usize> {
    if let Some(e) = st.error {
        return Err(e.to_io());
    }
    if st.is_done() || out.is_empty() {
        return Ok(0);
    }
    match read_inner(t, rbuf, st, cfg, out) {
        Ok(n) => Ok(n),
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
    cfg: &Config,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, BodyError> {
        let mut dec = ChunkedDecoder::new(1 << 20, 64, 256);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut tmp = [0u8; 7];
        loop {
            let (used, written) = dec.decode(&buf, &mut tmp)?;
            buf.drain(..used);
            out.extend_from_slice(&tmp[..written]);
            if dec.is_done() {
                return Ok(out);
            }
            if used == 0 && written == 0 {
                if fed == input.len() {
                    return Err(BodyError::Invalid("eof"));
                }
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }

    #[test]
    fn chunked_ok() {
        let input = b"5\r\nhello\r\n7;a=b;c\r\n, world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 100] {
            assert_eq!(
                decode_all(input, step).unwrap(),
                b"hello, world0123456789",
                "step {step}"
            );
        }
        assert_eq!(decode_all(b"0\r\n\r\n", 1).unwrap(), b"");
        assert!(decode_all(b"00000000000000001\r\nx\r\n0\r\n\r\n", 4).is_err());
        assert_eq!(
            decode_all(b"0000000000000001\r\nx\r\n0\r\n\r\n", 4).unwrap(),
            b"x"
        );
    }

    #[test]
    fn chunked_bad() {
        let bad: &[&[u8]] = &[
            b"\r\n5\r\nhello\r\n0\r\n\r\n", // empty size line
            b"5\nhello\r\n0\r\n\r\n",       // bare LF
            b"5\r\nhelloX\r\n0\r\n\r\n",    // data not followed by CRLF
            b"5\r\nhello\r\n0\r\n\n",       // bare LF ending trailers
            b"g\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
        ];
        for input in bad {
            let r = decode_all(input, 3);
            assert!(
                matches!(r, Err(BodyError::Invalid(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Overflowing sizes and oversized lines.
        let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(100));
        assert!(decode_all(long.as_bytes(), 5).is_err());
        let big_trailers = format!("0\r\n{}\r\n", "X: y\r\n".repeat(100));
        assert!(decode_all(big_trailers.as_bytes(), 50).is_err());
        let mut dec = ChunkedDecoder::new(10, 64, 256);
        assert_eq!(dec.decode(b"b\r\n", &mut [0; 4]), Err(BodyError::TooLarge));
        let mut dec = ChunkedDecoder::new(u64::MAX, 64, 256);
        assert_eq!(
            dec.decode(b"FFFFFFFFFFFFFFFFF\r\n", &mut [0; 4]),
            Err(BodyError::Invalid("chunk size overflows"))
        );
    }
}
