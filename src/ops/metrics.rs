//! Prometheus metrics for the admin server's `/metrics`. Written by hand: a few counters
//! and one histogram in the text exposition format need less code than wiring a client
//! library's registry through the server.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_micros: AtomicU64,
    schema_loads_ok: AtomicU64,
    schema_loads_failed: AtomicU64,
    schema_load_micros: AtomicU64,
    pool_timeouts: AtomicU64,
}

impl Metrics {
    pub fn request(&self, method: &str, status: u16, took: Duration) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((method.to_string(), status)).or_default() += 1;
        }
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn schema_load(&self, took: Option<Duration>) {
        match took {
            Some(d) => {
                self.schema_loads_ok.fetch_add(1, Ordering::Relaxed);
                self.schema_load_micros
                    .store(d.as_micros() as u64, Ordering::Relaxed);
            }
            None => {
                self.schema_loads_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A request gave up waiting for a pool connection (PGRST003).
    pub fn pool_timeout(&self) {
        self.pool_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text, with the pool's current status.
    pub fn render(&self, pool: deadpool::Status) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP pgrst_requests_total HTTP requests answered.");
        let _ = writeln!(out, "# TYPE pgrst_requests_total counter");
        if let Ok(map) = self.requests.lock() {
            for ((method, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "pgrst_requests_total{{method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP pgrst_request_duration_seconds Time to answer a request."
        );
        let _ = writeln!(out, "# TYPE pgrst_request_duration_seconds histogram");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "pgrst_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "pgrst_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "pgrst_request_duration_seconds_sum {}",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "pgrst_request_duration_seconds_count {count}");
        for (name, help, value) in [
            (
                "pgrst_db_pool_max",
                "Connections the pool may open.",
                pool.max_size,
            ),
            ("pgrst_db_pool_size", "Connections open.", pool.size),
            (
                "pgrst_db_pool_available",
                "Open connections not in use.",
                pool.available,
            ),
            (
                "pgrst_db_pool_waiting",
                "Requests waiting for a connection.",
                pool.waiting,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP pgrst_schema_cache_loads_total Schema cache loads.\n# TYPE pgrst_schema_cache_loads_total counter"
        );
        let _ = writeln!(
            out,
            "pgrst_schema_cache_loads_total{{status=\"SUCCESS\"}} {}",
            self.schema_loads_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "pgrst_schema_cache_loads_total{{status=\"FAIL\"}} {}",
            self.schema_loads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pgrst_schema_cache_query_time_seconds Duration of the last schema cache load.\n# TYPE pgrst_schema_cache_query_time_seconds gauge\npgrst_schema_cache_query_time_seconds {}",
            self.schema_load_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let jwt = &crate::auth::JWT_CACHE;
        for (name, help, value) in [
            (
                "pgrst_db_pool_timeouts_total",
                "Requests that waited too long for a pool connection.",
                self.pool_timeouts.load(Ordering::Relaxed),
            ),
            (
                "pgrst_jwt_cache_requests_total",
                "JWT cache lookups.",
                jwt.requests.load(Ordering::Relaxed),
            ),
            (
                "pgrst_jwt_cache_hits_total",
                "JWT cache lookups that found the token.",
                jwt.hits.load(Ordering::Relaxed),
            ),
            (
                "pgrst_jwt_cache_evictions_total",
                "Tokens evicted from the JWT cache.",
                jwt.evictions.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        process_metrics(&mut out);
        out
    }
}

/// The standard `process_*` metrics of Prometheus' client libraries, from /proc: CPU
/// time, resident memory, descriptors open and allowed, start time.
fn process_metrics(out: &mut String) {
    // SAFETY: sysconf only reads constants.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n).and_then(|v| v.parse::<f64>().ok());
    let cpu = field(11).zip(field(12)).map(|(u, s)| (u + s) / ticks);
    let rss = field(21).map(|pages| pages * page);
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    });
    let start = boot.zip(field(19)).map(|(b, t)| b + t / ticks);
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .ok();
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur as f64);
    for (name, kind, help, value) in [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent.",
            cpu,
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory.",
            rss,
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            open_fds,
        ),
        (
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors.",
            max_fds,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time since the Unix epoch.",
            start,
        ),
    ] {
        if let Some(value) = value {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}
