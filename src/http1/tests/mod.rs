//! Connection-level tests over [`MemTransport`]: shared helpers here,
//! ordinary requests in `requests.rs`, hostile and broken input in
//! `hostile.rs`.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{Request, Response};

use crate::http1::{
    handler_fn, serve_connection, ConnStats, Handler, HttpConfig, MemTransport, RequestBody,
    ResponseBody,
};

mod hostile;
mod requests;

/// One parsed response.
#[derive(Debug)]
pub(super) struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn closes(&self) -> bool {
        self.header("connection") == Some("close")
    }
}

/// Parses every response in `out` (no HEAD support: use raw output there).
pub(super) fn responses(mut out: &[u8]) -> Vec<Resp> {
    let mut all = Vec::new();
    while !out.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(out).expect("valid response head") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial response: {out:?}"),
        };
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        out = &out[n..];
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            resp.body = out[..len].to_vec();
            out = &out[len..];
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let nl = out.iter().position(|&b| b == b'\n').unwrap();
                let size = usize::from_str_radix(std::str::from_utf8(&out[..nl - 1]).unwrap(), 16)
                    .unwrap();
                out = &out[nl + 1..];
                resp.body.extend_from_slice(&out[..size]);
                assert_eq!(&out[size..size + 2], b"\r\n");
                out = &out[size + 2..];
                if size == 0 {
                    break;
                }
            }
        } else {
            resp.body = out.to_vec();
            out = &[];
        }
        all.push(resp);
    }
    all
}

/// Echoes the method, path and body.
pub(super) fn echo(mut req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
    let mut body = Vec::new();
    if let Err(e) = req.body_mut().read_to_end(&mut body) {
        return Response::new(ResponseBody::from(format!("error: {e}")));
    }
    let mut out = format!("{} {} ", req.method(), req.uri()).into_bytes();
    out.extend_from_slice(&body);
    Response::new(ResponseBody::from(out))
}

pub(super) fn hello(_req: Request<RequestBody<'_>>) -> Response<ResponseBody> {
    Response::new(ResponseBody::from("hello\n"))
}

pub(super) fn serve_with<H: Handler>(
    t: MemTransport,
    h: &H,
    cfg: &HttpConfig,
) -> (MemTransport, ConnStats) {
    let mut t = t;
    let stats = serve_connection(&mut t, h, cfg);
    assert_eq!(t.closes, 1, "closed exactly once");
    assert!(!t.busy, "left busy");
    (t, stats)
}

pub(super) fn serve(input: &str) -> (MemTransport, ConnStats) {
    serve_with(MemTransport::new(input), &echo, &HttpConfig::default())
}

pub(super) const GET: &str = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn closure_handler() {
    let mut t = MemTransport::new(GET);
    let stats = serve_connection(
        &mut t,
        &|_req: http::Request<RequestBody>| http::Response::new(ResponseBody::from("hello\n")),
        &HttpConfig::default(),
    );
    assert_eq!(stats.requests, 1);
    let r = responses(&t.output);
    assert_eq!(r[0].status, 200);
    assert_eq!(r[0].body, b"hello\n");
    assert!(t.output_str().contains("\r\nDate: "));
    // A closure capturing state, through handler_fn.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = {
        let hits = hits.clone();
        handler_fn(move |_req| {
            hits.fetch_add(1, Ordering::Relaxed);
            Response::new(ResponseBody::empty())
        })
    };
    let (_t, _) = serve_with(MemTransport::new(GET), &h, &HttpConfig::default());
    assert_eq!(hits.load(Ordering::Relaxed), 1);
    // And as a trait object.
    let dynh: Box<dyn Handler> = Box::new(hello);
    let mut t = MemTransport::new(GET);
    serve_connection(&mut t, &*dynh, &HttpConfig::default());
    assert_eq!(responses(&t.output)[0].body, b"hello\n");
}
