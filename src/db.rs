//! Running a request's transaction: pool, envelope (BEGIN, request GUCs, pre-request, the
//! main statement, COMMIT) pipelined into one round trip, and SQLSTATE -> ApiError.

use std::error::Error as _;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use postgres_types::{Format, IsNull, ToSql, Type};
use tokio_postgres::NoTls;

use crate::error::ApiError;
use crate::sql::Statement;

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
        Ok(RawText(String::from_utf8_lossy(raw).into_owned()))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

pub fn make_pool(
    uri: &str,
    size: usize,
    acquisition_timeout: Duration,
) -> Result<Pool, String> {
    let mut pg: tokio_postgres::Config = uri
        .parse()
        .map_err(|e| format!("invalid db-uri: {e}"))?;
    if pg.get_application_name().is_none() {
        pg.application_name(concat!("pgrest ", env!("CARGO_PKG_VERSION")));
    }
    let manager = Manager::from_config(
        pg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(acquisition_timeout))
        .create_timeout(Some(acquisition_timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

pub fn pool_error(e: PoolError) -> ApiError {
    match e {
        PoolError::Timeout(_) => ApiError::PoolTimeout,
        PoolError::Backend(e) => ApiError::Connection(describe(&e)),
        other => ApiError::Connection(other.to_string()),
    }
}

fn describe(e: &tokio_postgres::Error) -> String {
    match e.source() {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

pub fn pg_error(e: &tokio_postgres::Error, anonymous: bool) -> ApiError {
    match e.as_db_error() {
        Some(db) => ApiError::Pg {
            sqlstate: db.code().code().to_string(),
            message: db.message().to_string(),
            details: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            anonymous,
        },
        None if e.is_closed() => ApiError::Client(describe(e)),
        None => ApiError::Client(describe(e)),
    }
}

/// Transaction-local settings for one request, in PostgREST's order.
pub struct Envelope {
    pub read_only: bool,
    pub search_path: String,
    pub role: String,
    pub anonymous: bool,
    pub gucs: Vec<(String, String)>,
    /// Quoted, qualified function name for db-pre-request.
    pub pre_request: Option<String>,
}

impl Envelope {
    fn settings_statement(&self) -> (String, Vec<String>) {
        let mut sql = String::from(
            "select set_config('search_path', $1, true), set_config('role', $2, true)",
        );
        let mut params = vec![self.search_path.clone(), self.role.clone()];
        for (name, value) in &self.gucs {
            params.push(name.clone());
            params.push(value.clone());
            sql.push_str(&format!(
                ", set_config(${}, ${}, true)",
                params.len() - 1,
                params.len()
            ));
        }
        (sql, params)
    }
}

/// What the main statement of a read returned.
pub struct ReadOutcome {
    pub total: Option<i64>,
    pub page_total: i64,
    pub body: String,
    pub response_headers: Option<String>,
    pub response_status: Option<String>,
    /// `Plan Rows` of the count EXPLAIN, when one was sent.
    pub planned_total: Option<i64>,
}

fn params_of(s: &[String]) -> Vec<TextParam<'_>> {
    s.iter().map(|p| TextParam(p)).collect()
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

/// Runs a read: everything goes out before the first reply is awaited, so the whole
/// transaction costs one round trip once its statements are prepared on the connection.
pub async fn run_read(
    pool: &Pool,
    env: &Envelope,
    main: &Statement,
    count: Option<&Statement>,
) -> Result<ReadOutcome, ApiError> {
    let client = pool.get().await.map_err(pool_error)?;
    let fail = |e: &tokio_postgres::Error| pg_error(e, env.anonymous);
    let (settings_sql, settings_params) = env.settings_statement();
    let settings = client.prepare_cached(&settings_sql).await.map_err(|e| fail(&e))?;
    let pre = match &env.pre_request {
        Some(f) => Some(
            client
                .prepare_cached(&format!("select {f}()"))
                .await
                .map_err(|e| fail(&e))?,
        ),
        None => None,
    };
    let main_stmt = client.prepare_cached(&main.sql).await.map_err(|e| fail(&e))?;
    let count_stmt = match count {
        Some(c) => Some(client.prepare_cached(&c.sql).await.map_err(|e| fail(&e))?),
        None => None,
    };
    let begin = if env.read_only {
        "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
    } else {
        "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
    };
    let sp = params_of(&settings_params);
    let sp = as_dyn(&sp);
    let mp = params_of(&main.params);
    let mp = as_dyn(&mp);
    let cp = count.map(|c| params_of(&c.params)).unwrap_or_default();
    let cp = as_dyn(&cp);
    let (begun, set, pre_done, rows, counted, committed) = tokio::join!(
        client.batch_execute(begin),
        client.query(&settings, &sp),
        async {
            match &pre {
                Some(p) => client.query(p, &[]).await.map(|_| ()),
                None => Ok(()),
            }
        },
        client.query(&main_stmt, &mp),
        async {
            match &count_stmt {
                Some(c) => client.query(c, &cp).await.map(Some),
                None => Ok(None),
            }
        },
        client.batch_execute("COMMIT"),
    );
    begun.map_err(|e| fail(&e))?;
    set.map_err(|e| fail(&e))?;
    pre_done.map_err(|e| fail(&e))?;
    let rows = rows.map_err(|e| fail(&e))?;
    let counted = counted.map_err(|e| fail(&e))?;
    committed.map_err(|e| fail(&e))?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::Internal("the statement returned no row".into()))?;
    let get_text = |i: usize| -> Result<Option<String>, ApiError> {
        row.try_get::<_, Option<RawText>>(i)
            .map(|v| v.map(|t| t.0))
            .map_err(|e| ApiError::Internal(e.to_string()))
    };
    let planned_total = counted
        .and_then(|rows| rows.first().and_then(|r| r.try_get::<_, RawText>(0).ok()))
        .and_then(|t| plan_rows(&t.0));
    Ok(ReadOutcome {
        total: row
            .try_get::<_, Option<i64>>(0)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        page_total: row
            .try_get::<_, i64>(1)
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        body: get_text(2)?.unwrap_or_default(),
        response_headers: get_text(3)?,
        response_status: get_text(4)?,
        planned_total,
    })
}
