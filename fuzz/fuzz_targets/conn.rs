//! A whole connection through `serve_connection` over a `MemTransport`: see
//! `common/conn.rs`. Input: one control byte (transport mode), then the
//! bytes the client sends.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

fuzz_target!(|data: &[u8]| common::conn::check(data));
