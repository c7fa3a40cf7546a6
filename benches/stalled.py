#!/usr/bin/env python3
"""Count a server's connections that got no bytes in a window, for run.sh.

    stalled.py PORT DELAY WINDOW OUT_FILE

Sleeps DELAY seconds, reads `bytes_sent` of every established server-side
socket on 127.0.0.1:PORT from `ss -tin`, sleeps WINDOW seconds, reads again,
and writes `conns=N stalled=S cpu=C` to OUT_FILE: S connections present in both
readings whose server sent nothing in between. A server that caps its
workers (astra's default) leaves the connections beyond the cap unanswered,
and wrk reports no error for them; this counts them. Connections still in
the accept queue count as stalled too (they are established and unanswered).
C is the CPU time in seconds this sampler and its `ss` runs used, which
run.sh takes out of wrk's.
"""
import re
import resource
import subprocess
import sys
import time

port, delay, window, out = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]


def sample():
    text = subprocess.run(
        ["ss", "-Htin", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, timeout=30,
    ).stdout
    sent, peer = {}, None
    for line in text.splitlines():
        if not line.startswith((" ", "\t")):
            parts = line.split()
            peer = parts[-1] if parts else None
            sent[peer] = 0
        elif peer is not None:
            m = re.search(r"bytes_sent:(\d+)", line)
            if m:
                sent[peer] = int(m.group(1))
    return sent


time.sleep(delay)
a = sample()
time.sleep(window)
b = sample()
both = [p for p in a if p in b]
stalled = sum(1 for p in both if b[p] == a[p])
cpu = 0.0
for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
    u = resource.getrusage(who)
    cpu += u.ru_utime + u.ru_stime
with open(out, "w") as f:
    f.write(f"conns={len(both)} stalled={stalled} cpu={cpu:.3f}\n")
