//! Graceful shutdown: real processes, real signals, real sockets.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// Sends a request and waits until the server has accepted the connection.
fn in_flight(s: &Server, pid: u32, req: &[u8]) -> Client {
    let mut c = Client::new(s.addr).unwrap();
    let port = c.r.get_ref().local_addr().unwrap().port();
    c.send(req).unwrap();
    s.log
        .wait_line(&format!("[{pid}] accepted Inet(127.0.0.1:{port})"), 0, T);
    c
}

#[test]
fn request_in_flight_completes_then_listener_closes_and_exit_0() {
    let mut s = Server::start(&[]);
    let pid = s.first_pid();
    let mut c = in_flight(&s, pid, b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n");
    let t0 = Instant::now();
    Server::signal(pid, libc::SIGTERM);
    s.log.wait_line(&format!("[{pid}] listeners closed"), 0, T);
    // Refused, not queued and reset: the listener is closed.
    let err = std::net::TcpStream::connect(s.addr).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let r = c.read("GET").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slept 1500 ms\n");
    assert!(
        r.closes(),
        "a response during a drain says Connection: close"
    );
    assert!(c.closed_within(Duration::from_secs(5)));
    assert_eq!(s.wait_first(T), Some(0));
    assert!(t0.elapsed() >= Duration::from_millis(1000));
    let log = s.log.text();
    assert!(log.contains("1 finished, 0 forced"), "{log}");
    assert!(!s.pid_file.exists(), "pid file removed on exit");
}

#[test]
fn keep_alive_clients_hammering_through_sigterm_lose_nothing() {
    let mut s = Server::start(&[]);
    let pid = s.first_pid();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicUsize::new(0));
    let told_to_close = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let addr = s.addr;
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (stop, started, ok, told, errors) = (
                stop.clone(),
                started.clone(),
                ok.clone(),
                told_to_close.clone(),
                errors.clone(),
            );
            std::thread::spawn(move || {
                let mut c = Client::new(addr).unwrap();
                let mut first = true;
                for _ in 0..1_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match c.get("/") {
                        Ok(r) if r.status == 200 && r.body == b"hello\n" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if first {
                                started.fetch_add(1, Ordering::Relaxed);
                                first = false;
                            }
                            if r.closes() {
                                // Told to go: a polite client stops here.
                                told.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                        Ok(r) => {
                            errors.lock().unwrap().push(format!("status {}", r.status));
                            break;
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(format!("{e}"));
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    wait_for("all 32 clients served", T, || {
        (started.load(Ordering::Relaxed) == 32).then_some(())
    });
    Server::signal(pid, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} errors (resets, truncations) after {} good responses: {errors:?}",
        errors.len(),
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(
        told_to_close.load(Ordering::Relaxed),
        32,
        "every client got a last response with Connection: close"
    );
}

#[test]
fn idle_closed_within_grace_busy_cut_at_stop_timeout() {
    let mut s = Server::start(&["--drain-grace-ms", "300", "--stop-timeout-ms", "2000"]);
    let pid = s.first_pid();
    // Idle keep-alive connections, each served once.
    let idle: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = Client::new(s.addr).unwrap();
            assert_eq!(c.get("/").unwrap().status, 200);
            c
        })
        .collect();
    // A connection that never sent a byte counts as idle too.
    let mut silent = connect(s.addr).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    s.log.wait_line(
        &format!("[{pid}] accepted Inet(127.0.0.1:{silent_port})"),
        0,
        T,
    );
    // A response that streams for 10 s: still busy at the stop timeout.
    let mut busy = in_flight(
        &s,
        pid,
        b"GET /stream?chunks=100&ms=100 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let mut head = [0u8; 64];
    let n = busy.r.get_mut().read(&mut head).unwrap();
    assert!(n > 0, "the stream started");

    let t0 = Instant::now();
    Server::signal(pid, libc::SIGTERM);
    let mut idle = idle;
    for c in idle.iter_mut() {
        assert!(
            c.closed_within(Duration::from_secs(3)),
            "idle connection closed"
        );
    }
    let idle_closed = t0.elapsed();
    // A polite client closes its side once told to go.
    drop(idle);
    assert!(
        idle_closed < Duration::from_millis(300 + 1500),
        "idle connections closed {idle_closed:?} after SIGTERM (grace 300 ms)"
    );
    silent
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut b = [0u8; 16];
    assert!(
        matches!(silent.read(&mut b), Ok(0)),
        "a connection that never sent a byte is closed without a response"
    );
    drop(silent);
    // The streaming response is cut: fewer than 100 chunks arrive, then EOF.
    let mut rest = Vec::new();
    let _ = busy.r.get_mut().read_to_end(&mut rest);
    let got = String::from_utf8_lossy(&rest);
    assert!(
        !got.contains("chunk 99"),
        "the stream was cut at the stop timeout"
    );
    let code = s.wait_first(T);
    let took = t0.elapsed();
    assert_eq!(code, Some(0));
    assert!(
        took < Duration::from_millis(2000 + 1000 + 1500),
        "exit {took:?} after SIGTERM with stop timeout 2 s"
    );
    assert!(
        took >= Duration::from_millis(1900),
        "busy connection kept until the stop timeout"
    );
    let log = s.log.text();
    assert!(log.contains("1 forced"), "{log}");
}

#[test]
fn second_sigterm_during_drain_exits_at_once() {
    let mut s = Server::start(&[]);
    let pid = s.first_pid();
    let _c = in_flight(&s, pid, b"GET /sleep?ms=15000 HTTP/1.1\r\nHost: t\r\n\r\n");
    Server::signal(pid, libc::SIGTERM);
    s.log.wait_line(&format!("[{pid}] draining"), 0, T);
    let t0 = Instant::now();
    Server::signal(pid, libc::SIGTERM);
    let code = s.wait_first(Duration::from_secs(5));
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(code, Some(1), "non-zero exit on the second signal");
    assert!(s.log.text().contains("second SIGTERM during the drain"));
}

#[test]
fn in_process_handle_stops_the_server_without_signal_handlers() {
    use grace::http1::{RequestBody, ResponseBody};
    let (server, addr) = bind_in_process();
    let handle = server.handle();
    let mut http_cfg = grace::http1::HttpConfig::default();
    http_cfg.drain_grace = Duration::from_millis(200);
    let t = std::thread::spawn(move || {
        server.serve_http(
            |_req: http::Request<RequestBody>| {
                http::Response::new(ResponseBody::from("in-process\n"))
            },
            http_cfg,
        )
    });
    let mut c = Client::new(addr).unwrap();
    assert_eq!(c.get("/").unwrap().body_str(), "in-process\n");
    assert_eq!(handle.active_connections(), 1);
    // No handler for SIGTERM was installed (SigCgt bit 15 is clear).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let sigcgt = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    assert_eq!(
        sigcgt & (1 << (libc::SIGTERM - 1)),
        0,
        "SIGTERM handler installed"
    );
    assert_eq!(
        sigcgt & (1 << (libc::SIGUSR2 - 1)),
        0,
        "SIGUSR2 handler installed"
    );

    let h2 = handle.clone();
    let stopper = std::thread::spawn(move || h2.shutdown_and_wait());
    let outcome = stopper.join().unwrap();
    assert_eq!(outcome.reason, grace::StopReason::Shutdown);
    let drain = outcome.drain.unwrap();
    assert_eq!(drain.open_at_start, 1);
    assert_eq!(drain.finished, 1);
    assert_eq!(drain.forced, 0);
    assert!(c.closed_within(Duration::from_secs(3)));
    let served = t.join().unwrap().unwrap();
    assert_eq!(served.reason, grace::StopReason::Shutdown);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}
