//! astra peer of grace's demo server (sync handlers on hyper), for the
//! benchmark harness.
//!
//! `astra-hello 127.0.0.1:PORT [MAX_WORKERS]`. Without MAX_WORKERS astra
//! keeps its default worker cap (15 per CPU: 15 under `taskset -c 0`); a
//! keep-alive connection holds its worker for the whole of its life, so
//! connections beyond the cap wait unanswered. The harness's `astra-w` runs
//! it with the cap raised to cover every connection of the scenario.
//! Routes as grace's demo: `GET /`, `GET /sleep?ms=N`, `GET /work?us=N`,
//! `POST /echo`, `GET /bytes?n=N`.

use std::io::Read;
use std::time::Duration;

use astra::{Body, Request, Response, ResponseBuilder, Server};
use grace_bench_peers::{pattern_bytes, query, work, BYTES_MAX};

fn text(status: u16, body: String) -> Response {
    ResponseBuilder::new()
        .status(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(Body::new(body))
        .expect("a valid response")
}

fn handle(mut req: Request) -> Response {
    let q = req.uri().query().map(str::to_owned);
    let q = q.as_deref();
    match (req.method().as_str(), req.uri().path()) {
        ("GET", "/") => ResponseBuilder::new()
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(Body::new("hello\n"))
            .expect("a valid response"),
        ("GET", "/sleep") => {
            let ms = query(q, "ms").unwrap_or(0).min(600_000);
            std::thread::sleep(Duration::from_millis(ms));
            text(200, format!("slept {ms} ms\n"))
        }
        ("GET", "/work") => {
            let us = query(q, "us").unwrap_or(0).min(1_000_000);
            text(200, format!("worked {us} us: {:x}\n", work(us)))
        }
        ("GET", "/bytes") => {
            let n = query(q, "n").unwrap_or(1024).min(BYTES_MAX as u64) as usize;
            Response::new(Body::new(&pattern_bytes()[..n]))
        }
        ("POST", "/echo") => {
            let mut body = Vec::new();
            match req.body_mut().reader().read_to_end(&mut body) {
                Ok(_) => Response::new(Body::new(body)),
                Err(e) => text(400, format!("bad body: {e}\n")),
            }
        }
        _ => text(404, "not found\n".into()),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let mut server = Server::bind(&addr);
    if let Some(n) = args.next() {
        server = server.max_workers(n.parse().expect("MAX_WORKERS is a number"));
    }
    eprintln!("astra-hello: serving on {addr}");
    server
        .serve(|req, _info| handle(req))
        .expect("astra serve failed");
}
