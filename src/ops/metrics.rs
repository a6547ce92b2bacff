//! Prometheus metrics for the admin server's `/metrics`. Written by hand: a few counters
//! and one histogram in the text exposition format need less code than wiring a client
//! library's registry through the server.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// Copies of a sharded value: threads take one each in turn (the runtime's workers, one
/// per core, each get their own up to this many).
const SHARDS: usize = 16;

#[derive(Default)]
pub struct Metrics {
    /// What each request adds: with one set of counters, the cores took turns owning
    /// their cache lines on every request (a lock and up to 11 atomic additions on lines
    /// the other core had just written).
    shards: Sharded<Shard>,
    schema_loads_ok: AtomicU64,
    schema_loads_failed: AtomicU64,
    schema_load_micros: AtomicU64,
    pool_timeouts: AtomicU64,
}

/// One thread's share of the per-request counters.
#[derive(Default)]
struct Shard {
    /// By method label (see `method_label`: a bounded set, whatever methods clients send)
    /// and status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests per duration bucket, not cumulative: the last counts those over every
    /// bound (so the histogram's count is their sum).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_micros: AtomicU64,
}

/// A value written from many threads, one copy per thread on cache lines of its own:
/// a thread writes its copy, a reader goes over all of them.
#[derive(Default)]
pub struct Sharded<T>([Padded<T>; SHARDS]);

#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> Sharded<T> {
    /// This thread's copy.
    fn mine(&self) -> &T {
        &self.0[shard_index()].0
    }

    fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|p| &p.0)
    }
}

/// A counter added to from many threads (the JWT cache's).
pub type ShardedCounter = Sharded<AtomicU64>;

impl ShardedCounter {
    pub const fn new() -> ShardedCounter {
        Sharded([const { Padded(AtomicU64::new(0)) }; SHARDS])
    }

    pub fn add(&self, n: u64) {
        self.mine().fetch_add(n, Ordering::Relaxed);
    }

    pub fn sum(&self) -> u64 {
        self.all().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// This thread's shard.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// The label a request's method is counted under: the standard methods by name, anything
/// else as "OTHER", so that clients inventing methods cannot grow the map (and counting
/// allocates nothing).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

impl Metrics {
    pub fn request(&self, method: &str, status: u16, took: Duration) {
        let shard = self.shards.mine();
        if let Ok(mut map) = shard.requests.lock() {
            *map.entry((method_label(method), status)).or_default() += 1;
        }
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(BUCKETS.len());
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard
            .duration_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests answered, by method label and status, over all shards.
    fn requests(&self) -> BTreeMap<(&'static str, u16), u64> {
        let mut all = BTreeMap::new();
        for shard in self.shards.all() {
            if let Ok(map) = shard.requests.lock() {
                for (key, n) in map.iter() {
                    *all.entry(*key).or_default() += n;
                }
            }
        }
        all
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
        for family in self.families(pool).iter().chain(&process_families()) {
            family.write(&mut out);
        }
        out
    }

    /// pgrest's metric families, in the order /metrics lists them.
    fn families(&self, pool: deadpool::Status) -> Vec<Family> {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let jwt = &crate::auth::JWT_CACHE;
        vec![
            Family {
                name: "pgrst_requests_total",
                kind: "counter",
                help: "HTTP requests answered.",
                samples: self.request_samples(),
            },
            Family {
                name: "pgrst_request_duration_seconds",
                kind: "histogram",
                help: "Time to answer a request.",
                samples: self.duration_samples(),
            },
            Family::gauge(
                "pgrst_db_pool_max",
                "Connections the pool may open.",
                pool.max_size,
            ),
            Family::gauge("pgrst_db_pool_size", "Connections open.", pool.size),
            Family::gauge(
                "pgrst_db_pool_available",
                "Open connections not in use.",
                pool.available,
            ),
            Family::gauge(
                "pgrst_db_pool_waiting",
                "Requests waiting for a connection.",
                pool.waiting,
            ),
            Family {
                name: "pgrst_schema_cache_loads_total",
                kind: "counter",
                help: "Schema cache loads.",
                samples: vec![
                    Sample::labelled("status=\"SUCCESS\"", load(&self.schema_loads_ok)),
                    Sample::labelled("status=\"FAIL\"", load(&self.schema_loads_failed)),
                ],
            },
            Family::gauge(
                "pgrst_schema_cache_query_time_seconds",
                "Duration of the last schema cache load.",
                load(&self.schema_load_micros) as f64 / 1e6,
            ),
            Family::counter(
                "pgrst_db_pool_timeouts_total",
                "Requests that waited too long for a pool connection.",
                load(&self.pool_timeouts),
            ),
            Family::counter(
                "pgrst_jwt_cache_requests_total",
                "JWT cache lookups.",
                jwt.requests.sum(),
            ),
            Family::counter(
                "pgrst_jwt_cache_hits_total",
                "JWT cache lookups that found the token.",
                jwt.hits.sum(),
            ),
            Family::counter(
                "pgrst_jwt_cache_evictions_total",
                "Tokens evicted from the JWT cache.",
                jwt.evictions.sum(),
            ),
        ]
    }

    /// One sample per (method, status) answered so far.
    fn request_samples(&self) -> Vec<Sample> {
        self.requests()
            .iter()
            .map(|((method, status), n)| {
                Sample::labelled(format!("method=\"{method}\",status=\"{status}\""), n)
            })
            .collect()
    }

    /// The histogram's cumulative buckets, then its sum and count.
    fn duration_samples(&self) -> Vec<Sample> {
        let bucket = |le: String, value: u64| Sample {
            suffix: "_bucket",
            labels: format!("le=\"{le}\""),
            value: value.to_string(),
        };
        let mut per_bucket = [0u64; BUCKETS.len() + 1];
        for shard in self.shards.all() {
            for (n, counter) in per_bucket.iter_mut().zip(&shard.buckets) {
                *n += counter.load(Ordering::Relaxed);
            }
        }
        let mut cumulative = 0;
        let mut samples: Vec<Sample> = BUCKETS
            .iter()
            .zip(per_bucket)
            .map(|(bound, n)| {
                cumulative += n;
                bucket(bound.to_string(), cumulative)
            })
            .collect();
        let count = per_bucket.iter().sum();
        samples.push(bucket("+Inf".into(), count));
        let micros: u64 = self
            .shards
            .all()
            .map(|s| s.duration_micros.load(Ordering::Relaxed))
            .sum();
        let sum = micros as f64 / 1e6;
        samples.push(Sample::suffixed("_sum", sum));
        samples.push(Sample::suffixed("_count", count));
        samples
    }
}

/// A metric family of the exposition text: its HELP and TYPE lines, then its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<Sample>,
}

/// One line of a family: `{name}{suffix}{labels} {value}`.
struct Sample {
    suffix: &'static str,
    /// Inside the braces, without them; empty for none.
    labels: String,
    value: String,
}

impl Family {
    fn single(
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        value: impl Display,
    ) -> Self {
        Family {
            name,
            kind,
            help,
            samples: vec![Sample::suffixed("", value)],
        }
    }

    fn gauge(name: &'static str, help: &'static str, value: impl Display) -> Self {
        Family::single(name, "gauge", help, value)
    }

    fn counter(name: &'static str, help: &'static str, value: impl Display) -> Self {
        Family::single(name, "counter", help, value)
    }

    fn write(&self, out: &mut String) {
        let Family {
            name, kind, help, ..
        } = self;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for Sample {
            suffix,
            labels,
            value,
        } in &self.samples
        {
            let _ = match labels.is_empty() {
                true => writeln!(out, "{name}{suffix} {value}"),
                false => writeln!(out, "{name}{suffix}{{{labels}}} {value}"),
            };
        }
    }
}

impl Sample {
    fn suffixed(suffix: &'static str, value: impl Display) -> Self {
        Sample {
            suffix,
            labels: String::new(),
            value: value.to_string(),
        }
    }

    fn labelled(labels: impl Into<String>, value: impl Display) -> Self {
        Sample {
            suffix: "",
            labels: labels.into(),
            value: value.to_string(),
        }
    }
}

/// The standard `process_*` metrics of Prometheus' client libraries, from /proc: CPU
/// time, resident memory, descriptors open and allowed, start time. One that cannot be
/// read is left out.
fn process_families() -> Vec<Family> {
    let (ticks, page) = clock_ticks_and_page_size();
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat_fields(&stat);
    let field = |n: usize| fields.get(n).and_then(|v| v.parse::<f64>().ok());
    let cpu = field(11).zip(field(12)).map(|(u, s)| (u + s) / ticks);
    let rss = field(21).map(|pages| pages * page);
    let start = boot_time().zip(field(19)).map(|(b, t)| b + t / ticks);
    [
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
            open_fds(),
        ),
        (
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors.",
            max_fds(),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time since the Unix epoch.",
            start,
        ),
    ]
    .into_iter()
    .filter_map(|(name, kind, help, value)| Some(Family::single(name, kind, help, value?)))
    .collect()
}

fn clock_ticks_and_page_size() -> (f64, f64) {
    // SAFETY: sysconf only reads constants.
    unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
        )
    }
}

/// The fields of /proc/self/stat after the command name, which is in parentheses and
/// may hold spaces.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default()
}

/// When the machine booted, in seconds since the Unix epoch.
fn boot_time() -> Option<f64> {
    std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines().find_map(|l| {
            l.strip_prefix("btime ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
    })
}

fn open_fds() -> Option<f64> {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as f64)
        .ok()
}

fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct passed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label_so_the_counts_stay_bounded() {
        let metrics = Metrics::default();
        for i in 0..100 {
            metrics.request(&format!("FROB{i}"), 405, Duration::from_millis(1));
        }
        metrics.request("GET", 200, Duration::from_millis(1));
        let map = metrics.requests();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&("OTHER", 405)], 100);
        assert_eq!(map[&("GET", 200)], 1);
    }

    #[test]
    fn requests_counted_on_many_threads_add_up_in_one_histogram() {
        let metrics = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let metrics = metrics.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        metrics.request("GET", 200, Duration::from_micros(500 + i * 100));
                    }
                    metrics.request("POST", 201, Duration::from_secs(2));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let map = metrics.requests();
        assert_eq!(map[&("GET", 200)], 200);
        assert_eq!(map[&("POST", 201)], 20);
        let samples = metrics.duration_samples();
        let value = |labels: &str| {
            samples
                .iter()
                .find(|s| s.labels == labels)
                .map(|s| s.value.clone())
        };
        // 500-2400 us: 60 requests at or under 1 ms, all 200 GETs under 2.5 ms.
        assert_eq!(value("le=\"0.001\"").as_deref(), Some("60"));
        assert_eq!(value("le=\"0.0025\"").as_deref(), Some("200"));
        assert_eq!(value("le=\"1\"").as_deref(), Some("200"));
        assert_eq!(value("le=\"+Inf\"").as_deref(), Some("220"));
        let count = samples.iter().find(|s| s.suffix == "_count").unwrap();
        assert_eq!(count.value, "220");
    }
}
