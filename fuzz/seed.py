#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets: fuzz/corpus/{head,chunked,conn}/.

    python3 fuzz/seed.py

Every file in those three folders is rewritten, except files named found-*:
small inputs a fuzzing run found that add coverage, copied in by hand. The
fuzzer's own corpus stays outside the repository (see the README), and
inputs that found a bug go to fuzz/regressions/<target>/.

Input formats (see fuzz/fuzz_targets/common/):
- head:    the bytes at the start of a connection's buffer (one request,
           possibly followed by a body or more requests).
- conn:    one control byte, then what the client sends. '@' (0x40) is the
           plain mode; bits 0-1 limit reads to 1/7/100 bytes ('A', 'B', 'C'),
           bit 2 makes the peer silent instead of closing at the end ('D'),
           bit 3 reports a drain at the first idle wait ('H'), bit 4 drains
           from the start ('P').
- chunked: two control bytes (input piece sizes, output buffer size), then
           a chunked body.

The conn target's handler acts by the first byte of the path: /n does not
read the body, /p reads one byte, /s streams its answer, /2 answers 204,
/3 answers 304, /c answers with Connection: close, /d declares a
Content-Length of 42 with an empty body; anything else reads the whole body.
Limits: conn and head (small) 1 KiB heads, 16 fields, 256-byte targets,
bodies 2 KiB (conn) / 4 KiB (head, chunked), 64-byte chunk-size lines.
"""

import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

H = b"Host: x\r\n"


def get(path=b"/", extra=b"", version=b"1.1"):
    host = H if version == b"1.1" else b""
    return b"GET " + path + b" HTTP/" + version + b"\r\n" + host + extra + b"\r\n"


def post(body, path=b"/echo", extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\n" + H + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def post_te(te_lines, body, path=b"/echo"):
    """A POST with the given raw Transfer-Encoding (or other) field lines."""
    return b"POST " + path + b" HTTP/1.1\r\n" + H + te_lines + b"\r\n" + body


def chunked(body, path=b"/echo", extra=b""):
    return post_te(extra + b"Transfer-Encoding: chunked\r\n", body, path)


def with_cl(value, body=b"hello"):
    return post_te(b"Content-Length: " + value + b"\r\n", body)


GOOD_CHUNKS = (b"5;name=value\r\nhello\r\n6;a;b=\"q\"\r\n world\r\n"
               b"0\r\nX-Checksum: abc\r\nX-More: 1\r\n\r\n")

# (name, request bytes): real traffic first, then hostile input.
REQUESTS = [
    # --- real requests
    ("get-simple", get(b"/", b"User-Agent: curl/8.0\r\nAccept: */*\r\n")),
    ("get-query", get(b"/search?q=a+b&x=%20", b"Accept-Encoding: gzip, br\r\n")),
    ("get-fragment", get(b"/search?q=a#frag", b"")),
    ("get-absolute-form", get(b"http://example.com/a/b?c")),
    ("get-double-slash", get(b"//a")),
    ("get-lowercase-method", b"get / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("get-custom-method", b"PURGE /x HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("options-star", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("connect", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    ("post-content-length", post(b"hello world", extra=b"Content-Type: text/plain\r\n")),
    ("post-content-length-zero", post(b"")),
    ("post-cl-leading-zeros", with_cl(b"0005")),
    ("post-cl-whitespace", with_cl(b" 5\t")),
    ("post-cl-duplicate-same", post_te(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    ("post-body-at-limit", post(b"b" * 2048)),
    ("post-chunked-ext-trailers", chunked(GOOD_CHUNKS) + get()),
    ("post-chunked-uppercase", post_te(b"Transfer-Encoding: CHUNKED\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("post-chunked-at-limit", chunked(b"800\r\n" + b"c" * 2048 + b"\r\n0\r\n\r\n")),
    ("post-chunked-many-small", chunked(b"1\r\na\r\n" * 40 + b"0\r\n\r\n")),
    ("pipelined-three", get(b"/first") + post(b"abc") + get(b"/third")),
    ("pipelined-minimal", b"A / HTTP/1.1\nHost:\n\n" * 4),
    ("http10-keep-alive", get(b"/", b"Connection: keep-alive\r\n", b"1.0")
     + get(b"/two", b"Connection: Keep-Alive\r\n", b"1.0") + get(b"/three", b"", b"1.0")),
    ("http10-close", get(b"/", b"", b"1.0") + get(b"/never", b"", b"1.0")),
    ("http10-post", b"POST /echo HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"),
    ("expect-100-content-length", post(b"hello", extra=b"Expect: 100-continue\r\n") + get()),
    ("expect-100-chunked", chunked(b"5\r\nhello\r\n0\r\n\r\n", extra=b"Expect: 100-Continue\r\n") + get()),
    ("expect-100-not-read", post(b"hello", b"/n", b"Expect: 100-continue\r\n") + get()),
    ("expect-100-http10", b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"),
    ("expect-100-no-body", get(b"/", b"Expect: 100-continue\r\n") + get()),
    ("head", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get()),
    ("head-declared-length", b"HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n" + get(b"/d")),
    ("head-stream", b"HEAD /s HTTP/1.1\r\nHost: x\r\n\r\nHEAD /s HTTP/1.0\r\n\r\n"),
    ("head-with-body-error", b"HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("stream-http11", get(b"/s") + get()),
    ("stream-http10", get(b"/s", b"Connection: keep-alive\r\n", b"1.0") + get()),
    ("status-204-304", get(b"/204") + get(b"/304") + get()),
    ("handler-connection-close", get(b"/c") + get()),
    ("request-connection-close", get(b"/", b"Connection: foo, CLOSE\r\n") + get()),
    ("unread-body-discarded", post(b"GET /nope xx", b"/n") + get()),
    ("unread-body-over-discard-limit", post(b"d" * 1000, b"/n") + get()),
    ("unread-chunked-discarded", chunked(b"3\r\nabc\r\n0\r\n\r\n", b"/n") + get()),
    ("partly-read-body", post(b"0123456789", b"/p") + get()),
    ("bare-lf-head", b"GET / HTTP/1.1\nHost: x\n\n" + get()),
    ("leading-empty-lines", b"\r\n\r\n" + get()),
    ("obs-text-value", get(b"/", b"X-Name: caf\xc3\xa9 \x80\xff\r\n")),
    ("empty-host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n"),
    # --- smuggling: Content-Length and Transfer-Encoding
    ("cl-te", post_te(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-cl", post_te(b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
                      b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n")),
    ("cl-te-smuggled-request", post_te(b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n",
                                       b"0\r\n\r\nSMUGGLED")),
    ("cl-differing", post_te(b"Content-Length: 3\r\nContent-Length: 5\r\n", b"hello")),
    ("cl-list", with_cl(b"5, 5")),
    ("cl-plus", with_cl(b"+5")),
    ("cl-minus", with_cl(b"-1")),
    ("cl-hex", with_cl(b"0x5")),
    ("cl-inner-space", with_cl(b"5 5")),
    ("cl-empty", with_cl(b"")),
    ("cl-letters", with_cl(b"abc")),
    ("cl-huge", with_cl(b"99999999999999999999999999")),
    ("cl-u64-max", with_cl(b"18446744073709551615")),
    ("cl-u64-max-plus-one", with_cl(b"18446744073709551616")),
    ("cl-over-limit", post(b"x" * 2049)),
    ("cl-short-body", with_cl(b"50", b"only a few bytes")),
    ("te-xchunked", post_te(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n")),
    ("te-space-before-colon", post_te(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n")),
    ("te-leading-space-value", post_te(b"Transfer-Encoding:  chunked\r\n", b"0\r\n\r\n")),
    ("te-leading-tab-value", post_te(b"Transfer-Encoding:\tchunked\r\n", b"0\r\n\r\n")),
    ("te-trailing-tab", post_te(b"Transfer-Encoding: chunked\t\r\n", b"0\r\n\r\n")),
    ("te-obs-fold", post_te(b"X-A: b\r\n Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-leading-space-name", post_te(b" Transfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-vertical-tab", post_te(b"Transfer-Encoding:\x0bchunked\r\n", b"0\r\n\r\n")),
    ("te-underscore", post_te(b"Transfer_Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-gzip-chunked", post_te(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n")),
    ("te-chunked-gzip", post_te(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n")),
    ("te-chunked-twice", post_te(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n")),
    ("te-two-fields", post_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-two-fields-gzip", post_te(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n")),
    ("te-trailing-comma", post_te(b"Transfer-Encoding: chunked,\r\n", b"0\r\n\r\n")),
    ("te-leading-comma", post_te(b"Transfer-Encoding: ,chunked\r\n", b"0\r\n\r\n")),
    ("te-empty", post_te(b"Transfer-Encoding: \r\n", b"0\r\n\r\n")),
    ("te-identity", post_te(b"Transfer-Encoding: identity\r\n", b"hello")),
    ("te-params", post_te(b"Transfer-Encoding: chunked;q=1\r\n", b"0\r\n\r\n")),
    ("te-http10", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te-in-trailer", chunked(b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n"
                              b"Content-Length: 5\r\n\r\n") + get()),
    # --- chunked bodies
    ("chunk-empty-size-line", chunked(b"\r\nhello\r\n0\r\n\r\n")),
    ("chunk-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n")),
    ("chunk-size-space", chunked(b"5 \r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-bws-ext", chunked(b"5 ;a=b\r\nhello\r\n0\r\n\r\n") + get()),
    ("chunk-size-17-digits", chunked(b"00000000000000005\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-16-digits", chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n") + get()),
    ("chunk-size-max", chunked(b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-negative", chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    ("chunk-ext-too-long", chunked(b"5;" + b"e" * 100 + b"\r\nhello\r\n0\r\n\r\n")),
    ("chunk-ext-control-byte", chunked(b"5;a\x01b\r\nhello\r\n0\r\n\r\n")),
    ("chunk-data-no-crlf", chunked(b"5\r\nhelloX\r\n0\r\n\r\n")),
    ("chunk-bare-lf-trailer", chunked(b"5\r\nhello\r\n0\r\nX: 1\n\r\n")),
    ("chunk-bare-lf-end", chunked(b"5\r\nhello\r\n0\r\n\n")),
    ("chunk-trailers-too-large", chunked(b"0\r\n" + b"X-T: yyyyyyyyyy\r\n" * 80 + b"\r\n")),
    ("chunk-trailer-line-too-long", chunked(b"0\r\nX: " + b"y" * 1100 + b"\r\n\r\n")),
    ("chunk-missing-last", chunked(b"5\r\nhello\r\n")),
    ("chunk-over-limit", chunked(b"801\r\n" + b"c" * 2049 + b"\r\n0\r\n\r\n")),
    ("chunk-sum-over-limit", chunked(b"400\r\n" + b"c" * 1024 + b"\r\n401\r\n" + b"c" * 1025
                                     + b"\r\n0\r\n\r\n")),
    # --- limits
    ("long-target", get(b"/" + b"a" * 300)),
    ("long-target-unfinished", b"GET /" + b"a" * 2000),
    ("long-request-line-no-space", b"G" * 1500),
    ("long-header", get(b"/", b"X-Big: " + b"b" * 2000 + b"\r\n")),
    ("long-header-unfinished", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 2000),
    ("many-headers", get(b"/", b"X-A: b\r\n" * 20)),
    ("very-many-headers", get(b"/", b"X-A: b\r\n" * 130)),
    ("headers-at-limit", get(b"/", b"X-A: b\r\n" * 15)),
    # --- malformed heads
    ("missing-host", b"GET / HTTP/1.1\r\n\r\n" + get()),
    ("two-hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
    ("http10-two-hosts", b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("http2", b"GET / HTTP/2.0\r\nHost: x\r\n\r\n"),
    ("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("http12", b"GET / HTTP/1.2\r\nHost: x\r\n\r\n"),
    ("http-two-digit-major", b"GET / HTTP/12.0\r\nHost: x\r\n\r\n"),
    ("http-no-minor", b"GET / HTTP/1\r\nHost: x\r\n\r\n"),
    ("http-lowercase", b"GET / http/1.1\r\nHost: x\r\n\r\n"),
    ("http-version-suffix", b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n"),
    ("no-version", b"GET /\r\n\r\n"),
    ("double-space", b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n"),
    ("garbage-line", b"\x16\x03\x01 hello there\r\n\r\n"),
    ("get-star", b"GET * HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("connect-origin-form", b"CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("target-no-slash", get(b"foo")),
    ("target-authority-outside-connect", get(b"a.b:443")),
    ("obs-fold", get(b"/", b"X-A: b\r\n c\r\n")),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("empty-header-name", get(b"/", b": x\r\n")),
    ("bad-header-name", get(b"/", b"X(y): z\r\n")),
    ("nul-in-value", get(b"/", b"X-A: a\x00b\r\n")),
    ("nul-in-method", b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("control-in-value", get(b"/", b"X-A: a\x01b\x7f\r\n")),
    ("bare-cr", b"GET / HTTP/1.1\rHost: x\r\r"),
    ("expect-bogus", post(b"x", extra=b"Expect: bogus\r\n")),
    ("expect-bogus-http10", b"GET / HTTP/1.0\r\nExpect: 102-processing\r\n\r\n"),
    ("error-then-more", b"GET / HTTP/1.1\r\n\r\n" + get() + get()),
]

# Mode variants of some requests for the conn target: (name, mode, bytes).
BY_NAME = dict(REQUESTS)
CONN_MODES = [
    ("dribble-get", "A", BY_NAME["get-simple"]),
    ("dribble-pipelined", "A", BY_NAME["pipelined-three"]),
    ("dribble-chunked", "A", BY_NAME["post-chunked-ext-trailers"]),
    ("dribble-expect-100", "A", BY_NAME["expect-100-chunked"]),
    ("reads-of-7-pipelined", "B", BY_NAME["pipelined-three"] + BY_NAME["http10-keep-alive"]),
    ("reads-of-7-chunked-at-limit", "B", BY_NAME["post-chunked-at-limit"]),
    ("reads-of-100-discard", "C", BY_NAME["unread-body-discarded"]),
    ("reads-of-100-trailer-too-long", "C", BY_NAME["chunk-trailer-line-too-long"]),
    ("silent-after-partial-head", "D", b"GET / HTTP/1.1\r\nHost: x\r\n"),
    ("silent-after-partial-body", "D", with_cl(b"10", b"abc")),
    ("silent-after-partial-chunk", "D", chunked(b"5\r\nhel")),
    ("silent-when-idle", "D", get() + get()),
    ("silent-dribble-head", "E", b"GET / HTTP/1.1\r\nHost: x\r\n"),
    ("drain-at-first-wait", "H", get() + get()),
    ("drain-at-first-wait-empty", "H", b""),
    ("drain-silent", "L", b""),
    ("draining", "P", BY_NAME["pipelined-three"]),
    ("draining-http10-keep-alive", "P", BY_NAME["http10-keep-alive"]),
]

# Chunked bodies for the chunked target (decoder limits: 4 KiB body,
# 64-byte size lines, 512 bytes of trailers).
CHUNKED = [
    ("simple", b"5\r\nhello\r\n0\r\n\r\n"),
    ("ext-and-trailers", GOOD_CHUNKS),
    ("empty-body", b"0\r\n\r\n"),
    ("uppercase-hex", b"A\r\n0123456789\r\n0\r\n\r\n"),
    ("bws-before-ext", b"5 \t;a=b\r\nhello\r\n0\r\n\r\n"),
    ("quoted-ext", b"5;a=\"x;y\"\r\nhello\r\n0\r\n\r\n"),
    ("16-digit-size", b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("17-digit-size", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("max-size", b"ffffffffffffffff\r\n"),
    ("at-body-limit", b"1000\r\n" + b"a" * 4096 + b"\r\n0\r\n\r\n"),
    ("over-body-limit", b"1001\r\n" + b"a" * 8 + b"\r\n"),
    ("sum-over-body-limit", b"800\r\n" + b"a" * 2048 + b"\r\n801\r\n"),
    ("line-at-limit", b"1;" + b"a" * 62 + b"\r\nx\r\n0\r\n\r\n"),
    ("line-over-limit", b"1;" + b"a" * 63 + b"\r\nx\r\n0\r\n\r\n"),
    ("line-over-limit-unfinished", b"1;" + b"a" * 100),
    ("trailers-at-limit", b"0\r\n" + b"X-T: " + b"t" * 503 + b"\r\n\r\n"),
    ("trailers-over-limit", b"0\r\n" + b"X-T: " + b"t" * 504 + b"\r\n\r\n"),
    ("trailers-unfinished-over-limit", b"0\r\nX-T: " + b"t" * 600),
    ("many-chunks", b"1\r\na\r\n" * 50 + b"0\r\n\r\n"),
    ("bytes-after-end", b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("te-in-trailer", b"0\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
    ("needs-more-after-size", b"5\r\nhel"),
    ("needs-more-after-data", b"5\r\nhello\r"),
    ("needs-more-in-trailers", b"0\r\nX: 1\r\n"),
    ("empty-size-line", b"\r\nhello\r\n0\r\n\r\n"),
    ("bare-lf-size", b"5\nhello\r\n0\r\n\r\n"),
    ("size-then-space", b"5 \r\nhello\r\n0\r\n\r\n"),
    ("data-not-crlf", b"5\r\nhelloX\r\n0\r\n\r\n"),
    ("data-then-bare-lf", b"5\r\nhello\n0\r\n\r\n"),
    ("bare-lf-trailer", b"5\r\nhello\r\n0\r\nX: 1\n\r\n"),
    ("bare-lf-end", b"5\r\nhello\r\n0\r\n\n"),
    ("nul-in-trailer", b"0\r\nX: a\x00b\r\n\r\n"),
    ("cr-in-trailer", b"0\r\nX: a\rb\r\n\r\n"),
    ("ext-control-byte", b"5;a\x01\r\nhello\r\n0\r\n\r\n"),
    ("ext-del", b"5;a\x7f\r\nhello\r\n0\r\n\r\n"),
    ("negative", b"-5\r\n"),
    ("plus", b"+5\r\n"),
    ("hex-prefix", b"0x5\r\n"),
    ("not-hex", b"g\r\n"),
    ("empty", b""),
]

# Control byte pairs: (piece-size byte, output-size byte).
CONTROLS = [b"\x00\x00", b"\x37\x05", b"\xff\xc0", b"\x1f\x3f", b"\x52\x10"]


def clean(name):
    return re.sub(r"[^a-z0-9.-]", "-", name.lower())


def write_all(target, items):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        p = os.path.join(d, f)
        if os.path.isfile(p) and not f.startswith("found-"):
            os.remove(p)
    seen = set()
    for name, data in items:
        name = clean(name)
        assert name not in seen, name
        seen.add(name)
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
    print(f"{target}: {len(items)} files, {sum(len(d) for _, d in items)} bytes")


def main():
    write_all("head", REQUESTS)
    conn = [(name, b"@" + data) for name, data in REQUESTS]
    conn += [(f"mode-{mode}-{name}", mode.encode() + data) for name, mode, data in CONN_MODES]
    write_all("conn", conn)
    chunks = []
    for i, (name, body) in enumerate(CHUNKED):
        # Two control pairs per body, rotating through CONTROLS.
        for j in (i, i + 2):
            c = CONTROLS[j % len(CONTROLS)]
            chunks.append((f"{name}-{c.hex()}", c + body))
    write_all("chunked", chunks)


if __name__ == "__main__":
    main()
