//! The operator's verdict: the control socket, `hello upgrade|status|
//! shutdown` and their exit codes, probation with automatic rollback, and
//! hostile control clients. Real processes, a real Unix socket, the demo's
//! own CLI.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// Runs `hello <command> --control <sock>`: (exit code, stdout line).
fn cli(sock: &Path, command: &str) -> (i32, String) {
    let out = Command::new(hello())
        .arg(command)
        .arg("--control")
        .arg(sock)
        .args(["--timeout-ms", "60000"])
        .output()
        .expect("run hello");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.code().unwrap_or(-1), line)
}

/// The number after `"key":` in a JSON line.
fn num(line: &str, key: &str) -> Option<u64> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The demo copied to its own directory (so the test can replace it), with
/// a control socket there.
struct Setup {
    s: Server,
    bin: PathBuf,
    sock: PathBuf,
}

fn start(dir: &TempDir, args: &[&str]) -> Setup {
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let sock = dir.path().join("control.sock");
    let mut all = vec!["--control", sock.to_str().unwrap()];
    all.extend_from_slice(args);
    let s = Server::start_bin(bin.to_str().unwrap(), &all);
    wait_signal_handlers(s.first_pid());
    Setup { s, bin, sock }
}

/// `hello upgrade` gives exit 0 and the new pid for a good binary, 1 with
/// the status for one that exits at once, 1 with "upgrade timeout" for one
/// that hangs, 2 during another upgrade, and 3 with no server.
#[test]
fn hello_upgrade_exit_codes_tell_the_truth() {
    let dir = TempDir::new("verdict");
    let mut st = start(
        &dir,
        &["--probation-ms", "300", "--upgrade-timeout-ms", "1500"],
    );
    let pid0 = st.s.first_pid();

    // A good binary: 0, with the new pid and generation.
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 0, "{line}");
    assert!(line.contains("\"result\":\"ok\""), "{line}");
    let pid1 = num(&line, "pid").unwrap() as u32;
    assert_eq!(num(&line, "generation"), Some(1), "{line}");
    assert_eq!(num(&line, "probation_ms"), Some(300), "{line}");
    assert_eq!(st.s.pid_gen(), (pid1, 1));
    assert_eq!(wait_exit(&mut st.s, pid0), Some(grace::Exit::Code(0)));
    wait_signal_handlers(pid1);

    // A binary that exits 1 at once: 1, and the reason names the status.
    write_script(&st.bin, "exit 1");
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("\"result\":\"failed\""), "{line}");
    assert!(line.contains("exit status 1"), "{line}");
    assert_eq!(st.s.pid_gen(), (pid1, 1), "the old process serves on");

    // A binary that hangs past the upgrade timeout: 1, "upgrade timeout".
    write_script(&st.bin, "exec sleep 30");
    let t0 = Instant::now();
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 1, "{line}");
    assert!(line.contains("upgrade timeout (1.5 s)"), "{line}");
    assert!(
        t0.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(st.s.pid_gen(), (pid1, 1));

    // During another upgrade (a child that takes 1 s to start): 2.
    write_script(&st.bin, &format!("sleep 1\nexec {} \"$@\"", hello()));
    let sock = st.sock.clone();
    let first = std::thread::spawn(move || cli(&sock, "upgrade"));
    // The first upgrade is running once `status` says so.
    wait_for("the first upgrade to start", T, || {
        let (_, l) = cli(&st.sock, "status");
        l.contains("\"state\":\"upgrading\"").then_some(())
    });
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("\"result\":\"refused\""), "{line}");
    assert!(line.contains("already in progress"), "{line}");
    let (code, line) = first.join().unwrap();
    assert_eq!(code, 0, "the first upgrade still succeeds: {line}");
    let pid2 = num(&line, "pid").unwrap() as u32;
    assert_eq!(wait_exit(&mut st.s, pid1), Some(grace::Exit::Code(0)));
    restore_binary(&st.bin);

    // status names the new generation and the last upgrade.
    let (code, line) = cli(&st.sock, "status");
    assert_eq!(code, 0, "{line}");
    assert_eq!(num(&line, "pid"), Some(pid2 as u64), "{line}");
    assert_eq!(num(&line, "generation"), Some(2), "{line}");
    assert!(line.contains("\"draining\":false"), "{line}");
    assert!(
        line.contains(&format!("127.0.0.1:{}", st.s.addr.port())),
        "{line}"
    );

    // shutdown: the server drains and exits 0, and the socket is removed.
    let (code, line) = cli(&st.sock, "shutdown");
    assert_eq!(code, 0, "{line}");
    assert_eq!(wait_exit(&mut st.s, pid2), Some(grace::Exit::Code(0)));
    assert!(
        !st.sock.exists(),
        "a final shutdown unlinks the control socket"
    );

    // No server: 3.
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("\"result\":\"no server\""), "{line}");
}

/// Probation and rollback under load: the new binary becomes ready and dies
/// 500 ms later, inside a 2 s probation. The verdict is "rolled back" (exit
/// 1), the old pid serves again and is back in the pid file, and 32
/// keep-alive clients see no failure other than on the dead child's own
/// connections.
#[test]
fn a_child_that_dies_on_probation_is_rolled_back_under_load() {
    let dir = TempDir::new("rollback");
    let st = start(&dir, &["--probation-ms", "2000"]);
    let pid0 = st.s.first_pid();
    let load = PidLoad::start(st.s.addr, 32);
    load.progress(300);
    write_script(
        &st.bin,
        &format!("exec {} \"$@\" --exit-after-ready-ms 500", hello()),
    );
    let t0 = Instant::now();
    let (code, line) = cli(&st.sock, "upgrade");
    let verdict_after = t0.elapsed();
    assert_eq!(code, 1, "{line}\n{}", st.s.log.text());
    assert!(line.contains("\"result\":\"rolled back\""), "{line}");
    assert!(
        line.contains("\"child_status\":\"exit status 3\""),
        "{line}"
    );
    let child = num(&line, "child_pid").unwrap() as u32;
    let lived = num(&line, "lived_ms").unwrap();
    assert!((400..2000).contains(&lived), "lived {lived} ms: {line}");
    // The old process serves again, on the same socket, and owns the pid
    // file again.
    load.progress_on(pid0, 300);
    assert_eq!(st.s.pid_gen(), (pid0, 0));
    assert_eq!(st.s.file_pid(), Some(pid0));
    st.s.log
        .wait_line(&format!("[{pid0}] restored the pid file"), 0, T);
    let (ok, by_pid, failures) = load.finish();
    // Every failure was on a connection of the child that died.
    let mut on_child = 0;
    for f in &failures {
        let owner = f.owner.or_else(|| accepted_by(&st.s.log, f.port));
        assert_eq!(
            owner,
            Some(child),
            "a request failed on a connection not of the crashed child: {f:?}"
        );
        on_child += 1;
    }
    eprintln!(
        "rollback: verdict after {verdict_after:?}; {ok} ok ({by_pid:?}); {on_child} failed, all \
         on the crashed child's own connections"
    );
    assert!(
        by_pid.get(&child).copied().unwrap_or(0) > 0,
        "the child served: {by_pid:?}"
    );
    // A fresh upgrade to the good binary works afterwards.
    restore_binary(&st.bin);
    let (code, line) = cli(&st.sock, "upgrade");
    assert_eq!(code, 0, "{line}");
}

/// The socket survives 5 restarts at the same path and inode, mode 0600,
/// and answers each new generation's status.
#[test]
fn the_control_socket_is_handed_down_unchanged() {
    let dir = TempDir::new("ctl-inode");
    let mut st = start(&dir, &["--probation-ms", "0"]);
    let meta = std::fs::symlink_metadata(&st.sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600, "mode {:o}", meta.mode());
    let ino = meta.ino();
    let mut pid = st.s.first_pid();
    for gen in 0..5u64 {
        pid = restart(&mut st.s, pid, gen);
        let m = std::fs::symlink_metadata(&st.sock).unwrap();
        assert_eq!(m.ino(), ino, "same socket file after restart {}", gen + 1);
        let (code, line) = cli(&st.sock, "status");
        assert_eq!(code, 0, "{line}");
        assert_eq!(num(&line, "pid"), Some(pid as u64), "{line}");
        assert_eq!(num(&line, "generation"), Some(gen + 1), "{line}");
    }
}

/// Another uid is refused (and logged); root and the server's own uid may
/// act.
#[test]
fn another_uid_is_refused() {
    if common::os::geteuid() != 0 {
        eprintln!("NOTICE: skipping: running as another uid needs root");
        return;
    }
    let dir = TempDir::new("ctl-uid");
    let st = start(&dir, &["--probation-ms", "0"]);
    // `nobody` must reach the socket's directory to be refused by the
    // server rather than by the file system.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&st.sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(hello())
        .arg("upgrade")
        .arg("--control")
        .arg(&st.sock)
        .output()
        .expect("setpriv");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{line} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line.contains("permission denied: uid 65534"), "{line}");
    st.s.log.wait_line("control: refused pid", 0, T);
    assert_eq!(st.s.pid_gen().1, 0, "nothing was upgraded");
}

/// 10,000 random-byte, over-long and never-finished commands leave the
/// server serving, with no threads or fds leaked.
#[test]
fn hostile_control_clients_leave_the_server_as_it_was() {
    let dir = TempDir::new("ctl-hostile");
    let st = start(&dir, &["--probation-ms", "0"]);
    let pid = st.s.first_pid();
    let (code, _) = cli(&st.sock, "status");
    assert_eq!(code, 0);
    let before = (proc_entries(pid, "fd"), proc_entries(pid, "task"));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // One client's bytes, by kind: 0 random bytes and a newline, 1 a line
    // over the 1,024-byte limit, 2 a command that never ends (the server
    // gives up after its 2 s line timeout).
    let mut client = |kind: usize| {
        let len = 1 + (rand() % 300) as usize;
        let bytes: Vec<u8> = match kind {
            0 => {
                let mut b: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
                b.push(b'\n');
                b
            }
            1 => vec![b'x'; 1025 + len],
            _ => b"stat".to_vec(),
        };
        let sock = st.sock.clone();
        std::thread::spawn(move || -> bool {
            let mut s = UnixStream::connect(&sock).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(&bytes);
            if kind != 2 {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).contains("\"ok\":false")
        })
    };
    let t0 = Instant::now();
    let mut replies = [0usize; 3];
    // 9,900 fast ones, 16 at a time, then 100 unfinished ones, 25 at a time.
    for (kind, count, batch) in [(0, 4_950, 16), (1, 4_950, 16), (2, 100, 25)] {
        let mut done = 0;
        while done < count {
            let n = batch.min(count - done);
            let hs: Vec<_> = (0..n).map(|_| client(kind)).collect();
            for h in hs {
                if h.join().unwrap() {
                    replies[kind] += 1;
                }
            }
            done += n;
            assert!(
                t0.elapsed() < Duration::from_secs(180),
                "took over 3 minutes"
            );
        }
    }
    eprintln!(
        "error replies: random {}, over-long {}, unfinished {} in {:?}",
        replies[0],
        replies[1],
        replies[2],
        t0.elapsed()
    );
    assert_eq!(
        replies,
        [4_950, 4_950, 100],
        "every hostile client got an error line"
    );
    // Still serving, and nothing leaked.
    assert_eq!(get(st.s.addr, "/").unwrap().status, 200);
    let (code, line) = cli(&st.sock, "status");
    assert_eq!(code, 0, "{line}");
    let after = wait_for("the control threads to end", T, || {
        let now = (proc_entries(pid, "fd"), proc_entries(pid, "task"));
        (now.0 <= before.0 && now.1 <= before.1).then_some(now)
    });
    eprintln!("fds, threads before {before:?}, after {after:?}");
}

/// A child that dies at once after its ready byte (before or just after the
/// old process's drain began) is rolled back three times in a row, and the
/// old process keeps serving: a rollback never turns into an exit.
#[test]
fn quick_rollbacks_never_end_the_old_process() {
    let dir = TempDir::new("quick-rollback");
    let mut st = start(&dir, &["--probation-ms", "2000"]);
    let pid0 = st.s.first_pid();
    write_script(
        &st.bin,
        &format!("exec {} \"$@\" --exit-after-ready-ms 0", hello()),
    );
    for _ in 0..3 {
        let (code, line) = cli(&st.sock, "upgrade");
        assert_eq!(code, 1, "{line}");
        assert!(line.contains("\"result\":\"rolled back\""), "{line}");
        assert_eq!(st.s.pid_gen(), (pid0, 0), "the old process serves on");
    }
    assert!(
        st.s.wait_first(Duration::from_millis(300)).is_none(),
        "still running"
    );
    // A shutdown answered by the new generation during its probation stops
    // the service: the old process does not roll back, it exits 0 too.
    restore_binary(&st.bin);
    let sock = st.sock.clone();
    let verdict = std::thread::spawn(move || cli(&sock, "upgrade"));
    let pid1 = wait_for("the new generation", T, || {
        let (p, g) = parse_pid_gen(&get(st.s.addr, "/pid").ok()?.body_str());
        (g == 1).then_some(p)
    });
    let (code, line) = cli(&st.sock, "shutdown");
    assert_eq!(code, 0, "{line}");
    // The old process reaps it (it is its child), then exits 0 too.
    assert_eq!(
        st.s.wait_first(T),
        Some(0),
        "the old process shuts down too"
    );
    assert!(!Path::new(&format!("/proc/{pid1}")).exists(), "reaped");
    st.s.log.wait_line(
        &format!("[{pid0}] child {pid1} shut down cleanly during its probation"),
        0,
        T,
    );
    let (code, line) = verdict.join().unwrap();
    assert_eq!(code, 2, "{line}");
    assert!(
        get(st.s.addr, "/").is_err(),
        "nothing serves after the shutdown"
    );
}
