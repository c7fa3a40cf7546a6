#!/usr/bin/env python3
"""Handover measurements for grace's demo server, with wrk on loopback.

  python3 benches/handover.py restart   # wrk -c64 -d15s keep-alive, USR2 every 3 s (4 restarts)
  python3 benches/handover.py restart-close   # the same with Connection: close
  python3 benches/handover.py drain-idle      # SIGTERM with 1000 idle keep-alive connections
  python3 benches/handover.py drain-busy      # SIGTERM under wrk -c64 keep-alive
  python3 benches/handover.py all
  python3 benches/handover.py peers   # restart under load: grace, gracehttp, tableflip, nginx
  python3 benches/handover.py peers grace nginx   # only these

`peers`: for each server, wrk -t1 -c64 -d15s keep-alive with benches/persec.lua
(completed responses per second) and a restart every 3 s (4 restarts):
grace SIGUSR2, facebookgo/grace gracehttp SIGUSR2 (re-execs itself; the new
process SIGTERMs the old), cloudflare/tableflip SIGHUP (Upgrade; the old one
drains after the new one's Ready), nginx SIGHUP to the master (reload: new
worker, the old one finishes its connections). Writes
benches/results/restart.md and benches/results/restart.svg (throughput over
time, one line per server, restarts marked). A peer that is not installed
(benches/install-peers.sh) is skipped and said so. Each server's run takes
`flock LOCK` (default /tmp/grace-cpu.lock; LOCK= to skip).

The server is pinned to CPU 0 and wrk to CPU 1 (taskset). This script makes
itself a child subreaper (PID 1 here reaps no orphans) and reaps every
generation. Build first: cargo build --release --example hello.
"""
import ctypes
import fcntl
import shutil
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "target", "release", "examples", "hello")
PR_SET_CHILD_SUBREAPER = 36


def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="grace-bench-")
        self.pid_file = os.path.join(self.dir, "pid")
        self.log_path = os.path.join(self.dir, "log")
        self.port = free_port()
        self.log = open(self.log_path, "w")
        env = dict(os.environ, RUST_LOG="info")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", HELLO, "--listen", f"127.0.0.1:{self.port}",
             "--pid-file", self.pid_file, *extra],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if self.pid():
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("server did not start")

    def pid(self):
        try:
            return int(open(self.pid_file).read().strip())
        except (OSError, ValueError):
            return None

    def log_lines(self):
        self.log.flush()
        return open(self.log_path).read().splitlines()

    def stop(self):
        pid = self.pid()
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        time.sleep(0.1)
        reap_all()


def wrk(port, seconds, conns=64, close=False):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"http://127.0.0.1:{port}/")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def parse_wrk(out):
    r = {"requests": 0, "rps": 0.0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["connect"], r["read"], r["write"], r["timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"99%\s+(\S+)", out)
    r["p99"] = m.group(1) if m else "?"
    return r


def ts(line):
    try:
        return float(line.split()[0])
    except (IndexError, ValueError):
        return None


def restart(close=False):
    s = Server()
    try:
        w = wrk(s.port, 15, close=close)
        ready_to_exit = []
        signal_to_exit = []
        for i in range(4):
            time.sleep(3)
            old = s.pid()
            t0 = time.time()
            os.kill(old, signal.SIGUSR2)
            deadline = time.time() + 10
            while time.time() < deadline:
                try:
                    os.kill(old, 0)
                except ProcessLookupError:
                    break
                reap_all()
                time.sleep(0.001)
            signal_to_exit.append((time.time() - t0) * 1000)
            reap_all()
        out, _ = w.communicate(timeout=60)
        r = parse_wrk(out)
        lines = s.log_lines()
        ready = {}
        for l in lines:
            m = re.search(r"\[(\d+)\] child (\d+) \(generation \d+\) is ready after", l)
            if m:
                ready[m.group(1)] = ts(l)
            m = re.search(r"hello: pid (\d+) exiting \(Upgraded\)", l)
            if m and m.group(1) in ready:
                ready_to_exit.append((ts(l) - ready[m.group(1)]) * 1000)
        gens = sum(1 for l in lines if "is ready after" in l)
        mode = "Connection: close" if close else "keep-alive"
        errors = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
        print(f"## restart under load ({mode}, wrk -t1 -c64 -d15s, USR2 every 3 s)")
        print(f"- restarts completed: {gens}")
        print(f"- requests: {r['requests']}, {r['rps']:.0f} req/s, p99 {r['p99']}")
        print(f"- errors: connect {r['connect']}, read {r['read']}, write {r['write']}, "
              f"timeout {r['timeout']}, non-2xx {r['non2xx']} (total {errors})")
        print("- old process exit after the child's ready (ms): "
              + ", ".join(f"{x:.1f}" for x in ready_to_exit))
        print("- old process exit after the signal (ms, polled): "
              + ", ".join(f"{x:.1f}" for x in signal_to_exit))
        print()
    finally:
        s.stop()


def drain_idle(n=1000):
    s = Server()
    try:
        socks = []
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            socks.append(c)
        for c in socks:
            c.settimeout(5)
            buf = b""
            while b"hello\n" not in buf:
                buf += c.recv(4096)
        import selectors
        sel = selectors.DefaultSelector()
        for c in socks:
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
        pid = s.pid()
        t0 = time.time()
        os.kill(pid, signal.SIGTERM)
        # Behave like a browser: close our side when the server closes.
        closed = 0
        deadline = time.time() + 30
        while closed < n and time.time() < deadline:
            for key, _ in sel.select(timeout=0.5):
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except OSError:
                    data = b""
                if data == b"":
                    sel.unregister(c)
                    c.close()
                    closed += 1
        s.proc.wait(timeout=60)
        took = (time.time() - t0) * 1000
        print(f"## SIGTERM with {n} idle keep-alive connections")
        print(f"- exit {took:.0f} ms after SIGTERM (drain grace 1000 ms), "
              f"exit code {s.proc.returncode}, {closed}/{n} connections closed cleanly (EOF)")
        print()
    finally:
        s.stop()


def drain_busy():
    s = Server()
    try:
        w = wrk(s.port, 6)
        time.sleep(3)
        t0 = time.time()
        os.kill(s.pid(), signal.SIGTERM)
        s.proc.wait(timeout=60)
        took = (time.time() - t0) * 1000
        out, _ = w.communicate(timeout=60)
        r = parse_wrk(out)
        print("## SIGTERM under wrk -t1 -c64 keep-alive")
        print(f"- exit {took:.0f} ms after SIGTERM, exit code {s.proc.returncode}")
        print(f"- requests: {r['requests']}; errors: read {r['read']}, write {r['write']}, "
              f"timeout {r['timeout']}, non-2xx {r['non2xx']}; connect {r['connect']} "
              "(wrk reconnecting after the listener closed: expected on a final shutdown)")
        print()
    finally:
        s.stop()


# ---------------------------------------------------------------------------
# Restart under load for grace and its peers, with a throughput plot.
# ---------------------------------------------------------------------------
GO_BIN = os.path.join(ROOT, "benches", "peers", "go", "bin")
NGINX_CONF_IN = os.path.join(ROOT, "benches", "peers", "nginx", "nginx.conf.in")
PERSEC_LUA = os.path.join(ROOT, "benches", "persec.lua")
PEERS = {
    # name: (label, signal, how)
    "grace": ("grace", signal.SIGUSR2, "SIGUSR2"),
    "gracehttp": ("gracehttp (facebookgo/grace)", signal.SIGUSR2, "SIGUSR2"),
    "tableflip": ("tableflip (cloudflare)", signal.SIGHUP, "SIGHUP"),
    "nginx": ("nginx", signal.SIGHUP, "SIGHUP to the master (reload)"),
}
COLORS = {"grace": "#d62728", "gracehttp": "#1f77b4", "tableflip": "#2ca02c", "nginx": "#9467bd"}


def alive(pid):
    """True while pid runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


class Peer:
    """One server under test, in its own session (process group) so that
    every generation can be killed at the end."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"grace-peer-{name}-")
        self.pid_file = os.path.join(self.dir, "pid")
        self.port = free_port()
        addr = f"127.0.0.1:{self.port}"
        if name == "grace":
            cmd = [HELLO, "--listen", addr, "--pid-file", self.pid_file]
        elif name in ("gracehttp", "tableflip"):
            cmd = [os.path.join(GO_BIN, name), addr, self.pid_file]
        elif name == "nginx":
            conf = open(NGINX_CONF_IN).read().replace("@DIR@", self.dir).replace("@PORT@", str(self.port))
            open(os.path.join(self.dir, "nginx.conf"), "w").write(conf)
            self.pid_file = os.path.join(self.dir, "nginx.pid")
            cmd = ["nginx", "-p", self.dir, "-c", os.path.join(self.dir, "nginx.conf"),
                   "-e", os.path.join(self.dir, "error.log")]
        else:
            raise ValueError(name)
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=self.log, stderr=self.log,
                                     start_new_session=True, env=dict(os.environ, RUST_LOG="info"))
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if self.pid() and (name != "nginx" or children(self.pid())):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{name} did not start: {open(os.path.join(self.dir, 'log')).read()}")

    def pid(self):
        try:
            return int(open(self.pid_file).read().strip())
        except (OSError, ValueError):
            return None

    def serving(self):
        """The process(es) that serve now: for nginx its workers."""
        pid = self.pid()
        if self.name == "nginx":
            return set(children(pid)) if pid else set()
        return {pid} if pid else set()

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in list(self.serving()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        reap_all()


def restart_peer(name, seconds=15, every=3, restarts=4):
    p = Peer(name)
    sig = PEERS[name][1]
    try:
        cmd = ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds}s", "--latency",
               "-s", PERSEC_LUA, f"http://127.0.0.1:{p.port}/"]
        t0 = time.time()
        w = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        marks, handover, old_exit = [], [], []
        pending = []  # (old pids, signal time)
        def poll_old():
            for old_pids, tsig in list(pending):
                if not any(alive(x) for x in old_pids):
                    old_exit.append((time.time() - tsig) * 1000)
                    pending.remove((old_pids, tsig))

        for i in range(restarts):
            # Wait for the next restart, noting when old generations go.
            while time.time() < t0 + every * (i + 1):
                poll_old()
                time.sleep(0.005)
            old = p.serving()
            target = p.pid()
            ts_sig = time.time()
            os.kill(target, sig)
            marks.append(ts_sig - t0)
            # Wait for the new generation (new pid, or for nginx new workers).
            deadline = time.time() + every - 0.2
            while time.time() < deadline:
                now = p.serving()
                if now and not (now & old):
                    handover.append((time.time() - ts_sig) * 1000)
                    break
                time.sleep(0.002)
            else:
                handover.append(float("nan"))
            pending.append((old, ts_sig))
            poll_old()
        while pending and time.time() < t0 + seconds + 30:
            poll_old()
            time.sleep(0.005)
        out, _ = w.communicate(timeout=120)
        r = parse_wrk(out)
        series = []
        for m in re.finditer(r"^persec (\d+) (\d+) (\d+)$", out, re.M):
            series.append((int(m.group(1)) - t0, int(m.group(2)), int(m.group(3))))
        r.update(name=name, marks=marks, handover=handover, old_exit=old_exit,
                 old_left=len(pending), series=series, alive=bool(p.serving()))
        return r
    finally:
        p.stop()


def svg_plot(results, path, seconds=15):
    W, H, L, R, T, B = 760, 360, 70, 170, 30, 45
    pw, ph = W - L - R, H - T - B
    ymax = max([n for r in results for _, n, _ in r["series"]] + [1])
    step = 10 ** (len(str(int(ymax))) - 1)
    ymax = (int(ymax / step) + 1) * step
    def x(t):
        return L + pw * min(max(t, 0), seconds) / seconds
    def y(v):
        return T + ph * (1 - v / ymax)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">Restart under load: wrk -t1 -c64 keep-alive, restart every 3 s (dashed)</text>']
    for i in range(6):
        v = ymax * i / 5
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v / 1000:.0f}k</text>')
    for t in range(0, seconds + 1, 3):
        o.append(f'<text x="{x(t):.1f}" y="{T + ph + 16}" text-anchor="middle">{t} s</text>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 8}" text-anchor="middle">time since wrk started</text>')
    o.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" '
             'text-anchor="middle">responses per second</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    for k, r in enumerate(results):
        c = COLORS.get(r["name"], "#000")
        for m in r["marks"]:
            o.append(f'<line x1="{x(m):.1f}" x2="{x(m):.1f}" y1="{T}" y2="{T + ph}" stroke="{c}" '
                     'stroke-dasharray="4 3" stroke-opacity="0.6"/>')
        # Each point at the middle of its second; drop the partial first and last seconds.
        pts = r["series"][1:-1] if len(r["series"]) > 2 else r["series"]
        if pts:
            d = " ".join(f"{x(t + 0.5):.1f},{y(n):.1f}" for t, n, _ in pts)
            o.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        errs = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
        ly = T + 14 + 34 * k
        o.append(f'<line x1="{L + pw + 12}" x2="{L + pw + 32}" y1="{ly}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
        o.append(f'<text x="{L + pw + 38}" y="{ly + 4}">{PEERS[r["name"]][0].split(" ")[0]}</text>')
        o.append(f'<text x="{L + pw + 38}" y="{ly + 18}" font-size="10">{errs} errors</text>')
    o.append("</svg>")
    open(path, "w").write("\n".join(o) + "\n")


def restart_peers(names):
    lock = os.environ.get("LOCK", "/tmp/grace-cpu.lock")
    results, skipped = [], []
    for name in names:
        if name == "grace":
            ok = os.path.exists(HELLO)
        elif name == "nginx":
            ok = bool(shutil.which("nginx"))
        else:
            ok = os.path.exists(os.path.join(GO_BIN, name))
        if not ok:
            print(f"skipping {name}: not installed or built (benches/install-peers.sh)", flush=True)
            skipped.append(name)
            continue
        lf = open(lock, "a") if lock else None
        if lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
        try:
            r = restart_peer(name)
        finally:
            if lf:
                lf.close()
        results.append(r)
        errs = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
        print(f"{name}: {r['requests']} requests, {r['rps']:.0f} req/s, errors {errs} "
              f"(connect {r['connect']}, read {r['read']}, write {r['write']}, timeout {r['timeout']}, "
              f"non-2xx {r['non2xx']}), p99 {r['p99']}", flush=True)
    rows = ["| server | restart signal | restarts | requests | req/s | errors | connect / read / write / timeout / non-2xx | p99 | new generation serving after signal (ms) | old generation gone after signal (ms) | min req/s in a second |",
            "|---|---|---:|---:|---:|---:|---|---:|---|---|---:|"]
    for r in results:
        errs = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
        inner = [n for _, n, _ in r["series"][1:-1]]
        left = f", {r['old_left']} still running" if r["old_left"] else ""
        rows.append(
            f"| {PEERS[r['name']][0]} | {PEERS[r['name']][2]} | {len(r['marks'])} | {r['requests']} | {r['rps']:,.0f} | {errs} | "
            f"{r['connect']} / {r['read']} / {r['write']} / {r['timeout']} / {r['non2xx']} | {r['p99']} | "
            + ", ".join(f"{v:.0f}" for v in r["handover"]) + " | "
            + ", ".join(f"{v:.0f}" for v in r["old_exit"]) + left + f" | {min(inner) if inner else 'n/a':,} |")
    series = []
    for r in results:
        series.append(f"- {r['name']}: " + ", ".join(
            f"{n:,}" + (f" (+{e} non-2xx)" if e else "") for _, n, e in r["series"]))
    out_dir = os.path.join(ROOT, "benches", "results")
    os.makedirs(out_dir, exist_ok=True)
    if results:
        svg_plot(results, os.path.join(out_dir, "restart.svg"))
    doc = ["# Restart under load", "",
           f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; `python3 benches/handover.py peers`",
           "- server pinned to CPU 0, `wrk -t1 -c64 -d15s --latency -s benches/persec.lua` (keep-alive) on CPU 1;",
           "  a restart every 3 s (4 in all). The Lua response() callback costs wrk CPU, so req/s here are",
           "  lower than in the throughput table; it is the same for every server.",
           "- errors: wrk's socket errors (connect, read, write, timeout) and non-2xx responses.",
           "- new generation serving (polled every 2 ms): grace, gracehttp, tableflip: the pid file names a new process",
           "  (gracehttp writes it at start, tableflip and grace when ready); nginx: the master's workers are all new.",
           "- old generation gone (polled every 5 ms): every process that served before the signal has exited.",
           "", *rows, "",
           "![throughput over time](restart.svg)", "",
           "## Responses per second", "",
           "Completed responses in each second of wall time from wrk's start (the first and last seconds are partial).", "",
           *series, ""]
    doc += [f"- {s}: skipped (not installed or not built)" for s in skipped]
    open(os.path.join(out_dir, "restart.md"), "w").write("\n".join(doc) + "\n")
    print("\n".join(rows))
    print(f"written: {out_dir}/restart.md, restart.svg")


def main():
    subreaper()
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "peers":
        restart_peers(sys.argv[2:] or ["grace", "gracehttp", "tableflip", "nginx"])
        return
    if not os.path.exists(HELLO):
        sys.exit(f"build first: cargo build --release --example hello ({HELLO} missing)")
    if what in ("restart", "all"):
        restart()
    if what in ("restart-close", "all"):
        restart(close=True)
    if what in ("drain-idle", "all"):
        drain_idle()
    if what in ("drain-busy", "all"):
        drain_busy()


if __name__ == "__main__":
    main()
