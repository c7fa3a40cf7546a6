//! HTTPS through restarts: `examples/tls.rs` (HTTP/1.1 over rustls as a
//! grace Protocol) with certificates made by rcgen, against rustls clients
//! and curl.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use common::*;

const T: Duration = Duration::from_secs(30);

/// A CA, and leaf certificates for `localhost` signed by it.
struct Pki {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "grace test CA");
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A new leaf (new key) for localhost: (cert PEM, key PEM, cert DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

fn tls_connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(T))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    Ok(BufReader::new(StreamOwned::new(conn, tcp)))
}

/// One request on `c`: the response, and whether the server said close.
fn tls_get(c: &mut Tls, path: &str) -> std::io::Result<(Resp, bool)> {
    c.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())?;
    let r = read_response(c, "GET")?;
    let close = r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok((r, close))
}

/// The certificate a new handshake presents, and `/pid`'s answer.
fn handshake(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> (Vec<u8>, (u32, u64)) {
    let mut c = tls_connect(addr, cfg).unwrap();
    let (r, _) = tls_get(&mut c, "/pid").unwrap();
    let certs = c.get_ref().conn.peer_certificates().unwrap();
    (certs[0].to_vec(), parse_pid_gen(&r.body_str()))
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    // Written aside and renamed: a starting generation never reads half a file.
    for (name, pem) in [("cert.pem", cert), ("key.pem", key)] {
        let tmp = dir.join(format!("{name}.new"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

fn start(dir: &TempDir) -> Server {
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    Server::start_bin(
        &example("tls"),
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
}

/// `curl --cacert` against the server: the body, or why not.
fn curl(addr: SocketAddr, ca: &Path) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", addr.port()))
        .arg(format!("https://localhost:{}/", addr.port()))
        .output()
        .map_err(|e| format!("curl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn https_survives_three_restarts_under_16_keep_alive_clients() {
    let pki = Pki::new();
    let dir = TempDir::new("tls");
    let (cert, key, _) = pki.leaf();
    write_pair(dir.path(), &cert, &key);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let mut s = start(&dir);
    let cfg = pki.client_config();
    let addr = s.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..16)
        .map(|i| {
            let (cfg, stop, ok, failed) = (cfg.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut conn: Option<Tls> = None;
                // Bounded: at most 100,000 requests per client.
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let c = match conn.as_mut() {
                        Some(c) => c,
                        None => match tls_connect(addr, &cfg) {
                            Ok(c) => conn.insert(c),
                            Err(e) => {
                                eprintln!("client {i}: connect: {e}");
                                failed.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                    };
                    match tls_get(c, "/") {
                        Ok((r, close)) if r.status == 200 && r.body_str() == "hello over TLS\n" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if close {
                                conn = None;
                            }
                        }
                        Ok((r, _)) => {
                            eprintln!("client {i}: {} {:?}", r.status, r.body_str());
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                        Err(e) => {
                            eprintln!("client {i}: {e}");
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = None;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    wait_for("requests flowing", T, || {
        (ok.load(Ordering::Relaxed) > 100).then_some(())
    });
    let mut pid = s.first_pid();
    for round in 0..3 {
        Server::signal(pid, libc::SIGUSR2);
        let next = wait_for("the next generation", T, || {
            let (_, (p, g)) = handshake(addr, &cfg);
            (p != pid).then_some((p, g))
        });
        assert_eq!(next.1, round + 1);
        assert_eq!(
            curl(addr, &ca).as_deref(),
            Ok("hello over TLS\n"),
            "curl after restart {round}"
        );
        // The old generation drains and exits 0.
        if round == 0 {
            assert_eq!(s.wait_first(T), Some(0));
        } else {
            assert_eq!(reap(pid, T), Some(grace::Exit::Code(0)));
        }
        pid = next.0;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} HTTPS requests through 3 restarts, {failed} failed");
    assert_eq!(failed, 0, "{failed} failed requests ({ok} ok)");
    Server::signal(pid, libc::SIGTERM);
    assert_eq!(reap(pid, T), Some(grace::Exit::Code(0)));
}

#[test]
fn a_renewed_certificate_is_served_after_usr2() {
    let pki = Pki::new();
    let dir = TempDir::new("tls-renew");
    let (cert_a, key_a, der_a) = pki.leaf();
    write_pair(dir.path(), &cert_a, &key_a);
    let mut s = start(&dir);
    let cfg = pki.client_config();
    let pid0 = s.first_pid();
    let (seen, _) = handshake(s.addr, &cfg);
    assert_eq!(seen, der_a);
    // The renewal: new files in place, then the restart reads them.
    let (cert_b, key_b, der_b) = pki.leaf();
    write_pair(dir.path(), &cert_b, &key_b);
    let (still, _) = handshake(s.addr, &cfg);
    assert_eq!(still, der_a, "the running process keeps what it read");
    Server::signal(pid0, libc::SIGUSR2);
    let (seen, (pid1, _)) = wait_for("the new generation", T, || {
        let (cert, (p, g)) = handshake(s.addr, &cfg);
        (p != pid0).then_some((cert, (p, g)))
    });
    assert_eq!(
        seen, der_b,
        "new handshakes present the renewed certificate"
    );
    assert_ne!(der_a, der_b);
    assert_eq!(s.wait_first(T), Some(0));
    Server::signal(pid1, libc::SIGTERM);
    assert_eq!(reap(pid1, T), Some(grace::Exit::Code(0)));
}
