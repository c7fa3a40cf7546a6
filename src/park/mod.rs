//! The idle poller: where connections wait between requests.
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
//! **Harvesting** ([`ParkLot::harvest`], on unless
//! `ServerConfig::harvest` is off): a pool worker that runs out of queued
//! work starts a *session* (one at a time per lot): it waits in
//! `epoll_wait` on this epoll set itself (up to 16 events; one it serves,
//! the others go to the back of the pool's queue for it to take next,
//! waking nobody) and goes from ready connection to ready connection
//! without the poller thread. Meanwhile the poller stays out of
//! `epoll_wait`, so it is neither woken for each event nor hands
//! connections to other threads; it ticks every 500 µs ([`ParkLot::watch`]),
//! sweeps deadlines, and takes over when the harvester has been inside one
//! request for a whole tick (a handler that blocks): the session ends, the
//! connections the harvester had queued for itself go to other threads,
//! and no session starts for 50 ms (doubling, up to 1 s, while sessions
//! keep ending that way). A session also ends when nothing is ready for
//! 1 ms, when the drain starts, and at stop.
//!
//! Tokens carry the slot index and a generation, so an event for a slot
//! that has since been reused (possible only while a fork for an upgrade
//! briefly holds a copy of a closed socket) is recognised and ignored.
//! Every `epoll_ctl` on a parked fd happens under the slab lock, while the
//! slot owns the connection, so it never touches a closed or reused fd.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

mod slab;
#[cfg(test)]
mod tests;

use crate::conn::{Conn, Parking, LINGER_DISCARD_LIMIT};
use crate::drain::Tracker;
use crate::pool::Pool;
use crate::protocol::Protocol;
use crate::sys;
use slab::{earliest, Slab, Slot, SlotRef};

/// A connection of a parking server: the socket and the protocol's state
/// kept between requests, in one box for the connection's whole life. The
/// pool's job for [`crate::Server::serve_parked`]. A connection moves
/// between the accept thread, the pool's queue, a worker and the poller's
/// slab several times per request; boxed, a pointer moves where the whole
/// struct (some hundreds of bytes) would be copied each time (measured with
/// callgrind: `benches/callgrind.sh`).
pub(crate) type Parked<P> = Box<ParkedConn<P>>;

/// What a [`Parked`] owns.
pub(crate) struct ParkedConn<P: Protocol> {
    pub(crate) conn: Conn,
    pub(crate) session: P::Session,
    /// The connection's slot in the idle poller, held from its first park
    /// until it closes (its epoll registration lives as long).
    slot: Option<SlotRef<P>>,
}

impl<P: Protocol> ParkedConn<P> {
    /// A newly accepted connection.
    pub(crate) fn new(mut conn: Conn, proto: &P) -> Parked<P> {
        // With deferred accept its request is normally there already; if
        // not, the first read finds nothing and the connection is parked.
        conn.set_parking(Parking::Ready);
        let session = proto.open(&conn);
        Box::new(ParkedConn {
            conn,
            session,
            slot: None,
        })
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
/// A harvesting session ends when nothing is ready for this long.
const HARVEST_IDLE: Duration = Duration::from_millis(1);
/// Events a harvester takes per `epoll_wait`.
const HARVEST_BATCH: usize = 16;
/// How often the poller checks on a harvesting session.
const WATCH_TICK: Duration = Duration::from_micros(500);
/// After a session that had to be taken over, none starts for this long
/// (doubling up to `BACKOFF_MAX` while sessions keep getting stuck).
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Session ids, unique across lots.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The harvesting session this thread runs (0: none).
    static MY_SESSION: Cell<u64> = const { Cell::new(0) };
}

/// The harvesting session's shared state.
struct Harvest {
    /// Set once a pool with a refill serves this lot.
    enabled: AtomicBool,
    /// The running session's id (0: none).
    session: AtomicU64,
    /// Bumped by the harvester at every step.
    progress: AtomicU64,
    /// The harvester is serving a connection (not polling).
    in_job: AtomicBool,
    /// Connections taken by harvesters (for tests and the stop log).
    taken: AtomicU64,
    /// The clock's origin for `backoff_until`.
    origin: Instant,
    /// No session starts before this (nanoseconds after `origin`).
    backoff_until: AtomicU64,
    /// The next backoff, in nanoseconds.
    backoff_len: AtomicU64,
    poller: OnceLock<std::thread::Thread>,
}

/// The idle poller; see the module docs.
pub(crate) struct ParkLot<P: Protocol> {
    epfd: OwnedFd,
    wake: OwnedFd,
    slab: Mutex<Slab<P>>,
    stopped: AtomicBool,
    tracker: Arc<Tracker>,
    proto: Arc<P>,
    /// `proto`'s timeouts, read once.
    drain_grace: Duration,
    linger_timeout: Duration,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    harvest: Harvest,
}

impl<P: Protocol> ParkLot<P> {
    /// A poller for connections of `tracker` served with `proto` (its idle
    /// deadlines and timeouts).
    pub(crate) fn new(tracker: Arc<Tracker>, proto: Arc<P>) -> io::Result<Arc<Self>> {
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
            tracker.drain_fd().as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLONESHOT) as u32,
            DRAIN,
        )?;
        Ok(Arc::new(ParkLot {
            epfd,
            wake,
            slab: Mutex::new(Slab::default()),
            stopped: AtomicBool::new(false),
            tracker,
            drain_grace: proto.drain_grace(),
            linger_timeout: proto.linger_timeout(),
            proto,
            thread: Mutex::new(None),
            harvest: Harvest {
                enabled: AtomicBool::new(false),
                session: AtomicU64::new(0),
                progress: AtomicU64::new(0),
                in_job: AtomicBool::new(false),
                taken: AtomicU64::new(0),
                origin: Instant::now(),
                backoff_until: AtomicU64::new(0),
                backoff_len: AtomicU64::new(BACKOFF_MIN.as_nanos() as u64),
                poller: OnceLock::new(),
            },
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Slab<P>> {
        // Updates under this lock are single replacements; a panic cannot
        // tear the slab, so poisoning is ignored.
        self.slab.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the poller thread, which hands readable connections to
    /// `pool`; with `batch`, under `SCHED_BATCH`.
    pub(crate) fn start(
        self: &Arc<Self>,
        pool: Arc<Pool<Parked<P>>>,
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
    /// [`Tracker::end_drain`], which cleared the drain fd first):
    /// connections parked from now on get their normal deadlines, and the
    /// next drain wakes the poller as the first one did. Those parked
    /// during the drain keep its shorter deadline and are closed politely
    /// when it ends, idle as they are (their clients open a new
    /// connection; no request is lost).
    pub(crate) fn resume(&self) {
        let mut slab = self.lock();
        slab.draining = false;
        if let Err(e) = sys::epoll_ctl(
            self.epfd.as_raw_fd(),
            libc::EPOLL_CTL_MOD,
            self.tracker.drain_fd().as_raw_fd(),
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
    pub(crate) fn park(self: &Arc<Self>, mut job: Parked<P>) -> Option<Parked<P>> {
        let now = Instant::now();
        let mut slab = self.lock();
        if self.stopped.load(Ordering::Acquire) {
            drop(slab);
            // The server is gone: close (dropping the connection closes it).
            return None;
        }
        let mut deadline = self.proto.idle_deadline(&job.session, now);
        if self.tracker.draining() {
            deadline = deadline.min(now + self.drain_grace);
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
        mut slab: MutexGuard<'_, Slab<P>>,
        fd: RawFd,
        op: libc::c_int,
        token: u64,
        deadline: Instant,
    ) -> Option<Parked<P>> {
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
    fn note_deadline(&self, mut slab: MutexGuard<'_, Slab<P>>, deadline: Instant) {
        slab.next_deadline = Some(earliest(slab.next_deadline, deadline));
        let wake_poller = slab.next_deadline == Some(deadline);
        drop(slab);
        if wake_poller {
            let _ = sys::eventfd_signal(self.wake.as_raw_fd());
        }
    }

    /// Frees the slot of a busy connection that is closing.
    pub(super) fn release(&self, token: u64) {
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
    fn run(&self, pool: &Pool<Parked<P>>) {
        let pid = sys::getpid();
        let mut events = vec![sys::epoll_event(); BATCH];
        let mut ready: Vec<Parked<P>> = Vec::new();
        let mut closed: Vec<Conn> = Vec::new();
        let mut last_sweep = Instant::now();
        let _ = self.harvest.poller.set(std::thread::current());
        loop {
            if self.harvest.session.load(Ordering::Acquire) != 0 {
                self.watch(pool, &mut closed);
                if self.stopped.load(Ordering::Acquire) {
                    break;
                }
                continue;
            }
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
                if ev.u64 == WAKE {
                    let _ = sys::eventfd_clear(self.wake.as_raw_fd());
                } else {
                    self.on_event(&mut slab, ev.u64, now, &mut ready, &mut closed);
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
        log::debug!(
            "[{pid}] idle poller stopped ({} ready connection(s) were taken by harvesting workers)",
            self.harvest.taken.load(Ordering::Relaxed)
        );
    }

    /// Handles one event other than the poller's own wake: the drain
    /// starting, or a parked or lingering connection turning readable.
    fn on_event(
        &self,
        slab: &mut Slab<P>,
        token: u64,
        now: Instant,
        ready: &mut Vec<Parked<P>>,
        closed: &mut Vec<Conn>,
    ) {
        if token != DRAIN {
            return self.on_ready(slab, token, ready, closed);
        }
        slab.draining = true;
        let grace_end = now + self.drain_grace;
        for e in slab.entries.iter_mut() {
            if let Slot::Parked { deadline, .. } = &mut e.slot {
                *deadline = (*deadline).min(grace_end);
            }
        }
        if slab.parked > 0 {
            slab.next_deadline = Some(earliest(slab.next_deadline, grace_end));
        }
        log::debug!(
            "[{}] draining {} idle connection(s): closing each that sends \
             nothing within {}",
            sys::getpid(),
            slab.parked,
            crate::fmt::Dur(self.drain_grace)
        );
    }

    /// The poller's part while a worker harvests: check on it every tick
    /// (and sweep deadlines); take over if it is stuck in a handler.
    fn watch(&self, pool: &Pool<Parked<P>>, closed: &mut Vec<Conn>) {
        let h = &self.harvest;
        let mut last = h.progress.load(Ordering::Acquire);
        let mut since = Instant::now();
        loop {
            // A harvester starting a session signals the wake, and one that
            // sees it still set unparks us: clear it (it is level-triggered
            // for the harvester's epoll_wait too), then look at `stopped`,
            // which `stop` sets before it signals.
            let _ = sys::eventfd_clear(self.wake.as_raw_fd());
            let session = h.session.load(Ordering::Acquire);
            if session == 0 {
                // Ended by the harvester. Jobs it queued for itself after
                // that were queued loudly (`harvesting` said no); any from
                // before go to everybody now.
                pool.kick();
                return;
            }
            if self.stopped.load(Ordering::Acquire) {
                let _ = h
                    .session
                    .compare_exchange(session, 0, Ordering::AcqRel, Ordering::Acquire);
                pool.kick();
                return;
            }
            let now = Instant::now();
            let p = h.progress.load(Ordering::Acquire);
            if p != last {
                (last, since) = (p, now);
            } else if h.in_job.load(Ordering::Acquire) && now >= since + WATCH_TICK {
                // Inside one request for a whole tick (a handler that
                // blocks): poll again ourselves, and hold off the next
                // session.
                if h.session
                    .compare_exchange(session, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    let len = h.backoff_len.load(Ordering::Relaxed);
                    let at = now.saturating_duration_since(h.origin).as_nanos() as u64;
                    h.backoff_until.store(at + len, Ordering::Release);
                    h.backoff_len.store(
                        (len * 2).min(BACKOFF_MAX.as_nanos() as u64),
                        Ordering::Relaxed,
                    );
                    log::debug!(
                        "[{}] a harvesting worker is held up in a request: the idle poller \
                         takes over",
                        sys::getpid()
                    );
                }
                // What it queued for itself goes to other threads.
                pool.kick();
                return;
            }
            {
                let mut slab = self.lock();
                if slab.next_deadline.is_some_and(|d| d <= now) {
                    self.sweep(&mut slab, now, closed);
                }
            }
            closed.clear();
            std::thread::park_timeout(WATCH_TICK);
        }
    }

    /// Lets workers harvest (the pool's refill is [`ParkLot::harvest`]).
    pub(crate) fn enable_harvest(&self) {
        self.harvest.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether a worker out of queued work should try [`ParkLot::harvest`]
    /// (atomics only: called under the pool's lock).
    pub(crate) fn harvest_wanted(&self) -> bool {
        let h = &self.harvest;
        if !h.enabled.load(Ordering::Relaxed) || self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        let session = h.session.load(Ordering::Acquire);
        if session != 0 {
            return MY_SESSION.with(|c| c.get()) == session;
        }
        let until = h.backoff_until.load(Ordering::Acquire);
        until == 0 || h.origin.elapsed().as_nanos() as u64 >= until
    }

    /// Whether the calling thread is the harvester of the live session (the
    /// pool's `Refill::mine`: the jobs it queues are its own, and wake
    /// nobody). Whoever ends a session kicks the pool after, under whose
    /// lock this is asked, so no job is left waiting for a thread that no
    /// longer harvests.
    pub(crate) fn harvesting(&self) -> bool {
        let session = self.harvest.session.load(Ordering::Acquire);
        session != 0 && MY_SESSION.with(|c| c.get()) == session
    }

    /// Called by a pool worker that has run out of queued work, before it
    /// sleeps: start (or go on with) a harvesting session, and return the
    /// next ready connection for this worker to serve itself.
    pub(crate) fn harvest(&self, extra: &mut Vec<Parked<P>>) -> Option<Parked<P>> {
        let h = &self.harvest;
        if !h.enabled.load(Ordering::Relaxed) || self.stopped.load(Ordering::Acquire) {
            return None;
        }
        let mine = MY_SESSION.with(|c| c.get());
        let session = h.session.load(Ordering::Acquire);
        if mine == 0 || mine != session {
            MY_SESSION.with(|c| c.set(0));
            if session != 0 || self.tracker.draining() {
                return None;
            }
            let until = h.backoff_until.load(Ordering::Acquire);
            if until != 0 && (h.origin.elapsed().as_nanos() as u64) < until {
                return None;
            }
            let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
            if h.session
                .compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return None;
            }
            MY_SESSION.with(|c| c.set(id));
            // Take the poller out of its epoll_wait.
            let _ = sys::eventfd_signal(self.wake.as_raw_fd());
        }
        let id = MY_SESSION.with(|c| c.get());
        h.in_job.store(false, Ordering::Release);
        h.progress.fetch_add(1, Ordering::AcqRel);
        let mut ev = [sys::epoll_event(); HARVEST_BATCH];
        let mut ready = Vec::new();
        let mut closed = Vec::new();
        for _ in 0..1000 {
            let n =
                sys::epoll_wait(self.epfd.as_raw_fd(), &mut ev, Some(HARVEST_IDLE)).unwrap_or(0);
            if self.stopped.load(Ordering::Acquire) {
                // What the events name stays in the slab, which `stop`
                // closes.
                break;
            }
            let mut drain = false;
            let mut woke = false;
            {
                let now = Instant::now();
                let mut slab = self.lock();
                for e in &ev[..n] {
                    match e.u64 {
                        WAKE => woke = true,
                        token => {
                            drain |= token == DRAIN;
                            self.on_event(&mut slab, token, now, &mut ready, &mut closed);
                        }
                    }
                }
            }
            closed.clear();
            // Taken out of epoll, an event is never reported again: every
            // connection it made ready is served, here or from the queue.
            let ended = h.session.load(Ordering::Acquire) != id;
            if !ready.is_empty() {
                for j in ready.iter_mut() {
                    j.conn.set_parking(Parking::Ready);
                }
                if ended || drain {
                    // The poller takes over (the drain is its to run); this
                    // thread serves these from the queue.
                    extra.append(&mut ready);
                    break;
                }
                h.taken.fetch_add(ready.len() as u64, Ordering::Relaxed);
                let job = ready.remove(0);
                extra.append(&mut ready);
                h.in_job.store(true, Ordering::Release);
                h.progress.fetch_add(1, Ordering::AcqRel);
                return Some(job);
            }
            if ended || drain || n == 0 {
                break;
            }
            if woke {
                // The poller's wake is still set (level-triggered): have it
                // cleared.
                if let Some(t) = h.poller.get() {
                    t.unpark();
                }
                std::thread::yield_now();
            }
        }
        // The session ends: the poller polls again.
        MY_SESSION.with(|c| c.set(0));
        if h.session
            .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            h.backoff_len
                .store(BACKOFF_MIN.as_nanos() as u64, Ordering::Relaxed);
            if let Some(t) = h.poller.get() {
                t.unpark();
            }
        }
        None
    }

    fn on_ready(
        &self,
        slab: &mut Slab<P>,
        token: u64,
        ready: &mut Vec<Parked<P>>,
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
                closed.push(*conn);
            }
        }
    }

    /// Closes what is due: parked connections past their deadline start a
    /// polite close; lingering ones past theirs are closed.
    fn sweep(&self, slab: &mut Slab<P>, now: Instant, closed: &mut Vec<Conn>) {
        let pid = sys::getpid();
        let mut next: Option<Instant> = None;
        let linger_end = now + self.linger_timeout;
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
                Slot::Parked { job, .. } => {
                    let mut job = *job;
                    // The slab frees the slot itself (under its lock).
                    if let Some(s) = job.slot.as_mut() {
                        s.disarm();
                    }
                    log::debug!(
                        "[{pid}] closing idle connection: {}",
                        if slab.draining {
                            "draining"
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
                        conn: Box::new(job.conn),
                        deadline: linger_end,
                        left: LINGER_DISCARD_LIMIT,
                    });
                    next = Some(earliest(next, linger_end));
                    if self.rearm(fd, token).is_err() {
                        if let Slot::Lingering { conn, .. } = slab.remove(token) {
                            closed.push(*conn);
                        }
                    }
                }
                Slot::Lingering { conn, .. } => closed.push(*conn),
                Slot::Free | Slot::Busy { .. } => {}
            }
        }
        slab.next_deadline = next;
    }
}
