//! The idle poller: where HTTP connections wait between requests.
//!
//! A thread serves a connection while it has a request to serve. When the
//! connection goes idle (a response written, nothing more buffered), the
//! thread *parks* it here and goes back to the pool for other work. One
//! poller thread watches every parked connection in one epoll set, together
//! with the drain eventfd and its own wake eventfd. A connection is
//! registered once, at its first park, edge-triggered (`EPOLLET`), and keeps
//! its slot while a worker has it (*busy*), so parking it again costs no
//! `epoll_ctl`: an event for a busy slot only marks it ready, and the next
//! park hands the connection straight back. Edge-triggered waiting is sound
//! only if nothing unread raised its event before the park: a connection
//! whose last read came back short of its buffer (`Conn::drained`) had
//! nothing more in the kernel then, and anything later raises a new edge;
//! otherwise the park re-arms with `EPOLL_CTL_MOD`, which reports bytes
//! already there.
//!
//! - a parked connection turns readable (its next request, or its close):
//!   the poller takes it out and queues it on the pool, which hands it to a
//!   thread that serves it (see [`crate::pool`] for how that batches);
//! - its deadline passes (the first head's deadline for a connection that
//!   has sent nothing yet, else the idle timeout): the poller closes it
//!   politely, without a thread: `shutdown(SHUT_WR)`, then it stays in the
//!   set as *lingering*, its input read and discarded, until the peer's end
//!   of stream or the linger timeout;
//! - the drain starts: every parked connection's deadline becomes at most
//!   `drain_grace` away. A request that arrives within the grace is served
//!   (with `Connection: close`, since the server is draining); a connection
//!   that sends nothing is closed politely when its grace ends. That is the
//!   keep-alive race of BRIEF §3 handled for every idle connection at once.
//!
//! An idle keep-alive connection so costs a slot here (a few hundred bytes)
//! and kernel socket buffers, not a thread and its stack.
//!
//! Tokens carry the slot index and a generation, so an event for a slot
//! that has since been reused (possible only while a fork for an upgrade
//! briefly holds a copy of a closed socket) is recognised and ignored.
//! Every `epoll_ctl` on a parked fd happens under the slab lock, while the
//! slot owns the connection, so it never touches a closed or reused fd.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::conn::{Conn, Parking, LINGER_DISCARD_LIMIT};
use crate::drain::Tracker;
use crate::http::conn::Session;
use crate::pool::Pool;
use crate::sys;

/// A connection served by the HTTP runner: the socket and the HTTP state
/// kept between requests. The pool's job for [`crate::Server::serve_http`].
pub(crate) struct HttpConn {
    pub(crate) conn: Conn,
    pub(crate) session: Session,
    /// The connection's slot in the idle poller, held from its first park
    /// until it closes (its epoll registration lives as long).
    slot: Option<SlotRef>,
}

impl HttpConn {
    /// A newly accepted connection.
    pub(crate) fn new(mut conn: Conn) -> HttpConn {
        // With deferred accept its request is normally there already; if
        // not, the first read finds nothing and the connection is parked.
        conn.set_parking(Parking::Ready);
        HttpConn {
            conn,
            session: Session::new(),
            slot: None,
        }
    }
}

/// A busy connection's claim on its slot: frees the slot when the
/// connection is dropped by whoever holds it (a worker closing it, a pool
/// dropping its queue). Never dropped under the slab lock while armed.
struct SlotRef {
    lot: Option<std::sync::Weak<ParkLot>>,
    token: u64,
}

impl SlotRef {
    /// The slab itself is done with the slot: dropping frees nothing.
    fn disarm(&mut self) {
        self.lot = None;
    }
}

impl Drop for SlotRef {
    fn drop(&mut self) {
        if let Some(lot) = self.lot.take().and_then(|w| w.upgrade()) {
            lot.release(self.token);
        }
    }
}

const WAKE: u64 = u64::MAX;
const DRAIN: u64 = u64::MAX - 1;
/// A parked or busy connection: readable, or the peer half-closed,
/// edge-triggered, registered once for the connection's life (so parking
/// again costs no `epoll_ctl`).
const EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// A lingering connection: one delivery per arming.
const LINGER_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32;
/// Deadlines are checked at most this often (they are honoured to within
/// this much).
const MIN_SWEEP: Duration = Duration::from_millis(5);
/// Events taken per `epoll_wait`.
const BATCH: usize = 256;

/// The earlier of `a` (if any) and `b`.
fn earliest(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.min(b))
}

enum Slot {
    Free,
    Parked {
        job: HttpConn,
        deadline: Instant,
    },
    /// A worker has the connection; `ready` once bytes (or the peer's
    /// close) arrived meanwhile, so the next park hands it straight back.
    Busy {
        ready: bool,
    },
    Lingering {
        conn: Conn,
        deadline: Instant,
        left: usize,
    },
}

struct Entry {
    generation: u32,
    slot: Slot,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<u32>,
    parked: usize,
    lingering: usize,
    /// The earliest deadline of any slot (may be stale: early is harmless).
    next_deadline: Option<Instant>,
    draining: bool,
}

impl Slab {
    fn insert(&mut self, slot: Slot) -> u64 {
        let deadline = match &slot {
            Slot::Parked { deadline, .. } => {
                self.parked += 1;
                *deadline
            }
            Slot::Lingering { deadline, .. } => {
                self.lingering += 1;
                *deadline
            }
            Slot::Free | Slot::Busy { .. } => unreachable!("inserting a slot without a connection"),
        };
        self.next_deadline = Some(earliest(self.next_deadline, deadline));
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    slot: Slot::Free,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[idx as usize];
        e.slot = slot;
        (u64::from(e.generation) << 32) | u64::from(idx)
    }

    fn get(&mut self, token: u64) -> Option<&mut Slot> {
        let idx = (token & 0xffff_ffff) as usize;
        let e = self.entries.get_mut(idx)?;
        (u64::from(e.generation) == token >> 32 && !matches!(e.slot, Slot::Free))
            .then_some(&mut e.slot)
    }

    fn remove(&mut self, token: u64) -> Slot {
        let idx = (token & 0xffff_ffff) as u32;
        let e = &mut self.entries[idx as usize];
        let slot = std::mem::replace(&mut e.slot, Slot::Free);
        match slot {
            Slot::Parked { .. } => self.parked -= 1,
            Slot::Lingering { .. } => self.lingering -= 1,
            Slot::Free | Slot::Busy { .. } => {}
        }
        e.generation = e.generation.wrapping_add(1);
        self.free.push(idx);
        slot
    }

    fn token(&self, idx: usize) -> u64 {
        (u64::from(self.entries[idx].generation) << 32) | idx as u64
    }
}

/// The idle poller; see the module docs.
pub(crate) struct ParkLot {
    epfd: OwnedFd,
    wake: OwnedFd,
    slab: Mutex<Slab>,
    stopped: AtomicBool,
    tracker: Arc<Tracker>,
    cfg: crate::http::Config,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ParkLot {
    /// A poller for connections of `tracker`, with `cfg`'s timeouts.
    pub(crate) fn new(tracker: Arc<Tracker>, cfg: crate::http::Config) -> io::Result<Arc<Self>> {
        let epfd = sys::epoll_create()?;
        let wake = sys::eventfd()?;
        sys::epoll_ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            wake.as_raw_fd(),
            libc::EPOLLIN as u32,
            WAKE,
        )?;
        sys::epoll_ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            tracker.drain_fd(),
            (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            DRAIN,
        )?;
        Ok(Arc::new(ParkLot {
            epfd,
            wake,
            slab: Mutex::new(Slab::default()),
            stopped: AtomicBool::new(false),
            tracker,
            cfg,
            thread: Mutex::new(None),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Slab> {
        // Updates under this lock are single replacements; a panic cannot
        // tear the slab, so poisoning is ignored.
        self.slab.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the poller thread, which hands readable connections to
    /// `pool`; with `batch`, under `SCHED_BATCH`.
    pub(crate) fn start(
        self: &Arc<Self>,
        pool: Arc<Pool<HttpConn>>,
        batch: bool,
    ) -> io::Result<()> {
        let lot = self.clone();
        let handle = std::thread::Builder::new()
            .name("grace-idle".into())
            .spawn(move || {
                if batch {
                    sys::sched_batch();
                }
                lot.run(&pool)
            })?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Stops the poller thread and closes every connection still parked.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        if let Err(e) = sys::eventfd_signal(self.wake.as_raw_fd()) {
            log::error!("[{}] cannot wake the idle poller: {e}", sys::getpid());
        }
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        let mut slab = self.lock();
        let entries = std::mem::take(&mut slab.entries);
        *slab = Slab::default();
        drop(slab);
        drop(entries);
    }

    /// Serves on after a drain was ended early (a rollback,
    /// [`Tracker::end_drain`], which cleared the drain fd first): idle
    /// connections get their normal deadlines again, and the next drain
    /// wakes the poller as the first one did.
    pub(crate) fn resume(&self) {
        let mut slab = self.lock();
        slab.draining = false;
        if let Err(e) = sys::epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            self.tracker.drain_fd(),
            (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            DRAIN,
        ) {
            log::error!("[{}] cannot re-arm the drain fd: {e}", sys::getpid());
        }
    }

    /// (parked, lingering) connections, for tests and logs.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let slab = self.lock();
        (slab.parked, slab.lingering)
    }

    /// Parks `job` until its socket is readable or its deadline passes.
    /// Returns it instead if bytes arrived while it was busy: serve on.
    #[must_use]
    pub(crate) fn park(self: &Arc<Self>, mut job: HttpConn) -> Option<HttpConn> {
        let now = Instant::now();
        let mut slab = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            drop(slab);
            // The server is gone: close (dropping the connection closes it).
            return None;
        }
        let mut deadline = job.session.idle_deadline(&self.cfg, now);
        if self.tracker.draining() {
            deadline = deadline.min(now + self.cfg.drain_grace);
        }
        let fd = job.conn.as_raw_fd();
        let mut op = libc::EPOLL_CTL_ADD;
        if let Some(token) = job.slot.as_ref().map(|s| s.token) {
            match slab.get(token) {
                Some(Slot::Busy { ready }) if *ready => {
                    // Bytes (or the peer's close) came in while it was busy;
                    // possibly already read with the last request, which
                    // the hand-off's first read finds out.
                    *ready = false;
                    drop(slab);
                    job.conn.set_parking(Parking::Ready);
                    return Some(job);
                }
                Some(slot @ Slot::Busy { .. }) => {
                    let drained = job.conn.drained;
                    *slot = Slot::Parked { job, deadline };
                    slab.parked += 1;
                    if drained {
                        // Registered already, and whatever arrives next
                        // raises a fresh event: no epoll_ctl.
                        self.note_deadline(slab, deadline);
                        return None;
                    }
                    // The last read filled its buffer: bytes may wait in the
                    // kernel that raised their event before it. Re-arming
                    // reports them.
                    return self.arm(slab, fd, libc::EPOLL_CTL_MOD, token, deadline);
                }
                // Not ours any more (cannot happen): register afresh.
                _ => {
                    if let Some(mut s) = job.slot.take() {
                        s.disarm();
                    }
                    op = libc::EPOLL_CTL_MOD;
                }
            }
        }
        let token = slab.insert(Slot::Parked { job, deadline });
        if let Some(Slot::Parked { job, .. }) = slab.get(token) {
            job.slot = Some(SlotRef {
                lot: Some(Arc::downgrade(self)),
                token,
            });
        }
        self.arm(slab, fd, op, token, deadline)
    }

    /// Watches the connection parked at `token` (under the lock, so an event
    /// for it waits for the slot to exist); closes it if that fails.
    fn arm(
        &self,
        mut slab: MutexGuard<'_, Slab>,
        fd: RawFd,
        op: libc::c_int,
        token: u64,
        deadline: Instant,
    ) -> Option<HttpConn> {
        if let Err(e) = sys::epoll_ctl(self.epfd.as_raw_fd(), op, fd, EVENTS, token) {
            // Dropped after the lock: its slot claim finds the slot gone.
            let slot = slab.remove(token);
            drop(slab);
            log::warn!(
                "[{}] cannot watch an idle connection ({e}); closing it",
                sys::getpid()
            );
            drop(slot);
            return None;
        }
        self.note_deadline(slab, deadline);
        None
    }

    /// After parking with `deadline`: wakes the poller if that is now the
    /// earliest, since it may be sleeping past it.
    fn note_deadline(&self, mut slab: MutexGuard<'_, Slab>, deadline: Instant) {
        slab.next_deadline = Some(earliest(slab.next_deadline, deadline));
        let wake_poller = slab.next_deadline == Some(deadline);
        drop(slab);
        if wake_poller {
            let _ = sys::eventfd_signal(self.wake.as_raw_fd());
        }
    }

    /// Frees the slot of a busy connection that is closing.
    fn release(&self, token: u64) {
        let mut slab = self.lock();
        if let Some(Slot::Busy { .. }) = slab.get(token) {
            slab.remove(token);
        }
    }

    /// Re-arms a lingering connection's one-shot registration.
    fn rearm(&self, fd: RawFd, token: u64) -> io::Result<()> {
        sys::epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            fd,
            LINGER_EVENTS,
            token,
        )
    }

    /// The poller thread.
    fn run(&self, pool: &Pool<HttpConn>) {
        let pid = sys::getpid();
        let mut events = vec![sys::epoll_event(); BATCH];
        let mut ready: Vec<HttpConn> = Vec::new();
        let mut closed: Vec<Conn> = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            let timeout = self.lock().next_deadline.map(|d| {
                d.max(last_sweep + MIN_SWEEP)
                    .saturating_duration_since(Instant::now())
            });
            let n = match sys::epoll_wait(self.epfd.as_raw_fd(), &mut events, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    log::error!("[{pid}] idle poller: {e}");
                    std::thread::sleep(MIN_SWEEP);
                    0
                }
            };
            let now = Instant::now();
            let mut slab = self.lock();
            for ev in &events[..n] {
                match ev.u64 {
                    WAKE => {
                        let _ = sys::eventfd_clear(self.wake.as_raw_fd());
                    }
                    DRAIN => {
                        slab.draining = true;
                        let grace_end = now + self.cfg.drain_grace;
                        for e in slab.entries.iter_mut() {
                            if let Slot::Parked { deadline, .. } = &mut e.slot {
                                *deadline = (*deadline).min(grace_end);
                            }
                        }
                        if slab.parked > 0 {
                            slab.next_deadline = Some(earliest(slab.next_deadline, grace_end));
                        }
                        log::debug!(
                            "[{pid}] draining {} idle connection(s): closing each that sends \
                             nothing within {}",
                            slab.parked,
                            crate::fmt::Dur(self.cfg.drain_grace)
                        );
                    }
                    token => self.on_ready(&mut slab, token, &mut ready, &mut closed),
                }
            }
            if slab.next_deadline.is_some_and(|d| d <= now) {
                last_sweep = now;
                self.sweep(&mut slab, now, &mut closed);
            }
            drop(slab);
            closed.clear();
            for mut job in ready.drain(..) {
                job.conn.set_parking(Parking::Ready);
                pool.dispatch(job);
            }
            if self.stopped.load(Ordering::Acquire) {
                break;
            }
        }
        log::debug!("[{pid}] idle poller stopped");
    }

    fn on_ready(
        &self,
        slab: &mut Slab,
        token: u64,
        ready: &mut Vec<HttpConn>,
        closed: &mut Vec<Conn>,
    ) {
        let done = match slab.get(token) {
            // Stale (the slot was reused) or already free.
            None | Some(Slot::Free) => return,
            Some(Slot::Busy { ready }) => {
                *ready = true;
                return;
            }
            Some(slot @ Slot::Parked { .. }) => {
                // The connection goes to a worker; the slot (and the
                // registration) stay, marked busy.
                if let Slot::Parked { job, .. } =
                    std::mem::replace(slot, Slot::Busy { ready: false })
                {
                    slab.parked -= 1;
                    ready.push(job);
                }
                return;
            }
            Some(Slot::Lingering { conn, left, .. }) => {
                conn.discard_ready(left) || self.rearm(conn.as_raw_fd(), token).is_err()
            }
        };
        if done {
            if let Slot::Lingering { conn, .. } = slab.remove(token) {
                closed.push(conn);
            }
        }
    }

    /// Closes what is due: parked connections past their deadline start a
    /// polite close; lingering ones past theirs are closed.
    fn sweep(&self, slab: &mut Slab, now: Instant, closed: &mut Vec<Conn>) {
        let pid = sys::getpid();
        let mut next: Option<Instant> = None;
        let linger_end = now + self.cfg.linger_timeout;
        for idx in 0..slab.entries.len() {
            let deadline = match &slab.entries[idx].slot {
                Slot::Free | Slot::Busy { .. } => continue,
                Slot::Parked { deadline, .. } | Slot::Lingering { deadline, .. } => *deadline,
            };
            if deadline > now {
                next = Some(earliest(next, deadline));
                continue;
            }
            let token = slab.token(idx);
            match slab.remove(token) {
                Slot::Parked { mut job, .. } => {
                    // The slab frees the slot itself (under its lock).
                    if let Some(s) = job.slot.as_mut() {
                        s.disarm();
                    }
                    log::debug!(
                        "[{pid}] closing idle connection: {}",
                        if slab.draining {
                            "draining"
                        } else if job.session.stats.requests == 0 {
                            "no request in time"
                        } else {
                            "timed out"
                        }
                    );
                    if !job.conn.begin_linger() {
                        closed.push(job.conn);
                        continue;
                    }
                    let fd = job.conn.as_raw_fd();
                    let token = slab.insert(Slot::Lingering {
                        conn: job.conn,
                        deadline: linger_end,
                        left: LINGER_DISCARD_LIMIT,
                    });
                    next = Some(earliest(next, linger_end));
                    if self.rearm(fd, token).is_err() {
                        if let Slot::Lingering { conn, .. } = slab.remove(token) {
                            closed.push(conn);
                        }
                    }
                }
                Slot::Lingering { conn, .. } => closed.push(conn),
                Slot::Free | Slot::Busy { .. } => {}
            }
        }
        slab.next_deadline = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::wait_for;
    use crate::pool::Work;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A parked connection, its client end, and a pool whose work records
    /// what it was handed.
    fn setup(
        cfg: crate::http::Config,
    ) -> (
        Arc<Tracker>,
        Arc<ParkLot>,
        Arc<Pool<HttpConn>>,
        std::sync::mpsc::Receiver<HttpConn>,
    ) {
        let tracker = Tracker::new().unwrap();
        let lot = ParkLot::new(tracker.clone(), cfg).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let work: Work<HttpConn> = Arc::new(move |job| {
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
    fn parked(
        cfg: crate::http::Config,
    ) -> (
        Arc<Tracker>,
        Arc<ParkLot>,
        std::sync::mpsc::Receiver<HttpConn>,
        TcpStream,
    ) {
        let (tracker, lot, _pool, rx) = setup(cfg);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (job, client) = connect(&tracker, &l);
        assert!(lot.park(job).is_none());
        (tracker, lot, rx, client)
    }

    fn connect(tracker: &Arc<Tracker>, l: &TcpListener) -> (HttpConn, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let owned: OwnedFd = server.into();
        let reg = tracker.register(owned.as_raw_fd());
        let conn = Conn::new(owned, sys::SockAddr::Inet(peer), reg);
        (HttpConn::new(conn), client)
    }

    #[test]
    fn readable_connection_is_handed_back_once() {
        let (tracker, lot, rx, mut client) = parked(crate::http::Config::default());
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

    fn busy_slots(lot: &ParkLot) -> usize {
        let slab = lot.lock();
        slab.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Busy { .. }))
            .count()
    }

    /// Reads what the client sent (a short read: the kernel is drained).
    fn read_request(job: &mut HttpConn) {
        let mut buf = [0u8; 4096];
        let n = job
            .conn
            .read_deadline(&mut buf, Instant::now() + Duration::from_secs(10))
            .unwrap();
        assert!(n > 0 && job.conn.drained);
    }

    #[test]
    fn a_served_connection_parked_again_wakes_on_its_next_bytes() {
        let (_tracker, lot, rx, mut client) = parked(crate::http::Config::default());
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
        let (_tracker, lot, rx, mut client) = parked(crate::http::Config::default());
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
    fn a_hand_off_with_nothing_to_read_parks_again_instead_of_waiting() {
        // An edge-triggered event can be for bytes a worker's earlier read
        // already took (a pipelining client): the next worker must not wait
        // on the connection with a thread, nor time it out with 408.
        let cfg = crate::http::Config::default();
        let tracker = Tracker::new().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut job, _client) = connect(&tracker, &l);
        job.conn.set_parking(Parking::Ready);
        let handler = |_req: http::Request<crate::http::RequestBody<'_>>| {
            http::Response::new(crate::http::ResponseBody::from("hi\n"))
        };
        let started = Instant::now();
        let step = crate::http::conn::serve_ready(&mut job.conn, &handler, &cfg, &mut job.session);
        assert!(matches!(step, crate::http::conn::Step::Park));
        assert!(
            started.elapsed() < cfg.head_timeout,
            "waited {:?}",
            started.elapsed()
        );
        assert_eq!(job.session.stats.requests, 0);
    }

    #[test]
    fn a_busy_connection_that_closes_frees_its_slot() {
        let (tracker, lot, rx, mut client) = parked(crate::http::Config::default());
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
        let cfg = crate::http::Config {
            idle_timeout: Duration::from_millis(50),
            head_timeout: Duration::from_millis(50),
            linger_timeout: Duration::from_secs(5),
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
        let cfg = crate::http::Config {
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
        let (tracker, lot, _pool, _rx) = setup(crate::http::Config::default());
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
}
