//! Connection-level tests over [`MemTransport`].

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};

use crate::http::{
    handler_fn, serve_connection, BodyError, Config, ConnStats, Handler, Idle, MemTransport,
    RequestBody, ResponseBody,
};

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
}

/// Parses every response in `out` (no HEAD support: use raw output there).
fn responses(mut out: &[u8]) -> Vec<Resp> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(out).expect("valid response head") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response: {out:?}"),
        };
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        out = &out[n..];
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            resp.body = out[..len].to_vec();
            out = &out[len..];
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let nl = out.iter().position(|&b| b == b'\n').unwrap();
                let size = usize::from_str_radix(std::str::from_utf8(&out[..nl - 1]).unwrap(), 16)
                    .unwrap();
                out = &out[nl + 1..];
                resp.body.extend_from_slice(&out[..size]);
                assert_eq!(&out[size..size + 2], b"\r\n");
                out = &out[size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else {
            resp.body = out.to_vec();
            out = &[];
        }
        all.push(resp);
    }
    all
}

/// Echoes the method, path and body.
fn echo(mut req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
    let mut body = Vec::new();
    if let Err(e) = req.body_mut().read_to_end(&mut body) {
        return Response::new(ResponseBody::from(format!("error: {e}")));
    }
    let mut out = format!("{} {} ", req.method(), req.uri()).into_bytes();
    out.extend_from_slice(&body);
    Response::new(ResponseBody::from(out))
}

fn hello(_req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
    Response::new(ResponseBody::from("hello\n"))
}

fn serve_with<H: Handler>(t: MemTransport, h: &H, cfg: &Config) -> (MemTransport, ConnStats) {
    let mut t = t;
    let stats = serve_connection(&mut t, h, cfg);
    assert_eq!(t.closes, 1, "closed exactly once");
    assert!(!t.busy, "left busy");
    (t, stats)
}

fn serve(input: &str) -> (MemTransport, ConnStats) {
    serve_with(MemTransport::new(input), &echo, &Config::default())
}

const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn closure_handler() {
    let mut t = MemTransport::new(GET);
    let stats = serve_connection(
        &mut t,
        &|_req: http::Request<RequestBody>| http::Response::new(ResponseBody::from("hello\n")),
        &Config::default(),
    );
    assert_eq!(stats.requests, 1);
    let r = responses(&t.output);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, b"hello\n");
    assert!(t.output_str().contains("\r\nDate: "));
    // A closure capturing state, through handler_fn.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = {
        let hits = hits.clone();
        handler_fn(move |_req| {
            hits.fetch_add(1, Ordering::Relaxed);
            Response::new(ResponseBody::empty())
        })
    };
    let (_t, _) = serve_with(MemTransport::new(GET), &h, &Config::default());
    assert_eq!(hits.load(Ordering::Relaxed), 1);
    // And as a trait object.
    let dynh: Box<dyn Handler> = Box::new(hello);
    let mut t = MemTransport::new(GET);
    serve_connection(&mut t, &*dynh, &Config::default());
    assert_eq!(responses(&t.output)[0].body, b"hello\n");
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
    let (t, stats) = serve_with(t, &echo, &Config::default());
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
            let (t, stats) = serve_with(t, &echo, &Config::default());
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
    let (t, _) = serve_with(MemTransport::new(input), &hello, &Config::default());
    let out = t.output_str();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(responses(&t.output)[0].closes());

    // Too large: 413 before the handler, no 100.
    let cfg = Config {
        max_body_bytes: 1,
        ..Config::default()
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
        &Config::default(),
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
        &Config::default(),
    );
    let out = t.output_str();
    assert!(out.contains("Transfer-Encoding: chunked\r\n"));
    assert!(out.ends_with("\r\n\r\n") && !out.contains("\r\n\r\n5"));
}

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
        &Config::default(),
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
        &Config::default(),
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
        &Config::default(),
    );
    assert_eq!(stats.requests, 1);
    let out = t.output_str();
    assert!(out.ends_with("\r\n\r\n1\r\nx\r\n"), "{out:?}");
    assert!(t.lingered);
}

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
        let (t, stats) = serve_with(MemTransport::new(input), &h, &Config::default());
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
    let cfg = Config {
        max_body_bytes: 4,
        ..Config::default()
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
    let (t, stats) = serve_with(t, &echo, &Config::default());
    assert_eq!(responses(&t.output)[0].status, 408);
    assert_eq!(stats.last_error, Some(StatusCode::REQUEST_TIMEOUT));
}

#[test]
fn dribbled_head() {
    let input = format!("POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok{GET}");
    let t = MemTransport::new(input).with_read_sizes(vec![1]);
    let (t, stats) = serve_with(t, &echo, &Config::default());
    assert_eq!(stats.requests, 2);
    let r = responses(&t.output);
    assert_eq!(r[0].body, b"POST /d ok");

    // Dribbling past the head deadline: cut off with 408, never served.
    let cfg = Config {
        head_timeout: Duration::from_millis(30),
        ..Config::default()
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
    let (t, _) = serve_with(t, &echo, &Config::default());
    assert_eq!(responses(&t.output)[0].status, 408);
    assert!(t.lingered);
}

#[test]
fn idle_ends() {
    // Nothing ever sent and a timeout: closed silently.
    let t = MemTransport::new("").with_timeout_at_end();
    let (t, stats) = serve_with(t, &echo, &Config::default());
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
    let (t, stats) = serve_with(t, &echo, &Config::default());
    assert_eq!(stats.requests, 2);
    let r = responses(&t.output);
    assert!(!r[0].closes());
    assert!(r[1].closes());
    // Drain and nothing comes: closed without a response.
    let t = MemTransport::new(GET).with_idle_script(vec![Idle::Data, Idle::Drain, Idle::TimedOut]);
    let (t, stats) = serve_with(t, &echo, &Config::default());
    assert_eq!(stats.requests, 1);
    assert_eq!(responses(&t.output).len(), 1);
    assert!(t.lingered);
    // Draining while a request is in flight: its response says close.
    let h = |_req: Request<RequestBody>| Response::new(ResponseBody::from("x"));
    let mut t = MemTransport::new(format!("{GET}{GET}"));
    t.draining = true;
    let (t, stats) = serve_with(t, &h, &Config::default());
    assert_eq!(stats.requests, 1);
    assert!(responses(&t.output)[0].closes());
}

#[test]
fn handler_panic_is_500() {
    let h = |_req: Request<RequestBody>| -> Response<ResponseBody> { panic!("boom") };
    let (t, stats) = serve_with(
        MemTransport::new(format!("{GET}{GET}")),
        &h,
        &Config::default(),
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
    let (t, stats) = serve_with(MemTransport::new(input), &h, &Config::default());
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

#[test]
fn unread_bodies() {
    // Small unread bodies are drained; the connection stays open.
    let cl = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let ch =
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for input in [cl, ch] {
        let t = MemTransport::new(format!("{input}{GET}")).with_read_sizes(vec![40, 3]);
        let (t, stats) = serve_with(t, &hello, &Config::default());
        assert_eq!(stats.requests, 2, "{input:?}");
        let r = responses(&t.output);
        assert_eq!(r.len(), 2);
        assert!(!r[0].closes());
    }
    // Too big to drain: close after the response.
    let cfg = Config {
        discard_body_limit: 4,
        ..Config::default()
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
    let (t, _) = serve_with(MemTransport::new(GET), &h, &Config::default());
    assert_eq!(t.writes, 1);
    let r = responses(&t.output);
    assert_eq!(r[0].body.len(), 100_000);
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
    let cfg = Config {
        max_head_bytes: 256,
        max_target_len: 64,
        max_headers: 8,
        max_body_bytes: 64,
        max_chunk_ext_len: 16,
        discard_body_limit: 8,
        ..Config::default()
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
