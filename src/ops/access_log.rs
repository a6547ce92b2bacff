//! The request log: one line per request on stdout in Apache's combined format, as
//! PostgREST writes it, and with log-query the SQL each request sent (stderr).
//!
//! Which requests are logged follows log-level: crit none, error 5xx, warn 4xx and 5xx,
//! info and debug all.

use std::io::Write;
use std::net::SocketAddr;

use crate::config::LogLevel;

pub fn wanted(level: LogLevel, status: u16) -> bool {
    match level {
        LogLevel::Crit => false,
        LogLevel::Error => status >= 500,
        LogLevel::Warn => status >= 400,
        LogLevel::Info | LogLevel::Debug => true,
    }
}

pub struct Entry<'a> {
    pub peer: Option<SocketAddr>,
    /// The role the request ran as; `None` when authentication failed or never ran.
    pub role: Option<&'a str>,
    pub method: &'a str,
    pub uri: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub queries: Option<&'a [String]>,
}

const DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
);

/// `"` and control characters in client-supplied fields, escaped so a line stays one line.
fn quoted(s: Option<&str>) -> String {
    match s {
        None | Some("") => "-".into(),
        Some(s) => s.escape_debug().to_string(),
    }
}

impl Entry<'_> {
    pub fn line(&self) -> String {
        let date = time::OffsetDateTime::now_utc()
            .format(DATE)
            .unwrap_or_default();
        format!(
            "{} - {} [{date}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\"\n",
            self.peer.map_or("-".to_string(), |p| p.ip().to_string()),
            self.role.filter(|r| !r.is_empty()).unwrap_or("-"),
            self.method,
            self.uri.escape_debug(),
            self.status,
            self.bytes
                .filter(|b| *b > 0)
                .map_or("-".to_string(), |b| b.to_string()),
            quoted(self.referer),
            quoted(self.user_agent),
        )
    }
}

pub fn write(entry: &Entry) {
    if let Some(queries) = entry.queries {
        let mut err = std::io::stderr().lock();
        for q in queries {
            let _ = writeln!(err, "{}", q.replace('\n', " "));
        }
    }
    let _ = std::io::stdout().lock().write_all(entry.line().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_in_combined_format() {
        let e = Entry {
            peer: Some("127.0.0.1:5000".parse().unwrap()),
            role: Some("web_anon"),
            method: "GET",
            uri: "/items?id=eq.1",
            status: 200,
            bytes: Some(12),
            referer: None,
            user_agent: Some("curl \"8\""),
            queries: None,
        };
        let line = e.line();
        assert!(line.starts_with("127.0.0.1 - web_anon ["), "{line}");
        assert!(
            line.ends_with("] \"GET /items?id=eq.1 HTTP/1.1\" 200 12 \"-\" \"curl \\\"8\\\"\"\n"),
            "{line}"
        );
    }

    #[test]
    fn levels_filter_by_status() {
        assert!(!wanted(LogLevel::Crit, 500));
        assert!(wanted(LogLevel::Error, 503) && !wanted(LogLevel::Error, 404));
        assert!(wanted(LogLevel::Warn, 404) && !wanted(LogLevel::Warn, 200));
        assert!(wanted(LogLevel::Info, 200));
    }
}
