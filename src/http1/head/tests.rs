//! The request head parser: what it accepts, what it rejects and why.

use super::*;

fn parse(s: &str) -> Result<Option<(Head, usize)>, HttpError> {
    parse_head(s.as_bytes(), &HttpConfig::default())
}

fn status(s: &str) -> u16 {
    match parse(s) {
        Err(e) => e.status.as_u16(),
        Ok(Some(_)) => 200,
        Ok(None) => 0,
    }
}

#[test]
fn simple_get() {
    let (h, n) = parse("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nrest")
        .unwrap()
        .unwrap();
    assert_eq!(n, 30);
    assert_eq!(h.method, Method::GET);
    assert_eq!(h.uri, "/a?b");
    assert_eq!(h.framing, Framing::None);
    assert!(h.keep_alive);
}

#[test]
fn partial() {
    assert_eq!(status("GET / HTTP/1.1\r\nHost: x\r\n"), 0);
    assert_eq!(status("GET / HTTP/2"), 0);
    assert_eq!(status(""), 0);
}

#[test]
fn versions() {
    assert_eq!(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/1.2\r\nHost: x\r\n\r\n"), 505);
    assert_eq!(status("GET / HTTP/12.0\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET / FOO/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET /\r\n\r\n"), 400);
}

#[test]
fn content_length_syntax() {
    let req = |cl: &str| format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n");
    for ok in ["5", "0", "18446744073709551615"] {
        let n = ok.parse::<u64>().unwrap();
        let cfg = HttpConfig {
            max_body_bytes: u64::MAX,
            ..HttpConfig::default()
        };
        let (h, _) = parse_head(req(ok).as_bytes(), &cfg).unwrap().unwrap();
        let want = if n == 0 {
            Framing::None
        } else {
            Framing::Length(n)
        };
        assert_eq!(h.framing, want);
    }
    for badv in [
        "+5",
        "-1",
        "5 5",
        "0x5",
        "",
        "5,5",
        "18446744073709551616",
        "5a",
    ] {
        assert_eq!(status(&req(badv)), 400, "{badv:?}");
    }
    assert_eq!(status(&req("16777217")), 413);
    let two = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n";
    assert_eq!(status(two), 200);
    let differ = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
    assert_eq!(status(differ), 400);
}

#[test]
fn transfer_encoding() {
    let req = |te: &str| format!("POST / HTTP/1.1\r\nHost: x\r\n{te}\r\n\r\n");
    assert_eq!(status(&req("Transfer-Encoding: chunked")), 200);
    assert_eq!(status(&req("Transfer-Encoding: \t ChUnKeD ")), 200);
    assert_eq!(status(&req("Transfer-Encoding: gzip, chunked")), 501);
    assert_eq!(status(&req("Transfer-Encoding: xchunked")), 501);
    assert_eq!(status(&req("Transfer-Encoding: chunked;x")), 501);
    assert_eq!(status(&req("Transfer-Encoding: chunked, chunked")), 400);
    assert_eq!(
        status(&req(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
        )),
        400
    );
    assert_eq!(status(&req("Transfer-Encoding: chunked,")), 400);
    assert_eq!(status(&req("Transfer-Encoding: ")), 400);
    assert_eq!(
        status(&req("Transfer-Encoding: chunked\r\nContent-Length: 3")),
        400
    );
    assert_eq!(
        status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        400
    );
    let (h, _) = parse(&req("Transfer-Encoding: chunked")).unwrap().unwrap();
    assert_eq!(h.framing, Framing::Chunked);
}

#[test]
fn host_rules() {
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.0\r\n\r\n"), 200);
    assert_eq!(status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
}

#[test]
fn targets() {
    assert_eq!(status("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("CONNECT a.b:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status("GET a.b:443 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET http://a.b/c HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
    assert_eq!(status("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET //a HTTP/1.1\r\nHost: a\r\n\r\n"), 200);
}

#[test]
fn limits() {
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_eq!(status(&long), 414);
    // The line is not complete yet, but the target is already too long.
    assert_eq!(status(&format!("GET /{}", "a".repeat(9000))), 414);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "X-A: b\r\n".repeat(100)
    );
    assert_eq!(status(&many), 431);
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX-A: {}", "b".repeat(17000));
    assert_eq!(status(&big), 431);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: {}\r\n\r\n",
        "b".repeat(17000)
    );
    assert_eq!(status(&big), 431);
    let cfg = HttpConfig {
        max_head_bytes: 200,
        max_target_len: 100,
        ..HttpConfig::default()
    };
    // Incomplete request line over the head limit: 414.
    let e = parse_head(format!("{} ", "G".repeat(300)).as_bytes(), &cfg).unwrap_err();
    assert_eq!(e.status, 414);
}

#[test]
fn connection_and_expect() {
    let (h, _) = parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(!h.keep_alive);
    let (h, _) = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert!(!h.keep_alive);
    let (h, _) = parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        .unwrap()
        .unwrap();
    assert!(h.keep_alive);
    assert_eq!(
        status("POST / HTTP/1.1\r\nHost: a\r\nExpect: bogus\r\nContent-Length: 1\r\n\r\n"),
        417
    );
    let (h, _) =
        parse("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
    assert!(h.expect_continue);
}

#[test]
fn malformed() {
    assert_eq!(status("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n"), 400);
    assert_eq!(status("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    assert_eq!(status("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"), 400);
}

/// Found by the differential check against h11: `http::Uri` drops a
/// fragment silently, so the handler saw another target than was sent.
#[test]
fn fragment_and_userinfo_in_target_are_rejected() {
    assert_eq!(status("GET /a#f HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET /a?b#c HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET http://x/a#f HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET http://u@x/ HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("CONNECT u@x:443 HTTP/1.1\r\nHost: x\r\n\r\n"), 400);
    assert_eq!(status("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n"), 200);
}
