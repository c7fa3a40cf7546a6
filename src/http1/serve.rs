//! HTTP/1.1 as a [`Protocol`] of the server: what [`Server::serve_http`]
//! runs on each connection.

use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::http1::conn::{serve_ready, Session};
use crate::http1::{Handler, HttpConfig, Threads};
use crate::protocol::{serve_whole, Protocol, Served};
use crate::server::{Outcome, Server};

/// HTTP/1.1 with a handler and its settings, parked between requests.
pub(crate) struct Http1<H> {
    pub(crate) handler: H,
    pub(crate) cfg: HttpConfig,
}

impl<H: Handler> Protocol for Http1<H> {
    type Session = Session;

    fn open(&self, _conn: &Conn) -> Session {
        Session::new()
    }

    fn serve(&self, conn: &mut Conn, session: &mut Session) -> Served {
        serve_ready(conn, &self.handler, &self.cfg, session)
    }

    fn idle_deadline(&self, session: &Session, now: Instant) -> Instant {
        session.idle_deadline(&self.cfg, now)
    }

    fn drain_grace(&self) -> Duration {
        self.cfg.drain_grace
    }

    fn linger_timeout(&self) -> Duration {
        self.cfg.linger_timeout
    }

    fn client_speaks_first(&self) -> bool {
        true
    }
}

impl Server {
    /// Serves HTTP/1.1 with `handler` until shut down or replaced. With
    /// [`Threads::PerRequest`] (the default) a connection has a thread while
    /// it has a request, and is parked with the idle poller in between, so
    /// idle keep-alive connections hold no threads ([`Server::serve_parked`]);
    /// with [`Threads::PerConnection`] a thread serves a connection for its
    /// whole life ([`Server::serve_connections`]).
    pub fn serve_http<H: Handler>(self, handler: H, http: HttpConfig) -> std::io::Result<Outcome> {
        log::debug!(
            "[{}] serving HTTP/1.1 with {}",
            crate::sys::getpid(),
            match http.threads {
                Threads::PerConnection => "a thread per connection",
                _ => "a thread per request, idle connections parked",
            }
        );
        match http.threads {
            Threads::PerConnection => {
                self.set_defer_accept();
                let proto = Http1 { handler, cfg: http };
                self.serve_connections(move |conn| serve_whole(&proto, conn))
            }
            _ => self.serve_parked(Http1 { handler, cfg: http }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::{AsRawFd, OwnedFd};

    use super::*;
    use crate::conn::Parking;
    use crate::drain::Tracker;
    use crate::http1::{RequestBody, ResponseBody};

    #[test]
    fn a_hand_off_with_nothing_to_read_parks_again_instead_of_waiting() {
        // An edge-triggered event can be for bytes a worker's earlier read
        // already took (a pipelining client): the next worker must not wait
        // on the connection with a thread, nor time it out with 408.
        let proto = Http1 {
            handler: |_req: http::Request<RequestBody<'_>>| {
                http::Response::new(ResponseBody::from("hi\n"))
            },
            cfg: HttpConfig::default(),
        };
        let tracker = Tracker::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let owned: OwnedFd = server.into();
        let reg = tracker.register(owned.as_raw_fd());
        let mut conn = Conn::new(owned, crate::SockAddr::Inet(peer), reg, "test".into());
        conn.set_parking(Parking::Ready);
        let mut session = proto.open(&conn);
        let started = Instant::now();
        assert_eq!(proto.serve(&mut conn, &mut session), Served::Park);
        assert!(
            started.elapsed() < proto.cfg.head_timeout,
            "waited {:?}",
            started.elapsed()
        );
        assert_eq!(session.stats.requests, 0);
    }
}
