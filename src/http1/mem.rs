//! An in-memory [`Transport`] for tests and fuzzing.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use crate::http1::transport::{Idle, Transport};

/// A [`Transport`] over memory: reads come from a fixed input, writes are
/// captured in [`output`](Self::output). It never blocks (apart from an
/// optional per-read delay).
///
/// Reads deliver at most the next size from [`with_read_sizes`]
/// (the last size repeats), so a head can be dribbled in one byte at a time.
/// Past the end of the input a read returns `Ok(0)` (or fails with
/// `TimedOut`, see [`with_timeout_at_end`]). `wait_idle` answers `Data`
/// while input remains, else `Eof` (or `TimedOut`), unless a scripted answer
/// is queued with [`with_idle_script`].
///
/// [`with_read_sizes`]: Self::with_read_sizes
/// [`with_timeout_at_end`]: Self::with_timeout_at_end
/// [`with_idle_script`]: Self::with_idle_script
#[derive(Debug, Default)]
pub struct MemTransport {
    input: Vec<u8>,
    pos: usize,
    read_sizes: Vec<usize>,
    reads: usize,
    read_delay: Duration,
    timeout_at_end: bool,
    idle_script: VecDeque<Idle>,
    /// Every byte written, in order.
    pub output: Vec<u8>,
    /// What [`Transport::draining`] returns.
    pub draining: bool,
    /// The last value given to [`Transport::set_busy`].
    pub busy: bool,
    /// How many times [`Transport::close`] was called.
    pub closes: u32,
    /// True if the last close was a lingering one.
    pub lingered: bool,
    /// How many `write_all_deadline` calls were made.
    pub writes: u32,
}

impl MemTransport {
    /// A transport whose peer sends `input` and then closes.
    pub fn new(input: impl Into<Vec<u8>>) -> Self {
        MemTransport {
            input: input.into(),
            ..Default::default()
        }
    }

    /// Limits successive reads to these sizes; the last one repeats.
    pub fn with_read_sizes(mut self, sizes: Vec<usize>) -> Self {
        self.read_sizes = sizes;
        self
    }

    /// Sleeps this long before each read that delivers bytes.
    pub fn with_read_delay(mut self, delay: Duration) -> Self {
        self.read_delay = delay;
        self
    }

    /// Past the end of the input, reads fail with `TimedOut` and `wait_idle`
    /// returns `TimedOut`: a peer that stays silent instead of closing.
    pub fn with_timeout_at_end(mut self) -> Self {
        self.timeout_at_end = true;
        self
    }

    /// Answers the next `wait_idle` calls with these, in order (an
    /// [`Idle::Drain`] also sets [`draining`](Self::draining)).
    pub fn with_idle_script(mut self, script: Vec<Idle>) -> Self {
        self.idle_script = script.into();
        self
    }

    /// Input bytes not read yet.
    pub fn unread(&self) -> &[u8] {
        &self.input[self.pos..]
    }

    /// The output as (lossy) text.
    pub fn output_str(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    /// True once [`Transport::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closes > 0
    }
}

impl Transport for MemTransport {
    fn read_deadline(&mut self, buf: &mut [u8], _deadline: Instant) -> io::Result<usize> {
        let left = self.input.len() - self.pos;
        if left == 0 {
            if self.timeout_at_end {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
            }
            return Ok(0);
        }
        if !self.read_delay.is_zero() {
            std::thread::sleep(self.read_delay);
        }
        let limit = match self.read_sizes.len() {
            0 => usize::MAX,
            len => self.read_sizes[self.reads.min(len - 1)].max(1),
        };
        self.reads += 1;
        let n = buf.len().min(left).min(limit);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    fn wait_idle(&mut self, _deadline: Instant) -> io::Result<Idle> {
        if let Some(idle) = self.idle_script.pop_front() {
            if idle == Idle::Drain {
                self.draining = true;
            }
            return Ok(idle);
        }
        Ok(if self.pos < self.input.len() {
            Idle::Data
        } else if self.timeout_at_end {
            Idle::TimedOut
        } else {
            Idle::Eof
        })
    }

    fn write_all_deadline(&mut self, bufs: &[&[u8]], _deadline: Instant) -> io::Result<()> {
        self.writes += 1;
        for b in bufs {
            self.output.extend_from_slice(b);
        }
        Ok(())
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn set_busy(&mut self, busy: bool) {
        self.busy = busy;
    }

    fn close(&mut self, linger: Option<Instant>) {
        self.closes += 1;
        self.lingered = linger.is_some();
    }
}
