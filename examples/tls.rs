// HTTPS with zero-downtime restarts: HTTP/1.1 over rustls, served as a
// grace Protocol, so idle keep-alive connections are parked like plain
// HTTP's and the drain works the same.
//
// ```text
// cargo run --example tls -- --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
// curl --cacert cert.pem https://localhost:8443/
// kill -USR2 <pid>     # a new process, which reads the certificate again
// ```
//
// Every start reads the certificate and key files, so a renewed
// certificate is served after `kill -USR2`, without a refused connection.
//
// The pattern for any wrapped stream: the protocol's session holds the
// wrapper's state (here a `rustls::ServerConnection`) and grace's
// `http1::Session`; `serve` builds a `Transport` over the connection and the
// wrapper and calls `http1::serve_ready`. When the connection goes idle
// with nothing buffered in the wrapper, the transport passes the
// connection's own `Idle::Park` up, and the connection is parked.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grace::http::{Request, Response};
use grace::http1::{self, HttpConfig, RequestBody, ResponseBody, Session, Transport};
use grace::{Conn, ConnInfo, ConnState, DrainToken, Idle, ListenAddr, Protocol, Served, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConnection;

#[path = "common/logger.rs"]
mod logger;

/// Bytes read from the socket at a time: one TLS record, at most.
const RECORD: usize = 16 * 1024 + 256;

fn handle(req: Request<RequestBody>) -> Response<ResponseBody> {
    match req.uri().path() {
        "/pid" => Response::new(ResponseBody::from(format!(
            "pid={} generation={}\n",
            std::process::id(),
            grace::generation()
        ))),
        _ => Response::new(ResponseBody::from("hello over TLS\n")),
    }
}

/// HTTP/1.1 over TLS, as a grace protocol.
struct Https {
    tls: Arc<rustls::ServerConfig>,
    http: HttpConfig,
}

/// What a connection keeps between requests.
struct TlsSession {
    tls: ServerConnection,
    http: Session,
}

impl Protocol for Https {
    /// `None` if rustls could not start a session (the connection closes).
    type Session = Option<TlsSession>;

    fn open(&self, _conn: &Conn) -> Option<TlsSession> {
        match ServerConnection::new(self.tls.clone()) {
            Ok(tls) => Some(TlsSession {
                tls,
                http: Session::new(),
            }),
            Err(e) => {
                log::warn!("tls: cannot start a session: {e}");
                None
            }
        }
    }

    fn serve(&self, conn: &mut Conn, s: &mut Option<TlsSession>) -> Served {
        let Some(s) = s else {
            conn.close(None);
            return Served::Close;
        };
        let mut t = TlsOver {
            conn,
            tls: &mut s.tls,
        };
        http1::serve_ready(&mut t, &handle, &self.http, &mut s.http)
    }

    fn idle_deadline(&self, s: &Option<TlsSession>, now: Instant) -> Instant {
        match s {
            Some(s) => s.http.idle_deadline(&self.http, now),
            None => now,
        }
    }

    fn drain_grace(&self) -> Duration {
        self.http.drain_grace
    }

    fn linger_timeout(&self) -> Duration {
        self.http.linger_timeout
    }

    fn client_speaks_first(&self) -> bool {
        true
    }
}

/// The HTTP loop's transport: TLS records over the connection.
struct TlsOver<'a> {
    conn: &'a mut Conn,
    tls: &'a mut ServerConnection,
}

impl TlsOver<'_> {
    /// Sends what rustls has to send: handshake flights, records, alerts.
    fn flush(&mut self, deadline: Instant) -> io::Result<()> {
        let mut out = Vec::new();
        while self.tls.wants_write() {
            out.clear();
            self.tls.write_tls(&mut out)?;
            self.conn.write_all_deadline(&[&out], deadline)?;
        }
        Ok(())
    }

    /// Plaintext decrypted and not read yet: the connection must not park.
    fn buffered(&mut self) -> bool {
        self.tls
            .process_new_packets()
            .is_ok_and(|s| s.plaintext_bytes_to_read() > 0)
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Transport for TlsOver<'_> {
    fn read_deadline(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let mut raw = vec![0u8; RECORD];
        loop {
            match self.tls.reader().read(buf) {
                // Ok(0): the client's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Nothing decrypted: read a record (a hand-off with nothing to
            // read fails with WouldBlock here, and the connection parks).
            let n = self.conn.read_deadline(&mut raw, deadline)?;
            if n == 0 {
                return Ok(0);
            }
            let mut slice = &raw[..n];
            while !slice.is_empty() {
                if self.tls.read_tls(&mut slice)? == 0 {
                    break;
                }
                self.tls.process_new_packets().map_err(tls_error)?;
            }
            // Handshake flights (and alerts) go out at once.
            self.flush(deadline)?;
        }
    }

    fn wait_idle(&mut self, deadline: Instant) -> io::Result<Idle> {
        if self.buffered() {
            return Ok(Idle::Data);
        }
        self.conn.wait_idle(deadline)
    }

    fn write_all_deadline(&mut self, bufs: &[&[u8]], deadline: Instant) -> io::Result<()> {
        for b in bufs {
            self.tls.writer().write_all(b)?;
        }
        self.flush(deadline)
    }

    fn draining(&self) -> bool {
        self.conn.closing()
    }

    fn set_busy(&mut self, busy: bool) {
        self.conn.set_state(if busy {
            ConnState::Busy
        } else {
            ConnState::Idle
        });
    }

    fn close(&mut self, linger: Option<Instant>) {
        self.tls.send_close_notify();
        let _ = self.flush(Instant::now() + Duration::from_secs(1));
        self.conn.close(linger);
    }

    fn conn_info(&self) -> Option<ConnInfo> {
        Some(self.conn.info().clone())
    }

    fn drain_token(&self) -> Option<DrainToken> {
        self.conn.drain_token()
    }
}

/// Reads the certificate chain and key (PEM) and builds rustls's config.
fn tls_config(cert: &PathBuf, key: &PathBuf) -> Result<rustls::ServerConfig, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())
}

fn main() {
    grace::init();
    logger::init_logger();
    let mut listen: Vec<ListenAddr> = Vec::new();
    let mut cfg = grace::ServerConfig::default();
    cfg.handle_signals = true;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    let usage = "usage: tls --cert PEM --key PEM [--listen ADDR]... [--pid-file PATH]";
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("tls: {flag} needs a value\n{usage}");
            std::process::exit(2);
        };
        match flag.as_str() {
            "--listen" => match value.parse() {
                Ok(a) => listen.push(a),
                Err(e) => {
                    eprintln!("tls: --listen {value}: {e}");
                    std::process::exit(2);
                }
            },
            "--pid-file" => cfg.pid_file = Some(value.into()),
            "--cert" => cert = Some(PathBuf::from(value)),
            "--key" => key = Some(PathBuf::from(value)),
            _ => {
                eprintln!("tls: unknown flag {flag}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        eprintln!("tls: --cert and --key are needed\n{usage}");
        std::process::exit(2);
    };
    if listen.is_empty() && !grace::listener::has_inherited() {
        listen.push("127.0.0.1:8443".parse().expect("valid address"));
    }
    // Read at every start: a restart picks up a renewed certificate.
    let tls = match tls_config(&cert, &key) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("tls: {e}");
            std::process::exit(1);
        }
    };
    let proto = Https {
        tls,
        http: HttpConfig::default(),
    };
    let outcome = Server::bind(cfg, &listen).and_then(|s| s.serve_parked(proto));
    match outcome {
        Ok(o) => std::process::exit(if o.reason == grace::StopReason::Aborted {
            1
        } else {
            0
        }),
        Err(e) => {
            eprintln!("tls: {e}");
            std::process::exit(1);
        }
    }
}
