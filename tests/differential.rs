//! Differential check of `parse_head` against a strict reference parser,
//! Python's h11 (see DESIGN.md, "Differential check against h11").
//!
//! Every request head grace accepts, h11 must accept too, and the two must
//! agree on where the head ends, the method, the request-target, the
//! version, the header fields and the body framing. Heads grace rejects but
//! h11 accepts are fine (grace may be stricter): they are counted and
//! summarized, not failed.
//!
//! The heads: the start of every file of `fuzz/corpus/head/` and
//! `fuzz/corpus/conn/` (after the conn target's control byte) up to and
//! including its first CRLF CRLF, plus a few hundred generated variants of
//! valid requests. All go to `tests/h11_reference.py` in one python3 run.
//!
//! Without h11 (or python3) the test prints `SKIPPED: pip install h11` and
//! passes, unless `GRACE_REQUIRE_H11=1` (as in CI), where it fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use grace::http1::{parse_head, Framing, Head, HttpConfig, HttpError};
use http::Version;

/// `tests/h11_reference.py` exits with this when h11 cannot be imported.
const EXIT_NO_H11: i32 = 3;

// ---------------------------------------------------------------------------
// Known differences: grace accepts, h11 rejects, and grace is right.
// ---------------------------------------------------------------------------

/// A head grace accepts and h11 rejects on purpose: `applies` gets the head
/// (as grace saw it) and h11's error message.
struct Known {
    name: &'static str,
    applies: fn(&[u8], &str) -> bool,
}

/// Every deliberate difference, with why grace is right.
///
/// Not in this list, but also deliberate: empty lines before the request
/// line. RFC 9112 2.2 says a server SHOULD ignore at least one; httparse
/// (so grace) skips any number, h11 rejects the head ("no request line
/// received"). The reference is given the head without those lines (see
/// `leading_empty_lines`) so the rest of it is still compared.
const KNOWN: &[Known] = &[
    // RFC 9110 8.6: Content-Length = 1*DIGIT, no bound on the number of
    // digits. h11 caps it at 20 digits (CONTENT_LENGTH_MAX_DIGITS, a DoS
    // guard of its own), so "000000000000000000005" (21 digits, value 5) is
    // "bad Content-Length" there. grace reads any number of digits and
    // rejects only a value that overflows u64 (or is over its body limit).
    Known {
        name: "Content-Length of more than 20 digits (h11's own cap)",
        applies: |head, err| {
            err.contains("bad Content-Length")
                && field_values(head, b"content-length")
                    .iter()
                    .any(|v| trim(v).len() > 20)
        },
    },
    // RFC 9110 8.6: a Content-Length "consisting of the same decimal value
    // repeated" MAY be taken as that one value (RFC 9112 6.3 makes only
    // differing values invalid framing). grace compares the values as
    // numbers, so "05" and "5" are the same length; h11 compares the bytes
    // and calls them "conflicting Content-Length headers". Either is
    // allowed, and the length grace reads is the only one both spellings
    // can mean.
    Known {
        name: "repeated Content-Length, same value spelled differently",
        applies: |head, err| {
            let values = field_values(head, b"content-length");
            err.contains("conflicting Content-Length")
                && values.len() > 1
                && values.iter().any(|v| trim(v) != trim(&values[0]))
        },
    },
];

// ---------------------------------------------------------------------------
// Collecting the heads.
// ---------------------------------------------------------------------------

/// One request head to compare: where it came from, and its bytes.
struct Case {
    label: String,
    bytes: Vec<u8>,
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// The bytes up to and including the first CRLF CRLF, if any.
fn up_to_blank_line(data: &[u8]) -> Option<&[u8]> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(&data[..end + 4])
}

/// Heads from the fuzz corpora. `head/` files are the raw bytes a
/// connection starts with; `conn/` files start with one control byte (the
/// transport mode, see `fuzz/seed.py`), then the bytes the client sends.
fn corpus_cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut out = Vec::new();
    for (target, skip) in [("head", 0), ("conn", 1)] {
        let files = corpus_files(&root.join(target));
        assert!(
            files.len() >= 24,
            "only {} files in fuzz/corpus/{target}",
            files.len()
        );
        for path in files {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let Some(client) = data.get(skip..) else {
                continue;
            };
            if let Some(head) = up_to_blank_line(client) {
                let name = path.file_name().unwrap().to_string_lossy();
                out.push(Case {
                    label: format!("corpus {target}/{name}"),
                    bytes: head.to_vec(),
                });
            }
        }
    }
    out
}

/// Generated heads: valid requests and mutations of them.
struct Gen(Vec<Case>);

impl Gen {
    fn add(&mut self, label: impl Into<String>, bytes: impl AsRef<[u8]>) {
        self.0.push(Case {
            label: format!("generated {}", label.into()),
            bytes: bytes.as_ref().to_vec(),
        });
    }
}

/// `line` CRLF, then every field CRLF, then CRLF.
fn req(line: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut v = line.to_vec();
    v.extend_from_slice(b"\r\n");
    for f in fields {
        v.extend_from_slice(f);
        v.extend_from_slice(b"\r\n");
    }
    v.extend_from_slice(b"\r\n");
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

const HOST: &[u8] = b"Host: example.com";

fn generated_cases() -> Vec<Case> {
    let mut g = Gen(Vec::new());

    // Methods.
    for m in [
        &b"GET"[..],
        b"HEAD",
        b"POST",
        b"PUT",
        b"DELETE",
        b"OPTIONS",
        b"PATCH",
        b"TRACE",
        b"get",
        b"PURGE",
        b"M-SEARCH",
        b"X!#$%&'*+.^_`|~1",
        b"G(T",
        b"G\"T",
        b"G:T",
        b"GE\x7fT",
        b"G\xc3\x89T",
        b"G@T",
        b"",
    ] {
        g.add(
            format!("method {}", show(m)),
            req(&cat(&[m, b" / HTTP/1.1"]), &[HOST]),
        );
    }

    // Request-targets.
    let long_ok = format!("/{}", "a".repeat(8191));
    let long_bad = format!("/{}", "a".repeat(8192));
    let get_targets: Vec<&[u8]> = vec![
        b"/",
        b"/a/b?c=d&e",
        b"/a?",
        b"/?",
        b"/a#f",
        b"/a?b#c",
        b"/#",
        b"//a",
        b"//a/b",
        b"/a//b/../c",
        b"/%41%zz",
        b"/~!$&'()*+,;=:@",
        b"/[]",
        b"/{}",
        b"/a|b",
        b"/a\\b",
        b"/a^b",
        b"/a`b",
        b"/\"x\"",
        b"/<>",
        b"/a\x7f",
        b"/a\x80",
        b"/a\xff",
        b"/a\tb",
        b"*",
        b"http://example.com",
        b"http://example.com/",
        b"http://example.com:8080/a?b",
        b"http://example.com?x",
        b"http://example.com/a#f",
        b"http://EXAMPLE.com/",
        b"http://a@example.com/",
        b"HTTP://Example.COM/a",
        b"https://user:pw@example.com/",
        b"ftp://example.com/a",
        b"http://[::1]:80/",
        b"http:/a",
        b"http://",
        b"http://a b/",
        b"example.com:443",
        b"example.com",
        b"a:b",
        b"?a",
        b"#a",
        long_ok.as_bytes(),
        long_bad.as_bytes(),
    ];
    for t in get_targets {
        let label = format!("target {}", show(&t[..t.len().min(40)]));
        g.add(label, req(&cat(&[b"GET ", t, b" HTTP/1.1"]), &[HOST]));
    }
    for t in [
        &b"example.com:443"[..],
        b"example.com",
        b"[::1]:443",
        b"/",
        b"*",
        b"http://example.com:443",
        b"a:b:c",
        b"example.com:443/x",
        b"user@example.com:443",
    ] {
        g.add(
            format!("CONNECT {}", show(t)),
            req(&cat(&[b"CONNECT ", t, b" HTTP/1.1"]), &[HOST]),
        );
    }
    for t in [&b"*"[..], b"/", b"http://example.com", b"*/a"] {
        g.add(
            format!("OPTIONS {}", show(t)),
            req(&cat(&[b"OPTIONS ", t, b" HTTP/1.1"]), &[HOST]),
        );
    }

    // Versions, with and without Host.
    for v in [
        &b"HTTP/1.1"[..],
        b"HTTP/1.0",
        b"HTTP/1.2",
        b"HTTP/1.9",
        b"HTTP/2.0",
        b"HTTP/0.9",
        b"HTTP/3.0",
        b"HTTP/1",
        b"HTTP/1.1.1",
        b"HTTP/11",
        b"HTTP/1.01",
        b"HTTP/10.0",
        b"http/1.1",
        b"HTTP/ 1.1",
        b"HTTPS/1.1",
        b"HTTP/1.x",
        b"HTTP/1.1 ",
        b"",
    ] {
        let line = cat(&[b"GET / ", v]);
        g.add(
            format!("version {} with Host", show(v)),
            req(&line, &[HOST]),
        );
        g.add(format!("version {} without Host", show(v)), req(&line, &[]));
    }

    // Request-line whitespace.
    for line in [
        &b"GET  / HTTP/1.1"[..],
        b"GET /  HTTP/1.1",
        b" GET / HTTP/1.1",
        b"GET\t/\tHTTP/1.1",
        b"GET / HTTP/1.1\t",
        b"GET /\x0bHTTP/1.1",
        b"GET / HTTP/1.1\r",
        b"GET /",
        b"GET",
        b"GET / HTTP/1.1 extra",
        b"GET /a b HTTP/1.1",
    ] {
        g.add(format!("request line {}", show(line)), req(line, &[HOST]));
    }

    // Field names: odd bytes, with a plain value.
    for name in [
        &b"X-A"[..],
        b"x_a",
        b"X.A",
        b"X!#$%&'*+-.^_`|~A",
        b"X A",
        b"X\tA",
        b"X(A",
        b"X\"A",
        b"X@A",
        b"X/A",
        b"X[A]",
        b"X{A}",
        b"X=A",
        b"X?A",
        b"X,A",
        b"X;A",
        b"X\\A",
        b"X\x7fA",
        b"X\x80A",
        b"X\xc3\xa9",
        b"X\x00A",
        b"X\x01A",
        b":authority",
        b"",
        b" X-A",
        b"\tX-A",
        b"X-A ",
        b"X-A\t",
    ] {
        let field = cat(&[name, b": v"]);
        let label = format!("field name {}", show(name));
        g.add(label.clone(), req(b"GET / HTTP/1.1", &[HOST, &field]));
        g.add(
            format!("{label}, first field, HTTP/1.0"),
            req(b"GET / HTTP/1.0", &[&field]),
        );
    }

    // Field values: odd bytes and whitespace.
    let long_value = cat(&[b"X-Long: ", "v".repeat(16 * 1024 - 60).as_bytes()]);
    let too_long_value = cat(&[b"X-Long: ", "v".repeat(16 * 1024).as_bytes()]);
    for value in [
        &b""[..],
        b" ",
        b"\t",
        b"a",
        b"a b",
        b"a\tb",
        b"a  \t b",
        b"\ta\t",
        b"   a   ",
        b"a\x01b",
        b"a\x08b",
        b"a\x1fb",
        b"a\x7fb",
        b"a\x80\xffb",
        b"caf\xc3\xa9",
        b"\xff",
        b"a\x0bb",
        b"a\x0cb",
        b"a\rb",
        b"a\r",
        b"a\x00b",
        b"\"quoted, with comma\"",
        b"a,b,,c",
        b"a:b",
        b"() <> @ , ; : \\ \" / [ ] ? = { }",
    ] {
        let field = cat(&[b"X-V:", b" ", value]);
        let bare = cat(&[b"X-V:", value]);
        let label = format!("field value {}", show(value));
        g.add(label.clone(), req(b"GET / HTTP/1.1", &[HOST, &field]));
        g.add(
            format!("{label}, no space"),
            req(b"GET / HTTP/1.1", &[HOST, &bare]),
        );
        g.add(
            format!("{label}, POST with a length"),
            req(b"POST /p HTTP/1.1", &[HOST, &field, b"Content-Length: 3"]),
        );
    }
    g.add(
        "value just under the head limit",
        req(b"GET / HTTP/1.1", &[HOST, &long_value]),
    );
    g.add(
        "value over the head limit",
        req(b"GET / HTTP/1.1", &[HOST, &too_long_value]),
    );

    // Field line syntax, obs-fold.
    for fields in [
        &[&b"X-A:v"[..]][..],
        &[b"X-A:\tv"],
        &[b"X-A :v"],
        &[b"X-A\t: v"],
        &[b"X-A"],
        &[b"X-A v"],
        &[b":v"],
        &[b"X-A:: v"],
        &[b"X-A: v: w"],
        &[b"X-A: v", b" w"],
        &[b"X-A: v", b"\tw"],
        &[b"X-A:", b" w"],
        &[b"X-A: v", b"   "],
        &[b"X-A: v", b"\t"],
        &[b"X-A: v", b" Transfer-Encoding: chunked"],
        &[b"   ", b"X-A: v"],
    ] {
        let label = format!("field lines {}", show(&fields.concat()));
        let mut all: Vec<&[u8]> = vec![HOST];
        all.extend_from_slice(fields);
        g.add(label, req(b"GET / HTTP/1.1", &all));
    }
    g.add(
        "obs-fold of Host",
        req(b"GET / HTTP/1.1", &[HOST, b" more"]),
    );

    // Repeated fields and field order across names.
    g.add(
        "X-A twice",
        req(b"GET / HTTP/1.1", &[HOST, b"X-A: 1", b"X-A: 2"]),
    );
    g.add(
        "X-A, X-B, X-A",
        req(b"GET / HTTP/1.1", &[b"X-A: 1", HOST, b"X-B: 2", b"x-a: 3"]),
    );
    g.add(
        "same name, three spellings",
        req(b"GET / HTTP/1.1", &[HOST, b"x-a: 1", b"X-A: 2", b"X-a: 3"]),
    );
    g.add(
        "Cookie twice",
        req(b"GET / HTTP/1.1", &[HOST, b"Cookie: a=1", b"Cookie: b=2"]),
    );
    let many: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("X-F{i}: {i}").into_bytes())
        .collect();
    for n in [98usize, 99, 100] {
        let mut fields: Vec<&[u8]> = vec![HOST];
        fields.extend(many[..n].iter().map(Vec::as_slice));
        g.add(
            format!("Host and {n} more fields"),
            req(b"GET / HTTP/1.1", &fields),
        );
    }

    // Host.
    for (label, line, fields) in [
        ("no Host, HTTP/1.1", &b"GET / HTTP/1.1"[..], &[][..]),
        ("no Host, HTTP/1.0", b"GET / HTTP/1.0", &[]),
        ("empty Host", b"GET / HTTP/1.1", &[&b"Host:"[..]]),
        ("Host of spaces", b"GET / HTTP/1.1", &[b"Host:   "]),
        ("two Hosts", b"GET / HTTP/1.1", &[HOST, HOST]),
        ("two Hosts, HTTP/1.0", b"GET / HTTP/1.0", &[HOST, HOST]),
        ("Host with a space", b"GET / HTTP/1.1", &[b"Host: a b"]),
        (
            "Host with port",
            b"GET / HTTP/1.1",
            &[b"Host: example.com:80"],
        ),
        ("host lowercase", b"GET / HTTP/1.1", &[b"host: x"]),
        ("HOST uppercase", b"GET / HTTP/1.1", &[b"HOST: x"]),
        ("Host IPv6", b"GET / HTTP/1.1", &[b"Host: [::1]:8080"]),
        ("Host with userinfo", b"GET / HTTP/1.1", &[b"Host: a@b"]),
        ("Host last", b"GET / HTTP/1.1", &[b"Accept: */*", HOST]),
    ] {
        g.add(label, req(line, fields));
    }

    // Content-Length values, HTTP/1.1 and HTTP/1.0.
    for cl in [
        &b"0"[..],
        b"5",
        b"05",
        b"00000000000000000005",
        b"000000000000000000005",
        b"0000000000000000000000000000000",
        b"18446744073709551615",
        b"18446744073709551616",
        b"99999999999999999999",
        b"16777216",
        b"16777217",
        b" 5",
        b"5 ",
        b"\t5\t",
        b"5,5",
        b"5, 5",
        b"5,",
        b",5",
        b"5 5",
        b"+5",
        b"-5",
        b"0x5",
        b"",
        b"5a",
        b"1e3",
        b"\xd9\xa5",
    ] {
        let field = cat(&[b"Content-Length: ", cl]);
        g.add(
            format!("Content-Length {}", show(cl)),
            req(b"POST / HTTP/1.1", &[HOST, &field]),
        );
        g.add(
            format!("Content-Length {}, HTTP/1.0", show(cl)),
            req(b"POST / HTTP/1.0", &[&field]),
        );
    }
    for (a, b) in [
        (&b"5"[..], &b"5"[..]),
        (b"5", b"6"),
        (b"05", b"5"),
        (b"5", b" 5 "),
        (b"0", b"0"),
        (b"0", b"00"),
        (b"5", b""),
        (b"5", b"5, 5"),
    ] {
        let fa = cat(&[b"Content-Length: ", a]);
        let fb = cat(&[b"content-length: ", b]);
        g.add(
            format!("Content-Length {} and {}", show(a), show(b)),
            req(b"POST / HTTP/1.1", &[HOST, &fa, b"X-Between: 1", &fb]),
        );
    }

    // Transfer-Encoding values, HTTP/1.1 and HTTP/1.0.
    for te in [
        &b"chunked"[..],
        b"CHUNKED",
        b"Chunked",
        b" chunked ",
        b"\tchunked",
        b"chunked,",
        b" ,chunked",
        b",chunked",
        b"chunked, chunked",
        b"gzip, chunked",
        b"chunked, gzip",
        b"gzip",
        b"identity",
        b"",
        b"chunked;q=1",
        b"chunked ;x",
        b"\"chunked\"",
        b"chunked\x0b",
        b"x-chunked",
        b"chunk",
    ] {
        let field = cat(&[b"Transfer-Encoding: ", te]);
        g.add(
            format!("Transfer-Encoding {}", show(te)),
            req(b"POST / HTTP/1.1", &[HOST, &field]),
        );
        g.add(
            format!("Transfer-Encoding {}, HTTP/1.0", show(te)),
            req(b"POST / HTTP/1.0", &[&field]),
        );
    }
    for (label, fields) in [
        (
            "two Transfer-Encoding chunked",
            &[
                &b"Transfer-Encoding: chunked"[..],
                b"Transfer-Encoding: chunked",
            ][..],
        ),
        (
            "Transfer-Encoding gzip then chunked",
            &[b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"],
        ),
        (
            "Transfer-Encoding chunked then empty",
            &[b"Transfer-Encoding: chunked", b"Transfer-Encoding:"],
        ),
        (
            "Transfer-Encoding then Content-Length",
            &[b"Transfer-Encoding: chunked", b"Content-Length: 5"],
        ),
        (
            "Content-Length then Transfer-Encoding",
            &[b"Content-Length: 5", b"Transfer-Encoding: chunked"],
        ),
        (
            "Transfer-Encoding and Content-Length 0",
            &[b"Content-Length: 0", b"Transfer-Encoding: chunked"],
        ),
        (
            "chunked with Expect",
            &[b"Transfer-Encoding: chunked", b"Expect: 100-continue"],
        ),
        (
            "length with Expect",
            &[b"Content-Length: 5", b"Expect: 100-Continue"],
        ),
        (
            "length with an odd Expect",
            &[b"Content-Length: 5", b"Expect: 100-continue, foo"],
        ),
        ("no body, Expect", &[b"Expect: 100-continue"]),
        ("Connection close", &[b"Connection: close"]),
        ("Connection keep-alive", &[b"Connection: keep-alive"]),
        ("Upgrade", &[b"Connection: Upgrade", b"Upgrade: websocket"]),
        (
            "Upgrade with a length",
            &[
                b"Connection: upgrade",
                b"Upgrade: h2c",
                b"Content-Length: 2",
            ],
        ),
    ] {
        let mut all: Vec<&[u8]> = vec![HOST];
        all.extend_from_slice(fields);
        g.add(label, req(b"POST / HTTP/1.1", &all));
    }
    g.add(
        "CONNECT with a length",
        req(
            b"CONNECT example.com:443 HTTP/1.1",
            &[HOST, b"Content-Length: 3"],
        ),
    );
    g.add(
        "HEAD chunked",
        req(b"HEAD / HTTP/1.1", &[HOST, b"Transfer-Encoding: chunked"]),
    );

    // Line ends and empty lines.
    let crlf = req(
        b"POST /a HTTP/1.1",
        &[HOST, b"Content-Length: 2", b"X-A: b"],
    );
    let lf = String::from_utf8(crlf.clone())
        .unwrap()
        .replace("\r\n", "\n");
    g.add("all bare LF", &lf);
    g.add("bare LF, then a body", cat(&[lf.as_bytes(), b"hi"]));
    for (label, bytes) in [
        (
            "bare LF after the request line",
            &b"GET / HTTP/1.1\nHost: x\r\n\r\n"[..],
        ),
        ("head ends LF CRLF", b"GET / HTTP/1.1\r\nHost: x\n\r\n"),
        ("head ends CRLF LF", b"GET / HTTP/1.1\r\nHost: x\r\n\n"),
        (
            "CR CR LF after a field",
            b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
        ),
        (
            "CR CR LF at the end",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n",
        ),
        ("bare CR line ends", b"GET / HTTP/1.1\rHost: x\r\r\n\r\n"),
        (
            "bare CR in a field",
            b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
        ),
        ("one leading CRLF", b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "two leading CRLFs",
            b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        ("leading LF", b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "leading LF CRLF",
            b"\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        ("leading bare CR", b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "leading space line",
            b" \r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "two requests, first with bare LF",
            b"GET /1 HTTP/1.1\nHost: x\n\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        (
            "a length and a body that looks like a head",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nGET /\r\n\r\n",
        ),
    ] {
        g.add(label, bytes);
    }
    g.0
}

// ---------------------------------------------------------------------------
// Small helpers: trimming, fields of raw heads, display.
// ---------------------------------------------------------------------------

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The values of every `name: value` line of a raw head (no folding).
fn field_values(head: &[u8], name: &[u8]) -> Vec<Vec<u8>> {
    head.split(|&b| b == b'\n')
        .skip(1)
        .filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name)
                .then(|| line[colon + 1..].to_vec())
        })
        .collect()
}

/// RFC 9112 2.2 robustness: the empty lines (CRLF or LF) httparse skips
/// before the request line. Returns how many bytes they take.
fn leading_empty_lines(head: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &head[at..] {
            [b'\r', b'\n', ..] => at += 2,
            [b'\n', ..] => at += 1,
            _ => return at,
        }
    }
}

fn show(b: &[u8]) -> String {
    const MAX: usize = 160;
    let s: String = b[..b.len().min(MAX)].escape_ascii().to_string();
    if b.len() > MAX {
        format!("\"{s}\"... ({} bytes)", b.len())
    } else {
        format!("\"{s}\"")
    }
}

// ---------------------------------------------------------------------------
// The reference: base64 in, JSON out.
// ---------------------------------------------------------------------------

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Just enough JSON for the reference's output.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    /// A number, as written (a Content-Length may not fit an f64).
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            at: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.at != p.s.len() {
            return Err(format!("trailing bytes at {}", p.at));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or(&Json::Null),
            _ => &Json::Null,
        }
    }

    fn as_bool(&self) -> bool {
        matches!(self, Json::Bool(true))
    }

    fn as_str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("expected a string in the reference output, got {other:?}"),
        }
    }

    /// A string the reference wrote as latin-1: one char per byte.
    fn as_bytes(&self) -> Vec<u8> {
        self.as_str()
            .chars()
            .map(|c| u8::try_from(u32::from(c)).expect("latin-1 string from the reference"))
            .collect()
    }

    fn as_arr(&self) -> &[Json] {
        match self {
            Json::Arr(v) => v,
            other => panic!("expected an array in the reference output, got {other:?}"),
        }
    }

    fn as_num(&self) -> &str {
        match self {
            Json::Num(n) => n,
            other => panic!("expected a number in the reference output, got {other:?}"),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.at..].starts_with(lit.as_bytes()) {
            self.at += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        let Some(&c) = self.s.get(self.at) else {
            return Err("unexpected end".into());
        };
        match c {
            b'n' if self.eat("null") => Ok(Json::Null),
            b't' if self.eat("true") => Ok(Json::Bool(true)),
            b'f' if self.eat("false") => Ok(Json::Bool(false)),
            b'"' => self.string().map(Json::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    if self.eat("]") {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(",") {
                        return Err(format!("expected , or ] at {}", self.at));
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return Err(format!("expected : at {}", self.at));
                    }
                    fields.push((key, self.value()?));
                    self.ws();
                    if self.eat("}") {
                        return Ok(Json::Obj(fields));
                    }
                    if !self.eat(",") {
                        return Err(format!("expected , or }} at {}", self.at));
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let start = self.at;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.at)
                {
                    self.at += 1;
                }
                Ok(Json::Num(
                    String::from_utf8(self.s[start..self.at].to_vec()).unwrap(),
                ))
            }
            _ => Err(format!("unexpected byte {c:#x} at {}", self.at)),
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at {}", self.at))?;
        self.at += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return Err(format!("expected a string at {}", self.at));
        }
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err("unterminated escape".into());
                    };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo.wrapping_sub(0xdc00));
                            }
                            char::from_u32(cp).ok_or("bad code point")?
                        }
                        _ => return Err(format!("bad escape at {}", self.at)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

/// What the reference made of one head.
enum RefResult {
    Accepted(RefHead),
    Rejected { need_data: bool, error: String },
}

#[derive(Debug, PartialEq)]
enum RefFraming {
    None,
    Length(String),
    Chunked,
}

struct RefHead {
    consumed: usize,
    method: Vec<u8>,
    target: Vec<u8>,
    version: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    framing: RefFraming,
}

fn ref_result(j: &Json) -> RefResult {
    if !j.get("accepted").as_bool() {
        return RefResult::Rejected {
            need_data: j.get("need_data").as_bool(),
            error: j.get("error").as_str().to_string(),
        };
    }
    let framing = j.get("framing");
    let framing = match framing.get("kind").as_str() {
        "none" => RefFraming::None,
        "chunked" => RefFraming::Chunked,
        "length" => RefFraming::Length(framing.get("length").as_num().to_string()),
        other => panic!("unknown framing kind {other:?} from the reference"),
    };
    RefResult::Accepted(RefHead {
        consumed: j.get("consumed").as_num().parse().expect("consumed"),
        method: j.get("method").as_bytes(),
        target: j.get("target").as_bytes(),
        version: j.get("http_version").as_str().to_string(),
        headers: j
            .get("headers")
            .as_arr()
            .iter()
            .map(|pair| {
                let pair = pair.as_arr();
                (pair[0].as_bytes(), pair[1].as_bytes())
            })
            .collect(),
        framing,
    })
}

/// Runs `tests/h11_reference.py` once on all inputs: h11's version and
/// its results, or why it cannot run (python3 or h11 missing).
fn run_reference(inputs: &[Vec<u8>]) -> Result<(String, Vec<RefResult>), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h11_reference.py");
    let input = Path::new(env!("CARGO_TARGET_TMPDIR")).join("differential-heads.json");
    let mut json = String::from("[");
    for (i, data) in inputs.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        write!(json, "\"{}\"", base64(data)).unwrap();
    }
    json.push(']');
    fs::write(&input, json).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
    let out = match Command::new("python3").arg(&script).arg(&input).output() {
        Ok(out) => out,
        Err(e) => return Err(format!("cannot run python3: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(EXIT_NO_H11) {
        return Err(stderr.trim().to_string());
    }
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{stderr}",
        script.display(),
        input.display(),
        out.status
    );
    let text = String::from_utf8(out.stdout).expect("reference output is ASCII JSON");
    let doc = Json::parse(&text).unwrap_or_else(|e| panic!("reference output: {e}"));
    let version = doc.get("h11_version").as_str().to_string();
    let results: Vec<RefResult> = doc.get("results").as_arr().iter().map(ref_result).collect();
    assert_eq!(
        results.len(),
        inputs.len(),
        "the reference answered {} of {} heads",
        results.len(),
        inputs.len()
    );
    Ok((version, results))
}

// ---------------------------------------------------------------------------
// The comparison.
// ---------------------------------------------------------------------------

/// Field values per lowercased name, each name's values in order.
type Fields = BTreeMap<Vec<u8>, Vec<Vec<u8>>>;

fn grace_fields(h: &Head) -> Fields {
    let mut m = Fields::new();
    for (name, value) in &h.headers {
        m.entry(name.as_str().as_bytes().to_vec())
            .or_default()
            .push(trim(value.as_bytes()).to_vec());
    }
    m
}

fn ref_fields(r: &RefHead) -> Fields {
    let mut m = Fields::new();
    for (name, value) in &r.headers {
        m.entry(name.to_ascii_lowercase())
            .or_default()
            .push(trim(value).to_vec());
    }
    m
}

/// Normalizations h11 applies to its field list, applied to grace's too:
/// a repeated identical Content-Length field is kept once, and a
/// Transfer-Encoding value is lowercased (h11's `normalize_and_validate`).
fn as_h11_normalizes(mut m: Fields) -> Fields {
    if let Some(v) = m.get_mut(&b"content-length"[..]) {
        v.dedup();
    }
    if let Some(v) = m.get_mut(&b"transfer-encoding"[..]) {
        for value in v {
            value.make_ascii_lowercase();
        }
    }
    m
}

fn show_fields(m: &Fields) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(k, vs)| {
            let vs: Vec<String> = vs.iter().map(|v| show(v)).collect();
            format!("{}: [{}]", String::from_utf8_lossy(k), vs.join(", "))
        })
        .collect();
    format!("{{{}}}", parts.join("; "))
}

/// An absolute-form target as `http::Uri` writes it back: the scheme in
/// lowercase, and an empty path as "/". Both are the same URI (RFC 3986
/// 3.1 and 6.2.3, RFC 9110 4.2.3): grace's `Head::uri` is an `http::Uri`
/// and keeps no raw target, so these count as agreement. Anything else
/// about the target (its other bytes, a fragment) must be equal.
fn uri_canonical(target: &[u8]) -> Vec<u8> {
    let Some(sep) = target.windows(3).position(|w| w == b"://") else {
        return target.to_vec();
    };
    let (scheme, rest) = target.split_at(sep);
    let rest = &rest[3..];
    let authority_end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let mut out = scheme.to_ascii_lowercase();
    out.extend_from_slice(b"://");
    out.extend_from_slice(&rest[..authority_end]);
    if rest.get(authority_end) != Some(&b'/') {
        out.push(b'/');
    }
    out.extend_from_slice(&rest[authority_end..]);
    out
}

/// Where grace and h11 disagree on a head grace accepted, if anywhere.
fn compare(h: &Head, len: usize, skipped: usize, r: &RefHead) -> Vec<String> {
    let mut diffs = Vec::new();
    if len != skipped + r.consumed {
        diffs.push(format!(
            "head length: grace {len}, h11 {} (+{skipped} skipped empty lines)",
            r.consumed
        ));
    }
    if h.method.as_str().as_bytes() != r.method {
        diffs.push(format!(
            "method: grace {}, h11 {}",
            show(h.method.as_str().as_bytes()),
            show(&r.method)
        ));
    }
    let target = h.uri.to_string();
    if target.as_bytes() != r.target && target.as_bytes() != uri_canonical(&r.target) {
        diffs.push(format!(
            "target: grace {}, h11 {}",
            show(target.as_bytes()),
            show(&r.target)
        ));
    }
    let version = match h.version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        _ => "other",
    };
    if version != r.version {
        diffs.push(format!("version: grace {version}, h11 {}", r.version));
    }
    let (gf, rf) = (as_h11_normalizes(grace_fields(h)), ref_fields(r));
    if gf != rf {
        diffs.push(format!(
            "fields: grace {}, h11 {}",
            show_fields(&gf),
            show_fields(&rf)
        ));
    }
    let framing = match h.framing {
        Framing::None => RefFraming::None,
        Framing::Length(n) => RefFraming::Length(n.to_string()),
        Framing::Chunked => RefFraming::Chunked,
    };
    if framing != r.framing {
        diffs.push(format!(
            "framing: grace {:?}, h11 {:?}",
            h.framing, r.framing
        ));
    }
    diffs
}

/// Writes to the test process's stderr directly: the test harness captures
/// `eprint!` (and shows it only for a failing test), but the summary and a
/// skip must show in every run, CI's included.
fn to_stderr(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[derive(Default)]
struct Tally {
    accepted: usize,
    agree: usize,
    leading_empty_lines: usize,
    /// Agreeing, with the target as `http::Uri` writes it (`uri_canonical`).
    canonical_targets: Vec<String>,
    known: BTreeMap<&'static str, Vec<String>>,
    rejected: usize,
    incomplete: usize,
    both_reject: usize,
    /// grace stricter: grace's reason -> every head (label and bytes).
    grace_stricter: BTreeMap<String, Vec<String>>,
    failures: Vec<String>,
}

#[test]
fn grace_accepts_only_what_h11_accepts() {
    let start = Instant::now();
    // The same head can come from head/ and conn/ (or be generated too):
    // compare it once.
    let mut seen = std::collections::HashSet::new();
    let mut cases = corpus_cases();
    cases.retain(|c| seen.insert(c.bytes.clone()));
    let from_corpus = cases.len();
    cases.extend(
        generated_cases()
            .into_iter()
            .filter(|c| seen.insert(c.bytes.clone())),
    );

    let cfg = HttpConfig::default();
    let grace: Vec<Result<Option<(Head, usize)>, HttpError>> =
        cases.iter().map(|c| parse_head(&c.bytes, &cfg)).collect();
    let skips: Vec<usize> = cases
        .iter()
        .map(|c| leading_empty_lines(&c.bytes))
        .collect();
    let inputs: Vec<Vec<u8>> = cases
        .iter()
        .zip(&skips)
        .map(|(c, &skip)| c.bytes[skip..].to_vec())
        .collect();

    let (h11_version, reference) = match run_reference(&inputs) {
        Ok(r) => r,
        Err(why) => {
            let required = std::env::var("GRACE_REQUIRE_H11").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "GRACE_REQUIRE_H11=1 but the reference parser cannot run: {why}\n\
                 install it with: python3 -m pip install h11"
            );
            to_stderr(&format!(
                "\n********************************************************\n\
                 SKIPPED: pip install h11 (differential check against h11)\n\
                 {why}\n\
                 ********************************************************\n"
            ));
            return;
        }
    };

    let mut t = Tally::default();
    for (((case, parsed), r), &skip) in cases.iter().zip(&grace).zip(&reference).zip(&skips) {
        let ctx = || format!("{}: {}", case.label, show(&case.bytes));
        match (parsed, r) {
            (Ok(Some((h, len))), RefResult::Accepted(rh)) => {
                t.accepted += 1;
                let diffs = compare(h, *len, skip, rh);
                if diffs.is_empty() {
                    t.agree += 1;
                    if skip > 0 {
                        t.leading_empty_lines += 1;
                    }
                    if h.uri.to_string().as_bytes() != rh.target {
                        t.canonical_targets.push(case.label.clone());
                    }
                } else {
                    t.failures
                        .push(format!("{}\n    {}", ctx(), diffs.join("\n    ")));
                }
            }
            (Ok(Some(_)), RefResult::Rejected { need_data, error }) => {
                t.accepted += 1;
                let head = &case.bytes[..];
                match KNOWN.iter().find(|k| (k.applies)(head, error)) {
                    Some(k) => t.known.entry(k.name).or_default().push(case.label.clone()),
                    None => t.failures.push(format!(
                        "{}\n    grace accepts, h11 {}: {error}",
                        ctx(),
                        if *need_data {
                            "wants more bytes"
                        } else {
                            "rejects"
                        }
                    )),
                }
            }
            (Ok(None), r) => {
                t.incomplete += 1;
                if let RefResult::Accepted(_) = r {
                    t.grace_stricter
                        .entry("incomplete (grace wants more bytes)".into())
                        .or_default()
                        .push(ctx());
                }
            }
            (Err(e), RefResult::Accepted(_)) => {
                t.rejected += 1;
                let key = format!("{} {}", e.status.as_u16(), e.reason);
                t.grace_stricter.entry(key).or_default().push(ctx());
            }
            (Err(_), RefResult::Rejected { .. }) => {
                t.rejected += 1;
                t.both_reject += 1;
            }
        }
    }

    let mut report = String::new();
    let w = &mut report;
    writeln!(
        w,
        "differential check against h11 {h11_version}: {} heads ({} from the fuzz corpora, \
         {} generated; duplicates removed)",
        cases.len(),
        from_corpus,
        cases.len() - from_corpus,
    )
    .unwrap();
    let known: usize = t.known.values().map(Vec::len).sum();
    writeln!(
        w,
        "  grace accepts {}: h11 agrees on {} ({} after skipping leading empty lines), \
         {} known differences, {} failures",
        t.accepted,
        t.agree,
        t.leading_empty_lines,
        known,
        t.failures.len()
    )
    .unwrap();
    if !t.canonical_targets.is_empty() {
        writeln!(
            w,
            "    absolute-form target agrees as http::Uri writes it: {} ({})",
            t.canonical_targets.len(),
            t.canonical_targets.join("; ")
        )
        .unwrap();
    }
    for (name, labels) in &t.known {
        writeln!(
            w,
            "    known: {name}: {} ({})",
            labels.len(),
            labels.join("; ")
        )
        .unwrap();
    }
    let stricter: usize = t.grace_stricter.values().map(Vec::len).sum();
    writeln!(
        w,
        "  grace rejects {} and wants more bytes for {}: h11 rejects {} too, \
         accepts {} (grace stricter):",
        t.rejected, t.incomplete, t.both_reject, stricter
    )
    .unwrap();
    // GRACE_DIFF_VERBOSE=1 lists every such head, not one per reason.
    let verbose = std::env::var("GRACE_DIFF_VERBOSE").is_ok_and(|v| v == "1");
    for (reason, heads) in &t.grace_stricter {
        writeln!(w, "    {:4} {reason}; e.g. {}", heads.len(), heads[0]).unwrap();
        if verbose {
            for head in &heads[1..] {
                writeln!(w, "           {head}").unwrap();
            }
        }
    }
    writeln!(w, "  in {:?}", start.elapsed()).unwrap();
    to_stderr(&report);

    assert!(
        t.failures.is_empty(),
        "{} heads grace accepts where h11 disagrees:\n{}",
        t.failures.len(),
        t.failures.join("\n")
    );
}
