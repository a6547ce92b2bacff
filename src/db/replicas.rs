//! Read replicas (pgrest extension, db-replica-uris; README "Scaling out"): a pool per
//! streaming standby, a probe per standby that keeps it in or out of the rotation, the
//! choice of a standby for a read, and the commit LSN a write reports so that a later
//! read never goes back in time.
//!
//! Kept apart from the rest of `db`: without db-replica-uris nothing here runs, and
//! the transaction code in `db` is used as it is (this module is its child, so it runs
//! `run_transaction` itself rather than `db` growing options for it).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::tls::Connector;
use super::{Outcome, Pool, PoolSettings};
use crate::error::ApiError;
use crate::sql::{Envelope, Statement};

/// The request header (and cookie) that carries a write's commit LSN back to a read.
pub const LSN_HEADER: &str = "X-Pgrst-Lsn";
pub const LSN_HEADER_LOWER: &str = "x-pgrst-lsn";
pub const LSN_COOKIE: &str = "pgrst_lsn";

/// A WAL position, PostgreSQL's `pg_lsn`: two hexadecimal numbers of at most 8 digits,
/// `X/X` (the high and low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Strict: exactly `hex/hex`, 1 to 8 digits each, nothing around it.
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.split_once('/')?;
        let half = |s: &str| {
            let hex = !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| u64::from_str_radix(s, 16).ok()).flatten()
        };
        Some(Lsn((half(high)? << 32) | half(low)?))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The LSN a read asks for: the X-Pgrst-Lsn header, else the pgrst_lsn cookie. A value
/// that is not an LSN is the client's mistake: 400 PGRST100, like any unparsable input.
pub fn wanted_lsn(
    header: Option<&str>,
    cookies: &[(String, String)],
) -> Result<Option<Lsn>, ApiError> {
    let given = header.map(|v| (LSN_HEADER, v)).or_else(|| {
        cookies
            .iter()
            .find(|(k, _)| k == LSN_COOKIE)
            .map(|(_, v)| ("the pgrst_lsn cookie", v.as_str()))
    });
    let Some((source, value)) = given else {
        return Ok(None);
    };
    Lsn::parse(value.trim())
        .map(Some)
        .ok_or_else(|| ApiError::Parse {
            message: format!("\"failed to parse {source} ({value})\""),
            details: "expected a WAL position as PostgreSQL writes it: two hexadecimal numbers \
                  separated by a slash, e.g. 16/B374D848"
                .into(),
        })
}

/// One standby: its pool and what the probe and the requests know of it.
pub struct Replica {
    /// host:port, as /metrics labels it.
    pub name: String,
    pool: Pool,
    connector: Connector,
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    /// pg_last_wal_replay_lsn() as last seen (probe, or a request's fresh check).
    replay_lsn: AtomicU64,
    /// Replay lag at the last probe, milliseconds.
    lag_ms: AtomicU64,
    /// Reads sent to it.
    requests: AtomicU64,
    /// Reads it failed for a connection reason (each retried on the primary).
    failures: AtomicU64,
}

/// The standbys of db-replica-uris (none: every request goes to the primary).
#[derive(Default)]
pub struct Replicas {
    list: Vec<Arc<Replica>>,
    /// Reads a replica could have served that went to the primary: none healthy, or
    /// none had replayed the LSN asked for in time.
    fallbacks: AtomicU64,
    /// Where the next choice starts looking, so that standbys equally busy take turns.
    next: AtomicUsize,
}

/// While a read runs on a replica: counts it in flight (the least busy one is chosen).
struct Lease<'a> {
    replica: &'a Replica,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.replica.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often a healthy standby is probed, and the bounds of the backoff for one that
/// is not.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// A probe that takes longer than this counts as failed (a standby that hangs).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a read with an LSN waits for a standby to replay it before the primary
/// serves it, and how often it looks meanwhile: 1 ms after the first look, doubling to
/// 16 ms (a standby of a primary with synchronous commits is usually a millisecond
/// behind; one that is further behind is not asked a hundred times).
const LSN_WAIT: Duration = Duration::from_millis(150);
const LSN_POLL_FIRST: Duration = Duration::from_millis(1);
const LSN_POLL_MAX: Duration = Duration::from_millis(16);

/// Recovery state, replay position, whether replay has caught up with what was received,
/// and the age of the last transaction replayed (NULL before the first), in one
/// statement.
const PROBE_SQL: &str = "select pg_is_in_recovery(), \
     coalesce(pg_last_wal_replay_lsn()::text, ''), \
     pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn(), \
     (extract(epoch from now() - pg_last_xact_replay_timestamp()) * 1000)::float8";

const REPLAY_LSN_SQL: &str = "select coalesce(pg_last_wal_replay_lsn()::text, '')";
const COMMIT_LSN_SQL: &str = "select pg_current_wal_insert_lsn()::text";

/// host:port of a connector's first host, for logs and /metrics (escaped as a
/// Prometheus label value: a socket path may hold anything).
fn name_of(connector: &Connector) -> String {
    let pg = &connector.config;
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let name = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => format!("{h}:{port}"),
        Some(tokio_postgres::config::Host::Unix(p)) => format!("{}:{port}", p.display()),
        None => format!("localhost:{port}"),
    };
    name.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Replicas {
    /// A pool per connection string, and a probe task per standby (started here, so it
    /// needs the runtime). Nothing connects before the first probe; until it answers, a
    /// standby is out of the rotation.
    pub fn start(
        uris: &[String],
        settings: impl Fn() -> PoolSettings,
        max_lag: Duration,
    ) -> Result<Replicas, String> {
        let mut list = Vec::new();
        for uri in uris {
            let connector = Connector::from_uri(uri)
                .map_err(|e| e.replace("db-uri", "db-replica-uris entry"))?;
            let name = name_of(&connector);
            let pool = super::make_pool(connector.clone(), &settings())?;
            tokio::spawn(super::retire_idle_connections(pool.clone(), settings()));
            let replica = Arc::new(Replica {
                name,
                pool,
                connector,
                healthy: AtomicBool::new(false),
                in_flight: AtomicUsize::new(0),
                replay_lsn: AtomicU64::new(0),
                lag_ms: AtomicU64::new(0),
                requests: AtomicU64::new(0),
                failures: AtomicU64::new(0),
            });
            tokio::spawn(probe_loop(replica.clone(), max_lag));
            list.push(replica);
        }
        Ok(Replicas {
            list,
            ..Replicas::default()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The least busy healthy standby that has replayed `wanted` (as last seen).
    fn pick(&self, wanted: Lsn) -> Option<Lease<'_>> {
        let n = self.list.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let replica = (0..n)
            .map(|i| &self.list[(start + i) % n])
            .filter(|r| r.healthy.load(Ordering::Relaxed))
            .filter(|r| r.replay_lsn.load(Ordering::Relaxed) >= wanted.0)
            .min_by_key(|r| r.in_flight.load(Ordering::Relaxed))?;
        replica.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease { replica })
    }

    /// A standby that has replayed `wanted`: one known to have, else the healthy one
    /// furthest ahead once it has, asked again and again (LSN_POLL_*) for up to LSN_WAIT.
    async fn pick_reaching(&self, wanted: Lsn) -> Option<Lease<'_>> {
        if let Some(lease) = self.pick(wanted) {
            return Some(lease);
        }
        let ahead = self
            .list
            .iter()
            .filter(|r| r.healthy.load(Ordering::Relaxed))
            .max_by_key(|r| r.replay_lsn.load(Ordering::Relaxed))?;
        let deadline = tokio::time::Instant::now() + LSN_WAIT;
        let mut poll = LSN_POLL_FIRST;
        loop {
            if ahead.fresh_replay_lsn().await? >= wanted {
                ahead.in_flight.fetch_add(1, Ordering::Relaxed);
                return Some(Lease { replica: ahead });
            }
            if tokio::time::Instant::now() + poll > deadline {
                return None;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(LSN_POLL_MAX);
        }
    }

    /// Runs a read on a standby (one that has replayed `wanted`, when given), or on the
    /// primary when none can take it. A standby failing it for a connection reason
    /// leaves the rotation and the read runs once more, on the primary: reads have no
    /// effects, so running one twice is safe.
    pub async fn read<'a, T>(
        &'a self,
        primary: &'a Pool,
        wanted: Option<Lsn>,
        run: impl Fn(&'a Pool) -> BoxFuture<'a, Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let lease = match wanted {
            Some(lsn) => self.pick_reaching(lsn).await,
            None => self.pick(Lsn(0)),
        };
        let Some(lease) = lease else {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            return run(primary).await;
        };
        let replica: &'a Replica = lease.replica;
        replica.requests.fetch_add(1, Ordering::Relaxed);
        match run(&replica.pool).await {
            Err(e) if retry_on_primary(&e) => {
                drop(lease);
                replica.failed(&e);
                run(primary).await
            }
            other => other,
        }
    }

    /// Per-standby state for /metrics, in Prometheus' text format (empty without
    /// replicas).
    pub fn metrics_text(&self) -> String {
        use std::fmt::Write as _;
        if self.list.is_empty() {
            return String::new();
        }
        let mut out = String::new();
        type Read = fn(&Replica) -> String;
        let families: [(&str, &str, &str, Read); 5] = [
            (
                "pgrst_db_replica_healthy",
                "gauge",
                "1 while the standby is in the rotation.",
                |r| u8::from(r.healthy.load(Ordering::Relaxed)).to_string(),
            ),
            (
                "pgrst_db_replica_lag_seconds",
                "gauge",
                "Replay lag at the last probe.",
                |r| (r.lag_ms.load(Ordering::Relaxed) as f64 / 1e3).to_string(),
            ),
            (
                "pgrst_db_replica_requests_total",
                "counter",
                "Reads sent to the standby.",
                |r| r.requests.load(Ordering::Relaxed).to_string(),
            ),
            (
                "pgrst_db_replica_failures_total",
                "counter",
                "Reads the standby failed for a connection reason (retried on the primary).",
                |r| r.failures.load(Ordering::Relaxed).to_string(),
            ),
            (
                "pgrst_db_replica_in_flight",
                "gauge",
                "Reads running on the standby.",
                |r| r.in_flight.load(Ordering::Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, read) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for r in &self.list {
                let _ = writeln!(out, "{name}{{replica=\"{}\"}} {}", r.name, read(r));
            }
        }
        let name = "pgrst_db_replica_fallbacks_total";
        let _ = writeln!(
            out,
            "# HELP {name} Reads a standby could have served that the primary served.\n\
             # TYPE {name} counter\n{name} {}",
            self.fallbacks.load(Ordering::Relaxed)
        );
        out
    }
}

/// Whether a read that failed on a standby is worth running on the primary: the
/// connection broke or could not be had (no answer, class 08, the server shutting down
/// or restarting: 57P01-57P03), or the standby cancelled the read because replay
/// conflicted with it (40001 on a read-only transaction: only recovery conflicts).
fn retry_on_primary(e: &ApiError) -> bool {
    match e {
        ApiError::Connection(_) | ApiError::Client(_) => true,
        ApiError::Pg { sqlstate, .. } => {
            sqlstate.starts_with("08") || sqlstate.starts_with("57P") || sqlstate == "40001"
        }
        _ => false,
    }
}

impl Replica {
    /// A read failed here: a broken connection takes the standby out of the rotation
    /// until a probe finds it well again.
    fn failed(&self, e: &ApiError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let conflict = matches!(e, ApiError::Pg { sqlstate, .. } if sqlstate == "40001");
        if !conflict && self.healthy.swap(false, Ordering::Relaxed) {
            let why = e.body(false);
            let text = |k: &str| why[k].as_str().unwrap_or_default().to_string();
            tracing::warn!(
                "replica {} left the rotation: {} {} ({})",
                self.name,
                text("message"),
                text("details"),
                e.code()
            );
        }
    }

    /// pg_last_wal_replay_lsn() asked now, over the pool (and remembered). A simple
    /// query: one round trip, and nothing left prepared (a pooler may sit in front).
    async fn fresh_replay_lsn(&self) -> Option<Lsn> {
        let conn = self.pool.get().await.ok()?;
        let lsn = Lsn::parse(&first_value(&conn.client, REPLAY_LSN_SQL).await?)?;
        self.replay_lsn.fetch_max(lsn.0, Ordering::Relaxed);
        Some(lsn)
    }

    /// Takes in what a probe found, logging a change of state.
    fn apply(&self, verdict: Result<Probed, String>, max_lag: Duration) {
        let (healthy, reason) = match verdict {
            Ok(p) => {
                self.replay_lsn.fetch_max(p.replay.0, Ordering::Relaxed);
                self.lag_ms.store(p.lag_ms, Ordering::Relaxed);
                match p.judge(max_lag) {
                    Ok(()) => (true, String::new()),
                    Err(reason) => (false, reason),
                }
            }
            Err(reason) => (false, reason),
        };
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        match (was, healthy) {
            (false, true) => tracing::info!("replica {} is in the rotation", self.name),
            (true, false) => tracing::warn!("replica {} left the rotation: {reason}", self.name),
            _ => {}
        }
    }
}

/// What one probe read of a standby.
struct Probed {
    in_recovery: bool,
    replay: Lsn,
    lag_ms: u64,
}

/// Tells how far behind a standby is from what successive probes see. Caught up (it
/// has replayed all it received): no lag, however old its last transaction (on an idle
/// primary nothing commits, and that age grows without the standby being behind).
/// Behind: the age of the last transaction replayed, or, when that is older news or
/// there is none yet (a fresh standby paused before replaying one), how long replay
/// has stood still at one position.
#[derive(Default)]
struct LagMeter {
    /// The replay position last seen, and since when it has not moved.
    still: Option<(Lsn, std::time::Instant)>,
}

impl LagMeter {
    fn lag_ms(&mut self, replay: Lsn, caught_up: bool, last_xact_age_ms: Option<f64>) -> u64 {
        let now = std::time::Instant::now();
        let since = match self.still {
            Some((lsn, since)) if lsn == replay => since,
            _ => now,
        };
        self.still = Some((replay, since));
        if caught_up {
            return 0;
        }
        let stalled = now.duration_since(since).as_millis() as u64;
        let age = last_xact_age_ms.unwrap_or(0.0).max(0.0) as u64;
        age.max(stalled)
    }
}

impl Probed {
    fn judge(&self, max_lag: Duration) -> Result<(), String> {
        if !self.in_recovery {
            return Err("it is not in recovery (promoted, or not a standby)".into());
        }
        if u128::from(self.lag_ms) > max_lag.as_millis() {
            return Err(format!(
                "it lags {} ms, more than db-replica-max-lag",
                self.lag_ms
            ));
        }
        Ok(())
    }
}

type ProbeConnection = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// Probes a standby for as long as the server runs: every PROBE_EVERY while it is
/// healthy, with a doubling backoff while it is not. Over a connection of its own, so a
/// full pool does not make a standby look down.
async fn probe_loop(replica: Arc<Replica>, max_lag: Duration) {
    let mut connection: Option<ProbeConnection> = None;
    let mut meter = LagMeter::default();
    let mut backoff = BACKOFF_FIRST;
    loop {
        let probing = probe(&replica.connector, &mut connection, &mut meter);
        let probed = tokio::time::timeout(PROBE_TIMEOUT, probing)
            .await
            .unwrap_or_else(|_| Err("the probe timed out".into()));
        if probed.is_err() {
            connection = None;
        }
        replica.apply(probed, max_lag);
        let wait = if replica.healthy.load(Ordering::Relaxed) {
            backoff = BACKOFF_FIRST;
            PROBE_EVERY
        } else {
            let wait = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            wait
        };
        tokio::time::sleep(wait).await;
    }
}

async fn probe(
    connector: &Connector,
    connection: &mut Option<ProbeConnection>,
    meter: &mut LagMeter,
) -> Result<Probed, String> {
    if connection.as_ref().is_none_or(|(c, _)| c.is_closed()) {
        let opened = super::startup::connect_typed(connector)
            .await
            .map_err(|e| super::startup::connect_error(connector, &e))?;
        *connection = Some(opened);
    }
    let Some((client, _)) = connection.as_ref() else {
        return Err("no probe connection".into());
    };
    let row = client
        .query_one(PROBE_SQL, &[])
        .await
        .map_err(|e| super::describe(&e))?;
    let column = |e: tokio_postgres::Error| e.to_string();
    let replay = Lsn::parse(row.try_get(1).map_err(column)?).unwrap_or(Lsn(0));
    let caught_up: Option<bool> = row.try_get(2).map_err(column)?;
    let age: Option<f64> = row.try_get(3).map_err(column)?;
    Ok(Probed {
        in_recovery: row.try_get(0).map_err(column)?,
        replay,
        lag_ms: meter.lag_ms(replay, caught_up.unwrap_or(false), age),
    })
}

/// The commit LSN: pg_current_wal_insert_lsn() read after COMMIT on the same connection,
/// so it is at or past the end of the commit record (read inside the transaction it
/// would come before that record, and a standby could reach it without the write being
/// visible). Sent with COMMIT, in the same round trip. `None` when it cannot be read:
/// the write is committed all the same, and answers without the header.
fn lsn_of(rows: Option<&Vec<tokio_postgres::Row>>) -> Option<Lsn> {
    let text: String = rows?.first()?.try_get(0).ok()?;
    Lsn::parse(&text)
}

/// The first column of the first row of a simple query.
async fn first_value(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let messages = client.simple_query(sql).await.ok()?;
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

/// [`super::run_committed`], with the commit LSN read right after COMMIT.
pub async fn run_committed_lsn(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
) -> Result<(Outcome, Option<Lsn>), ApiError> {
    let (outcome, read) = super::run_committed_then(pool, env, stmt, Some(COMMIT_LSN_SQL)).await?;
    Ok((outcome, lsn_of(read.as_ref())))
}

/// [`super::run_write`], with the commit LSN read right after COMMIT when it commits.
pub async fn run_write_lsn(
    pool: &Pool,
    env: &Envelope<'_>,
    stmt: &Statement,
    decide: impl FnOnce(&Outcome) -> Result<bool, ApiError>,
) -> Result<(Outcome, Option<Lsn>), ApiError> {
    let (outcome, read) =
        super::run_write_then(pool, env, stmt, decide, Some(COMMIT_LSN_SQL)).await?;
    Ok((outcome, lsn_of(read.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_parse_strictly_and_print_as_postgresql_does() {
        assert_eq!(Lsn::parse("16/B374D848"), Some(Lsn(0x16_B374_D848)));
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn::parse("ffffffff/ffffffff"), Some(Lsn(u64::MAX)));
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0x1_0000_00A0).to_string(), "1/A0");
        for bad in [
            "",
            "/",
            "1/",
            "/1",
            "1/2/3",
            "g/1",
            "1 /2",
            " 1/2",
            "+1/2",
            "-1/2",
            "100000000/0",
            "0/100000000",
            "1/2\n",
            "١/2",
        ] {
            assert_eq!(Lsn::parse(bad), None, "{bad:?}");
        }
        for text in ["0/1", "A/B0", "FFFFFFFF/0"] {
            assert_eq!(Lsn::parse(text).unwrap().to_string(), text);
        }
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_header_wins_over_the_cookie_and_a_bad_value_is_a_parse_error() {
        let cookie = pairs(&[("pgrst_lsn", "0/20")]);
        assert_eq!(wanted_lsn(Some("0/10"), &cookie).unwrap(), Some(Lsn(0x10)));
        assert_eq!(wanted_lsn(None, &cookie).unwrap(), Some(Lsn(0x20)));
        assert_eq!(wanted_lsn(None, &[]).unwrap(), None);
        let bad = wanted_lsn(Some("0/1; drop"), &[]).unwrap_err();
        assert_eq!((bad.status(), bad.code().as_str()), (400, "PGRST100"));
    }

    #[test]
    fn a_probe_judges_recovery_and_lag() {
        let probed = |in_recovery, lag_ms| Probed {
            in_recovery,
            replay: Lsn(1),
            lag_ms,
        };
        let bound = Duration::from_millis(500);
        assert!(probed(true, 500).judge(bound).is_ok());
        assert!(probed(true, 501).judge(bound).is_err());
        assert!(probed(false, 0).judge(bound).is_err());
    }

    #[test]
    fn replicas_are_named_by_host_and_port_as_label_values() {
        let named = |uri: &str| name_of(&Connector::from_uri(uri).unwrap());
        assert_eq!(named("postgres://u@10.0.0.2:5433/db"), "10.0.0.2:5433");
        assert_eq!(named("host=/run/a\"b port=1"), "/run/a\\\"b:1");
    }

    #[test]
    fn lag_is_none_when_caught_up_else_the_older_of_the_last_commit_and_a_stall() {
        let mut meter = LagMeter::default();
        assert_eq!(meter.lag_ms(Lsn(5), true, Some(60_000.0)), 0);
        assert_eq!(meter.lag_ms(Lsn(5), false, Some(700.0)), 700);
        assert_eq!(meter.lag_ms(Lsn(5), false, None), 0);
        std::thread::sleep(Duration::from_millis(30));
        assert!(meter.lag_ms(Lsn(5), false, None) >= 30);
        assert_eq!(meter.lag_ms(Lsn(6), false, None), 0, "replay moved");
    }

    #[test]
    fn only_connection_failures_and_recovery_conflicts_are_retried() {
        let pg = |sqlstate: &str| ApiError::Pg {
            sqlstate: sqlstate.into(),
            message: String::new(),
            details: None,
            hint: None,
            anonymous: true,
        };
        assert!(retry_on_primary(&ApiError::Client("closed".into())));
        assert!(retry_on_primary(&ApiError::Connection("refused".into())));
        for code in ["57P01", "08006", "40001"] {
            assert!(retry_on_primary(&pg(code)), "{code}");
        }
        for code in ["42501", "22P02", "P0001"] {
            assert!(!retry_on_primary(&pg(code)), "{code}");
        }
        assert!(!retry_on_primary(&ApiError::PoolTimeout));
    }
}
