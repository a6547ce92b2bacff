//! Diagnostics on stderr: log-level, colour only at a terminal, and the lifecycle lines
//! (start-up, reloads, shutdown) shown at every level.

use crate::config::LogLevel;

/// The tracing target of lines shown whatever log-level says.
pub const LIFECYCLE: &str = "pgrest::lifecycle";

/// Logs a start-up, shutdown or reload line (shown at every log-level).
#[macro_export]
macro_rules! lifecycle {
    ($($arg:tt)*) => { tracing::info!(target: $crate::ops::logging::LIFECYCLE, $($arg)*) };
}

fn log_filter(level: LogLevel) -> tracing_subscriber::EnvFilter {
    let filter = match level {
        LogLevel::Crit | LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    };
    // Start-up, shutdown and reload lines show at every level, as PostgREST's do.
    tracing_subscriber::EnvFilter::new(format!("pgrest={filter},{LIFECYCLE}=info"))
}

type FilterHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

static LOG_FILTER: std::sync::OnceLock<FilterHandle> = std::sync::OnceLock::new();

/// Diagnostics on stderr, filtered by log-level (changed by a config reload).
pub fn init_logging(level: LogLevel) {
    use tracing_subscriber::prelude::*;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    use std::io::IsTerminal;
    // Colour only for a person at a terminal (never into files or pipes), and never with
    // NO_COLOR set (no-color.org).
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LOG_FILTER.set(handle);
    }
}

/// Applies a reloaded log-level to the diagnostics.
pub fn set_log_level(level: LogLevel) {
    if let Some(handle) = LOG_FILTER.get() {
        let _ = handle.reload(log_filter(level));
    }
}
