#!/usr/bin/env python3
"""The reference side of tests/differential.rs: parses request heads with h11.

    python3 tests/h11_reference.py [FILE]

Input (FILE, or stdin without one): a JSON list of base64 strings, each the
bytes a server finds at the start of a connection (a request head, possibly
followed by more bytes).

Output (stdout): one JSON object

    {"h11_version": "0.16.0", "results": [RESULT, ...]}

with one RESULT per input, in order. Byte strings (method, target, header
names and values, error text) are given as JSON strings decoded as latin-1,
so every byte 0x00-0xFF maps to the code point of the same number: lossless
and still readable. A RESULT is one of

    {"accepted": true, "consumed": N, "method": "GET", "target": "/a?b",
     "http_version": "1.1", "headers": [["host", "x"], ...],
     "framing": {"kind": "none" | "chunked"}
              | {"kind": "length", "length": N}}
    {"accepted": false, "need_data": false, "error": "..."}

"consumed" is how many bytes of the input the head took (the rest is left
in h11's buffer as body or next request); "headers" are h11's list of
(lowercased name, value), in order, as h11 gives them (values stripped of
OWS; h11 also drops a repeated identical Content-Length field and lowercases
Transfer-Encoding values). "need_data" means h11 wanted more bytes (no
complete head).

Framing. h11 does not expose the framing it chose for a request body as
public API: it lives in Connection._reader, built by
h11._connection._body_framing. So it is derived twice, and the two must
agree (else the script exits with an error rather than report a framing it
is not sure of):

1. By h11's rule (RFC 9112 6.3, as _body_framing applies it to a Request),
   on the headers of the h11.Request event, which h11 has already
   validated and normalized (at most one Transfer-Encoding field, whose
   value is exactly "chunked"; at most one Content-Length field, one run of
   digits): Transfer-Encoding present -> chunked; else Content-Length N ->
   length N (N = 0 is "none", as for grace); else none.
2. By behaviour, through public API only: a fresh h11.Connection is fed the
   head alone, then next_event() is asked for the body. "none" must end the
   message at once (EndOfMessage); "chunked" must wait (NEED_DATA) and end
   on a last chunk "0\r\n\r\n" with no Data; "length N" must wait and
   then give exactly N bytes of Data and EndOfMessage when fed N bytes (for
   N up to 64 KiB; a larger N is fed 64 KiB and must still be waiting).

Exit status: 0 on success; 3 if h11 cannot be imported (the caller decides
whether that is a failure); 2 on bad input or a reference self-check failure.
"""

import base64
import json
import sys

EXIT_NO_H11 = 3
PROBE_MAX = 64 * 1024

try:
    import h11
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"h11_reference.py: cannot import h11 ({e}); pip install h11", file=sys.stderr)
    sys.exit(EXIT_NO_H11)


class SelfCheckError(Exception):
    """The two ways of reading h11's framing disagree, or h11 did something
    this script does not expect: its result would not be trustworthy."""


def text(b):
    """Bytes as a lossless JSON string (latin-1: byte n is code point n)."""
    return bytes(b).decode("latin-1")


def framing_by_rule(headers):
    """h11's framing rule for a request, on the normalized headers."""
    te = [v for n, v in headers if n == b"transfer-encoding"]
    cl = [v for n, v in headers if n == b"content-length"]
    if te:
        if te != [b"chunked"]:
            raise SelfCheckError(f"unexpected normalized Transfer-Encoding {te!r}")
        return ("chunked", None)
    if cl:
        if len(cl) != 1 or not cl[0].isdigit():
            raise SelfCheckError(f"unexpected normalized Content-Length {cl!r}")
        n = int(cl[0])
        return ("length", n) if n > 0 else ("none", None)
    return ("none", None)


def probe_framing(head):
    """The framing h11 acts on, seen through public API only."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    ev = conn.next_event()
    if type(ev) is not h11.Request:
        raise SelfCheckError(f"head alone gave {ev!r}")
    first = conn.next_event()
    if type(first) is h11.EndOfMessage:
        return ("none", None)
    if first is not h11.NEED_DATA:
        raise SelfCheckError(f"first body event {first!r}")
    # Waiting for a body: chunked or length. A last chunk tells them apart:
    # the chunked reader ends the message without Data; a length reader
    # hands the bytes over as Data.
    conn.receive_data(b"0\r\n\r\n")
    ev = conn.next_event()
    if type(ev) is h11.EndOfMessage:
        return ("chunked", None)
    if type(ev) is not h11.Data:
        raise SelfCheckError(f"body event {ev!r}")
    return ("length", None)  # the length itself is checked in check_length


def check_length(head, n):
    """A fresh connection with Content-Length n takes exactly n bytes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    if type(conn.next_event()) is not h11.Request:
        raise SelfCheckError("head alone is not a Request")
    feed = min(n, PROBE_MAX)
    conn.receive_data(b"x" * feed)
    got = 0
    while True:
        ev = conn.next_event()
        if type(ev) is h11.Data:
            got += len(ev.data)
        elif type(ev) is h11.EndOfMessage:
            if n > PROBE_MAX or got != n:
                raise SelfCheckError(f"length {n}: message ended after {got} bytes")
            return
        elif ev is h11.NEED_DATA:
            if n <= PROBE_MAX or got != feed:
                raise SelfCheckError(f"length {n}: waiting after {got} bytes")
            return
        else:
            raise SelfCheckError(f"length {n}: event {ev!r}")


def parse(data):
    conn = h11.Connection(h11.SERVER)
    if data:  # receive_data(b"") would mean end of stream
        conn.receive_data(data)
    try:
        ev = conn.next_event()
    except h11.RemoteProtocolError as e:
        return {"accepted": False, "need_data": False, "error": str(e)}
    if ev is h11.NEED_DATA:
        return {"accepted": False, "need_data": True, "error": "need more data"}
    if type(ev) is not h11.Request:
        raise SelfCheckError(f"first event {ev!r}")
    consumed = len(data) - len(conn.trailing_data[0])
    head = data[:consumed]
    headers = list(ev.headers)
    kind, n = framing_by_rule(headers)
    probed, _ = probe_framing(head)
    if probed != kind:
        raise SelfCheckError(f"framing by rule {kind}, by behaviour {probed}")
    framing = {"kind": kind}
    if kind == "length":
        check_length(head, n)
        framing["length"] = n
    return {
        "accepted": True,
        "consumed": consumed,
        "method": text(ev.method),
        "target": text(ev.target),
        "http_version": text(ev.http_version),
        "headers": [[text(name), text(value)] for name, value in headers],
        "framing": framing,
    }


def main():
    if len(sys.argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    if len(sys.argv) == 2:
        with open(sys.argv[1], "rb") as f:
            raw = f.read()
    else:
        raw = sys.stdin.buffer.read()
    try:
        inputs = [base64.b64decode(s, validate=True) for s in json.loads(raw)]
    except (ValueError, TypeError) as e:
        print(f"h11_reference.py: bad input: {e}", file=sys.stderr)
        return 2
    results = []
    for i, data in enumerate(inputs):
        try:
            results.append(parse(data))
        except SelfCheckError as e:
            print(f"h11_reference.py: input {i} {data[:200]!r}: {e}", file=sys.stderr)
            return 2
    json.dump({"h11_version": h11.__version__, "results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
