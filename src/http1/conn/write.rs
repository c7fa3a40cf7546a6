//! The write side of a connection: responses (fixed, streamed, errors)
//! and their heads.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use http::{Response, StatusCode};

use super::{Conn, Next, Written, COPY_BODY_MAX, ERROR_CONTENT_TYPE, STREAM_BUF};
use crate::http1::response::{
    declared_length, hex, wants_close, write_head, ConnHeader, Framing, Inner,
};
use crate::http1::{ResponseBody, Upgraded};

impl Conn<'_> {
    pub(super) fn write(&mut self, bufs: &[&[u8]]) -> io::Result<()> {
        let deadline = Instant::now() + self.cfg.write_timeout;
        self.t.write_all_deadline(bufs, deadline)
    }

    /// Writes the handler's response.
    pub(super) fn write_response(
        &mut self,
        resp: Response<ResponseBody>,
        is_head: bool,
        http10: bool,
        close_wanted: bool,
    ) -> io::Result<Written> {
        let (parts, mut body) = resp.into_parts();
        // A stream whose handler declared its length is sent as one.
        if matches!(body.0, Inner::Stream(_)) {
            if let Some(n) = declared_length(&parts.headers) {
                if let Inner::Stream(r) = std::mem::take(&mut body.0) {
                    body.0 = Inner::Sized(r, n);
                }
            }
        }
        let status = parts.status;
        let mut close = close_wanted || wants_close(&parts.headers) || status.is_informational();
        let no_body = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let framing = if no_body {
            Framing::None
        } else {
            match body.fixed() {
                // HEAD: the length a GET would have; an empty body stands
                // for "not produced", so a handler's own header is kept.
                Some([]) if is_head => {
                    Framing::Length(declared_length(&parts.headers).unwrap_or(0))
                }
                Some(b) => Framing::Length(b.len() as u64),
                None => match &body.0 {
                    Inner::Sized(_, n) | Inner::File(_, n) => Framing::Length(*n),
                    _ if http10 => {
                        close = true;
                        Framing::Close
                    }
                    _ => Framing::Chunked,
                },
            }
        };
        let conn = if close {
            ConnHeader::Close
        } else if http10 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::None
        };
        self.wbuf.clear();
        if write_head(
            &mut self.wbuf,
            status,
            Some(&parts.headers),
            framing,
            conn,
            b"",
        )
        .is_err()
        {
            log::warn!(
                "[{}] response header value contains CR, LF or NUL: answering 500 instead",
                std::process::id()
            );
            self.send_error(StatusCode::INTERNAL_SERVER_ERROR, is_head)?;
            return Ok(Written {
                close: true,
                complete: false,
            });
        }
        let send_body = !is_head && !no_body;
        let streamed = matches!(
            body.0,
            Inner::Stream(_) | Inner::Sized(..) | Inner::File(..)
        );
        if close && !(send_body && streamed) {
            // Head and fixed body in one send, then the close: let the FIN
            // ride with them.
            self.t.last_response();
        }
        match body.0 {
            Inner::Stream(reader) if send_body => {
                let complete = self.send_stream(reader, framing == Framing::Close)?;
                Ok(Written {
                    close: close || !complete,
                    complete,
                })
            }
            Inner::Sized(reader, n) if send_body => {
                let (complete, exact) = self.send_sized(reader, n)?;
                Ok(Written {
                    close: close || !exact,
                    complete,
                })
            }
            Inner::File(file, n) if send_body => {
                self.t.stream_begins();
                self.flush_head()?;
                let sent = self.t.send_file(&file, 0, n, self.cfg.write_timeout)?;
                if sent < n {
                    log::warn!(
                        "[{}] response file ended {} bytes short of its length ({n}): closing \
                         the connection",
                        std::process::id(),
                        n - sent
                    );
                }
                Ok(Written {
                    close: close || sent < n,
                    complete: sent == n,
                })
            }
            Inner::Static(b) if send_body => {
                self.send_fixed(b)?;
                Ok(Written {
                    close,
                    complete: true,
                })
            }
            Inner::Bytes(b) if send_body => {
                self.send_fixed(&b)?;
                Ok(Written {
                    close,
                    complete: true,
                })
            }
            _ => {
                let wbuf = std::mem::take(&mut self.wbuf);
                let r = self.write(&[&wbuf]);
                self.wbuf = wbuf;
                r?;
                Ok(Written {
                    close,
                    complete: true,
                })
            }
        }
    }

    /// Sends the head in `wbuf` followed by a fixed body.
    pub(super) fn send_fixed(&mut self, body: &[u8]) -> io::Result<()> {
        let mut wbuf = std::mem::take(&mut self.wbuf);
        let r = if body.len() <= COPY_BODY_MAX {
            wbuf.extend_from_slice(body);
            self.write(&[&wbuf])
        } else {
            self.write(&[&wbuf, body])
        };
        self.wbuf = wbuf;
        r
    }

    /// Sends the head in `wbuf` as it is.
    fn flush_head(&mut self) -> io::Result<()> {
        let wbuf = std::mem::take(&mut self.wbuf);
        let r = self.write(&[&wbuf]);
        self.wbuf = wbuf;
        r
    }

    /// Sends the head in `wbuf`, then exactly `len` bytes from `reader`.
    /// Returns (the body went out whole, the reader had exactly `len`):
    /// a short reader leaves the body incomplete, a long one is cut at
    /// `len`; both close the connection, and the log says which.
    fn send_sized(
        &mut self,
        mut reader: Box<dyn Read + Send>,
        len: u64,
    ) -> io::Result<(bool, bool)> {
        self.t.stream_begins();
        self.flush_head()?;
        let mut buf = std::mem::take(&mut self.stream_buf);
        if buf.is_empty() {
            buf = vec![0; STREAM_BUF];
        }
        let mut left = len;
        let result = loop {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            // One more byte past the end tells a reader that runs long.
            let want = if left == 0 { 1 } else { want };
            let read = catch_unwind(AssertUnwindSafe(|| loop {
                match reader.read(&mut buf[..want]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            }));
            let pid = std::process::id();
            match read {
                Ok(Ok(0)) if left == 0 => break Ok((true, true)),
                Ok(Ok(_)) if left == 0 => {
                    log::warn!(
                        "[{pid}] response body runs past its Content-Length ({len}): the rest \
                         was not sent; closing the connection"
                    );
                    break Ok((true, false));
                }
                Ok(Ok(0)) => {
                    log::warn!(
                        "[{pid}] response body ended {left} bytes short of its Content-Length \
                         ({len}): closing the connection"
                    );
                    break Ok((false, false));
                }
                Ok(Ok(n)) => {
                    let n = n.min(want);
                    if let Err(e) = self.write(&[&buf[..n]]) {
                        break Err(e);
                    }
                    left -= n as u64;
                }
                Ok(Err(e)) => {
                    log::warn!("[{pid}] response body reader failed: {e}: closing the connection");
                    break Ok((false, false));
                }
                Err(_) => {
                    log::warn!("[{pid}] response body reader panicked: closing the connection");
                    break Ok((false, false));
                }
            }
        };
        self.stream_buf = buf;
        result
    }

    /// Sends the head in `wbuf`, then the stream: chunked, or raw when `raw`.
    /// Returns whether the body was sent whole.
    pub(super) fn send_stream(
        &mut self,
        mut reader: Box<dyn Read + Send>,
        raw: bool,
    ) -> io::Result<bool> {
        self.t.stream_begins();
        let wbuf = std::mem::take(&mut self.wbuf);
        let r = self.write(&[&wbuf]);
        self.wbuf = wbuf;
        r?;
        let mut buf = std::mem::take(&mut self.stream_buf);
        if buf.is_empty() {
            buf = vec![0; STREAM_BUF];
        }
        let result = loop {
            let read = catch_unwind(AssertUnwindSafe(|| loop {
                match reader.read(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            }));
            match read {
                Err(_) => {
                    log::warn!(
                        "[{}] response body reader panicked: closing the connection",
                        std::process::id()
                    );
                    break Ok(false);
                }
                Ok(Err(e)) => {
                    log::warn!(
                        "[{}] response body reader failed: {e}: closing the connection",
                        std::process::id()
                    );
                    break Ok(false);
                }
                Ok(Ok(0)) => {
                    break if raw {
                        Ok(true)
                    } else {
                        self.write(&[b"0\r\n\r\n"]).map(|()| true)
                    };
                }
                Ok(Ok(n)) => {
                    let n = n.min(buf.len());
                    let r = if raw {
                        self.write(&[&buf[..n]])
                    } else {
                        let mut tmp = [0u8; 16];
                        let size = hex(&mut tmp, n as u64);
                        self.write(&[size, b"\r\n", &buf[..n], b"\r\n"])
                    };
                    if let Err(e) = r {
                        break Err(e);
                    }
                }
            }
        };
        self.stream_buf = buf;
        result
    }

    /// Sends one of the server's own error responses, with
    /// `Connection: close`, and records its status.
    pub(super) fn send_error(&mut self, status: StatusCode, is_head: bool) -> io::Result<()> {
        self.stats.last_error = Some(status);
        self.t.last_response();
        let reason = status.canonical_reason().unwrap_or("");
        let len = status.as_str().len() + 1 + reason.len() + 1;
        self.wbuf.clear();
        let _ = write_head(
            &mut self.wbuf,
            status,
            None,
            Framing::Length(len as u64),
            ConnHeader::Close,
            ERROR_CONTENT_TYPE,
        );
        if !is_head {
            self.wbuf.extend_from_slice(status.as_str().as_bytes());
            self.wbuf.push(b' ');
            self.wbuf.extend_from_slice(reason.as_bytes());
            self.wbuf.push(b'\n');
        }
        let wbuf = std::mem::take(&mut self.wbuf);
        let r = self.write(&[&wbuf]);
        self.wbuf = wbuf;
        if let Err(e) = &r {
            log::debug!("[{}] writing {status} response: {e}", std::process::id());
        }
        r
    }

    /// Answers `101 Switching Protocols` and hands the connection to the
    /// handler's callback, or, if the request did not ask to upgrade (or
    /// left a body unread) or the status is not 101, answers 500.
    pub(super) fn switch_protocols(
        &mut self,
        resp: Response<ResponseBody>,
        asked: bool,
        is_head: bool,
    ) -> Next {
        let (parts, body) = resp.into_parts();
        let Inner::Upgrade(on_upgrade) = body.0 else {
            unreachable!("called for an upgrade body only");
        };
        if !asked || parts.status != StatusCode::SWITCHING_PROTOCOLS {
            log::warn!(
                "[{}] handler switched protocols with status {} on a request that {}: \
                 answering 500",
                std::process::id(),
                parts.status.as_u16(),
                if asked {
                    "asked to"
                } else {
                    "did not ask to (or sent a body)"
                }
            );
            let _ = self.send_error(StatusCode::INTERNAL_SERVER_ERROR, is_head);
            return Next::Close { linger: true };
        }
        self.wbuf.clear();
        if write_head(
            &mut self.wbuf,
            parts.status,
            Some(&parts.headers),
            Framing::None,
            ConnHeader::None,
            b"Connection: Upgrade\r\n",
        )
        .is_err()
        {
            log::warn!(
                "[{}] response header value contains CR, LF or NUL: answering 500 instead",
                std::process::id()
            );
            let _ = self.send_error(StatusCode::INTERNAL_SERVER_ERROR, is_head);
            return Next::Close { linger: true };
        }
        let wbuf = std::mem::take(&mut self.wbuf);
        let written = self.write(&[&wbuf]);
        self.wbuf = wbuf;
        if let Err(e) = written {
            log::debug!("[{}] writing 101: {e}", std::process::id());
            return Next::Close { linger: false };
        }
        // What the client sent after the head is the new protocol's.
        let pending = self.rbuf.data().to_vec();
        self.rbuf.consume(pending.len());
        self.t.set_busy(false);
        self.busy = false;
        self.t.upgrade();
        self.t.stream_begins();
        let up = Upgraded::new(&mut *self.t, pending, self.cfg.write_timeout);
        if catch_unwind(AssertUnwindSafe(|| on_upgrade(up))).is_err() {
            log::warn!(
                "[{}] upgraded connection handler panicked: closing the connection",
                std::process::id()
            );
        }
        Next::Close { linger: false }
    }
}
