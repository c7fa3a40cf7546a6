//! What an embedding program gets from grace's HTTP server: the connection's
//! addresses and a drain token in each request's extensions.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// `GET /conninfo` over `stream`, as `key=value` lines.
fn conninfo<S: Read + Write>(stream: S) -> HashMap<String, String> {
    let mut r = BufReader::new(stream);
    r.get_mut()
        .write_all(b"GET /conninfo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = read_response(&mut r, "GET").unwrap();
    assert_eq!(resp.status, 200, "{}", resp.body_str());
    resp.body_str()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn handlers_see_the_clients_own_addresses_on_ipv4_ipv6_and_unix() {
    let dir = TempDir::new("conninfo");
    let sock = dir.path().join("hello.sock");
    let unix = format!("unix:{}", sock.display());
    let s = Server::start(&[
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "[::1]:0",
        "--listen",
        &unix,
    ]);
    let (_, line) = s.log.wait_line("serving on", 0, T);
    let v6: std::net::SocketAddr = line
        .split([' ', ','])
        .find(|w| w.starts_with("[::1]:"))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no [::1] listener in {line:?}"));
    for addr in [s.addr, v6] {
        let c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(T)).unwrap();
        let (mine, theirs) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        let info = conninfo(c);
        assert_eq!(
            info["peer"],
            mine.to_string(),
            "peer = the client's getsockname"
        );
        assert_eq!(
            info["local"],
            theirs.to_string(),
            "local = the client's getpeername"
        );
        // The listener's name comes from the address it was asked for
        // (port 0 here, and `:` written `_`: the characters LISTEN_FDNAMES
        // allows), and stays the same in every generation.
        let name = if addr.is_ipv6() {
            "[__1]_0"
        } else {
            "127.0.0.1_0"
        };
        assert_eq!(info["listener"], name);
        assert_eq!(info["generation"], "0");
    }
    let c = UnixStream::connect(&sock).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    let theirs = c.peer_addr().unwrap();
    assert!(c.local_addr().unwrap().is_unnamed());
    let info = conninfo(c);
    assert_eq!(info["peer"], "unnamed", "an unnamed client socket");
    assert_eq!(
        info["local"],
        format!("unix:{}", theirs.as_pathname().unwrap().display())
    );
    assert_eq!(info["generation"], "0");
}

#[test]
fn the_generation_in_conninfo_follows_the_restart() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    Server::signal(pid0, libc::SIGUSR2);
    wait_for("generation 1", T, || {
        let c = connect(s.addr).ok()?;
        (conninfo(c)["generation"] == "1").then_some(())
    });
    assert_eq!(s.wait_first(T), Some(0));
}

/// Reads one server-sent event (up to its blank line) from a chunked body:
/// the chunk-size lines are skipped.
fn next_event(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut event = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.starts_with("data:") || l.starts_with("event:") {
            event.push_str(l);
            event.push('\n');
        } else if l == "0" {
            // The chunked terminator: the stream ended.
            return None;
        } else if l.is_empty() && !event.is_empty() {
            return Some(event);
        }
    }
}

#[test]
fn an_event_stream_notices_the_drain_and_ends_cleanly() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    let mut c = connect(s.addr).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    c.write_all(b"GET /events?ms=100 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c);
    let mut head = String::new();
    while r.read_line(&mut head).unwrap() > 2 {
        if head.ends_with("\r\n\r\n") {
            break;
        }
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    for i in 0..3 {
        assert_eq!(
            next_event(&mut r).as_deref(),
            Some(&*format!("data: {i}\n"))
        );
    }
    Server::signal(pid0, libc::SIGUSR2);
    let signalled = Instant::now();
    // The old generation starts its drain when the new one is ready.
    let (_, ready) = s.log.wait_line(&format!("[{pid0}] draining"), 0, T);
    let drain_seen = Instant::now();
    let mut last = None;
    while let Some(e) = next_event(&mut r) {
        last = Some(e);
    }
    let ended = Instant::now();
    assert!(
        last.as_deref().is_some_and(|e| e.starts_with("event: bye")),
        "the stream's last event says goodbye: {last:?}"
    );
    eprintln!(
        "stream ended {:?} after SIGUSR2, {:?} after the test saw the drain ({ready})",
        ended - signalled,
        ended.saturating_duration_since(drain_seen)
    );
    // Far inside the drain's 30 s stop timeout: the stream ended because
    // it was told, not because it was cut.
    assert!(
        ended - signalled < Duration::from_secs(2),
        "the stream ran {:?} after the restart",
        ended - signalled
    );
    // A clean end: the response was complete, and the old process exits 0.
    drop(r);
    assert_eq!(s.wait_first(T), Some(0));
}
