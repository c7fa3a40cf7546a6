//! Upgrades: one at a time, their outcome, and the verdict for whoever asked.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::probation::Probation;
use super::{ControlLoop, LastUpgrade};
use crate::fmt::Dur;
use crate::server::message::{Control, UpgradeReply};
use crate::sys;
use crate::upgrade::{child, parent, UpgradeError, UpgradeStats};
use crate::{notify, pidfile};

impl ControlLoop<'_> {
    /// True if the parent has closed its end of the readiness socket (it
    /// never writes to it, so readable means end-of-file) or we have been
    /// reparented.
    pub(super) fn parent_gone_now(&mut self) -> bool {
        let Some((fd, ppid)) = &self.p.parent_link else {
            return true;
        };
        let mut pfd = [sys::pollfd(fd.as_raw_fd(), libc::POLLIN)];
        let gone = matches!(sys::poll(&mut pfd, Some(Duration::ZERO)), Ok(n) if n > 0)
            || sys::getppid() != *ppid;
        if gone {
            self.parent_alive = false;
            log::info!(
                "[{}] the previous generation has exited; upgrades allowed",
                self.pid
            );
        }
        gone
    }

    pub(super) fn request_upgrade(&mut self, reply: Option<UpgradeReply>) {
        let pid = self.pid;
        let refuse = if self.upgrading.is_some() || self.probation.is_some() {
            Some(UpgradeError::InProgress)
        } else if self.draining || self.delaying {
            Some(UpgradeError::ShuttingDown)
        } else if self.parent_alive && !self.parent_gone_now() {
            Some(UpgradeError::ParentAlive)
        } else {
            None
        };
        if let Some(e) = refuse {
            log::warn!("[{pid}] refusing upgrade: {e}");
            if let Some(r) = reply {
                let _ = r.send(Err(e));
            }
            return;
        }
        let started = Instant::now();
        self.upgrading = Some(started);
        self.upgrade_waiters.extend(reply);
        notify::send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            sys::monotonic_usec()
        ));
        notify::send(&format!(
            "STATUS=upgrading: starting generation {}",
            self.p.generation + 1
        ));
        let fds = self.p.listener_fds.clone();
        let hook = self.p.hook.clone();
        let tx = self.tx.clone();
        let generation = self.p.generation;
        let timeout = self.cfg.upgrade_timeout;
        let abort_fd = self.p.stop_fd.as_raw_fd();
        let spawned = std::thread::Builder::new()
            .name("grace-upgrade".into())
            .spawn(move || {
                let res = (|| {
                    if let Some(h) = hook {
                        h().map_err(UpgradeError::Hook)?;
                    }
                    parent::upgrade(&parent::Request {
                        fds: &fds,
                        generation,
                        timeout,
                        started,
                        abort_fd,
                    })
                })();
                let _ = tx.send(Control::UpgradeDone(res));
            });
        if let Err(e) = spawned {
            self.upgrade_done(Err(UpgradeError::Prepare(e)));
        }
    }

    pub(super) fn upgrade_done(&mut self, res: Result<(UpgradeStats, OwnedFd), UpgradeError>) {
        let pid = self.pid;
        let started = self.upgrading.take();
        let waiters = std::mem::take(&mut self.upgrade_waiters);
        match res {
            Ok((mut stats, end))
                if !self.draining && !self.delaying && self.pending_drain.is_none() =>
            {
                let probation = self.cfg.probation;
                if probation.is_zero() {
                    log::info!(
                        "[{pid}] child {} (generation {}) is ready after {}; draining",
                        stats.child_pid,
                        stats.child_generation,
                        Dur(stats.duration)
                    );
                    self.parent_end = Some(Arc::new(end));
                    self.handover = Some(stats.clone());
                    self.record(Ok(&stats), stats.duration);
                    for w in waiters {
                        let _ = w.send(Ok(stats.clone()));
                    }
                    self.begin_drain(false);
                    return;
                }
                log::info!(
                    "[{pid}] child {} (generation {}) is ready after {}; draining, on \
                     probation for {}",
                    stats.child_pid,
                    stats.child_generation,
                    Dur(stats.duration),
                    Dur(probation)
                );
                notify::send(&format!(
                    "STATUS=generation {} ready; on probation for {}",
                    stats.child_generation,
                    Dur(probation)
                ));
                stats.probation = probation;
                let end = Arc::new(end);
                let watch_stop = match sys::eventfd() {
                    Ok(fd) => Arc::new(fd),
                    Err(e) => {
                        log::error!("[{pid}] cannot watch the child ({e}); no probation");
                        self.parent_end = Some(end);
                        self.handover = Some(stats.clone());
                        for w in waiters {
                            let _ = w.send(Ok(stats.clone()));
                        }
                        self.begin_drain(false);
                        return;
                    }
                };
                let watch = {
                    let (end, stop, tx) = (end.clone(), watch_stop.clone(), self.tx.clone());
                    std::thread::Builder::new()
                        .name("grace-probation".into())
                        .spawn(move || {
                            if child::wait_parent_exit(&end, stop.as_raw_fd()) {
                                let _ = tx.send(Control::ChildGone);
                            }
                        })
                        .map_err(|e| log::error!("[{pid}] cannot watch the child: {e}"))
                        .ok()
                };
                let now = Instant::now();
                self.probation = Some(Probation {
                    stats,
                    ready_at: now,
                    deadline: now + probation,
                    waiters,
                    end,
                    watch_stop,
                    watch,
                    drained: None,
                });
                self.begin_drain(false);
            }
            Ok((stats, _end)) => {
                // A shutdown won the race; the child is ready but we are
                // shutting down anyway. Let it serve: it has the listeners.
                log::warn!(
                    "[{pid}] child {} became ready during shutdown",
                    stats.child_pid
                );
                for w in waiters {
                    let _ = w.send(Err(UpgradeError::ShuttingDown));
                }
            }
            Err(e) => {
                log::error!("[{pid}] upgrade failed: {e}; still serving");
                self.record(Err(&e), started.map_or(Duration::ZERO, |s| s.elapsed()));
                self.serve_again();
                if !self.draining && !self.delaying {
                    notify::send(&format!(
                        "STATUS=upgrade failed: {e}; serving generation {}",
                        self.p.generation
                    ));
                }
                for w in waiters {
                    let _ = w.send(Err(clone_err(&e)));
                }
            }
        }
        if let Some(final_) = self.pending_drain.take() {
            self.begin_drain(final_);
        }
    }

    /// After a failed upgrade or a rollback: this process is the one serving
    /// again. A child killed after it wrote the pid file left its pid there;
    /// it may also have announced itself as the main pid.
    pub(super) fn serve_again(&mut self) {
        let pid = self.pid;
        if let Some(path) = &self.cfg.pid_file {
            if pidfile::read(path).ok() != Some(pidfile::own_pid()) {
                match pidfile::write(path) {
                    Ok(()) => log::info!("[{pid}] restored the pid file {}", path.display()),
                    Err(e) => log::warn!("[{pid}] restoring the pid file: {e}"),
                }
            }
        }
        if !self.draining && !self.delaying {
            notify::send(&format!("MAINPID={pid}\nREADY=1"));
        }
    }

    pub(super) fn record(&mut self, res: Result<&UpgradeStats, &UpgradeError>, duration: Duration) {
        self.last_upgrade = Some(match res {
            Ok(_) => LastUpgrade {
                result: "ok",
                duration,
                reason: None,
            },
            Err(e) => LastUpgrade {
                result: if e.is_refusal() {
                    "refused"
                } else if matches!(e, UpgradeError::RolledBack { .. }) {
                    "rolled back"
                } else {
                    "failed"
                },
                duration,
                reason: Some(e.to_string()),
            },
        });
    }
}

pub(super) fn clone_err(e: &UpgradeError) -> UpgradeError {
    match e {
        UpgradeError::InProgress => UpgradeError::InProgress,
        UpgradeError::ParentAlive => UpgradeError::ParentAlive,
        UpgradeError::ShuttingDown => UpgradeError::ShuttingDown,
        UpgradeError::Hook(s) => UpgradeError::Hook(s.clone()),
        UpgradeError::Prepare(e) => UpgradeError::Prepare(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::Fork(e) => UpgradeError::Fork(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::Exec(e) => UpgradeError::Exec(io::Error::new(e.kind(), e.to_string())),
        UpgradeError::ChildExited(s) => UpgradeError::ChildExited(*s),
        UpgradeError::Timeout(d) => UpgradeError::Timeout(*d),
        UpgradeError::Aborted => UpgradeError::Aborted,
        UpgradeError::RolledBack {
            child_pid,
            status,
            lived,
        } => UpgradeError::RolledBack {
            child_pid: *child_pid,
            status: *status,
            lived: *lived,
        },
        UpgradeError::ServerGone => UpgradeError::ServerGone,
    }
}
