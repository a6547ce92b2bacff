//! One Sync for a request's statements.
//!
//! tokio-postgres ends every statement with Sync, so a request's BEGIN, settings,
//! statement and COMMIT cost PostgreSQL four flushes and the client four wake-ups even
//! when pipelined; with one Sync, PostgreSQL spends about half the CPU on a by-pk read
//! (pgbench: 235 µs with a round trip each, 117 µs pipelined under one Sync). The crate
//! has no API for that (rust-postgres issue #1213), and no maintained crate with real
//! pipeline mode has TLS, SCRAM with channel binding and cancellation together, so this
//! module does it under tokio-postgres, on the byte stream of a pool connection:
//!
//! - Outgoing, a Sync that directly follows an Execute is left out while the connection's
//!   [`Batch`] says more statements of the same batch follow. Each statement is still a
//!   request of its own to tokio-postgres.
//! - Incoming, where PostgreSQL now answers a run of statements with one ReadyForQuery,
//!   a ReadyForQuery is put in after each statement that had its Sync left out, so
//!   tokio-postgres sees every request end as before. When one statement fails,
//!   PostgreSQL skips the rest up to the Sync; each skipped statement is answered with
//!   the error PostgreSQL itself gives a statement in a failed transaction (25P02), so
//!   the first error stays the one reported, as with a Sync each.
//!
//! Everything else passes through untouched: the start-up exchange (SSLRequest,
//! authentication), simple queries, Parse/Describe of prepare, Close. Below TLS the
//! adapter steps aside when the server accepts TLS, and a second one above TLS does the
//! work. A statement that is never sent would leave a Sync out for good, so callers
//! arm a batch only with statements that cannot fail to encode (see `db::run_*`).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The SSLRequest code of the start-up exchange.
const SSL_REQUEST: u32 = 80_877_103;
/// Protocol 3.0's start-up packet.
const PROTOCOL_3: u32 = 196_608;
/// Outgoing bytes taken per write (a big insert body goes through in chunks of this size
/// rather than being copied whole).
const WRITE_CHUNK: usize = 64 * 1024;

/// How many Syncs of the statements being sent are still to be left out. Shared between
/// a pool connection and the adapter on its stream.
#[derive(Clone, Default)]
pub struct Batch(Arc<AtomicUsize>);

impl Batch {
    /// The next `statements` requests sent go under one Sync (the last one's).
    pub fn arm(&self, statements: usize) {
        self.0
            .store(statements.saturating_sub(1), Ordering::Release);
    }

    /// Back to a Sync per statement.
    pub fn disarm(&self) {
        self.0.store(0, Ordering::Release);
    }

    fn take_one(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// One request tokio-postgres sent, by how its ReadyForQuery comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Its Sync was left out: the adapter answers with a ReadyForQuery of its own.
    Merged,
    /// The Sync that ends a merged run: PostgreSQL's ReadyForQuery.
    Last,
    /// Any other Sync or simple Query.
    Plain,
}

/// Where a stream of protocol messages stands: in a header or in a body.
#[derive(Default)]
struct Framing {
    header: [u8; 8],
    have: usize,
    /// The next message has no type byte (the start-up exchange).
    untagged: bool,
    tag: u8,
    remaining: usize,
}

impl Framing {
    fn header_len(&self) -> usize {
        if self.untagged {
            8
        } else {
            5
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Feeds header bytes from `data`; returns how many were used and whether the header
    /// is now complete.
    fn fill_header(&mut self, data: &[u8]) -> (usize, bool) {
        let need = self.header_len() - self.have;
        let n = need.min(data.len());
        self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
        self.have += n;
        (n, self.have == self.header_len())
    }

    fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.header[at],
            self.header[at + 1],
            self.header[at + 2],
            self.header[at + 3],
        ])
    }
}

pub struct Merge<S> {
    inner: S,
    batch: Batch,
    /// False once TLS runs under this adapter (or the stream is not what was expected):
    /// bytes then pass through untouched.
    live: bool,
    // The outgoing side.
    sent: Framing,
    previous_tag: u8,
    /// A Sync was left out and no Sync has been sent since.
    merging: bool,
    outgoing: BytesMut,
    // The incoming side.
    received: Framing,
    expect_ssl_reply: bool,
    units: VecDeque<Unit>,
    /// A merged statement failed: PostgreSQL skips the rest of the run.
    aborted: bool,
    /// The run's last statement was answered with the skipped-statement error.
    last_answered: bool,
    /// Bytes made up here, delivered before anything else.
    made_up: BytesMut,
    /// Bytes read but not yet scanned (behind a made-up message).
    unscanned: BytesMut,
}

impl<S> Merge<S> {
    /// An adapter on a stream nothing has been sent on yet: the socket itself (the first
    /// message is an SSLRequest or the start-up packet) or TLS (the start-up packet).
    pub fn new(inner: S, batch: Batch) -> Merge<S> {
        Merge {
            inner,
            batch,
            live: true,
            sent: Framing {
                untagged: true,
                ..Framing::default()
            },
            previous_tag: 0,
            merging: false,
            outgoing: BytesMut::new(),
            received: Framing::default(),
            expect_ssl_reply: false,
            units: VecDeque::new(),
            aborted: false,
            last_answered: false,
            made_up: BytesMut::new(),
            unscanned: BytesMut::new(),
        }
    }

    /// Something unexpected: stop interpreting the stream (nothing is left out from now
    /// on, so at worst the adapter is a plain pipe).
    fn step_aside(&mut self) {
        self.live = false;
        self.batch.disarm();
    }

    /// Copies outgoing `data` to the buffer, leaving out the Syncs the batch says to.
    fn take_outgoing(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if !self.live {
                self.outgoing.extend_from_slice(data);
                return;
            }
            if self.sent.remaining > 0 {
                let n = self.sent.remaining.min(data.len());
                self.outgoing.extend_from_slice(&data[..n]);
                self.sent.remaining -= n;
                data = &data[n..];
                continue;
            }
            let (used, complete) = self.sent.fill_header(data);
            data = &data[used..];
            if complete {
                self.sent.have = 0;
                if self.sent.untagged {
                    self.untagged_sent();
                } else {
                    self.message_sent();
                }
            }
        }
    }

    /// The start-up exchange: an SSLRequest (then PostgreSQL answers one byte) or the
    /// start-up packet (then every message is tagged).
    fn untagged_sent(&mut self) {
        let header = self.sent.header;
        self.outgoing.extend_from_slice(&header);
        match self.sent.word(4) {
            SSL_REQUEST => self.expect_ssl_reply = true,
            PROTOCOL_3 => {
                self.sent.untagged = false;
                self.sent.remaining = (self.sent.word(0) as usize).saturating_sub(8);
            }
            _ => self.step_aside(),
        }
    }

    fn message_sent(&mut self) {
        let tag = self.sent.header[0];
        let len = self.sent.word(1) as usize;
        if len < 4 {
            let header = self.sent.header;
            self.outgoing.extend_from_slice(&header[..5]);
            self.step_aside();
            return;
        }
        let previous = std::mem::replace(&mut self.previous_tag, tag);
        if tag == b'S' && len == 4 && previous == b'E' && self.batch.take_one() {
            self.units.push_back(Unit::Merged);
            self.merging = true;
            return;
        }
        let header = self.sent.header;
        self.outgoing.extend_from_slice(&header[..5]);
        self.sent.remaining = len - 4;
        match tag {
            b'S' => {
                let unit = if self.merging {
                    Unit::Last
                } else {
                    Unit::Plain
                };
                self.units.push_back(unit);
                self.merging = false;
            }
            b'Q' => self.units.push_back(Unit::Plain),
            _ => {}
        }
    }

    /// Scans incoming bytes. Returns where to cut them when something was made up at a
    /// message boundary inside them: the bytes after it wait behind it.
    fn scan_incoming(&mut self, mut data: &[u8]) -> Option<usize> {
        let total = data.len();
        while !data.is_empty() && self.live {
            if self.expect_ssl_reply {
                self.expect_ssl_reply = false;
                match data[0] {
                    // TLS from here: the adapter above it takes over.
                    b'S' => {
                        self.live = false;
                        return None;
                    }
                    b'N' => {
                        data = &data[1..];
                        continue;
                    }
                    // An ErrorResponse: a tagged message.
                    _ => {}
                }
            }
            if self.received.remaining > 0 {
                let n = self.received.remaining.min(data.len());
                self.received.remaining -= n;
                data = &data[n..];
            } else {
                let (used, complete) = self.received.fill_header(data);
                data = &data[used..];
                if !complete {
                    break;
                }
                self.received.have = 0;
                self.received.tag = self.received.header[0];
                let len = self.received.word(1) as usize;
                if len < 4 {
                    self.step_aside();
                    return None;
                }
                self.received.remaining = len - 4;
            }
            if self.received.remaining == 0 && self.message_received(self.received.tag) {
                let at = total - data.len();
                return (at < total).then_some(at);
            }
        }
        None
    }

    /// A whole message came in; returns whether something was made up after it.
    fn message_received(&mut self, tag: u8) -> bool {
        let before = self.made_up.len();
        match (self.units.front().copied(), tag) {
            // Asynchronous: notices, notifications, parameter changes.
            (_, b'N' | b'A' | b'S') => {}
            (Some(Unit::Merged), b'C' | b'I' | b's') => {
                self.units.pop_front();
                ready_for_query(&mut self.made_up, b'T');
            }
            (Some(Unit::Merged), b'E') => {
                self.units.pop_front();
                ready_for_query(&mut self.made_up, b'E');
                self.aborted = true;
                self.answer_skipped();
            }
            (Some(_), b'Z') => {
                self.units.pop_front();
                self.aborted = false;
                self.last_answered = false;
            }
            _ => {}
        }
        self.made_up.len() > before
    }

    /// After a failure in a run: answers each statement PostgreSQL skipped, as far as
    /// they have been sent. The last one's ReadyForQuery is PostgreSQL's own.
    fn answer_skipped(&mut self) {
        while self.aborted {
            match self.units.front() {
                Some(Unit::Merged) => {
                    self.units.pop_front();
                    skipped_statement_error(&mut self.made_up);
                    ready_for_query(&mut self.made_up, b'E');
                }
                Some(Unit::Last) if !self.last_answered => {
                    self.last_answered = true;
                    skipped_statement_error(&mut self.made_up);
                }
                _ => return,
            }
        }
    }
}

/// ReadyForQuery with a transaction status (`T` in a block, `E` in a failed one).
fn ready_for_query(out: &mut BytesMut, status: u8) {
    out.extend_from_slice(&[b'Z', 0, 0, 0, 5, status]);
}

/// The ErrorResponse PostgreSQL gives a statement sent in a failed transaction.
fn skipped_statement_error(out: &mut BytesMut) {
    const FIELDS: &[(u8, &str)] = &[
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "25P02"),
        (
            b'M',
            "current transaction is aborted, commands ignored until end of transaction block",
        ),
    ];
    let body: usize = FIELDS.iter().map(|(_, v)| 2 + v.len()).sum::<usize>() + 1;
    out.extend_from_slice(b"E");
    out.extend_from_slice(&((body + 4) as u32).to_be_bytes());
    for (code, value) in FIELDS {
        out.extend_from_slice(&[*code]);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(&[0]);
    }
    out.extend_from_slice(&[0]);
}

impl<S: AsyncWrite + Unpin> Merge<S> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.outgoing))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Merge<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.outgoing.is_empty() {
            let _ = this.drain(cx)?;
        }
        loop {
            if this.aborted && this.received.at_boundary() {
                this.answer_skipped();
            }
            if !this.made_up.is_empty() {
                let n = this.made_up.len().min(buf.remaining());
                buf.put_slice(&this.made_up[..n]);
                this.made_up.advance(n);
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let start = buf.filled().len();
            if this.unscanned.is_empty() {
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            } else {
                let n = this.unscanned.len().min(buf.remaining());
                buf.put_slice(&this.unscanned[..n]);
                this.unscanned.advance(n);
            }
            let end = buf.filled().len();
            if end == start || !this.live || this.scan_into(buf, start) {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S> Merge<S> {
    /// Scans what was just read into `buf` (from `start`), splicing each made-up message
    /// in where it belongs; returns whether `buf` now holds something to deliver. When
    /// `buf` is short of room, as many bytes from its end wait in `unscanned` (they come
    /// after the splice either way). Cutting the read short at each made-up message
    /// instead (three in a by-pk read) cost two extra reads, a buffer and a copy each
    /// (callgrind by-pk: 94.4k -> 86.1k instructions per request, with the Content-Range
    /// and Accept changes of the same commit).
    fn scan_into(&mut self, buf: &mut ReadBuf<'_>, start: usize) -> bool {
        let mut at = start;
        loop {
            let end = buf.filled().len();
            let cut = self.scan_incoming(&buf.filled()[at..end]).map(|c| at + c);
            if self.made_up.is_empty() {
                return true;
            }
            let place = cut.unwrap_or(end);
            let n = self.made_up.len();
            let overflow = n.saturating_sub(buf.remaining());
            if overflow > end - place {
                // Less read after the message than the made-up one's length: it goes
                // first on the next read, the bytes after it behind it.
                self.hold_back(&buf.filled()[place..end]);
                buf.set_filled(place);
                return place > start;
            }
            if overflow > 0 {
                self.hold_back(&buf.filled()[end - overflow..end]);
                buf.set_filled(end - overflow);
            }
            // Appended, then rotated into place: the bytes after the message move behind
            // it without a second buffer.
            buf.put_slice(&self.made_up);
            self.made_up.clear();
            buf.filled_mut()[place..].rotate_right(n);
            if cut.is_none() {
                return true;
            }
            at = place + n;
        }
    }

    /// Puts bytes already read back in front of those waiting to be scanned.
    fn hold_back(&mut self, bytes: &[u8]) {
        if self.unscanned.is_empty() {
            self.unscanned.extend_from_slice(bytes);
            return;
        }
        let mut waiting = BytesMut::with_capacity(bytes.len() + self.unscanned.len());
        waiting.extend_from_slice(bytes);
        waiting.extend_from_slice(&self.unscanned);
        self.unscanned = waiting;
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Merge<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        if !this.live {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let taken = buf.len().min(WRITE_CHUNK);
        let units = this.units.len();
        this.take_outgoing(&buf[..taken]);
        if this.aborted && this.units.len() > units {
            // Statements sent after a failure in their run get their answer from the
            // reading side, which may be waiting on the socket.
            cx.waker().wake_by_ref();
        }
        // Written through at once, as the socket would be: the start-up exchange writes
        // without flushing. What the socket does not take now goes before the next write
        // or flush, or when the reading side is polled.
        let _ = this.drain(cx)?;
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Merge<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"user\0u\0\0";
        let mut m = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&PROTOCOL_3.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// A statement as tokio-postgres sends a prepared one: Bind, Execute, Sync.
    fn statement() -> Vec<u8> {
        let mut m = message(b'B', b"\0s1\0\0\0\0\0\0\0");
        m.extend(message(b'E', b"\0\0\0\0\0"));
        m.extend(message(b'S', b""));
        m
    }

    fn tags(mut bytes: &[u8]) -> String {
        let mut out = String::new();
        while bytes.len() >= 5 {
            let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            out.push(bytes[0] as char);
            bytes = &bytes[1 + len..];
        }
        assert!(bytes.is_empty(), "a partial message is left: {bytes:?}");
        out
    }

    /// Sends `statements` statements through an adapter armed for them, has the "server"
    /// answer with `reply`, and returns the tags the client side sees and those the
    /// server received.
    async fn exchange(
        statements: usize,
        armed: usize,
        reply: Vec<u8>,
        chunk: usize,
    ) -> (String, String) {
        let (client, mut server) = tokio::io::duplex(1 << 20);
        let batch = Batch::default();
        let mut merge = Merge::new(client, batch.clone());
        merge.write_all(&startup()).await.unwrap();
        batch.arm(armed);
        for _ in 0..statements {
            merge.write_all(&statement()).await.unwrap();
        }
        merge.flush().await.unwrap();
        let mut received = vec![0; startup().len()];
        server.read_exact(&mut received).await.unwrap();
        let mut sent = vec![0; 4096];
        let n = server.read(&mut sent).await.unwrap();
        server.write_all(&reply).await.unwrap();
        drop(server);
        let mut seen = Vec::new();
        let mut buf = vec![0; chunk];
        loop {
            let n = merge.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        (tags(&seen), tags(&sent[..n]))
    }

    fn reply(tags: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for t in tags.bytes() {
            let body: &[u8] = match t {
                b'C' => b"SELECT 1\0",
                b'D' => b"\0\x01\0\0\0\x01x",
                b'E' => b"SERROR\0C22012\0Mdivision by zero\0\0",
                b'Z' => b"T",
                _ => b"",
            };
            out.extend(message(t, body));
        }
        out
    }

    #[tokio::test]
    async fn a_run_goes_under_one_sync_and_each_statement_still_ends() {
        // Every read size up to past the whole reply: made-up messages spliced into a
        // read with room for them, or sent on the next read when there is none.
        for chunk in (1..=80).chain([4096]) {
            let (seen, sent) = exchange(3, 3, reply("2DC2DC2DCZ"), chunk).await;
            assert_eq!(sent, "BEBEBES", "one Sync for the three");
            assert_eq!(seen, "2DCZ2DCZ2DCZ", "read {chunk} bytes at a time");
        }
    }

    #[tokio::test]
    async fn after_a_failure_the_skipped_statements_get_the_failed_transaction_error() {
        for chunk in (1..=160).chain([4096]) {
            let (seen, sent) = exchange(4, 4, reply("2C2EZ"), chunk).await;
            assert_eq!(sent, "BEBEBEBES");
            assert_eq!(seen, "2CZ2EZEZEZ", "read {chunk} bytes at a time");
        }
    }

    #[tokio::test]
    async fn a_failure_in_the_last_statement_is_passed_on_as_is() {
        let (seen, _) = exchange(2, 2, reply("2C2EZ"), 4096).await;
        assert_eq!(seen, "2CZ2EZ");
    }

    #[tokio::test]
    async fn unarmed_statements_keep_their_syncs() {
        let (seen, sent) = exchange(2, 0, reply("2CZ2CZ"), 4096).await;
        assert_eq!(sent, "BESBES");
        assert_eq!(seen, "2CZ2CZ");
    }

    #[tokio::test]
    async fn asynchronous_messages_pass_between_statements() {
        let (seen, _) = exchange(2, 2, reply("2CN2CSZ"), 2).await;
        assert_eq!(seen, "2CZN2CSZ");
    }

    #[test]
    fn the_made_up_error_is_a_well_formed_message() {
        let mut out = BytesMut::new();
        skipped_statement_error(&mut out);
        assert_eq!(tags(&out), "E");
        assert!(out.ends_with(b"block\0\0"));
    }
}
