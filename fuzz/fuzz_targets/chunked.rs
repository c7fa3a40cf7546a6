//! `ChunkedDecoder` in one piece and in pieces: see `common/chunked.rs`.
//! Input: two control bytes (piece sizes, output buffer size), then a body.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

fuzz_target!(|data: &[u8]| common::chunked::check(data));
