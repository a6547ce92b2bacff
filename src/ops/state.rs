//! The running server's state, and the snapshot one request works with.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::config::{Config, ConfigSource};
use crate::db;
use crate::http::templates::{CallTemplate, InsertTemplate, ReadTemplate, Templates};
use crate::schema::SchemaCache;

/// What one request works with from start to end: the configuration, the JWT verifier
/// built from it, the schema cache and the read templates learnt against them. Reloads
/// swap in a new snapshot (with no templates); requests in flight keep theirs, so no
/// request mixes two configurations or two schema caches.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// `None` when no jwt-secret is configured.
    pub auth: Option<Arc<Authenticator>>,
    pub schema: Arc<SchemaCache>,
    /// Read statements by request shape, learnt against this snapshot.
    pub reads: Templates<ReadTemplate>,
    /// Insert statements by request shape and payload keys.
    pub inserts: Templates<InsertTemplate>,
    /// Call statements (POST with a JSON object) by request shape and payload keys.
    pub calls: Templates<CallTemplate>,
}

/// What one client may take of the server, fixed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open API connections at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A connection that has not sent a whole request head this long after it opened, or
    /// after its previous response, is closed; a body that stalls this long is refused.
    pub header_read_timeout: std::time::Duration,
    /// The largest request body read, in bytes.
    pub max_body_size: u64,
}

pub struct AppState {
    live: ArcSwap<Snapshot>,
    pub config_source: ConfigSource,
    pub pool: db::Pool,
    /// db-replica-uris' standbys, for reads (none unless configured).
    pub replicas: db::replicas::Replicas,
    pub metrics: super::metrics::Metrics,
    /// The role pgrest connects as (session_user); no token may name it.
    pub authenticator: String,
    /// Bounds fixed at start-up.
    pub limits: Limits,
    /// Signalled after each configuration reload (the NOTIFY listener follows db-channel).
    pub config_reloaded: tokio::sync::Notify,
}

/// What [`AppState::new`] takes besides the first snapshot.
pub struct Fixed {
    pub config_source: ConfigSource,
    pub pool: db::Pool,
    pub replicas: db::replicas::Replicas,
    pub metrics: super::metrics::Metrics,
    pub authenticator: String,
    pub limits: Limits,
}

impl AppState {
    pub fn new(first: Snapshot, fixed: Fixed) -> AppState {
        AppState {
            live: ArcSwap::from_pointee(first),
            config_source: fixed.config_source,
            pool: fixed.pool,
            replicas: fixed.replicas,
            metrics: fixed.metrics,
            authenticator: fixed.authenticator,
            limits: fixed.limits,
            config_reloaded: tokio::sync::Notify::new(),
        }
    }

    /// The snapshot a request takes at its start and keeps to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// The current configuration, for work outside requests.
    pub fn config(&self) -> Arc<Config> {
        self.live.load().config.clone()
    }

    /// Swaps in a new schema cache, keeping the configuration.
    pub fn set_schema(&self, schema: SchemaCache) {
        let schema = Arc::new(schema);
        self.live.rcu(|now| Snapshot {
            config: now.config.clone(),
            auth: now.auth.clone(),
            schema: schema.clone(),
            reads: Templates::default(),
            inserts: Templates::default(),
            calls: Templates::default(),
        });
    }

    /// Swaps in a new configuration and its JWT verifier, keeping the schema cache.
    pub fn set_config(&self, config: Config, auth: Option<Authenticator>) {
        let (config, auth) = (Arc::new(config), auth.map(Arc::new));
        self.live.rcu(|now| Snapshot {
            config: config.clone(),
            auth: auth.clone(),
            schema: now.schema.clone(),
            reads: Templates::default(),
            inserts: Templates::default(),
            calls: Templates::default(),
        });
    }
}
