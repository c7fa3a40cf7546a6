#!/usr/bin/env python3
"""Send exactly N `GET PATH` requests over C keep-alive connections.

    count_load.py PORT N C [PATH] [TIMEOUT_S]

Each connection sends one request, reads the whole response
(Content-Length or chunked), then sends the next, until N responses came
back in all. Exits 0 when all N were 200, 1 otherwise or after TIMEOUT_S
(default 600). benches/callgrind.sh uses it for a load bounded by count,
not by time, so two servers are measured on the same requests; it and
benches/run.sh wait with `count_load.py PORT 1 1` until a server answers,
and benches/idle.py reads its responses with `response_end`.
"""
import selectors
import socket
import sys
import time


def response_end(buf):
    """Length of the first whole response in buf, or None."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    hl = len(head) + 4
    status_ok = head.split(b" ", 2)[1] == b"200"
    chunked, length = False, 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if not chunked:
        return (hl + length, status_ok) if len(rest) >= length else None
    at = 0
    while True:
        line_end = rest.find(b"\r\n", at)
        if line_end < 0:
            return None
        size = int(rest[at:line_end].split(b";")[0], 16)
        at = line_end + 2 + size + 2
        if len(rest) < at:
            return None
        if size == 0:
            return hl + at, status_ok



def main():
    port, n, c = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/"
    deadline = time.monotonic() + (float(sys.argv[5]) if len(sys.argv) > 5 else 600)
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    sent = done = bad = 0
    bufs = {}
    for _ in range(min(c, n)):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req)
        sent += 1
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)
    while done < n and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                sys.exit(f"server closed a connection after {done} responses")
            bufs[s] += data
            while True:
                end = response_end(bufs[s])
                if end is None:
                    break
                length, ok = end
                bufs[s] = bufs[s][length:]
                done += 1
                bad += 0 if ok else 1
                if sent < n:
                    s.sendall(req)
                    sent += 1
    print(f"responses={done} not_200={bad}")
    sys.exit(0 if done == n and bad == 0 else 1)


if __name__ == "__main__":
    main()
