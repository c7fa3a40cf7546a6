//! `parse_head` on raw bytes, under small and large limits: see
//! `common/head.rs` for the properties.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static ALLOC: common::alloc::Counting = common::alloc::Counting;

fuzz_target!(|data: &[u8]| common::head::check(data));
