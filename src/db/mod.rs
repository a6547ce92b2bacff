//! Running a request's transaction: pool, envelope (BEGIN, request GUCs, pre-request, the
//! main statement, COMMIT) pipelined into one round trip, and SQLSTATE -> ApiError.

pub mod connect;
pub mod merge;
pub mod replicas;
pub mod startup;
mod stream;
pub mod tls;

use std::error::Error as _;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::collections::HashMap;

use deadpool::managed;
use postgres_types::{Format, IsNull, ToSql, Type};

use crate::error::ApiError;
use crate::sql::{Envelope, RowShape, Statement};
pub use stream::{BodyRest, Chunk};
use stream::{Committing, RowsLeft, Tail};

/// A parameter sent in text format with whatever type PostgreSQL inferred for it, the way
/// PostgREST sends "unknown"-typed values. tokio-postgres has no such type built in.
#[derive(Debug)]
struct TextParam<'a>(&'a str);

impl ToSql for TextParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    postgres_types::to_sql_checked!();
}

/// Reads any column as the raw bytes PostgreSQL sent (text, json in binary format).
struct RawText(String);

impl<'a> postgres_types::FromSql<'a> for RawText {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        // jsonb's binary format is a version byte followed by the text.
        let raw = if *ty == Type::JSONB { &raw[1..] } else { raw };
        // PostgreSQL sends UTF-8 (client_encoding); the lossy path only guards the rest.
        Ok(RawText(match std::str::from_utf8(raw) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(raw).into_owned(),
        }))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A column's bytes as PostgreSQL sent them (binary format: text-like types as their
/// UTF-8 text, bytea as its bytes, jsonb with its version byte, as custom media type
/// handlers send their output, like PostgREST), borrowed from the row.
struct RawSlice<'a>(&'a [u8]);

impl<'a> postgres_types::FromSql<'a> for RawSlice<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawSlice(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// A row's column as the response body: the bytes stay in the row's buffer (a slice of
/// what was read from the socket) instead of being copied out; a page of 100 rows was a
/// 9 KB copy, 7.7 % of a page-100 read's instructions (callgrind).
struct ColumnBytes {
    row: tokio_postgres::Row,
    index: usize,
}

impl AsRef<[u8]> for ColumnBytes {
    fn as_ref(&self) -> &[u8] {
        self.row
            .try_get::<_, Option<RawSlice>>(self.index)
            .ok()
            .flatten()
            .map_or(&[], |s| s.0)
    }
}

/// Column `index` of `row` as bytes, without a copy; empty for NULL.
fn column_bytes(row: tokio_postgres::Row, index: usize) -> Result<Bytes, ApiError> {
    match row
        .try_get::<_, Option<RawSlice>>(index)
        .map_err(internal)?
    {
        None => Ok(Bytes::new()),
        Some(_) => Ok(Bytes::from_owner(ColumnBytes { row, index })),
    }
}

/// Prepared statements kept per connection.
const MAX_STATEMENTS: usize = 500;

/// Prepared statements by SQL text. foldhash, seeded per map, instead of SipHash: a
/// request looks its 4-5 statements up several times each and SipHash over their text
/// was ~4 % of pgrest's instructions per by-pk request (callgrind). The map holds at most
/// MAX_STATEMENTS, which bounds what colliding texts could cost.
type Statements = HashMap<String, tokio_postgres::Statement, foldhash::fast::RandomState>;

/// A pooled connection with the statements prepared on it, by SQL text.
pub struct Conn {
    /// Shared with the COMMIT of a streamed read, which outlives the request's future.
    client: std::sync::Arc<tokio_postgres::Client>,
    /// How it was opened: a cancel request goes the same way (TLS included). Boxed, as is
    /// the statements map: the pool moves a `Conn` by value on every get and return, and
    /// the connector's libpq config alone is several hundred bytes.
    route: Box<(std::sync::Arc<tls::Connector>, connect::Peer)>,
    /// Whether the statements being sent share one Sync.
    batch: merge::Batch,
    statements: Box<Statements>,
    /// A transaction was begun and not yet seen closed.
    in_transaction: bool,
    /// That transaction was opened by BEGIN (not by PostgreSQL at its first statement).
    begun: bool,
    /// What a transaction PostgreSQL opens on this session is, which decides whether a
    /// request may run in it (see [`End::AtSync`]).
    opens_as: SessionDefaults,
}

/// A session's default_transaction_isolation and default_transaction_read_only, as far
/// as [`End::AtSync`] cares: read once per new connection (server, database and login
/// role defaults included; `SET ROLE` does not change them).
#[derive(Clone, Copy, Default)]
struct SessionDefaults {
    read_committed: bool,
    read_write: bool,
}

impl SessionDefaults {
    /// Whether the transaction PostgreSQL opens is the one a READ COMMITTED request asks
    /// for: READ COMMITTED, and READ WRITE unless the request only reads (the settings
    /// statement then makes it read-only).
    fn serves(self, read_only: bool) -> bool {
        self.read_committed && (read_only || self.read_write)
    }
}

pub struct PgManager {
    connector: std::sync::Arc<tls::Connector>,
    /// db-pool-max-lifetime: older connections are closed instead of reused.
    max_lifetime: Duration,
}

impl managed::Manager for PgManager {
    type Type = Conn;
    type Error = connect::ConnectError;

    async fn create(&self) -> Result<Conn, connect::ConnectError> {
        // Boxed: the pool's `get` future holds this one inline, and a connect (TLS
        // included) is about 11 KB of future that every request would otherwise move.
        let (client, peer, batch) = boxed!(self.connector.connect_pooled()).await?;
        let opens_as = boxed!(session_defaults(&client)).await;
        Ok(Conn {
            client: std::sync::Arc::new(client),
            route: Box::new((self.connector.clone(), peer)),
            batch,
            statements: Box::default(),
            in_transaction: false,
            begun: false,
            opens_as,
        })
    }

    async fn recycle(
        &self,
        conn: &mut Conn,
        metrics: &managed::Metrics,
    ) -> managed::RecycleResult<connect::ConnectError> {
        if conn.client.is_closed() {
            return Err(managed::RecycleError::message("connection closed"));
        }
        if metrics.age() >= self.max_lifetime {
            return Err(managed::RecycleError::message("max lifetime reached"));
        }
        if conn.in_transaction {
            conn.client
                .batch_execute(closing_statement(conn.begun))
                .await
                .map_err(connect::ConnectError::from)?;
            conn.in_transaction = false;
        }
        Ok(())
    }
}

/// How a new session's transactions start when nothing else is said; both false (BEGIN
/// for every request) when it cannot be told.
async fn session_defaults(client: &tokio_postgres::Client) -> SessionDefaults {
    let Ok(messages) = client
        .simple_query(
            "SELECT current_setting('default_transaction_isolation'), \
             current_setting('default_transaction_read_only')",
        )
        .await
    else {
        return SessionDefaults::default();
    };
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(SessionDefaults {
                read_committed: row.get(0) == Some("read committed"),
                read_write: row.get(1) == Some("off"),
            }),
            _ => None,
        })
        .unwrap_or_default()
}

pub type Pool = managed::Pool<PgManager>;

/// How the pool is sized and when its connections are retired.
pub struct PoolSettings {
    pub size: usize,
    pub acquisition_timeout: Duration,
    /// db-pool-max-idletime: connections unused this long are closed.
    pub max_idletime: Duration,
    /// db-pool-max-lifetime: connections older than this are closed once idle.
    pub max_lifetime: Duration,
}

pub fn make_pool(connector: tls::Connector, settings: &PoolSettings) -> Result<Pool, String> {
    let connector = connector.with_config(|c| {
        if c.get_application_name().is_none() {
            c.application_name(concat!("pgrest ", env!("CARGO_PKG_VERSION")));
        }
    });
    let (size, acquisition_timeout) = (settings.size, settings.acquisition_timeout);
    managed::Pool::builder(PgManager {
        connector: std::sync::Arc::new(connector),
        max_lifetime: settings.max_lifetime,
    })
    .max_size(size)
    .wait_timeout(Some(acquisition_timeout))
    .create_timeout(Some(acquisition_timeout))
    .runtime(deadpool::Runtime::Tokio1)
    .build()
    .map_err(|e| e.to_string())
}

/// Closes idle connections past db-pool-max-idletime or db-pool-max-lifetime; connections
/// in use are never touched (an old one is retired when it comes back, by `recycle`).
pub async fn retire_idle_connections(pool: Pool, settings: PoolSettings) {
    let shortest = settings.max_idletime.min(settings.max_lifetime);
    let every = (shortest / 2).clamp(Duration::from_millis(250), Duration::from_secs(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let removed = pool.retain(|_, m| {
            m.last_used() < settings.max_idletime && m.age() < settings.max_lifetime
        });
        if !removed.removed.is_empty() {
            tracing::debug!("closed {} idle pool connection(s)", removed.removed.len());
        }
    }
}

/// A connection from the pool: taken at once when one is free, without the acquisition
/// timeout's timer (a clock read and a timer set up per request); otherwise waited for up
/// to db-pool-acquisition-timeout, as `get` does.
async fn checkout(pool: &Pool) -> Result<Pooled, managed::PoolError<connect::ConnectError>> {
    let mut at_once = pool.timeouts();
    at_once.wait = Some(Duration::ZERO);
    match pool.timeout_get(&at_once).await {
        Err(managed::PoolError::Timeout(managed::TimeoutType::Wait)) => pool.get().await,
        got => got,
    }
}

pub fn pool_error(e: managed::PoolError<connect::ConnectError>) -> ApiError {
    match e {
        managed::PoolError::Timeout(managed::TimeoutType::Wait) => ApiError::PoolTimeout,
        managed::PoolError::Backend(e) => ApiError::Connection(e.to_string()),
        other => ApiError::Connection(other.to_string()),
    }
}

pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(tls) = tls::describe_tls(e) {
        return tls;
    }
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match e.source() {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

pub fn pg_error(e: &tokio_postgres::Error, anonymous: bool) -> ApiError {
    match e.as_db_error() {
        Some(db) if db.code().code() == "PGRST" => {
            ApiError::custom_raise(db.message(), db.detail())
        }
        Some(db) => ApiError::Pg {
            sqlstate: db.code().code().to_string(),
            message: db.message().to_string(),
            details: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            anonymous,
        },
        // No answer from PostgreSQL: the connection broke (closed, I/O, protocol).
        None => ApiError::Client(describe(e)),
    }
}

/// What the main statement of a request (read, write or call) returned: its one row.
pub struct Outcome {
    /// The exact count, when the statement computed one.
    pub total: Option<i64>,
    pub page_total: i64,
    /// The body column's bytes (JSON, CSV or text as UTF-8; a handler's output as is).
    pub body: Bytes,
    pub response_headers: Option<String>,
    pub response_status: Option<String>,
    /// Rows an upsert inserted (rather than updated), when tracked.
    pub inserted: Option<i64>,
    /// `Plan Rows` of a read's count EXPLAIN, when one was sent.
    pub planned_total: Option<i64>,
    /// The rest of a streamed read's body, when it did not end within its first rows.
    pub rest: Option<BodyRest>,
}

fn params_of<S: AsRef<str>>(s: &[S]) -> Vec<TextParam<'_>> {
    s.iter().map(|p| TextParam(p.as_ref())).collect()
}

fn as_dyn<'a>(p: &'a [TextParam<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    p.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

fn plan_rows(explain: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(explain).ok()?;
    v.get(0)?
        .get("Plan")?
        .get("Plan Rows")?
        .as_f64()
        .map(|n| n as i64)
}

impl Conn {
    async fn prepare(
        &mut self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        // Query shapes are unbounded (every filter combination is its own statement), so
        // the cache is too: past the limit it starts over. Dropping a Statement closes it
        // on the server.
        if self.statements.len() >= MAX_STATEMENTS {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }
}

/// A statement to run after the request settings: its SQL and parameters.
struct Step<'a> {
    sql: &'a str,
    params: &'a [String],
}

/// Statements sent together under one Sync (see [`merge`]) while this lives, when it was
/// made `sendable`; otherwise with a Sync each, as tokio-postgres sends them. Dropped
/// midway (the request went away), it leaves the remaining statements a Sync each, but
/// for a transaction PostgreSQL opened itself ([`End::AtSync`]): there a Sync ends the
/// transaction, so statements already queued behind the settings would run in one of
/// their own, as the authenticator and without the request's settings. Its statements
/// are all queued in the first poll of the join that sends them (no COMMIT is sent
/// later), so the batch stays armed and they go out under its one Sync.
///
/// A guard rather than an async wrapper around the sending future: a wrapper holds that
/// future twice over (its argument and its awaited copy), which made a request's
/// transaction future 10 KB that was moved on every request.
struct OneSync<'a>(Option<&'a merge::Batch>);

/// Arms `batch` for the next `statements` requests. The caller must send exactly those, in
/// the first poll of what it awaits next (tokio-postgres queues a request before its first
/// await).
fn under_one_sync(
    batch: &merge::Batch,
    statements: usize,
    sendable: bool,
    end: End,
) -> OneSync<'_> {
    let batch = (sendable && statements > 1).then_some(batch);
    if let Some(b) = batch {
        b.arm(statements);
    }
    OneSync(batch.filter(|_| end != End::AtSync))
}

impl Drop for OneSync<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.disarm();
        }
    }
}

/// Whether tokio-postgres will send a prepared statement with these parameters: it
/// refuses a parameter count other than the statement's before sending anything (text
/// parameters themselves always encode). A batch must not count a statement that is never
/// sent: its Sync would be missing.
fn encodable(statement: &tokio_postgres::Statement, params: usize) -> bool {
    statement.params().len() == params
}

fn all_encodable(steps: &[(tokio_postgres::Statement, &[String])]) -> bool {
    steps.iter().all(|(s, p)| encodable(s, p.len()))
}

/// The same for an unnamed statement: its text is sent as a C string (no NUL byte) and
/// its parameter count as a 16-bit integer.
fn encodable_unnamed(sql: &str, params: usize) -> bool {
    !sql.contains('\0') && params <= i16::MAX as usize
}

/// A step's rows, or its error.
type StepRows = Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>;

/// Runs the steps pipelined (all sent before any reply is awaited). With `end` streamed,
/// the last step's rows are read only up to [`stream::WHOLE_BODY_BYTES`]; the rest, if
/// any, come back besides.
async fn pipeline(
    conn: &Conn,
    steps: &[(tokio_postgres::Statement, &[String])],
    end: End,
) -> (Vec<StepRows>, Option<RowsLeft>) {
    let client = &conn.client;
    let last = steps.len().saturating_sub(1);
    let calls = steps
        .iter()
        .enumerate()
        .map(|(i, (stmt, params))| async move {
            let p = params_of(params);
            let stream = client.query_raw(stmt, as_dyn(&p)).await?;
            stream::rows_within(stream, end.budget().filter(|_| i == last)).await
        });
    split_rest(futures_util::future::join_all(calls).await)
}

/// A step's rows read so far and, for a streamed read's last step, those left.
type StepRowsAndRest = Result<(Vec<tokio_postgres::Row>, Option<RowsLeft>), tokio_postgres::Error>;

/// The steps' rows, and the rows the last one left unread.
fn split_rest(results: Vec<StepRowsAndRest>) -> (Vec<StepRows>, Option<RowsLeft>) {
    let mut rest = None;
    let rows = results
        .into_iter()
        .map(|r| {
            r.map(|(rows, left)| {
                rest = rest.take().or(left);
                rows
            })
        })
        .collect();
    (rows, rest)
}

/// BEGIN (prepared), unless the transaction is the one PostgreSQL opens at the first
/// statement ([`End::AtSync`]).
async fn begin_if(
    client: &tokio_postgres::Client,
    begin: &tokio_postgres::Statement,
    end: End,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    if end.begins() {
        client.query(begin, &[]).await
    } else {
        Ok(Vec::new())
    }
}

/// COMMIT (prepared) when the transaction ends with the statements, and the statement
/// after it; that one's rows (none if it failed: the transaction is committed all the
/// same) come back for [`End::CommitThenRead`].
async fn commit_if(
    client: &tokio_postgres::Client,
    commit: &tokio_postgres::Statement,
    then: Option<&tokio_postgres::Statement>,
    end: End,
) -> Result<Option<Vec<tokio_postgres::Row>>, tokio_postgres::Error> {
    match (end, then) {
        (End::Open | End::Stream | End::AtSync, _) => Ok(None),
        // Boxed: only a write with read replicas takes it, and inline its join would
        // double the size of every request's transaction future.
        (End::CommitThenRead(_), Some(then)) => boxed!(commit_then_read(client, commit, then))
            .await
            .map(Some),
        _ => commit_prepared(client, commit).await.map(|_| None),
    }
}

/// COMMIT and the statement after it, in one round trip: that statement's rows (none if
/// it failed: the transaction is committed all the same).
async fn commit_then_read(
    client: &tokio_postgres::Client,
    commit: &tokio_postgres::Statement,
    then: &tokio_postgres::Statement,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let (committed, read) = tokio::join!(
        biased;
        commit_prepared(client, commit),
        client.query(then, &[]),
    );
    committed.map(|_| read.unwrap_or_default())
}

/// The steps' rows, and after them the rows of the statement that followed COMMIT.
fn with_trailing(
    mut results: Vec<Vec<tokio_postgres::Row>>,
    trailing: Option<Vec<tokio_postgres::Row>>,
) -> Vec<Vec<tokio_postgres::Row>> {
    results.extend(trailing);
    results
}

/// Runs the prepared COMMIT. Once PostgreSQL has sent its CommandComplete the
/// transaction is durable, so an error after it (a backend terminated by a fast shutdown
/// sends FATAL 57P01 before ReadyForQuery; the connection may just close) does not undo
/// the commit and is not reported: answering 503 there made clients that retry on 503
/// write the same rows twice.
async fn commit_prepared(
    client: &tokio_postgres::Client,
    commit: &tokio_postgres::Statement,
) -> Result<(), tokio_postgres::Error> {
    let none: [&(dyn ToSql + Sync); 0] = [];
    committed_once_completed(client.query_raw(commit, none).await?).await
}

/// [`commit_prepared`] as an unnamed statement (db-prepared-statements off).
async fn commit_unnamed(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let none: [(&(dyn ToSql + Sync), Type); 0] = [];
    committed_once_completed(client.query_typed_raw("COMMIT", none).await?).await
}

/// Reads COMMIT's reply: once its CommandComplete came, the transaction is durable.
async fn committed_once_completed(
    rows: tokio_postgres::RowStream,
) -> Result<(), tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    futures_util::pin_mut!(rows);
    loop {
        match rows.try_next().await {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(_) if rows.rows_affected().is_some() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// COMMIT as a simple query, with the same rule as [`commit_prepared`]: an error after
/// its CommandComplete leaves it committed.
async fn commit_simple(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    use futures_util::TryStreamExt;
    let messages = client.simple_query_raw("COMMIT").await?;
    futures_util::pin_mut!(messages);
    let mut completed = false;
    loop {
        match messages.try_next().await {
            Ok(Some(tokio_postgres::SimpleQueryMessage::CommandComplete(_))) => completed = true,
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(_) if completed => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

/// How a transaction ends: COMMIT sent with everything else (reads), or left open for
/// the caller to commit or roll back once it has seen the outcome (writes); or COMMIT
/// followed, in the same round trip, by one statement outside the transaction (the
/// commit LSN a write reports when read replicas are configured).
/// A streamed read's (`Stream`) COMMIT is sent with the statements but its reply read
/// after the last statement's rows, which may be left to the response's body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Commit,
    Open,
    CommitThenRead(&'static str),
    Stream,
    /// No BEGIN and no COMMIT: the statements under one Sync are one transaction, which
    /// PostgreSQL opens at the first and commits at the Sync. Only for READ COMMITTED
    /// requests on a session whose transactions start READ COMMITTED, and, for a write,
    /// READ WRITE (a read is made read-only by the settings statement). What the commit
    /// fails on (a deferred constraint, a full NOTIFY queue) comes back as the last
    /// statement's error, and its ReadyForQuery, the Sync's, comes only after the commit
    /// is durable: each statement's reply is read up to its ReadyForQuery, so a request
    /// answers success only once committed, as with COMMIT. A backend terminated between
    /// the statement and the Sync rolls the transaction back and the request answers
    /// the error. Two statements fewer per request: callgrind by-pk 84.9k -> 72.0k
    /// instructions in pgrest, insert 88.5k -> 75.6k.
    AtSync,
}

impl End {
    /// The statements sent after the steps: COMMIT, and the one after it when it is
    /// `sent` (a batch must count exactly what goes out; see [`merge`]).
    fn statements(self, then_sent: bool) -> usize {
        match self {
            End::Open | End::AtSync => 0,
            End::Commit | End::Stream => 1,
            End::CommitThenRead(_) => 1 + usize::from(then_sent),
        }
    }

    /// The statements sent before the settings: BEGIN, unless the transaction is the
    /// one PostgreSQL opens.
    fn begins(self) -> bool {
        self != End::AtSync
    }

    /// A COMMIT left to the Sync when the request and the session allow it.
    fn at_sync_if_allowed(self, env: &Envelope, conn: &Conn) -> End {
        match self {
            End::Commit if env.at_sync_eligible() && conn.opens_as.serves(env.read_only) => {
                End::AtSync
            }
            end => end,
        }
    }

    /// How the transaction ends when its statements cannot all go under one Sync (some
    /// must be prepared first): with BEGIN and COMMIT.
    fn explicit(self) -> End {
        match self {
            End::AtSync => End::Commit,
            end => end,
        }
    }

    /// How much of the last statement's rows is read before the outcome is returned.
    fn budget(self) -> Option<usize> {
        (self == End::Stream).then_some(stream::WHOLE_BODY_BYTES)
    }
}

type Pooled = managed::Object<PgManager>;

/// A pooled connection while a request's transaction may be open on it. When the request
/// is dropped midway (its client went away, so hyper dropped the handler), the statement
/// still running is cancelled and the transaction rolled back before the connection goes
/// back to the pool: otherwise a long query kept running and kept its connection until
/// it ended on its own.
pub struct InFlight(Option<Pooled>);

impl std::ops::Deref for InFlight {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.0
            .as_ref()
            .expect("InFlight holds its connection until dropped")
    }
}

impl std::ops::DerefMut for InFlight {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0
            .as_mut()
            .expect("InFlight holds its connection until dropped")
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take().filter(|c| c.in_transaction) {
            tokio::spawn(abandon(conn));
        }
    }
}

/// Cancels whatever runs on `conn` and rolls its transaction back; the connection then
/// returns to the pool. The cancel request is answered before ROLLBACK is sent, and a
/// cancel reaching an idle backend is ignored, so it cannot hit a later request's
/// statements.
async fn abandon(mut conn: Pooled) {
    let (connector, peer) = &*conn.route;
    connector.cancel(&conn.client, peer).await;
    let closing = closing_statement(conn.begun);
    if conn.client.batch_execute(closing).await.is_ok() {
        conn.in_transaction = false;
    }
}

/// What closes a transaction a request left: ROLLBACK after BEGIN. A transaction
/// PostgreSQL opened itself ends at its Sync, which its request queued with its
/// statements: there an empty query waits for that just as long (its reply comes after
/// theirs), where ROLLBACK would log "there is no transaction in progress".
fn closing_statement(begun: bool) -> &'static str {
    if begun {
        "ROLLBACK"
    } else {
        ""
    }
}

async fn run_transaction(
    pool: &Pool,
    env: &Envelope<'_>,
    steps: &[Step<'_>],
    end: End,
) -> Result<Ran, ApiError> {
    // Boxed: each async caller holds its callee's future twice (argument and awaited
    // copy), so inline, this one (13 KB then, 4.5 KB now) grew the request's future to
    // 110 KB, copied into place level by level on every request (callgrind by-pk: 18 KB
    // of memcpy). Above it, the request's future is now about 6 KB.
    let inner = boxed!(run_transaction_inner(pool, env, steps, end));
    crate::timing::time_async(crate::timing::Stage::Transaction, inner).await
}

/// A transaction's connection, each step's rows, and for a streamed read what is left of
/// its last statement.
struct Ran {
    conn: InFlight,
    results: Vec<Vec<tokio_postgres::Row>>,
    tail: Option<Tail>,
}

/// Runs a request's transaction and returns the rows of each step.
///
/// Statements name schemas the request's role may use but the authenticator may not (a
/// NOINHERIT authenticator has no USAGE of its own), so they are prepared after the role
/// switch. When every statement is already prepared on the connection, BEGIN, the settings,
/// the steps and COMMIT all go out before the first reply is awaited: one round trip.
/// Otherwise the settings go first, the new statements are prepared under the request's
/// role, and the steps follow.
async fn run_transaction_inner(
    pool: &Pool,
    env: &Envelope<'_>,
    steps: &[Step<'_>],
    end: End,
) -> Result<Ran, ApiError> {
    let mut conn = InFlight(Some(checkout(pool).await.map_err(pool_error)?));
    if !env.prepared {
        let (results, tail) = run_unprepared(&mut conn, env, steps, end).await?;
        return Ok(Ran {
            conn,
            results,
            tail,
        });
    }
    let fail = |e: &tokio_postgres::Error| pg_error(e, env.anonymous);
    let end = end.at_sync_if_allowed(env, &conn);
    let (settings_sql, settings_params) = env.settings_statement(end == End::AtSync);
    let settings = conn.prepare(&settings_sql).await.map_err(|e| fail(&e))?;
    let begin = env.begin_sql();
    // BEGIN and COMMIT are prepared too: Bind/Execute of a prepared utility statement costs
    // PostgreSQL less than parsing a Query message each time.
    let begin = conn.prepare(begin).await.map_err(|e| fail(&e))?;
    let commit = conn.prepare("COMMIT").await.map_err(|e| fail(&e))?;
    let then = match end {
        End::CommitThenRead(sql) => Some(conn.prepare(sql).await.map_err(|e| fail(&e))?),
        _ => None,
    };
    let mut committing = (end == End::Stream).then(|| {
        let (client, commit) = (conn.client.clone(), commit.clone());
        Committing::new(async move { commit_prepared(&client, &commit).await })
    });
    let pre_sql = env.pre_request_sql();
    let all = after_settings(&settings_sql, &pre_sql, steps);
    let sp = params_of(&settings_params);
    let sp = as_dyn(&sp);
    // Until the transaction is closed, a dropped request must not hand the connection
    // back mid-transaction: recycling rolls it back (see PgManager::recycle).
    conn.in_transaction = true;
    let mut rest = None;
    // The steps' prepared statements, when every one is prepared on this connection.
    let prepared: Option<Vec<_>> = all
        .iter()
        .map(|s| Some((conn.statements.get(s.sql)?.clone(), s.params)))
        .collect();
    let sendable = prepared
        .as_ref()
        .is_some_and(|p| encodable(&settings, sp.len()) && all_encodable(p));
    // Statements still to be prepared wait for the settings, so BEGIN and COMMIT frame
    // them: the transaction then ends as `explicit` says. So they do for statements that
    // cannot go under one Sync: a transaction PostgreSQL opened itself would end at the
    // settings' own Sync.
    let end = if sendable { end } else { end.explicit() };
    conn.begun = end.begins();
    let outcome = if let Some(prepared) = prepared {
        let client = &conn.client;
        let statements =
            usize::from(end.begins()) + 1 + prepared.len() + end.statements(then.is_some());
        let one_sync = under_one_sync(&conn.batch, statements, sendable, end);
        let (begun, set, (results, left), committed, ()) = tokio::join!(
            biased;
            begin_if(client, &begin, end),
            client.query(&settings, &sp),
            pipeline(&conn, &prepared, end),
            commit_if(client, &commit, then.as_ref(), end),
            send_commit(&mut committing),
        );
        drop(one_sync);
        rest = left;
        begun
            .and(set)
            .map_err(|e| fail(&e))
            .and_then(|_| collect(results, &fail))
            .and_then(|r| committed.map(|t| with_trailing(r, t)).map_err(|e| fail(&e)))
    } else {
        let client = &conn.client;
        let one_sync = under_one_sync(&conn.batch, 2, encodable(&settings, sp.len()), end);
        let (begun, set) = tokio::join!(
            biased;
            client.query(&begin, &[]),
            client.query(&settings, &sp)
        );
        drop(one_sync);
        let mut outcome = begun.and(set).map(|_| Vec::new()).map_err(|e| fail(&e));
        if outcome.is_ok() {
            let mut prepared = Vec::new();
            for s in &all {
                match conn.prepare(s.sql).await {
                    Ok(stmt) => prepared.push((stmt, s.params)),
                    Err(e) => {
                        outcome = Err(fail(&e));
                        break;
                    }
                }
            }
            if outcome.is_ok() {
                let statements = prepared.len() + end.statements(then.is_some());
                let sendable = all_encodable(&prepared);
                let one_sync = under_one_sync(&conn.batch, statements, sendable, end);
                let ((results, left), committed, ()) = tokio::join!(
                    biased;
                    pipeline(&conn, &prepared, end),
                    commit_if(&conn.client, &commit, then.as_ref(), end),
                    send_commit(&mut committing),
                );
                drop(one_sync);
                rest = left;
                outcome = collect(results, &fail)
                    .and_then(|r| committed.map(|t| with_trailing(r, t)).map_err(|e| fail(&e)));
            }
        }
        outcome
    };
    let skip = usize::from(pre_sql.is_some());
    let ended = Ending {
        end,
        skip,
        rest,
        committing,
    };
    let (results, tail) = settle(&mut conn, outcome, ended, env.anonymous).await?;
    Ok(Ran {
        conn,
        results,
        tail,
    })
}

/// Sends a streamed read's COMMIT, when there is one, after the statements before it.
async fn send_commit(committing: &mut Option<Committing>) {
    if let Some(c) = committing {
        c.send().await;
    }
}

/// The statements sent after the settings statement: db-pre-request's call, then the
/// steps; all of them (the settings first) recorded for log-query.
fn after_settings<'a>(
    settings_sql: &str,
    pre_sql: &'a Option<String>,
    steps: &[Step<'a>],
) -> Vec<Step<'a>> {
    crate::timing::record_query(settings_sql);
    let pre = pre_sql.as_deref().map(|sql| Step { sql, params: &[] });
    let all: Vec<Step> = pre
        .into_iter()
        .chain(steps.iter().map(|s| Step {
            sql: s.sql,
            params: s.params,
        }))
        .collect();
    for s in &all {
        crate::timing::record_query(s.sql);
    }
    all
}

/// How the statements just sent end their transaction.
struct Ending {
    end: End,
    /// Steps whose rows the caller does not want (db-pre-request's, the settings').
    skip: usize,
    /// Rows a streamed read's last statement has not read yet.
    rest: Option<RowsLeft>,
    /// A streamed read's COMMIT, sent but not yet read.
    committing: Option<Committing>,
}

/// After the statements: the connection is out of its transaction when COMMIT went with
/// them (a streamed read's once its COMMIT's reply is read, which waits for the rows left
/// to the response) or the Sync ended it; a failure otherwise rolls it back. Returns each
/// step's rows but the first `skip`.
async fn settle(
    conn: &mut Conn,
    outcome: Result<Vec<Vec<tokio_postgres::Row>>, ApiError>,
    ended: Ending,
    anonymous: bool,
) -> Result<(Vec<Vec<tokio_postgres::Row>>, Option<Tail>), ApiError> {
    let committed = match (outcome, ended.committing) {
        (Ok(results), None) => Ok((results, None)),
        (Ok(results), Some(committing)) => match ended.rest {
            Some(rows) => Ok((results, Some(Tail { rows, committing }))),
            None => committing
                .finish()
                .await
                .map(|_| (results, None))
                .map_err(|e| pg_error(&e, anonymous)),
        },
        (Err(e), _) => Err(e),
    };
    match committed {
        Ok((results, tail)) => {
            if ended.end != End::Open && tail.is_none() {
                conn.in_transaction = false;
            }
            Ok((results.into_iter().skip(ended.skip).collect(), tail))
        }
        // PostgreSQL ended a transaction it opened itself at the Sync, failed or not
        // (every statement's reply has been read up to its ReadyForQuery): a ROLLBACK
        // would cost a round trip and log "there is no transaction in progress" for
        // every refused write.
        Err(e) if ended.end == End::AtSync => {
            conn.in_transaction = false;
            Err(e)
        }
        Err(e) => {
            if conn.client.batch_execute("ROLLBACK").await.is_ok() {
                conn.in_transaction = false;
            }
            Err(e)
        }
    }
}

/// `run_transaction_inner` with db-prepared-statements off: each statement goes as an
/// unnamed one (Parse, Bind, Execute; its parameters of type unknown, so PostgreSQL infers
/// them as it does for prepared ones), all pipelined in one round trip.
async fn run_unprepared(
    conn: &mut Conn,
    env: &Envelope<'_>,
    steps: &[Step<'_>],
    end: End,
) -> Result<(Vec<Vec<tokio_postgres::Row>>, Option<Tail>), ApiError> {
    let fail = |e: &tokio_postgres::Error| pg_error(e, env.anonymous);
    let end = end.at_sync_if_allowed(env, conn);
    let (settings_sql, settings_params) = env.settings_statement(end == End::AtSync);
    // Without prepared statements (a pooler in transaction mode) the parameters are owned
    // like every step's.
    let settings_params: Vec<String> = settings_params.iter().map(|p| p.to_string()).collect();
    let pre_sql = env.pre_request_sql();
    let settings = Step {
        sql: &settings_sql,
        params: &settings_params,
    };
    let all: Vec<Step> = std::iter::once(settings)
        .chain(after_settings(&settings_sql, &pre_sql, steps))
        .collect();
    let begin = env.begin_sql();
    let sendable =
        encodable_unnamed(begin, 0) && all.iter().all(|s| encodable_unnamed(s.sql, s.params.len()));
    // Statements that cannot go under one Sync get BEGIN and COMMIT: a transaction
    // PostgreSQL opened itself would end at the settings' own Sync.
    let end = if sendable { end } else { end.explicit() };
    conn.in_transaction = true;
    conn.begun = end.begins();
    let mut committing = (end == End::Stream).then(|| {
        let client = conn.client.clone();
        Committing::new(async move { commit_unnamed(&client).await })
    });
    let client = &conn.client;
    let last = all.len() - 1;
    let calls = all.iter().enumerate().map(|(i, s)| async move {
        let p = params_of(s.params);
        let typed = p.iter().map(|p| (p as &(dyn ToSql + Sync), Type::UNKNOWN));
        let stream = client.query_typed_raw(s.sql, typed).await?;
        stream::rows_within(stream, end.budget().filter(|_| i == last)).await
    });
    // BEGIN and COMMIT go as unnamed statements too, so all of it shares one Sync.
    let statements = usize::from(end.begins()) + all.len() + end.statements(true);
    let none: [(&(dyn ToSql + Sync), Type); 0] = [];
    let one_sync = under_one_sync(&conn.batch, statements, sendable, end);
    let (begun, results, committed, ()) = tokio::join!(
        biased;
        async {
            if end.begins() {
                client.query_typed(begin, &[]).await
            } else {
                Ok(Vec::new())
            }
        },
        futures_util::future::join_all(calls),
        async {
            match end {
                End::Commit => commit_unnamed(client).await.map(|_| None),
                End::Open | End::Stream | End::AtSync => Ok(None),
                End::CommitThenRead(sql) => {
                    let (committed, read) = tokio::join!(
                        biased;
                        commit_unnamed(client),
                        client.query_typed(sql, &none),
                    );
                    committed.map(|_| Some(read.unwrap_or_default()))
                }
            }
        },
        send_commit(&mut committing),
    );
    drop(one_sync);
    let (results, rest) = split_rest(results);
    let outcome = begun
        .map_err(|e| fail(&e))
        .and_then(|_| collect(results, &fail))
        .and_then(|r| committed.map(|t| with_trailing(r, t)).map_err(|e| fail(&e)));
    let ended = Ending {
        end,
        skip: 1 + usize::from(pre_sql.is_some()),
        rest,
        committing,
    };
    settle(conn, outcome, ended, env.anonymous).await
}

/// Ends a transaction left open by a write: COMMIT, or ROLLBACK after checking deferred
/// constraints (so their violations still answer, as PostgREST does).
async fn finish(conn: &mut InFlight, commit: bool, anonymous: bool) -> Result<(), ApiError> {
    finish_then(conn, commit, anonymous, None).await.map(|_| ())
}

/// [`finish`], and when it commits, `then` sent with COMMIT (one round trip): its rows,
/// none if it failed (the transaction is committed all the same).
async fn finish_then(
    conn: &mut InFlight,
    commit: bool,
    anonymous: bool,
    then: Option<&'static str>,
) -> Result<Option<Vec<tokio_postgres::Row>>, ApiError> {
    let client = &conn.client;
    let (result, read) = match (commit, then) {
        (true, Some(sql)) => {
            let none: [(&(dyn ToSql + Sync), Type); 0] = [];
            let (committed, read) = tokio::join!(
                biased;
                commit_simple(client),
                client.query_typed(sql, &none),
            );
            (committed, Some(read.unwrap_or_default()))
        }
        (true, None) => (commit_simple(client).await, None),
        (false, _) => (
            client.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await,
            None,
        ),
    };
    let closed = if commit && result.is_ok() {
        Ok(())
    } else {
        conn.client.batch_execute("ROLLBACK").await
    };
    if closed.is_ok() {
        conn.in_transaction = false;
    }
    result.map(|_| read).map_err(|e| pg_error(&e, anonymous))
}

fn collect(
    results: Vec<Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>>,
    fail: &impl Fn(&tokio_postgres::Error) -> ApiError,
) -> Result<Vec<Vec<tokio_postgres::Row>>, ApiError> {
    results
        .into_iter()
        .map(|r| r.map_err(|e| fail(&e)))
        .collect()
}

fn internal(e: tokio_postgres::Error) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// Runs a read (and the count EXPLAIN, if any) in one transaction.
pub async fn run_read(
    pool: &Pool,
    env: &Envelope<'_>,
    main: &Statement,
    count: Option<&Statement>,
) -> Result<Outcome, ApiError> {
    let main_step = Step {
        sql: &main.sql,
        params: &main.params,
    };
    let count_step = count.map(|c| Step {
        sql: &c.sql,
        params: &c.params,
    });
    if main.shape == RowShape::Items {
        // The streamed statement goes last: only the last step's rows may be left unread.
        let steps: Vec<Step> = count_step.into_iter().chain([main_step]).collect();
        let ran = run_transaction(pool, env, &steps, End::Stream).await?;
        let (main_rows, count_rows) = match &ran.results[..] {
            [count, main] => (main, Some(count)),
            [main] => (main, None),
            _ => return Err(ApiError::Internal("a read without its rows".into())),
        };
        let mut outcome = stream::items_outcome(main_rows, ran.tail.is_none())?;
        outcome.planned_total = count_rows.and_then(|rows| planned_total(rows));
        outcome.rest = ran.tail.map(|tail| stream::spawn_rest(ran.conn, tail));
        return Ok(outcome);
    }
    let steps: Vec<Step> = [main_step].into_iter().chain(count_step).collect();
    let ran = run_transaction(pool, env, &steps, End::Commit).await?;
    let mut results = ran.results;
    let mut outcome = outcome_of(&mut results, main.shape)?;
    outcome.planned_total = results.get(1).and_then(|rows| planned_total(rows));
    Ok(outcome)
}

/// `Plan Rows` of the count EXPLAIN's one row.
fn planned_total(rows: &[tokio_postgres::Row]) -> Option<i64> {
    rows.first()
        .and_then(|r| r.try_get::<_, RawText>(0).ok())
        .and_then(|t| plan_rows(&t.0))
}

/// The one row of the main statement (the first step), read as its shape declares; the
/// row itself moves into the body.
fn outcome_of(
    results: &mut [Vec<tokio_postgres::Row>],
    shape: RowShape,
) -> Result<Outcome, ApiError> {
    let row = match results.first_mut() {
        Some(rows) if !rows.is_empty() => rows.swap_remove(0),
        _ => return Err(ApiError::Internal("the statement returned no row".into())),
    };
    let text = |i: usize| -> Result<Option<String>, ApiError> {
        Ok(row
            .try_get::<_, Option<RawText>>(i)
            .map_err(internal)?
            .map(|t| t.0))
    };
    let inserted = match shape.inserted() {
        Some(i) => row.try_get::<_, Option<i64>>(i).map_err(internal)?,
        None => None,
    };
    let total = row
        .try_get::<_, Option<i64>>(RowShape::TOTAL)
        .map_err(internal)?;
    let page_total = row
        .try_get::<_, i64>(RowShape::PAGE_TOTAL)
        .map_err(internal)?;
    let response_headers = text(shape.response_headers())?;
    let response_status = text(shape.response_status())?;
    Ok(Outcome {
        total,
        page_total,
        body: column_bytes(row, shape.body())?,
        response_headers,
        response_status,
        inserted,
        planned_total: None,
        rest: None,
    })
}

/// Runs a statement whose transaction needs no decision after it (a call that cannot be
/// refused afterwards, a read or a write): COMMIT goes out with it, one round trip.
pub async fn run_committed(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
) -> Result<Outcome, ApiError> {
    run_committed_then(pool, env, stmt, None)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`run_committed`], and `then` sent right after COMMIT in the same round trip (the
/// commit LSN of read replicas): its rows.
async fn run_committed_then(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
    then: Option<&'static str>,
) -> Result<(Outcome, Option<Vec<tokio_postgres::Row>>), ApiError> {
    let steps = [Step {
        sql: &stmt.sql,
        params: &stmt.params,
    }];
    let end = then.map_or(End::Commit, End::CommitThenRead);
    let Ran { mut results, .. } = run_transaction(pool, env, &steps, end).await?;
    let outcome = outcome_of(&mut results, stmt.shape)?;
    let read = then.map(|_| results.pop().unwrap_or_default());
    Ok((outcome, read))
}

/// Runs a write and lets `decide` see the outcome before the transaction ends:
/// `Ok(true)` commits, `Ok(false)` rolls back (with the outcome still returned), an error
/// rolls back and is returned.
pub async fn run_write(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
    decide: impl FnOnce(&Outcome) -> Result<bool, ApiError>,
) -> Result<Outcome, ApiError> {
    run_write_then(pool, env, stmt, decide, None)
        .await
        .map(|(outcome, _)| outcome)
}

/// [`run_write`], and when it commits, `then` sent with COMMIT: its rows.
async fn run_write_then(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
    decide: impl FnOnce(&Outcome) -> Result<bool, ApiError>,
    then: Option<&'static str>,
) -> Result<(Outcome, Option<Vec<tokio_postgres::Row>>), ApiError> {
    let steps = [Step {
        sql: &stmt.sql,
        params: &stmt.params,
    }];
    let Ran {
        mut conn,
        mut results,
        ..
    } = run_transaction(pool, env, &steps, End::Open).await?;
    let parsed = outcome_of(&mut results, stmt.shape);
    let decision = parsed.and_then(|o| decide(&o).map(|commit| (o, commit)));
    match decision {
        Ok((outcome, commit)) => {
            let read = finish_then(&mut conn, commit, env.anonymous, then).await?;
            Ok((outcome, read))
        }
        Err(e) => {
            let _ = finish(&mut conn, false, env.anonymous).await;
            Err(e)
        }
    }
}

/// Runs `EXPLAIN ...` of a statement and returns PostgreSQL's plan as text (TEXT format
/// lines joined, or the JSON document). With ANALYZE the statement really runs, so the
/// transaction ends as the caller says.
pub async fn run_explain(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
    commit: bool,
) -> Result<String, ApiError> {
    let steps = [Step {
        sql: &stmt.sql,
        params: &stmt.params,
    }];
    let Ran {
        mut conn, results, ..
    } = run_transaction(pool, env, &steps, End::Open).await?;
    let lines: Result<Vec<String>, ApiError> = results
        .first()
        .map(|rows| {
            rows.iter()
                .map(|r| r.try_get::<_, RawText>(0).map(|t| t.0).map_err(internal))
                .collect()
        })
        .unwrap_or_else(|| Ok(Vec::new()));
    match lines {
        Ok(lines) => {
            finish(&mut conn, commit, env.anonymous).await?;
            Ok(lines.join("\n"))
        }
        Err(e) => {
            let _ = finish(&mut conn, false, env.anonymous).await;
            Err(e)
        }
    }
}
