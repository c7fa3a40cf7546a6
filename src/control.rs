//! The control socket: a Unix stream socket (mode 0600) where an operator,
//! a deploy script or `systemctl reload` asks a running server for its
//! status, an upgrade with a verdict, or a shutdown.
//!
//! - It is handed down to each new generation like a listener (named
//!   `grace-control` in `LISTEN_FDNAMES`), so its path and inode never change
//!   and it is never unlinked on a handover. A systemd `.socket` unit can
//!   provide it too, with `FileDescriptorName=grace-control`.
//! - Protocol: one command line in (`status`, `upgrade`, `shutdown`; at most
//!   [`MAX_LINE`] bytes, within [`LINE_TIMEOUT`]), one JSON line out, then the
//!   server closes. `upgrade` answers once the verdict is in: after the
//!   probation, or at the failure or rollback.
//! - Peers are checked with `SO_PEERCRED`: only root and the server's own
//!   uid may act (the same boundary as `kill`: whoever may signal the server
//!   may control it). Anyone else gets an error line, and a log line.
//! - [`request`] is the client, for any program (the demo's `hello upgrade`).
//!
//! Only the accepting side runs here; what a command does is decided by the
//! control loop (`src/server/control_loop/`), which gets each command as a
//! message (`src/server/message.rs`).

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::listener::{self, ListenAddr, Listener};
use crate::sys;
use crate::upgrade::{UpgradeError, UpgradeStats};

/// The `LISTEN_FDNAMES` name of the control socket.
pub const FD_NAME: &str = "grace-control";
/// The longest command line accepted, in bytes.
pub const MAX_LINE: usize = 1024;
/// How long a client may take to send its command line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(2);
/// Control connections served at once; more are told to retry.
const MAX_CLIENTS: usize = 32;

/// Opens the control socket at `path`: the inherited one (named
/// [`FD_NAME`]: from the previous generation, or a systemd `.socket` unit),
/// else a fresh one with mode 0600.
pub(crate) fn open(path: &Path, backlog: i32) -> io::Result<Listener> {
    if let Some(l) = listener::take_inherited_named(FD_NAME) {
        if l.local_addr() != &ListenAddr::Unix(path.to_path_buf()) {
            log::warn!(
                "[{}] the inherited control socket is {}, not unix:{}; using it",
                sys::getpid(),
                l.local_addr(),
                path.display()
            );
        }
        log::debug!(
            "[{}] adopted the control socket {}",
            sys::getpid(),
            l.local_addr()
        );
        return Ok(l);
    }
    let mut l = Listener::bind_mode(&ListenAddr::Unix(path.to_path_buf()), backlog, Some(0o600))
        .map_err(|e| io::Error::new(e.kind(), format!("control socket: {e}")))?;
    l.set_name(FD_NAME);
    Ok(l)
}

/// A command from a control client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Status,
    Upgrade,
    Shutdown,
}

/// Runs one command and gives the reply line (JSON, without the newline).
pub(crate) type Exec = Arc<dyn Fn(Command) -> String + Send + Sync>;

/// The accepting thread's switches.
pub(crate) struct Gate {
    wake: OwnedFd,
    paused: AtomicBool,
    stopped: AtomicBool,
    /// Control connections being served.
    clients: Arc<AtomicUsize>,
}

impl Gate {
    pub(crate) fn new() -> io::Result<Arc<Gate>> {
        Ok(Arc::new(Gate {
            wake: sys::eventfd()?,
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            clients: Arc::new(AtomicUsize::new(0)),
        }))
    }

    /// Stops or resumes accepting (the old generation of a handover leaves
    /// the socket to the new one; a rollback takes it back).
    pub(crate) fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        let _ = sys::eventfd_signal(self.wake.as_raw_fd());
    }

    /// Stops the accepting thread for good.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        let _ = sys::eventfd_signal(self.wake.as_raw_fd());
    }

    /// Waits, at most `timeout`, for the control connections still being
    /// served to get their reply out: the process is about to exit, and the
    /// verdict of the upgrade that ends it must not die with it.
    pub(crate) fn wait_clients(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.clients.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Starts the thread that accepts control connections on `fd` (a listener
/// that outlives the thread: the server closes it only after [`Gate::stop`]).
pub(crate) fn start(fd: RawFd, gate: Arc<Gate>, exec: Exec) -> io::Result<()> {
    std::thread::Builder::new()
        .name("grace-control".into())
        .spawn(move || accept_loop(fd, &gate, exec))?;
    Ok(())
}

fn accept_loop(fd: RawFd, gate: &Gate, exec: Exec) {
    let pid = sys::getpid();
    let clients = gate.clients.clone();
    while !gate.stopped.load(Ordering::Acquire) {
        let paused = gate.paused.load(Ordering::Acquire);
        let mut pfds = [
            sys::pollfd(gate.wake.as_raw_fd(), libc::POLLIN),
            sys::pollfd(fd, libc::POLLIN),
        ];
        let n = if paused { 1 } else { 2 };
        match sys::poll(&mut pfds[..n], None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!("[{pid}] control socket poll: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        if pfds[0].revents != 0 {
            let _ = sys::eventfd_clear(gate.wake.as_raw_fd());
            continue;
        }
        match sys::accept(fd) {
            Ok((conn, _)) => {
                let stream = UnixStream::from(conn);
                if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                    clients.fetch_sub(1, Ordering::AcqRel);
                    reply(
                        &stream,
                        &error_json("busy: too many control connections; retry"),
                    );
                    continue;
                }
                let (exec, clients) = (exec.clone(), clients.clone());
                let spawned = std::thread::Builder::new()
                    .name("grace-control-conn".into())
                    .spawn(move || {
                        serve_client(stream, &exec);
                        clients.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    log::error!("[{pid}] control connection thread: {e}");
                }
            }
            Err(libc::EAGAIN) | Err(libc::EINTR) | Err(libc::ECONNABORTED) => {}
            Err(e) => {
                log::warn!("[{pid}] {}", sys::error("accept4 (control)", e));
                // Descriptors ran out, say: do not spin.
                let mut w = [sys::pollfd(gate.wake.as_raw_fd(), libc::POLLIN)];
                let _ = sys::poll(&mut w, Some(Duration::from_millis(50)));
            }
        }
    }
}

fn reply(mut stream: &UnixStream, json: &str) {
    let _ = stream.set_write_timeout(Some(LINE_TIMEOUT));
    let mut line = json.to_string();
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}

/// Reads one command line, checks the peer, runs the command, replies.
fn serve_client(stream: UnixStream, exec: &Exec) {
    let pid = sys::getpid();
    let (peer_pid, uid, _) = match sys::peer_cred(stream.as_raw_fd()) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("[{pid}] control: cannot check the peer ({e}); closing");
            return;
        }
    };
    // The line first, even from a peer about to be refused: closing with
    // its command unread would reset the connection before it sees why.
    let line = read_line(&stream);
    let me = sys::geteuid();
    if uid != 0 && uid != me {
        log::warn!("[{pid}] control: refused pid {peer_pid}, uid {uid} (only root and uid {me} may control this server)");
        reply(
            &stream,
            &error_json(&format!(
                "permission denied: uid {uid} may not control this server (only root and uid {me})"
            )),
        );
        return;
    }
    let line = match line {
        Ok(l) => l,
        Err(why) => {
            log::info!("[{pid}] control: {why} (pid {peer_pid})");
            reply(&stream, &error_json(&why));
            return;
        }
    };
    let cmd = match line.trim() {
        "status" => Command::Status,
        "upgrade" => Command::Upgrade,
        "shutdown" => Command::Shutdown,
        other => {
            let shown: String = other.chars().take(64).collect();
            log::info!("[{pid}] control: unknown command {shown:?} (pid {peer_pid})");
            reply(
                &stream,
                &error_json(&format!(
                    "unknown command {shown:?}; the commands are status, upgrade, shutdown"
                )),
            );
            return;
        }
    };
    log::info!(
        "[{pid}] control: {} (pid {peer_pid}, uid {uid})",
        line.trim()
    );
    reply(&stream, &exec(cmd));
}

/// Reads up to a newline, at most [`MAX_LINE`] bytes, within
/// [`LINE_TIMEOUT`] in all. The error is the reason, for the reply.
fn read_line(mut stream: &UnixStream) -> Result<String, String> {
    let deadline = std::time::Instant::now() + LINE_TIMEOUT;
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no command line within {}",
                crate::fmt::Dur(LINE_TIMEOUT)
            ));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err("the connection ended before a command line".into());
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    buf.truncate(end);
                    if buf.len() > MAX_LINE {
                        return Err(format!("command line over {MAX_LINE} bytes"));
                    }
                    return String::from_utf8(buf)
                        .map_err(|_| "the command line is not UTF-8".to_string());
                }
                if buf.len() > MAX_LINE {
                    return Err(format!("command line over {MAX_LINE} bytes"));
                }
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return Err(format!(
                    "no command line within {}",
                    crate::fmt::Dur(LINE_TIMEOUT)
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the command: {e}")),
        }
    }
}

/// `s` as a JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An error reply.
pub(crate) fn error_json(why: &str) -> String {
    format!(
        "{{\"ok\":false,\"result\":\"error\",\"error\":{}}}",
        json_str(why)
    )
}

/// The reply to `upgrade`.
pub(crate) fn verdict_json(v: &Result<UpgradeStats, UpgradeError>) -> String {
    match v {
        Ok(s) => format!(
            "{{\"ok\":true,\"result\":\"ok\",\"pid\":{},\"generation\":{},\"ready_ms\":{},\
             \"probation_ms\":{}}}",
            s.child_pid,
            s.child_generation,
            s.duration.as_millis(),
            s.probation.as_millis()
        ),
        Err(e) => {
            let result = if e.is_refusal() {
                "refused"
            } else if matches!(e, UpgradeError::RolledBack { .. }) {
                "rolled back"
            } else {
                "failed"
            };
            let mut out = format!(
                "{{\"ok\":false,\"result\":\"{result}\",\"reason\":{}",
                json_str(&e.to_string())
            );
            match e {
                UpgradeError::ChildExited(st) => {
                    out.push_str(&format!(",\"child_status\":{}", json_str(&st.to_string())))
                }
                UpgradeError::Timeout(d) => {
                    out.push_str(&format!(",\"timeout_ms\":{}", d.as_millis()))
                }
                UpgradeError::RolledBack {
                    child_pid,
                    status,
                    lived,
                } => out.push_str(&format!(
                    ",\"child_pid\":{child_pid},\"child_status\":{},\"lived_ms\":{}",
                    json_str(&status.to_string()),
                    lived.as_millis()
                )),
                _ => {}
            }
            out.push('}');
            out
        }
    }
}

/// A reply from a server's control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reply {
    /// The JSON line, without its newline.
    pub line: String,
}

impl Reply {
    /// The `"result"` field: `ok`, `failed`, `rolled back`, `refused`,
    /// `shutting down`, `serving` (status) or `error`.
    pub fn result(&self) -> Option<&str> {
        let start = self.line.find("\"result\":\"")? + "\"result\":\"".len();
        let len = self.line[start..].find('"')?;
        Some(&self.line[start..start + len])
    }

    /// The exit status a command-line client should end with: 0 done (the
    /// upgrade took over and passed probation), 1 failed or rolled back, 2
    /// refused (an upgrade already running, a drain, or a bad command).
    /// (3, no server, is for a failed [`request`].)
    pub fn exit_code(&self) -> i32 {
        match self.result() {
            Some("failed") | Some("rolled back") => 1,
            Some("refused") | Some("error") | None => 2,
            Some(_) => 0,
        }
    }
}

/// The exit status for "no server answered" (see [`Reply::exit_code`]).
pub const EXIT_NO_SERVER: i32 = 3;

/// Sends `command` to the control socket at `path` and waits up to
/// `timeout` for the reply. An `upgrade` replies with its verdict, which
/// takes up to the server's upgrade timeout plus its probation.
pub fn request(path: &Path, command: &str, timeout: Duration) -> io::Result<Reply> {
    let mut s = UnixStream::connect(path)?;
    s.set_write_timeout(Some(timeout))?;
    s.set_read_timeout(Some(timeout))?;
    // A server that answers before reading (it refuses us, say) may have
    // closed its side already: read its reply even if the write failed.
    let sent = s.write_all(format!("{command}\n").as_bytes());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                if out.is_empty() {
                    sent?;
                }
                return Err(e);
            }
        }
    }
    let line = String::from_utf8_lossy(&out).trim_end().to_string();
    if line.is_empty() {
        sent?;
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the control connection without a reply",
        ));
    }
    Ok(Reply { line })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn exit_codes_follow_the_result() {
        let r = |l: &str| Reply { line: l.into() };
        assert_eq!(r(r#"{"ok":true,"result":"ok","pid":4}"#).exit_code(), 0);
        assert_eq!(r(r#"{"ok":false,"result":"failed"}"#).exit_code(), 1);
        assert_eq!(r(r#"{"ok":false,"result":"rolled back"}"#).exit_code(), 1);
        assert_eq!(r(r#"{"ok":false,"result":"refused"}"#).exit_code(), 2);
        assert_eq!(r(&error_json("x")).exit_code(), 2);
        assert_eq!(r(r#"{"ok":true,"result":"serving"}"#).exit_code(), 0);
    }
}
