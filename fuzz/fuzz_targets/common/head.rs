//! `parse_head`: the head target's properties.
//!
//! The input is the raw bytes at the start of a connection's read buffer.
//! It is parsed under a small config (stack header slots) and a large one
//! (heap header slots: `max_headers` over 100), and:
//!
//! - nothing panics, and allocations stay within a bound from the config;
//! - an error is one of the documented statuses;
//! - `Ok(None)` (need more bytes) only while the buffer is under the head
//!   limit, so an incomplete head cannot grow the buffer without bound;
//! - a parsed head fits the limits (length, header count, target length),
//!   its request line is what the bytes say, and its framing, `keep_alive`
//!   and `expect_continue` agree with its header fields (`Chunked` implies a
//!   `Transfer-Encoding` field and no `Content-Length`, `Length(n)` implies
//!   `Content-Length` fields that all say `n`, one `Host` in HTTP/1.1, ...);
//! - the result does not depend on the bytes after the head, and every
//!   prefix of a complete head is "need more bytes" (a client that dribbles
//!   a valid head byte by byte is not rejected);
//! - the two configs agree: whatever the small one accepts, the large one
//!   accepts identically, and whatever the large one rejects, the small one
//!   rejects too.

use grace::http1::{parse_head, Framing, Head, HttpConfig, HttpError};
use http::header::{self, HeaderMap};
use http::Version;

use super::{alloc, has_token, show, small_config, trim, HEAD_REJECT};

type Parsed = Result<Option<(Head, usize)>, HttpError>;

/// Small limits: a few hundred bytes of input reach every one of them.
pub fn small() -> HttpConfig {
    small_config(1024, 16, 256, 4096)
}

/// Large limits, with more header slots than `parse_head` keeps on the stack.
pub fn large() -> HttpConfig {
    small_config(16 * 1024, 120, 8 * 1024, 1 << 20)
}

/// `parse_head` never handles a body: its bound is the head limit (four
/// times over), its header slots and the fixed slack.
pub fn alloc_bound(cfg: &HttpConfig) -> usize {
    4 * cfg.max_head_bytes + 64 * cfg.max_headers + super::ALLOC_SLACK
}

/// Runs every head property on `data`.
pub fn check(data: &[u8]) {
    let small_cfg = small();
    let large_cfg = large();
    let s = parse_checked(data, &small_cfg);
    let l = parse_checked(data, &large_cfg);
    match (&s, &l) {
        (Ok(Some((hs, ns))), Ok(Some((hl, nl)))) => {
            assert_eq!(
                ns,
                nl,
                "head length differs between configs: {}",
                show(data)
            );
            assert_same(hs, hl, data);
        }
        (Ok(Some(_)), other) => panic!(
            "accepted under small limits but {other:?} under large ones: {}",
            show(data)
        ),
        (Ok(None), Ok(None)) => {}
        (Ok(None), other) => panic!(
            "incomplete under small limits but {other:?} under large ones: {}",
            show(data)
        ),
        (Err(_), _) => {}
    }
    if let Err(e) = &l {
        assert!(
            s.is_err(),
            "rejected under large limits ({e}) but not under small ones: {}",
            show(data)
        );
    }
    for (parsed, cfg) in [(&s, &small_cfg), (&l, &large_cfg)] {
        if let Ok(Some((h, n))) = parsed {
            check_prefixes(data, cfg, h, *n);
        }
    }
}

/// One parse, measured, with the properties of a single result.
fn parse_checked(data: &[u8], cfg: &HttpConfig) -> Parsed {
    let (r, stats) = alloc::measure(|| parse_head(data, cfg));
    alloc::assert_within(stats, alloc_bound(cfg), "parse_head");
    match &r {
        Ok(None) => assert!(
            data.len() < cfg.max_head_bytes,
            "{} bytes without a complete head (limit {}) still wait for more: {}",
            data.len(),
            cfg.max_head_bytes,
            show(data)
        ),
        Err(e) => assert!(
            HEAD_REJECT.contains(&e.status.as_u16()),
            "undocumented status {} ({}) for {}",
            e.status,
            e.reason,
            show(data)
        ),
        Ok(Some((h, n))) => check_head(data, cfg, h, *n),
    }
    r
}

/// The request line of a head: method, target, version.
fn request_line(head: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .expect("a head with a request line");
    let rest = &head[start..];
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .expect("a request line ended by LF");
    let line = &rest[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    assert_eq!(
        parts.len(),
        3,
        "request line is not method SP target SP version: {}",
        show(line)
    );
    (parts[0], parts[1], parts[2])
}

fn values<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Vec<&'h [u8]> {
    headers.get_all(name).iter().map(|v| v.as_bytes()).collect()
}

/// A parsed head agrees with the limits and with its own bytes.
fn check_head(data: &[u8], cfg: &HttpConfig, h: &Head, n: usize) {
    let ctx = || show(data);
    assert!(n > 0 && n <= data.len(), "head length {n} of {}", ctx());
    assert!(
        n <= cfg.max_head_bytes,
        "head of {n} bytes over the limit {}: {}",
        cfg.max_head_bytes,
        ctx()
    );
    let bytes = &data[..n];
    assert!(
        bytes.ends_with(b"\n\n") || bytes.ends_with(b"\n\r\n"),
        "head does not end with an empty line: {}",
        ctx()
    );
    assert!(
        h.headers.len() <= cfg.max_headers,
        "{} header fields, limit {}: {}",
        h.headers.len(),
        cfg.max_headers,
        ctx()
    );

    let (method, target, version) = request_line(bytes);
    assert_eq!(h.method.as_str().as_bytes(), method, "method of {}", ctx());
    assert!(
        target.len() <= cfg.max_target_len,
        "target of {} bytes, limit {}: {}",
        target.len(),
        cfg.max_target_len,
        ctx()
    );
    let want_version = match version {
        b"HTTP/1.1" => Version::HTTP_11,
        b"HTTP/1.0" => Version::HTTP_10,
        v => panic!("accepted version {}: {}", show(v), ctx()),
    };
    assert_eq!(h.version, want_version, "version of {}", ctx());
    let http11 = h.version == Version::HTTP_11;

    // Host: exactly one in HTTP/1.1, at most one in HTTP/1.0.
    let hosts = h.headers.get_all(header::HOST).iter().count();
    if http11 {
        assert_eq!(hosts, 1, "Host fields in an HTTP/1.1 head: {}", ctx());
    } else {
        assert!(hosts <= 1, "{hosts} Host fields: {}", ctx());
    }

    // Framing against the fields.
    let cls = values(&h.headers, &header::CONTENT_LENGTH);
    let tes = values(&h.headers, &header::TRANSFER_ENCODING);
    let cl_values: Vec<u64> = cls
        .iter()
        .map(|v| {
            let v = trim(v);
            assert!(
                !v.is_empty() && v.iter().all(u8::is_ascii_digit),
                "accepted Content-Length {}: {}",
                show(v),
                ctx()
            );
            std::str::from_utf8(v)
                .unwrap()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("accepted overflowing Content-Length: {}", ctx()))
        })
        .collect();
    if let Some(first) = cl_values.first() {
        assert!(
            cl_values.iter().all(|v| v == first),
            "differing Content-Length fields accepted: {}",
            ctx()
        );
    }
    match h.framing {
        Framing::Chunked => {
            assert!(
                !tes.is_empty(),
                "Chunked without Transfer-Encoding: {}",
                ctx()
            );
            assert!(cls.is_empty(), "Chunked with Content-Length: {}", ctx());
            assert!(http11, "Chunked in HTTP/1.0: {}", ctx());
            let elements: Vec<&[u8]> = tes
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(trim)
                .collect();
            assert!(
                elements.len() == 1 && elements[0].eq_ignore_ascii_case(b"chunked"),
                "Transfer-Encoding accepted as chunked: {:?}: {}",
                elements
                    .iter()
                    .map(|e| String::from_utf8_lossy(e))
                    .collect::<Vec<_>>(),
                ctx()
            );
        }
        Framing::Length(len) => {
            assert!(tes.is_empty(), "Length with Transfer-Encoding: {}", ctx());
            assert!(
                !cl_values.is_empty(),
                "Length without Content-Length: {}",
                ctx()
            );
            assert_eq!(
                cl_values[0],
                len,
                "Length differs from the field: {}",
                ctx()
            );
            assert!(len > 0, "Length(0) instead of None: {}", ctx());
            assert!(
                len <= cfg.max_body_bytes,
                "Content-Length {len} over the body limit accepted: {}",
                ctx()
            );
        }
        Framing::None => {
            assert!(
                tes.is_empty(),
                "no body despite Transfer-Encoding: {}",
                ctx()
            );
            assert!(
                cl_values.iter().all(|&v| v == 0),
                "no body despite Content-Length: {}",
                ctx()
            );
        }
    }

    // Connection and Expect.
    let conns = values(&h.headers, &header::CONNECTION);
    let close = conns.iter().any(|v| has_token(v, "close"));
    let keep = conns.iter().any(|v| has_token(v, "keep-alive"));
    let want_keep_alive = if http11 { !close } else { keep && !close };
    assert_eq!(h.keep_alive, want_keep_alive, "keep_alive of {}", ctx());
    let expects = values(&h.headers, &header::EXPECT);
    for e in &expects {
        assert!(
            trim(e).eq_ignore_ascii_case(b"100-continue"),
            "unsupported expectation accepted: {}",
            ctx()
        );
    }
    let want_expect = http11 && !expects.is_empty() && h.framing != Framing::None;
    assert_eq!(
        h.expect_continue,
        want_expect,
        "expect_continue of {}",
        ctx()
    );
}

/// Two parses of the same head agree.
fn assert_same(a: &Head, b: &Head, data: &[u8]) {
    let ctx = || show(data);
    assert_eq!(a.method, b.method, "{}", ctx());
    assert_eq!(a.uri, b.uri, "{}", ctx());
    assert_eq!(a.version, b.version, "{}", ctx());
    assert_eq!(a.headers, b.headers, "{}", ctx());
    assert_eq!(a.framing, b.framing, "{}", ctx());
    assert_eq!(a.keep_alive, b.keep_alive, "{}", ctx());
    assert_eq!(a.expect_continue, b.expect_continue, "{}", ctx());
}

/// The head alone parses the same, and its prefixes need more bytes.
fn check_prefixes(data: &[u8], cfg: &HttpConfig, h: &Head, n: usize) {
    if n < data.len() {
        match parse_head(&data[..n], cfg) {
            Ok(Some((h2, n2))) => {
                assert_eq!(n2, n, "head alone has another length: {}", show(data));
                assert_same(h, &h2, data);
            }
            other => panic!(
                "head alone gives {other:?}, with what follows it a head: {}",
                show(data)
            ),
        }
    }
    // Some cut points: the first bytes, thirds, the last bytes, and right
    // after the first and the last few line ends.
    let mut cuts = vec![1, 2, n / 3, n / 2, 2 * n / 3, n.saturating_sub(3)];
    cuts.extend([n.saturating_sub(2), n.saturating_sub(1)]);
    let line_ends: Vec<usize> = (0..n)
        .filter(|&i| data[i] == b'\n')
        .map(|i| i + 1)
        .collect();
    cuts.extend(line_ends.iter().take(3));
    cuts.extend(line_ends.iter().rev().take(3));
    cuts.extend(line_ends.iter().rev().take(3).map(|e| e - 1));
    for k in cuts {
        if k == 0 || k >= n {
            continue;
        }
        match parse_head(&data[..k], cfg) {
            Ok(None) => {}
            other => panic!(
                "the first {k} of {n} head bytes give {other:?}, not \"need more\": {}",
                show(data)
            ),
        }
    }
}
