//! The HTTP/1.1 layer over real sockets, against the real demo process:
//! keep-alive and pipelining, request bodies, `Expect: 100-continue`, HEAD,
//! streamed responses, hostile input, the head timeout, the connection
//! limit, handler panics, file-descriptor exhaustion, idle connections
//! holding no threads and slow handlers holding up nobody else.
//!
//! Every test starts its own server on 127.0.0.1 port 0; every wait is
//! bounded by a deadline or a socket timeout.

mod common;
use common::*;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// `n` connections, each served one `GET /` (200, kept alive) and left open.
fn kept_alive_clients(s: &Server, n: usize) -> Vec<Client> {
    (0..n)
        .map(|i| {
            let mut c = Client::new(s.addr).unwrap();
            let r = c.get("/").unwrap_or_else(|e| panic!("client {i}: {e}"));
            assert_eq!(r.status, 200, "client {i}");
            assert!(!r.closes(), "client {i} kept alive");
            c
        })
        .collect()
}

/// A minimal HTTP/1.1 GET with keep-alive.
fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// True if the error is what a socket read timeout gives.
fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// True if the server process (our direct child) is still running.
fn alive(s: &mut Server) -> bool {
    s.child
        .as_mut()
        .unwrap()
        .try_wait()
        .expect("try_wait")
        .is_none()
}

/// Checks a `Date` header looks like an IMF-fixdate:
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn assert_imf_date(r: &Resp) {
    let date = r
        .header("date")
        .unwrap_or_else(|| panic!("no Date header in {r:?}"));
    let b = date.as_bytes();
    assert_eq!(b.len(), 29, "Date {date:?}");
    assert_eq!(&b[3..5], b", ", "Date {date:?}");
    assert!(date.ends_with(" GMT"), "Date {date:?}");
    assert!(
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&date[..3]),
        "Date {date:?}"
    );
}

/// Reads one line (with its line end) or fails at EOF.
fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    let n = r.read_line(&mut line).expect("read line");
    assert!(n > 0, "unexpected EOF");
    line
}

// ---------------------------------------------------------------------------
// 1. Persistent connections, pipelining, HTTP/1.0
// ---------------------------------------------------------------------------

#[test]
fn keep_alive_connection_serves_several_requests() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    let local = c.r.get_ref().local_addr().unwrap();
    let mut pids = Vec::new();
    for i in 0..5 {
        let path = if i % 2 == 0 { "/" } else { "/pid" };
        let r = c.get(path).unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(r.status, 200, "request {i}");
        assert!(!r.closes(), "request {i} closed the connection: {r:?}");
        if path == "/" {
            assert_eq!(r.body_str(), "hello\n");
        } else {
            pids.push(parse_pid_gen(&r.body_str()).0);
        }
    }
    // Still the same socket, and the server has not closed it.
    assert_eq!(c.r.get_ref().local_addr().unwrap(), local);
    assert!(!c.closed_within(Duration::from_millis(100)));
    assert!(pids.iter().all(|p| *p == s.first_pid()));
}

#[test]
fn pipelined_requests_in_one_write_are_answered_in_order() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    let all = format!(
        "{}{}{}",
        get_req("/pid"),
        get_req("/sleep?ms=50"),
        get_req("/")
    );
    c.send(all.as_bytes()).unwrap();
    let r1 = c.read("GET").unwrap();
    let r2 = c.read("GET").unwrap();
    let r3 = c.read("GET").unwrap();
    assert_eq!(r1.status, 200);
    assert!(r1.body_str().starts_with("pid="), "first: {r1:?}");
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body_str(), "slept 50 ms\n", "second");
    assert_eq!(r3.status, 200);
    assert_eq!(r3.body_str(), "hello\n", "third");
    for r in [&r1, &r2, &r3] {
        assert!(!r.closes(), "{r:?}");
    }
    // Nothing else was sent, and the connection is still usable.
    assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
}

#[test]
fn http10_without_keep_alive_closes_after_response() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "HTTP/1.0 connection without keep-alive was not closed"
    );
}

#[test]
fn http10_with_keep_alive_stays_open_for_a_second_request() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
        "HTTP/1.0 keep-alive response should say so: {r:?}"
    );
    assert!(!c.closed_within(Duration::from_millis(100)));
    c.send(b"GET /pid HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body_str().starts_with("pid="), "{r:?}");
}

#[test]
fn http10_streamed_response_is_delimited_by_close() {
    let s = Server::start(&[]);
    // HTTP/1.0 has no chunked coding: the body ends when the server closes.
    let out = raw_exchange(s.addr, b"GET /stream?chunks=3&ms=10 HTTP/1.0\r\n\r\n").unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{text:?}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding"), "{text:?}");
    assert!(lower.contains("connection: close"), "{text:?}");
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\n");
}

#[test]
fn connection_close_request_ends_the_connection_after_its_response() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    // The second request comes after "Connection: close": never answered.
    c.send(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\nGET /pid HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(r.closes(), "{r:?}");
    assert!(c.closed_within(Duration::from_secs(3)));
}

// ---------------------------------------------------------------------------
// 2. Request bodies, Expect: 100-continue, HEAD, streamed responses
// ---------------------------------------------------------------------------

#[test]
fn chunked_post_echo_returns_body() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // The body arrives in several writes, as a streaming client sends it.
    c.send(b"5\r\nhello\r\n").unwrap();
    c.send(b"6;ext=1\r\n world\r\n").unwrap();
    c.send(b"0\r\nX-Trailer: t\r\n\r\n").unwrap();
    let r = c.read("POST").unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_str(), "hello world");
    assert!(!r.closes());
    // The connection stays usable after a chunked body.
    assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
}

#[test]
fn content_length_post_echo_returns_body() {
    let s = Server::start(&[]);
    let r = request(s.addr, "POST", "/echo", b"some body bytes").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"some body bytes");

    // A larger body, in several reads, on a keep-alive connection.
    let big: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut c = Client::new(s.addr).unwrap();
    let mut req = format!(
        "PUT /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    req.extend_from_slice(&big);
    c.send(&req).unwrap();
    let r = c.read("PUT").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), big.len());
    assert!(r.body == big, "echoed body differs");
    assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
}

#[test]
fn unread_request_body_is_discarded_and_connection_kept() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    // POST / is 405: the handler never reads the body, the server must skip
    // it so the pipelined next request is parsed from the right place.
    c.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 12\r\n\r\nGET /nope xxGET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let r = c.read("POST").unwrap();
    assert_eq!(r.status, 405);
    assert!(!r.closes(), "{r:?}");
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
}

#[test]
fn expect_100_continue_gets_interim_response_before_body() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    // Only the head was sent: the server must ask for the body.
    let status = read_line(&mut c.r);
    assert!(
        status.starts_with("HTTP/1.1 100 "),
        "expected 100 Continue, got {status:?}"
    );
    // The interim response ends with an empty line (headers, if any, first).
    for _ in 0..20 {
        if read_line(&mut c.r).trim_end().is_empty() {
            break;
        }
    }
    c.send(b"hello").unwrap();
    let r = c.read("POST").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello");
    assert!(!r.closes());
    assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
}

#[test]
fn head_has_content_length_but_no_body() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let r = c.read("HEAD").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("6"), "{r:?}");
    assert!(r.body.is_empty());
    // Had the server sent body bytes, this response would not parse.
    let r = c.get("/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
}

#[test]
fn stream_route_is_chunked_and_yields_five_chunks() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    c.send(get_req("/stream?chunks=5&ms=20").as_bytes())
        .unwrap();
    let status = read_line(&mut c.r);
    assert!(status.starts_with("HTTP/1.1 200 "), "{status:?}");
    let mut chunked = false;
    for _ in 0..100 {
        let line = read_line(&mut c.r);
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').expect("header line");
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.trim().eq_ignore_ascii_case("chunked");
        }
        assert!(
            !k.eq_ignore_ascii_case("content-length"),
            "streamed response has a Content-Length"
        );
    }
    assert!(chunked, "streamed response is not chunked");
    let mut chunks = Vec::new();
    for _ in 0..100 {
        let size_line = read_line(&mut c.r);
        let size = usize::from_str_radix(size_line.trim_end(), 16)
            .unwrap_or_else(|_| panic!("bad chunk-size line {size_line:?}"));
        if size == 0 {
            assert_eq!(read_line(&mut c.r), "\r\n", "end of chunked body");
            break;
        }
        let mut data = vec![0u8; size + 2];
        c.r.read_exact(&mut data).unwrap();
        assert_eq!(&data[size..], b"\r\n", "chunk data not followed by CRLF");
        data.truncate(size);
        chunks.push(String::from_utf8(data).unwrap());
    }
    let want: Vec<String> = (0..5).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(chunks, want);
    // The chunked body was framed right: the connection is reusable.
    assert_eq!(c.get("/").unwrap().body_str(), "hello\n");
}

// ---------------------------------------------------------------------------
// 3. Hostile input
// ---------------------------------------------------------------------------

#[test]
fn hostile_requests_get_their_status_and_a_closed_connection() {
    let s = Server::start(&["--max-body-bytes", "1000"]);
    let post_chunked = |body: &[u8]| -> Vec<u8> {
        let mut v =
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        v.extend_from_slice(body);
        v
    };
    let mut big_chunk = b"7d0\r\n".to_vec(); // 2000 bytes
    big_chunk.extend_from_slice(&[b'x'; 2000]);
    big_chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut long_ext = b"5;".to_vec();
    long_ext.extend_from_slice(&[b'e'; 2000]);
    long_ext.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
    let mut cl_over = b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2000\r\n\r\n".to_vec();
    cl_over.extend_from_slice(&[b'x'; 2000]);

    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "missing Host on HTTP/1.1",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Host headers",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n".to_vec(),
            400,
        ),
        (
            "Content-Length: +5",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: +5\r\n\r\nhello".to_vec(),
            400,
        ),
        (
            "Content-Length: abc",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\nhello".to_vec(),
            400,
        ),
        (
            "two differing Content-Lengths",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
            400,
        ),
        (
            "Transfer-Encoding and Content-Length",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "Transfer-Encoding: gzip",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            501,
        ),
        (
            "Transfer-Encoding: xchunked",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: xchunked\r\n\r\n".to_vec(),
            501,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            400,
        ),
        (
            "empty chunk-size line",
            post_chunked(b"\r\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk extension over the limit",
            post_chunked(&long_ext),
            400,
        ),
        (
            "bare LF after chunk size",
            post_chunked(b"5\nhello\r\n0\r\n\r\n"),
            400,
        ),
        (
            "head over the limit",
            format!(
                "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
                "b".repeat(17_000)
            )
            .into_bytes(),
            431,
        ),
        (
            "too many header fields",
            format!(
                "GET / HTTP/1.1\r\nHost: test\r\n{}\r\n",
                "X-A: b\r\n".repeat(101)
            )
            .into_bytes(),
            431,
        ),
        (
            "request-target too long",
            format!(
                "GET /{} HTTP/1.1\r\nHost: test\r\n\r\n",
                "a".repeat(9000)
            )
            .into_bytes(),
            414,
        ),
        (
            "Content-Length over --max-body-bytes",
            cl_over,
            413,
        ),
        (
            "chunked body over --max-body-bytes",
            post_chunked(&big_chunk),
            413,
        ),
        (
            "HTTP/2.0",
            b"GET / HTTP/2.0\r\nHost: test\r\n\r\n".to_vec(),
            505,
        ),
        (
            "HTTP/1.2",
            b"GET / HTTP/1.2\r\nHost: test\r\n\r\n".to_vec(),
            505,
        ),
        (
            "garbage request line",
            b"\x16\x03\x01 hello there\r\n\r\n".to_vec(),
            400,
        ),
        (
            "request line without version",
            b"GET /\r\n\r\n".to_vec(),
            400,
        ),
    ];

    for (name, bytes, want) in &cases {
        let out = raw_exchange(s.addr, bytes)
            .unwrap_or_else(|e| panic!("{name}: no response and close: {e}"));
        let text = String::from_utf8_lossy(&out);
        let prefix = format!("HTTP/1.1 {want} ");
        assert!(
            text.starts_with(&prefix),
            "{name}: expected {want}, got {text:?}"
        );
        let mut rd = &out[..];
        let r = read_response(&mut rd, "GET")
            .unwrap_or_else(|e| panic!("{name}: unparsable response {text:?}: {e}"));
        assert_eq!(r.status, *want, "{name}");
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "{name}: no Connection: close in {text:?}"
        );
        assert!(
            rd.is_empty(),
            "{name}: bytes after the error response: {:?}",
            String::from_utf8_lossy(rd)
        );
        assert_imf_date(&r);
    }

    // The server still serves the next client, and nothing panicked.
    let r = get(s.addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    let log = s.log.text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

// ---------------------------------------------------------------------------
// 4. Slowloris: the head timeout
// ---------------------------------------------------------------------------

#[test]
fn dribbled_request_head_is_cut_off_by_head_timeout() {
    let s = Server::start(&["--head-timeout-ms", "500"]);
    // 27 + 60 bytes at 100 ms each would take almost 9 s.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(60)
    );
    let mut sock = connect(s.addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut cut = None;
    let mut buf = [0u8; 4096];
    'bytes: for b in head.bytes() {
        if sock.write_all(&[b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        // Waits about 100 ms for the server to say anything.
        match sock.read(&mut buf) {
            Ok(0) => {
                cut = Some(start.elapsed());
                break;
            }
            Ok(n) => {
                cut = Some(start.elapsed());
                got.extend_from_slice(&buf[..n]);
                // Read the rest of the answer until the close (bounded).
                sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                for _ in 0..100 {
                    match sock.read(&mut buf) {
                        Ok(0) => break 'bytes,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break 'bytes,
                        Err(e) => panic!("reading after the cut: {e}"),
                    }
                }
                panic!("server kept sending after the cut");
            }
            Err(e) if is_timeout(&e) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                cut = Some(start.elapsed());
                break;
            }
            Err(e) => panic!("read: {e}"),
        }
    }
    let cut = cut.expect("the dribbling client was never cut off");
    let text = String::from_utf8_lossy(&got);
    assert!(
        cut < Duration::from_secs(3),
        "cut only after {cut:?} (head timeout 500 ms)"
    );
    assert!(
        cut >= Duration::from_millis(300),
        "cut after {cut:?}, before the head timeout"
    );
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408 "),
        "dribbling client got {text:?}"
    );
    assert!(!text.contains(" 200 "), "dribbling client was served");
    // Others are still served.
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
}

#[test]
fn silent_connection_is_closed_by_head_timeout() {
    // Without TCP_DEFER_ACCEPT the head timeout starts at the handshake.
    let s = Server::start(&["--head-timeout-ms", "500", "--defer-accept-ms", "0"]);
    let mut c = Client::new(s.addr).unwrap();
    let t = Instant::now();
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "a connection that sends nothing was kept open"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1400),
        "closed after {took:?} (head timeout 500 ms, no deferred accept)"
    );
}

#[test]
fn silent_connection_is_accepted_after_the_defer_period_then_timed_out() {
    // By default the kernel holds a connection until its first bytes arrive
    // (TCP_DEFER_ACCEPT, 1 s): one that stays silent is accepted after 1 s,
    // and its head timeout starts then.
    let s = Server::start(&["--head-timeout-ms", "500"]);
    let pid = s.first_pid();
    let t = Instant::now();
    let mut silent = Client::new(s.addr).unwrap();
    let port = silent.r.get_ref().local_addr().unwrap().port();
    // A client that speaks at once is served meanwhile.
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    s.log.wait_line(
        &format!("[{pid}] accepted Inet(127.0.0.1:{port})"),
        0,
        Duration::from_secs(10),
    );
    let accepted = t.elapsed();
    assert!(
        accepted >= Duration::from_millis(900),
        "a silent connection was accepted {accepted:?} after connecting (defer 1 s)"
    );
    assert!(
        silent.closed_within(Duration::from_secs(5)),
        "a connection that sends nothing was kept open"
    );
    let closed = t.elapsed();
    assert!(
        closed >= accepted + Duration::from_millis(300),
        "closed {closed:?} after connecting, accepted at {accepted:?}: the head timeout \
         (500 ms) starts at accept"
    );
}

// ---------------------------------------------------------------------------
// 5. --max-connections: backpressure through the backlog
// ---------------------------------------------------------------------------

#[test]
fn max_connections_holds_extra_client_until_a_slot_frees() {
    let s = Server::start(&["--max-connections", "4"]);
    let mut held = kept_alive_clients(&s, 4);

    // The fifth connects (the backlog holds it) and asks, but is not served.
    let mut fifth = Client::new(s.addr).expect("connect through the backlog");
    fifth.send(get_req("/").as_bytes()).unwrap();
    fifth
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    match fifth.r.get_ref().peek(&mut b) {
        Err(e) if is_timeout(&e) => {}
        other => panic!("fifth client got an answer while 4 connections are open: {other:?}"),
    }

    // One of the four leaves: the fifth is served promptly.
    drop(held.remove(0));
    fifth
        .r
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let t = Instant::now();
    let r = fifth
        .read("GET")
        .expect("fifth client served after a slot freed");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "fifth client waited {:?}",
        t.elapsed()
    );
    // The remaining held connections still work.
    for c in held.iter_mut() {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
}

// ---------------------------------------------------------------------------
// 6. Handler panics
// ---------------------------------------------------------------------------

#[test]
fn handler_panic_answers_500_and_server_keeps_serving() {
    let mut s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    let r = c.get("/panic").unwrap();
    assert_eq!(r.status, 500);
    assert!(r.closes(), "500 after a panic must close: {r:?}");
    assert!(
        c.closed_within(Duration::from_secs(3)),
        "connection not closed after the panic"
    );
    let r = get(s.addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(alive(&mut s), "server died after a handler panic");
}

// ---------------------------------------------------------------------------
// 7. File-descriptor exhaustion
// ---------------------------------------------------------------------------

/// True if `prog` is an executable on `PATH`.
fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// Starts the demo with `RLIMIT_NOFILE` set to `nofile` (soft and hard).
fn start_with_nofile(nofile: u32) -> Server {
    let dir = TempDir::new("nofile");
    let pid_file = dir.path().join("server.pid");
    let mut cmd = if on_path("prlimit") {
        let mut c = Command::new("prlimit");
        c.arg(format!("--nofile={nofile}:{nofile}")).arg(hello());
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("ulimit -n {nofile}; exec \"$0\" \"$@\""))
            .arg(hello());
        c
    };
    cmd.args(["--listen", "127.0.0.1:0", "--no-raise-nofile", "--pid-file"])
        .arg(&pid_file);
    Server::from_command(cmd, dir, pid_file)
}

#[test]
fn fd_exhaustion_backs_off_and_recovers() {
    let mut s = start_with_nofile(40);
    // Many keep-alive clients: the server runs out of descriptors.
    let mut clients: Vec<TcpStream> = Vec::new();
    for i in 0..60 {
        let mut c = connect(s.addr).unwrap_or_else(|e| panic!("connect {i}: {e}"));
        c.write_all(get_req("/").as_bytes())
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        clients.push(c);
    }
    let (emfile_at, _) = s
        .log
        .wait_line("Too many open files", 0, Duration::from_secs(10));
    assert!(alive(&mut s), "server died when out of descriptors");

    // Some clients were served before the limit hit.
    let mut first = BufReader::new(clients.remove(0));
    let r = read_response(&mut first, "GET").expect("first client served");
    assert_eq!(r.status, 200);
    drop(first);

    // Everyone leaves; the accept loop recovers after its back-off.
    drop(clients);
    let t = Instant::now();
    let r = wait_for(
        "a 200 after the clients left",
        Duration::from_secs(10),
        || {
            let mut c = connect(s.addr).ok()?;
            c.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
            c.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                .ok()?;
            read_response(&mut BufReader::new(c), "GET").ok()
        },
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hello\n");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "recovered only after {:?}",
        t.elapsed()
    );
    s.log
        .wait_line("available again", emfile_at, Duration::from_secs(5));
    assert!(alive(&mut s), "server died after fd exhaustion");
    let log = s.log.text();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}

// ---------------------------------------------------------------------------
// 8. Unknown paths, Date header
// ---------------------------------------------------------------------------

#[test]
fn unknown_path_is_404_and_responses_carry_a_date() {
    let s = Server::start(&[]);
    let r = get(s.addr, "/no/such/path").unwrap();
    assert_eq!(r.status, 404);
    assert_imf_date(&r);
    let r = get(s.addr, "/").unwrap();
    assert_eq!(r.status, 200);
    assert_imf_date(&r);
    let mut c = Client::new(s.addr).unwrap();
    c.send(get_req("/stream?chunks=2").as_bytes()).unwrap();
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_imf_date(&r);
}

// ---------------------------------------------------------------------------
// 9. Idle connections hold no threads; slow handlers hold up nobody else
// ---------------------------------------------------------------------------

#[test]
fn idle_keep_alive_connections_hold_no_threads() {
    let s = Server::start(&[]);
    let pid = s.first_pid();
    // 300 keep-alive connections, each served once and then idle.
    let mut clients = kept_alive_clients(&s, 300);
    // A thread per connection would be 300+ threads; parked connections
    // need none (main, signals, accept, idle poller and a few workers).
    let n = proc_entries(pid, "task");
    assert!(n < 40, "{n} threads for 300 idle connections");
    // Every idle connection still works, in any order.
    for (i, c) in clients.iter_mut().enumerate().rev() {
        let r = c.get("/pid").unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(r.status, 200, "client {i}");
    }
    let n = proc_entries(pid, "task");
    assert!(n < 40, "{n} threads after a second request on each");
}

#[test]
fn slow_handlers_do_not_hold_up_other_connections() {
    let s = Server::start(&[]);
    // Sixteen requests that each take 1.5 s, all in flight at once...
    let mut slow: Vec<Client> = (0..16)
        .map(|_| {
            let mut c = Client::new(s.addr).unwrap();
            c.send(get_req("/sleep?ms=1500").as_bytes()).unwrap();
            c
        })
        .collect();
    // ...then a fast one on another connection, and a fast one on a
    // connection that was idle: both are answered while every slow one is
    // still running (none of their responses has arrived yet).
    let mut idle = Client::new(s.addr).unwrap();
    assert_eq!(idle.get("/").unwrap().status, 200);
    let t0 = Instant::now();
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    assert_eq!(idle.get("/").unwrap().status, 200);
    let fast_took = t0.elapsed();
    for (i, c) in slow.iter_mut().enumerate() {
        c.r.get_ref().set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        match c.r.get_ref().peek(&mut b) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!(
                "slow request {i} answered before the fast ones ({other:?}, fast took {fast_took:?})"
            ),
        }
        c.r.get_ref().set_nonblocking(false).unwrap();
    }
    // All sixteen finish together, not one after another (16 x 1.5 s).
    for (i, c) in slow.iter_mut().enumerate() {
        let r = c.read("GET").unwrap_or_else(|e| panic!("slow {i}: {e}"));
        assert_eq!(r.status, 200, "slow {i}");
    }
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "slow requests ran one after another: {:?}",
        t0.elapsed()
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout_not_before() {
    let s = Server::start(&["--idle-timeout-ms", "400"]);
    // A connection that sends a request every 150 ms is never idle for
    // 400 ms: it outlives several idle timeouts.
    let mut busy = Client::new(s.addr).unwrap();
    let t0 = Instant::now();
    let mut quiet_from = t0;
    for i in 0.. {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        let r = busy.get("/").unwrap();
        quiet_from = Instant::now();
        assert_eq!(r.status, 200);
        assert!(!r.closes());
        if t0.elapsed() >= Duration::from_millis(1200) {
            break;
        }
    }
    // Then it goes quiet: the server closes it (end of stream, no reset)
    // about 400 ms after its last response, not earlier.
    assert!(
        busy.closed_within(Duration::from_secs(5)),
        "idle connection not closed"
    );
    let idle_for = quiet_from.elapsed();
    assert!(
        idle_for >= Duration::from_millis(350),
        "closed after only {idle_for:?} idle (timeout 400 ms)"
    );
    // The server itself is fine.
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
}
