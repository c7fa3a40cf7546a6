//! `ChunkedDecoder`: the chunked target's properties.
//!
//! Input: byte 0 picks the sizes of the input pieces, byte 1 the size of the
//! output buffer; the rest is a chunked body. It is decoded twice, once in
//! one piece into a large buffer and once in pieces into a small buffer, and:
//!
//! - nothing panics, and `decode` allocates within a bound from the config;
//! - every `decode` call consumes at most its input and writes at most its
//!   output buffer, and `(0, 0)` before the end means "need more input";
//! - the decoded total never exceeds `max_body` and, once done, equals
//!   `total()`; after done, `decode` consumes nothing;
//! - both runs end the same way: the same bytes, the same count of consumed
//!   input, or the same error class (`Invalid` / `TooLarge`), or both still
//!   waiting for input with the same bytes decoded so far.

use grace::http1::{BodyError, ChunkedDecoder, HttpConfig};

use super::{alloc, alloc_bound, show, small_config};

/// Limits: 4 KiB body, 64-byte size lines, 512 bytes of trailers.
pub fn config() -> HttpConfig {
    small_config(512, 16, 256, 4096)
}

/// How a decoding run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The last chunk and the trailers were read; `consumed` input bytes.
    Done { out: Vec<u8>, consumed: usize },
    /// The input ran out first.
    NeedMore { out: Vec<u8> },
    /// The input is malformed (400).
    Invalid,
    /// The body is over the limit (413).
    TooLarge,
}

/// Input piece sizes from a control byte: two alternating sizes in 1..=16.
pub fn piece_sizes(b: u8) -> [usize; 2] {
    [usize::from(b & 15) + 1, usize::from(b >> 4) + 1]
}

/// Output buffer size from a control byte: 1..=64, or 4 KiB from 0xc0 up.
pub fn out_size(b: u8) -> usize {
    if b >= 0xc0 {
        4096
    } else {
        usize::from(b & 63) + 1
    }
}

/// Decodes `input`, handing it over in pieces (`pieces` cycled; an empty
/// slice hands it over whole) with an output buffer of `out_len` bytes.
pub fn decode(cfg: &HttpConfig, input: &[u8], pieces: &[usize], out_len: usize) -> End {
    let mut dec = ChunkedDecoder::from_config(cfg);
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; out_len];
    let mut fed = 0;
    let mut consumed = 0;
    let mut piece = 0;
    loop {
        let (r, stats) = alloc::measure(|| dec.decode(&buf, &mut tmp));
        alloc::assert_within(stats, alloc_bound(cfg), "ChunkedDecoder::decode");
        let (used, written) = match r {
            Ok(uw) => uw,
            Err(BodyError::TooLarge) => return End::TooLarge,
            Err(BodyError::Invalid(_)) => return End::Invalid,
            Err(e) => panic!("decoder error {e:?} that is not about the input"),
        };
        assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
        assert!(
            written <= tmp.len(),
            "wrote {written} into {} bytes",
            tmp.len()
        );
        buf.drain(..used);
        consumed += used;
        out.extend_from_slice(&tmp[..written]);
        assert!(
            out.len() as u64 <= cfg.max_body_bytes,
            "decoded {} bytes, over the body limit {}",
            out.len(),
            cfg.max_body_bytes
        );
        assert!(
            dec.total() <= cfg.max_body_bytes,
            "total() {} over the body limit",
            dec.total()
        );
        assert!(
            out.len() as u64 <= dec.total(),
            "decoded {} bytes, more than the chunk sizes say ({})",
            out.len(),
            dec.total()
        );
        if dec.is_done() {
            assert_eq!(
                out.len() as u64,
                dec.total(),
                "done, but chunk data missing"
            );
            assert_eq!(
                dec.decode(&buf, &mut tmp),
                Ok((0, 0)),
                "decode after the end"
            );
            assert!(consumed <= input.len());
            return End::Done { out, consumed };
        }
        if used == 0 && written == 0 {
            if fed == input.len() {
                return End::NeedMore { out };
            }
            let n = match pieces {
                [] => input.len() - fed,
                p => p[piece % p.len()].min(input.len() - fed),
            };
            piece += 1;
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
    }
}

/// Runs every chunked property on `data` (two control bytes, then a body).
pub fn check(data: &[u8]) {
    let [a, b, input @ ..] = data else {
        return;
    };
    let cfg = config();
    let whole = decode(&cfg, input, &[], 64 * 1024);
    let split = decode(&cfg, input, &piece_sizes(*a), out_size(*b));
    assert_eq!(
        whole,
        split,
        "in one piece vs in pieces of {:?} into {} bytes: {}",
        piece_sizes(*a),
        out_size(*b),
        show(input)
    );
}
