//! Per-request stage timings for the `Server-Timing` header (server-timing-enabled).

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

tokio::task_local! {
    static CURRENT: RefCell<Timings>;
}

/// Runs `f` with a fresh set of timings and returns them with its output.
pub async fn measure<F: std::future::Future>(f: F) -> (F::Output, Timings) {
    CURRENT
        .scope(RefCell::new(Timings::default()), async {
            let out = f.await;
            let timings = CURRENT.with(|t| *t.borrow());
            (out, timings)
        })
        .await
}

/// Adds `d` to a stage of the current request (no-op outside `measure`).
pub fn record(stage: Stage, d: Duration) {
    let _ = CURRENT.try_with(|t| {
        let mut t = t.borrow_mut();
        let slot = match stage {
            Stage::Jwt => &mut t.jwt,
            Stage::Parse => &mut t.parse,
            Stage::Plan => &mut t.plan,
            Stage::Transaction => &mut t.transaction,
        };
        *slot += d;
    });
}

/// Times `f` as `stage`.
pub fn time<T>(stage: Stage, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
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
