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
            "pgrst_schema_cache_loads_total{{status=\"ERROR\"}} {}",
            self.schema_loads_failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP pgrst_schema_cache_query_time_seconds Duration of the last schema cache load.\n# TYPE pgrst_schema_cache_query_time_seconds gauge\npgrst_schema_cache_query_time_seconds {}",
            self.schema_load_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        out
    }
}
