//! `sd_notify`: tell systemd (or anything listening on `NOTIFY_SOCKET`) what
//! the service is doing. A no-op when `NOTIFY_SOCKET` is unset.
//!
//! `NOTIFY_SOCKET` is kept in the environment on purpose: a grace child needs
//! it to send `MAINPID=` and `READY=1` when it takes over.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::sys;

/// Sends `msg` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`.
/// Returns `Ok(false)` when the variable is unset.
pub fn notify(msg: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), &path)?;
    }
    log::debug!("[{}] sd_notify: {}", sys::getpid(), msg.replace('\n', " "));
    Ok(true)
}

/// Sends `msg`, logging (not returning) a failure: notification is advisory.
pub(crate) fn send(msg: &str) {
    if let Err(e) = notify(msg) {
        log::warn!("[{}] sd_notify {:?} failed: {e}", sys::getpid(), msg);
    }
}
