//! tiny_http peer of grace's demo server, for the benchmark harness.
//!
//! `tiny-hello 127.0.0.1:PORT`. tiny_http reads requests on its own
//! connection threads and hands them to `Server::recv`; here N = available
//! CPUs (1 under `taskset -c 0`) worker threads call `recv` and answer, the
//! pattern of tiny_http's documented multi-thread example. Routes: `GET /` ->
//! `hello\n`, `GET /sleep?ms=N`, `GET /work?us=N`, `POST /echo`,
//! `GET /bytes?n=N` (as grace's demo).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use grace_bench_peers::{pattern_bytes, query, work, BYTES_MAX};
use tiny_http::{Header, Response, Server};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Arc::new(Server::http(&addr).expect("bind"));
    eprintln!("tiny-hello: serving on {addr}");
    let ctype: Header = "Content-Type: text/plain; charset=utf-8".parse().unwrap();
    let n = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let workers: Vec<_> = (0..n)
        .map(|_| {
            let server = Arc::clone(&server);
            let ctype = ctype.clone();
            thread::spawn(move || loop {
                let mut req = match server.recv() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("tiny-hello: recv: {e}");
                        continue;
                    }
                };
                let url = req.url().to_owned();
                let (path, query_str) = url.split_once('?').unwrap_or((&url, ""));
                let q = Some(query_str);
                let (status, body): (u16, Vec<u8>) = match path {
                    "/" => (200, b"hello\n".to_vec()),
                    "/sleep" => {
                        let ms = query(q, "ms").unwrap_or(0).min(600_000);
                        thread::sleep(Duration::from_millis(ms));
                        (200, format!("slept {ms} ms\n").into_bytes())
                    }
                    "/work" => {
                        let us = query(q, "us").unwrap_or(0).min(1_000_000);
                        (200, format!("worked {us} us: {:x}\n", work(us)).into_bytes())
                    }
                    "/bytes" => {
                        let n = query(q, "n").unwrap_or(1024).min(BYTES_MAX as u64) as usize;
                        let _ = req.respond(Response::from_data(&pattern_bytes()[..n]));
                        continue;
                    }
                    "/echo" => {
                        let mut body = Vec::new();
                        match std::io::Read::read_to_end(req.as_reader(), &mut body) {
                            Ok(_) => (200, body),
                            Err(e) => (400, format!("bad body: {e}\n").into_bytes()),
                        }
                    }
                    _ => (404, b"not found\n".to_vec()),
                };
                let resp = Response::from_data(body)
                    .with_status_code(status)
                    .with_header(ctype.clone());
                let _ = req.respond(resp);
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
}
