//! The idle poller with real sockets on 127.0.0.1.

use super::*;
use crate::pool::tests::wait_for;
use crate::pool::Work;
use crate::protocol::Served;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

/// A protocol that only carries the poller's timeouts: its connections are
/// never served here (the tests' pool work records what it is handed).
#[derive(Clone)]
struct Timeouts {
    idle: Duration,
    head: Duration,
    drain_grace: Duration,
    linger: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            idle: Duration::from_secs(60),
            head: Duration::from_secs(10),
            drain_grace: Duration::from_secs(1),
            linger: Duration::from_secs(2),
        }
    }
}

/// When the connection was accepted, and whether it has been served.
struct Since {
    accepted: Instant,
    served: bool,
}

impl Protocol for Timeouts {
    type Session = Since;
    fn open(&self, _conn: &Conn) -> Since {
        Since {
            accepted: Instant::now(),
            served: false,
        }
    }
    fn serve(&self, _conn: &mut Conn, s: &mut Since) -> Served {
        s.served = true;
        Served::Park
    }
    fn idle_deadline(&self, s: &Since, now: Instant) -> Instant {
        if s.served {
            now + self.idle
        } else {
            s.accepted + self.head
        }
    }
    fn drain_grace(&self) -> Duration {
        self.drain_grace
    }
    fn linger_timeout(&self) -> Duration {
        self.linger
    }
}

type Job = Parked<Timeouts>;
type Lot = Arc<ParkLot<Timeouts>>;
type Handed = std::sync::mpsc::Receiver<Job>;

/// A parked connection, its client end, and a pool whose work records
/// what it was handed.
fn setup(cfg: Timeouts) -> (Arc<Tracker>, Lot, Arc<Pool<Job>>, Handed) {
    let tracker = Tracker::new().unwrap();
    let lot = ParkLot::new(tracker.clone(), Arc::new(cfg)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let work: Work<Job> = Arc::new(move |job| {
        let _ = tx.lock().unwrap().send(job);
    });
    let pool = Arc::new(Pool::new(
        work,
        64 * 1024,
        Duration::from_secs(5),
        None,
        true,
    ));
    lot.start(pool.clone(), true).unwrap();
    (tracker, lot, pool, rx)
}

/// One new connection, parked; its client end.
fn parked(cfg: Timeouts) -> (Arc<Tracker>, Lot, Handed, TcpStream) {
    let (tracker, lot, _pool, rx) = setup(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (job, client) = connect(&tracker, &l);
    assert!(lot.park(job).is_none());
    (tracker, lot, rx, client)
}

fn connect(tracker: &Arc<Tracker>, l: &TcpListener) -> (Job, TcpStream) {
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, peer) = l.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let owned: OwnedFd = server.into();
    let reg = tracker.register(owned.as_raw_fd());
    let conn = Conn::new(owned, sys::SockAddr::Inet(peer), reg, "test".into());
    (ParkedConn::new(conn, &Timeouts::default()), client)
}

#[test]
fn readable_connection_is_handed_back_once() {
    let (tracker, lot, rx, mut client) = parked(Timeouts::default());
    assert_eq!(lot.counts(), (1, 0));
    assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(lot.counts(), (0, 0));
    // Parked again with the bytes still unread: handed back at once.
    assert!(lot.park(job).is_none());
    let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(job);
    assert_eq!(tracker.active(), 0);
    lot.stop();
}

fn busy_slots(lot: &ParkLot<Timeouts>) -> usize {
    let slab = lot.lock();
    slab.entries
        .iter()
        .filter(|e| matches!(e.slot, Slot::Busy { .. }))
        .count()
}

/// Reads what the client sent (a short read: the kernel is drained).
fn read_request(job: &mut Job) {
    let mut buf = [0u8; 4096];
    let n = job
        .conn
        .read_deadline(&mut buf, Instant::now() + Duration::from_secs(10))
        .unwrap();
    assert!(n > 0 && job.conn.drained);
}

#[test]
fn a_served_connection_parked_again_wakes_on_its_next_bytes() {
    let (_tracker, lot, rx, mut client) = parked(Timeouts::default());
    for i in 0..3 {
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(busy_slots(&lot), 1, "round {i}: the slot stays, busy");
        read_request(&mut job);
        // Parked again on the same registration (edge-triggered): the
        // next request still wakes it.
        assert!(lot.park(job).is_none());
        assert_eq!(lot.counts(), (1, 0));
    }
    lot.stop();
}

#[test]
fn bytes_that_arrive_while_busy_hand_the_connection_straight_back() {
    let (_tracker, lot, rx, mut client) = parked(Timeouts::default());
    client.write_all(b"GET /1 HTTP/1.1\r\n\r\n").unwrap();
    let mut job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    read_request(&mut job);
    // The next request arrives while the worker still has it.
    client.write_all(b"GET /2 HTTP/1.1\r\n\r\n").unwrap();
    wait_for("the poller saw it", || {
        let mut slab = lot.lock();
        let token = job.slot.as_ref().unwrap().token;
        matches!(slab.get(token), Some(Slot::Busy { ready: true }))
    });
    let mut job = lot.park(job).expect("handed straight back");
    read_request(&mut job);
    // The flag was consumed: parking now really parks.
    assert!(lot.park(job).is_none());
    assert_eq!(lot.counts(), (1, 0));
    lot.stop();
}

#[test]
fn a_busy_connection_that_closes_frees_its_slot() {
    let (tracker, lot, rx, mut client) = parked(Timeouts::default());
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(busy_slots(&lot), 1);
    drop(job);
    assert_eq!(busy_slots(&lot), 0);
    assert_eq!(lot.lock().free.len(), 1, "the slot is free for reuse");
    assert_eq!(tracker.active(), 0);
    lot.stop();
}

#[test]
fn idle_timeout_closes_politely_without_a_thread() {
    let cfg = Timeouts {
        idle: Duration::from_millis(50),
        head: Duration::from_millis(50),
        linger: Duration::from_secs(5),
        ..Default::default()
    };
    let (tracker, lot, rx, mut client) = parked(cfg);
    // The client sees end of stream (our FIN), not a reset.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    assert_eq!(lot.counts(), (0, 1), "lingering until the client closes");
    assert_eq!(tracker.active(), 1);
    drop(client);
    wait_for("connection closed", || tracker.active() == 0);
    assert_eq!(lot.counts(), (0, 0));
    assert!(rx.try_recv().is_err(), "no thread was involved");
    lot.stop();
}

#[test]
fn drain_gives_idle_connections_a_grace_then_closes_them() {
    let cfg = Timeouts {
        drain_grace: Duration::from_millis(300),
        ..Default::default()
    };
    let (tracker, lot, _pool, rx) = setup(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (quiet, mut quiet_client) = connect(&tracker, &l);
    let (busy, mut busy_client) = connect(&tracker, &l);
    assert!(lot.park(quiet).is_none());
    assert!(lot.park(busy).is_none());
    let started = Instant::now();
    tracker.start_drain();
    // A request within the grace is handed to a thread.
    busy_client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let job = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(job);
    // The quiet one is closed once the grace is over.
    quiet_client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(quiet_client.read(&mut buf).unwrap(), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(quiet_client);
    assert!(tracker.wait_empty(Instant::now() + Duration::from_secs(10)));
    lot.stop();
    drop(busy_client);
}

#[test]
fn stop_closes_parked_connections() {
    let (tracker, lot, _pool, _rx) = setup(Timeouts::default());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let (job, _client) = connect(&tracker, &l);
    assert!(lot.park(job).is_none());
    assert_eq!(tracker.active(), 1);
    lot.stop();
    assert_eq!(tracker.active(), 0);
    // Parking after stop closes at once.
    let (job, _client2) = connect(&tracker, &l);
    assert!(lot.park(job).is_none());
    assert_eq!(tracker.active(), 0);
}

#[test]
fn a_slab_slot_is_a_few_words_whatever_it_holds() {
    // The slab has a slot for every connection the poller knows; what a
    // connection carries lives in a box, so 10,000 idle connections cost
    // 10,000 small slots, not 10,000 copies of a `Conn` (benches/rss.py).
    let slot = std::mem::size_of::<slab::Slot<Timeouts>>();
    let conn = std::mem::size_of::<Conn>();
    assert!(slot <= 32, "a slot is {slot} bytes");
    assert!(
        slot < conn,
        "a slot ({slot} B) holds a Conn ({conn} B) inline"
    );
}

/// A lot served by a pool with harvesting on, whose work reads the
/// request: `GET /block` holds its thread until `release` is dropped;
/// anything else is recorded (with the serving thread) and parked again.
struct Harvesting {
    tracker: Arc<Tracker>,
    lot: Lot,
    _pool: Arc<Pool<Job>>,
    served: std::sync::mpsc::Receiver<(Vec<u8>, std::thread::ThreadId)>,
    release: Option<std::sync::mpsc::Sender<()>>,
}

fn harvesting() -> Harvesting {
    let tracker = Tracker::new().unwrap();
    let lot = ParkLot::new(tracker.clone(), Arc::new(Timeouts::default())).unwrap();
    let (tx, served) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = Mutex::new(hold);
    let work: Work<Job> = {
        let lot = lot.clone();
        Arc::new(move |mut job: Job| loop {
            let mut buf = [0u8; 4096];
            let n = match job
                .conn
                .read_deadline(&mut buf, Instant::now() + Duration::from_secs(10))
            {
                Ok(n) if n > 0 => n,
                _ => return,
            };
            if buf[..n].starts_with(b"GET /block") {
                let _ = hold.lock().unwrap().recv();
            }
            let _ = tx
                .lock()
                .unwrap()
                .send((buf[..n].to_vec(), std::thread::current().id()));
            job.session.served = true;
            match lot.park(job) {
                Some(again) => job = again,
                None => return,
            }
        })
    };
    let pool = Arc::new(Pool::new(
        work,
        64 * 1024,
        Duration::from_secs(5),
        None,
        false,
    ));
    lot.enable_harvest();
    let (a, b, c) = (lot.clone(), lot.clone(), lot.clone());
    pool.set_refill(crate::pool::Refill {
        wanted: Box::new(move || a.harvest_wanted()),
        take: Box::new(move |extra| b.harvest(extra)),
        mine: Box::new(move || c.harvesting()),
    });
    lot.start(pool.clone(), false).unwrap();
    Harvesting {
        tracker,
        lot,
        _pool: pool,
        served,
        release: Some(release),
    }
}

impl Harvesting {
    /// `n` parked connections' client ends.
    fn clients(&self, n: usize) -> Vec<TcpStream> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        (0..n)
            .map(|_| {
                let (job, client) = connect(&self.tracker, &l);
                assert!(self.lot.park(job).is_none());
                client
            })
            .collect()
    }

    fn next(&self) -> (Vec<u8>, std::thread::ThreadId) {
        self.served
            .recv_timeout(Duration::from_secs(10))
            .expect("a request served within 10 s")
    }
}

#[test]
fn a_worker_out_of_work_serves_ready_idle_connections_itself() {
    let h = harvesting();
    let mut clients = h.clients(2);
    // Requests one at a time on two connections: the first goes through the
    // poller and a worker; once that worker has nothing queued, it polls the
    // idle connections itself and serves them as they turn ready.
    for i in 0..200 {
        let c = &mut clients[i % 2];
        c.write_all(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        let (req, _) = h.next();
        assert!(req.starts_with(format!("GET /{i} ").as_bytes()));
    }
    let taken = h.lot.harvest.taken.load(Ordering::Relaxed);
    assert!(
        taken > 100,
        "most of 200 requests on busy connections were taken by a harvesting worker, \
         not handed over by the poller: {taken}"
    );
    h.lot.stop();
}

#[test]
fn a_harvester_held_up_in_a_request_is_taken_over_by_the_poller() {
    let mut h = harvesting();
    let mut clients = h.clients(2);
    // A session runs: connection 0's requests are taken by a harvester.
    let mut i = 0;
    wait_for("a harvesting session", || {
        clients[0]
            .write_all(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes())
            .unwrap();
        h.next();
        i += 1;
        h.lot.harvest.taken.load(Ordering::Relaxed) > 0
            && h.lot.harvest.session.load(Ordering::Acquire) != 0
    });
    // Its handler blocks...
    clients[0]
        .write_all(b"GET /block HTTP/1.1\r\n\r\n")
        .unwrap();
    wait_for("the harvester inside the blocking request", || {
        h.lot.harvest.in_job.load(Ordering::Acquire)
            && h.lot.harvest.session.load(Ordering::Acquire) == 0
    });
    // ...and the other connection is served all the same, by another thread,
    // while it does.
    clients[1]
        .write_all(b"GET /other HTTP/1.1\r\n\r\n")
        .unwrap();
    let (req, _) = h.next();
    assert!(req.starts_with(b"GET /other "), "{req:?}");
    // No new session before the backoff has passed.
    assert!(!h.lot.harvest_wanted(), "sessions pause after a take-over");
    drop(h.release.take());
    let (req, _) = h.next();
    assert!(req.starts_with(b"GET /block "), "{req:?}");
    h.lot.stop();
}
