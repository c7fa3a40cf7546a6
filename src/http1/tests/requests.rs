//! Ordinary requests: keep-alive, pipelining, bodies, HEAD, streaming, idle ends.

use super::*;
use std::io::{self, Read};
use std::time::Duration;

use http::{Request, Response};

use crate::http1::{HttpConfig, Idle, MemTransport, RequestBody, ResponseBody};

/// Yields its pieces one per read, optionally sleeping first.
struct Pieces(Vec<&'static [u8]>, Duration);

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        std::thread::sleep(self.1);
        let p = self.0.remove(0);
        buf[..p.len()].copy_from_slice(p);
        Ok(p.len())
    }
}

#[test]
fn keep_alive_three_requests() {
    let reqs = [
        "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    let sizes = reqs.iter().map(|r| r.len()).collect();
    let t = MemTransport::new(reqs.concat()).with_read_sizes(sizes);
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.last_error, None);
    let r = responses(&t.output);
    assert_eq!(r.len(), 3);
    for (resp, path) in r.iter().zip(["/a", "/b", "/c"]) {
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, format!("GET {path} ").as_bytes());
        assert!(!resp.closes());
        assert!(resp.header("content-length").is_some());
    }
    // Peer EOF: no linger needed.
    assert!(!t.lingered);
}

#[test]
fn pipelining() {
    let input = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
                 POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                 GET /3 HTTP/1.1\r\nHost: x\r\n\r\n";
    let (t, stats) = serve(input);
    assert_eq!(stats.requests, 3);
    let r = responses(&t.output);
    let bodies: Vec<_> = r.iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies,
        [&b"GET /1 "[..], b"POST /2 abc", b"GET /3 "].map(|b| b.to_vec())
    );
    // Each response is one write.
    assert_eq!(t.writes, 3);
}

#[test]
fn http10_close_and_keep_alive() {
    let (t, stats) = serve("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n");
    assert_eq!(stats.requests, 1);
    let r = responses(&t.output);
    assert_eq!(r.len(), 1);
    assert!(r[0].closes());
    assert!(t.lingered, "unread pipelined bytes: linger");

    let (t, stats) = serve("GET / HTTP/1.0\r\n\r\n");
    assert_eq!(stats.requests, 1);
    assert!(
        !t.lingered,
        "client asked to close, nothing left: plain close"
    );

    let (t, stats) = serve(
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(stats.requests, 2);
    let r = responses(&t.output);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].header("connection"), Some("keep-alive"));

    let (t, stats) = serve(
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", /* */
    );
    assert_eq!(stats.requests, 1);
    assert!(responses(&t.output)[0].closes());
}

#[test]
fn post_bodies() {
    let cl = "POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    let chunked = "POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                   5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
    for input in [cl, chunked] {
        for sizes in [vec![], vec![1], vec![7, 3]] {
            let t = MemTransport::new(format!("{input}{GET}")).with_read_sizes(sizes.clone());
            let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
            assert_eq!(stats.requests, 2, "{sizes:?}");
            let r = responses(&t.output);
            assert_eq!(r[0].body, b"POST /e hello world", "{input:?} {sizes:?}");
            assert_eq!(r[1].body, b"GET / ");
        }
    }
}

#[test]
fn expect_continue() {
    let input = "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
    let (t, _) = serve(input);
    let out = t.output_str();
    assert!(
        out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
        "{out}"
    );
    assert!(out.ends_with("POST / hi"));

    // The handler does not read: no 100, and the connection closes.
    let (t, _) = serve_with(MemTransport::new(input), &hello, &HttpConfig::default());
    let out = t.output_str();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(responses(&t.output)[0].closes());

    // Too large: 413 before the handler, no 100.
    let cfg = HttpConfig {
        max_body_bytes: 1,
        ..HttpConfig::default()
    };
    let (t, stats) = serve_with(MemTransport::new(input), &echo, &cfg);
    assert_eq!(stats.requests, 0);
    assert!(t
        .output_str()
        .starts_with("HTTP/1.1 413 Payload Too Large\r\n"));

    // No body expected: no 100.
    let (t, _) = serve("GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n");
    assert!(t.output_str().starts_with("HTTP/1.1 200 OK\r\n"));
    // HTTP/1.0: ignored.
    let (t, _) = serve("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
    assert!(t.output_str().starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn head_requests() {
    let (t, stats) = serve_with(
        MemTransport::new(format!("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n{GET}")),
        &hello,
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 2);
    let out = t.output_str();
    let second = out[1..].find("HTTP/1.1 200 OK").unwrap() + 1;
    let (head_resp, get_resp) = out.split_at(second);
    assert!(head_resp.contains("Content-Length: 6\r\n"));
    assert!(
        head_resp.ends_with("\r\n\r\n"),
        "no body for HEAD: {head_resp:?}"
    );
    assert!(get_resp.ends_with("\r\n\r\nhello\n"));

    // Stream + HEAD: chunked header, no body, reader untouched.
    let h =
        |_req: Request<RequestBody>| Response::new(ResponseBody::stream(io::repeat(b'x').take(5)));
    let (t, _) = serve_with(
        MemTransport::new("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
        &h,
        &HttpConfig::default(),
    );
    let out = t.output_str();
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    assert!(out.ends_with("\r\n\r\n") && !out.contains("\r\n\r\n5"));
}

#[test]
fn streamed_response() {
    let h = |_req: Request<RequestBody>| {
        Response::new(ResponseBody::stream(Pieces(
            vec![b"ab", b"cde"],
            Duration::from_millis(1),
        )))
    };
    let (t, stats) = serve_with(
        MemTransport::new(format!("{GET}{GET}")),
        &h,
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 2);
    let out = t.output_str();
    assert!(out.contains("Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"));
    // head, 2 chunks, last chunk: per response.
    assert_eq!(t.writes, 8);
    let r = responses(&t.output);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].body, b"abcde");

    // HTTP/1.0: raw, then close.
    let (t, stats) = serve_with(
        MemTransport::new("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"),
        &h,
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 1);
    let out = t.output_str();
    assert!(!out.contains("Transfer-Encoding"));
    assert!(out.contains("Connection: close\r\n"));
    assert!(out.ends_with("\r\n\r\nabcde"));
}

#[test]
fn failing_stream_closes() {
    struct Boom(bool);
    impl Read for Boom {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 {
                panic!("reader boom");
            }
            self.0 = true;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let h = |_req: Request<RequestBody>| Response::new(ResponseBody::stream(Boom(false)));
    let (t, stats) = serve_with(
        MemTransport::new(format!("{GET}{GET}")),
        &h,
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 1);
    let out = t.output_str();
    assert!(out.ends_with("\r\n\r\n1\r\nx\r\n"), "{out:?}");
    assert!(t.lingered);
}

#[test]
fn idle_ends() {
    // Nothing ever sent and a timeout: closed silently.
    let t = MemTransport::new("").with_timeout_at_end();
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert!(t.output.is_empty());
    assert_eq!(stats.requests, 0);
    // EOF mid-head: closed silently.
    let (t, _) = serve("GET / HT");
    assert!(t.output.is_empty());
    assert!(!t.lingered);
}

#[test]
fn drain_while_idle() {
    // Drain during the keep-alive wait, a request within the grace: served
    // with Connection: close.
    let t = MemTransport::new(format!("{GET}{GET}"))
        .with_read_sizes(vec![GET.len()])
        .with_idle_script(vec![Idle::Data, Idle::Drain]);
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(stats.requests, 2);
    let r = responses(&t.output);
    assert!(!r[0].closes());
    assert!(r[1].closes());
    // Drain and nothing comes: closed without a response.
    let t = MemTransport::new(GET).with_idle_script(vec![Idle::Data, Idle::Drain, Idle::TimedOut]);
    let (t, stats) = serve_with(t, &echo, &HttpConfig::default());
    assert_eq!(stats.requests, 1);
    assert_eq!(responses(&t.output).len(), 1);
    assert!(t.lingered);
    // Draining while a request is in flight: its response says close.
    let h = |_req: Request<RequestBody>| Response::new(ResponseBody::from("x"));
    let mut t = MemTransport::new(format!("{GET}{GET}"));
    t.draining = true;
    let (t, stats) = serve_with(t, &h, &HttpConfig::default());
    assert_eq!(stats.requests, 1);
    assert!(responses(&t.output)[0].closes());
}

#[test]
fn unread_bodies() {
    // Small unread bodies are drained; the connection stays open.
    let cl = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let ch =
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for input in [cl, ch] {
        let t = MemTransport::new(format!("{input}{GET}")).with_read_sizes(vec![40, 3]);
        let (t, stats) = serve_with(t, &hello, &HttpConfig::default());
        assert_eq!(stats.requests, 2, "{input:?}");
        let r = responses(&t.output);
        assert_eq!(r.len(), 2);
        assert!(!r[0].closes());
    }
    // Too big to drain: close after the response.
    let cfg = HttpConfig {
        discard_body_limit: 4,
        ..HttpConfig::default()
    };
    for input in [cl, ch] {
        let (t, stats) = serve_with(MemTransport::new(format!("{input}{GET}")), &hello, &cfg);
        assert_eq!(stats.requests, 1, "{input:?}");
        let r = responses(&t.output);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, 200);
        assert!(r[0].closes());
        assert!(t.lingered);
    }
}

#[test]
fn large_fixed_body_is_vectored() {
    let big = vec![b'z'; 100_000];
    let h = move |_req: Request<RequestBody>| Response::new(ResponseBody::from(big.clone()));
    let (t, _) = serve_with(MemTransport::new(GET), &h, &HttpConfig::default());
    assert_eq!(t.writes, 1);
    let r = responses(&t.output);
    assert_eq!(r[0].body.len(), 100_000);
}

fn upgrading_echo(_req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::upgrade(|mut up: crate::http1::Upgraded| {
        let mut buf = [0u8; 64];
        while let Ok(n) = up.read(&mut buf) {
            if n == 0 || std::io::Write::write_all(&mut up, &buf[..n]).is_err() {
                break;
            }
        }
    }));
    *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    r.headers_mut()
        .insert(http::header::UPGRADE, "echo".parse().unwrap());
    r
}

#[test]
fn switching_protocols_hands_over_the_bytes_after_the_head() {
    let input = "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
                 Upgrade: echo\r\n\r\nhello, new protocol";
    let (t, stats) = serve_with(
        MemTransport::new(input),
        &handler_fn(upgrading_echo),
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 1);
    let out = t.output_str();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nupgrade: echo"), "{head}");
    assert!(head.contains("\r\nConnection: Upgrade"), "{head}");
    assert!(
        !head.contains("Content-Length") && !head.contains("chunked"),
        "{head}"
    );
    assert_eq!(rest, "hello, new protocol");
}

#[test]
fn switching_protocols_without_being_asked_is_a_500() {
    let (t, _) = serve_with(
        MemTransport::new(GET),
        &handler_fn(upgrading_echo),
        &HttpConfig::default(),
    );
    assert!(
        t.output_str().starts_with("HTTP/1.1 500 "),
        "{}",
        t.output_str()
    );
}
