//! tiny_http peer of grace's demo server, for the benchmark harness.
//!
//! `tiny-hello 127.0.0.1:PORT`. tiny_http reads requests on its own
//! connection threads and hands them to `Server::recv`; here N = available
//! CPUs (1 under `taskset -c 0`) worker threads call `recv` and answer, the
//! pattern of tiny_http's documented multi-thread example. Routes: `GET /` ->
//! `hello\n`, `GET /sleep?ms=N`.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

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
                let req = match server.recv() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("tiny-hello: recv: {e}");
                        continue;
                    }
                };
                let url = req.url().to_owned();
                let (path, query) = url.split_once('?').unwrap_or((&url, ""));
                let (status, body) = match path {
                    "/" => (200, "hello\n".to_owned()),
                    "/sleep" => {
                        let ms = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("ms=")?.parse::<u64>().ok())
                            .unwrap_or(0)
                            .min(600_000);
                        thread::sleep(Duration::from_millis(ms));
                        (200, format!("slept {ms} ms\n"))
                    }
                    _ => (404, "not found\n".to_owned()),
                };
                let resp = Response::from_string(body)
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
