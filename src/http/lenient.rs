//! Percent-encodes the characters of a request target that HTTP forbids raw but curl
//! sends as typed (`<`, `>`, `"`, spaces, `{`, `}`, ...), so `?select=data->>name` works as
//! it does with PostgREST. hyper (through the `http` crate) refuses such targets with an
//! empty 400 and has no switch to relax that, hence this small stream adapter.
//!
//! Only request lines are rewritten. Message framing is followed through Content-Length;
//! a chunked or otherwise unusual request turns the adapter into a plain pass-through for
//! the rest of the connection (those requests then get hyper's strict parsing).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request line or header line the adapter buffers before giving up rewriting.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
enum State {
    RequestLine,
    Headers { content_length: u64 },
    Body { remaining: u64 },
    PassThrough,
}

/// The rewriting state machine, independent of I/O.
#[derive(Debug)]
pub struct Rewriter {
    state: State,
    line: Vec<u8>,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter {
            state: State::RequestLine,
            line: Vec::new(),
        }
    }
}

fn needs_encoding(b: u8) -> bool {
    matches!(
        b,
        b'<' | b'>' | b'"' | b' ' | b'{' | b'}' | b'|' | b'\\' | b'^' | b'`'
    ) || b >= 0x80
}

/// `METHOD target HTTP/x.y\r\n` with the target's forbidden bytes percent-encoded,
/// appended to `out`. A clean line (what clients send almost always) is copied as is.
fn rewrite_request_line(line: &[u8], out: &mut Vec<u8>) {
    let text = line.strip_suffix(b"\n").unwrap_or(line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let (Some(first), Some(last)) = (memchr::memchr(b' ', text), memchr::memrchr(b' ', text))
    else {
        return out.extend_from_slice(line);
    };
    if first >= last || !text[last + 1..].starts_with(b"HTTP/") {
        return out.extend_from_slice(line);
    }
    let target = &text[first + 1..last];
    if line.ends_with(b"\r\n") && !target.iter().any(|&b| needs_encoding(b)) {
        return out.extend_from_slice(line);
    }
    out.extend_from_slice(&text[..=first]);
    for &b in &text[first + 1..last] {
        if needs_encoding(b) {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(&text[last..]);
    out.extend_from_slice(b"\r\n");
}

/// A header line's name and value, trimmed (as `str::trim` would: ASCII whitespace and
/// the vertical tab).
fn header_parts(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b':', line) {
        Some(colon) => (trim(&line[..colon]), trim(&line[colon + 1..])),
        None => (trim(line), &[]),
    }
}

/// Whether a header line may be one of the three that frame a message (Content-Length,
/// Transfer-Encoding, Upgrade), by its first byte: most lines (Host, Accept, Prefer,
/// Authorization...) are passed on without being split and trimmed. A line starting with
/// whitespace goes the long way, as `header_parts` trims it.
fn may_frame(line: &[u8]) -> bool {
    line.first().is_some_and(|&b| {
        matches!(b | 0x20, b'c' | b't' | b'u') || b.is_ascii_whitespace() || b == 0x0B
    })
}

fn trim(mut b: &[u8]) -> &[u8] {
    let ws = |c: &u8| c.is_ascii_whitespace() || *c == 0x0B;
    while b.first().is_some_and(ws) {
        b = &b[1..];
    }
    while b.last().is_some_and(ws) {
        b = &b[..b.len() - 1];
    }
    b
}

impl Rewriter {
    /// Feeds bytes read from the client; returns the bytes to hand to the HTTP parser.
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.feed_into(input, &mut out);
        out
    }

    /// `feed`, appending to `out` (a connection reuses one buffer for every read).
    pub fn feed_into(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len());
        let mut i = 0;
        while i < input.len() {
            match &mut self.state {
                State::PassThrough => {
                    out.extend_from_slice(&input[i..]);
                    return;
                }
                State::Body { remaining } => {
                    let n = (*remaining).min((input.len() - i) as u64) as usize;
                    out.extend_from_slice(&input[i..i + n]);
                    i += n;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = State::RequestLine;
                    }
                }
                State::RequestLine | State::Headers { .. } => {
                    // Up to the end of the line, or of the input; a line longer than
                    // MAX_LINE ends rewriting (the byte that passes the limit included).
                    let rest = &input[i..];
                    let newline = memchr::memchr(b'\n', rest);
                    let take = newline.map_or(rest.len(), |p| p + 1);
                    let limit = MAX_LINE + 1 - self.line.len();
                    if newline.is_some() && self.line.is_empty() && take < limit {
                        // A whole line in this read (nearly always): handled where it
                        // lies, not copied through the line buffer first.
                        self.take_line(&rest[..take], out);
                        i += take;
                        continue;
                    }
                    if take >= limit {
                        self.line.extend_from_slice(&rest[..limit]);
                        i += limit;
                        out.append(&mut self.line);
                        self.state = State::PassThrough;
                        continue;
                    }
                    self.line.extend_from_slice(&rest[..take]);
                    i += take;
                    if newline.is_some() {
                        self.end_line(out);
                    }
                }
            }
        }
    }

    /// Hands on the buffered line, rewritten as its place in the request asks; the
    /// buffer is kept for the next line.
    fn end_line(&mut self, out: &mut Vec<u8>) {
        let mut line = std::mem::take(&mut self.line);
        self.take_line(&line, out);
        line.clear();
        self.line = line;
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        match self.state {
            State::RequestLine => {
                // Blank lines between requests are tolerated by HTTP parsers.
                if line == b"\r\n" || line == b"\n" {
                    out.extend_from_slice(line);
                    return;
                }
                rewrite_request_line(line, out);
                self.state = State::Headers { content_length: 0 };
            }
            State::Headers { content_length } => {
                out.extend_from_slice(line);
                if line == b"\r\n" || line == b"\n" {
                    self.state = if content_length > 0 {
                        State::Body {
                            remaining: content_length,
                        }
                    } else {
                        State::RequestLine
                    };
                    return;
                }
                if !may_frame(line) {
                    return;
                }
                let (name, value) = header_parts(line);
                let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
                if is(b"content-length") {
                    let length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    self.state = match length {
                        Some(n) => State::Headers { content_length: n },
                        None => State::PassThrough,
                    };
                } else if is(b"transfer-encoding") || is(b"upgrade") {
                    self.state = State::PassThrough;
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
}

/// A client connection whose request lines are made acceptable to hyper.
pub struct LenientStream<S> {
    inner: S,
    rewriter: Rewriter,
    pending: Vec<u8>,
    pending_at: usize,
}

impl<S> LenientStream<S> {
    pub fn new(inner: S) -> Self {
        LenientStream {
            inner,
            rewriter: Rewriter::default(),
            pending: Vec::new(),
            pending_at: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LenientStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                return Poll::Ready(Ok(()));
            }
            // Uninitialized: zeroing 16 KiB on every poll (four a request, the pending
            // ones included) was a third of pgrest's instructions per by-pk request
            // under callgrind.
            let mut raw = [std::mem::MaybeUninit::<u8>::uninit(); 16 * 1024];
            let mut raw_buf = ReadBuf::uninit(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf) {
                Poll::Ready(Ok(())) => {
                    let filled = raw_buf.filled();
                    if filled.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    // One buffer per connection, kept only while small: body-sized
                    // reads would otherwise pin 16 KiB to every idle keep-alive client.
                    if this.pending.capacity() > 4 * 1024 {
                        this.pending = Vec::new();
                    }
                    this.pending.clear();
                    this.rewriter.feed_into(filled, &mut this.pending);
                    this.pending_at = 0;
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let mut r = Rewriter::default();
        chunks.iter().flat_map(|c| r.feed(c)).collect()
    }

    #[test]
    fn encodes_the_target_only() {
        let out =
            run(&[b"GET /t?select=data->>\"a b\" HTTP/1.1\r\nHost: x\r\nX: \"q\" <>\r\n\r\n"]);
        assert_eq!(
            out,
            b"GET /t?select=data-%3E%3E%22a%20b%22 HTTP/1.1\r\nHost: x\r\nX: \"q\" <>\r\n\r\n"
                .to_vec()
        );
    }

    #[test]
    fn follows_bodies_and_pipelined_requests_across_chunks() {
        let out = run(&[
            b"POST /t?a=<1 HTTP/1.1\r\nContent-Length: 5\r\n",
            b"\r\n<>\"",
            b"{}GET /u?b=>2 HTTP/1.1\r\n\r\n",
        ]);
        assert_eq!(
            out,
            b"POST /t?a=%3C1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n<>\"{}GET /u?b=%3E2 HTTP/1.1\r\n\r\n"
                .to_vec()
        );
    }

    #[test]
    fn chunked_requests_stop_the_rewriting() {
        let out = run(&[
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n<a>\r\n0\r\n\r\nGET /x?<",
        ]);
        assert!(out.ends_with(b"GET /x?<"));
    }
}
