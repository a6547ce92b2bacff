//! While start-up waits for the database: the listeners are already bound and answer
//! every API request with 503 PGRST002 and the seconds until the next attempt in
//! Retry-After; the admin server answers /live with 200 and the rest with 503.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::body::ApiBody;
use bytes::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::accept::{self, Accepted, Listener};
use crate::error::ApiError;

/// Connections at once while waiting: enough for health checks and retrying clients.
const WAITING_MAX_CONNECTIONS: usize = 256;

/// The listeners, served with 503s until [`Waiting::stop`] hands them back.
pub struct Waiting {
    next_attempt: Arc<Mutex<Instant>>,
    stop: watch::Sender<bool>,
    api: JoinHandle<Listener>,
    admin: Option<JoinHandle<Listener>>,
}

impl Waiting {
    pub fn start(api: Listener, admin: Option<Listener>) -> Waiting {
        let next_attempt = Arc::new(Mutex::new(Instant::now()));
        let (stop, stopped) = watch::channel(false);
        let serve = |listener, admin: bool| {
            tokio::spawn(serve_unavailable(
                listener,
                admin,
                next_attempt.clone(),
                stopped.clone(),
            ))
        };
        let api = serve(api, false);
        let admin = admin.map(|l| serve(l, true));
        Waiting {
            next_attempt,
            stop,
            api,
            admin,
        }
    }

    /// The next attempt is `delay` from now.
    pub fn retry_in(&self, delay: Duration) {
        if let Ok(mut at) = self.next_attempt.lock() {
            *at = Instant::now() + delay;
        }
    }

    /// Stops answering and returns the listeners.
    pub async fn stop(self) -> (Listener, Option<Listener>) {
        let _ = self.stop.send(true);
        let api = self
            .api
            .await
            .expect("the waiting API server does not panic");
        let admin = match self.admin {
            Some(task) => Some(task.await.expect("the waiting admin server does not panic")),
            None => None,
        };
        (api, admin)
    }
}

async fn serve_unavailable(
    listener: Listener,
    admin: bool,
    next_attempt: Arc<Mutex<Instant>>,
    mut stopped: watch::Receiver<bool>,
) -> Listener {
    let until_stopped = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let what = if admin {
        "admin server (waiting for the database)"
    } else {
        "API server (waiting for the database)"
    };
    accept::accept_loop(
        what,
        &listener,
        WAITING_MAX_CONNECTIONS,
        until_stopped,
        |a| spawn_unavailable(a, admin, next_attempt.clone()),
    )
    .await;
    listener
}

/// One connection, one answer: keep-alive is off so that a client's next request comes
/// to the real server once it is up.
fn spawn_unavailable(accepted: Accepted, admin: bool, next_attempt: Arc<Mutex<Instant>>) {
    tokio::spawn(async move {
        accept::serve_http1(Duration::from_secs(10), |builder, _| {
            let service = hyper::service::service_fn(move |req| {
                let response = unavailable(&req, admin, &next_attempt);
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = builder.clone();
            builder.keep_alive(false);
            builder.serve_connection(TokioIo::new(accepted.stream), service)
        })
        .await;
        drop(accepted.permit);
    });
}

fn unavailable<B>(
    req: &Request<B>,
    admin: bool,
    next_attempt: &Mutex<Instant>,
) -> super::response::Resp {
    if admin && req.uri().path() == "/live" {
        return Response::new(ApiBody::whole(Bytes::new()));
    }
    let mut r = if admin {
        let mut r = Response::new(ApiBody::whole(Bytes::new()));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r
    } else {
        super::error_response(&ApiError::SchemaCacheNotReady, false)
    };
    let seconds = next_attempt
        .lock()
        .map(|at| at.saturating_duration_since(Instant::now()))
        .unwrap_or_default()
        .as_secs_f64()
        .ceil() as u64;
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(seconds),
    );
    r
}
