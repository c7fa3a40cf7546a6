#!/usr/bin/env python3
"""Handover measurements for grace's demo server, with wrk on loopback.

  python3 benches/handover.py restart   # wrk -c64 -d15s keep-alive, USR2 every 3 s (4 restarts)
  python3 benches/handover.py restart-close   # the same with Connection: close
  python3 benches/handover.py drain-idle      # SIGTERM with 1000 idle keep-alive connections
  python3 benches/handover.py drain-busy      # SIGTERM under wrk -c64 keep-alive
  python3 benches/handover.py all

The server is pinned to CPU 0 and wrk to CPU 1 (taskset). This script makes
itself a child subreaper (PID 1 here reaps no orphans) and reaps every
generation. Build first: cargo build --release --example hello.
"""
import ctypes
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


def main():
    if not os.path.exists(HELLO):
        sys.exit(f"build first: cargo build --release --example hello ({HELLO} missing)")
    subreaper()
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
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
