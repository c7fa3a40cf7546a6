#!/usr/bin/env python3
"""Memory per idle keep-alive connection: grace vs hyper (and tiny_http,
nginx, Go net/http where installed).

  python3 benches/rss.py                 # grace hyper tiny nginx nethttp; 1000 and 10000
  python3 benches/rss.py grace hyper     # only these
  COUNTS=1000 python3 benches/rss.py     # skip the 10,000 step
  BATCH=50 python3 benches/rss.py tiny   # connect 50 at a time (default 200)

For each server (pinned to CPU 0): start it, GET / once (closed connection),
read VmRSS from /proc/PID/status (for nginx the master plus its worker; for
every server its child processes are summed) = RSS idle. Then open
keep-alive connections, each sending one GET / and reading the answer, and
leave them idle: RSS with 1,000, then with 10,000 connections held. Per
connection = (RSS_N - RSS_idle) / N. Also reports the thread count (grace
runs one thread per connection: 256 KiB stacks, of which only the touched
pages count in RSS).

The script raises its own RLIMIT_NOFILE (as root, soft and hard to 65536)
before starting the servers, which inherit it; grace and Go raise their soft
limit to the hard one anyway, and nginx's config sets worker_rlimit_nofile.
Each server's measurement takes `flock LOCK` (default /tmp/grace-cpu.lock;
LOCK= to skip). Results: benches/results/rss.md (OUT).
Build first: cargo build --release --example hello, and benches/peers.
"""
import fcntl
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from handover import free_port  # noqa: E402  (one copy, shared)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINS = {
    "grace": os.path.join(ROOT, "target", "release", "examples", "hello"),
    "hyper": os.path.join(ROOT, "benches", "peers", "target", "release", "hyper-hello"),
    "tiny": os.path.join(ROOT, "benches", "peers", "target", "release", "tiny-hello"),
    "nethttp": os.path.join(ROOT, "benches", "peers", "go", "bin", "nethttp"),
    "nginx": shutil.which("nginx") or "",
}
LABEL = {"grace": "grace", "hyper": "hyper", "tiny": "tiny_http", "nginx": "nginx", "nethttp": "Go net/http"}
NGINX_CONF_IN = os.path.join(ROOT, "benches", "peers", "nginx", "nginx.conf.in")



def start(name, port, d):
    addr = f"127.0.0.1:{port}"
    if name == "grace":
        cmd = [BINS[name], "--listen", addr]
    elif name == "nginx":
        conf = open(NGINX_CONF_IN).read().replace("@DIR@", d).replace("@PORT@", str(port))
        open(os.path.join(d, "nginx.conf"), "w").write(conf)
        cmd = ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")]
    else:
        cmd = [BINS[name], addr]
    log = open(os.path.join(d, "log"), "w")
    p = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=log, stderr=log)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=1)
            c.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
            buf = b""
            while True:
                b = c.recv(4096)
                if not b:
                    break
                buf += b
            c.close()
            if b"hello\n" in buf:
                return p
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    p.wait()
    raise RuntimeError(f"{name} did not start; log: {open(os.path.join(d, 'log')).read()}")


def family(pid):
    out = [pid]
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            kids = open(f"/proc/{pid}/task/{t}/children").read().split()
        except OSError:
            continue
        for k in kids:
            out += family(int(k))
    return out


def status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kib(pid):
    return sum(status(p, "VmRSS") for p in family(pid))


def threads(pid):
    return sum(status(p, "Threads") for p in family(pid))


def settle(pid):
    # RSS after it stops changing (or 3 s).
    last, stable = -1, 0
    end = time.time() + 3
    while time.time() < end and stable < 3:
        time.sleep(0.2)
        r = rss_kib(pid)
        stable = stable + 1 if r == last else 0
        last = r
    return last


def open_conns(port, n, socks):
    """Opens n more keep-alive connections, each with one GET / answered."""
    batch = int(os.environ.get("BATCH", "200"))
    while n > 0:
        k = min(batch, n)
        new = []
        for _ in range(k):
            c = socket.create_connection(("127.0.0.1", port), timeout=30)
            new.append(c)
        for c in new:
            c.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        for c in new:
            buf = b""
            while b"hello\n" not in buf:
                b = c.recv(4096)
                if not b:
                    raise RuntimeError("server closed a connection")
                buf += b
        socks += new
        n -= k


def measure(name, counts):
    d = tempfile.mkdtemp(prefix="grace-rss-")
    port = free_port()
    p = start(name, port, d)
    socks = []
    r = {"server": name}
    try:
        time.sleep(0.3)
        r["idle"] = settle(p.pid)
        r["idle_threads"] = threads(p.pid)
        for n in counts:
            open_conns(port, n - len(socks), socks)
            r[n] = settle(p.pid)
            r[f"threads{n}"] = threads(p.pid)
    except Exception as e:  # report what we have
        r["error"] = f"{type(e).__name__}: {e} (after {len(socks)} connections)"
    finally:
        for c in socks:
            c.close()
        p.send_signal(signal.SIGKILL if name != "nginx" else signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return r


def mib(k):
    return f"{k / 1024:.1f} MiB"


def main():
    want = sys.argv[1:] or ["grace", "hyper", "tiny", "nginx", "nethttp"]
    counts = [int(x) for x in os.environ.get("COUNTS", "1000 10000").split()]
    lock = os.environ.get("LOCK", "/tmp/grace-cpu.lock")
    out = os.environ.get("OUT", os.path.join(ROOT, "benches", "results", "rss.md"))
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"RLIMIT_NOFILE {resource.getrlimit(resource.RLIMIT_NOFILE)}", flush=True)
    results, skipped = [], []
    for name in want:
        b = BINS.get(name)
        if not b or not os.path.exists(b):
            skipped.append(name)
            print(f"skipping {name}: not installed/built ({b or 'nginx not on PATH'})", flush=True)
            continue
        lf = open(lock, "a") if lock else None
        if lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
        try:
            r = measure(name, counts)
        finally:
            if lf:
                lf.close()
        results.append(r)
        line = f"{name}: idle {mib(r['idle'])}" if "idle" in r else name
        for n in counts:
            if n in r:
                line += f"; {n} conns {mib(r[n])} ({(r[n] - r['idle']) / n:.1f} KiB/conn, {r[f'threads{n}']} threads)"
        if "error" in r:
            line += f"; ERROR {r['error']}"
        print(line, flush=True)
    head = "| server | RSS idle | " + " | ".join(
        f"RSS, {n:,} idle keep-alive | KiB per connection ({n:,}) | threads ({n:,})" for n in counts) + " |"
    sep = "|---|---:|" + "---:|---:|---:|" * len(counts)
    rows = [head, sep]
    for r in results:
        cells = [LABEL.get(r["server"], r["server"]), mib(r["idle"]) if "idle" in r else "n/a"]
        for n in counts:
            if n in r:
                cells += [mib(r[n]), f"{(r[n] - r['idle']) / n:.1f}", str(r[f"threads{n}"])]
            else:
                cells += ["failed", "", ""]
        rows.append("| " + " | ".join(cells) + " |")
    notes = [f"- {LABEL.get(r['server'], r['server'])}: {r['error']}" for r in results if "error" in r]
    notes += [f"- {LABEL.get(s, s)}: skipped (not installed or not built)" for s in skipped]
    doc = [
        "# RSS per idle keep-alive connection", "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; kernel {os.uname().release}; `python3 benches/rss.py`",
        "- RSS = VmRSS of the server and its child processes (nginx: master + 1 worker); idle = after one GET on a closed connection.",
        "- Each connection sent one `GET /` and read the answer, then stays open and idle.",
        "- grace gives a connection a thread only while it has a request to serve; idle keep-alive connections are parked in one epoll set (src/park/), a few hundred bytes each.",
        "- tiny_http runs a thread per connection; hyper (tokio, 1 worker), nginx and Go keep a small state per connection.",
        "", *rows, "", *notes, ""]
    os.makedirs(os.path.dirname(out), exist_ok=True)
    open(out, "w").write("\n".join(doc))
    print("\n".join(rows))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
