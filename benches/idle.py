#!/usr/bin/env python3
"""Hold N idle keep-alive connections to a server, for benches/run.sh.

    idle.py PORT N READY_FILE

Opens N connections to 127.0.0.1:PORT (at most 256 connecting at a time),
sends one `GET /` on each and reads its whole response, so every connection
is an accepted keep-alive connection at rest (not one waiting in the accept
queue, nor one TCP_DEFER_ACCEPT holds back). Then it writes
`ready=K failed=F` to READY_FILE (K connections answered) and waits for
SIGTERM, bounded by 600 s. On SIGTERM it writes `alive=A` (how many of the
K are still open: no EOF or reset from the server) to READY_FILE and exits.
"""
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time

from count_load import response_end

port, n, ready_file = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < n + 64:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 64), hard))

REQ = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
sel = selectors.DefaultSelector()
done, failed = [], 0
started, deadline = 0, time.monotonic() + 120
# Per socket: bytes received so far.
state = {}


def start_one():
    s = socket.socket()
    s.setblocking(False)
    err = s.connect_ex(("127.0.0.1", port))
    if err not in (0, errno.EINPROGRESS):
        s.close()
        return False
    state[s] = b""
    sel.register(s, selectors.EVENT_WRITE, "connect")
    return True


while (len(done) + failed < n) and time.monotonic() < deadline:
    while started < n and len(state) < 256:
        started += 1
        if not start_one():
            failed += 1
    for key, ev in sel.select(timeout=1):
        s = key.fileobj
        if key.data == "connect":
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                sel.unregister(s); s.close(); del state[s]; failed += 1
                continue
            s.send(REQ)
            sel.modify(s, selectors.EVENT_READ, "read")
            continue
        try:
            chunk = s.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            sel.unregister(s); s.close(); del state[s]; failed += 1
            continue
        state[s] += chunk
        if response_end(state[s]) is not None:
            sel.unregister(s); del state[s]; done.append(s)
failed += len(state)
with open(ready_file, "w") as f:
    f.write(f"ready={len(done)} failed={failed}\n")

stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
end = time.monotonic() + 600
while not stop and time.monotonic() < end:
    time.sleep(0.2)
alive = 0
for s in done:
    s.setblocking(False)
    try:
        alive += 0 if s.recv(1) == b"" else 1
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
with open(ready_file, "a") as f:
    f.write(f"alive={alive}\n")
