//! The one accept loop of the API and admin servers: a cap on open connections, backoff
//! when accepting fails (out of file descriptors), and connection settings that do not
//! let a silent client hold a socket forever.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::head_clock::{until_head_timeout, HeadClock};

/// Where a server listens: TCP, or a Unix domain socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub use crate::net::Stream;

/// One accepted connection with what it holds: its peer and its place under the cap
/// (released when the connection task drops it).
pub struct Accepted {
    pub stream: Stream,
    pub peer: Option<SocketAddr>,
    pub permit: OwnedSemaphorePermit,
}

/// The first delay after a failed accept, doubled on each further failure up to the
/// maximum: out of descriptors, retrying at once spun a core at 100 %.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// A persistent accept failure is logged once per interval (with how many were not),
/// instead of about 20 MB/s of identical lines.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Listener {
    async fn accept(&self) -> io::Result<(Stream, Option<SocketAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), Some(peer)))
            }
            Listener::Unix(l) => l.accept().await.map(|(s, _)| (Stream::Unix(s), None)),
        }
    }
}

/// Accepts connections until `shutdown` resolves, handing each to `serve`. At most
/// `max_connections` are open at once: past that, new clients wait in the listen backlog.
pub async fn accept_loop(
    what: &str,
    listener: &Listener,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
    mut serve: impl FnMut(Accepted),
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut failures = FailureLog::default();
    loop {
        let next = async {
            let permit = slots.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, accepted) = tokio::select! {
            next = next => next,
            _ = &mut shutdown => return,
        };
        let Ok(permit) = permit else { return };
        match accepted {
            Ok((stream, peer)) => {
                failures.reset();
                serve(Accepted {
                    stream,
                    peer,
                    permit,
                });
            }
            Err(e) => {
                drop(permit);
                let delay = failures.record(what, &e);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = &mut shutdown => return,
                }
            }
        }
    }
}

/// Consecutive accept failures: the backoff they call for and when one was last logged.
#[derive(Default)]
struct FailureLog {
    consecutive: u32,
    last_logged: Option<Instant>,
    unlogged: u64,
}

impl FailureLog {
    fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// Notes a failure, logs it unless one was logged within LOG_INTERVAL, and returns
    /// how long to wait before accepting again.
    fn record(&mut self, what: &str, e: &io::Error) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        let due = self.last_logged.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
        if due {
            match self.unlogged {
                0 => tracing::error!("{what}: accept failed: {e}"),
                n => tracing::error!("{what}: accept failed: {e} ({n} more since the last report)"),
            }
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        backoff(self.consecutive)
    }
}

fn backoff(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime and nginx's
/// worker_rlimit_nofile do) and returns the limit in effect.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Serves one HTTP/1 connection: `serve` gets hyper's settings and the connection's head
/// clock (a request holds an `Answering` from it until its answer is dropped), and returns
/// the connection's future, which runs until it ends or has waited `header_timeout` for a
/// request head (see `head_clock`).
pub async fn serve_http1<F: std::future::Future>(
    header_timeout: Duration,
    serve: impl FnOnce(&hyper::server::conn::http1::Builder, &Arc<HeadClock>) -> F,
) {
    let clock = HeadClock::new();
    let builder = hyper::server::conn::http1::Builder::new();
    let connection = serve(&builder, &clock);
    until_head_timeout(connection, &clock, header_timeout).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_second() {
        assert_eq!(backoff(1), Duration::from_millis(10));
        assert_eq!(backoff(2), Duration::from_millis(20));
        assert_eq!(backoff(7), Duration::from_millis(640));
        assert_eq!(backoff(8), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_persistent_failure_is_logged_once_per_interval() {
        let mut log = FailureLog::default();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        for _ in 0..1000 {
            log.record("test", &e);
        }
        assert_eq!(log.unlogged, 999);
        assert_eq!(log.consecutive, 1000);
        log.reset();
        assert_eq!(log.consecutive, 0);
    }
}
