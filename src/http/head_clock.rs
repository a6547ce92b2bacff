//! The header read timeout (server-header-read-timeout), kept per connection rather than
//! per request: a connection that has waited that long for a request head, idle
//! keep-alive included, is closed.
//!
//! hyper can do this itself (`header_read_timeout` with a timer), but it makes a timer for
//! every request head: an allocation, and a registration in and a removal from tokio's
//! timer wheel, both under the wheel's one lock, which the two cores then take turns
//! owning. That was 6 % of pgrest's CPU per by-pk read (81.5 -> 76.8 µs, alternating
//! 8-second rounds). Here a request costs two stores to the connection's own clock and a
//! clock read; the connection's one timer wakes at most once per timeout period.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// One connection's clock: since when it has waited for a request head, unless a request
/// is being answered.
pub struct HeadClock {
    opened: Instant,
    /// Requests being answered (from their head until their response body is dropped).
    answering: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last answer: the wait for the next
    /// head started then.
    waiting_since_ms: AtomicU64,
}

/// A request being answered: the head clock stands still until this is dropped.
pub struct Answering(Arc<HeadClock>);

impl Drop for Answering {
    fn drop(&mut self) {
        let clock = &self.0;
        let now = clock.opened.elapsed().as_millis() as u64;
        clock.waiting_since_ms.store(now, Ordering::Relaxed);
        clock.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HeadClock {
    pub fn new() -> Arc<HeadClock> {
        Arc::new(HeadClock {
            opened: Instant::now(),
            answering: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(0),
        })
    }

    /// A request head has arrived: the clock stops until the answer is dropped.
    pub fn answering(self: &Arc<Self>) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        Answering(self.clone())
    }

    /// Resolves once the connection has waited `limit` for a request head.
    async fn expired(&self, limit: Duration) {
        let mut deadline = self.opened + limit;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.answering.load(Ordering::Relaxed) > 0 {
                deadline = Instant::now() + limit;
                continue;
            }
            let since = Duration::from_millis(self.waiting_since_ms.load(Ordering::Relaxed));
            let due = self.opened + since + limit;
            if due <= Instant::now() {
                return;
            }
            deadline = due;
        }
    }
}

/// Runs `connection` until it ends or has waited `limit` for a request head; dropping it
/// then closes the socket.
pub async fn until_head_timeout<F: Future>(connection: F, clock: &HeadClock, limit: Duration) {
    tokio::select! {
        biased;
        _ = connection => {}
        _ = clock.expired(limit) => {}
    }
}
