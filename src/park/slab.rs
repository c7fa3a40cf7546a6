//! The idle poller's slab: one slot per connection it knows, parked, busy
//! (a worker has it) or lingering (closing politely), addressed by tokens
//! that carry the slot's index and generation.

use std::sync::Weak;
use std::time::Instant;

use super::{ParkLot, Parked};
use crate::conn::Conn;
use crate::protocol::Protocol;

/// A busy connection's claim on its slot: frees the slot when the
/// connection is dropped by whoever holds it (a worker closing it, a pool
/// dropping its queue). Never dropped under the slab lock while armed.
pub(super) struct SlotRef<P: Protocol> {
    pub(super) lot: Option<Weak<ParkLot<P>>>,
    pub(super) token: u64,
}

impl<P: Protocol> SlotRef<P> {
    /// The slab itself is done with the slot: dropping frees nothing.
    pub(super) fn disarm(&mut self) {
        self.lot = None;
    }
}

impl<P: Protocol> Drop for SlotRef<P> {
    fn drop(&mut self) {
        if let Some(lot) = self.lot.take().and_then(|w| w.upgrade()) {
            lot.release(self.token);
        }
    }
}

/// The earlier of `a` (if any) and `b`.
pub(super) fn earliest(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.min(b))
}

pub(super) enum Slot<P: Protocol> {
    Free,
    Parked {
        job: Parked<P>,
        deadline: Instant,
    },
    /// A worker has the connection; `ready` once bytes (or the peer's
    /// close) arrived meanwhile, so the next park hands it straight back.
    Busy {
        ready: bool,
    },
    /// Boxed, as a parked connection is, so that a slot stays a few words
    /// (the slab has one per connection; a slot as big as a `Conn` cost
    /// every idle connection about 0.2 KiB more, `benches/rss.py`).
    Lingering {
        conn: Box<Conn>,
        deadline: Instant,
        left: usize,
    },
}

pub(super) struct Entry<P: Protocol> {
    pub(super) generation: u32,
    pub(super) slot: Slot<P>,
}

pub(super) struct Slab<P: Protocol> {
    pub(super) entries: Vec<Entry<P>>,
    pub(super) free: Vec<u32>,
    pub(super) parked: usize,
    pub(super) lingering: usize,
    /// The earliest deadline of any slot (may be stale: early is harmless).
    pub(super) next_deadline: Option<Instant>,
    pub(super) draining: bool,
}

impl<P: Protocol> Default for Slab<P> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            parked: 0,
            lingering: 0,
            next_deadline: None,
            draining: false,
        }
    }
}

impl<P: Protocol> Slab<P> {
    pub(super) fn insert(&mut self, slot: Slot<P>) -> u64 {
        let deadline = match &slot {
            Slot::Parked { deadline, .. } => {
                self.parked += 1;
                *deadline
            }
            Slot::Lingering { deadline, .. } => {
                self.lingering += 1;
                *deadline
            }
            Slot::Free | Slot::Busy { .. } => unreachable!("inserting a slot without a connection"),
        };
        self.next_deadline = Some(earliest(self.next_deadline, deadline));
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    slot: Slot::Free,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let e = &mut self.entries[idx as usize];
        e.slot = slot;
        (u64::from(e.generation) << 32) | u64::from(idx)
    }

    pub(super) fn get(&mut self, token: u64) -> Option<&mut Slot<P>> {
        let idx = (token & 0xffff_ffff) as usize;
        let e = self.entries.get_mut(idx)?;
        (u64::from(e.generation) == token >> 32 && !matches!(e.slot, Slot::Free))
            .then_some(&mut e.slot)
    }

    pub(super) fn remove(&mut self, token: u64) -> Slot<P> {
        let idx = (token & 0xffff_ffff) as u32;
        let e = &mut self.entries[idx as usize];
        let slot = std::mem::replace(&mut e.slot, Slot::Free);
        match slot {
            Slot::Parked { .. } => self.parked -= 1,
            Slot::Lingering { .. } => self.lingering -= 1,
            Slot::Free | Slot::Busy { .. } => {}
        }
        e.generation = e.generation.wrapping_add(1);
        self.free.push(idx);
        slot
    }

    pub(super) fn token(&self, idx: usize) -> u64 {
        (u64::from(self.entries[idx].generation) << 32) | idx as u64
    }
}
