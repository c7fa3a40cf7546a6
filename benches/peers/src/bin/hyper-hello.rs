//! hyper 1 + tokio peer of grace's demo server, for benches/run.sh.
//!
//! `hyper-hello 127.0.0.1:PORT`. Multi-thread runtime with the default worker
//! count (the CPUs this process may run on: 1 under `taskset -c 0`), HTTP/1.1
//! only, keep-alive on. Routes: `GET /` -> `hello\n`; `GET /sleep?ms=N` and
//! `GET /work?us=N` (a blocking sleep and grace's CPU-bound loop, each run
//! with `spawn_blocking`, as a tokio program runs blocking work);
//! `GET /asleep?ms=N` (`tokio::time::sleep`, the async way to wait);
//! `POST /echo` (the body collected, then sent back); `GET /bytes?n=N` (N bytes
//! of grace's pattern from memory); `GET /file?bytes=N` (the file grace's demo wrote for the same N, in
//! `$TMPDIR/grace-hello-files/`, streamed with `tokio::fs` in 16 KiB reads,
//! with `Content-Length`, as a hyper program serves a file).
//! hyper adds `Date` and `Content-Length` itself.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use grace_bench_peers::{pattern_bytes, query, work, BYTES_MAX};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame};
use tokio::io::{AsyncRead, ReadBuf};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    // Same header as grace's demo, so both responses are the same size.
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A file as a body: 16 KiB reads through `tokio::fs`.
struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(16 * 1024) as usize;
        let mut buf = BytesMut::zeroed(want);
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut self.file).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(None);
                }
                self.left -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(Frame::data(buf.freeze()))))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

type Out = Either<Full<Bytes>, FileBody>;

async fn handle(req: Request<hyper::body::Incoming>) -> Result<Response<Out>, Infallible> {
    if req.uri().path() == "/file" {
        let bytes = query(req.uri().query(), "bytes").unwrap_or(1024);
        let path = std::env::temp_dir()
            .join("grace-hello-files")
            .join(format!("pattern-{bytes}"));
        return Ok(match tokio::fs::File::open(&path).await {
            Ok(file) => Response::new(Either::Right(FileBody { file, left: bytes })),
            Err(e) => text(StatusCode::NOT_FOUND, format!("{}: {e}\n", path.display()))
                .map(Either::Left),
        });
    }
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => text(StatusCode::OK, "hello\n"),
        (&Method::GET, "/sleep") => {
            let ms = query(req.uri().query(), "ms").unwrap_or(0).min(600_000);
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(Duration::from_millis(ms))).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        (&Method::GET, "/asleep") => {
            let ms = query(req.uri().query(), "ms").unwrap_or(0).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        (&Method::GET, "/work") => {
            let us = query(req.uri().query(), "us").unwrap_or(0).min(1_000_000);
            let x = tokio::task::spawn_blocking(move || work(us)).await.unwrap_or(0);
            text(StatusCode::OK, format!("worked {us} us: {x:x}\n"))
        }
        (&Method::GET, "/bytes") => {
            let n = query(req.uri().query(), "n").unwrap_or(1024).min(BYTES_MAX as u64) as usize;
            Response::new(Full::new(Bytes::from_static(&pattern_bytes()[..n])))
        }
        (&Method::POST, "/echo") => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(body.to_bytes())),
            Err(e) => text(StatusCode::BAD_REQUEST, format!("bad body: {e}\n")),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
    .map(Either::Left))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("hyper-hello: serving on {}", listener.local_addr()?);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("hyper-hello: accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(handle));
            if let Err(e) = conn.await {
                eprintln!("hyper-hello: connection error: {e}");
            }
        });
    }
}
