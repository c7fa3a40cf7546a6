//! A counting global allocator: wraps [`System`] and, while a [`measure`]
//! call runs on the current thread, records the largest single allocation
//! and the peak of live bytes allocated since the measurement started.
//!
//! Install it with `#[global_allocator] static A: Counting = Counting;`.
//! Without it, [`measure`] reports zeros and every bound holds trivially.
//!
//! The counters are thread-local (a `const` thread-local of `Copy` data needs
//! no allocation and no destructor), so concurrent test threads do not mix
//! their numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// What one [`measure`] call saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Largest size passed to one `alloc`/`alloc_zeroed`/`realloc`.
    pub largest: usize,
    /// Peak of (bytes allocated - bytes freed) since the start.
    pub peak_live: isize,
    /// Number of allocations (a `realloc` counts as one).
    pub allocs: usize,
}

#[derive(Clone, Copy)]
struct State {
    on: bool,
    live: isize,
    stats: Stats,
}

const OFF: State = State {
    on: false,
    live: 0,
    stats: Stats {
        largest: 0,
        peak_live: 0,
        allocs: 0,
    },
};

thread_local! {
    static STATE: Cell<State> = const { Cell::new(OFF) };
}

fn note(alloc: usize, freed: usize) {
    let _ = STATE.try_with(|s| {
        let mut st = s.get();
        if !st.on {
            return;
        }
        if alloc > 0 {
            st.stats.allocs += 1;
            st.stats.largest = st.stats.largest.max(alloc);
        }
        st.live += alloc as isize - freed as isize;
        st.stats.peak_live = st.stats.peak_live.max(st.live);
        s.set(st);
    });
}

/// The counting allocator.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged; the bookkeeping only touches a thread-local `Cell` of plain data
// (no allocation, no reentrancy).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size(), 0);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size(), 0);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as ours.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size, layout.size());
        }
        p
    }
}

/// Runs `f` and returns what it allocated on this thread.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Stats) {
    STATE.with(|s| s.set(State { on: true, ..OFF }));
    let r = f();
    let st = STATE.with(|s| s.replace(OFF));
    (r, st.stats)
}

/// Panics if `stats` goes over `bound` bytes, for the largest single
/// allocation or for the peak of live bytes.
pub fn assert_within(stats: Stats, bound: usize, what: &str) {
    assert!(
        stats.largest <= bound,
        "{what}: one allocation of {} bytes, over the bound of {bound} bytes derived from the config",
        stats.largest
    );
    assert!(
        stats.peak_live <= bound as isize,
        "{what}: {} live bytes at the peak, over the bound of {bound} bytes derived from the config",
        stats.peak_live
    );
}
