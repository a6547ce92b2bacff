//! HTTP: one accept loop for the API and admin servers, the request chain, responses,
//! CORS and the lenient request-line rewriter.

use std::convert::Infallible;
use std::sync::Arc;

use hyper_util::rt::TokioIo;

use crate::ops::state::AppState;

pub mod accept;
pub mod admin;
pub mod body;
pub mod cors;
pub mod handler;
pub mod head_clock;
pub mod lenient;
pub mod response;
mod run;
pub mod templates;
pub mod waiting;

pub use accept::Listener;
pub use response::error_response;

/// Serves until `shutdown` resolves.
pub async fn serve(
    state: Arc<AppState>,
    listener: Listener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let max_connections = state.limits.max_connections;
    accept::accept_loop("API server", &listener, max_connections, shutdown, |a| {
        spawn_connection(state.clone(), a, &graceful)
    })
    .await;
    // Stop accepting, let requests in flight finish (idle keep-alive connections close
    // at once), but do not wait forever on a stuck client.
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("requests still in flight after 30 s; stopping anyway");
        }
    }
}

fn spawn_connection(
    state: Arc<AppState>,
    accepted: accept::Accepted,
    graceful: &hyper_util::server::graceful::GracefulShutdown,
) {
    let accept::Accepted {
        stream,
        peer,
        permit,
    } = accepted;
    let header_timeout = state.limits.header_read_timeout;
    let watcher = graceful.watcher();
    tokio::spawn(async move {
        accept::serve_http1(header_timeout, |builder, clock| {
            let clock = clock.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let answering = clock.answering();
                // Boxed, built in place: hyper moves each request's future into its slot
                // by value, and this one is 1.3 KB (mostly `handle`'s later states),
                // copied whole on every request (callgrind by-pk: memcpy under hyper's
                // dispatcher wrote 44 cache lines per request that were not in L1, 34
                // after).
                boxed!(async move {
                    let mut response = handler::handle(&state, req, peer).await;
                    // A streamed body is still being answered until hyper drops it.
                    response.body_mut().hold(answering);
                    Ok::<_, Infallible>(response)
                })
            });
            let stream = TokioIo::new(lenient::LenientStream::new(stream));
            watcher.watch(builder.serve_connection(stream, service))
        })
        .await;
        drop(permit);
    });
}
