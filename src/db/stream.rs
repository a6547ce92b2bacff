//! Streamed reads: a read whose statement answers one row per item (`RowShape::Items`)
//! sends its body on as PostgreSQL produces it instead of holding all of it.
//!
//! The request's statements and COMMIT go out together as for any read. The first
//! [`WHOLE_BODY_BYTES`] of rows are read as usual; a body that ends within them is
//! answered whole, like an aggregated one, and its connection is back in the pool before
//! the response is sent. A longer one leaves the rest of its rows to a task that sends
//! them to the response in chunks and only then reads COMMIT's reply, holding the
//! connection (and its transaction) until the client has taken the body. The head
//! (status, Content-Range, the response GUCs) comes from the first row: the statement
//! computes every row before it sends one (see `sql::read`), so an error in any row's
//! computation is still an ordinary error response. What can fail after the first byte
//! (the connection, statement_timeout, a client that stops reading) ends the response
//! without its last chunk, so the client sees a broken body, never a short one.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use tokio::sync::mpsc;

use super::{internal, Conn, InFlight, Outcome, RawSlice, RawText};
use crate::error::ApiError;
use crate::sql::result::{ITEMS_CLOSE, ITEMS_OPEN, ITEMS_SEPARATOR};
use crate::sql::RowShape;

/// Bytes of rows read before a response starts. A body within them is answered whole
/// (with Content-Length); 256 KiB keeps answers of a few thousand typical rows unstreamed
/// while four 1M-row reads at once stay far under 150 MB.
pub(super) const WHOLE_BODY_BYTES: usize = 256 * 1024;

/// The size of the chunks a streamed body goes out in, and how many may wait for the
/// client: what one streamed response holds in pgrest, besides tokio-postgres' buffer.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_AHEAD: usize = 4;

/// How long a streamed body waits for its client to take a chunk. A client that stops
/// reading would otherwise hold a pool connection and an open transaction for as long
/// as it likes.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The rows of the last statement not read yet.
pub(super) type RowsLeft = Pin<Box<tokio_postgres::RowStream>>;

type CommitFuture = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>;

/// A COMMIT sent with a streamed read's statements, whose reply is read once the read's
/// rows have been.
pub(super) enum Committing {
    Sent(CommitFuture),
    Done(Result<(), tokio_postgres::Error>),
}

impl Committing {
    pub(super) fn new(
        commit: impl Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    ) -> Self {
        Committing::Sent(Box::pin(commit))
    }

    /// Polls the COMMIT once, which sends it (tokio-postgres queues a request in its
    /// first poll), for it to go out with the statements before it.
    pub(super) async fn send(&mut self) {
        if let Committing::Sent(f) = self {
            if let Poll::Ready(r) = futures_util::poll!(f.as_mut()) {
                *self = Committing::Done(r);
            }
        }
    }

    /// COMMIT's reply.
    pub(super) async fn finish(self) -> Result<(), tokio_postgres::Error> {
        match self {
            Committing::Sent(f) => f.await,
            Committing::Done(r) => r,
        }
    }
}

/// What a streamed read still has to read after its first rows.
pub(super) struct Tail {
    pub(super) rows: RowsLeft,
    pub(super) committing: Committing,
}

/// Reads a statement's rows: all of them, or, with a `budget`, until their bytes pass
/// it, leaving the rest in the stream.
pub(super) async fn rows_within(
    stream: tokio_postgres::RowStream,
    budget: Option<usize>,
) -> Result<(Vec<tokio_postgres::Row>, Option<RowsLeft>), tokio_postgres::Error> {
    let mut stream = Box::pin(stream);
    let mut rows = Vec::new();
    let mut bytes = 0;
    while let Some(row) = stream.try_next().await? {
        if let Some(budget) = budget {
            bytes += row_bytes(&row);
            if bytes > budget {
                rows.push(row);
                return Ok((rows, Some(stream)));
            }
        }
        rows.push(row);
    }
    Ok((rows, None))
}

fn row_bytes(row: &tokio_postgres::Row) -> usize {
    (0..row.len())
        .map(|i| {
            row.try_get::<_, Option<RawSlice>>(i)
                .ok()
                .flatten()
                .map_or(0, |s| s.0.len())
        })
        .sum()
}

/// Appends a row's item to a body: json_agg's separator before all but the first.
fn append_item(
    body: &mut BytesMut,
    row: &tokio_postgres::Row,
    first: bool,
) -> Result<(), ApiError> {
    let item = row
        .try_get::<_, Option<RawSlice>>(RowShape::Items.body())
        .map_err(internal)?;
    if let Some(item) = item {
        if !first {
            body.extend_from_slice(ITEMS_SEPARATOR);
        }
        body.extend_from_slice(item.0);
    }
    Ok(())
}

/// The outcome of a streamed read from its first rows: the head from the first row, and
/// the body so far (whole, closed, when `complete`).
pub(super) fn items_outcome(
    rows: &[tokio_postgres::Row],
    complete: bool,
) -> Result<Outcome, ApiError> {
    let first = rows
        .first()
        .ok_or_else(|| ApiError::Internal("the statement returned no row".into()))?;
    let text = |i: usize| -> Result<Option<String>, ApiError> {
        Ok(first
            .try_get::<_, Option<RawText>>(i)
            .map_err(internal)?
            .map(|t| t.0))
    };
    let mut body = BytesMut::new();
    body.extend_from_slice(ITEMS_OPEN);
    for (i, row) in rows.iter().enumerate() {
        append_item(&mut body, row, i == 0)?;
    }
    if complete {
        body.extend_from_slice(ITEMS_CLOSE);
    }
    let shape = RowShape::Items;
    Ok(Outcome {
        total: first
            .try_get::<_, Option<i64>>(RowShape::TOTAL)
            .map_err(internal)?,
        page_total: first
            .try_get::<_, i64>(RowShape::PAGE_TOTAL)
            .map_err(internal)?,
        body: body.freeze(),
        response_headers: text(shape.response_headers())?,
        response_status: text(shape.response_status())?,
        inserted: None,
        planned_total: None,
        rest: None,
    })
}

/// The part of a body still to come: chunks, then [`Chunk::End`]. A channel that closes
/// without it means the body broke off.
pub struct BodyRest(mpsc::Receiver<Chunk>);

pub enum Chunk {
    Data(Bytes),
    End,
}

impl BodyRest {
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }
}

/// Hands the rest of a streamed read to a task that sends it to the response.
pub(super) fn spawn_rest(conn: InFlight, tail: Tail) -> BodyRest {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    tokio::spawn(send_rest(conn, tail, tx));
    BodyRest(rx)
}

/// Sends the remaining rows in chunks, the closing bracket, and after COMMIT's reply the
/// end. On any failure it stops: dropping the connection mid-transaction cancels what
/// still runs and rolls back (see [`InFlight`]), and the missing end breaks the body off.
async fn send_rest(mut conn: InFlight, mut tail: Tail, tx: mpsc::Sender<Chunk>) {
    let mut chunk = BytesMut::with_capacity(CHUNK_BYTES);
    loop {
        match tail.rows.try_next().await {
            Ok(Some(row)) => {
                if append_item(&mut chunk, &row, false).is_err() {
                    return;
                }
                if chunk.len() >= CHUNK_BYTES
                    && !deliver(&tx, Chunk::Data(chunk.split().freeze())).await
                {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("a streamed response broke off: {}", super::describe(&e));
                rolled_back(&mut conn).await;
                return;
            }
        }
    }
    chunk.extend_from_slice(ITEMS_CLOSE);
    if !deliver(&tx, Chunk::Data(chunk.freeze())).await {
        return;
    }
    match tail.committing.finish().await {
        Ok(()) => {
            conn.in_transaction = false;
            deliver(&tx, Chunk::End).await;
        }
        Err(e) => {
            tracing::warn!(
                "a streamed response's COMMIT failed: {}",
                super::describe(&e)
            );
            rolled_back(&mut conn).await;
        }
    }
}

/// Gives the client a chunk; false when it is gone or has not taken one for
/// [`STALL_TIMEOUT`].
async fn deliver(tx: &mpsc::Sender<Chunk>, chunk: Chunk) -> bool {
    matches!(
        tokio::time::timeout(STALL_TIMEOUT, tx.send(chunk)).await,
        Ok(Ok(()))
    )
}

/// After a failed statement nothing runs any more: ROLLBACK is all the connection needs.
async fn rolled_back(conn: &mut Conn) {
    if conn.client.batch_execute("ROLLBACK").await.is_ok() {
        conn.in_transaction = false;
    }
}
