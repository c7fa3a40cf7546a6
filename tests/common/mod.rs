//! Shared helpers for the integration tests: start the demo binary on
//! 127.0.0.1 port 0, find its port and pid, talk HTTP/1.1 over raw sockets,
//! and reap every generation (the test process is a child subreaper).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// The HTTP demo (`examples/hello.rs`), as `cargo test` builds it.
pub fn hello() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| example("hello"))
}

/// The line echo demo (`examples/echo.rs`), as `cargo test` builds it.
pub fn echo() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| example("echo"))
}

/// The path of example `name`: `cargo test` builds every example beside the
/// test binaries (`target/<profile>/examples/`, the test being in
/// `target/<profile>/deps/`). The demos are examples rather than `[[bin]]`s
/// so that `cargo install grace` installs nothing.
pub fn example(name: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = profile_dir.join("examples").join(name);
    let built = std::fs::metadata(&path).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "{} is missing: the demos are examples, built by a plain `cargo test` \
             (or `cargo build --examples` before `cargo test --test ...`)",
            path.display()
        );
    };
    // `cargo test --test X` builds no example: never test an old demo.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest = newest_source(&[root.join("src"), root.join(format!("examples/{name}.rs"))]);
    if let Some((t, source)) = newest {
        assert!(
            t <= built,
            "{} is older than {}: run `cargo build --examples` (a plain `cargo test` does)",
            path.display(),
            source.display()
        );
    }
    path.to_str().expect("a UTF-8 path").to_string()
}

/// The most recently modified `.rs` file under `paths` that goes into a
/// demo's build (test modules, `tests.rs` and `tests/`, do not), with its
/// time.
fn newest_source(paths: &[PathBuf]) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        let test_only = p.file_stem().is_some_and(|s| s == "tests");
        if test_only {
            continue;
        }
        if m.is_dir() {
            if let Ok(dir) = std::fs::read_dir(&p) {
                stack.extend(dir.flatten().map(|e| e.path()));
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            let Ok(t) = m.modified() else {
                continue;
            };
            match &newest {
                Some((n, _)) if t <= *n => {}
                _ => newest = Some((t, p)),
            }
        }
    }
    newest
}

/// Makes the test process a child subreaper, once: PID 1 on these machines
/// does not reap orphans, so every generation is reparented to us and we
/// reap it.
pub fn subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| os::set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER"));
}

/// The few process and socket calls the tests make directly (grace's own
/// libc wrappers are private to the library).
pub mod os {
    use std::io;

    fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    pub fn set_child_subreaper() -> io::Result<()> {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes no pointers.
        cvt(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })
            .map(drop)
    }

    pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: no pointers.
        cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
    }

    /// `waitpid(pid)`; with `block == false`, `Ok(None)` while it runs.
    pub fn waitpid(pid: u32, block: bool) -> io::Result<Option<grace::Exit>> {
        let mut status: libc::c_int = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            // SAFETY: status is a live local int.
            let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
            match r {
                -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                -1 => return Err(io::Error::last_os_error()),
                0 => return Ok(None),
                _ if libc::WIFSIGNALED(status) => {
                    return Ok(Some(grace::Exit::Signal(libc::WTERMSIG(status))))
                }
                _ => return Ok(Some(grace::Exit::Code(libc::WEXITSTATUS(status)))),
            }
        }
    }

    pub fn geteuid() -> u32 {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }

    pub fn setsockopt_int(
        fd: std::os::fd::BorrowedFd<'_>,
        level: libc::c_int,
        name: libc::c_int,
        value: libc::c_int,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a live c_int and its exact size, on a descriptor the
        // caller borrows for the call.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                &value as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(drop)
    }

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit.
    pub fn raise_nofile_limit() -> io::Result<()> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: lim is a live local rlimit.
        cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: lim is a live, initialised rlimit.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }).map(drop)
    }
}

/// Polls `f` every few ms until it returns `Some`, or panics at `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("grace-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines a server (and all its generations, which share its stderr) logged.
#[derive(Clone, Default)]
pub struct Log(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Log {
    pub fn lines(&self) -> Vec<String> {
        self.0 .0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for a line containing `needle` that was not seen before index
    /// `from`; returns it with its index.
    pub fn wait_line(&self, needle: &str, from: usize, timeout: Duration) -> (usize, String) {
        let deadline = Instant::now() + timeout;
        let mut g = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some((i, l)) = g
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| l.contains(needle))
            {
                return (i, l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                let text = g.join("\n");
                drop(g);
                panic!("no log line with {needle:?} within {timeout:?}; log:\n{text}");
            }
            g = self
                .0
                 .1
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn push(&self, line: String) {
        self.0
             .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
        self.0 .1.notify_all();
    }
}

/// A running demo server (its first generation is our direct child).
pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub log: Log,
    pub dir: TempDir,
    pub pid_file: PathBuf,
}

/// Spawns `bin` with `args`, reading its stderr into a [`Log`].
pub fn spawn_logged(cmd: &mut Command) -> (Child, Log) {
    subreaper();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if std::env::var_os("RUST_LOG").is_none() {
        // trace: the accept loop logs each connection's peer, which tests
        // use to know a request is in the server's hands.
        cmd.env("RUST_LOG", "trace");
    }
    // ETXTBSY: another test thread forked while a binary was being copied
    // or written, and its child still holds the file open for writing until
    // it execs. Retry for a bounded while.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("spawn server: {e}"),
        }
    };
    let log = Log::default();
    let stderr = child.stderr.take().unwrap();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(line) => l.push(line),
                Err(_) => break,
            }
        }
    });
    (child, log)
}

impl Server {
    /// Starts the HTTP demo on 127.0.0.1:0 with extra `args`.
    pub fn start(args: &[&str]) -> Server {
        Server::start_bin(hello(), args)
    }

    pub fn start_bin(bin: &str, args: &[&str]) -> Server {
        Server::start_env(bin, args, &[])
    }

    /// Starts `bin` with `args` and extra environment variables.
    ///
    /// `GRACE_TEST_THREADS=per-connection` (or `per-request`) runs the HTTP
    /// demo in that thread shape wherever a test does not choose one: CI
    /// runs the restart and drain suites once more that way.
    pub fn start_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = TempDir::new("srv");
        let pid_file = dir.path().join("server.pid");
        let mut cmd = Command::new(bin);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut shape = None;
        if let Ok(s) = std::env::var("GRACE_TEST_THREADS") {
            if bin == hello() && !args.contains(&"--threads") {
                cmd.args(["--threads", &s]);
                shape = Some(s);
            }
        }
        cmd.arg("--pid-file").arg(&pid_file).args(args);
        cmd.envs(env.iter().copied());
        let s = Server::from_command(cmd, dir, pid_file);
        // (The line is at debug level: checked under the harness's default
        // RUST_LOG=trace only.)
        if let Some(shape) = shape.filter(|_| std::env::var_os("RUST_LOG").is_none()) {
            // The shape asked for is the one serving (a debug log line).
            let want = match shape.as_str() {
                "per-connection" => "serving HTTP/1.1 with a thread per connection",
                _ => "serving HTTP/1.1 with a thread per request",
            };
            s.log.wait_line(want, 0, Duration::from_secs(20));
        }
        s
    }

    /// Starts a prepared command (which must pass `--pid-file pid_file`).
    pub fn from_command(mut cmd: Command, dir: TempDir, pid_file: PathBuf) -> Server {
        let (child, log) = spawn_logged(&mut cmd);
        let (_, line) = log.wait_line("serving on", 0, Duration::from_secs(20));
        let addr = line
            .split("serving on ")
            .nth(1)
            .and_then(|rest| {
                rest.split([' ', ','])
                    .find_map(|w| w.parse::<SocketAddr>().ok())
            })
            .unwrap_or_else(|| panic!("no TCP address in {line:?}"));
        let s = Server {
            child: Some(child),
            addr,
            log,
            dir,
            pid_file,
        };
        wait_for("pid file", Duration::from_secs(10), || s.file_pid());
        s
    }

    /// The pid in the pid file.
    pub fn file_pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The first generation's pid.
    pub fn first_pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `sig` to `pid`.
    pub fn signal(pid: u32, sig: i32) {
        os::kill(pid, sig).expect("kill");
    }

    /// Asks `/pid` on a new connection: (pid, generation).
    pub fn pid_gen(&self) -> (u32, u64) {
        let r = get(self.addr, "/pid").expect("GET /pid");
        parse_pid_gen(&r.body_str())
    }

    /// Waits for the direct child (generation 0) to exit; returns its code.
    pub fn wait_first(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Kill every generation we know of, and reap them.
        let mut pids: Vec<u32> = Vec::new();
        if let Some(p) = self.file_pid() {
            pids.push(p);
        }
        for line in self.log.lines() {
            if let Some(p) = line
                .split("pid ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse().ok())
            {
                pids.push(p);
            }
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        pids.sort_unstable();
        pids.dedup();
        for p in pids {
            if self.child.as_ref().is_some_and(|c| c.id() == p) {
                continue;
            }
            let _ = os::kill(p, libc::SIGKILL);
            reap(p, Duration::from_secs(5));
        }
    }
}

/// Reaps `pid` (a descendant reparented to us), waiting up to `timeout`.
pub fn reap(pid: u32, timeout: Duration) -> Option<grace::Exit> {
    let deadline = Instant::now() + timeout;
    loop {
        match os::waitpid(pid, false) {
            Ok(Some(e)) => return Some(e),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn parse_pid_gen(body: &str) -> (u32, u64) {
    let mut pid = None;
    let mut gen = None;
    for kv in body.split_whitespace() {
        if let Some(v) = kv.strip_prefix("pid=") {
            pid = v.parse().ok();
        }
        if let Some(v) = kv.strip_prefix("generation=") {
            gen = v.parse().ok();
        }
    }
    (
        pid.unwrap_or_else(|| panic!("no pid in {body:?}")),
        gen.unwrap_or_else(|| panic!("no generation in {body:?}")),
    )
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// True if the server said it will close the connection.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// Connects with a read timeout so no test can hang on a silent server.
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.set_write_timeout(Some(Duration::from_secs(15)))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one response from `r` (for a request with method `method`).
pub fn read_response<R: BufRead>(r: &mut R, method: &str) -> io::Result<Resp> {
    let mut line = String::new();
    let mut status;
    let mut headers;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF before status line",
            ));
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            ));
        }
        status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {line:?}"),
                )
            })?;
        headers = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in headers",
                ));
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("bad header {l:?}"))
            })?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        if status != 100 {
            break;
        }
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
    };
    if method == "HEAD" || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad chunk size {line:?}"),
                )
            })?;
            if size == 0 {
                // trailers until the empty line
                loop {
                    line.clear();
                    r.read_line(&mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk)?;
            resp.body.extend_from_slice(&chunk);
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(cl) = resp.header("content-length") {
        let n: usize = cl
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        resp.body = vec![0u8; n];
        r.read_exact(&mut resp.body)?;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// One request on a new connection, `Connection: close`.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> io::Result<Resp> {
    let mut s = connect(addr)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n").into_bytes();
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let mut r = BufReader::new(s);
    read_response(&mut r, method)
}

/// `GET path` on a new connection.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Resp> {
    request(addr, "GET", path, b"")
}

/// Sends raw bytes on a new connection and reads everything until the server
/// closes (or the read timeout): for hostile-input tests.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = connect(addr)?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A keep-alive client connection.
pub struct Client {
    pub r: BufReader<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> io::Result<Client> {
        Ok(Client {
            r: BufReader::new(connect(addr)?),
        })
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.r.get_mut().write_all(raw)
    }

    pub fn get(&mut self, path: &str) -> io::Result<Resp> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())?;
        read_response(&mut self.r, "GET")
    }

    pub fn read(&mut self, method: &str) -> io::Result<Resp> {
        read_response(&mut self.r, method)
    }

    /// True if the server has closed the connection (EOF within `timeout`).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let s = self.r.get_mut();
        let _ = s.set_read_timeout(Some(timeout));
        let mut b = [0u8; 1];
        let closed = match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(15)));
        closed
    }
}

/// Entries of `/proc/PID/<dir>` (`fd`: open descriptors, `task`: threads);
/// 0 once the process is gone.
pub fn proc_entries(pid: u32, dir: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/{dir}"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// True once `pid` catches SIGUSR2, SIGTERM and SIGINT (`SigCgt` in
/// `/proc/PID/status`); before that, SIGUSR2 would kill it.
pub fn handles_signals(pid: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let caught = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    [libc::SIGUSR2, libc::SIGTERM, libc::SIGINT]
        .iter()
        .all(|s| caught & (1 << (s - 1)) != 0)
}

/// Waits until `pid` handles the upgrade and shutdown signals.
pub fn wait_signal_handlers(pid: u32) {
    wait_for("the signal handlers", Duration::from_secs(10), || {
        handles_signals(pid).then_some(())
    });
}

/// The bound for every wait of the restart helpers below.
pub const WAIT: Duration = Duration::from_secs(20);

/// Waits for generation `pid` to exit and returns how: our direct child
/// (generation 0) through `Child::wait`, later ones (reparented to us, the
/// subreaper) through `waitpid`.
pub fn wait_exit(s: &mut Server, pid: u32) -> Option<grace::Exit> {
    if pid == s.first_pid() {
        s.wait_first(WAIT).map(grace::Exit::Code)
    } else {
        reap(pid, WAIT)
    }
}

/// Sends SIGUSR2 to `old` and waits until the next generation serves (its
/// generation one more than `old_gen`), names itself in the pid file, and
/// `old` has exited 0. Returns the new pid.
pub fn restart(s: &mut Server, old: u32, old_gen: u64) -> u32 {
    Server::signal(old, libc::SIGUSR2);
    let (pid, gen) = wait_for("the new generation to serve", WAIT, || {
        let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != old).then_some((p, g))
    });
    assert_eq!(gen, old_gen + 1, "generation goes up by one");
    wait_for("the pid file to name the new process", WAIT, || {
        (s.file_pid() == Some(pid)).then_some(())
    });
    assert_eq!(
        wait_exit(s, old),
        Some(grace::Exit::Code(0)),
        "old generation {old} exits 0"
    );
    pid
}

/// Binds an in-process `grace::Server` (default config, no signal handlers)
/// on 127.0.0.1:0 and returns it with its address.
pub fn bind_in_process() -> (grace::Server, SocketAddr) {
    let server = grace::Server::bind(
        grace::ServerConfig::default(),
        &["127.0.0.1:0".parse().unwrap()],
    )
    .unwrap();
    let addr = match &server.local_addrs()[0] {
        grace::ListenAddr::Tcp(a) => *a,
        other => panic!("{other}"),
    };
    (server, addr)
}

/// A request that failed, with what is known of its connection.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The client's local port (to find the accepting process in the log).
    pub port: u16,
    /// The pid that answered earlier requests on this connection, if any.
    pub owner: Option<u32>,
    /// The error (read through `Debug` in assertion messages).
    pub what: String,
}

/// Keep-alive clients asking `GET /pid` in a loop, so every response says
/// which process served it, and every failure can be attributed.
pub struct PidLoad {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    by_pid: Arc<Mutex<HashMap<u32, u64>>>,
    failures: Arc<Mutex<Vec<Failure>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PidLoad {
    pub fn start(addr: SocketAddr, n: usize) -> PidLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let by_pid = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|_| {
                let (stop, ok, by_pid, failures) =
                    (stop.clone(), ok.clone(), by_pid.clone(), failures.clone());
                std::thread::spawn(move || {
                    let mut budget = 200_000u32;
                    let mut conn: Option<(Client, u16, Option<u32>)> = None;
                    while !stop.load(Ordering::Relaxed) && budget > 0 {
                        budget -= 1;
                        if conn.is_none() {
                            match Client::new(addr) {
                                Ok(c) => {
                                    let port = c.r.get_ref().local_addr().unwrap().port();
                                    conn = Some((c, port, None));
                                }
                                Err(e) => {
                                    failures.lock().unwrap().push(Failure {
                                        port: 0,
                                        owner: None,
                                        what: format!("connect: {e}"),
                                    });
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            }
                        }
                        let (c, port, owner) = conn.as_mut().unwrap();
                        let fail = |what: String| Failure {
                            port: *port,
                            owner: *owner,
                            what,
                        };
                        match c.get("/pid") {
                            Ok(r) if r.status == 200 => {
                                let (pid, _) = parse_pid_gen(&r.body_str());
                                *owner = Some(pid);
                                ok.fetch_add(1, Ordering::Relaxed);
                                *by_pid.lock().unwrap().entry(pid).or_default() += 1;
                                if r.closes() {
                                    conn = None;
                                }
                            }
                            Ok(r) => {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(fail(format!("status {}", r.status)));
                                conn = None;
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(fail(format!("{e}")));
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        PidLoad {
            stop,
            ok,
            by_pid,
            failures,
            threads,
        }
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded.
    pub fn progress(&self, n: u64) {
        let target = self.ok() + n;
        wait_for("load progress", WAIT, || {
            (self.ok() >= target).then_some(())
        });
    }

    /// Waits until `n` more requests were served by `pid`.
    pub fn progress_on(&self, pid: u32, n: u64) {
        let served = || self.by_pid.lock().unwrap().get(&pid).copied().unwrap_or(0);
        let target = served() + n;
        wait_for("load progress on the new process", WAIT, || {
            (served() >= target).then_some(())
        });
    }

    pub fn finish(self) -> (u64, HashMap<u32, u64>, Vec<Failure>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let by_pid = self.by_pid.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), by_pid, failures)
    }
}

/// Asserts the load saw no failure at all.
pub fn assert_no_failures(ok: u64, failures: &[Failure]) {
    assert!(
        failures.is_empty(),
        "{} failed request(s) of {}: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
}

/// The pid that accepted the connection from local `port`, by the last
/// `accepted Inet(127.0.0.1:PORT)` line in the log.
pub fn accepted_by(log: &Log, port: u16) -> Option<u32> {
    let needle = format!("accepted Inet(127.0.0.1:{port})");
    log.lines()
        .iter()
        .rev()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split('[').nth(1)?.split(']').next()?.parse().ok())
}

/// True while `pid` runs: it exists and is not a zombie waiting to be reaped.
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit_once(')')?.1.split_whitespace().next()?.to_string();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Load from `n` client threads until `stop`; counts successes and errors.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts `n` client threads on `addr`, keep-alive or a connection per
    /// request; every request must get `200 hello`.
    pub fn start(addr: SocketAddr, n: usize, keep_alive: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|_| {
                let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
                std::thread::spawn(move || {
                    // Bounded: at most this many requests per thread.
                    let mut budget = 200_000u32;
                    let mut client: Option<Client> = None;
                    while !stop.load(Ordering::Relaxed) && budget > 0 {
                        budget -= 1;
                        let res = if keep_alive {
                            if client.is_none() {
                                match Client::new(addr) {
                                    Ok(c) => client = Some(c),
                                    Err(e) => {
                                        errors.lock().unwrap().push(format!("connect: {e}"));
                                        std::thread::sleep(Duration::from_millis(5));
                                        continue;
                                    }
                                }
                            }
                            let c = client.as_mut().unwrap();
                            c.get("/")
                        } else {
                            get(addr, "/")
                        };
                        match res {
                            Ok(r) if r.status == 200 && r.body == b"hello\n" => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if r.closes() {
                                    client = None;
                                }
                            }
                            Ok(r) => {
                                errors.lock().unwrap().push(format!(
                                    "status {} body {:?}",
                                    r.status,
                                    r.body_str()
                                ));
                                client = None;
                            }
                            Err(e) => {
                                errors.lock().unwrap().push(format!("request: {e}"));
                                client = None;
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            errors,
            threads,
        }
    }

    /// Requests that succeeded so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded.
    pub fn progress(&self, n: u64) {
        let target = self.ok() + n;
        wait_for("load progress", Duration::from_secs(30), || {
            (self.ok() >= target).then_some(())
        });
    }

    /// Stops the load: (successes, errors).
    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), errors)
    }

    /// Stops the load and asserts that no request failed; the successes.
    pub fn finish_clean(self) -> u64 {
        let (ok, errors) = self.finish();
        assert!(
            errors.is_empty(),
            "{} failed request(s) of {}: {:?}",
            errors.len(),
            ok + errors.len() as u64,
            &errors[..errors.len().min(10)]
        );
        ok
    }
}

/// Replaces `path` with a shell script, as a deploy would (a new file
/// renamed over it).
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Puts the real demo binary back at `path` (copy, then rename over).
pub fn restore_binary(path: &Path) {
    let tmp = path.with_extension("new");
    std::fs::copy(hello(), &tmp).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
