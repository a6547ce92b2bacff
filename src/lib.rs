//! pgrest: a PostgREST-compatible REST API for PostgreSQL.
//!
//! One request, one way through: `request` (parse) -> `plan` (resolve against the schema
//! cache) -> `sql` (render) -> `db` (run) -> `http` (respond).

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod lenient;
pub mod metrics;
pub mod openapi;
pub mod pgcluster;
pub mod plan;
pub mod request;
pub mod schema;
pub mod server;
pub mod sql;
pub mod timing;

/// The demo schema loaded by `pgrest --demo`.
pub const DEMO_SQL: &str = include_str!("demo.sql");
