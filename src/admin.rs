//! Schema cache reloads (SIGUSR1, `NOTIFY pgrst, 'reload schema'`) and the admin server
//! (`/live`, `/ready`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_postgres::AsyncMessage;

use crate::db::tls::Connector;
use crate::http::AppState;

/// Loads a new schema cache and swaps it in; requests in flight keep the old snapshot.
/// On failure the old cache stays and the reason is logged.
pub async fn reload_schema(state: &AppState, pg: &Connector) {
    match crate::server::load_schema(pg, &state.config().db_schemas).await {
        Ok(cache) => {
            crate::lifecycle!("schema cache reloaded: {}", cache.summary());
            state.metrics.schema_load(Some(cache.load_time));
            state.schema.store(Arc::new(cache));
        }
        Err(e) => {
            state.metrics.schema_load(None);
            tracing::error!("schema cache reload failed, keeping the previous one: {e}")
        }
    }
}

/// Reads the configuration again (file, in-process and in-database settings; the
/// environment of a running process cannot change) and swaps it in with a new JWT
/// verifier. Keys fixed at start-up (db-uri, db-pool, server-host, server-port,
/// admin-server-*) keep their effect. A failed reload keeps the previous configuration.
/// Returns whether the schema cache was reloaded too (db-schemas changed).
pub async fn reload_config(state: &AppState, pg: &Connector) -> bool {
    let loaded = async {
        let file_and_env = state.config_source.load()?;
        let (mut client, conn) = crate::server::connect_once(pg).await?;
        let config = crate::server::with_db_config(&mut client, file_and_env).await;
        drop(client);
        let _ = conn.await;
        let config = config?;
        let auth = crate::server::authenticator(&config)?;
        Ok::<_, String>((config, auth))
    }
    .await;
    match loaded {
        Ok((config, auth)) => {
            let schemas_changed = config.db_schemas != state.config().db_schemas;
            state.auth.store(auth.map(Arc::new));
            crate::server::set_log_level(config.log_level);
            state.config.store(Arc::new(config));
            crate::lifecycle!("configuration reloaded");
            if schemas_changed {
                reload_schema(state, pg).await;
            }
            // Last: the listener may be restarted on another channel from here on.
            state.config_reloaded.notify_one();
            schemas_changed
        }
        Err(e) => {
            tracing::error!("configuration reload failed, keeping the previous one: {e}");
            false
        }
    }
}

/// Reloads the schema cache on SIGUSR1 and the configuration on SIGUSR2.
pub async fn reload_on_signal(state: Arc<AppState>, pg: Connector) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        return;
    };
    loop {
        tokio::select! {
            Some(()) = usr1.recv() => reload_schema(&state, &pg).await,
            Some(()) = usr2.recv() => {
                reload_config(&state, &pg).await;
            }
            else => return,
        }
    }
}

/// The database connection was lost. With db-pool-automatic-recovery off, pgrest exits
/// (status 1, after a moment so that the response in flight still goes out) and leaves
/// restarting to its supervisor; otherwise the pool and the listener recover by
/// themselves.
pub fn connection_lost(state: &AppState) {
    if state.config().flag("db-pool-automatic-recovery") {
        return;
    }
    tracing::error!("lost the database connection and db-pool-automatic-recovery is off: exiting");
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::process::exit(1);
    });
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps the NOTIFY listener on db-channel while db-channel-enabled, following config
/// reloads: a new channel restarts it there, disabling stops it.
pub async fn follow_channel(state: Arc<AppState>, pg: Connector) {
    let mut current: Option<(String, AbortOnDrop)> = None;
    loop {
        let wanted = {
            let config = state.config();
            config
                .flag("db-channel-enabled")
                .then(|| config.value("db-channel").unwrap_or("pgrst").to_string())
        };
        let running = current.as_ref().map(|(channel, _)| channel.clone());
        if wanted != running {
            if running.is_some() {
                tracing::info!("db-channel changed: listening on {wanted:?} now");
            }
            current = wanted.map(|channel| {
                let task = tokio::spawn(listen(state.clone(), pg.clone(), channel.clone()));
                (channel, AbortOnDrop(task))
            });
        }
        state.config_reloaded.notified().await;
    }
}

/// LISTENs on db-channel and reloads on `reload schema` (or an empty payload). The
/// connection is re-established with capped exponential backoff, and the cache reloaded
/// after each reconnection since the schema may have changed meanwhile.
async fn listen(state: Arc<AppState>, pg: Connector, channel: String) {
    // With several hosts in db-uri (a primary and replicas) the listener wants the
    // primary, where DDL and NOTIFY happen, whatever the pool connects to.
    let listener_pg = pg.with_config(|c| {
        c.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    });
    let mut delay = Duration::from_secs(1);
    let mut first = true;
    loop {
        match listener_pg.connect().await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(n) = message {
                            let _ = tx.send(n.payload().to_string());
                        }
                    }
                });
                let listen = format!("LISTEN {}", crate::sql::quote_ident(&channel));
                if client.batch_execute(&listen).await.is_ok() {
                    if first {
                        crate::lifecycle!("listening for notifications on channel {channel}");
                    }
                    delay = Duration::from_secs(1);
                    if !first {
                        reload_schema(&state, &pg).await;
                    }
                    first = false;
                    while let Some(first) = rx.recv().await {
                        // A burst of notifications (a migration sending one per
                        // statement) is one reload: everything queued meanwhile is
                        // folded into it, so a burst costs at most two reloads.
                        let (mut schema, mut config) = (false, false);
                        let mut next = Some(first);
                        while let Some(payload) = next {
                            match payload.trim() {
                                "" | "reload schema" => schema = true,
                                "reload config" => config = true,
                                other => tracing::debug!("ignored notification {other:?}"),
                            }
                            next = rx.try_recv().ok();
                        }
                        if config && reload_config(&state, &pg).await {
                            schema = false;
                        }
                        if schema {
                            reload_schema(&state, &pg).await;
                        }
                    }
                    connection_lost(&state);
                    tracing::error!("lost the {channel} listener connection; reconnecting");
                }
                driver.abort();
            }
            Err(e) => tracing::error!(
                "cannot connect the {channel} listener: {}; retrying in {}s",
                crate::db::describe(&e),
                delay.as_secs()
            ),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(32));
    }
}

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
            let text = state.metrics.render(state.pool.status());
            return admin_body(text, "text/plain; version=0.0.4");
        }
        // Off unless admin-server-config-enabled, and secrets masked even then (PostgREST
        // dropped /config in v13 because it printed them).
        "/config" if state.config().flag("admin-server-config-enabled") => {
            return admin_body(state.config().dump_redacted(), "text/plain; charset=utf-8");
        }
        "/schema_cache" => {
            let json = serde_json::to_string(&*state.schema.load_full()).unwrap_or_default();
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
pub async fn serve_admin(state: Arc<AppState>, listener: crate::http::Listener) {
    let forever = std::future::pending::<()>();
    crate::http::accept::accept_loop(
        "admin server",
        &listener,
        ADMIN_MAX_CONNECTIONS,
        forever,
        |a| spawn_admin(state.clone(), a),
    )
    .await;
}

fn spawn_admin(state: Arc<AppState>, accepted: crate::http::accept::Accepted) {
    let builder = crate::http::accept::http1_builder(state.limits.header_read_timeout);
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(admin(state, req).await) }
        });
        let _ = builder
            .serve_connection(TokioIo::new(accepted.stream), service)
            .await;
        drop(accepted.permit);
    });
}
