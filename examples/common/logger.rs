//! The demos' `RUST_LOG` logger, shared by `examples/hello.rs` and
//! `examples/tls.rs` (`#[path]`-included, not an example of its own).

use std::io::{self, Write};

/// A minimal `RUST_LOG` logger to stderr (no logger crate needed). `RUST_LOG` may be a level, or `target=level,...`; the most
/// verbose level mentioned wins.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // One write(2) per line: generations share stderr during a
            // handover, and a line written in pieces would interleave.
            let line = format!(
                "{}.{:03} {:5} {}: {}\n",
                now.as_secs(),
                now.subsec_millis(),
                r.level(),
                r.target(),
                r.args()
            );
            let _ = io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

pub fn init_logger() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let level = spec
        .split(',')
        .filter_map(|part| part.rsplit('=').next())
        .filter_map(|l| l.trim().parse::<log::LevelFilter>().ok())
        .max()
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(level);
    }
}
