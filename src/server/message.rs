//! The messages of the control loop, and what the control socket's
//! commands turn into.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::control::{self, Command};
use crate::drain::DrainStats;
use crate::upgrade::{UpgradeError, UpgradeStats};

pub(crate) type UpgradeReply = crossbeam_channel::Sender<Result<UpgradeStats, UpgradeError>>;
pub(crate) type Hook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A message to the control loop.
pub(crate) enum Control {
    Signal(i32),
    Upgrade(Option<UpgradeReply>),
    Shutdown,
    /// A control-socket `status`: the reply line goes back on the channel.
    Status(crossbeam_channel::Sender<String>),
    UpgradeDone(Result<(UpgradeStats, OwnedFd), UpgradeError>),
    /// The child on probation closed its readiness socket: it ended.
    ChildGone,
    ParentGone,
    /// A drain ended; the tracker's drain epoch it belonged to.
    Drained(DrainStats, u64),
    /// The shutdown delay is over: start the drain.
    DelayOver,
}

/// What the control socket's commands do: messages to the control loop.
pub(crate) fn exec(tx: Sender<Control>) -> control::Exec {
    Arc::new(move |cmd| match cmd {
        Command::Status => {
            let (rtx, rrx) = crossbeam_channel::bounded(1);
            if tx.send(Control::Status(rtx)).is_err() {
                return control::error_json("the server is stopping");
            }
            rrx.recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| control::error_json("the server did not answer"))
        }
        Command::Upgrade => {
            let (rtx, rrx) = crossbeam_channel::bounded(1);
            if tx.send(Control::Upgrade(Some(rtx))).is_err() {
                return control::verdict_json(&Err(UpgradeError::ServerGone));
            }
            control::verdict_json(&rrx.recv().unwrap_or(Err(UpgradeError::ServerGone)))
        }
        Command::Shutdown => {
            let _ = tx.send(Control::Shutdown);
            "{\"ok\":true,\"result\":\"shutting down\"}".to_string()
        }
    })
}
