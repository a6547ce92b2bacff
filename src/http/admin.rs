//! The admin server: `/live`, `/ready`, `/metrics`, `/config` and `/schema_cache`, on
//! its own listener and connection cap.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::ops::state::AppState;

async fn admin(state: Arc<AppState>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let status = match req.uri().path() {
        "/live" => StatusCode::OK,
        "/ready" => {
            let ready = tokio::time::timeout(Duration::from_secs(2), state.pool.get()).await;
            if matches!(ready, Ok(Ok(_))) {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
        "/metrics" => {
            let mut text = state.metrics.render(state.pool.status());
            text.push_str(&state.replicas.metrics_text());
            return admin_body(text, "text/plain; version=0.0.4");
        }
        // Off unless admin-server-config-enabled, and secrets masked even then (PostgREST
        // dropped /config in v13 because it printed them).
        "/config" if state.config().admin_server_config_enabled => {
            return admin_body(state.config().dump_redacted(), "text/plain; charset=utf-8");
        }
        "/schema_cache" => {
            let json = serde_json::to_string(&*state.snapshot().schema).unwrap_or_default();
            return admin_body(json, "application/json; charset=utf-8");
        }
        _ => StatusCode::NOT_FOUND,
    };
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn admin_body(text: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// Open admin connections at once: health checks and scrapes, kept apart from the API's
/// cap so that a saturated API still answers /live and /ready.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Serves /live, /ready, /metrics, /config and /schema_cache on the admin listener (TCP
/// or admin-server-unix-socket).
pub async fn serve_admin(state: Arc<AppState>, listener: super::Listener) {
    let forever = std::future::pending::<()>();
    super::accept::accept_loop(
        "admin server",
        &listener,
        ADMIN_MAX_CONNECTIONS,
        forever,
        |a| spawn_admin(state.clone(), a),
    )
    .await;
}

fn spawn_admin(state: Arc<AppState>, accepted: super::accept::Accepted) {
    let header_timeout = state.limits.header_read_timeout;
    tokio::spawn(async move {
        super::accept::serve_http1(header_timeout, |builder, clock| {
            let clock = clock.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let answering = clock.answering();
                async move {
                    let response = admin(state, req).await;
                    drop(answering);
                    Ok::<_, Infallible>(response)
                }
            });
            builder.serve_connection(TokioIo::new(accepted.stream), service)
        })
        .await;
        drop(accepted.permit);
    });
}
