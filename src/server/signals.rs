//! Signals: a signal-hook iterator on its own thread turns each signal into
//! a [`Control::Signal`] message for the control loop.
//!
//! SIGUSR2 and SIGHUP upgrade; SIGTERM, SIGINT and SIGQUIT shut down
//! gracefully. Every one of them would kill the process by default, so the
//! handlers are installed before anything makes the process visible.

use std::io;

use crossbeam_channel::Sender;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2};

use super::message::Control;

/// Installs the handlers; the returned handle stops the thread.
pub(crate) fn install_signals(tx: Sender<Control>) -> io::Result<signal_hook::iterator::Handle> {
    let mut signals =
        signal_hook::iterator::Signals::new([SIGUSR2, SIGHUP, SIGTERM, SIGINT, SIGQUIT])?;
    let handle = signals.handle();
    std::thread::Builder::new()
        .name("grace-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Control::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;
    Ok(handle)
}
