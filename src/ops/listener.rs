//! The NOTIFY listener on db-channel: reloads on demand, reconnecting with backoff.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_postgres::AsyncMessage;

use super::state::AppState;
use crate::db::tls::{Connection, Connector};

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
            config.db_channel_enabled.then(|| config.db_channel.clone())
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
            Ok((client, connection)) => {
                let (driver, mut payloads) = forward_notifications(connection);
                let listen = format!("LISTEN {}", crate::sql::quote_ident(&channel));
                if client.batch_execute(&listen).await.is_ok() {
                    if first {
                        crate::lifecycle!("listening for notifications on channel {channel}");
                    }
                    delay = Duration::from_secs(1);
                    if !first {
                        super::reload::reload_schema(&state, &pg).await;
                    }
                    first = false;
                    reload_on_notifications(&state, &pg, &mut payloads).await;
                    super::reload::connection_lost(&state);
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

/// Drives the listener's connection in a task that sends the payload of each
/// notification to the receiver returned; the receiver ends when the connection does.
fn forward_notifications(
    mut connection: Connection,
) -> (JoinHandle<()>, UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    (driver, rx)
}

/// Reloads what the notifications ask for, until the connection ends.
async fn reload_on_notifications(
    state: &AppState,
    pg: &Connector,
    payloads: &mut UnboundedReceiver<String>,
) {
    while let Some(first) = payloads.recv().await {
        let (mut schema, config) = fold_burst(first, payloads);
        if config && super::reload::reload_config(state, pg).await {
            schema = false;
        }
        if schema {
            super::reload::reload_schema(state, pg).await;
        }
    }
}

/// Whether `first` and the notifications queued behind it ask for a schema reload and a
/// configuration reload. A burst of notifications (a migration sending one per
/// statement) is one reload: everything queued meanwhile is folded into it, so a burst
/// costs at most two reloads.
fn fold_burst(first: String, payloads: &mut UnboundedReceiver<String>) -> (bool, bool) {
    let (mut schema, mut config) = (false, false);
    let mut next = Some(first);
    while let Some(payload) = next {
        match payload.trim() {
            "" | "reload schema" => schema = true,
            "reload config" => config = true,
            other => tracing::debug!("ignored notification {other:?}"),
        }
        next = payloads.try_recv().ok();
    }
    (schema, config)
}
