//! criterion micro-benchmarks of grace's HTTP/1.1 parsing:
//!
//! - `parse_head`: parsing and validating a request head (a typical browser
//!   GET, and a small curl GET), with the default `http::HttpConfig`;
//! - `chunked_decode`: `ChunkedDecoder` on a 64 KiB body sent as 16 chunks of
//!   4 KiB, decoded into a 16 KiB buffer (as a connection's read loop does).
//!
//! `cargo bench --manifest-path benches/micro/Cargo.toml` (the end-to-end
//! harness is benches/run.sh).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use grace::http1::{parse_head, ChunkedDecoder, HttpConfig};

const BROWSER_GET: &[u8] = b"GET /articles/2024/zero-downtime-restarts?ref=front&utm_source=feed HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-User: ?1\r\n\
Sec-Fetch-Dest: document\r\n\
Referer: https://www.example.com/\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9,fr;q=0.8\r\n\
Cookie: session=3f2a9c1e7b6d4e0f8a1b2c3d4e5f6a7b; theme=dark; _ga=GA1.2.123456789.1700000000\r\n\
\r\n";

const CURL_GET: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

fn bench_parse_head(c: &mut Criterion) {
    let cfg = HttpConfig::default();
    let mut g = c.benchmark_group("parse_head");
    for (name, head) in [("browser_get", BROWSER_GET), ("curl_get", CURL_GET)] {
        // Check once that the head parses whole, outside the timing.
        let (_, len) = parse_head(head, &cfg).unwrap().unwrap();
        assert_eq!(len, head.len());
        g.throughput(Throughput::Bytes(head.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| parse_head(black_box(head), &cfg).unwrap().unwrap())
        });
    }
    g.finish();
}

fn chunked_body(total: usize, chunk: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(total + total / chunk * 10 + 5);
    let mut left = total;
    let mut byte = 0u8;
    while left > 0 {
        let n = left.min(chunk);
        v.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        for _ in 0..n {
            v.push(byte);
            byte = byte.wrapping_add(1);
        }
        v.extend_from_slice(b"\r\n");
        left -= n;
    }
    v.extend_from_slice(b"0\r\n\r\n");
    v
}

fn decode_all(input: &[u8], out: &mut [u8], cfg: &HttpConfig) -> u64 {
    let mut d = ChunkedDecoder::from_config(cfg);
    let mut pos = 0;
    while !d.is_done() {
        let (used, _written) = d.decode(&input[pos..], out).unwrap();
        pos += used;
        assert!(used > 0 || d.is_done(), "decoder stalled");
    }
    d.total()
}

fn bench_chunked(c: &mut Criterion) {
    let cfg = HttpConfig::default();
    let body = chunked_body(64 * 1024, 4 * 1024);
    let mut out = vec![0u8; 16 * 1024];
    assert_eq!(decode_all(&body, &mut out, &cfg), 64 * 1024);
    let mut g = c.benchmark_group("chunked_decode");
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("64KiB_in_4KiB_chunks", |b| {
        b.iter(|| decode_all(black_box(&body), &mut out, &cfg))
    });
    g.finish();
}

criterion_group!(benches, bench_parse_head, bench_chunked);
criterion_main!(benches);
