//! Process trees where the serving process may not exit: PID 1 of a real PID
//! namespace (`unshare --pid --fork --mount-proc`), under an init that exits
//! with its child (tini, or a stand-in), and under a supervisor that tracks
//! one pid (`--supervise`). Also SIGHUP, the shutdown delay, and exactly
//! what a new generation inherits.
//!
//! The namespace tests need root (CI has it). Where `unshare` is refused
//! they skip with a notice, unless `GRACE_REQUIRE_UNSHARE=1` (set by CI).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// The restarts the PID-1 and init tests send: 5 SIGUSR2 and 2 SIGHUP.
const SEVEN_RESTARTS: [libc::c_int; 7] = [
    libc::SIGUSR2,
    libc::SIGUSR2,
    libc::SIGHUP,
    libc::SIGUSR2,
    libc::SIGUSR2,
    libc::SIGHUP,
    libc::SIGUSR2,
];

/// True if this machine lets us make a PID namespace. Panics instead of
/// skipping under `GRACE_REQUIRE_UNSHARE=1`.
fn can_unshare() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("GRACE_REQUIRE_UNSHARE").is_none(),
            "GRACE_REQUIRE_UNSHARE is set, but `unshare --pid --fork --mount-proc` failed"
        );
        eprintln!("NOTICE: skipping: `unshare --pid --fork --mount-proc` is refused here");
    }
    ok
}

/// A process's parent pid and state, from `/proc/PID/stat`.
fn ppid_state(pid: u32) -> Option<(u32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    Some((f.next()?.parse().ok()?, state))
}

/// Host pids of the direct children of `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
            if ppid_state(pid).is_some_and(|(pp, _)| pp == parent) {
                v.push(pid);
            }
        }
    }
    v
}

/// Host pids and states of every process in the PID namespace of `pid`.
fn namespace_members(pid: u32) -> Vec<(u32, char)> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{p}/ns/pid"))
            .ok()
            .as_ref()
            == Some(&ns)
        {
            if let Some((_, state)) = ppid_state(p) {
                v.push((p, state));
            }
        }
    }
    v
}

/// The first TCP address in a "serving on" log line.
fn serving_addr(log: &Log) -> SocketAddr {
    let (_, line) = log.wait_line("serving on", 0, T);
    line.split("serving on ")
        .nth(1)
        .and_then(|rest| {
            rest.split([' ', ','])
                .find_map(|w| w.parse::<SocketAddr>().ok())
        })
        .unwrap_or_else(|| panic!("no TCP address in {line:?}"))
}

/// A process tree we started (an `unshare` or an init), killed on drop.
/// Unlike `common::Server` it never signals pids it read from the log:
/// inside a PID namespace those are not host pids.
struct Tree {
    top: Child,
    log: Log,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Tree {
    fn start(program: &str, args: &[&str]) -> Tree {
        let dir = TempDir::new("tree");
        let mut cmd = Command::new(program);
        cmd.args(args);
        let (top, log) = spawn_logged(&mut cmd);
        let addr = serving_addr(&log);
        Tree {
            top,
            log,
            addr,
            _dir: dir,
        }
    }

    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.top.try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Killing the top of the tree kills a PID namespace whole (its init
        // dies with it); an init stand-in takes the holder along through
        // the kill below, and the holder's generations are our descendants.
        let mut pids = vec![self.top.id()];
        let mut i = 0;
        while i < pids.len() && pids.len() < 64 {
            let kids = children_of(pids[i]);
            pids.extend(kids);
            i += 1;
        }
        for p in pids.iter().rev() {
            let _ = common::os::kill(*p, libc::SIGKILL);
        }
        let _ = self.top.wait();
        for p in pids.iter().skip(1) {
            reap(*p, Duration::from_secs(2));
        }
    }
}

/// Asks `/pid` on a new connection: (pid as the server sees it, generation).
fn pid_gen_at(addr: SocketAddr) -> (u32, u64) {
    parse_pid_gen(&get(addr, "/pid").expect("GET /pid").body_str())
}

/// Sends `sig` to `to` (the holder, or an init above it) and waits until
/// generation `gen + 1` serves and the holder has seen generation `gen`
/// end with status 0. Returns the new (pid, generation).
fn restart_via(tree: &Tree, to: u32, sig: i32, old: (u32, u64)) -> (u32, u64) {
    let from = tree.log.lines().len();
    Server::signal(to, sig);
    let new = wait_for("the next generation to serve", T, || {
        let (p, g) = parse_pid_gen(&get(tree.addr, "/pid").ok()?.body_str());
        (g > old.1).then_some((p, g))
    });
    assert_eq!(new.1, old.1 + 1, "the generation goes up by one");
    assert_ne!(new.0, old.0);
    tree.log.wait_line(
        &format!("holder: generation {} ended: exit status 0", old.0),
        from,
        T,
    );
    new
}

/// PID 1 of a real PID namespace: the holder starts by itself, without a
/// flag; 5 USR2 and 2 HUP restarts under keep-alive load from 32 clients
/// lose nothing; no zombie is left; SIGTERM ends the namespace with 0.
#[test]
fn pid1_of_a_namespace_restarts_under_load_and_exits_0() {
    subreaper();
    if !can_unshare() {
        return;
    }
    let mut tree = Tree::start(
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            hello(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let holder = wait_for("the namespace's PID 1", T, || {
        children_of(tree.top.id()).first().copied()
    });
    tree.log.wait_line("[1] holder: generation 0 is", 0, T);
    let mut cur = pid_gen_at(tree.addr);
    assert_eq!(cur.1, 0);
    assert_ne!(
        cur.0, 1,
        "PID 1 is the holder; generation 0 is another process"
    );
    let load = Load::start(tree.addr, 32, true);
    load.progress(200);
    for sig in SEVEN_RESTARTS {
        cur = restart_via(&tree, holder, sig, cur);
        load.progress(100);
    }
    let ok = load.finish_clean();
    assert_eq!(cur.1, 7);
    eprintln!("{ok} requests, all 200, across 7 restarts as PID 1");
    // Every generation that ended was reaped: nothing in the namespace is a
    // zombie, and it holds just the holder and the serving generation.
    let members = wait_for("the namespace to hold no zombie", T, || {
        let m = namespace_members(holder);
        (!m.iter().any(|(_, s)| *s == 'Z')).then_some(m)
    });
    assert_eq!(members.len(), 2, "holder + one generation: {members:?}");
    Server::signal(holder, libc::SIGTERM);
    let status = tree.wait(T).expect("the namespace ends after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", tree.log.text());
    tree.log
        .wait_line("[1] holder: no generation left; exiting with 0", 0, T);
}

/// The init stand-in: runs its command, forwards the usual signals to it,
/// and exits with it, as tini and dumb-init do.
const INIT_STAND_IN: &str = r#"
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
def forward(sig, _frame):
    child.send_signal(sig)
for s in (signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
    signal.signal(s, forward)
code = child.wait()
sys.exit(128 - code if code < 0 else code)
"#;

/// Under an init that exits with its direct child: with `--supervise` the
/// same restarts lose nothing and the init is still running afterwards.
#[test]
fn under_an_init_that_exits_with_its_child_supervise_keeps_it_running() {
    subreaper();
    let dir = TempDir::new("init");
    let tini = ["/usr/bin/tini", "/sbin/tini", "/usr/local/bin/tini"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let script = dir.path().join("init.py");
    std::fs::write(&script, INIT_STAND_IN).unwrap();
    let script = script.to_str().unwrap().to_string();
    let hello_args = [hello(), "--supervise", "--listen", "127.0.0.1:0"];
    let mut tree = match tini {
        Some(t) => {
            eprintln!("init: {t}");
            let mut a = vec!["-s", "--"];
            a.extend(hello_args);
            Tree::start(t, &a)
        }
        None => {
            eprintln!("init: a stand-in (tini is not installed)");
            let mut a = vec!["-u", script.as_str()];
            a.extend(hello_args);
            Tree::start("python3", &a)
        }
    };
    let init = tree.top.id();
    let holder = wait_for("the holder under the init", T, || {
        children_of(init).first().copied()
    });
    tree.log
        .wait_line(&format!("[{holder}] holder: generation 0 is"), 0, T);
    let mut cur = pid_gen_at(tree.addr);
    let load = Load::start(tree.addr, 32, true);
    load.progress(200);
    for sig in SEVEN_RESTARTS {
        // Signals go to the init, as `docker kill -s USR2` would send them.
        cur = restart_via(&tree, init, sig, cur);
        load.progress(100);
        assert!(tree.top.try_wait().unwrap().is_none(), "the init exited");
    }
    load.finish_clean();
    assert_eq!(cur.1, 7);
    assert!(tree.top.try_wait().unwrap().is_none(), "the init exited");
    assert_eq!(
        children_of(init),
        vec![holder],
        "the init's child is the holder"
    );
    Server::signal(init, libc::SIGTERM);
    let status = tree.wait(T).expect("the init exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", tree.log.text());
}

/// `--supervise` outside a namespace: the pid file names the holder before
/// and after 3 restarts; a SIGTERM to the holder drains and exits 0.
#[test]
fn supervised_pid_file_names_the_holder_and_sigterm_exits_0() {
    let mut s = Server::start(&["--supervise"]);
    let holder = s.first_pid();
    s.log
        .wait_line(&format!("[{holder}] holder: generation 0 is"), 0, T);
    assert_eq!(s.file_pid(), Some(holder));
    let (mut pid, gen) = s.pid_gen();
    assert_eq!(gen, 0);
    assert_ne!(pid, holder);
    wait_signal_handlers(pid);
    for g in 0..3u64 {
        let from = s.log.lines().len();
        Server::signal(holder, libc::SIGUSR2);
        let (p, g1) = wait_for("the next generation", T, || {
            let (p, g1) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
            (g1 == g + 1).then_some((p, g1))
        });
        assert_eq!(g1, g + 1);
        s.log.wait_line(
            &format!("[{holder}] holder: generation {pid} ended: exit status 0"),
            from,
            T,
        );
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "reaped");
        assert_eq!(
            s.file_pid(),
            Some(holder),
            "the pid file still names the holder"
        );
        pid = p;
    }
    // The serving generation is the holder's child now (re-parented).
    assert_eq!(ppid_state(pid).map(|(pp, _)| pp), Some(holder));
    Server::signal(holder, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0), "{}", s.log.text());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(s.file_pid(), None, "the pid file is removed at the end");
}

/// A generation killed with SIGKILL makes the holder exit with 137, as a
/// shell would report it.
#[test]
fn supervised_generation_killed_makes_the_holder_exit_137() {
    let mut s = Server::start(&["--supervise"]);
    let holder = s.first_pid();
    let (pid0, _) = s.pid_gen();
    wait_signal_handlers(pid0);
    let pid1 = {
        Server::signal(holder, libc::SIGUSR2);
        wait_for("generation 1", T, || {
            let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
            (g == 1).then_some(p)
        })
    };
    s.log
        .wait_line(&format!("[{holder}] holder: generation {pid0} ended"), 0, T);
    Server::signal(pid1, libc::SIGKILL);
    assert_eq!(s.wait_first(T), Some(137), "{}", s.log.text());
    s.log.wait_line(
        &format!("[{holder}] holder: no generation left; exiting with 137"),
        0,
        T,
    );
}

/// SIGHUP upgrades like SIGUSR2, and never kills: a request in flight when
/// it arrives completes with 200 on the old process.
#[test]
fn sighup_upgrades_and_an_in_flight_request_completes() {
    let mut s = Server::start(&[]);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let addr = s.addr;
    let from = s.log.lines().len();
    let slow = std::thread::spawn(move || get(addr, "/sleep?ms=1500"));
    // The request is in the server's hands once it is accepted.
    s.log.wait_line(&format!("[{pid0}] accepted"), from, T);
    Server::signal(pid0, libc::SIGHUP);
    s.log
        .wait_line(&format!("[{pid0}] SIGHUP: upgrade requested"), from, T);
    let (pid1, gen1) = wait_for("the new generation", T, || {
        let (p, g) = parse_pid_gen(&get(addr, "/pid").ok()?.body_str());
        (p != pid0).then_some((p, g))
    });
    assert_eq!(gen1, 1);
    let r = slow.join().unwrap().expect("the in-flight request");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "slept 1500 ms\n");
    assert_eq!(s.wait_first(T), Some(0), "the old generation exits 0");
    assert_eq!(s.pid_gen(), (pid1, 1));
}

/// The shutdown delay: after SIGTERM new connections are still accepted and
/// served (with `Connection: close`) for the delay, `/healthz` answers 503,
/// and the process exits 0 after the drain, not before the delay is over.
#[test]
fn shutdown_delay_keeps_accepting_then_drains() {
    let mut s = Server::start(&["--shutdown-delay-ms", "1000"]);
    let pid = s.first_pid();
    wait_signal_handlers(pid);
    let health = get(s.addr, "/healthz").unwrap();
    assert_eq!((health.status, health.body_str().as_str()), (200, "ok\n"));
    let mut kept = Client::new(s.addr).unwrap();
    let r = kept.get("/").unwrap();
    assert!(!r.closes(), "kept alive before the shutdown");

    let t0 = Instant::now();
    let from = s.log.lines().len();
    Server::signal(pid, libc::SIGTERM);
    s.log.wait_line(
        &format!("[{pid}] still accepting for the shutdown delay of 1 s"),
        from,
        T,
    );
    let health = get(s.addr, "/healthz").unwrap();
    assert_eq!(
        (health.status, health.body_str().as_str()),
        (503, "draining\n")
    );
    // The kept-alive connection is served, and told to go.
    let r = kept.get("/").unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.closes(),
        "a response during the delay says Connection: close"
    );
    // New connections are accepted and served until the delay is over.
    let mut served = 0;
    let mut last_ok = Duration::ZERO;
    while t0.elapsed() < Duration::from_millis(800) {
        let r = get(s.addr, "/").expect("a new connection during the delay");
        assert_eq!(r.status, 200);
        assert!(r.closes());
        served += 1;
        last_ok = t0.elapsed();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served >= 10, "{served} requests served during the delay");
    assert!(last_ok >= Duration::from_millis(700), "{last_ok:?}");
    s.log
        .wait_line(&format!("[{pid}] shutdown delay of 1 s over"), from, T);
    assert_eq!(s.wait_first(T), Some(0));
    assert!(
        t0.elapsed() >= Duration::from_millis(1000),
        "exited {:?} after SIGTERM, before the delay was over",
        t0.elapsed()
    );
    assert!(get(s.addr, "/").is_err(), "nothing listens after the exit");
}

/// A second signal during the shutdown delay exits at once.
#[test]
fn second_signal_during_the_shutdown_delay_exits_at_once() {
    let mut s = Server::start(&["--shutdown-delay-ms", "30000"]);
    let pid = s.first_pid();
    wait_signal_handlers(pid);
    Server::signal(pid, libc::SIGTERM);
    s.log.wait_line(
        &format!("[{pid}] still accepting for the shutdown delay"),
        0,
        T,
    );
    let t0 = Instant::now();
    Server::signal(pid, libc::SIGINT);
    assert_eq!(s.wait_first(T), Some(1), "aborted: exit status 1");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    s.log
        .wait_line(&format!("[{pid}] second SIGINT during the drain"), 0, T);
}

/// What the wrapper below saw at exec: its fds and its environment.
struct Inherited {
    fds: Vec<(u32, String)>,
    env: Vec<(String, String)>,
    pid: u32,
}

/// Replaces the binary with a wrapper that records its fds and environment
/// (exactly what the new generation inherits: `exec` keeps both) and then
/// execs the real demo; restarts once; returns what it recorded.
fn inherited_at_restart(supervise: bool) -> Inherited {
    let dir = TempDir::new("inherit");
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let out = dir.path().join("seen");
    // Started through a launcher that closes every fd above 2, so nothing
    // the test harness leaked without CLOEXEC can reach the server.
    let mut cmd = Command::new("python3");
    let pid_file = dir.path().join("server.pid");
    cmd.args([
        "-c",
        "import os, sys; os.closerange(3, 65536); os.execv(sys.argv[1], sys.argv[1:])",
    ]);
    cmd.arg(&bin)
        .args(["--listen", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    if supervise {
        cmd.arg("--supervise");
    }
    let s = Server::from_command(cmd, TempDir::new("inherit-srv"), pid_file);
    let (pid0, _) = s.pid_gen();
    wait_signal_handlers(pid0);
    let script = format!(
        "#!/bin/sh\nls -l /proc/self/fd > {out}.fds\nenv > {out}.env\necho $$ > {out}.pid\nexec {hello} \"$@\"\n",
        out = out.display(),
        hello = hello()
    );
    // A new file renamed over the running one (which is busy).
    let tmp = dir.path().join("hello.new");
    std::fs::write(&tmp, script).unwrap();
    let mut perms = std::fs::metadata(&tmp).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&tmp, perms).unwrap();
    std::fs::rename(&tmp, &bin).unwrap();
    Server::signal(if supervise { s.first_pid() } else { pid0 }, libc::SIGUSR2);
    let pid1 = wait_for("the new generation", T, || {
        let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (g == 1).then_some(p)
    });
    let fds_text = std::fs::read_to_string(format!("{}.fds", out.display())).unwrap();
    let fds = fds_text
        .lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd: u32 = left.rsplit(' ').next()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        // `ls` itself reads /proc/self/fd through one more.
        .filter(|(_, t)| !t.starts_with("/proc/"))
        .collect();
    let env = std::fs::read_to_string(format!("{}.env", out.display()))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let pid: u32 = std::fs::read_to_string(format!("{}.pid", out.display()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, pid1, "the wrapper exec'd into the new generation");
    drop(s);
    Inherited { fds, env, pid }
}

fn env_of<'a>(seen: &'a Inherited, key: &str) -> Option<&'a str> {
    seen.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A new generation inherits exactly stdio, the listener and the readiness
/// socket; under a holder, also the one holder channel and the one variable
/// naming it, and nothing else.
#[test]
fn a_new_generation_inherits_exactly_its_fds_and_one_holder_channel() {
    let plain = inherited_at_restart(false);
    let held = inherited_at_restart(true);
    let nums = |s: &Inherited| s.fds.iter().map(|(fd, _)| *fd).collect::<Vec<_>>();
    assert_eq!(nums(&plain), vec![0, 1, 2, 3, 4], "{:?}", plain.fds);
    assert_eq!(nums(&held), vec![0, 1, 2, 3, 4, 5], "{:?}", held.fds);
    for s in [&plain, &held] {
        assert!(s.fds[3].1.starts_with("socket:"), "listener: {:?}", s.fds);
        assert!(s.fds[4].1.starts_with("socket:"), "readiness: {:?}", s.fds);
        assert_eq!(env_of(s, "LISTEN_FDS"), Some("1"));
        assert_eq!(env_of(s, "LISTEN_PID"), Some(s.pid.to_string().as_str()));
        assert_eq!(env_of(s, "GRACE_READY_FD"), Some("4"));
        assert_eq!(env_of(s, "GRACE_GENERATION"), Some("1"));
    }
    assert!(
        held.fds[5].1.starts_with("socket:"),
        "holder channel: {:?}",
        held.fds
    );
    assert_eq!(env_of(&held, "GRACE_HOLDER_FD"), Some("5"));
    assert_eq!(env_of(&plain, "GRACE_HOLDER_FD"), None);
    // The holder adds that one variable and nothing else.
    let keys = |s: &Inherited| {
        let mut k: Vec<String> = s
            .env
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k != "GRACE_HOLDER_FD")
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&plain), keys(&held));
}

/// The holder's log is a story a person can follow, with one line per step.
#[test]
fn the_holder_logs_who_serves_and_how_long_it_took_to_learn() {
    let mut s = Server::start(&["--supervise"]);
    let holder = s.first_pid();
    let (pid0, _) = s.pid_gen();
    wait_signal_handlers(pid0);
    Server::signal(holder, libc::SIGUSR2);
    let (_, line) = s
        .log
        .wait_line(&format!("[{holder}] holder: SIGUSR2 from"), 0, T);
    assert!(line.contains(&format!("forwarded to {pid0}")), "{line}");
    let (_, line) = s.log.wait_line("serves now, ", 0, T);
    assert!(line.contains("after the upgrade signal"), "{line}");
    s.log.wait_line(
        &format!("[{holder}] holder: generation {pid0} ended: exit status 0"),
        0,
        T,
    );
    Server::signal(holder, libc::SIGTERM);
    assert_eq!(s.wait_first(T), Some(0));
}
