//! Shutdown delay, drains, the end of the loop, and `status`.

use std::os::fd::AsRawFd;
use std::time::Instant;

use super::ControlLoop;
use crate::control::{self};
use crate::drain::DrainStats;
use crate::fmt::Dur;
use crate::notify;
use crate::server::handle::{Outcome, StopReason};
use crate::server::message::Control;
use crate::sys;

impl ControlLoop<'_> {
    /// A final shutdown: the drain, after the shutdown delay if there is one.
    pub(super) fn begin_shutdown(&mut self) {
        let delay = self.cfg.shutdown_delay;
        notify::send("STATUS=shutting down");
        if delay.is_zero() {
            self.begin_drain(true);
            return;
        }
        // Keep accepting and serving, but say so: responses close their
        // connections, `Handle::is_draining` turns true (a readiness probe
        // answers 503), and an upgrade in flight is aborted.
        self.delaying = true;
        self.tracker.start_closing();
        let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
        notify::send("STOPPING=1");
        log::info!(
            "[{}] still accepting for the shutdown delay of {}; then draining",
            self.pid,
            Dur(delay)
        );
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("grace-delay".into())
            .spawn(move || {
                std::thread::sleep(delay);
                let _ = tx.send(Control::DelayOver);
            });
        if let Err(e) = spawned {
            log::error!(
                "[{}] cannot time the shutdown delay ({e}); draining now",
                self.pid
            );
            self.delaying = false;
            self.begin_drain(true);
        }
    }

    /// Starts the drain: everything after this runs on a drain thread, which
    /// reports back with `Control::Drained`. On probation the listeners stay
    /// open (not accepted on) for a rollback.
    pub(super) fn begin_drain(&mut self, final_: bool) {
        if self.draining {
            return;
        }
        if self.upgrading.is_some() {
            // Abort the upgrade first; the listeners must stay open until
            // the upgrade thread no longer uses their fds.
            let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
            self.pending_drain = Some(final_);
            return;
        }
        self.draining = true;
        let _ = sys::eventfd_signal(self.p.stop_fd.as_raw_fd());
        let pid = self.pid;
        let tracker = self.tracker.clone();
        let waker = self.p.waker.clone();
        let accept = self.p.accept_thread.take();
        let keep = self.probation.is_some();
        let listeners = if keep { None } else { self.p.listeners.take() };
        let control = if keep || final_ {
            None
        } else {
            self.p.control.take()
        };
        if let Some(g) = &self.p.gate {
            // The new generation answers the control socket now.
            if final_ {
                g.stop();
            } else {
                g.pause(true);
            }
        }
        let control_final = if final_ { self.p.control.take() } else { None };
        let tx = self.tx.clone();
        let stop_timeout = self.cfg.stop_timeout;
        let force_grace = self.cfg.force_grace;
        // STOPPING=1 went out when the shutdown delay began.
        let delayed = !self.cfg.shutdown_delay.is_zero() && final_;
        // A rollback may end this drain before its thread gets going.
        let epoch = self.tracker.epoch();
        let drain = move || {
            let started = Instant::now();
            // Stop accepting first, then tell connections to go: a client
            // told `Connection: close` that reconnects then finds the
            // listener closed (refused, cleanly) or, after a handover, the
            // new process; never a queue that is about to be reset.
            waker.stop(&tracker, final_);
            if let Some(a) = accept {
                let _ = a.join();
            }
            if let Some(l) = listeners {
                // Close, never shutdown: after a handover the child shares
                // these sockets. Only a final shutdown unlinks unix paths.
                l.close(final_);
            }
            if let Some(c) = control {
                c.close(false);
            }
            if let Some(c) = control_final {
                c.close(true);
            }
            log::debug!(
                "[{pid}] {}",
                if keep {
                    "stopped accepting; listeners kept for the probation"
                } else {
                    "listeners closed"
                }
            );
            if final_ && !delayed {
                notify::send("STOPPING=1");
            }
            let Some(counts) = tracker.start_drain_in(Some(epoch)) else {
                let stats = DrainStats {
                    cancelled: true,
                    ..DrainStats::default()
                };
                let _ = tx.send(Control::Drained(stats, epoch));
                return;
            };
            let upgraded = match tracker.upgraded_at_drain() {
                0 => String::new(),
                n => format!(", {n} upgraded"),
            };
            log::info!(
                "[{pid}] draining {} connection(s) ({} busy{upgraded}); stop timeout {}",
                counts.0,
                counts.1,
                Dur(stop_timeout)
            );
            let stats = tracker.finish_drain_in(epoch, started, counts, stop_timeout, force_grace);
            let _ = tx.send(Control::Drained(stats, epoch));
        };
        if let Err(e) = std::thread::Builder::new()
            .name("grace-drain".into())
            .spawn(drain)
        {
            log::error!("[{pid}] cannot start the drain thread: {e}");
        }
    }

    pub(super) fn finish(&self, stats: DrainStats) -> Outcome {
        let reason = if self.handover.is_some() {
            StopReason::Upgraded
        } else {
            StopReason::Shutdown
        };
        let upgraded = match stats.upgraded_at_start {
            0 => String::new(),
            n => format!(", {n} upgraded"),
        };
        log::info!(
            "[{}] drained in {}: {} connection(s) open at start ({} busy{upgraded}), {} finished, \
             {} forced",
            self.pid,
            Dur(stats.duration),
            stats.open_at_start,
            stats.busy_at_start,
            stats.finished,
            stats.forced
        );
        Outcome {
            reason,
            generation: self.p.generation,
            upgrade: self.handover.clone(),
            drain: Some(stats),
        }
    }

    /// The reply to `status`.
    pub(super) fn status_json(&self) -> String {
        use control::json_str;
        let state = if self.delaying
            || (self.draining && self.handover.is_none() && self.probation.is_none())
        {
            "draining"
        } else if self.probation.is_some() {
            "probation"
        } else if self.handover.is_some() {
            "handed over"
        } else if self.upgrading.is_some() {
            "upgrading"
        } else {
            "serving"
        };
        let listeners: Vec<String> = self
            .p
            .listeners
            .iter()
            .flat_map(|l| l.iter())
            .map(|l| json_str(&l.local_addr().to_string()))
            .collect();
        let last = match &self.last_upgrade {
            None => "null".to_string(),
            Some(u) => format!(
                "{{\"result\":\"{}\",\"duration_ms\":{},\"reason\":{}}}",
                u.result,
                u.duration.as_millis(),
                u.reason.as_deref().map_or("null".to_string(), json_str)
            ),
        };
        format!(
            "{{\"ok\":true,\"result\":\"serving\",\"state\":\"{state}\",\"pid\":{},\
             \"generation\":{},\"uptime_ms\":{},\"connections\":{{\"live\":{},\"busy\":{}}},\
             \"draining\":{},\"listeners\":[{}],\"last_upgrade\":{last}}}",
            self.pid,
            self.p.generation,
            self.started.elapsed().as_millis(),
            self.tracker.active(),
            self.tracker.busy(),
            self.draining || self.delaying,
            listeners.join(",")
        )
    }
}
