//! Worker threads, reused, fed from one queue.
//!
//! Jobs (a new connection, or an idle connection whose next request has
//! arrived) go into a FIFO queue; a worker that finishes a job takes the next
//! one from the queue *without sleeping*. That is what lets one thread serve
//! many ready connections in a row on a busy CPU instead of paying a context
//! switch per request.
//!
//! Waking is economical, as in tokio's scheduler: a job pushed while another
//! thread has already been woken (and has not yet looked at the queue) wakes
//! nobody; a woken thread that takes a job and still sees work queued wakes
//! one more ("chain" wake), so jobs that block (a slow handler) still get
//! their own threads quickly. A new thread is spawned only when none is idle
//! (and, with a cap, fewer than the cap run); an idle thread retires after
//! `idle_timeout`.
//!
//! A worker out of queued jobs first asks the pool's *refill*, if it has
//! one (the parked server's harvesting, [`crate::park::ParkLot::harvest`]),
//! for one more job before it sleeps; jobs the refill hands over beyond the
//! first go to the back of the queue without waking anybody, for the same
//! thread to take next. They stay *quiet* (the chain wake does not count
//! them either) while that thread still harvests ([`Refill::mine`]); whoever
//! ends its session, because it is held up in a request or for any other
//! reason, calls [`Pool::kick`], and they are everybody's again. Before
//! quiet jobs, the harvester's own pop of the next one woke a second thread
//! for the rest: 0.24 context switches per request at 16 keep-alive
//! connections without `SCHED_BATCH`, 0.02 with them quiet.
//!
//! Idle threads wait on a LIFO stack: the most recently idle thread (the one
//! with the warmest stack and caches) is woken first, and threads at the
//! bottom retire first. A thread waits with `park_timeout`; the waker pops it
//! off the stack under the lock, sets its flag and unparks it, so a timed-out
//! thread can tell (under the lock) whether it was popped or may retire.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::sys;

/// The work done for each job.
pub(crate) type Work<J> = Arc<dyn Fn(J) + Send + Sync>;

/// [`Refill::take`]: the next job, more ready ones pushed onto the vector.
pub(crate) type Take<J> = Box<dyn Fn(&mut Vec<J>) -> Option<J> + Send + Sync>;

/// Where a worker that has run out of queued jobs looks for one more before
/// it sleeps (the parked server's ready idle connections,
/// [`crate::park::ParkLot::harvest`]).
pub(crate) struct Refill<J> {
    /// Whether `take` may have a job (cheap; called under the pool's lock).
    pub(crate) wanted: Box<dyn Fn() -> bool + Send + Sync>,
    /// The next job, if any; more ready jobs go into the vector, and from
    /// there to the back of the queue: without waking anybody (this thread
    /// takes them next) if `mine` says so, else as dispatched jobs.
    pub(crate) take: Take<J>,
    /// Whether this thread is still the one the refill's jobs are for (the
    /// harvester of a live session); called under the pool's lock. While
    /// it is, the jobs it queued wake nobody, on their way in or when it
    /// pops the one before them; whoever ends the session calls
    /// [`Pool::kick`] after, which makes them everybody's again.
    pub(crate) mine: Box<dyn Fn() -> bool + Send + Sync>,
}

/// An idle thread: how to wake it, and the flag that says it was woken.
struct Sleeper {
    id: u64,
    thread: Thread,
    popped: Arc<AtomicBool>,
}

struct State<J> {
    queue: VecDeque<J>,
    /// Idle threads, most recent last.
    idle: Vec<Sleeper>,
    /// Threads woken (or spawned) that have not yet looked at the queue.
    notified: usize,
    /// How many of the queued jobs, at the back, a running thread queued
    /// for itself (a harvester's, [`Refill::mine`]): they need no thread
    /// woken for them.
    quiet: usize,
    /// Live worker threads.
    threads: usize,
    /// Set when the pool is dropped: threads retire, jobs are dropped.
    closed: bool,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    work: Work<J>,
    stack_size: usize,
    idle_timeout: Duration,
    max_threads: Option<usize>,
    sched_batch: bool,
    next_id: AtomicU64,
    refill: OnceLock<Refill<J>>,
}

/// What to do, outside the lock, to get a thread onto the queue.
enum Wake {
    Nothing,
    Unpark(Thread),
    Spawn,
}

impl<J: Send + 'static> Shared<J> {
    fn lock(&self) -> MutexGuard<'_, State<J>> {
        // Every update under this lock is a single push/pop/counter change,
        // so a panic cannot leave it torn; poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides (under the lock) whether a thread must be woken for the
    /// queued work: not if one is already on its way.
    fn wake_one(&self, st: &mut State<J>) -> Wake {
        if st.notified > 0 || st.queue.len() <= st.quiet {
            return Wake::Nothing;
        }
        if let Some(s) = st.idle.pop() {
            s.popped.store(true, Ordering::Release);
            st.notified += 1;
            return Wake::Unpark(s.thread);
        }
        if self.max_threads.map_or(true, |max| st.threads < max) {
            st.threads += 1;
            st.notified += 1;
            return Wake::Spawn;
        }
        // At the cap: a running thread takes the job when it finishes.
        Wake::Nothing
    }

    fn perform(self: &Arc<Self>, wake: Wake) {
        match wake {
            Wake::Nothing => {}
            Wake::Unpark(t) => t.unpark(),
            Wake::Spawn => {
                let shared = self.clone();
                let spawned = std::thread::Builder::new()
                    .name("grace-conn".into())
                    .stack_size(self.stack_size)
                    .spawn(move || worker(shared));
                if let Err(e) = spawned {
                    let mut st = self.lock();
                    st.threads -= 1;
                    st.notified -= 1;
                    // With no thread at all, nothing would ever take the
                    // queued jobs: drop them (their clients see a close)
                    // rather than leave them hanging.
                    let dropped = if st.threads == 0 {
                        std::mem::take(&mut st.queue)
                    } else {
                        VecDeque::new()
                    };
                    drop(st);
                    log::error!(
                        "[{}] cannot spawn a connection thread ({e}); {} queued job(s) dropped",
                        sys::getpid(),
                        dropped.len()
                    );
                }
            }
        }
    }
}

/// A pool of worker threads; see the module docs.
pub(crate) struct Pool<J: Send + 'static> {
    shared: Arc<Shared<J>>,
}

impl<J: Send + 'static> Pool<J> {
    /// A pool running `work` on threads of `stack_size` bytes; idle threads
    /// retire after `idle_timeout`; at most `max_threads` threads; with
    /// `sched_batch`, threads run under `SCHED_BATCH` (see
    /// [`crate::server::Config::sched_batch`]).
    pub(crate) fn new(
        work: Work<J>,
        stack_size: usize,
        idle_timeout: Duration,
        max_threads: Option<usize>,
        sched_batch: bool,
    ) -> Pool<J> {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    idle: Vec::new(),
                    notified: 0,
                    quiet: 0,
                    threads: 0,
                    closed: false,
                }),
                work,
                stack_size,
                idle_timeout,
                max_threads: max_threads.map(|m| m.max(1)),
                sched_batch,
                next_id: AtomicU64::new(0),
                refill: OnceLock::new(),
            }),
        }
    }

    /// Sets where a worker out of queued jobs looks for one more before it
    /// sleeps (once; later calls are ignored).
    pub(crate) fn set_refill(&self, refill: Refill<J>) {
        let _ = self.shared.refill.set(refill);
    }

    /// Makes sure a thread will take what is queued (after jobs were queued
    /// quietly by a thread that is now held up).
    pub(crate) fn kick(&self) {
        let mut st = self.shared.lock();
        st.quiet = 0;
        let wake = self.shared.wake_one(&mut st);
        drop(st);
        self.shared.perform(wake);
    }

    /// Queues `job` and makes sure a thread will take it.
    pub(crate) fn dispatch(&self, job: J) {
        let mut st = self.shared.lock();
        if st.closed {
            drop(st);
            drop(job);
            return;
        }
        st.queue.push_back(job);
        let wake = self.shared.wake_one(&mut st);
        drop(st);
        self.shared.perform(wake);
    }

    /// (live threads, idle threads, queued jobs), for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize, usize) {
        let st = self.shared.lock();
        (st.threads, st.idle.len(), st.queue.len())
    }
}

impl<J: Send + 'static> Drop for Pool<J> {
    /// Drops the queued jobs and wakes every idle thread so it retires now.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        let queued = std::mem::take(&mut st.queue);
        st.quiet = 0;
        let idle = std::mem::take(&mut st.idle);
        st.notified += idle.len();
        drop(st);
        drop(queued);
        for s in idle {
            s.popped.store(true, Ordering::Release);
            s.thread.unpark();
        }
    }
}

fn run<J>(work: &Work<J>, job: J) {
    // The HTTP layer catches handler panics itself; this is the safety net
    // for any other work function, so a panic costs one connection and never
    // the thread's bookkeeping.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(job))).is_err() {
        log::error!(
            "[{}] connection worker panicked; connection closed",
            sys::getpid()
        );
    }
}

fn worker<J: Send + 'static>(shared: Arc<Shared<J>>) {
    if shared.sched_batch {
        sys::sched_batch();
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let popped = Arc::new(AtomicBool::new(false));
    // A spawned thread counts as notified until it looks at the queue.
    let mut notified = true;
    loop {
        let mut st = shared.lock();
        if std::mem::take(&mut notified) {
            st.notified -= 1;
        }
        if let Some(job) = st.queue.pop_front() {
            // The quiet jobs are the last ones: they only get fewer.
            st.quiet = st.quiet.min(st.queue.len());
            let wake = shared.wake_one(&mut st);
            drop(st);
            shared.perform(wake);
            run(&shared.work, job);
            continue;
        }
        if st.closed {
            st.threads -= 1;
            return;
        }
        if let Some(refill) = shared.refill.get().filter(|r| (r.wanted)()) {
            // Out of queued work: one more job from the refill, if it has
            // one, served on this thread without sleeping.
            drop(st);
            let mut extra = Vec::new();
            let job = (refill.take)(&mut extra);
            if !extra.is_empty() {
                let mut st = shared.lock();
                let n = extra.len();
                st.queue.extend(extra);
                if (refill.mine)() {
                    st.quiet += n;
                } else {
                    // The session ended meanwhile: nobody is watching this
                    // thread, so the jobs get threads of their own.
                    let wake = shared.wake_one(&mut st);
                    drop(st);
                    shared.perform(wake);
                }
            }
            if let Some(job) = job {
                run(&shared.work, job);
                continue;
            }
            st = shared.lock();
            if !st.queue.is_empty() || st.closed {
                continue;
            }
        }
        popped.store(false, Ordering::Relaxed);
        st.idle.push(Sleeper {
            id,
            thread: std::thread::current(),
            popped: popped.clone(),
        });
        drop(st);
        let deadline = Instant::now() + shared.idle_timeout;
        loop {
            let now = Instant::now();
            if now < deadline {
                std::thread::park_timeout(deadline - now);
            }
            if popped.load(Ordering::Acquire) {
                notified = true;
                break;
            }
            if Instant::now() >= deadline {
                let mut st = shared.lock();
                if popped.load(Ordering::Acquire) {
                    notified = true;
                    break;
                }
                if let Some(i) = st.idle.iter().position(|s| s.id == id) {
                    st.idle.remove(i);
                }
                st.threads -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Polls `cond` every millisecond for up to 10 s; fails the test with
    /// `what` if it never holds.
    pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn reuses_idle_threads_and_retires_them() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let work: Work<u32> = Arc::new(move |n: u32| {
            tx.lock()
                .unwrap()
                .send((n, std::thread::current().id()))
                .unwrap();
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_millis(200), None, true);
        let t = Duration::from_secs(10);
        pool.dispatch(1);
        let (_, first) = rx.recv_timeout(t).unwrap();
        wait_for("thread idle", || pool.counts() == (1, 1, 0));
        pool.dispatch(2);
        assert_eq!(
            rx.recv_timeout(t).unwrap(),
            (2, first),
            "idle thread reused"
        );
        // After the idle timeout it retires.
        wait_for("thread retired", || pool.counts() == (0, 0, 0));
        // A new job then gets a new thread.
        pool.dispatch(3);
        assert_eq!(rx.recv_timeout(t).unwrap().0, 3);
    }

    #[test]
    fn blocking_jobs_each_get_a_thread() {
        // Eight jobs that all block until released: every one must be
        // running at once (chain wake-ups), none stuck behind another.
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let g = gate.clone();
        let work: Work<u32> = Arc::new(move |n: u32| {
            tx.lock().unwrap().send(n).unwrap();
            let (m, c) = &*g;
            let mut open = m.lock().unwrap();
            while !*open {
                open = c.wait(open).unwrap();
            }
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_secs(5), None, true);
        for n in 0..8 {
            pool.dispatch(n);
        }
        let mut started: Vec<u32> = (0..8)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        started.sort();
        assert_eq!(started, (0..8).collect::<Vec<_>>());
        assert_eq!(pool.counts().0, 8);
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        wait_for("all idle", || pool.counts() == (8, 8, 0));
    }

    #[test]
    fn a_worker_out_of_jobs_serves_its_refill_before_sleeping() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let work: Work<u32> = Arc::new(move |n: u32| {
            tx.lock()
                .unwrap()
                .send((n, std::thread::current().id()))
                .unwrap();
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_secs(5), None, true);
        // The refill has 1, then 2 with 3 ready too (queued quietly for the
        // same thread), then nothing.
        let left = Arc::new(Mutex::new(vec![vec![2u32, 3], vec![1]]));
        let l = left.clone();
        pool.set_refill(Refill {
            wanted: Box::new(|| true),
            mine: Box::new(|| true),
            take: Box::new(move |extra| {
                let mut batch = l.lock().unwrap().pop()?;
                let first = batch.remove(0);
                extra.extend(batch);
                Some(first)
            }),
        });
        pool.dispatch(0);
        let t = Duration::from_secs(10);
        let runs: Vec<_> = (0..4).map(|_| rx.recv_timeout(t).unwrap()).collect();
        assert_eq!(
            runs.iter().map(|r| r.0).collect::<Vec<_>>(),
            [0, 1, 2, 3],
            "the queued job, then the refill's in order"
        );
        assert!(
            runs.iter().all(|r| r.1 == runs[0].1),
            "all on one thread, no hand-over: {runs:?}"
        );
        wait_for("the thread sleeps once the refill is empty", || {
            pool.counts() == (1, 1, 0)
        });
        assert!(left.lock().unwrap().is_empty());
    }

    #[test]
    fn jobs_a_harvester_queued_for_itself_wake_nobody_until_kicked() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let g = gate.clone();
        // Job 2, and 10 and 11 (the first two), wait for the gate.
        let work: Work<u32> = Arc::new(move |n: u32| {
            if n == 2 || n >= 10 {
                tx.lock().unwrap().send((n + 100, None)).unwrap();
                let mut open = g.0.lock().unwrap();
                while !*open {
                    open = g.1.wait(open).unwrap();
                }
            }
            tx.lock()
                .unwrap()
                .send((n, Some(std::thread::current().id())))
                .unwrap();
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_secs(30), None, true);
        let t = Duration::from_secs(10);
        // Two threads, both idle: 10 and 11 block at once on the gate.
        pool.dispatch(10);
        pool.dispatch(11);
        let mut got: Vec<u32> = (0..2).map(|_| rx.recv_timeout(t).unwrap().0).collect();
        got.sort();
        assert_eq!(got, [110, 111]);
        let open = |v: bool| {
            *gate.0.lock().unwrap() = v;
            gate.1.notify_all();
        };
        open(true);
        for _ in 0..2 {
            assert!(rx.recv_timeout(t).unwrap().0 >= 10);
        }
        open(false);
        wait_for("two idle threads", || pool.counts() == (2, 2, 0));
        // The refill, armed: 1 with 2 and 3 ready, for this thread.
        let armed = Arc::new(AtomicBool::new(true));
        let (a, b) = (armed.clone(), armed.clone());
        pool.set_refill(Refill {
            wanted: Box::new(move || a.load(Ordering::SeqCst)),
            mine: Box::new(|| true),
            take: Box::new(move |extra| {
                if !b.swap(false, Ordering::SeqCst) {
                    return None;
                }
                extra.extend([2, 3]);
                Some(1)
            }),
        });
        pool.dispatch(0);
        let zero = rx.recv_timeout(t).unwrap();
        assert_eq!(zero.0, 0);
        assert_eq!(
            rx.recv_timeout(t).unwrap(),
            (1, zero.1),
            "the refill's job, same thread"
        );
        assert_eq!(rx.recv_timeout(t).unwrap().0, 102, "2 runs, and blocks");
        // Popping 2 left 3 queued, quietly: the other thread still sleeps.
        assert_eq!(pool.counts(), (2, 1, 1), "nobody woken for a quiet job");
        // The one that queued it is held up: a kick hands 3 to the other.
        pool.kick();
        let three = rx.recv_timeout(t).unwrap();
        assert_eq!(three.0, 3);
        assert_ne!(three.1, zero.1, "3 served by the other thread");
        open(true);
        assert_eq!(rx.recv_timeout(t).unwrap(), (2, zero.1));
        wait_for("both idle again", || pool.counts() == (2, 2, 0));
    }

    #[test]
    fn cap_queues_jobs_until_a_thread_is_free() {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let work: Work<u32> = Arc::new(move |n: u32| {
            std::thread::sleep(Duration::from_millis(20));
            tx.lock().unwrap().send(n).unwrap();
        });
        let pool = Pool::new(work, 64 * 1024, Duration::from_secs(5), Some(2), true);
        for n in 0..10 {
            pool.dispatch(n);
        }
        assert!(pool.counts().0 <= 2);
        let mut done: Vec<u32> = (0..10)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert!(pool.counts().0 <= 2, "never more threads than the cap");
        done.sort();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
    }
}
