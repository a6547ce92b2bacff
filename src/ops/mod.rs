//! Running the server: its state and per-request snapshots, reloads, the NOTIFY
//! listener, metrics, logs and the access log.

pub mod access_log;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod reload;
pub mod state;
