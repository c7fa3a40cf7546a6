//! Hostile and broken input: every one answered with the right status, never a panic.

use super::*;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};

use crate::http1::{handler_fn, BodyError, HttpConfig, MemTransport, RequestBody, ResponseBody};

/// Each hostile head gets its status, `Connection: close`, a lingering
/// close, and never reaches the handler.
#[test]
fn hostile_heads() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    let long_line = format!("GET /{}", "a".repeat(20000));
    let many = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "A: b\r\n".repeat(101)
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nA: {}\r\n\r\n",
        "b".repeat(17000)
    );
    let cases: Vec<(&str, u16)> = vec![
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
        ("GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        ("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        ("GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET x.y:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;x\r\n\r\n",
            501,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n",
            400,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16777217\r\n\r\n",
            413,
        ),
        ("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417),
        (&long_target, 414),
        (&long_line, 414),
        (&many, 431),
        (&big, 431),
    ];
    for (input, want) in cases {
        let calls = Arc::new(AtomicUsize::new(0));
        let h = {
            let calls = calls.clone();
            handler_fn(move |req| {
                calls.fetch_add(1, Ordering::Relaxed);
                echo(req)
            })
        };
        let (t, stats) = serve_with(MemTransport::new(input), &h, &HttpConfig::default());
        let short = &input[..input.len().min(60)];
        let r = responses(&t.output);
        assert_eq!(r.len(), 1, "{short:?}");
        assert_eq!(r[0].status, want, "{short:?}");
        assert!(r[0].closes(), "{short:?}");
        assert_eq!(
            r[0].body,
            format!(
                "{want} {}\n",
                StatusCode::from_u16(want)
                    .unwrap()
                    .canonical_reason()
                    .unwrap()
            )
            .as_bytes()
        );
        assert!(t.lingered, "{short:?}");
        assert_eq!(stats.requests, 0);
        assert_eq!(stats.last_error.map(|s| s.as_u16()), Some(want));
        assert_eq!(calls.load(Ordering::Relaxed), 0, "{short:?}");
    }
}

#[test]
fn hostile_bodies() {
    let cases: Vec<(&str, u16)> = vec![
        ("5\r\nhello\r\n\r\n", 400),    // empty size line
        ("5\nhello\r\n0\r\n\r\n", 400), // bare LF
        ("5\r\nhelloXY0\r\n\r\n", 400), // no CRLF after data
        ("10000000000000000\r\n", 400), // 17 digits
        ("FFFFFFFFFFFFFFFF\r\n", 413),  // over max_body_bytes
        ("5\r\nhel", 400),              // EOF inside the body
    ];
    for (body, want) in cases {
        let input =
            format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let (t, stats) = serve(&input);
        let r = responses(&t.output);
        assert_eq!(r.len(), 1, "{body:?}");
        assert_eq!(r[0].status, want, "{body:?}");
        assert!(r[0].closes());
        assert!(t.lingered);
        assert_eq!(stats.requests, 1);
    }
    let long_ext = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
        "e".repeat(2000)
    );
    let (t, _) = serve(&long_ext);
    assert_eq!(responses(&t.output)[0].status, 400);

    // Decoded body over the limit.
    let cfg = HttpConfig {
        max_body_bytes: 4,
        ..HttpConfig::default()
    };
    let input =
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n";
    let (t, _) = serve_with(MemTransport::new(input), &echo, &cfg);
    assert_eq!(responses(&t.output)[0].status, 413);

    // The handler sees a distinguishable error.
    let h = |mut req: Request<RequestBody>| {
        let e = req.body_mut().read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(BodyError::from_io(&e), Some(BodyError::TooLarge));
        Response::new(ResponseBody::from("ignored"))
    };
    let (t, _) = serve_with(MemTransport::new(input), &h, &cfg);
    assert_eq!(responses(&t.output)[0].status, 413);

    // Body timeout: 408.
    let t = MemTransport::new("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        .with_timeout_at_end();
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(responses(&t.output)[0].status, 408);
    assert_eq!(stats.last_error, Some(StatusCode::REQUEST_TIMEOUT));
}

#[test]
fn dribbled_head() {
    let input = format!("POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok{GET}");
    let t = MemTransport::new(input).with_read_sizes(vec![1]);
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(stats.requests, 2);
    let r = responses(&t.output);
    assert_eq!(r[0].body, b"POST /d ok");

    // Dribbling past the head deadline: cut off with 408, never served.
    let cfg = HttpConfig {
        head_timeout: Duration::from_millis(30),
        ..HttpConfig::default()
    };
    let t = MemTransport::new(GET)
        .with_read_sizes(vec![1])
        .with_read_delay(Duration::from_millis(3));
    let (t, stats) = serve_with(t, &echo, &cfg);
    assert_eq!(stats.requests, 0);
    assert_eq!(responses(&t.output)[0].status, 408);
    assert!(!t.unread().is_empty());

    // A silent peer mid-head: 408.
    let t = MemTransport::new("GET / HTTP/1.1\r\nHo").with_timeout_at_end();
    let (t, _) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(responses(&t.output)[0].status, 408);
    assert!(t.lingered);
}

#[test]
fn handler_panic_is_500() {
    let h = |_req: Request<RequestBody>| -> Response<ResponseBody> { panic!("boom") };
    let (t, stats) = serve_with(
        MemTransport::new(format!("{GET}{GET}")),
        &h,
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.last_error, Some(StatusCode::INTERNAL_SERVER_ERROR));
    let r = responses(&t.output);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].status, 500);
    assert!(r[0].closes());
    assert!(t.lingered);
}

#[test]
fn server_owned_headers_and_statuses() {
    let h = |req: Request<RequestBody>| {
        let status = match req.uri().path() {
            "/204" => StatusCode::NO_CONTENT,
            "/304" => StatusCode::NOT_MODIFIED,
            _ => StatusCode::OK,
        };
        let close = req.uri().path() == "/close";
        let mut b = Response::builder()
            .status(status)
            .header("content-length", "999")
            .header("transfer-encoding", "gzip")
            .header("date", "yesterday")
            .header("x-app", "1");
        if close {
            b = b.header("connection", "close");
        }
        b.body(ResponseBody::from("body")).unwrap()
    };
    let input = "GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n\
                 GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /close HTTP/1.1\r\nHost: x\r\n\r\n\
                 GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (t, stats) = serve_with(MemTransport::new(input), &h, &HttpConfig::default());
    assert_eq!(stats.requests, 4);
    let r = responses(&t.output);
    assert_eq!(r.len(), 4);
    for resp in &r[..2] {
        assert!(resp.body.is_empty());
        assert_eq!(resp.header("content-length"), None);
        assert_eq!(resp.header("transfer-encoding"), None);
    }
    assert_eq!(r[2].header("content-length"), Some("4"));
    assert_eq!(r[2].header("x-app"), Some("1"));
    assert_ne!(r[2].header("date"), Some("yesterday"));
    assert!(!r[2].closes());
    assert!(r[3].closes());
    assert_eq!(r[3].body, b"body");
}

/// Mutated requests, split at random points: the server must never panic,
/// always close once, and answer with well-formed responses.
#[test]
fn garbage_never_panics() {
    let seeds: [&[u8]; 4] = [
        b"GET /a?b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a\r\nhello\r\n0\r\nT: 1\r\n\r\n",
        b"HEAD / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
    ];
    let alphabet = b"\r\n :;,0123456789abcdefHTTP/1.chunked\t\0\x7f\xff";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let cfg = HttpConfig {
        max_head_bytes: 256,
        max_target_len: 64,
        max_headers: 8,
        max_body_bytes: 64,
        max_chunk_ext_len: 16,
        discard_body_limit: 8,
        ..HttpConfig::default()
    };
    for _ in 0..3000 {
        let mut input = Vec::new();
        for _ in 0..1 + rand(3) {
            input.extend_from_slice(seeds[rand(seeds.len())]);
        }
        for _ in 0..rand(4) {
            let at = rand(input.len());
            match rand(3) {
                0 => input[at] = alphabet[rand(alphabet.len())],
                1 => input.insert(at, alphabet[rand(alphabet.len())]),
                _ => {
                    input.remove(at);
                }
            }
        }
        let sizes = (0..4).map(|_| 1 + rand(40)).collect();
        let t = MemTransport::new(input.clone()).with_read_sizes(sizes);
        let (t, _) = serve_with(t, &echo, &cfg);
        // Every response head parses (bodies may be HEAD-less; skip them).
        let mut hs = [httparse::EMPTY_HEADER; 64];
        if !t.output.is_empty() {
            let mut r = httparse::Response::new(&mut hs);
            assert!(
                r.parse(&t.output).is_ok(),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
