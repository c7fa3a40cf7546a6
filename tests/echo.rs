//! The echo demo: a protocol of its own (not HTTP) served on the same
//! runtime, with its idle connections parked in the idle poller.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const N: usize = 1000;
const T: Duration = Duration::from_secs(30);

/// Opens `n` connections, each sends a line and reads its echo (so each was
/// served once and is now idle); returns them still open.
fn served_idle(s: &Server, n: usize) -> Vec<BufReader<TcpStream>> {
    let deadline = Instant::now() + T;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        assert!(
            Instant::now() < deadline,
            "opening connection {i} took too long"
        );
        let mut c = connect(s.addr).expect("connect");
        c.set_read_timeout(Some(T)).unwrap();
        c.write_all(format!("hello {i}\n").as_bytes()).unwrap();
        let mut r = BufReader::new(c);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("hello {i}\n"));
        conns.push(r);
    }
    conns
}

/// Every connection still answers: parked ones are woken by their bytes.
fn all_answer(conns: &mut [BufReader<TcpStream>]) {
    for (i, r) in conns.iter_mut().enumerate() {
        r.get_mut()
            .write_all(format!("again {i}\n").as_bytes())
            .unwrap();
    }
    for (i, r) in conns.iter_mut().enumerate() {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, format!("again {i}\n"));
    }
}

/// The echo demo with `args`, and `n` connections it served once each and
/// that are idle now.
fn echo_with_idle(args: &[&str], n: usize) -> (Server, u32, Vec<BufReader<TcpStream>>) {
    os::raise_nofile_limit().expect("RLIMIT_NOFILE");
    let s = Server::start_bin(echo(), args);
    let pid = s.first_pid();
    let conns = served_idle(&s, n);
    (s, pid, conns)
}

/// Every connection answers once more; then SIGTERM, and exit status 0.
fn answer_and_stop(mut s: Server, pid: u32, mut conns: Vec<BufReader<TcpStream>>) {
    all_answer(&mut conns);
    drop(conns);
    Server::signal(pid, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
}

#[test]
fn a_thousand_idle_echo_connections_hold_no_threads() {
    let (s, pid, conns) = echo_with_idle(&[], N);
    // Every connection has been answered and sends nothing now. The server
    // has its fixed threads (main, accept, signals, idle poller, ...) and
    // the workers that served the burst, which go back to the pool: far
    // fewer than one per connection.
    let threads = proc_entries(pid, "task");
    eprintln!("{N} idle echo connections: {threads} threads");
    assert!(
        threads < 64,
        "{threads} threads for {N} idle connections: idle connections hold threads"
    );
    assert!(proc_entries(pid, "fd") > N, "the connections are open");
    answer_and_stop(s, pid, conns);
}

#[test]
fn per_connection_threads_hold_one_thread_per_connection() {
    // The contrast, and the other shape working: one thread per connection
    // for its whole life, waiting in `poll` while idle.
    let n = 200;
    let (s, pid, conns) = echo_with_idle(&["--threads", "per-connection"], n);
    let threads = wait_for("a thread per connection", T, || {
        let t = proc_entries(pid, "task");
        (t >= n).then_some(t)
    });
    eprintln!("{n} idle echo connections, per-connection threads: {threads} threads");
    answer_and_stop(s, pid, conns);
}

#[test]
fn partial_lines_wait_parked_and_complete() {
    // Connections parked in the middle of a line keep it in their session,
    // and hold no thread meanwhile.
    os::raise_nofile_limit().expect("RLIMIT_NOFILE");
    let n = 300;
    let mut s = Server::start_bin(echo(), &[]);
    let pid = s.first_pid();
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut c = connect(s.addr).expect("connect");
            c.set_read_timeout(Some(T)).unwrap();
            c.write_all(format!("part {i}").as_bytes()).unwrap();
            c
        })
        .collect();
    // Each half line has been read (the server's receive queues are empty)
    // and nothing was answered.
    wait_for("the half lines read", T, || {
        (unread_bytes_in_server(pid) == Some(0)).then_some(())
    });
    let threads = proc_entries(pid, "task");
    assert!(
        threads < 64,
        "{threads} threads for {n} half-line connections"
    );
    for c in conns.iter_mut() {
        c.write_all(b" done\n").unwrap();
    }
    for (i, c) in conns.into_iter().enumerate() {
        let mut line = String::new();
        BufReader::new(c).read_line(&mut line).unwrap();
        assert_eq!(line, format!("part {i} done\n"));
    }
    Server::signal(pid, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
}

/// The bytes waiting in the receive queues of `pid`'s TCP sockets on
/// 127.0.0.1, from `/proc/PID/net/tcp` (the `rx_queue` column) for the
/// sockets it holds; `None` if that cannot be read.
fn unread_bytes_in_server(pid: u32) -> Option<u64> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| {
            let l = std::fs::read_link(e.ok()?.path()).ok()?;
            let s = l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(s.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    let mut total = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() > 9 && inodes.contains(cols[9]) {
            let rx = cols[4].split(':').nth(1)?;
            total += u64::from_str_radix(rx, 16).ok()?;
        }
    }
    Some(total)
}
