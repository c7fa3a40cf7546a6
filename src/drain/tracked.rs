//! Sockets of the program's own, counted by a [`Tracker`](super::Tracker): the drain layer
//! used without the server.

use std::os::fd::{AsFd, OwnedFd};

use super::{ConnState, Registration};

/// Socket types a [`Tracker`](super::Tracker) can track: std's own, which close their
/// descriptor only when dropped (the registry keeps the descriptor's number
/// until then, and a force close shuts it down).
pub trait Trackable: AsFd + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::net::TcpStream {}
    impl Sealed for std::os::unix::net::UnixStream {}
    impl Sealed for std::os::fd::OwnedFd {}
}

impl Trackable for std::net::TcpStream {}
impl Trackable for std::os::unix::net::UnixStream {}
impl Trackable for OwnedFd {}

/// A connection counted by a [`Tracker`](super::Tracker) (see [`Tracker::track`](super::Tracker::track)); it
/// derefs to the stream. Dropping it takes the connection off the count,
/// then closes it.
#[derive(Debug)]
pub struct Tracked<S: Trackable> {
    pub(super) reg: Option<Registration>,
    pub(super) stream: Option<S>,
}

impl<S: Trackable> Tracked<S> {
    /// Marks the connection busy (handling a request) or idle, for the
    /// drain's counts and for [`Tracker::force_close`](super::Tracker::force_close), which shuts down
    /// busy and idle connections alike after the timeout.
    pub fn set_state(&self, state: ConnState) {
        if let Some(r) = &self.reg {
            r.set_state(state);
        }
    }

    /// True if a drain shut this connection down by force.
    pub fn was_forced(&self) -> bool {
        self.reg.as_ref().is_some_and(|r| r.was_forced())
    }
}

impl<S: Trackable> std::ops::Deref for Tracked<S> {
    type Target = S;
    fn deref(&self) -> &S {
        self.stream.as_ref().expect("present until drop")
    }
}

impl<S: Trackable> std::ops::DerefMut for Tracked<S> {
    fn deref_mut(&mut self) -> &mut S {
        self.stream.as_mut().expect("present until drop")
    }
}

impl<S: Trackable> Drop for Tracked<S> {
    fn drop(&mut self) {
        // Off the registry first: a drain never touches a closed number.
        self.reg.take();
        self.stream.take();
    }
}
