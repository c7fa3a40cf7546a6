//! Fault injection with real processes: the old generation killed during
//! its drain, the new one killed or stopped before it is ready, descriptors
//! running out during an upgrade, and a pid file the child cannot write.
//!
//! The test process is a child subreaper (`common::subreaper`, called by the
//! spawn helpers) and reaps every generation it starts. Every wait is
//! bounded.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(20);

/// Pids of the live (or zombie) processes whose parent is `pid`, from
/// `/proc/*/stat`, zombies included. (`/proc/PID/task/TID/children` lists
/// one thread's children, and grace forks from its upgrade thread.)
fn children_of(pid: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push((child, state));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// 1. The old generation is SIGKILLed during its drain
// ---------------------------------------------------------------------------

#[test]
fn sigkill_old_generation_during_drain_only_its_connections_fail() {
    let mut s = Server::start(&["--stop-timeout-ms", "10000"]);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let load = PidLoad::start(s.addr, 8);
    load.progress(200);

    // A slow request in flight on the old process keeps it draining.
    let mut slow = Client::new(s.addr).unwrap();
    let slow_port = slow.r.get_ref().local_addr().unwrap().port();
    slow.send(b"GET /sleep?ms=3000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.log.wait_line(
        &format!("[{pid0}] accepted Inet(127.0.0.1:{slow_port})"),
        0,
        T,
    );

    Server::signal(pid0, libc::SIGUSR2);
    let pid1 = wait_for("the new generation to serve", T, || {
        let (p, _) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
        (p != pid0).then_some(p)
    });
    // The old process starts its drain as soon as it reads the ready byte;
    // the slow request keeps it draining for 3 s. (Not waited for by its log
    // line: the two generations' lines can interleave, see
    // `log_lines_of_two_generations_never_interleave`.)
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.wait_first(Duration::ZERO).is_none(),
        "the old process exited before the slow request finished"
    );
    Server::signal(pid0, libc::SIGKILL);
    assert_eq!(s.wait_first(T), Some(-1), "killed by a signal");

    // The in-flight request on the killed process fails...
    let t0 = Instant::now();
    let r = slow.read("GET");
    assert!(r.is_err(), "the killed process answered: {r:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));

    // ...and the new process serves on: the load, fresh clients, /pid.
    load.progress_on(pid1, 300);
    for _ in 0..20 {
        let r = get(s.addr, "/").unwrap();
        assert_eq!(r.status, 200);
    }
    assert_eq!(s.pid_gen(), (pid1, 1));
    assert_eq!(
        s.file_pid(),
        Some(pid1),
        "the pid file names the new process"
    );
    // It learns its parent is gone (EOF on the readiness socket).
    s.log.wait_line(
        &format!("[{pid1}] the previous generation has exited; upgrades allowed"),
        0,
        T,
    );

    let (ok, by_pid, failures) = load.finish();
    // Every failure was on a connection the killed process owned: it had
    // answered on it before, or (no answer yet) it had accepted it.
    let foreign: Vec<&Failure> = failures
        .iter()
        .filter(|f| {
            let owner = f.owner.or_else(|| accepted_by(&s.log, f.port));
            owner != Some(pid0)
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "{} failure(s) on connections not owned by the killed process {pid0} \
         (of {ok} ok, {} failed): {:?}",
        foreign.len(),
        failures.len(),
        &foreign[..foreign.len().min(10)]
    );
    assert!(by_pid.get(&pid1).copied().unwrap_or(0) >= 300, "{by_pid:?}");
    eprintln!(
        "load: {ok} ok ({by_pid:?}), {} failed, all on connections of {pid0}",
        failures.len()
    );

    // A further upgrade works.
    let pid2 = restart(&mut s, pid1, 1);
    assert_eq!(s.pid_gen(), (pid2, 2));
}

// ---------------------------------------------------------------------------
// 2. The new process is SIGKILLed before it is ready
// ---------------------------------------------------------------------------

#[test]
fn sigkill_child_before_ready_parent_reaps_and_serves_on() {
    let dir = TempDir::new("kill-child");
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let mut s = Server::start_bin(bin.to_str().unwrap(), &["--upgrade-timeout-ms", "20000"]);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let load = PidLoad::start(s.addr, 8);
    load.progress(100);

    // The "new release" records its pid and never gets ready.
    let child_pid_file = dir.path().join("child.pid");
    write_script(
        &bin,
        &format!("echo $$ > {}\nexec sleep 30", child_pid_file.display()),
    );
    let from = s.log.lines().len();
    Server::signal(pid0, libc::SIGUSR2);
    let child: u32 = wait_for("the child to start", T, || {
        std::fs::read_to_string(&child_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    assert!(
        children_of(pid0).iter().any(|(p, _)| *p == child),
        "{child} is not a child of {pid0}: {:?}",
        children_of(pid0)
    );
    load.progress(50);
    Server::signal(child, libc::SIGKILL);
    s.log.wait_line(
        &format!("[{pid0}] upgrade failed: the child ended before ready (killed by signal 9)"),
        from,
        T,
    );
    // Reaped before the failure was logged: no zombie left.
    assert!(
        children_of(pid0).is_empty(),
        "children left: {:?}",
        children_of(pid0)
    );
    load.progress(100);
    assert_eq!(s.pid_gen(), (pid0, 0));
    assert_eq!(s.file_pid(), Some(pid0));

    // Put the real binary back: the next upgrade works.
    restore_binary(&bin);
    let pid1 = restart(&mut s, pid0, 0);
    load.progress_on(pid1, 50);
    let (ok, _, failures) = load.finish();
    assert_no_failures(ok, &failures);
    assert_eq!(s.pid_gen(), (pid1, 1));
}

// ---------------------------------------------------------------------------
// 3. The new process is SIGSTOPped before it is ready
// ---------------------------------------------------------------------------

#[test]
fn sigstopped_child_hits_upgrade_timeout_and_is_killed() {
    let dir = TempDir::new("stop-child");
    let bin = dir.path().join("hello");
    std::fs::copy(hello(), &bin).unwrap();
    let mut s = Server::start_bin(bin.to_str().unwrap(), &["--upgrade-timeout-ms", "1500"]);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let load = PidLoad::start(s.addr, 8);
    load.progress(100);

    // A wrapper that execs the real binary, but is stopped first. (It stops
    // itself, so the stop always lands before the real binary could say
    // ready; the test sends SIGSTOP again once it finds it.)
    write_script(&bin, &format!("kill -STOP $$\nexec {} \"$@\"", hello()));
    let from = s.log.lines().len();
    let t0 = Instant::now();
    Server::signal(pid0, libc::SIGUSR2);
    let child = wait_for("the stopped child", T, || {
        children_of(pid0)
            .into_iter()
            .find(|(_, state)| *state == 'T')
            .map(|(p, _)| p)
    });
    Server::signal(child, libc::SIGSTOP);
    s.log.wait_line(
        &format!("[{pid0}] upgrade failed: the child was not ready within the upgrade timeout (1.5 s); killed it"),
        from,
        T,
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(5),
        "upgrade gave up after {took:?}"
    );
    s.log.wait_line(
        &format!("[{pid0}] reaped child {child}: killed by signal 9"),
        from,
        T,
    );
    assert!(
        children_of(pid0).is_empty(),
        "children left: {:?}",
        children_of(pid0)
    );
    assert!(!Path::new(&format!("/proc/{child}")).exists());
    load.progress(100);
    assert_eq!(s.pid_gen(), (pid0, 0));
    assert_eq!(s.file_pid(), Some(pid0));

    restore_binary(&bin);
    let pid1 = restart(&mut s, pid0, 0);
    load.progress_on(pid1, 50);
    let (ok, _, failures) = load.finish();
    assert_no_failures(ok, &failures);
}

// ---------------------------------------------------------------------------
// 4. File descriptors run out during an upgrade
// ---------------------------------------------------------------------------

const NOFILE: usize = 64;

/// Starts the demo with `RLIMIT_NOFILE` at `NOFILE` (soft and hard).
fn start_with_nofile() -> Server {
    let dir = TempDir::new("nofile-up");
    let pid_file = dir.path().join("server.pid");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(hello())
        .args(["--listen", "127.0.0.1:0", "--no-raise-nofile", "--pid-file"])
        .arg(&pid_file)
        .args(["--drain-grace-ms", "200"]);
    Server::from_command(cmd, dir, pid_file)
}

fn open_fds(pid: u32) -> usize {
    proc_entries(pid, "fd")
}

#[test]
fn descriptors_run_out_during_an_upgrade() {
    let mut s = start_with_nofile();
    let mut pid = s.first_pid();
    wait_signal_handlers(pid);
    let mut gen = 0;
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(&format!(" {NOFILE} "))),
        "{limits}"
    );
    let mut outcomes = Vec::new();
    // Leave 0, 1, 2, ... descriptors free in the serving process, then ask
    // for an upgrade. Each step either fails cleanly or succeeds.
    for free in [0usize, 1, 2, 3, 4, 6, 10] {
        let base = open_fds(pid);
        let mut held: Vec<Client> = Vec::new();
        while open_fds(pid) < NOFILE - free {
            let mut c = Client::new(s.addr).unwrap();
            let r = c
                .get("/")
                .unwrap_or_else(|e| panic!("free {free}: held client {}: {e}", held.len()));
            assert_eq!(r.status, 200);
            held.push(c);
            assert!(held.len() <= NOFILE, "fd count of {pid} does not grow");
        }
        let from = s.log.lines().len();
        Server::signal(pid, libc::SIGUSR2);
        // The outcome: the parent's failure line (logged once the child is
        // reaped, so no other process writes to the log meanwhile), or a new
        // pid in the pid file (the child writes it just before it says
        // ready; none of the failures here get that far).
        let failed = format!("[{pid}] upgrade failed: ");
        let deadline = Instant::now() + T;
        let outcome = loop {
            let found = s
                .log
                .lines()
                .into_iter()
                .skip(from)
                .find(|l| l.contains(&failed));
            if let Some(l) = found {
                break Err(l);
            }
            if let Some(p) = s.file_pid().filter(|p| *p != pid) {
                break Ok(p);
            }
            assert!(
                Instant::now() < deadline,
                "free {free}: no outcome for the upgrade of {pid} ({} fds open); log:\n{}",
                open_fds(pid),
                s.log.lines()[from..].join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // Let the held connections go (both cases), then check service.
        drop(held);
        if let Err(line) = outcome {
            outcomes.push(format!(
                "free {free}: {}",
                line.split(&failed).nth(1).unwrap()
            ));
            let r = wait_for("service after the failed upgrade", T, || {
                get(s.addr, "/pid").ok()
            });
            assert_eq!(parse_pid_gen(&r.body_str()), (pid, gen), "free {free}");
            // Nothing leaked: the failed attempt's sockets and pipes are
            // closed, and the held connections are gone.
            wait_for("the fd count back to where it was", T, || {
                (open_fds(pid) <= base).then_some(())
            });
        } else {
            outcomes.push(format!("free {free}: upgraded"));
            let old = pid;
            let (p, g) = wait_for("the new generation", T, || {
                let (p, g) = parse_pid_gen(&get(s.addr, "/pid").ok()?.body_str());
                (p != old).then_some((p, g))
            });
            assert_eq!(g, gen + 1);
            assert_eq!(wait_exit(&mut s, old), Some(grace::Exit::Code(0)));
            s.log.wait_line(
                &format!("[{p}] the previous generation has exited; upgrades allowed"),
                from,
                T,
            );
            pid = p;
            gen = g;
        }
        assert!(
            children_of(pid).is_empty(),
            "free {free}: {:?}",
            children_of(pid)
        );
        assert_eq!(get(s.addr, "/").unwrap().status, 200, "free {free}");
    }
    eprintln!("outcomes: {outcomes:?}");
    // With everything released, an upgrade works.
    let old = pid;
    let new = restart(&mut s, old, gen);
    assert_ne!(new, old);
    let log = s.log.text();
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------------------
// 5. The child cannot write the pid file
// ---------------------------------------------------------------------------

/// A demo server whose pid file lives in `<dir>/run/`.
fn start_with_pid_dir(dir: &TempDir) -> Server {
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let pid_file = run.join("server.pid");
    let mut cmd = Command::new(hello());
    cmd.args(["--listen", "127.0.0.1:0", "--pid-file"])
        .arg(&pid_file);
    Server::from_command(cmd, TempDir::new("pid-dir-srv"), pid_file)
}

/// Replaces `<dir>/run` by a regular file (the directory goes to
/// `run.away`): creating anything in it fails with ENOTDIR. (Permission
/// bits would not stop root.)
fn break_pid_dir(dir: &TempDir) {
    let run = dir.path().join("run");
    std::fs::rename(&run, dir.path().join("run.away")).unwrap();
    std::fs::write(&run, "not a directory\n").unwrap();
}

fn repair_pid_dir(dir: &TempDir) {
    let run = dir.path().join("run");
    std::fs::remove_file(&run).unwrap();
    std::fs::rename(dir.path().join("run.away"), &run).unwrap();
}

#[test]
fn child_that_cannot_write_the_pid_file_fails_before_ready() {
    let dir = TempDir::new("pid-dir");
    let mut s = start_with_pid_dir(&dir);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    let load = PidLoad::start(s.addr, 8);
    load.progress(100);

    // After the first generation wrote its pid file, its directory goes.
    break_pid_dir(&dir);
    let from = s.log.lines().len();
    Server::signal(pid0, libc::SIGUSR2);
    let (_, line) = s.log.wait_line(
        &format!("[{pid0}] upgrade failed: the child ended before ready ("),
        from,
        T,
    );
    // The child returns an error and exits 1; the parent, woken by the
    // readiness socket's end-of-file, may SIGKILL it first (see
    // `child_failing_before_ready_can_log_why_and_exit`).
    assert!(
        line.contains("(exit status 1)") || line.contains("(killed by signal 9)"),
        "{line}"
    );
    assert!(
        children_of(pid0).is_empty(),
        "children left: {:?}",
        children_of(pid0)
    );
    load.progress(100);
    assert_eq!(s.pid_gen(), (pid0, 0));

    // The directory comes back: the next upgrade works.
    repair_pid_dir(&dir);
    assert_eq!(
        s.file_pid(),
        Some(pid0),
        "the child never wrote the pid file"
    );
    let pid1 = restart(&mut s, pid0, 0);
    load.progress_on(pid1, 50);
    let (ok, _, failures) = load.finish();
    assert_no_failures(ok, &failures);
    assert_eq!(s.file_pid(), Some(pid1));
}

#[test]
/// Was a bug: the parent SIGKILLed the child at once on end-of-file of the
/// readiness socket, losing the child's own exit status and log line. Fixed
/// in `upgrade::parent` (`reap_within`, `EXIT_GRACE`).
fn child_failing_before_ready_can_log_why_and_exit() {
    let dir = TempDir::new("pid-dir-race");
    let s = start_with_pid_dir(&dir);
    let pid0 = s.first_pid();
    wait_signal_handlers(pid0);
    break_pid_dir(&dir);
    let mut from = s.log.lines().len();
    let mut seen = Vec::new();
    for attempt in 0..10 {
        Server::signal(pid0, libc::SIGUSR2);
        let (i, line) = s.log.wait_line(
            &format!("[{pid0}] upgrade failed: the child ended before ready ("),
            from,
            T,
        );
        // The child's pid is in the parent's "started child N" line.
        let started = s.log.lines()[from..i]
            .iter()
            .find_map(|l| {
                l.split(&format!("[{pid0}] started child "))
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .expect("started child line");
        let child_said_why = s.log.lines()[from..].iter().any(|l| {
            l.contains(&format!("hello: pid file {}", dir.path().display()))
                && l.contains("Not a directory")
        });
        seen.push(format!(
            "attempt {attempt}: child {started}: {} / reason logged: {child_said_why}",
            line.split("before ready ").nth(1).unwrap_or(&line)
        ));
        from = i + 1;
    }
    let bad: Vec<&String> = seen
        .iter()
        .filter(|l| !l.contains("(exit status 1)") || l.ends_with("false"))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// True if `line` is one whole line of the demo's logger,
/// `SECS.MSS LEVEL target: message`, with no piece of another line in it.
fn well_formed(line: &str) -> bool {
    let Some((ts, rest)) = line.split_once(' ') else {
        return false;
    };
    let ts_ok = ts.split_once('.').is_some_and(|(secs, ms)| {
        secs.len() >= 10
            && secs.bytes().all(|c| c.is_ascii_digit())
            && ms.len() == 3
            && ms.bytes().all(|c| c.is_ascii_digit())
    });
    // The level is padded to five columns, then a space.
    let (Some(level), Some(rest)) = (rest.get(..5), rest.get(5..)) else {
        return false;
    };
    let levels = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
    let Some(rest) = rest.strip_prefix(' ') else {
        return false;
    };
    let Some((target, msg)) = rest.split_once(": ") else {
        return false;
    };
    let target_ok = !target.is_empty()
        && target
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':');
    let merged = ["TRACE ", "DEBUG ", "INFO  ", "WARN  ", "ERROR "]
        .iter()
        .any(|l| msg.contains(&format!(" {l}grace")));
    ts_ok && levels.contains(&level.trim_end()) && target_ok && !merged
}

#[test]
/// Was a bug: the demo's logger wrote each line in pieces, so lines of two
/// generations sharing stderr interleaved. Fixed: one write per line.
fn log_lines_of_two_generations_never_interleave() {
    let mut s = Server::start(&[]);
    // Short connections: each is logged ("accepted ...") by whichever
    // generation accepts it, so both log at once around each handover.
    let stop = Arc::new(AtomicBool::new(false));
    let addr = s.addr;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = get(addr, "/");
                }
            })
        })
        .collect();
    let mut pid = s.first_pid();
    wait_signal_handlers(pid);
    for gen in 0..5 {
        pid = restart(&mut s, pid, gen);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let lines = s.log.lines();
    let bad: Vec<&String> = lines.iter().filter(|l| !well_formed(l)).collect();
    assert!(
        bad.is_empty(),
        "{} of {} log lines are not whole lines: {:#?}",
        bad.len(),
        lines.len(),
        &bad[..bad.len().min(10)]
    );
}

#[test]
/// Was a bug: the pid file appeared before the signal handlers were
/// installed, and an early SIGUSR2 killed the server. Fixed: handlers first.
fn sigusr2_as_soon_as_the_pid_file_appears_does_not_kill_the_server() {
    let mut deaths = Vec::new();
    for attempt in 0..10 {
        let dir = TempDir::new("early-usr2");
        let pid_file = dir.path().join("server.pid");
        let mut cmd = Command::new(hello());
        cmd.args(["--listen", "127.0.0.1:0", "--pid-file"])
            .arg(&pid_file);
        let (mut child, log) = spawn_logged(&mut cmd);
        // What a deploy script does: wait for the pid file, then signal the
        // pid in it.
        let deadline = Instant::now() + T;
        let pid = loop {
            if let Some(p) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "no pid file");
            std::hint::spin_loop();
        };
        assert_eq!(pid, child.id());
        let handled = handles_signals(pid);
        Server::signal(pid, libc::SIGUSR2);
        std::thread::sleep(Duration::from_millis(300));
        match child.try_wait().unwrap() {
            // Exit 0: it upgraded (handled the signal) and its child serves.
            Some(st) if st.success() => {}
            Some(st) => deaths.push(format!(
                "attempt {attempt}: {st} (handlers installed when signalled: {handled})"
            )),
            None => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Kill and reap the generation a successful upgrade started.
        for line in log.lines() {
            if let Some(p) = line
                .split("hello: pid ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok())
            {
                if p != child.id() {
                    let _ = common::os::kill(p, libc::SIGKILL);
                    reap(p, T);
                }
            }
        }
    }
    assert!(deaths.is_empty(), "{}", deaths.join("\n"));
}
