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
// It is a `grace::Protocol`: between lines a connection is parked with the
// server's idle poller and holds no thread (`--threads per-request`, the
// default). With `--threads per-connection` each connection has a thread
// for its whole life instead.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use grace::{Conn, ConnState, Idle, ListenAddr, Protocol, Served, Server, StopReason};

const MAX_LINE: usize = 64 * 1024;
const IDLE: Duration = Duration::from_secs(60);
const GRACE: Duration = Duration::from_secs(1);
const IO: Duration = Duration::from_secs(10);

/// The line echo protocol.
struct Echo;

/// What a connection keeps between lines: a partial line, and whether it
/// has seen the drain.
struct Line {
    buf: Vec<u8>,
    drained: bool,
}

impl Protocol for Echo {
    type Session = Line;

    fn open(&self, _conn: &Conn) -> Line {
        Line {
            buf: Vec::new(),
            drained: false,
        }
    }

    fn serve(&self, conn: &mut Conn, s: &mut Line) -> Served {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = s.buf.iter().position(|b| *b == b'\n') {
                conn.set_state(ConnState::Busy);
                let line: Vec<u8> = s.buf.drain(..=end).collect();
                if conn
                    .write_all_deadline(&[&reply(line)], Instant::now() + IO)
                    .is_err()
                {
                    break;
                }
                if conn.draining() && !s.drained {
                    // Answered the line in flight; a short grace for one more.
                    s.drained = true;
                }
                continue;
            }
            conn.set_state(ConnState::Idle);
            // Wait for more bytes: parked (the thread returns) or, with a
            // thread per connection, here.
            match conn.wait_idle(Instant::now() + self.idle_for(s)) {
                Ok(Idle::Data) => {}
                Ok(Idle::Park) => return Served::Park,
                Ok(Idle::Drain) => {
                    s.drained = true;
                    continue;
                }
                // Eof, TimedOut, an error (or an Idle of a later grace).
                Ok(_) | Err(_) => break,
            }
            match conn.read_deadline(&mut chunk, Instant::now() + IO) {
                Ok(n) if n > 0 => s.buf.extend_from_slice(&chunk[..n]),
                // A hand-off with nothing to read after all.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Served::Park,
                Ok(_) | Err(_) => {
                    conn.close(None);
                    return Served::Close;
                }
            }
            if s.buf.len() > MAX_LINE {
                let _ = conn.write_all_deadline(&[b"line too long\n"], Instant::now() + IO);
                break;
            }
        }
        conn.close(Some(Instant::now() + GRACE));
        Served::Close
    }

    fn idle_deadline(&self, s: &Line, now: Instant) -> Instant {
        now + self.idle_for(s)
    }

    fn drain_grace(&self) -> Duration {
        GRACE
    }

    fn client_speaks_first(&self) -> bool {
        true
    }
}

impl Echo {
    /// How long a connection may stay silent: the drain's grace once it
    /// saw the drain, the I/O timeout in the middle of a line, else the
    /// idle timeout.
    fn idle_for(&self, s: &Line) -> Duration {
        if s.drained {
            GRACE
        } else if !s.buf.is_empty() {
            IO
        } else {
            IDLE
        }
    }
}

/// The answer to one line: itself, or for `PID` who answers.
fn reply(line: Vec<u8>) -> Vec<u8> {
    let text = line
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    if text == Some(b"PID".as_slice()) {
        format!(
            "pid={} generation={}\n",
            std::process::id(),
            grace::generation()
        )
        .into_bytes()
    } else {
        line
    }
}

fn main() {
    grace::init();
    let mut listen: Vec<ListenAddr> = Vec::new();
    let mut cfg = grace::ServerConfig::default();
    cfg.handle_signals = true;
    let mut per_connection = false;
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
            ("--threads", Some(v)) if v == "per-request" || v == "per-connection" => {
                per_connection = v == "per-connection"
            }
            ("--stop-timeout-ms", Some(v)) => {
                cfg.stop_timeout = Duration::from_millis(v.parse().unwrap_or(30_000))
            }
            _ => {
                eprintln!(
                    "usage: echo [--listen ADDR]... [--pid-file PATH] [--stop-timeout-ms N] \
                     [--threads per-request|per-connection]"
                );
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
    let served = if per_connection {
        server.serve_connections(|conn| grace::protocol::serve_whole(&Echo, conn))
    } else {
        server.serve_parked(Echo)
    };
    match served {
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
