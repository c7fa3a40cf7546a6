//! The chunked transfer coding's decoder (RFC 9112 7.1).

use crate::http1::{BodyError, HttpConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// A strict decoder for the chunked transfer coding (RFC 9112 7.1).
///
/// Chunk-size lines are 1 to 16 hex digits, optionally followed by
/// `;extensions`, bounded by `max_line` bytes and ended by CRLF (a bare LF is
/// an error, as is an empty size line). Chunk data must be followed by CRLF.
/// Trailer fields are read, bounded in total by `max_trailers` bytes, and
/// discarded. More than `max_body` decoded bytes is [`BodyError::TooLarge`].
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    total: u64,
    trailer_bytes: usize,
    max_body: u64,
    max_line: usize,
    max_trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder with explicit limits.
    pub fn new(max_body: u64, max_line: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            total: 0,
            trailer_bytes: 0,
            max_body,
            max_line,
            max_trailers,
        }
    }

    /// A decoder with the limits of `cfg`.
    pub fn from_config(cfg: &HttpConfig) -> Self {
        Self::new(
            cfg.max_body_bytes,
            cfg.max_chunk_ext_len,
            cfg.max_head_bytes,
        )
    }

    /// True once the last chunk and the trailer section were read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decoded body bytes so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Decodes from `input` into `out`. Returns `(consumed, written)`: the
    /// caller drops `consumed` bytes of input. `(0, 0)` while not
    /// [`is_done`](Self::is_done) means more input is needed (or `out` is
    /// empty).
    pub fn decode(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), BodyError> {
        let mut used = 0;
        let mut written = 0;
        loop {
            let avail = &input[used..];
            match self.state {
                ChunkState::Done => break,
                ChunkState::Size => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if avail.len() > self.max_line + 1 {
                            return Err(BodyError::Invalid("chunk-size line too long"));
                        }
                        break;
                    };
                    let size = self.size_line(&avail[..nl])?;
                    used += nl + 1;
                    if size == 0 {
                        self.state = ChunkState::Trailers;
                    } else {
                        if self.max_body - self.total < size {
                            return Err(BodyError::TooLarge);
                        }
                        self.total += size;
                        self.state = ChunkState::Data(size);
                    }
                }
                ChunkState::Data(left) => {
                    let room = out.len() - written;
                    if avail.is_empty() || room == 0 {
                        break;
                    }
                    let n = avail
                        .len()
                        .min(room)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out[written..written + n].copy_from_slice(&avail[..n]);
                    written += n;
                    used += n;
                    self.advance_data(n);
                }
                ChunkState::DataEnd => {
                    match avail {
                        [b'\r', b'\n', ..] => used += 2,
                        [] | [b'\r'] => break,
                        _ => return Err(BodyError::Invalid("chunk data not followed by CRLF")),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + avail.len() > self.max_trailers {
                            return Err(BodyError::Invalid("trailer section too large"));
                        }
                        break;
                    };
                    self.trailer_bytes += nl + 1;
                    if self.trailer_bytes > self.max_trailers {
                        return Err(BodyError::Invalid("trailer section too large"));
                    }
                    let line = &avail[..nl];
                    let Some(line) = line.strip_suffix(b"\r") else {
                        return Err(BodyError::Invalid("bare LF in trailer section"));
                    };
                    if line.iter().any(|&b| b == b'\r' || b == 0) {
                        return Err(BodyError::Invalid("invalid byte in trailer"));
                    }
                    used += nl + 1;
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
        Ok((used, written))
    }

    /// Parses one chunk-size line (without its LF).
    fn size_line(&self, line: &[u8]) -> Result<u64, BodyError> {
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(BodyError::Invalid("chunk-size line not ended by CRLF"));
        };
        if line.len() > self.max_line {
            return Err(BodyError::Invalid("chunk-size line too long"));
        }
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(BodyError::Invalid("missing chunk size"));
        }
        if digits > 16 {
            return Err(BodyError::Invalid("chunk size overflows"));
        }
        let mut size: u64 = 0;
        for &b in &line[..digits] {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => b - b'A' + 10,
            };
            size = (size << 4) | u64::from(d);
        }
        // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
        let ext = &line[digits..];
        let after_ws = ext
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(ext.len());
        match ext.get(after_ws) {
            None if after_ws == 0 => {}
            Some(b';') => {
                if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err(BodyError::Invalid("invalid byte in chunk extension"));
                }
            }
            _ => return Err(BodyError::Invalid("invalid chunk-size line")),
        }
        Ok(size)
    }

    /// Bytes left in the current chunk's data, if in chunk data.
    pub(crate) fn data_left(&self) -> Option<u64> {
        match self.state {
            ChunkState::Data(left) => Some(left),
            _ => None,
        }
    }

    /// Records `n` bytes of chunk data read outside [`decode`](Self::decode).
    pub(crate) fn advance_data(&mut self, n: usize) {
        if let ChunkState::Data(left) = self.state {
            let left = left - n as u64;
            self.state = if left == 0 {
                ChunkState::DataEnd
            } else {
                ChunkState::Data(left)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<Vec<u8>, BodyError> {
        let mut dec = ChunkedDecoder::new(1 << 20, 64, 256);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut tmp = [0u8; 7];
        loop {
            let (used, written) = dec.decode(&buf, &mut tmp)?;
            buf.drain(..used);
            out.extend_from_slice(&tmp[..written]);
            if dec.is_done() {
                return Ok(out);
            }
            if used == 0 && written == 0 {
                if fed == input.len() {
                    return Err(BodyError::Invalid("eof"));
                }
                let n = step.min(input.len() - fed);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
            }
        }
    }

    #[test]
    fn chunked_ok() {
        let input = b"5\r\nhello\r\n7;a=b;c\r\n, world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
        for step in [1, 2, 3, 100] {
            assert_eq!(
                decode_all(input, step).unwrap(),
                b"hello, world0123456789",
                "step {step}"
            );
        }
        assert_eq!(decode_all(b"0\r\n\r\n", 1).unwrap(), b"");
        assert!(decode_all(b"00000000000000001\r\nx\r\n0\r\n\r\n", 4).is_err());
        assert_eq!(
            decode_all(b"0000000000000001\r\nx\r\n0\r\n\r\n", 4).unwrap(),
            b"x"
        );
    }

    #[test]
    fn chunked_bad() {
        let bad: &[&[u8]] = &[
            b"\r\n5\r\nhello\r\n0\r\n\r\n", // empty size line
            b"5\nhello\r\n0\r\n\r\n",       // bare LF
            b"5\r\nhelloX\r\n0\r\n\r\n",    // data not followed by CRLF
            b"5\r\nhello\r\n0\r\n\n",       // bare LF ending trailers
            b"g\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"-5\r\n",
            b"+5\r\n",
            b"0x5\r\n",
            b"5\r\nhello\r\n0\r\nX: 1\n\r\n",
        ];
        for input in bad {
            let r = decode_all(input, 3);
            assert!(
                matches!(r, Err(BodyError::Invalid(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Overflowing sizes and oversized lines.
        let long = format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(100));
        assert!(decode_all(long.as_bytes(), 5).is_err());
        let big_trailers = format!("0\r\n{}\r\n", "X: y\r\n".repeat(100));
        assert!(decode_all(big_trailers.as_bytes(), 50).is_err());
        let mut dec = ChunkedDecoder::new(10, 64, 256);
        assert_eq!(dec.decode(b"b\r\n", &mut [0; 4]), Err(BodyError::TooLarge));
        let mut dec = ChunkedDecoder::new(u64::MAX, 64, 256);
        assert_eq!(
            dec.decode(b"FFFFFFFFFFFFFFFFF\r\n", &mut [0; 4]),
            Err(BodyError::Invalid("chunk size overflows"))
        );
    }
}
