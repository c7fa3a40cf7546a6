//! Assertions shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`).
//!
//! Each target module has one entry point, `check(data)`, that runs the code
//! under test on `data` and panics on any violated property. It uses only
//! `grace`, `http` and `std`, so it builds in the fuzz crate and in the main
//! crate's tests alike.
//!
//! - [`head`]: `parse_head` under two configs (small limits, and large ones
//!   with more header slots than fit on the stack).
//! - [`chunked`]: `ChunkedDecoder`, in one piece and in pieces. Input: two
//!   control bytes, then the chunked body.
//! - [`conn`]: `serve_connection` over a `MemTransport`. Input: one control
//!   byte, then the bytes the client sends.
//! - [`alloc`]: the counting allocator; every `check` measures the code under
//!   test with it and bounds the largest allocation by the config.

#![allow(dead_code)]

pub mod alloc;
pub mod chunked;
pub mod conn;
pub mod head;

use grace::http1::HttpConfig;
use std::time::Duration;

/// Slack for the allocation bound, for fixed-size buffers that do not depend
/// on the limits (the 16 KiB stream buffer, header maps, the 8 KiB discard
/// scratch lives on the stack).
pub const ALLOC_SLACK: usize = 64 * 1024;

/// The allocation bound derived from a config: no single allocation (and no
/// peak of live bytes) may go over it, whatever the input's size.
pub fn alloc_bound(cfg: &HttpConfig) -> usize {
    let body = usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX);
    4usize
        .saturating_mul(cfg.max_head_bytes.max(body))
        .saturating_add(ALLOC_SLACK)
}

/// Timeouts for in-memory runs. `MemTransport` never blocks, so they are
/// only compared against the clock: they are long enough that a slow
/// (instrumented) run never hits one, which keeps every run deterministic.
/// Timeouts are exercised instead by `MemTransport::with_timeout_at_end`,
/// chosen by the conn target's control byte.
const MEM_TIMEOUT: Duration = Duration::from_secs(30);

/// A config with small limits and in-memory timeouts.
pub fn small_config(
    max_head_bytes: usize,
    max_headers: usize,
    max_target_len: usize,
    max_body_bytes: u64,
) -> HttpConfig {
    let mut c = HttpConfig::default();
    c.max_head_bytes = max_head_bytes;
    c.max_headers = max_headers;
    c.max_target_len = max_target_len;
    c.max_body_bytes = max_body_bytes;
    c.max_chunk_ext_len = 64;
    c.discard_body_limit = 512;
    c.head_timeout = MEM_TIMEOUT;
    c.idle_timeout = MEM_TIMEOUT;
    c.body_timeout = MEM_TIMEOUT;
    c.write_timeout = MEM_TIMEOUT;
    c.drain_grace = Duration::from_millis(1);
    c.linger_timeout = Duration::from_millis(1);
    c
}

/// Statuses `parse_head` may reject a head with (BRIEF §4).
pub const HEAD_REJECT: &[u16] = &[400, 413, 414, 417, 431, 501, 505];

/// Statuses the connection loop may answer a rejected head with: those of
/// `parse_head`, plus 408 for a head that does not arrive in time.
pub const CONN_REJECT: &[u16] = &[400, 408, 413, 414, 417, 431, 501, 505];

/// The bytes of a comma-separated list element, trimmed of SP and HTAB.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// True if the comma-separated header value `v` has the token `tok`
/// (case-insensitive).
pub fn has_token(v: &[u8], tok: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|e| trim(e).eq_ignore_ascii_case(tok.as_bytes()))
}

/// `data` as text for assertion messages, cut to a readable length.
pub fn show(data: &[u8]) -> String {
    const MAX: usize = 600;
    let s = String::from_utf8_lossy(&data[..data.len().min(MAX)]);
    if data.len() > MAX {
        format!("{s:?}... ({} bytes)", data.len())
    } else {
        format!("{s:?}")
    }
}
