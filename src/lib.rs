//! pgrest: a PostgREST-compatible REST API for PostgreSQL.
//!
//! One request, one way through (docs/architecture.md): `request` (parse) -> `plan`
//! (every decision, against one snapshot of config and schema cache) -> `sql` (render) ->
//! `db` (run) -> `http` (respond). `ops` runs the server around them.

/// `Box::pin(future)`, with the future built inside a closure. Inside an async fn,
/// `Box::pin(callee(..))` keeps the callee's whole future, built there before being
/// moved to the heap, in the caller's own state, so boxing shrank nothing: the request
/// handler's future stayed 11,008 bytes with its 9,560-byte chain "boxed" (1,448 built
/// this way), and hyper moves it by value more than once per request. A closure is a
/// function of its own, so the temporary lives on its stack and only the box remains.
macro_rules! boxed {
    ($future:expr) => {{
        #[allow(clippy::redundant_closure_call)]
        let boxed = (|| Box::pin($future))();
        boxed
    }};
}

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod hints;
pub mod http;
pub mod net;
pub mod openapi;
pub mod ops;
pub mod pgcluster;
pub mod plan;
pub mod request;
pub mod schema;
pub mod server;
pub mod sql;
pub mod timing;

/// The demo schema loaded by `pgrest --demo`.
pub const DEMO_SQL: &str = include_str!("demo.sql");
