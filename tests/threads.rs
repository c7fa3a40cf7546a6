//! The two thread shapes of the HTTP server (`--threads`): a thread per
//! request with idle connections parked, or a thread per connection.

mod common;

use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(30);
const N: usize = 300;

/// `n` keep-alive connections, each served once and idle now; then the
/// server's thread count.
fn idle_connections(s: &Server, n: usize) -> (Vec<Client>, usize) {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = Client::new(s.addr).unwrap();
        assert_eq!(c.get("/").unwrap().status, 200);
        conns.push(c);
    }
    (conns, proc_entries(s.first_pid(), "task"))
}

fn all_answer_again(conns: &mut [Client]) {
    for c in conns.iter_mut() {
        let r = c.get("/pid").unwrap();
        assert_eq!(r.status, 200);
    }
}

#[test]
fn per_request_idle_connections_hold_no_threads() {
    os::raise_nofile_limit().expect("RLIMIT_NOFILE");
    let mut s = Server::start(&["--threads", "per-request"]);
    let (mut conns, threads) = idle_connections(&s, N);
    eprintln!("{N} idle keep-alive connections, per-request: {threads} threads");
    assert!(threads < 64, "{threads} threads for {N} idle connections");
    all_answer_again(&mut conns);
    drop(conns);
    Server::signal(s.first_pid(), libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
}

#[test]
fn per_connection_gives_each_connection_its_thread_and_drains_them() {
    os::raise_nofile_limit().expect("RLIMIT_NOFILE");
    let mut s = Server::start(&["--threads", "per-connection"]);
    let (mut conns, threads) = idle_connections(&s, N);
    eprintln!("{N} idle keep-alive connections, per-connection: {threads} threads");
    assert!(threads >= N, "{threads} threads for {N} connections");
    all_answer_again(&mut conns);
    // A drain wakes every idle connection's thread (the drain fd), and each
    // closes within its grace: the process exits 0 long before the stop
    // timeout, with the clients still holding their connections.
    let pid = s.first_pid();
    Server::signal(pid, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
    let (_, drained) = s.log.wait_line(&format!("[{pid}] drained in"), 0, T);
    assert!(drained.contains(" 0 forced"), "{drained}");
    drop(conns);
}
