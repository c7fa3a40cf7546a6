//! Request head parsing: httparse, then every check httparse leaves to us.

use std::fmt;
use std::mem::MaybeUninit;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::http1::HttpConfig;

/// Header slots on the stack; a larger `max_headers` uses a heap buffer.
const STACK_HEADERS: usize = 100;

/// A request head that was rejected, with the status to answer it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpError {
    /// Status of the error response (400, 408, 413, 414, 417, 431, 501, 505).
    pub status: StatusCode,
    /// Why, for the debug log.
    pub reason: &'static str,
}

impl HttpError {
    pub(crate) const fn new(status: StatusCode, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
}

fn bad(reason: &'static str) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, reason)
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.reason)
    }
}

impl std::error::Error for HttpError {}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes follow.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed and validated request head.
#[derive(Debug)]
#[non_exhaustive]
pub struct Head {
    /// Request method.
    pub method: Method,
    /// Request-target (origin-, absolute-, authority- or asterisk-form).
    pub uri: Uri,
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    /// Header fields, in order.
    pub headers: HeaderMap,
    /// Body framing.
    pub framing: Framing,
    /// The client is willing to keep the connection open after this request
    /// (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`).
    pub keep_alive: bool,
    /// HTTP/1.1 request with `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Parses and validates a request head at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed (the caller enforces the
/// head timeout), `Ok(Some((head, len)))` with the head's length in bytes, or
/// the error status to answer with.
pub fn parse_head(buf: &[u8], cfg: &HttpConfig) -> Result<Option<(Head, usize)>, HttpError> {
    if cfg.max_headers <= STACK_HEADERS {
        let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        parse_with(buf, cfg, &mut slots[..cfg.max_headers])
    } else {
        let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); cfg.max_headers];
        parse_with(buf, cfg, &mut slots)
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    cfg: &HttpConfig,
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<(Head, usize)>, HttpError> {
    let mut req = httparse::Request::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            check_partial(buf, cfg)?;
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields",
            ))
        }
        Err(httparse::Error::Version) => {
            return match request_line(buf) {
                None => {
                    // The version is wrong, but wait for the end of the line
                    // to tell "HTTP/2.0" (505) from garbage (400).
                    check_partial(buf, cfg)?;
                    Ok(None)
                }
                Some(line) if is_other_version(line) => Err(HttpError::new(
                    StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                    "unsupported HTTP version",
                )),
                Some(_) => Err(bad("malformed HTTP version")),
            };
        }
        Err(_) => return Err(bad("malformed request head")),
    };
    if len > cfg.max_head_bytes {
        return Err(HttpError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    // httparse fills all three on Complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad("malformed request line"));
    };
    if target.len() > cfg.max_target_len {
        return Err(HttpError::new(
            StatusCode::URI_TOO_LONG,
            "request-target too long",
        ));
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad("invalid method"))?;
    let uri = parse_target(&method, target)?;

    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut hosts = 0u32;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name =
            HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| bad("invalid header value"))?;
        if name == header::HOST {
            hosts += 1;
        } else if name == header::CONTENT_LENGTH {
            let n = parse_content_length(h.value)?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            te_seen = true;
            parse_transfer_encoding(h.value, &mut chunked)?;
        } else if name == header::CONNECTION {
            for token in list_elements(h.value) {
                if token.eq_ignore_ascii_case(b"close") {
                    conn_close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    conn_keep_alive = true;
                }
            }
        } else if name == header::EXPECT {
            if trim(h.value).eq_ignore_ascii_case(b"100-continue") {
                // RFC 9110 10.1.1: ignored in an HTTP/1.0 request.
                expect_continue = version == Version::HTTP_11;
            } else {
                return Err(HttpError::new(
                    StatusCode::EXPECTATION_FAILED,
                    "unsupported expectation",
                ));
            }
        }
        headers.append(name, value);
    }

    match (version, hosts) {
        (Version::HTTP_11, 1) => {}
        (Version::HTTP_11, 0) => return Err(bad("missing Host header")),
        (_, 0 | 1) => {}
        _ => return Err(bad("several Host headers")),
    }

    let framing = if te_seen {
        if content_length.is_some() {
            return Err(bad("both Transfer-Encoding and Content-Length"));
        }
        if version != Version::HTTP_11 {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if !chunked {
            // Only reachable with no element at all, which is rejected as an
            // empty element; kept as a guard for the "must end in chunked" rule.
            return Err(bad("Transfer-Encoding does not end in chunked"));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) | None => Framing::None,
            Some(n) => Framing::Length(n),
        }
    };
    if let Framing::Length(n) = framing {
        if n > cfg.max_body_bytes {
            return Err(HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Content-Length over the body limit",
            ));
        }
    }
    let keep_alive = if version == Version::HTTP_11 {
        !conn_close
    } else {
        conn_keep_alive && !conn_close
    };
    let expect_continue = expect_continue && framing != Framing::None;
    Ok(Some((
        Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
        },
        len,
    )))
}

/// The request-target must be a URI of the form the method allows.
fn parse_target(method: &Method, target: &str) -> Result<Uri, HttpError> {
    let connect = *method == Method::CONNECT;
    if target == "/" && !connect {
        // Parsed once; cloning a static `Uri` does not allocate.
        static ROOT: std::sync::OnceLock<Uri> = std::sync::OnceLock::new();
        return Ok(ROOT.get_or_init(|| Uri::from_static("/")).clone());
    }
    if target == "*" {
        return if *method == Method::OPTIONS {
            Ok(Uri::from_static("*"))
        } else {
            Err(bad("asterisk-form request-target outside OPTIONS"))
        };
    }
    // No request-target form allows a fragment; `http::Uri` would drop it
    // silently and the handler would see another target than was sent.
    if target.contains('#') {
        return Err(bad("fragment in request-target"));
    }
    let uri: Uri = target.parse().map_err(|_| bad("invalid request-target"))?;
    // userinfo in an authority is an error for a server (RFC 9110 §4.2.4).
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(bad("userinfo in request-target"));
    }
    let authority_form =
        uri.scheme().is_none() && uri.authority().is_some() && uri.path_and_query().is_none();
    if connect {
        // authority-form: host:port and nothing else.
        if !authority_form || !target.contains(':') {
            return Err(bad("CONNECT needs an authority-form request-target"));
        }
        return Ok(uri);
    }
    if target.starts_with('/') {
        if uri.scheme().is_some() || uri.authority().is_some() {
            return Err(bad("invalid origin-form request-target"));
        }
        return Ok(uri);
    }
    if uri.scheme().is_some() && uri.authority().is_some() {
        return Ok(uri); // absolute-form
    }
    Err(bad("invalid request-target form"))
}

/// `Content-Length`: one or more ASCII digits, nothing else, no overflow.
fn parse_content_length(v: &[u8]) -> Result<u64, HttpError> {
    // Optional whitespace around a field value is not part of it.
    let v = trim(v);
    if v.is_empty() {
        return Err(bad("empty Content-Length"));
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(bad("invalid Content-Length"));
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| bad("Content-Length overflows"))?;
    }
    Ok(n)
}

/// One `Transfer-Encoding` field; all fields make one list, so `chunked`
/// carries over between calls.
fn parse_transfer_encoding(v: &[u8], chunked: &mut bool) -> Result<(), HttpError> {
    for element in v.split(|&b| b == b',') {
        let element = trim(element);
        if element.is_empty() {
            return Err(bad("empty Transfer-Encoding element"));
        }
        if !element.eq_ignore_ascii_case(b"chunked") {
            return Err(HttpError::new(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer coding",
            ));
        }
        if *chunked {
            return Err(bad("chunked applied more than once"));
        }
        *chunked = true;
    }
    Ok(())
}

/// Non-empty elements of a comma-separated list, trimmed.
fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|e| !e.is_empty())
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The complete first line of the request (without its line end), if the
/// buffer holds it. Leading empty lines are skipped, like httparse does.
fn request_line(buf: &[u8]) -> Option<&[u8]> {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let rest = &buf[start..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// `method SP target SP HTTP/<digit>.<digit>`.
fn is_other_version(line: &[u8]) -> bool {
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    match line {
        [.., b' ', b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        _ => false,
    }
}

/// Limits on a head that is not complete yet.
fn check_partial(buf: &[u8], cfg: &HttpConfig) -> Result<(), HttpError> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    let line_end = rest.iter().position(|&b| b == b'\n');
    let line = &rest[..line_end.unwrap_or(rest.len())];
    // The target so far: from the first space to the next (or the end).
    if let Some(sp) = line.iter().position(|&b| b == b' ') {
        let target = &line[sp + 1..];
        let tlen = target
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(target.len());
        if tlen > cfg.max_target_len {
            return Err(HttpError::new(
                StatusCode::URI_TOO_LONG,
                "request-target too long",
            ));
        }
    }
    if buf.len() >= cfg.max_head_bytes {
        if line_end.is_none() && line.len() > cfg.max_target_len {
            return Err(HttpError::new(
                StatusCode::URI_TOO_LONG,
                "request line too long",
            ));
        }
        return Err(HttpError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
