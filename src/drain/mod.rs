//! Layer 3: drain. A [`Tracker`] counts live connections with atomics, keeps a
//! registry of their sockets and states so a drain can see and force them,
//! and lets a drain wait on a condvar until the count reaches zero.
//!
//! The drain sequence (run by [`crate::Server`] on shutdown and after a
//! handover) is:
//! 1. [`Tracker::start_drain`]: set the draining flag and signal the drain
//!    eventfd. The idle poller (which holds every parked HTTP connection)
//!    and every idle connection thread of a plain work function watch that
//!    fd, so all idle connections learn of the drain at once; a busy one
//!    sees the flag when it writes its response and says `Connection: close`.
//! 2. The accept thread is woken and the listener fds are closed.
//! 3. [`Tracker::wait_empty`] waits on the condvar for the last connection.
//! 4. After `stop_timeout`, [`Tracker::force_close`] shuts down the sockets
//!    still registered (connection sockets are not shared, so `shutdown` is
//!    right here), and the drain waits a bounded while for their threads.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::sys;

mod token;
mod tracked;

pub use token::DrainToken;
pub use tracked::{Trackable, Tracked};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ConnState {
    /// Accepted, no byte received yet. Counts as idle for a drain.
    New = 0,
    /// Waiting for the next request on a kept-alive connection.
    Idle = 1,
    /// Reading a request, running the handler or writing the response.
    Busy = 2,
    /// Being closed.
    Closed = 3,
    /// Switched protocols (a `101` answered, a WebSocket say): the
    /// connection belongs to its handler's thread until it closes. A drain
    /// tells it through its [`DrainToken`] and forces it after the stop
    /// timeout like a busy one.
    Upgraded = 4,
}

impl ConnState {
    fn from_u8(v: u8) -> ConnState {
        match v {
            0 => ConnState::New,
            1 => ConnState::Idle,
            2 => ConnState::Busy,
            4 => ConnState::Upgraded,
            _ => ConnState::Closed,
        }
    }
}

/// A connection's entry in the registry.
#[derive(Debug)]
pub(crate) struct Slot {
    fd: RawFd,
    state: AtomicU8,
    forced: AtomicBool,
}

impl Slot {
    pub(crate) fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct Registry {
    slots: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
    /// Threads waiting on the condvar; a close notifies only if there are any.
    waiters: usize,
}

/// What a drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainStats {
    /// From the start of the drain until the last connection closed (or the
    /// drain gave up on it).
    pub duration: Duration,
    /// Connections open when the drain started.
    pub open_at_start: usize,
    /// Of those, busy (mid-request) when the drain started.
    pub busy_at_start: usize,
    /// Of those, upgraded ([`ConnState::Upgraded`]: WebSockets and the
    /// like) when the drain started.
    pub upgraded_at_start: usize,
    /// Connections that finished by themselves during the drain.
    pub finished: usize,
    /// Connections shut down by force after `stop_timeout`.
    pub forced: usize,
    /// Forced connections whose threads had still not finished when the
    /// drain returned.
    pub abandoned: usize,
    /// The drain was ended early by a rollback ([`Tracker::end_drain`]).
    pub cancelled: bool,
}

/// Counts and registers live connections; see the module docs.
#[derive(Debug)]
pub struct Tracker {
    registry: Mutex<Registry>,
    cond: Condvar,
    active: AtomicUsize,
    busy: AtomicUsize,
    upgraded: AtomicUsize,
    /// `upgraded` when the last drain started.
    upgraded_at_drain: AtomicUsize,
    draining: AtomicBool,
    /// Going away (a shutdown delay, then the drain): responses close.
    closing: AtomicBool,
    /// Bumped by [`Tracker::end_drain`]: a drain of an older epoch gives up.
    epoch: AtomicU64,
    drain_fd: OwnedFd,
    accepted: AtomicU64,
    closed: AtomicU64,
}

/// A registered connection. Dropping it deregisters the connection; the
/// owner must drop it *before* closing the fd, so the drain never shuts down
/// a descriptor number that was already reused.
#[derive(Debug)]
pub(crate) struct Registration {
    tracker: Arc<Tracker>,
    id: usize,
    slot: Arc<Slot>,
}

impl Tracker {
    /// A new tracker with its drain eventfd.
    pub fn new() -> std::io::Result<Arc<Tracker>> {
        Ok(Arc::new(Tracker {
            registry: Mutex::new(Registry::default()),
            cond: Condvar::new(),
            active: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            upgraded: AtomicUsize::new(0),
            upgraded_at_drain: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            drain_fd: sys::eventfd()?,
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the registry torn
        // (every update is a single push/replace), so poisoning is ignored.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live connections.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Connections mid-request.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    /// Upgraded connections ([`ConnState::Upgraded`]).
    pub fn upgraded(&self) -> usize {
        self.upgraded.load(Ordering::Acquire)
    }

    /// Upgraded connections when the last drain started.
    pub(crate) fn upgraded_at_drain(&self) -> usize {
        self.upgraded_at_drain.load(Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// True once a drain has started.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// True once the process is going away: from the start of a shutdown
    /// delay ([`Tracker::start_closing`]) or of a drain. Every response then
    /// says `Connection: close`.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.draining()
    }

    /// Marks the process as going away without starting the drain: the
    /// server still accepts and serves, but every response closes its
    /// connection (the shutdown delay).
    pub fn start_closing(&self) {
        let reg = self.lock();
        self.closing.store(true, Ordering::Release);
        drop(reg);
        self.cond.notify_all();
    }

    /// Ends a drain early (a rollback: the new generation died during its
    /// probation and this process serves again). Clears the draining flags
    /// and the drain fd, and makes a [`Tracker::finish_drain`] still waiting
    /// return at once without forcing anything: the connections accepted
    /// from now on are not its business. Connections told to close before
    /// still close after their response.
    pub fn end_drain(&self) {
        let reg = self.lock();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.draining.store(false, Ordering::Release);
        self.closing.store(false, Ordering::Release);
        if let Err(e) = sys::eventfd_clear(self.drain_fd.as_raw_fd()) {
            log::error!("[{}] cannot clear the drain fd: {e}", sys::getpid());
        }
        drop(reg);
        self.cond.notify_all();
    }

    /// The eventfd that becomes (and stays) readable when a drain starts.
    /// Idle connection threads poll it beside their socket.
    pub fn drain_fd(&self) -> BorrowedFd<'_> {
        self.drain_fd.as_fd()
    }

    /// Counts `stream` as a live connection until the returned [`Tracked`]
    /// is dropped: the drain layer used alone, without [`crate::Server`].
    /// A drain ([`Tracker::finish_drain`] or [`Tracker::force_close`]) can
    /// then see it, wait for it and, after its timeout, shut it down.
    pub fn track<S: Trackable>(self: &Arc<Self>, stream: S) -> Tracked<S> {
        let reg = self.register(stream.as_fd().as_raw_fd());
        Tracked {
            reg: Some(reg),
            stream: Some(stream),
        }
    }

    pub(crate) fn register(self: &Arc<Self>, fd: RawFd) -> Registration {
        let slot = Arc::new(Slot {
            fd,
            state: AtomicU8::new(ConnState::New as u8),
            forced: AtomicBool::new(false),
        });
        let mut reg = self.lock();
        let id = match reg.free.pop() {
            Some(i) => {
                reg.slots[i] = Some(slot.clone());
                i
            }
            None => {
                reg.slots.push(Some(slot.clone()));
                reg.slots.len() - 1
            }
        };
        self.active.fetch_add(1, Ordering::AcqRel);
        drop(reg);
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Registration {
            tracker: self.clone(),
            id,
            slot,
        }
    }

    fn deregister(&self, id: usize, slot: &Slot) {
        match slot.state() {
            ConnState::Busy => {
                self.busy.fetch_sub(1, Ordering::AcqRel);
            }
            ConnState::Upgraded => {
                self.upgraded.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
        slot.state.store(ConnState::Closed as u8, Ordering::Relaxed);
        let mut reg = self.lock();
        reg.slots[id] = None;
        reg.free.push(id);
        self.active.fetch_sub(1, Ordering::AcqRel);
        let notify = reg.waiters > 0;
        drop(reg);
        self.closed.fetch_add(1, Ordering::Relaxed);
        if notify {
            self.cond.notify_all();
        }
    }

    /// Starts a drain: sets the flag, wakes everything idle through the
    /// drain fd (idle connection threads and the idle poller watch it), and
    /// wakes anyone waiting for a connection slot. Returns (open, busy)
    /// connection counts at that moment.
    pub fn start_drain(&self) -> (usize, usize) {
        self.start_drain_in(None).unwrap_or((0, 0))
    }

    /// The drain epoch now (see [`Tracker::end_drain`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// [`Tracker::start_drain`], unless the epoch has moved on from `epoch`
    /// (a rollback ended this drain before it began): then `None`, and
    /// nothing changes.
    pub(crate) fn start_drain_in(&self, epoch: Option<u64>) -> Option<(usize, usize)> {
        let reg = self.lock();
        if epoch.is_some_and(|e| e != self.epoch()) {
            return None;
        }
        self.draining.store(true, Ordering::Release);
        let counts = (self.active(), self.busy());
        self.upgraded_at_drain
            .store(self.upgraded(), Ordering::Relaxed);
        drop(reg);
        if let Err(e) = sys::eventfd_signal(self.drain_fd.as_raw_fd()) {
            log::error!("[{}] cannot signal the drain fd: {e}", sys::getpid());
        }
        self.cond.notify_all();
        Some(counts)
    }

    /// Waits until no connection is left or `deadline` passes. True if none is left.
    pub fn wait_empty(&self, deadline: Instant) -> bool {
        self.wait_empty_in(deadline, None)
    }

    /// [`Tracker::wait_empty`], giving up early once the epoch moves on from
    /// `epoch`.
    fn wait_empty_in(&self, deadline: Instant, epoch: Option<u64>) -> bool {
        let mut reg = self.lock();
        reg.waiters += 1;
        while self.active() > 0 && epoch.map_or(true, |e| e == self.epoch.load(Ordering::Acquire)) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            reg = self
                .cond
                .wait_timeout(reg, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        reg.waiters -= 1;
        self.active() == 0
    }

    /// Waits until fewer than `max` connections are live, or `stop` is set
    /// (callers set it and call [`Tracker::wake_waiters`]).
    pub fn wait_for_slot(&self, max: usize, stop: &AtomicBool) {
        let mut reg = self.lock();
        reg.waiters += 1;
        while self.active() >= max && !stop.load(Ordering::Acquire) && !self.draining() {
            reg = self.cond.wait(reg).unwrap_or_else(|p| p.into_inner());
        }
        reg.waiters -= 1;
    }

    /// Wakes everyone blocked in [`Tracker::wait_for_slot`] or
    /// [`Tracker::wait_empty`] so they re-check their condition.
    pub fn wake_waiters(&self) {
        drop(self.lock());
        self.cond.notify_all();
    }

    /// Shuts down (both directions) every connection socket still open, so
    /// blocked reads and writes fail and their threads finish. Returns how
    /// many were cut short: connections already closing (lingering for the
    /// peer's EOF after their last response) are shut down too, but not
    /// counted, since they lost nothing.
    pub fn force_close(&self) -> usize {
        let reg = self.lock();
        let mut n = 0;
        // Holding the lock: a connection deregisters (under this lock) before
        // its fd is closed, so every fd seen here is still the connection's.
        for slot in reg.slots.iter().flatten() {
            slot.forced.store(true, Ordering::Relaxed);
            if slot.state() != ConnState::Closed {
                n += 1;
            }
            let _ = sys::shutdown(slot.fd, libc::SHUT_RDWR);
        }
        n
    }

    /// Counts the registered connections per state: (new, idle, busy,
    /// closing); upgraded ones count as busy (see [`Tracker::upgraded`]).
    pub fn states(&self) -> (usize, usize, usize, usize) {
        let reg = self.lock();
        let mut c = (0, 0, 0, 0);
        for slot in reg.slots.iter().flatten() {
            match slot.state() {
                ConnState::New => c.0 += 1,
                ConnState::Idle => c.1 += 1,
                ConnState::Busy | ConnState::Upgraded => c.2 += 1,
                ConnState::Closed => c.3 += 1,
            }
        }
        c
    }

    /// Runs steps 3 and 4 of the drain (the caller has started it and closed
    /// the listeners): wait until `stop_timeout`, force the rest, wait up to
    /// `force_grace` for their threads, and report.
    pub fn finish_drain(
        &self,
        started: Instant,
        counts: (usize, usize),
        stop_timeout: Duration,
        force_grace: Duration,
    ) -> DrainStats {
        self.finish_drain_in(self.epoch(), started, counts, stop_timeout, force_grace)
    }

    /// [`Tracker::finish_drain`] for the drain of `epoch`.
    pub(crate) fn finish_drain_in(
        &self,
        epoch: u64,
        started: Instant,
        counts: (usize, usize),
        stop_timeout: Duration,
        force_grace: Duration,
    ) -> DrainStats {
        let pid = sys::getpid();
        let mut stats = DrainStats {
            open_at_start: counts.0,
            busy_at_start: counts.1,
            upgraded_at_start: self.upgraded_at_drain(),
            ..DrainStats::default()
        };
        let empty = self.wait_empty_in(started + stop_timeout, Some(epoch));
        if self.epoch.load(Ordering::Acquire) != epoch {
            log::info!("[{pid}] drain ended early: serving again");
            stats.cancelled = true;
        } else if !empty {
            let (new, idle, busy, closing) = self.states();
            log::warn!(
                "[{pid}] stop timeout ({}) reached with {} connection(s) open \
                 ({busy} busy, {idle} idle, {new} new, {closing} closing): shutting them down",
                crate::fmt::Dur(stop_timeout),
                new + idle + busy + closing
            );
            stats.forced = self.force_close();
            if !self.wait_empty(Instant::now() + force_grace) {
                stats.abandoned = self.active();
                log::warn!(
                    "[{pid}] {} connection thread(s) still running after being forced; \
                     not waiting for them",
                    stats.abandoned
                );
            }
        }
        stats.finished = counts.0.saturating_sub(stats.forced);
        stats.duration = started.elapsed();
        stats
    }
}

impl Registration {
    pub(crate) fn set_state(&self, state: ConnState) {
        let old = ConnState::from_u8(self.slot.state.swap(state as u8, Ordering::AcqRel));
        if old == state {
            return;
        }
        for (s, counter) in [
            (ConnState::Busy, &self.tracker.busy),
            (ConnState::Upgraded, &self.tracker.upgraded),
        ] {
            if state == s {
                counter.fetch_add(1, Ordering::AcqRel);
            } else if old == s {
                counter.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        self.slot.state()
    }

    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    pub(crate) fn was_forced(&self) -> bool {
        self.slot.forced.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.tracker.deregister(self.id, &self.slot);
    }
}

#[cfg(test)]
mod tests;
