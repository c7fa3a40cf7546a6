//! The tracker's counts, waits, drains and forced closes.

use super::*;

#[test]
fn tracked_streams_are_counted_drained_and_forced() {
    use std::io::Read;
    let t = Tracker::new().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    let conn = t.track(server);
    conn.set_state(ConnState::Busy);
    assert_eq!((t.active(), t.busy()), (1, 1));
    assert_eq!(t.start_drain(), (1, 1));
    // Still busy at the deadline: shut down by force, which the peer
    // sees as the end of the stream.
    assert!(!t.wait_empty(Instant::now() + Duration::from_millis(20)));
    assert_eq!(t.force_close(), 1);
    assert!(conn.was_forced());
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    drop(conn);
    assert!(t.wait_empty(Instant::now() + Duration::from_secs(10)));
}

#[test]
fn counts_and_waits() {
    let t = Tracker::new().unwrap();
    let a = t.register(100);
    let b = t.register(101);
    assert_eq!(t.active(), 2);
    b.set_state(ConnState::Busy);
    assert_eq!(t.busy(), 1);
    assert_eq!(t.states(), (1, 0, 1, 0));
    let (open, busy) = t.start_drain();
    assert_eq!((open, busy), (2, 1));
    assert!(t.draining());
    let t2 = t.clone();
    let h = std::thread::spawn(move || t2.wait_empty(Instant::now() + Duration::from_secs(10)));
    drop(a);
    drop(b);
    assert!(h.join().unwrap());
    assert_eq!(t.busy(), 0);
    assert_eq!(t.active(), 0);
}

#[test]
fn wait_empty_times_out() {
    let t = Tracker::new().unwrap();
    let _a = t.register(100);
    let start = Instant::now();
    assert!(!t.wait_empty(start + Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
}
