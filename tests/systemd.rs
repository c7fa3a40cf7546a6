//! systemd compatibility: socket activation (`LISTEN_FDS`/`LISTEN_PID`) and
//! `sd_notify` messages, with real processes.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(20);

/// Starts the demo the way systemd would: a pre-bound listening socket at
/// fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` set to `listen_pid` (`None`: the
/// process's own pid, as systemd does). Python binds and execs, so this does
/// not rely on grace's own fd passing. Returns the server and the port of the
/// pre-bound socket.
fn socket_activated(listen_pid: Option<u32>, args: &[&str]) -> (Server, u16) {
    let dir = TempDir::new("sd");
    let pid_file = dir.path().join("server.pid");
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(128)
sys.stderr.write("prebound port %d\n" % s.getsockname()[1]); sys.stderr.flush()
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
want = sys.argv[1]
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid()) if want == "self" else want
os.environ["LISTEN_FDNAMES"] = "web"
os.execv(sys.argv[2], sys.argv[2:])
"#;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .arg(listen_pid.map_or("self".to_string(), |p| p.to_string()))
        .arg(hello())
        .arg("--pid-file")
        .arg(&pid_file)
        .args(args);
    let s = Server::from_command(cmd, dir, pid_file);
    let (_, line) = s.log.wait_line("prebound port", 0, T);
    let port = line.rsplit(' ').next().unwrap().parse().unwrap();
    (s, port)
}

#[test]
fn socket_activation_serves_on_the_inherited_socket() {
    let (s, port) = socket_activated(None, &[]);
    assert_eq!(s.addr.port(), port, "serves on the pre-bound socket");
    let (pid, gen) = s.pid_gen();
    assert_eq!(pid, s.first_pid(), "python exec'd the server in place");
    assert_eq!(gen, 0, "socket activation is generation 0");
    s.log.wait_line(&format!("adopted 127.0.0.1:{port}"), 0, T);
    assert!(
        s.log.text().contains("name \"web\""),
        "LISTEN_FDNAMES is read"
    );
    let env = get(s.addr, "/debug/env").unwrap().body_str();
    assert!(!env.contains("LISTEN_"), "{env}");
}

#[test]
fn socket_activation_with_matching_address_and_restart() {
    // An explicit --listen with port 0 on the same IP adopts the inherited
    // socket rather than binding a new one; a restart keeps it.
    let (mut s, port) = socket_activated(None, &["--listen", "127.0.0.1:0"]);
    assert_eq!(s.addr.port(), port);
    let pid0 = s.first_pid();
    Server::signal(pid0, libc::SIGUSR2);
    let pid1 = wait_for("new generation", T, || {
        let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0 && g == 1).then_some(p)
    });
    assert_eq!(s.wait_first(T), Some(0));
    assert_eq!(s.pid_gen(), (pid1, 1));
}

#[test]
fn listen_pid_of_another_process_is_ignored() {
    let (s, port) = socket_activated(Some(1), &["--listen", "127.0.0.1:0"]);
    s.log.wait_line("ignoring LISTEN_FDS=1", 0, T);
    assert_ne!(s.addr.port(), port, "bound its own socket instead");
    assert_eq!(get(s.addr, "/").unwrap().status, 200);
    // Nobody accepts on the ignored socket: a request there gets nothing.
    let mut c = Client::new(([127, 0, 0, 1], port).into()).unwrap();
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    assert!(
        c.read("GET").is_err(),
        "the ignored socket must not be served"
    );
}

#[test]
fn sd_notify_messages_arrive_in_order() {
    let dir = TempDir::new("notify");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let statuses = std::cell::RefCell::new(Vec::new());
    // The next message that is not a STATUS= line (those are kept apart).
    let recv = || -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).expect("an sd_notify message");
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("STATUS=") {
                statuses.borrow_mut().push(m);
                continue;
            }
            return m;
        }
    };
    let mut s = Server::start_env(hello(), &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let pid0 = s.first_pid();
    assert_eq!(recv(), "READY=1");
    Server::signal(pid0, libc::SIGUSR2);
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading.rsplit('=').next().unwrap().parse().unwrap();
    assert!(usec > 0);
    let takeover = recv();
    let pid1 = wait_for("new generation", T, || {
        let (p, _) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0).then_some(p)
    });
    assert_eq!(takeover, format!("MAINPID={pid1}\nREADY=1"));
    assert_eq!(s.wait_first(T), Some(0));
    Server::signal(pid1, libc::SIGTERM);
    assert_eq!(recv(), "STOPPING=1");
    assert_eq!(reap(pid1, T), Some(grace::Exit::Code(0)));
    // Nothing else was sent (the old generation sends no STOPPING=1 after
    // handing over), but STATUS= lines.
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 256];
    while let Ok(n) = sock.recv(&mut buf) {
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(m.starts_with("STATUS="), "unexpected extra message {m:?}");
        statuses.borrow_mut().push(m);
    }
    // A STATUS= line at each step.
    let statuses = statuses.into_inner();
    for want in [
        "STATUS=serving generation 0",
        "STATUS=upgrading: starting generation 1",
        "STATUS=serving generation 1",
        "STATUS=shutting down",
    ] {
        assert!(
            statuses.iter().any(|m| m == want),
            "no {want:?} in {statuses:?}"
        );
    }
    assert!(
        statuses
            .iter()
            .any(|m| m.starts_with("STATUS=generation 1 ready; on probation")),
        "{statuses:?}"
    );
}

/// An upgrade that fails says so in STATUS=, and the old process is the
/// main pid again.
#[test]
fn a_failed_upgrade_says_so_and_restores_mainpid() {
    let dir = TempDir::new("notify-fail");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let s = Server::start_env(
        bin.to_str().unwrap(),
        &[],
        &[("NOTIFY_SOCKET", path.to_str().unwrap())],
    );
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let tmp = dir.path().join("hello.new");
    std::fs::write(&tmp, "#!/bin/sh\nexit 7\n").unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    Server::signal(pid0, libc::SIGUSR2);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen
        .iter()
        .any(|m: &String| m.starts_with("STATUS=upgrade failed"))
    {
        let n = sock.recv(&mut buf).expect("sd_notify messages");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let failed = seen
        .iter()
        .find(|m| m.starts_with("STATUS=upgrade failed"))
        .unwrap();
    assert!(failed.contains("exit status 7"), "{failed}");
    assert!(
        seen.contains(&format!("MAINPID={pid0}\nREADY=1")),
        "the old process is the main pid again: {seen:?}"
    );
}

/// A receiver for sd_notify datagrams that also learns each sender's pid
/// (SO_PASSCRED), written in Python: one line per message, `ms pid text`.
const NOTIFY_RECEIVER: &str = r#"
import os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.settimeout(float(sys.argv[2]))
t0 = time.monotonic()
sys.stdout.write("listening\n"); sys.stdout.flush()
while True:
    try:
        msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    except socket.timeout:
        break
    pid = 0
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    text = msg.decode(errors="replace").replace("\n", "|")
    sys.stdout.write("%d %d %s\n" % (int((time.monotonic() - t0) * 1000), pid, text))
    sys.stdout.flush()
"#;

/// `WATCHDOG=1` arrives at least every 200 ms (`WATCHDOG_USEC=200000`)
/// across 3 restarts, and after each handover from the new pid, which
/// `WATCHDOG_PID` names.
#[test]
fn the_watchdog_is_pinged_and_taken_over_at_each_handover() {
    use std::io::BufRead;
    let dir = TempDir::new("watchdog");
    let path = dir.path().join("notify.sock");
    let mut rx = Command::new("python3")
        .arg("-c")
        .arg(NOTIFY_RECEIVER)
        .arg(&path)
        .arg("5")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(rx.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");
    let msgs = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u64, u32, String)>::new()));
    let m2 = msgs.clone();
    let reader = std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            let mut it = l.splitn(3, ' ');
            let ms = it.next().unwrap().parse().unwrap();
            let pid = it.next().unwrap().parse().unwrap();
            m2.lock()
                .unwrap()
                .push((ms, pid, it.next().unwrap_or("").to_string()));
        }
    });
    let mut s = Server::start_env(
        hello(),
        &["--probation-ms", "300"],
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let mut pids = vec![s.first_pid()];
    wait_signal_handlers(pids[0]);
    for gen in 0..3u64 {
        let old = *pids.last().unwrap();
        pids.push(restart(&mut s, old, gen));
        wait_signal_handlers(*pids.last().unwrap());
    }
    // A last stretch of pings from the last generation.
    let last = *pids.last().unwrap();
    wait_for("pings from the last generation", T, || {
        let m = msgs.lock().unwrap();
        (m.iter()
            .filter(|(_, p, t)| *p == last && t == "WATCHDOG=1")
            .count()
            >= 3)
            .then_some(())
    });
    let m = msgs.lock().unwrap().clone();
    drop(s);
    let _ = rx.kill();
    let _ = rx.wait();
    let _ = reader.join();
    let pings: Vec<(u64, u32)> = m
        .iter()
        .filter(|(_, _, t)| t == "WATCHDOG=1")
        .map(|(ms, p, _)| (*ms, *p))
        .collect();
    assert!(pings.len() >= 8, "{m:?}");
    // At least every 200 ms, from the first ping to the last.
    for w in pings.windows(2) {
        assert!(
            w[1].0 - w[0].0 <= 200,
            "a gap of {} ms: {pings:?}",
            w[1].0 - w[0].0
        );
    }
    // After each generation announced itself (MAINPID=), only it pings.
    for (i, pid) in pids.iter().enumerate().skip(1) {
        let announced = m
            .iter()
            .find(|(_, p, t)| p == pid && t.starts_with(&format!("MAINPID={pid}")))
            .map(|(ms, _, _)| *ms)
            .unwrap_or_else(|| panic!("generation {i} ({pid}) never announced itself: {m:?}"));
        let old = pids[i - 1];
        assert!(
            !pings
                .iter()
                .any(|(ms, p)| *p == old && *ms > announced + 50),
            "{old} pinged after {pid} took over: {pings:?}"
        );
        assert!(
            pings.iter().any(|(ms, p)| p == pid && *ms >= announced),
            "{pings:?}"
        );
    }
}

/// The unit files in examples/systemd/ pass `systemd-analyze verify`
/// (Type=notify-reload needs systemd 253: on an older one, only its two
/// new settings may be warned about).
#[test]
fn the_example_unit_files_verify() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("NOTICE: skipping: systemd-analyze is not installed");
        return;
    };
    let version: u32 = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let dir = TempDir::new("units");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/systemd");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path())
            .unwrap()
            .replace("/usr/local/bin/hello", hello());
        std::fs::write(dir.path().join(&name), text).unwrap();
        names.push(name);
    }
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    for name in &names {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(dir.path().join(name))
            .env("SYSTEMD_LOG_LEVEL", "notice")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let complaints: Vec<&str> = err
            .lines()
            .filter(|l| l.contains(name.as_str()))
            .filter(|l| {
                !(version < 253 && (l.contains("notify-reload") || l.contains("'ReloadSignal'")))
            })
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "{name}: {err}"
        );
    }
}
