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
/// The box is allocated before the future is built, so the compiler builds it in place:
/// `Box::pin(f)` built it on the stack and then copied all of it, mostly the unused room
/// of its later states, to the heap (6.5 KB per request for the chain; memcpy was 4,275
/// instructions of a by-pk read and 3,226 after, callgrind).
macro_rules! boxed {
    ($future:expr) => {{
        #[allow(clippy::redundant_closure_call)]
        let boxed = (|| Box::into_pin(Box::write(Box::new_uninit(), $future)))();
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
