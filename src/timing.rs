//! What is noted about one request while it runs: stage timings for the `Server-Timing`
//! header (server-timing-enabled), the role it ran as and, with log-query, the SQL it sent
//! (both for the request log).

use std::cell::RefCell;
use std::time::Duration;

#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub jwt: Duration,
    pub parse: Duration,
    pub plan: Duration,
    pub transaction: Duration,
}

#[derive(Debug, Clone, Copy)]
pub enum Stage {
    Jwt,
    Parse,
    Plan,
    Transaction,
}

/// The notes on one request. Kept small: the task-local scope swaps it in and out of its
/// thread-local slot on every poll of the request (8 polls for a by-pk read); with the
/// timings inline it was 144 bytes (by-pk 55,945 -> 55,598 instructions, callgrind).
#[derive(Debug, Default)]
pub struct Trace {
    /// Stage timings, taken only when server-timing-enabled asks: two clock reads and a
    /// task-local update per stage otherwise spent for nothing (about 450 instructions of
    /// a by-pk read, callgrind).
    pub timings: Option<Box<Timings>>,
    /// The database role the request ran as, once known.
    pub role: Option<String>,
    /// The statements sent, when log-query is on.
    pub queries: Option<Vec<String>>,
}

tokio::task_local! {
    static CURRENT: RefCell<Trace>;
}

/// Runs `f` with a fresh trace (collecting SQL if `log_queries`, stage timings if
/// `timed`) and returns it with `f`'s output.
pub async fn measure<F: std::future::Future>(
    f: F,
    log_queries: bool,
    timed: bool,
) -> (F::Output, Trace) {
    let trace = Trace {
        timings: timed.then(Box::default),
        queries: log_queries.then(Vec::new),
        ..Trace::default()
    };
    CURRENT
        .scope(RefCell::new(trace), async {
            let out = f.await;
            let trace = CURRENT.with(|t| std::mem::take(&mut *t.borrow_mut()));
            (out, trace)
        })
        .await
}

/// Notes the role the current request runs as (no-op outside `measure`).
pub fn record_role(role: &str) {
    let _ = CURRENT.try_with(|t| t.borrow_mut().role = Some(role.to_string()));
}

/// Notes a statement sent for the current request, when log-query is on.
pub fn record_query(sql: &str) {
    let _ = CURRENT.try_with(|t| {
        if let Some(q) = t.borrow_mut().queries.as_mut() {
            q.push(sql.to_string());
        }
    });
}

/// Adds `d` to a stage of the current request (no-op outside `measure`).
fn record(stage: Stage, d: Duration) {
    let _ = CURRENT.try_with(|t| {
        let mut trace = t.borrow_mut();
        let Some(t) = trace.timings.as_mut() else {
            return;
        };
        let slot = match stage {
            Stage::Jwt => &mut t.jwt,
            Stage::Parse => &mut t.parse,
            Stage::Plan => &mut t.plan,
            Stage::Transaction => &mut t.transaction,
        };
        *slot += d;
    });
}

/// Whether the current request takes stage timings.
fn timed() -> bool {
    CURRENT
        .try_with(|t| t.borrow().timings.is_some())
        .unwrap_or(false)
}

/// Times `f` as `stage`, when the request takes timings.
pub fn time<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    if !timed() {
        return f();
    }
    let started = std::time::Instant::now();
    let out = f();
    record(stage, started.elapsed());
    out
}

/// Times the future `f` as `stage`, when the request takes timings.
pub async fn time_async<F: std::future::Future>(stage: Stage, f: F) -> F::Output {
    if !timed() {
        return f.await;
    }
    let started = std::time::Instant::now();
    let out = f.await;
    record(stage, started.elapsed());
    out
}

impl Timings {
    /// The header value, given the whole request's duration.
    pub fn header(&self, total: Duration) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let response = total.saturating_sub(self.jwt + self.parse + self.plan + self.transaction);
        format!(
            "jwt;dur={:.1}, parse;dur={:.1}, plan;dur={:.1}, transaction;dur={:.1}, response;dur={:.1}",
            ms(self.jwt),
            ms(self.parse),
            ms(self.plan),
            ms(self.transaction),
            ms(response)
        )
    }
}
