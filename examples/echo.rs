// A line echo server on grace's lower layers only: listeners, upgrade and
// drain, no HTTP. It restarts with SIGUSR2 and drains with SIGTERM exactly
// like the HTTP demo.
//
// ```text
// cargo run --example echo -- --listen 127.0.0.1:7000
// printf 'hi\nPID\n' | nc 127.0.0.1 7000
// ```
//
// Each line is answered with itself; the line `PID` is answered with
// `pid=P generation=G`. While draining, a connection finishes the line in
// flight, gets a short grace for one more, and is closed.
//
// Also built as the `grace-echo` binary for the integration tests.

use std::io::Write;
use std::time::{Duration, Instant};

use grace::{Conn, ConnState, Idle, ListenAddr, Server, StopReason};

const MAX_LINE: usize = 64 * 1024;
const IDLE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(1);
const IO: Duration = Duration::from_secs(10);

fn serve_conn(mut conn: Conn) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let mut drained = false;
    loop {
        // Wait for the next line's first byte (unless one is buffered).
        if !buf.contains(&b'\n') {
            let deadline = Instant::now() + if drained { GRACE } else { IDLE };
            match conn.wait_idle(deadline) {
                Ok(Idle::Data) => {}
                Ok(Idle::Drain) => {
                    drained = true;
                    continue;
                }
                // (Park: only connections of `serve_http`; never here.)
                Ok(Idle::Eof | Idle::TimedOut | Idle::Park) | Err(_) => break,
            }
            conn.set_state(ConnState::Busy);
            // Read until a full line is buffered.
            let line_deadline = Instant::now() + IO;
            while !buf.contains(&b'\n') {
                match conn.read_deadline(&mut chunk, line_deadline) {
                    Ok(0) | Err(_) => {
                        conn.close(None);
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > MAX_LINE {
                    let _ = conn.write_all_deadline(&[b"line too long\n"], Instant::now() + IO);
                    conn.close(Some(Instant::now() + GRACE));
                    return;
                }
            }
        }
        conn.set_state(ConnState::Busy);
        let end = buf.iter().position(|b| *b == b'\n').unwrap_or(0) + 1;
        let line: Vec<u8> = buf.drain(..end).collect();
        let reply = if line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            == Some(b"PID".as_slice())
        {
            format!(
                "pid={} generation={}\n",
                std::process::id(),
                grace::generation()
            )
            .into_bytes()
        } else {
            line
        };
        if conn
            .write_all_deadline(&[&reply], Instant::now() + IO)
            .is_err()
        {
            break;
        }
        conn.set_state(ConnState::Idle);
        if conn.draining() && !drained {
            // Answered the line in flight; give the client a short grace.
            drained = true;
        }
    }
    conn.close(Some(Instant::now() + GRACE));
}

fn main() {
    grace::init();
    let mut listen: Vec<ListenAddr> = Vec::new();
    let mut cfg = grace::Config::default();
    cfg.handle_signals = true;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--listen", Some(v)) => match v.parse() {
                Ok(a) => listen.push(a),
                Err(e) => {
                    eprintln!("echo: --listen {v}: {e}");
                    std::process::exit(2);
                }
            },
            ("--pid-file", Some(v)) => cfg.pid_file = Some(v.into()),
            ("--stop-timeout-ms", Some(v)) => {
                cfg.stop_timeout = Duration::from_millis(v.parse().unwrap_or(30_000))
            }
            _ => {
                eprintln!("usage: echo [--listen ADDR]... [--pid-file PATH] [--stop-timeout-ms N]");
                std::process::exit(2);
            }
        }
    }
    if listen.is_empty() && !grace::listener::has_inherited() {
        listen.push("127.0.0.1:7000".parse().expect("valid address"));
    }
    let server = match Server::bind(cfg, &listen) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "echo: {e}");
            std::process::exit(1);
        }
    };
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    let _ = writeln!(
        std::io::stderr(),
        "echo: pid {} generation {} serving on {}",
        std::process::id(),
        server.generation(),
        addrs.join(" ")
    );
    match server.serve(serve_conn) {
        Ok(o) => std::process::exit(if o.reason == StopReason::Aborted {
            1
        } else {
            0
        }),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "echo: {e}");
            std::process::exit(1);
        }
    }
}
