//! Probation: a ready child is watched until its deadline; `commit` or
//! `roll_back`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::upgrade::clone_err;
use super::ControlLoop;
use crate::accept::Waker;
use crate::drain::DrainStats;
use crate::fmt::Dur;
use crate::notify;
use crate::server::handle::Outcome;
use crate::server::message::UpgradeReply;
use crate::server::spawn_accept;
use crate::sys;
use crate::upgrade::{parent, UpgradeError, UpgradeStats};

/// A ready child on probation.
pub(super) struct Probation {
    pub(super) stats: UpgradeStats,
    pub(super) ready_at: Instant,
    pub(super) deadline: Instant,
    pub(super) waiters: Vec<UpgradeReply>,
    /// Our end of its readiness socket, watched for end-of-file.
    pub(super) end: Arc<OwnedFd>,
    pub(super) watch_stop: Arc<OwnedFd>,
    pub(super) watch: Option<JoinHandle<()>>,
    pub(super) drained: Option<DrainStats>,
}

impl ControlLoop<'_> {
    pub(super) fn stop_watch(p: &mut Probation) {
        let _ = sys::eventfd_signal(p.watch_stop.as_raw_fd());
        if let Some(w) = p.watch.take() {
            let _ = w.join();
        }
    }

    /// The probation passed: the child serves for good.
    pub(super) fn commit(&mut self) -> Option<Outcome> {
        let mut p = self.probation.take()?;
        Self::stop_watch(&mut p);
        let pid = self.pid;
        log::info!(
            "[{pid}] child {} passed its probation of {}; closing the listeners",
            p.stats.child_pid,
            Dur(p.stats.probation)
        );
        if let Some(l) = self.p.listeners.take() {
            // Close, never shutdown or unlink: the child serves on them.
            l.close(false);
        }
        if let Some(c) = self.p.control.take() {
            c.close(false);
        }
        self.record(Ok(&p.stats), p.stats.duration + p.stats.probation);
        for w in p.waiters.drain(..) {
            let _ = w.send(Ok(p.stats.clone()));
        }
        self.parent_end = Some(p.end.clone());
        self.handover = Some(p.stats.clone());
        p.drained.map(|stats| self.finish(stats))
    }

    /// The child ended during its probation: serve again, on the same
    /// sockets. Unless it ended cleanly (exit 0): it was asked to shut
    /// down (a `shutdown` it answered, a SIGTERM to the pid in the pid
    /// file), and so is this process then.
    pub(super) fn roll_back(&mut self) -> Option<Outcome> {
        let mut p = self.probation.take()?;
        Self::stop_watch(&mut p);
        let pid = self.pid;
        let child = p.stats.child_pid;
        let lived = p.ready_at.elapsed();
        let status = parent::reap_child(child);
        if status == sys::Exit::Code(0) {
            log::info!(
                "[{pid}] child {child} shut down cleanly during its probation; shutting down too"
            );
            if let Some(l) = self.p.listeners.take() {
                l.close(true);
            }
            if let Some(c) = self.p.control.take() {
                c.close(true);
            }
            for w in p.waiters.drain(..) {
                let _ = w.send(Err(UpgradeError::ShuttingDown));
            }
            notify::send("STOPPING=1");
            return p.drained.map(|stats| self.finish(stats));
        }
        // Accept again first: every moment counts for the shared backlog.
        self.tracker.end_drain();
        if let Some(r) = &self.p.resume {
            r();
        }
        let _ = sys::eventfd_clear(self.p.stop_fd.as_raw_fd());
        match Waker::new().and_then(|w| {
            let t = spawn_accept(
                self.cfg,
                &self.p.accept_fds,
                &w,
                self.tracker,
                &self.p.dispatch,
            )?;
            Ok((w, t))
        }) {
            Ok((w, t)) => {
                self.p.waker = w;
                self.p.accept_thread = Some(t);
            }
            Err(e) => log::error!("[{pid}] cannot accept again after the rollback: {e}"),
        }
        if let Some(g) = &self.p.gate {
            g.pause(false);
        }
        self.draining = false;
        let err = UpgradeError::RolledBack {
            child_pid: child,
            status,
            lived,
        };
        log::error!(
            "[{pid}] child {child} (generation {}) ended during its probation ({status}) {} \
             after it was ready; rolled back: accepting again on the same sockets",
            p.stats.child_generation,
            Dur(lived)
        );
        self.serve_again();
        notify::send(&format!(
            "STATUS=rolled back: generation {} ended during its probation ({status}); serving \
             generation {}",
            p.stats.child_generation, self.p.generation
        ));
        self.record(Err(&err), p.stats.duration + lived);
        for w in p.waiters.drain(..) {
            let _ = w.send(Err(clone_err(&err)));
        }
        self.watchdog = self.watchdog.map(|(every, _)| (every, Instant::now()));
        None
    }
}
