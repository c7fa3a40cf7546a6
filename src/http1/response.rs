//! Responses: [`ResponseBody`], head serialization and the `Date` cache.

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap};
use http::StatusCode;

/// A response body.
///
/// Fixed bodies are sent with `Content-Length`; a stream is sent with
/// `Transfer-Encoding: chunked`, one chunk per successful `read` (to an
/// HTTP/1.0 client: raw, and the connection is closed after it), unless its
/// length is known: [`ResponseBody::sized`], or a stream whose handler set
/// `Content-Length` itself. A file ([`ResponseBody::file`]) goes out with
/// `sendfile(2)`.
#[derive(Default)]
pub struct ResponseBody(pub(crate) Inner);

#[derive(Default)]
pub(crate) enum Inner {
    #[default]
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    Stream(Box<dyn Read + Send>),
    /// A stream of known length: `Content-Length`, no chunking.
    Sized(Box<dyn Read + Send>, u64),
    /// A file (from its start), sent with `sendfile(2)`.
    File(std::fs::File, u64),
    Upgrade(crate::http1::upgrade::OnUpgrade),
}

impl ResponseBody {
    /// No body (`Content-Length: 0`).
    pub fn empty() -> Self {
        ResponseBody(Inner::Empty)
    }

    /// A body read from `r` while it is sent, each successful read going out
    /// at once as one chunk.
    pub fn stream(r: impl Read + Send + 'static) -> Self {
        ResponseBody(Inner::Stream(Box::new(r)))
    }

    /// A body of exactly `len` bytes read from `r` while it is sent, with
    /// `Content-Length: len`. If `r` ends early the connection is closed
    /// after what it gave (the client sees fewer bytes than promised, not a
    /// hang); if it has more, only `len` bytes are sent and the connection
    /// is closed. Either way the log says so.
    ///
    /// ```no_run
    /// use grace::http::Response;
    /// use grace::http1::ResponseBody;
    ///
    /// fn report(csv: std::process::ChildStdout, len: u64) -> Response<ResponseBody> {
    ///     // A generator's output whose length is known in advance.
    ///     Response::new(ResponseBody::sized(csv, len))
    /// }
    /// ```
    pub fn sized(r: impl Read + Send + 'static, len: u64) -> Self {
        ResponseBody(Inner::Sized(Box::new(r), len))
    }

    /// The whole of `file`, sent with `sendfile(2)` (the kernel copies it
    /// from the page cache to the socket) and its length, from its
    /// metadata, as `Content-Length`.
    ///
    /// ```no_run
    /// use grace::http::Response;
    /// use grace::http1::ResponseBody;
    ///
    /// fn download() -> std::io::Result<Response<ResponseBody>> {
    ///     let file = std::fs::File::open("/srv/files/big.iso")?;
    ///     Ok(Response::new(ResponseBody::file(file)?))
    /// }
    /// ```
    pub fn file(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(ResponseBody(Inner::File(file, len)))
    }

    /// Switches protocols: answer `101 Switching Protocols` with this body
    /// (and the `Upgrade` header the client asked for), and once the head
    /// is written `f` gets the connection as an [`crate::http1::Upgraded`]
    /// stream, on this thread, for as long as it runs. The connection
    /// closes when `f` returns. A request that did not ask to upgrade
    /// (`Connection: upgrade` and `Upgrade:`), or a status other than 101,
    /// gets a 500 instead.
    ///
    /// ```no_run
    /// use grace::http::{Request, Response, StatusCode};
    /// use grace::http1::{RequestBody, ResponseBody, Upgraded};
    /// use std::io::{Read, Write};
    ///
    /// fn echo_protocol(_req: Request<RequestBody>) -> Response<ResponseBody> {
    ///     let mut r = Response::new(ResponseBody::upgrade(|mut up: Upgraded| {
    ///         let mut buf = [0u8; 1024];
    ///         while let Ok(n) = up.read(&mut buf) {
    ///             if n == 0 || up.write_all(&buf[..n]).is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     }));
    ///     *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    ///     r.headers_mut().insert("upgrade", "echo".parse().unwrap());
    ///     r
    /// }
    /// ```
    pub fn upgrade(f: impl for<'a> FnOnce(crate::http1::Upgraded<'a>) + Send + 'static) -> Self {
        ResponseBody(Inner::Upgrade(Box::new(f)))
    }

    /// The length of the body, if it is known before it is sent: fixed,
    /// sized and file bodies; `None` for a stream.
    pub fn len(&self) -> Option<u64> {
        match &self.0 {
            Inner::Sized(_, n) | Inner::File(_, n) => Some(*n),
            _ => self.fixed().map(|b| b.len() as u64),
        }
    }

    /// True for an empty fixed body.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    pub(crate) fn fixed(&self) -> Option<&[u8]> {
        match &self.0 {
            Inner::Empty => Some(b""),
            Inner::Static(b) => Some(b),
            Inner::Bytes(b) => Some(b),
            Inner::Stream(_) | Inner::Sized(..) | Inner::File(..) | Inner::Upgrade(_) => None,
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.0, self.len()) {
            (_, Some(n)) => write!(f, "ResponseBody({n} bytes)"),
            (Inner::Upgrade(_), _) => f.write_str("ResponseBody(upgrade)"),
            _ => f.write_str("ResponseBody(stream)"),
        }
    }
}

impl From<&'static str> for ResponseBody {
    fn from(s: &'static str) -> Self {
        ResponseBody(Inner::Static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for ResponseBody {
    fn from(s: &'static [u8]) -> Self {
        ResponseBody(Inner::Static(s))
    }
}

impl From<String> for ResponseBody {
    fn from(s: String) -> Self {
        ResponseBody(Inner::Bytes(s.into_bytes()))
    }
}

impl From<Vec<u8>> for ResponseBody {
    fn from(v: Vec<u8>) -> Self {
        ResponseBody(Inner::Bytes(v))
    }
}

/// How the response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No framing header, no body (1xx, 204, 304).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No framing header; the body ends when the connection closes.
    Close,
}

/// What the `Connection` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    None,
    Close,
    KeepAlive,
}

/// A handler header value holds CR, LF or NUL.
#[derive(Debug)]
pub(crate) struct BadHeader;

/// Appends a response head to `out`. `headers` are the handler's; the
/// server-owned ones in them are skipped. `extra` holds whole header lines
/// (each ending in CRLF) to add.
pub(crate) fn write_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: Option<&HeaderMap>,
    framing: Framing,
    conn: ConnHeader,
    extra: &[u8],
) -> Result<(), BadHeader> {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(headers) = headers {
        for (name, value) in headers {
            if is_server_owned(name) {
                continue;
            }
            let v = value.as_bytes();
            if !header_value_ok(v) {
                return Err(BadHeader);
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(&http_date());
    out.extend_from_slice(b"\r\n");
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::None | Framing::Close => {}
    }
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"Connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"Connection: keep-alive\r\n"),
    }
    out.extend_from_slice(extra);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// No CR, LF or NUL. `HeaderValue` rejects them, but its unsafe
/// `from_maybe_shared_unchecked` lets them in: they must never reach the wire.
pub(crate) fn header_value_ok(v: &[u8]) -> bool {
    !v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

fn is_server_owned(name: &header::HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name == header::DATE
}

/// True if the handler's `Connection` header asks to close.
pub(crate) fn wants_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    })
}

/// The handler's `Content-Length`, if it is one plain number.
pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::CONTENT_LENGTH)?.to_str().ok()?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Appends `n` in decimal.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Formats `n` in hex (a chunk-size line without CRLF) into `tmp`; returns
/// the used tail.
pub(crate) fn hex(tmp: &mut [u8; 16], mut n: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

thread_local! {
    static DATE: Cell<(u64, [u8; 29])> = const { Cell::new((u64::MAX, [0; 29])) };
}

/// The current time as an IMF-fixdate, formatted once per second per thread.
pub(crate) fn http_date() -> [u8; 29] {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let (cached_secs, cached) = cell.get();
        if cached_secs == secs {
            return cached;
        }
        let fresh = format_date(secs);
        cell.set((secs, fresh));
        fresh
    })
}

/// Formats seconds since the Unix epoch as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub(crate) fn format_date(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (hour, min, sec) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, hour);
    two(&mut out, 20, min);
    two(&mut out, 23, sec);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let s = |secs| String::from_utf8(format_date(secs).to_vec()).unwrap();
        assert_eq!(s(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(s(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(s(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(s(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(s(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        assert_eq!(s(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        let now = http_date();
        assert_eq!(&now[25..], b" GMT");
        assert_eq!(http_date()[..16], now[..16]);
    }

    #[test]
    fn header_values() {
        assert!(header_value_ok(b"text/plain; q=1\t\x80"));
        for bad in [&b"a\r\nInjected: yes"[..], b"a\nb", b"a\rb", b"a\0b"] {
            assert!(!header_value_ok(bad));
        }
    }

    #[test]
    fn numbers() {
        let mut v = Vec::new();
        push_decimal(&mut v, 0);
        v.push(b' ');
        push_decimal(&mut v, u64::MAX);
        assert_eq!(v, b"0 18446744073709551615");
        let mut tmp = [0; 16];
        assert_eq!(hex(&mut tmp, 0), b"0");
        assert_eq!(hex(&mut tmp, 0x1a2f), b"1a2f");
        assert_eq!(hex(&mut tmp, u64::MAX), b"ffffffffffffffff");
    }
}
