//! Replays the fuzz corpora on the stable toolchain: every file under
//! `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through the
//! same checks as the fuzz target of that name (`fuzz/fuzz_targets/common/`),
//! with the same counting allocator, so the seeds and every input that once
//! found a bug keep passing without cargo-fuzz or nightly.

#[path = "../fuzz/fuzz_targets/common/mod.rs"]
mod fuzz_common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use fuzz_common::alloc::{measure, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

/// Fewer seed files than this for a target means the corpus went missing.
const MIN_SEEDS: usize = 24;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs `check` on every file of the target's corpus and regressions;
/// reports every failing file, not only the first.
fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let seeds = files(&root.join("corpus").join(target));
    let regressions = files(&root.join("regressions").join(target));
    assert!(
        seeds.len() >= MIN_SEEDS,
        "{} seed files in fuzz/corpus/{target}, want at least {MIN_SEEDS} (run fuzz/seed.py)",
        seeds.len()
    );
    let start = Instant::now();
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", path.display()));
        }
    }
    eprintln!(
        "fuzz corpus {target}: {} seeds, {} regressions in {:?}",
        seeds.len(),
        regressions.len(),
        start.elapsed()
    );
    assert!(failed.is_empty(), "failing inputs:\n{}", failed.join("\n"));
}

#[test]
fn counting_allocator_is_active() {
    let (v, stats) = measure(|| vec![0u8; 12345]);
    assert_eq!(v.len(), 12345);
    assert!(stats.largest >= 12345, "{stats:?}");
}

#[test]
fn fuzz_corpus_head() {
    replay("head", fuzz_common::head::check);
}

#[test]
fn fuzz_corpus_chunked() {
    replay("chunked", fuzz_common::chunked::check);
}

#[test]
fn fuzz_corpus_conn() {
    replay("conn", fuzz_common::conn::check);
}
