//! Response bodies of known length (sized streams, files sent with
//! sendfile) and per-request limits on request bodies.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);

/// Byte `i` of the demo's pattern.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Sends `request` and reads the head: (status, lower-cased head, reader).
fn send(s: &Server, request: &str) -> (u16, String, BufReader<TcpStream>) {
    let mut c = connect(s.addr).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(c);
    let head = read_head(&mut r);
    let status = head[9..12].parse().unwrap();
    (status, head, r)
}

fn read_head(r: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "closed inside the head: {head}"
        );
        head.push_str(&line.to_ascii_lowercase());
        if line == "\r\n" {
            return head;
        }
    }
}

fn content_length(head: &str) -> Option<u64> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
}

/// Everything until the server closes the connection.
fn read_to_close(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut body = Vec::new();
    r.read_to_end(&mut body)
        .expect("the server closes (no hang)");
    body
}

fn check_pattern(body: &[u8]) {
    if let Some(i) = (0..body.len()).find(|&i| body[i] != pattern(i as u64)) {
        panic!(
            "byte {i} of {} is {}, not {}",
            body.len(),
            body[i],
            pattern(i as u64)
        );
    }
}

#[test]
fn a_sized_stream_says_its_length_and_keeps_the_connection() {
    let s = Server::start(&[]);
    let mut c = Client::new(s.addr).unwrap();
    for _ in 0..2 {
        let r = c.get("/sized?bytes=100000").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("100000"));
        assert_eq!(r.header("transfer-encoding"), None);
        check_pattern(&r.body);
        assert_eq!(r.body.len(), 100_000);
    }
}

#[test]
fn a_short_sized_stream_closes_the_connection_and_says_so() {
    let s = Server::start(&[]);
    let (status, head, mut r) = send(
        &s,
        "GET /sized?bytes=100000&short=1000 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(content_length(&head), Some(100_000));
    let body = read_to_close(&mut r);
    assert_eq!(
        body.len(),
        99_000,
        "fewer bytes than promised, then the close"
    );
    check_pattern(&body);
    s.log.wait_line(
        "response body ended 1000 bytes short of its Content-Length (100000)",
        0,
        T,
    );
}

#[test]
fn a_long_sized_stream_is_cut_at_its_length_and_closed() {
    let s = Server::start(&[]);
    let (status, head, mut r) = send(
        &s,
        "GET /sized?bytes=1000&long=10 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(content_length(&head), Some(1000));
    let body = read_to_close(&mut r);
    assert_eq!(body.len(), 1000);
    check_pattern(&body);
    s.log
        .wait_line("response body runs past its Content-Length (1000)", 0, T);
}

#[test]
fn a_64_mib_file_downloads_intact_across_a_restart() {
    const SIZE: u64 = 64 << 20;
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    // HEAD makes the demo write its file, and says its length.
    let (status, head, _) = send(
        &s,
        &format!("HEAD /file?bytes={SIZE} HTTP/1.1\r\nHost: t\r\n\r\n"),
    );
    assert_eq!((status, content_length(&head)), (200, Some(SIZE)));
    let (status, head, mut r) = send(
        &s,
        &format!("GET /file?bytes={SIZE} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, content_length(&head)), (200, Some(SIZE)));
    let mut body = vec![0u8; 1 << 20];
    r.read_exact(&mut body).unwrap();
    // The restart happens with the download under way: the old process
    // finishes sending it during its drain.
    Server::signal(pid0, libc::SIGUSR2);
    wait_for("the new generation", T, || {
        let (p, _) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0).then_some(())
    });
    r.read_to_end(&mut body).unwrap();
    assert_eq!(body.len() as u64, SIZE);
    check_pattern(&body);
    assert_eq!(s.wait_first(T), Some(0));
}

#[test]
fn a_body_over_the_handlers_limit_is_413_and_the_server_serves_on() {
    let s = Server::start(&[]);
    let big = "x".repeat(5000);
    for request in [
        format!("POST /echo?max=1000 HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n{big}"),
        format!(
            "POST /echo?max=1000 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
             1388\r\n{big}\r\n0\r\n\r\n"
        ),
    ] {
        let (status, head, mut r) = send(&s, &request);
        assert_eq!(status, 413, "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let _ = read_to_close(&mut r);
    }
    // Under the limit it echoes, and the server is still there.
    let (status, _, mut r) = send(
        &s,
        "POST /echo?max=1000 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(status, 200);
    assert_eq!(read_to_close(&mut r), b"hello");
}
