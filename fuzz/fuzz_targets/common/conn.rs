//! `serve_connection`: the conn target's properties.
//!
//! Input: one control byte (see [`Mode`]), then the bytes a client sends
//! before closing. They go through `serve_connection` over a `MemTransport`
//! with small limits, and a handler that acts by the first byte of the
//! request path (see [`Action`]; by default it reads the body to its end
//! and answers with its length). Then:
//!
//! - nothing panics, and allocations stay within a bound from the config;
//! - the output is a sequence of well-formed HTTP/1.1 responses, each
//!   parsed strictly: status line, header fields, then the body framed by
//!   `Content-Length` or chunked (exactly one of them when there is a body;
//!   none for 204/304; none only when the connection closes after it), a
//!   valid `Date`, at most one `Connection`;
//! - responses match requests in order: the handler's response (its status
//!   and body), or the error status of the body error the handler saw, and
//!   at most one more response at the end, for a rejected head; `100
//!   Continue` only for a request that asked for it, before its response;
//!   HEAD responses carry no body;
//! - every error response says `Connection: close` and is the last bytes
//!   written; so is every response to a request that asked to close, and
//!   every response once the server drains;
//! - the handler never sees more than `max_body_bytes`, and a complete
//!   `Content-Length` body has exactly that length;
//! - the output is at most a constant factor of the input plus a constant
//!   (no amplification), and the transport was closed exactly once, not busy;
//! - when the control byte limits the size of reads, the same input with
//!   unlimited reads writes the same bytes (`Date` values aside), but for
//!   a last error response where one run rejected an incomplete head for a
//!   limit (414, 431) before the byte that makes it malformed arrived.

use std::io::{Cursor, Read};
use std::sync::Mutex;

use grace::http1::{
    serve_connection, BodyError, ConnStats, Handler, HttpConfig, Idle, MemTransport, RequestBody,
    ResponseBody,
};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::{alloc, alloc_bound, has_token, show, small_config, trim, CONN_REJECT};

/// Small limits: 1 KiB heads, 16 fields, 2 KiB bodies, 64-byte chunk lines,
/// 512 bytes of unread body discarded.
pub fn config() -> HttpConfig {
    small_config(1024, 16, 256, 2048)
}

/// Output bytes allowed per input byte, plus [`OUTPUT_SLACK`]. The smallest
/// request that keeps the connection open is 20 bytes
/// (`A / HTTP/1.1\nHost:\n\n`) and is answered in about 100.
pub const OUTPUT_FACTOR: usize = 8;
/// See [`OUTPUT_FACTOR`]: room for one error response.
pub const OUTPUT_SLACK: usize = 1024;
/// No request is shorter than this: `A / HTTP/1.0\n\n`.
pub const MIN_REQUEST: usize = 14;

/// How the transport behaves, from the control byte. Printable bytes from
/// `@` (0x40) up read well in seed files: `@` is the plain mode.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// Bits 0-1: reads deliver at most 1, 7 or 100 bytes (0: no limit).
    pub read_size: Option<usize>,
    /// Bit 2: past the input, reads and idle waits time out instead of
    /// seeing the end of stream (a silent peer).
    pub timeout_at_end: bool,
    /// Bit 3: the first idle wait reports that the server drains.
    pub drain_script: bool,
    /// Bit 4: the server is draining from the start.
    pub draining: bool,
}

impl Mode {
    /// The mode of a control byte.
    pub fn new(b: u8) -> Self {
        Mode {
            read_size: [None, Some(1), Some(7), Some(100)][usize::from(b & 3)],
            timeout_at_end: b & 4 != 0,
            drain_script: b & 8 != 0,
            draining: b & 16 != 0,
        }
    }
}

/// What the handler does, by the first byte of the path after `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Default: read the whole body, answer 200 `len=N\n`.
    ReadAll,
    /// `/n`: do not read the body (the server discards or closes).
    NoRead,
    /// `/p`: read one byte of the body.
    ReadSome,
    /// `/s`: read the body, answer with a streamed body (chunked, or
    /// delimited by close for HTTP/1.0).
    Stream,
    /// `/2`: read the body, answer 204.
    NoContent,
    /// `/3`: read the body, answer 304.
    NotModified,
    /// `/c`: read the body, answer with `Connection: close`.
    Close,
    /// `/d`: read the body, answer with an empty body and a handler
    /// `Content-Length: 42` (kept for HEAD, replaced by 0 otherwise).
    Declared,
}

impl Action {
    fn of(path: &str) -> Self {
        match path.as_bytes().get(1) {
            Some(b'n') => Action::NoRead,
            Some(b'p') => Action::ReadSome,
            Some(b's') => Action::Stream,
            Some(b'2') => Action::NoContent,
            Some(b'3') => Action::NotModified,
            Some(b'c') => Action::Close,
            Some(b'd') => Action::Declared,
            _ => Action::ReadAll,
        }
    }
}

/// One handler call, as the handler saw it.
#[derive(Debug)]
pub struct Call {
    pub action: Action,
    pub head: bool,
    pub http10: bool,
    /// The request lets the connection stay open.
    pub keep_alive: bool,
    /// The server owes a `100 Continue` before reading the body.
    pub expect_continue: bool,
    /// Body bytes read, or the first body error.
    pub read: Result<u64, BodyError>,
    /// Properties the handler found broken (it must not panic: the server
    /// would turn a panic into a 500).
    pub violations: Vec<String>,
}

/// What the server must answer a call with.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// This status and (unless HEAD) this body.
    Answer(u16, Vec<u8>),
    /// Nothing: the connection failed.
    Nothing,
}

impl Call {
    fn expected(&self) -> Expected {
        let n = match self.read {
            Ok(n) => n,
            Err(e) => {
                return match e.status() {
                    Some(s) => Expected::Answer(s.as_u16(), error_body(s.as_u16())),
                    None => Expected::Nothing,
                }
            }
        };
        let text = format!("len={n}\n").into_bytes();
        match self.action {
            Action::NoContent => Expected::Answer(204, Vec::new()),
            Action::NotModified => Expected::Answer(304, Vec::new()),
            Action::Declared => Expected::Answer(200, Vec::new()),
            _ => Expected::Answer(200, text),
        }
    }
}

/// The body of the server's own error responses.
fn error_body(status: u16) -> Vec<u8> {
    let s = StatusCode::from_u16(status).expect("a status code");
    format!("{status} {}\n", s.canonical_reason().unwrap_or("")).into_bytes()
}

/// The fuzzing handler: records every call.
pub struct FuzzHandler {
    max_body: u64,
    pub calls: Mutex<Vec<Call>>,
}

impl FuzzHandler {
    pub fn new(cfg: &HttpConfig) -> Self {
        FuzzHandler {
            max_body: cfg.max_body_bytes,
            calls: Mutex::new(Vec::new()),
        }
    }
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_LENGTH)?;
    std::str::from_utf8(trim(v.as_bytes())).ok()?.parse().ok()
}

fn body_error(e: &std::io::Error, violations: &mut Vec<String>) -> BodyError {
    BodyError::from_io(e).unwrap_or_else(|| {
        violations.push(format!("body read failed without a BodyError: {e}"));
        BodyError::Io(e.kind())
    })
}

impl Handler for FuzzHandler {
    fn handle(&self, req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
        let (parts, mut body) = req.into_parts();
        let action = Action::of(parts.uri.path());
        let http10 = parts.version == Version::HTTP_10;
        let h = &parts.headers;
        let cl = content_length(h);
        let chunked = h.contains_key(header::TRANSFER_ENCODING);
        let conns: Vec<&[u8]> = h
            .get_all(header::CONNECTION)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let close = conns.iter().any(|v| has_token(v, "close"));
        let keep = conns.iter().any(|v| has_token(v, "keep-alive"));
        let keep_alive = if http10 { keep && !close } else { !close };
        let has_body = chunked || cl.is_some_and(|n| n > 0);
        let expect_continue = !http10 && h.contains_key(header::EXPECT) && has_body;
        let mut violations = Vec::new();

        let read = match action {
            Action::NoRead => Ok(0),
            Action::ReadSome => {
                let mut one = [0u8; 1];
                match body.read(&mut one) {
                    Ok(n) => Ok(n as u64),
                    Err(e) => Err(body_error(&e, &mut violations)),
                }
            }
            _ => {
                let mut v = Vec::new();
                match (&mut body).take(self.max_body + 1).read_to_end(&mut v) {
                    Ok(n) => {
                        if !body.is_finished() {
                            violations.push(format!("read_to_end gave {n} bytes, unfinished"));
                        }
                        if let Some(cl) = cl {
                            if n as u64 != cl {
                                violations.push(format!("{n} body bytes, Content-Length {cl}"));
                            }
                        }
                        if !has_body && n != 0 {
                            violations.push(format!("{n} body bytes without framing"));
                        }
                        Ok(n as u64)
                    }
                    Err(e) => Err(body_error(&e, &mut violations)),
                }
            }
        };
        if let Ok(n) = read {
            if n > self.max_body {
                violations.push(format!("{n} body bytes, over the limit {}", self.max_body));
            }
        }
        let n = *read.as_ref().unwrap_or(&0);
        let text = format!("len={n}\n");
        let mut resp = Response::new(ResponseBody::from(text.clone()));
        match action {
            Action::Stream => *resp.body_mut() = ResponseBody::stream(Cursor::new(text)),
            Action::NoContent => {
                *resp.status_mut() = StatusCode::NO_CONTENT;
                *resp.body_mut() = ResponseBody::empty();
            }
            Action::NotModified => {
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                *resp.body_mut() = ResponseBody::empty();
            }
            Action::Close => {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Action::Declared => {
                *resp.body_mut() = ResponseBody::empty();
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
            }
            _ => {}
        }
        self.calls.lock().unwrap().push(Call {
            action,
            head: parts.method == Method::HEAD,
            http10,
            keep_alive,
            expect_continue,
            read,
            violations,
        });
        resp
    }
}

/// Everything one connection run produced.
pub struct Run {
    pub mode: Mode,
    pub input_len: usize,
    pub t: MemTransport,
    pub stats: ConnStats,
    pub calls: Vec<Call>,
}

/// Runs a connection on `data` (control byte, then input); `None` if empty.
pub fn run(data: &[u8]) -> Option<Run> {
    let (&b, input) = data.split_first()?;
    Some(run_mode(Mode::new(b), input))
}

/// Runs a connection on `input` in `mode`.
pub fn run_mode(mode: Mode, input: &[u8]) -> Run {
    let cfg = config();
    let mut t = MemTransport::new(input);
    if let Some(n) = mode.read_size {
        t = t.with_read_sizes(vec![n]);
    }
    if mode.timeout_at_end {
        t = t.with_timeout_at_end();
    }
    if mode.drain_script {
        t = t.with_idle_script(vec![Idle::Drain]);
    }
    t.draining = mode.draining;
    // Reserved before measuring: within the bound, the output never grows
    // inside serve_connection, so what is measured is grace's own.
    t.output = Vec::with_capacity(OUTPUT_FACTOR * input.len() + OUTPUT_SLACK);
    let handler = FuzzHandler::new(&cfg);
    let (stats, astats) = alloc::measure(|| serve_connection(&mut t, &handler, &cfg));
    alloc::assert_within(astats, alloc_bound(&cfg), "serve_connection");
    let calls = handler.calls.into_inner().unwrap();
    Run {
        mode,
        input_len: input.len(),
        t,
        stats,
        calls,
    }
}

/// Runs every connection property on `data`.
pub fn check(data: &[u8]) {
    let Some(run) = run(data) else {
        return;
    };
    let resps = check_run(&run, data);
    if run.mode.read_size.is_some() {
        // How the bytes are split into reads changes nothing on the wire.
        let whole = run_mode(
            Mode {
                read_size: None,
                ..run.mode
            },
            &data[1..],
        );
        check_run(&whole, data);
        let whole_resps = check_run(&whole, data);
        let (split, whole) = (without_dates(&run.t.output), without_dates(&whole.t.output));
        if split == whole {
            return;
        }
        // One difference is allowed: a head rejected for a limit (414,
        // 431) while incomplete, before the byte that makes it malformed
        // has arrived, against the status that byte gives when the whole
        // head is parsed at once. Only the last response may differ.
        let same_until_last = match (resps.last(), whole_resps.last()) {
            (Some(&(at, a)), Some(&(bt, b))) => {
                at == bt
                    && split[..at] == whole[..bt]
                    && a >= 400
                    && b >= 400
                    && (LIMIT_REJECT.contains(&a) || LIMIT_REJECT.contains(&b))
            }
            _ => false,
        };
        assert!(
            same_until_last,
            "output with reads of {:?} bytes:\n{}\nwith unlimited reads:\n{}\ninput: {}",
            run.mode.read_size,
            show(&split),
            show(&whole),
            show(data)
        );
    }
}

/// `out` with the value of every `Date` field replaced by `x`s.
fn without_dates(out: &[u8]) -> Vec<u8> {
    const FIELD: &[u8] = b"\r\nDate: ";
    let mut v = out.to_vec();
    let mut at = 0;
    while let Some(i) = v[at..].windows(FIELD.len()).position(|w| w == FIELD) {
        let start = at + i + FIELD.len();
        let end = (start + 29).min(v.len());
        v[start..end].fill(b'x');
        at = end;
    }
    v
}

/// A response head, parsed strictly.
struct RespHead<'a> {
    status: u16,
    headers: Vec<(&'a [u8], &'a [u8])>,
    len: usize,
}

impl<'a> RespHead<'a> {
    fn all(&self, name: &str) -> Vec<&'a [u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
            .collect()
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The next CRLF-terminated line of `buf` at `at`, without the CRLF.
fn line(buf: &[u8], at: usize) -> &[u8] {
    let rest = &buf[at..];
    let end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("unterminated line in the output: {}", show(rest)));
    let l = &rest[..end];
    assert!(
        !l.contains(&b'\n') && !l.contains(&b'\r'),
        "bare CR or LF in the output: {}",
        show(l)
    );
    l
}

fn parse_resp_head(buf: &[u8]) -> RespHead<'_> {
    let status_line = line(buf, 0);
    let (code, reason) = match status_line {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'1', b' ', a, b, c, b' ', reason @ ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit()) =>
        {
            (
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'),
                reason,
            )
        }
        _ => panic!("bad status line: {}", show(status_line)),
    };
    assert!((100..=599).contains(&code), "status {code}");
    let want = StatusCode::from_u16(code).unwrap();
    assert_eq!(
        reason,
        want.canonical_reason().unwrap_or("").as_bytes(),
        "reason phrase of {code}"
    );
    let mut at = status_line.len() + 2;
    let mut headers = Vec::new();
    loop {
        let l = line(buf, at);
        at += l.len() + 2;
        if l.is_empty() {
            break;
        }
        let colon = l
            .iter()
            .position(|&b| b == b':')
            .unwrap_or_else(|| panic!("header line without a colon: {}", show(l)));
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        assert!(
            !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
            "bad header name {}",
            show(name)
        );
        let value = value.strip_prefix(b" ").unwrap_or(value);
        assert!(!value.contains(&0), "NUL in a header value");
        headers.push((name, value));
    }
    RespHead {
        status: code,
        headers,
        len: at,
    }
}

/// Checks an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn check_date(d: &[u8]) {
    let ok = d.len() == 29
        && [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"].contains(&&[d[0], d[1], d[2]])
        && &d[3..5] == b", "
        && d[5..7].iter().all(u8::is_ascii_digit)
        && d[7] == b' '
        && d[11] == b' '
        && d[12..16].iter().all(u8::is_ascii_digit)
        && d[16] == b' '
        && d[19] == b':'
        && d[22] == b':'
        && &d[25..] == b" GMT";
    assert!(ok, "bad Date {}", show(d));
}

/// A chunked body at the start of `buf`: (decoded bytes, encoded length).
fn dechunk(buf: &[u8]) -> (Vec<u8>, usize) {
    let mut at = 0;
    let mut out = Vec::new();
    loop {
        let l = line(buf, at);
        at += l.len() + 2;
        assert!(
            !l.is_empty() && l.len() <= 16 && l.iter().all(u8::is_ascii_hexdigit),
            "bad chunk-size line {}",
            show(l)
        );
        let size = usize::from_str_radix(std::str::from_utf8(l).unwrap(), 16).unwrap();
        if size == 0 {
            assert_eq!(line(buf, at), b"", "trailers in a response");
            return (out, at + 2);
        }
        assert!(buf.len() >= at + size + 2, "truncated chunk");
        out.extend_from_slice(&buf[at..at + size]);
        at += size;
        assert_eq!(&buf[at..at + 2], b"\r\n", "chunk data not followed by CRLF");
        at += 2;
    }
}

/// Statuses a head may be rejected with before it is complete, for a limit.
const LIMIT_REJECT: &[u16] = &[414, 431];

/// Checks a finished run; returns the offset and status of every response.
pub fn check_run(run: &Run, data: &[u8]) -> Vec<(usize, u16)> {
    let ctx = || show(data);
    let out = &run.t.output;
    assert_eq!(
        run.t.closes,
        1,
        "transport closed {} times: {}",
        run.t.closes,
        ctx()
    );
    assert!(!run.t.busy, "transport left busy: {}", ctx());
    assert!(
        out.len() <= OUTPUT_FACTOR * run.input_len + OUTPUT_SLACK,
        "{} output bytes for {} input bytes: {}",
        out.len(),
        run.input_len,
        ctx()
    );
    assert_eq!(
        run.stats.requests,
        run.calls.len() as u64,
        "requests counted vs handler calls: {}",
        ctx()
    );
    assert!(
        run.calls.len() * MIN_REQUEST <= run.input_len,
        "{} requests in {} bytes: {}",
        run.calls.len(),
        run.input_len,
        ctx()
    );
    for c in &run.calls {
        assert!(
            c.violations.is_empty(),
            "handler saw {:?}: {}",
            c.violations,
            ctx()
        );
    }

    let mut rest: &[u8] = out;
    let mut idx = 0;
    let mut continued = false;
    let mut finals = 0;
    let mut resps = Vec::new();
    while !rest.is_empty() {
        resps.push((out.len() - rest.len(), 0));
        let r = parse_resp_head(rest);
        resps.last_mut().unwrap().1 = r.status;
        rest = &rest[r.len..];
        let call = run.calls.get(idx);
        if r.status == 100 {
            let c = call.unwrap_or_else(|| panic!("100 Continue for no request: {}", ctx()));
            assert!(c.expect_continue, "100 Continue not asked for: {}", ctx());
            assert!(!continued, "two 100 Continue for one request: {}", ctx());
            assert!(r.headers.is_empty(), "fields in 100 Continue: {}", ctx());
            continued = true;
            continue;
        }
        let had_continue = std::mem::replace(&mut continued, false);
        assert!(r.status >= 200, "interim status {}: {}", r.status, ctx());
        let dates = r.all("date");
        assert_eq!(dates.len(), 1, "Date fields in a {}: {}", r.status, ctx());
        check_date(dates[0]);
        let conn = r.all("connection");
        assert!(conn.len() <= 1, "several Connection fields: {}", ctx());
        let close = conn.first().is_some_and(|v| *v == b"close");
        let keep = conn.first().is_some_and(|v| *v == b"keep-alive");
        assert!(
            conn.is_empty() || close || keep,
            "Connection {:?}: {}",
            conn,
            ctx()
        );
        let is_head = call.is_some_and(|c| c.head);

        // The body, by its framing.
        let cl = r.all("content-length");
        let te = r.all("transfer-encoding");
        let body: Vec<u8> = if r.status == 204 || r.status == 304 {
            assert!(
                cl.is_empty() && te.is_empty(),
                "framing in a {}: {}",
                r.status,
                ctx()
            );
            Vec::new()
        } else if cl.is_empty() && te.is_empty() {
            assert!(close, "no framing and no Connection: close: {}", ctx());
            let b = if is_head { Vec::new() } else { rest.to_vec() };
            rest = &rest[b.len()..];
            b
        } else {
            assert_eq!(
                cl.len() + te.len(),
                1,
                "not exactly one of Content-Length / Transfer-Encoding: {}",
                ctx()
            );
            if let [v] = cl[..] {
                assert!(
                    !v.is_empty() && v.iter().all(u8::is_ascii_digit),
                    "Content-Length {}",
                    show(v)
                );
                let n: usize = std::str::from_utf8(v).unwrap().parse().unwrap();
                if is_head {
                    Vec::new()
                } else {
                    assert!(
                        rest.len() >= n,
                        "body shorter than Content-Length: {}",
                        ctx()
                    );
                    let b = rest[..n].to_vec();
                    rest = &rest[n..];
                    b
                }
            } else {
                assert_eq!(te[0], b"chunked", "Transfer-Encoding in a response");
                if is_head {
                    Vec::new()
                } else {
                    let (b, used) = dechunk(rest);
                    rest = &rest[used..];
                    b
                }
            }
        };

        // The response against its request.
        match call {
            Some(c) => {
                match c.expected() {
                    Expected::Answer(status, want) => {
                        assert_eq!(r.status, status, "status for {c:?}: {}", ctx());
                        let want = if is_head { Vec::new() } else { want };
                        assert_eq!(body, want, "body for {c:?}: {}", ctx());
                    }
                    Expected::Nothing => {
                        panic!("a response after a failed connection: {}", ctx())
                    }
                }
                // The body is asked for when the handler first reads it.
                let reads = c.action != Action::NoRead;
                assert_eq!(
                    had_continue,
                    c.expect_continue && reads,
                    "100 Continue for {c:?}: {}",
                    ctx()
                );
                if c.http10 {
                    assert!(
                        close || keep,
                        "HTTP/1.0 response without Connection: {}",
                        ctx()
                    );
                } else {
                    assert!(!keep, "keep-alive in an HTTP/1.1 response: {}", ctx());
                }
                if !c.keep_alive || c.action == Action::Close {
                    assert!(close, "a close was asked for but not said: {}", ctx());
                }
                idx += 1;
            }
            None => {
                assert!(
                    CONN_REJECT.contains(&r.status),
                    "status {} for a rejected head: {}",
                    r.status,
                    ctx()
                );
                assert_eq!(body, error_body(r.status), "error body: {}", ctx());
                idx += 1;
            }
        }
        if r.status >= 400 {
            assert!(
                close,
                "error {} without Connection: close: {}",
                r.status,
                ctx()
            );
            assert_eq!(
                run.stats.last_error.map(|s| s.as_u16()),
                Some(r.status),
                "last_error: {}",
                ctx()
            );
        }
        if finals == 0 && (run.mode.draining || run.mode.drain_script) {
            assert!(close, "no Connection: close while draining: {}", ctx());
        }
        finals += 1;
        if close {
            assert!(
                rest.is_empty(),
                "{} bytes after a closing response: {}",
                rest.len(),
                ctx()
            );
        }
    }
    // Every handler call got its response, but one whose connection failed.
    let answered = idx.min(run.calls.len());
    let unanswered = &run.calls[answered..];
    assert!(
        unanswered.is_empty()
            || (unanswered.len() == 1 && unanswered[0].expected() == Expected::Nothing),
        "{} handler calls, {answered} answered: {}",
        run.calls.len(),
        ctx()
    );
    assert!(
        idx <= run.calls.len() + 1,
        "{idx} responses for {} requests: {}",
        run.calls.len(),
        ctx()
    );
    assert!(
        !continued || !unanswered.is_empty(),
        "100 Continue without a final response: {}",
        ctx()
    );
    resps
}
