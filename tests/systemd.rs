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
        .arg(HELLO)
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
    let recv = || -> String {
        let mut buf = [0u8; 4096];
        let n = sock.recv(&mut buf).expect("an sd_notify message");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut s = Server::start_env(HELLO, &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
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
    assert_eq!(reap(pid1, T), Some(grace::sys::Exit::Code(0)));
    // Nothing else was sent (the old generation sends no STOPPING=1 after
    // handing over).
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(sock.recv(&mut buf).is_err(), "unexpected extra message");
}
