//! Zero-downtime restart: real processes, real signals, real sockets on
//! 127.0.0.1. The test process is a child subreaper and reaps every
//! generation.

mod common;

use std::io::{BufReader, Write};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn restart_changes_pid_keeps_port_and_bumps_generation() {
    let mut s = Server::start(&[]);
    let (pid0, gen0) = s.pid_gen();
    assert_eq!(gen0, 0);
    assert_eq!(pid0, s.first_pid());
    let pid1 = restart(&mut s, pid0, 0);
    assert_ne!(pid1, pid0);
    // Same port, new process, generation 1.
    assert_eq!(s.pid_gen(), (pid1, 1));
    let log = s.log.text();
    assert!(
        log.contains(&format!("[{pid0}] child {pid1} (generation 1) is ready")),
        "{log}"
    );
    assert!(
        log.contains(&format!("adopted 127.0.0.1:{}", s.addr.port())),
        "{log}"
    );
}

fn ten_restarts_under_load(keep_alive: bool) {
    let mut s = Server::start(&[]);
    let load = Load::start(s.addr, 32, keep_alive);
    load.progress(200);
    let (mut pid, _) = s.pid_gen();
    for gen in 0..10u64 {
        pid = restart(&mut s, pid, gen);
        load.progress(100);
    }
    load.finish_clean();
    assert_eq!(s.pid_gen(), (pid, 10));
}

#[test]
fn zero_loss_keep_alive_32_clients_10_restarts() {
    ten_restarts_under_load(true);
}

#[test]
fn zero_loss_connection_close_32_clients_10_restarts() {
    ten_restarts_under_load(false);
}

#[test]
fn in_flight_request_finishes_on_the_old_process() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    let mut c = Client::new(s.addr).unwrap();
    let port = c.r.get_ref().local_addr().unwrap().port();
    c.send(b"GET /sleep?ms=2000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The old process has accepted our connection (it logs each accept).
    s.log
        .wait_line(&format!("[{pid0}] accepted Inet(127.0.0.1:{port})"), 0, T);
    Server::signal(pid0, libc::SIGUSR2);
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slept 2000 ms\n");
    assert!(
        r.closes(),
        "the old process says Connection: close while draining"
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    let (pid1, gen1) = s.pid_gen();
    assert_ne!(pid1, pid0);
    assert_eq!(gen1, 1);
    assert_eq!(s.wait_first(T), Some(0));
}

#[test]
fn replaced_binary_is_picked_up() {
    let dir = TempDir::new("bin");
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let mut s = Server::start_bin(bin.to_str().unwrap(), &[]);
    assert_eq!(get(s.addr, "/").unwrap().body_str(), "hello\n");
    // The new "release": a wrapper that runs the build with another flag.
    write_script(
        &bin,
        &format!("exec {} \"$@\" --greeting replaced", hello()),
    );
    let pid0 = s.first_pid();
    let pid1 = restart(&mut s, pid0, 0);
    let r = get(s.addr, "/").unwrap();
    assert_eq!(r.body_str(), "replaced\n");
    assert_eq!(s.pid_gen(), (pid1, 1));
}

#[test]
fn failed_upgrades_leave_the_old_process_serving() {
    let dir = TempDir::new("fail");
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let refuse = dir.path().join("refuse");
    let mut s = Server::start_bin(
        bin.to_str().unwrap(),
        &[
            "--upgrade-timeout-ms",
            "2000",
            "--refuse-upgrade-if",
            refuse.to_str().unwrap(),
        ],
    );
    let pid0 = s.first_pid();
    let load = Load::start(s.addr, 8, true);
    load.progress(100);
    let mut from = s.log.lines().len();

    let mut attempt = |s: &Server, expect: &str| {
        Server::signal(pid0, libc::SIGUSR2);
        let (i, _) = s
            .log
            .wait_line(&format!("[{pid0}] upgrade failed: {expect}"), from, T);
        from = i + 1;
        load.progress(50);
        assert_eq!(s.pid_gen(), (pid0, 0), "old process still serves");
    };
    // 1. The new binary exits 1 at once.
    write_script(&bin, "exit 1");
    attempt(&s, "the child ended before ready (exit status 1)");
    // 2. It hangs: killed at the upgrade timeout.
    write_script(&bin, "exec sleep 30");
    attempt(
        &s,
        "the child was not ready within the upgrade timeout (2 s)",
    );
    // 3. The path no longer exists.
    std::fs::remove_file(&bin).unwrap();
    attempt(&s, "cannot prepare the new process");
    // 4. The pre-upgrade hook refuses.
    std::fs::copy(hello(), &bin).unwrap();
    std::fs::write(&refuse, "").unwrap();
    attempt(&s, "pre-upgrade hook failed");
    // Every failed child was reaped: no zombie children of the old process.
    let children =
        std::fs::read_to_string(format!("/proc/{pid0}/task/{pid0}/children")).unwrap_or_default();
    assert!(children.trim().is_empty(), "children left: {children}");

    // And after all that, a real upgrade still works.
    std::fs::remove_file(&refuse).unwrap();
    let pid1 = restart(&mut s, pid0, 0);
    load.progress(50);
    let (ok, errors) = load.finish();
    assert!(
        errors.is_empty(),
        "{} errors of {}: {:?}",
        errors.len(),
        ok,
        errors
    );
    assert_eq!(s.pid_gen(), (pid1, 1));
}

#[test]
fn two_quick_usr2_make_exactly_one_generation() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    Server::signal(pid0, libc::SIGUSR2);
    // A second USR2 while the first is being handled (a pending signal of
    // the same number would just be merged by the kernel).
    s.log
        .wait_line(&format!("[{pid0}] SIGUSR2: upgrade requested"), 0, T);
    Server::signal(pid0, libc::SIGUSR2);
    let (pid1, gen) = wait_for("new generation", T, || {
        let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0).then_some((p, g))
    });
    assert_eq!(gen, 1);
    assert_eq!(s.wait_first(T), Some(0));
    s.log.wait_line(&format!("[{pid0}] refusing upgrade"), 0, T);
    // The child, asked to upgrade while its parent is still draining, refuses
    // too; once the parent is gone it accepts.
    let log = s.log.text();
    assert!(!log.contains("generation 2"), "{log}");
    assert_eq!(s.pid_gen(), (pid1, 1));
    let pid2 = restart(&mut s, pid1, 1);
    assert_eq!(s.pid_gen(), (pid2, 2));
}

#[test]
fn child_refuses_upgrade_while_parent_drains() {
    let mut s = Server::start(&["--stop-timeout-ms", "10000"]);
    let pid0 = s.first_pid();
    // Keep the old process draining: a slow request in flight.
    let mut c = Client::new(s.addr).unwrap();
    let port = c.r.get_ref().local_addr().unwrap().port();
    c.send(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.log
        .wait_line(&format!("[{pid0}] accepted Inet(127.0.0.1:{port})"), 0, T);
    Server::signal(pid0, libc::SIGUSR2);
    let pid1 = wait_for("new generation", T, || {
        let (p, _) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0).then_some(p)
    });
    Server::signal(pid1, libc::SIGUSR2);
    s.log.wait_line(
        &format!("[{pid1}] refusing upgrade: the previous generation is still draining"),
        0,
        T,
    );
    assert_eq!(c.read("GET").unwrap().status, 200);
    assert_eq!(s.wait_first(T), Some(0));
    assert_eq!(s.pid_gen(), (pid1, 1));
}

/// The open fds of the process at the other end of `c`, as `fd -> target`.
fn fds_of(c: &mut Client) -> Vec<(u32, String)> {
    let body = c.get("/debug/fds").unwrap().body_str();
    body.lines()
        .filter_map(|l| {
            let (fd, target) = l.split_once(' ')?;
            Some((fd.parse().ok()?, target.to_string()))
        })
        .collect()
}

#[test]
fn child_inherits_only_listeners_and_readiness_fd() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    // An open keep-alive connection to the old process: its socket must not
    // leak into the child.
    let mut held = Client::new(s.addr).unwrap();
    assert_eq!(held.get("/").unwrap().status, 200);
    let parent_fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid0}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            Some((
                e.file_name().to_str()?.parse().ok()?,
                std::fs::read_link(e.path()).ok()?.display().to_string(),
            ))
        })
        .collect();
    // A request in flight keeps the parent alive, and so the child's end of
    // the readiness socket open, while the child's fds are listed (once the
    // parent exits, the child closes it).
    let slow = std::thread::spawn(move || held.get("/sleep?ms=8000").map(|r| r.status));
    let (pid1, mut to_child) = restart_keeping(&mut s, pid0);
    let child = fds_of(&mut to_child);
    assert!(
        process_running(pid0),
        "the parent exited before the child's fds were listed"
    );
    // In the child, fds 0-2 are stdio, 3 the listener, 4 the readiness
    // socket. (In the parent the listener is wherever bind put it.)
    let (_, bound) = s.log.wait_line(&format!("[{pid0}] bound 127.0.0.1:"), 0, T);
    let parent_listener_fd: u32 = bound
        .rsplit("(fd ")
        .next()
        .and_then(|r| r.trim_end_matches(')').parse().ok())
        .unwrap();
    let listener = parent_fds
        .iter()
        .find(|(fd, _)| *fd == parent_listener_fd)
        .unwrap()
        .1
        .clone();
    assert_eq!(child.iter().find(|(fd, _)| *fd == 3).unwrap().1, listener);
    let fd4 = child.iter().find(|(fd, _)| *fd == 4);
    assert!(
        fd4.is_some_and(|(_, t)| t.starts_with("socket:")),
        "fd 4 is the readiness socket; child fds: {child:?}"
    );
    // Nothing else the parent had open (its connections, eventfds...)
    // exists in the child, apart from stdio and the shared listener.
    for (fd, target) in &child {
        if *fd <= 3 {
            continue;
        }
        // Whatever the test harness itself leaked into the parent without
        // CLOEXEC (a lock file, say) is not ours to judge: only sockets.
        assert!(
            !parent_fds
                .iter()
                .any(|(_, t)| t == target && t.starts_with("socket:")),
            "child fd {fd} -> {target} was inherited from the parent; child fds: {child:?}"
        );
    }
    // LISTEN_* and GRACE_* are gone from the child's environment.
    let env = to_child.get("/debug/env").unwrap().body_str();
    assert!(!env.contains("LISTEN_"), "{env}");
    assert!(!env.contains("GRACE_READY_FD"), "{env}");
    assert!(!env.contains("GRACE_GENERATION"), "{env}");
    assert_eq!(slow.join().unwrap().unwrap(), 200);
    assert_eq!(s.wait_first(T), Some(0));
    assert_eq!(s.pid_gen().0, pid1);
}

/// Like `restart`, but does not wait for the old process (a client still
/// holds a connection to it). Returns the new pid and a keep-alive
/// connection it answered: until the old process stops accepting, a fresh
/// connection may land on either one, but this one stays with the new.
fn restart_keeping(s: &mut Server, old: u32) -> (u32, Client) {
    Server::signal(old, libc::SIGUSR2);
    wait_for("new generation", T, || {
        let mut c = Client::new(s.addr).ok()?;
        let (p, _) = parse_pid_gen(&c.get("/pid").ok()?.body_str());
        (p != old).then_some((p, c))
    })
}

#[test]
fn tcp_and_unix_listeners_both_survive_a_restart() {
    let dir = TempDir::new("unix");
    let sock = dir.path().join("hello.sock");
    let unix = format!("unix:{}", sock.display());
    let mut s = Server::start(&["--listen", "127.0.0.1:0", "--listen", &unix]);
    let unix_get = |path: &str| -> String {
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut BufReader::new(c), "GET")
            .unwrap()
            .body_str()
    };
    let pid0 = s.first_pid();
    assert_eq!(parse_pid_gen(&unix_get("/pid")), (pid0, 0));
    let pid1 = restart(&mut s, pid0, 0);
    assert_eq!(parse_pid_gen(&unix_get("/pid")), (pid1, 1));
    assert_eq!(s.pid_gen(), (pid1, 1));
    assert!(
        sock.exists(),
        "the old process must not unlink a handed-over socket"
    );
    // A final shutdown unlinks it.
    Server::signal(pid1, libc::SIGTERM);
    assert_eq!(reap(pid1, T), Some(grace::Exit::Code(0)));
    assert!(!sock.exists(), "final shutdown unlinks the socket path");
}

#[test]
fn echo_server_restarts_the_same_way() {
    let mut s = Server::start_bin(echo(), &[]);
    let ask = |addr| -> String {
        let mut c = connect(addr).unwrap();
        c.write_all(b"hi\nPID\n").unwrap();
        let mut r = BufReader::new(c);
        let mut out = String::new();
        for _ in 0..2 {
            std::io::BufRead::read_line(&mut r, &mut out).unwrap();
        }
        out
    };
    let pid0 = s.first_pid();
    assert_eq!(ask(s.addr), format!("hi\npid={pid0} generation=0\n"));
    Server::signal(pid0, libc::SIGUSR2);
    let line = wait_for("echo child", T, || {
        let out = ask(s.addr);
        (!out.contains(&format!("pid={pid0} "))).then_some(out)
    });
    assert!(line.ends_with("generation=1\n"), "{line}");
    assert_eq!(s.wait_first(T), Some(0));
}
