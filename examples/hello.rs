// The grace demo server.
//
// ```text
// cargo run --release --example hello -- --listen 127.0.0.1:8080
// kill -USR2 <pid>     # zero-downtime restart (SIGHUP does the same)
// kill -TERM <pid>     # graceful shutdown
// ```
//
// Routes: `GET /` (`hello\n`), `GET /healthz`, `GET /sleep?ms=N`, `GET /pid`,
// `POST|PUT /echo`, `GET /stream?chunks=N&ms=M`, `GET /panic`, `GET /conninfo`,
// `GET /events?ms=N`, `GET /ws` (a WebSocket echo), `GET /sized?bytes=N`,
// `GET /file?bytes=N`, `GET /work?us=N` (CPU-bound), `GET /bytes?n=N` (a body
// from memory).
//
// The integration tests start the binary `cargo test` builds from this file
// (`target/<profile>/examples/hello`). Its WebSocket echo uses tungstenite, a
// dev-dependency (never one of the library's); a small `RUST_LOG` logger is
// included below.

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

use grace::http1::{RequestBody, ResponseBody};
use grace::{ListenAddr, Server, StopReason};
use http::{Method, Request, Response, StatusCode};

#[path = "common/logger.rs"]
mod logger;
use logger::init_logger;

const USAGE: &str = "\
grace demo server: zero-downtime restarts with SIGUSR2 or SIGHUP, graceful shutdown with
SIGTERM, SIGINT or SIGQUIT (a second one during the drain exits at once).

USAGE: hello [OPTIONS]                      serve
       hello upgrade --control PATH         upgrade the server and print its verdict
       hello status --control PATH          print the server's status
       hello shutdown --control PATH        start a graceful shutdown

  upgrade exits 0 when the new generation took over and passed its probation,
  1 when it failed or was rolled back (the reason names the child's exit status
  or the upgrade timeout), 2 when it was refused (an upgrade or a drain already
  running), 3 when no server answered. One JSON line on stdout. For systemd:
  ExecReload=/path/to/hello upgrade --control /run/hello/control.sock

SIGNALS:
  SIGUSR2, SIGHUP          upgrade: start the binary found at this one's path (again, so a
                           replaced file is picked up), hand it the listeners, drain, exit.
                           An upgrade re-reads everything (nginx's HUP, systemd's
                           Type=notify-reload); it never kills the server
  SIGTERM, SIGINT, SIGQUIT graceful shutdown (after --shutdown-delay-ms, if set)

OPTIONS:
  --listen ADDR            listen on ADDR; repeatable: 127.0.0.1:8080, [::1]:8080, unix:/path
                           (default 127.0.0.1:8080, or every inherited socket under systemd)
  --pid-file PATH          write the pid here (atomically); removed on exit if still ours
                           (under a holder: the holder's pid, which never changes)
  --supervise              start a holder process that keeps this pid, forwards signals to
                           the serving generation, reaps, and exits with its status: for tini,
                           dumb-init, runit, s6, supervisord or a shell's wait. Automatic as PID 1
  --control PATH           a control socket (mode 0600) for `hello upgrade|status|shutdown`;
                           handed down to each new generation, never unlinked on an upgrade
  --probation-ms N         after the new generation is ready, keep the listener fds N ms and
                           roll back (accept again) if it exits meanwhile (default 2000; 0: off)
  --exit-after-ready-ms N  (for tests) exit with status 3, N ms after being ready
  --shutdown-delay-ms N    on SIGTERM/SIGINT keep accepting and serving N ms (every response
                           says Connection: close, /healthz answers 503), then drain (default 0)
  --max-connections N      serve at most N connections at once (others wait in the backlog)
  --backlog N              listen backlog (default 1024)
  --defer-accept-ms N      TCP_DEFER_ACCEPT: accept a connection once its first bytes arrive,
                           or after N ms rounded up to seconds (default 1000; 0 turns it off)
  --head-timeout-ms N      whole request head must arrive within N ms (default 10000)
  --idle-timeout-ms N      keep-alive idle timeout (default 60000)
  --body-timeout-ms N      each request body read waits at most N ms (default 30000)
  --write-timeout-ms N     each response write waits at most N ms (default 30000)
  --drain-grace-ms N       when draining, idle keep-alive connections wait N ms for a last request (default 1000)
  --linger-ms N            polite close waits N ms for the client's EOF (default 2000)
  --stop-timeout-ms N      drain waits N ms before forcing connections closed (default 30000)
  --upgrade-timeout-ms N   a new process must be ready within N ms (default 60000)
  --max-body-bytes N       largest request body (default 16 MiB)
  --stack-kb N             connection thread stack size (default 256)
  --threads SHAPE          per-request (default): a thread while a connection has a request,
                           idle connections parked in one epoll set; per-connection: a thread
                           owns each connection from accept to close
  --greeting TEXT          what GET / answers (default \"hello\")
  --refuse-upgrade-if PATH the pre-upgrade hook fails while PATH exists
  --no-raise-nofile        keep the soft RLIMIT_NOFILE as it is
  --no-sched-batch         keep the default scheduling policy (not SCHED_BATCH)
  --no-harvest             per-request: every ready idle connection goes through the idle poller
  --help                   print this help

ROUTES:
  GET /                    200 hello
  GET /healthz             200 ok while serving, 503 draining once a shutdown has begun
  GET /sleep?ms=N          waits N ms, then 200 slept N ms
  GET /pid                 pid=P generation=G
  POST|PUT /echo           the request body
  GET /stream?chunks=N&ms=M  N chunks, M ms apart (chunked)
  GET /panic               the handler panics (500, connection closed)
  GET /conninfo            the connection as the handler sees it: peer, local, listener, generation
  GET /events?ms=N         server-sent events every N ms; ends cleanly when the server drains
  GET /ws                  a WebSocket echo; on a restart or shutdown it closes with code 1012
  GET /sized?bytes=N       N bytes (byte i = i % 251) from a stream, with Content-Length;
                           &short=K / &long=K: the stream gives K bytes fewer / more;
                           &chunked=1: the same bytes as a chunked stream
  GET /file?bytes=N        a file of N such bytes, sent with sendfile(2)
  POST /echo?max=N         413 if the body is over N bytes
  GET /debug/fds           this process's open fds and what they point at
  GET /debug/env           its LISTEN_*, GRACE_* and NOTIFY_SOCKET variables

ENVIRONMENT:
  RUST_LOG=info|debug|trace|warn|error (default info)";

struct Args {
    exit_after_ready: Option<Duration>,
    listen: Vec<ListenAddr>,
    cfg: grace::ServerConfig,
    http: grace::http1::HttpConfig,
    greeting: String,
    refuse_upgrade_if: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        exit_after_ready: None,
        listen: Vec::new(),
        cfg: grace::ServerConfig::default(),
        http: grace::http1::HttpConfig::default(),
        greeting: "hello".into(),
        refuse_upgrade_if: None,
    };
    a.cfg.handle_signals = true;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--no-raise-nofile" => {
                a.cfg.raise_nofile_limit = false;
                continue;
            }
            "--no-sched-batch" => {
                a.cfg.sched_batch = false;
                continue;
            }
            "--no-harvest" => {
                a.cfg.harvest = false;
                continue;
            }
            // Read before anything else, by `main` (see `wants_holder`).
            "--supervise" => continue,
            f if !VALUE_FLAGS.contains(&f) => return Err(format!("unknown flag {flag}")),
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| -> Result<u64, String> {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        let ms = |v: &str| num(v).map(Duration::from_millis);
        match flag.as_str() {
            "--listen" => a.listen.push(
                value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?,
            ),
            "--pid-file" => a.cfg.pid_file = Some(PathBuf::from(value)),
            "--max-connections" => a.cfg.max_connections = Some(num(&value)? as usize),
            "--backlog" => a.cfg.backlog = num(&value)?.min(i32::MAX as u64) as i32,
            "--defer-accept-ms" => a.cfg.defer_accept = Some(ms(&value)?),
            "--head-timeout-ms" => a.http.head_timeout = ms(&value)?,
            "--idle-timeout-ms" => a.http.idle_timeout = ms(&value)?,
            "--body-timeout-ms" => a.http.body_timeout = ms(&value)?,
            "--write-timeout-ms" => a.http.write_timeout = ms(&value)?,
            "--drain-grace-ms" => a.http.drain_grace = ms(&value)?,
            "--linger-ms" => a.http.linger_timeout = ms(&value)?,
            "--stop-timeout-ms" => a.cfg.stop_timeout = ms(&value)?,
            "--shutdown-delay-ms" => a.cfg.shutdown_delay = ms(&value)?,
            "--probation-ms" => a.cfg.probation = ms(&value)?,
            "--control" => a.cfg.control = Some(PathBuf::from(value)),
            "--exit-after-ready-ms" => a.exit_after_ready = Some(ms(&value)?),
            "--upgrade-timeout-ms" => a.cfg.upgrade_timeout = ms(&value)?,
            "--max-body-bytes" => a.http.max_body_bytes = num(&value)?,
            "--stack-kb" => a.cfg.thread_stack_size = num(&value)? as usize * 1024,
            "--threads" => {
                a.http.threads = match value.as_str() {
                    "per-request" => grace::http1::Threads::PerRequest,
                    "per-connection" => grace::http1::Threads::PerConnection,
                    _ => return Err(format!("--threads {value}: per-request or per-connection")),
                }
            }
            "--greeting" => a.greeting = value,
            "--refuse-upgrade-if" => a.refuse_upgrade_if = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.listen.is_empty() && !grace::listener::has_inherited() {
        a.listen
            .push("127.0.0.1:8080".parse().expect("valid address"));
    }
    Ok(a)
}

/// The flags that take a value.
const VALUE_FLAGS: &[&str] = &[
    "--listen",
    "--pid-file",
    "--max-connections",
    "--backlog",
    "--defer-accept-ms",
    "--head-timeout-ms",
    "--idle-timeout-ms",
    "--body-timeout-ms",
    "--write-timeout-ms",
    "--drain-grace-ms",
    "--linger-ms",
    "--stop-timeout-ms",
    "--shutdown-delay-ms",
    "--probation-ms",
    "--control",
    "--exit-after-ready-ms",
    "--upgrade-timeout-ms",
    "--max-body-bytes",
    "--stack-kb",
    "--threads",
    "--greeting",
    "--refuse-upgrade-if",
];

/// `--supervise`, read straight from argv: the holder must be forked in
/// `grace::init_with`, before anything (even argument parsing) could start
/// a thread. Values of other flags are skipped, so `--greeting --supervise`
/// is a greeting.
fn wants_holder() -> bool {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--supervise" {
            return true;
        }
        if VALUE_FLAGS.contains(&a.as_str()) {
            it.next();
        }
    }
    false
}

fn query(req: &Request<RequestBody>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == key {
            v.parse().ok()
        } else {
            None
        }
    })
}

fn text(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A body that produces `left` chunks, sleeping `ms` before each but the first.
struct Ticker {
    left: u64,
    sent: u64,
    ms: u64,
}

impl Read for Ticker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.sent > 0 {
            std::thread::sleep(Duration::from_millis(self.ms));
        }
        let line = format!("chunk {}\n", self.sent);
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        self.left -= 1;
        self.sent += 1;
        Ok(n)
    }
}

/// An event stream: one event every `every`, until the drain token says the
/// server is going away; then a last event, and the end of the body (a
/// clean end: the chunked terminator, and the connection closes).
struct Events {
    token: Option<grace::DrainToken>,
    every: Duration,
    sent: u64,
    done: bool,
}

impl Read for Events {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let draining = match &self.token {
            // The wait is the pacing: it returns early when the drain begins.
            Some(t) if self.sent > 0 => t.wait(self.every),
            Some(t) => t.is_draining(),
            None => {
                if self.sent > 0 {
                    std::thread::sleep(self.every);
                }
                false
            }
        };
        let line = if draining {
            self.done = true;
            "event: bye\ndata: the server is restarting or shutting down\n\n".to_string()
        } else {
            format!("data: {}\n\n", self.sent)
        };
        self.sent += 1;
        let n = line.len().min(buf.len());
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        Ok(n)
    }
}

/// `GET /ws`: a WebSocket echo (tungstenite over the upgraded connection).
fn websocket(req: &Request<RequestBody>) -> Response<ResponseBody> {
    let is_ws = req
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(key) = req.headers().get("sec-websocket-key").filter(|_| is_ws) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake is expected here\n".into(),
        );
    };
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(ResponseBody::upgrade(ws_echo));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    r
}

/// Echoes every text and binary message. When the server starts going away
/// (the upgraded stream's read says so once), it sends a close frame with
/// code 1012 ("service restart"), waits a bounded while for the client's
/// close, and ends: the client reconnects, to the new generation.
fn ws_echo(up: grace::http1::Upgraded) {
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::{CloseFrame, Role};
    use tungstenite::{Error, Message, WebSocket};
    let mut ws = WebSocket::from_raw_socket(up, Role::Server, None);
    let mut closing = false;
    loop {
        match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).is_err() {
                    break;
                }
            }
            // Pings are answered, a client's close is replied to, by tungstenite.
            Ok(_) => {}
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock && !closing => {
                closing = true;
                log::debug!(
                    "hello: pid {}: closing a WebSocket: draining",
                    std::process::id()
                );
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Restart,
                    reason: "server restart".into(),
                }));
                ws.get_mut().set_read_timeout(Some(Duration::from_secs(5)));
            }
            // The client's close completed, or the connection broke or timed out.
            Err(_) => break,
        }
    }
}

/// `len` bytes of a fixed pattern: byte `i` is `i % 251` (a prime, so no
/// power-of-two block repeats), for bodies a client can check.
struct Pattern {
    at: u64,
    len: u64,
}

impl Pattern {
    fn new(len: u64) -> Pattern {
        Pattern { at: 0, len }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.len - self.at).unwrap_or(usize::MAX));
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = ((self.at + i as u64) % 251) as u8;
        }
        self.at += n as u64;
        Ok(n)
    }
}

/// The largest body `GET /bytes` serves.
const BYTES_MAX: usize = 16 << 20;

/// `BYTES_MAX` bytes of the pattern, built on first use.
fn pattern_bytes() -> &'static [u8] {
    static BUF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| {
        let mut v = vec![0; BYTES_MAX];
        Pattern::new(BYTES_MAX as u64)
            .read_exact(&mut v)
            .expect("the pattern never fails");
        v
    })
}

/// About `us` µs of CPU work: 1,000 steps per µs of a multiply-add chain
/// (each step waits for the one before), the loop `benches/peers` runs for
/// the same route. Returns the result so it is not optimised away.
fn work(us: u64) -> u64 {
    let mut x = us;
    for _ in 0..us * 1000 {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// A file of `bytes` bytes of the pattern, made once in the temporary
/// directory (written aside, then renamed into place).
fn pattern_file(bytes: u64) -> io::Result<std::fs::File> {
    let dir = std::env::temp_dir().join("grace-hello-files");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("pattern-{bytes}"));
    if let Ok(f) = std::fs::File::open(&path) {
        if f.metadata()?.len() == bytes {
            return Ok(f);
        }
    }
    let tmp = dir.join(format!("pattern-{bytes}.{}", std::process::id()));
    let mut out = std::fs::File::create(&tmp)?;
    io::copy(&mut Pattern::new(bytes), &mut out)?;
    out.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(&path)
}

/// How a handler sees a connection's addresses.
fn show_addr(a: &grace::SockAddr) -> String {
    match a {
        grace::SockAddr::Inet(a) => a.to_string(),
        grace::SockAddr::Unix(p) => format!("unix:{}", p.display()),
        grace::SockAddr::Abstract(n) => format!("unix:@{}", String::from_utf8_lossy(n)),
        _ => "unnamed".to_string(),
    }
}

fn handle(
    greeting: &'static str,
    server: &grace::Handle,
    mut req: Request<RequestBody>,
) -> Response<ResponseBody> {
    // The hot path of the benchmarks: no allocation but the header map.
    if req.uri().path() == "/" && matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = Response::new(ResponseBody::from(greeting));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return r;
    }
    let path = req.uri().path().to_owned();
    match (req.method().clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/sleep") => {
            let ms = query(&req, "ms").unwrap_or(0).min(600_000);
            std::thread::sleep(Duration::from_millis(ms));
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        // A CPU-bound handler: about N µs of arithmetic on this thread (the
        // same loop as the benchmark peers', so the work per request is equal).
        (Method::GET | Method::HEAD, "/work") => {
            let us = query(&req, "us").unwrap_or(0).min(1_000_000);
            text(StatusCode::OK, format!("worked {us} us: {:x}\n", work(us)))
        }
        // N bytes of the pattern from memory (one buffer, built once): a
        // large response as a handler that holds its body serves it.
        (Method::GET | Method::HEAD, "/bytes") => {
            let n = query(&req, "n").unwrap_or(1024).min(BYTES_MAX as u64) as usize;
            Response::new(ResponseBody::from(&pattern_bytes()[..n]))
        }
        // A readiness probe: 503 from the moment a shutdown begins (its
        // delay included), so a load balancer stops sending new clients.
        (Method::GET | Method::HEAD, "/healthz") => {
            if server.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
            } else {
                text(StatusCode::OK, "ok\n".into())
            }
        }
        (Method::GET | Method::HEAD, "/pid") => text(
            StatusCode::OK,
            format!(
                "pid={} generation={}\n",
                std::process::id(),
                grace::generation()
            ),
        ),
        (Method::POST | Method::PUT, "/echo") => {
            if let Some(max) = query(&req, "max") {
                // Over it, the server answers 413 and closes.
                req.body_mut().set_limit(max);
            }
            let mut body = Vec::new();
            match req.body_mut().read_to_end(&mut body) {
                Ok(_) => Response::new(ResponseBody::from(body)),
                // The server answers with the matching status (400, 408, 413).
                Err(e) => text(StatusCode::BAD_REQUEST, format!("bad body: {e}\n")),
            }
        }
        (Method::GET | Method::HEAD, "/stream") => {
            let chunks = query(&req, "chunks").unwrap_or(3).min(100_000);
            let ms = query(&req, "ms").unwrap_or(0).min(60_000);
            Response::new(ResponseBody::stream(Ticker {
                left: chunks,
                sent: 0,
                ms,
            }))
        }
        (Method::GET, "/panic") => panic!("GET /panic asked for a panic"),
        // A body of known length from a stream; `short`/`long` make the
        // stream end early or run on (the connection then closes).
        (Method::GET | Method::HEAD, "/sized") => {
            let bytes = query(&req, "bytes").unwrap_or(1024).min(1 << 34);
            let short = query(&req, "short").unwrap_or(0).min(bytes);
            let long = query(&req, "long").unwrap_or(0);
            let pattern = Pattern::new(bytes - short + long);
            if query(&req, "chunked") == Some(1) {
                // The same bytes as a plain (chunked) stream, for comparison.
                Response::new(ResponseBody::stream(pattern))
            } else {
                Response::new(ResponseBody::sized(pattern, bytes))
            }
        }
        // A file of N bytes (the pattern), sent with sendfile(2).
        (Method::GET | Method::HEAD, "/file") => {
            let bytes = query(&req, "bytes").unwrap_or(1024).min(1 << 34);
            match pattern_file(bytes).and_then(ResponseBody::file) {
                Ok(body) => Response::new(body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("file: {e}\n")),
            }
        }
        // The connection as the handler sees it, from the request's extensions.
        (Method::GET, "/conninfo") => match req.extensions().get::<grace::ConnInfo>() {
            Some(c) => text(
                StatusCode::OK,
                format!(
                    "peer={}\nlocal={}\nlistener={}\ngeneration={}\n",
                    show_addr(&c.peer),
                    show_addr(&c.local),
                    c.listener,
                    c.generation
                ),
            ),
            None => text(StatusCode::INTERNAL_SERVER_ERROR, "no ConnInfo\n".into()),
        },
        (Method::GET, "/ws") => websocket(&req),
        // Server-sent events until the drain: they end cleanly at a restart.
        (Method::GET, "/events") => {
            let ms = query(&req, "ms").unwrap_or(1000).clamp(1, 60_000);
            let mut r = Response::new(ResponseBody::stream(Events {
                token: req.extensions().get::<grace::DrainToken>().cloned(),
                every: Duration::from_millis(ms),
                sent: 0,
                done: false,
            }));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            r
        }
        // For the tests: what this process inherited and kept.
        (Method::GET, "/debug/fds") => {
            let mut out = String::new();
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                for e in dir.flatten() {
                    let target = std::fs::read_link(e.path()).unwrap_or_default();
                    out.push_str(&format!(
                        "{} {}\n",
                        e.file_name().to_string_lossy(),
                        target.display()
                    ));
                }
            }
            text(StatusCode::OK, out)
        }
        (Method::GET, "/debug/env") => {
            let mut out = String::new();
            for (k, v) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("LISTEN_") || k.starts_with("GRACE_") || k == "NOTIFY_SOCKET" {
                    out.push_str(&format!("{k}={}\n", v.to_string_lossy()));
                }
            }
            text(StatusCode::OK, out)
        }
        (
            _,
            "/" | "/healthz" | "/sleep" | "/pid" | "/echo" | "/stream" | "/panic" | "/conninfo"
            | "/events" | "/ws" | "/sized" | "/file" | "/work" | "/bytes",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// `hello upgrade|status|shutdown --control PATH [--timeout-ms N]`: the
/// control-socket client, for scripts and `ExecReload=`.
fn client(command: &str) -> ! {
    let mut path = None;
    let mut timeout = Duration::from_secs(600);
    let mut it = std::env::args().skip(2);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--control", Some(v)) => path = Some(PathBuf::from(v)),
            ("--timeout-ms", Some(v)) => match v.parse() {
                Ok(ms) => timeout = Duration::from_millis(ms),
                Err(_) => {
                    eprintln!("hello {command}: --timeout-ms {v:?} is not a number");
                    std::process::exit(2);
                }
            },
            (f, _) => {
                eprintln!(
                    "hello {command}: unknown flag {f} (want --control PATH [--timeout-ms N])"
                );
                std::process::exit(2);
            }
        }
    }
    let Some(path) = path else {
        eprintln!("hello {command}: --control PATH is required");
        std::process::exit(2);
    };
    match grace::control::request(&path, command, timeout) {
        Ok(reply) => {
            println!("{}", reply.line);
            std::process::exit(reply.exit_code());
        }
        Err(e) => {
            let why = format!("{}: {e}", path.display()).replace('"', "'");
            println!("{{\"ok\":false,\"result\":\"no server\",\"error\":\"{why}\"}}");
            std::process::exit(grace::control::EXIT_NO_SERVER);
        }
    }
}

fn main() {
    if let Some(cmd) = std::env::args().nth(1) {
        if matches!(cmd.as_str(), "upgrade" | "status" | "shutdown") {
            client(&cmd);
        }
    }
    // The logger first (it starts no thread), so the handover's first log
    // lines are seen; then read inherited listeners and clear LISTEN_*
    // while still single-threaded.
    init_logger();
    grace::init_with(if wants_holder() {
        grace::Supervise::Always
    } else {
        grace::Supervise::Auto
    });
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hello: {e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut server = match Server::bind(args.cfg, &args.listen) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen: {e}");
            std::process::exit(1);
        }
    };
    if let Some(path) = args.refuse_upgrade_if {
        server.pre_upgrade(move || {
            if path.exists() {
                Err(format!("{} exists", path.display()))
            } else {
                Ok(())
            }
        });
    }
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    log::info!(
        "hello: pid {} generation {} serving on {}",
        std::process::id(),
        server.generation(),
        addrs.join(" ")
    );
    // "hello\n", made once (the `/` route serves it without allocating).
    let greeting: &'static str = Box::leak(format!("{}\n", args.greeting).into_boxed_str());
    let h = server.handle();
    if let Some(after) = args.exit_after_ready {
        let h = h.clone();
        std::thread::spawn(move || {
            if h.wait_ready(Duration::from_secs(600)) {
                std::thread::sleep(after);
                log::warn!(
                    "hello: pid {} exiting with status 3, as --exit-after-ready-ms asked",
                    std::process::id()
                );
                std::process::exit(3);
            }
        });
    }
    let outcome = server.serve_http(
        move |req: Request<RequestBody>| handle(greeting, &h, req),
        args.http,
    );
    match outcome {
        Ok(o) => {
            log::info!("hello: pid {} exiting ({:?})", std::process::id(), o.reason);
            std::process::exit(if o.reason == StopReason::Aborted {
                1
            } else {
                0
            });
        }
        Err(e) => {
            log::error!("hello: {e}");
            std::process::exit(1);
        }
    }
}
