//! pgrest: a PostgREST-compatible REST API for PostgreSQL.
//!
//! One request, one way through (docs/architecture.md): `request` (parse) -> `plan`
//! (every decision, against one snapshot of config and schema cache) -> `sql` (render) ->
//! `db` (run) -> `http` (respond). `ops` runs the server around them.

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
