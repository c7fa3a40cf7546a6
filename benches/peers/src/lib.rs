//! What the peer servers share with grace's demo (`examples/hello.rs`), so
//! every server does the same work per request: the query parser, the
//! CPU-bound loop of `GET /work?us=N`, and the body of `GET /bytes?n=N`.

use std::sync::OnceLock;

/// The largest body `GET /bytes` serves (as in grace's demo).
pub const BYTES_MAX: usize = 16 << 20;

/// The number `key=N` in a query string, if any.
pub fn query(q: Option<&str>, key: &str) -> Option<u64> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        if k == key {
            v.parse().ok()
        } else {
            None
        }
    })
}

/// About `us` µs of CPU work: 1,000 steps per µs of a multiply-add chain,
/// the loop of grace's demo for the same route.
pub fn work(us: u64) -> u64 {
    let mut x = us;
    for _ in 0..us * 1000 {
        x = std::hint::black_box(
            x.wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407),
        );
    }
    x
}

/// `BYTES_MAX` bytes of grace's pattern (byte `i` is `i % 251`), built once.
pub fn pattern_bytes() -> &'static [u8] {
    static BUF: OnceLock<Vec<u8>> = OnceLock::new();
    BUF.get_or_init(|| (0..BYTES_MAX).map(|i| (i % 251) as u8).collect())
}
