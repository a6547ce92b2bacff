//! Start-up: connect, load the schema cache, bind, serve; and the demo mode.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::db;
use crate::db::startup::{
    connect_error, connect_once, load_schema_on, on_one_task, with_db_config, worth_retrying,
};
use crate::db::tls::Connector;
use crate::http;
use crate::ops::logging::LIFECYCLE;
use crate::ops::state::{AppState, Fixed, Limits, Snapshot};
use crate::pgcluster::TempCluster;
use crate::schema::SchemaCache;

/// The addresses `server-host` stands for (PostgREST's special values included).
fn bind_host(host: &str) -> &str {
    match host {
        "!4" | "*4" => "0.0.0.0",
        "*" | "*6" | "!6" => "::",
        other => other,
    }
}

/// Descriptors kept out of the API's connection cap: the pool, the listener and
/// start-up connections, the admin server's connections, files.
const RESERVED_DESCRIPTORS: usize = 128;

/// The bounds one client can reach. server-max-connections 0 takes what the open-file
/// limit (raised to its hard limit) leaves after the pool and a reserve, so the accept
/// loop waits at the cap instead of failing with EMFILE.
fn limits(config: &Config) -> Limits {
    let open_files = usize::try_from(http::accept::raise_open_file_limit()).unwrap_or(usize::MAX);
    let automatic = open_files
        .saturating_sub(config.db_pool + RESERVED_DESCRIPTORS)
        .max(16);
    let max_connections = match config.server_max_connections {
        0 => automatic,
        n => n,
    };
    tracing::info!("accepting at most {max_connections} connections at once");
    Limits {
        max_connections,
        header_read_timeout: Duration::from_secs(config.server_header_read_timeout),
        max_body_size: config.server_max_body_size,
    }
}

/// The connector for `config`'s db-uri (PostgREST's `postgresql://` when unset).
fn connector_for(config: &Config) -> Result<Connector, String> {
    let uri = config.db_uri.as_deref().unwrap_or("postgresql://");
    Connector::from_uri(uri)
}

/// `--dump-config`: the configuration with the in-database settings laid over it when the
/// database answers within 5 s (as it is read at start-up); otherwise file and environment.
pub async fn effective_config(config: Config) -> Config {
    let attempt = async {
        let pg = connector_for(&config)?;
        let (mut client, conn) = connect_once(&pg).await?;
        let with_db = with_db_config(&mut client, config.clone()).await;
        drop(client);
        let _ = conn.await;
        with_db
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(with_db)) => with_db,
        Ok(Err(e)) => {
            eprintln!("pgrest: without the in-database settings: {e}");
            config
        }
        Err(_) => {
            eprintln!(
                "pgrest: without the in-database settings: the database did not answer in 5 s"
            );
            config
        }
    }
}

/// `--dump-schema`: the schema cache of the configured schemas, as JSON, read as start-up
/// reads it.
pub async fn schema_json(config: Config) -> Result<String, String> {
    let pg = connector_for(&config)?;
    let ready = read_database(&pg, config)
        .await
        .map_err(|(NotReady::Retry(e) | NotReady::Fatal(e))| e)?;
    serde_json::to_string(&ready.cache).map_err(|e| e.to_string())
}

/// `--ready`: GET /ready on the admin server (admin-server-port or
/// admin-server-unix-socket, wildcard hosts asked on loopback); Ok when it answers 200.
pub fn ask_ready(config: &Config) -> Result<(), String> {
    use std::io::{Read, Write};
    let request = b"GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let timeout = Some(Duration::from_secs(5));
    let mut answer = Vec::new();
    let fail = |e: std::io::Error| format!("cannot ask the admin server: {e}");
    match (
        config.admin_server_unix_socket.as_deref(),
        config.admin_server_port,
    ) {
        (Some(path), _) => {
            let mut s = std::os::unix::net::UnixStream::connect(path).map_err(fail)?;
            s.set_read_timeout(timeout).map_err(fail)?;
            s.write_all(request).map_err(fail)?;
            let _ = s.read_to_end(&mut answer);
        }
        (None, Some(port)) => {
            let host = match config.admin_server_host.as_deref().map(bind_host) {
                None | Some("0.0.0.0") => "127.0.0.1",
                Some("::") => "::1",
                Some(h) => h,
            };
            let mut s = std::net::TcpStream::connect((host, port)).map_err(fail)?;
            s.set_read_timeout(timeout).map_err(fail)?;
            s.write_all(request).map_err(fail)?;
            let _ = s.read_to_end(&mut answer);
        }
        (None, None) => {
            return Err("--ready needs admin-server-port or admin-server-unix-socket".into())
        }
    }
    let status_line = String::from_utf8_lossy(&answer);
    match status_line.split(' ').nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("not ready (admin server answered {code})")),
        None => Err("not ready (no answer from the admin server)".into()),
    }
}

/// The role pgrest's connections log in as, and the server's version.
async fn session_user(client: &tokio_postgres::Client) -> Result<(String, String), String> {
    let row = client
        .query_one(
            "SELECT session_user::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read the session user: {}", db::describe(&e)))?;
    Ok((row.get(0), row.get(1)))
}

/// A running server: its address and a handle to stop it.
pub struct Running {
    /// The TCP address, `None` when serving on a Unix socket.
    pub addr: Option<SocketAddr>,
    /// The Unix socket path, removed again on shutdown.
    pub socket: Option<String>,
    /// admin-server-unix-socket, removed too.
    pub admin_socket: Option<String>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub done: tokio::task::JoinHandle<()>,
}

/// Connects, loads the schema cache and starts serving in the background.
pub async fn start(source: crate::config::ConfigSource) -> Result<Running, String> {
    let config = source.load()?;
    // Unset: PostgREST's default, which libpq's environment completes.
    let uri = config
        .db_uri
        .clone()
        .unwrap_or_else(|| "postgresql://".to_string());
    let pg = Connector::from_uri(&uri)?;
    // The configuration is valid: from here on, say what happens.
    crate::lifecycle!("starting pgrest {}", env!("CARGO_PKG_VERSION"));
    for warning in config.unknown_key_warnings() {
        tracing::warn!(target: LIFECYCLE, "{warning}");
    }
    let host = bind_host(&config.server_host).to_string();
    let (listener, addr, admin_listener, ready) = read_and_bind(&pg, config, &host).await?;
    let state = app_state(source, &pg, ready)?;
    tokio::spawn(crate::ops::reload::reload_on_signal(
        state.clone(),
        pg.clone(),
    ));
    let notifications = tokio::spawn(crate::ops::listener::follow_channel(
        state.clone(),
        pg.clone(),
    ));
    if let Some(listener) = admin_listener {
        tokio::spawn(crate::http::admin::serve_admin(state.clone(), listener));
    }
    let socket = state.config().server_unix_socket.clone();
    let admin_socket = state.config().admin_server_unix_socket.clone();
    let (stop, done) = serve_in_background(state, listener, notifications);
    Ok(Running {
        addr,
        socket,
        admin_socket,
        stop,
        done,
    })
}

/// Reads the database and binds the API's and the admin server's listeners.
async fn read_and_bind(
    pg: &Connector,
    config: Config,
    host: &str,
) -> Result<
    (
        http::Listener,
        Option<SocketAddr>,
        Option<http::Listener>,
        Ready,
    ),
    String,
> {
    // The database is read before binding, so that a port that accepts means a server that
    // is ready; only when it is not up yet are the listeners bound first, to answer 503.
    let first = read_database(pg, config.clone()).await;
    let recover = config.db_pool_automatic_recovery;
    let first = match first {
        Ok(ready) => Ok(ready),
        Err(NotReady::Retry(e)) if recover => Err(e),
        Err(NotReady::Retry(e) | NotReady::Fatal(e)) => return Err(e),
    };
    let (listener, addr) = bind_api(&config, host).await?;
    let admin_listener = bind_admin(&config, host).await?;
    let (listener, admin_listener, ready) = match first {
        Ok(ready) => (listener, admin_listener, ready),
        Err(reason) => wait_for_database(pg, config, listener, admin_listener, reason).await?,
    };
    Ok((listener, addr, admin_listener, ready))
}

/// The server's state from what start-up read: the first snapshot, the pool, metrics and
/// limits.
fn app_state(
    source: crate::config::ConfigSource,
    pg: &Connector,
    ready: Ready,
) -> Result<Arc<AppState>, String> {
    let Ready {
        config,
        auth,
        cache,
        authenticator,
    } = ready;
    crate::lifecycle!("schema cache: {}", cache.summary());
    crate::ops::reload::return_freed_memory();
    crate::lifecycle!(
        "connection pool: up to {} connections to the database",
        config.db_pool
    );
    let pool_settings = || db::PoolSettings {
        size: config.db_pool,
        acquisition_timeout: Duration::from_secs(config.db_pool_acquisition_timeout),
        max_idletime: Duration::from_secs(config.db_pool_max_idletime),
        max_lifetime: Duration::from_secs(config.db_pool_max_lifetime),
    };
    let pool = db::make_pool(pg.clone(), &pool_settings())?;
    tokio::spawn(db::retire_idle_connections(pool.clone(), pool_settings()));
    let replicas = replicas(&config)?;
    let limits = limits(&config);
    let metrics = crate::ops::metrics::Metrics::default();
    metrics.schema_load(Some(cache.load_time));
    let first = Snapshot {
        config: Arc::new(config),
        auth: auth.map(Arc::new),
        schema: Arc::new(cache),
        reads: Default::default(),
        inserts: Default::default(),
        calls: Default::default(),
    };
    let fixed = Fixed {
        config_source: source,
        pool,
        replicas,
        metrics,
        authenticator,
        limits,
    };
    Ok(Arc::new(AppState::new(first, fixed)))
}

/// db-replica-uris' standbys, each with a pool of db-replica-pool connections; read at
/// start-up only (a reload keeps them).
fn replicas(config: &Config) -> Result<db::replicas::Replicas, String> {
    if config.db_replica_uris.is_empty() {
        return Ok(db::replicas::Replicas::default());
    }
    crate::lifecycle!(
        "read replicas: {} standby(s), up to {} connections each, lag bound {} ms",
        config.db_replica_uris.len(),
        config.db_replica_pool,
        config.db_replica_max_lag
    );
    let settings = || db::PoolSettings {
        size: config.db_replica_pool,
        acquisition_timeout: Duration::from_secs(config.db_pool_acquisition_timeout),
        max_idletime: Duration::from_secs(config.db_pool_max_idletime),
        max_lifetime: Duration::from_secs(config.db_pool_max_lifetime),
    };
    let max_lag = Duration::from_millis(config.db_replica_max_lag);
    db::replicas::Replicas::start(&config.db_replica_uris, settings, max_lag)
}

/// Serves the API on `listener` until the sender returned is used (or dropped).
fn serve_in_background(
    state: Arc<AppState>,
    listener: http::Listener,
    notifications: tokio::task::JoinHandle<()>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        http::serve(state, listener, async {
            let _ = stopped.await;
        })
        .await;
        // Stopped: the listener goes too, before anyone takes the database away from it
        // (it would log a lost connection, or exit without automatic recovery).
        notifications.abort();
    });
    (stop, done)
}

/// The API's listener: server-unix-socket, or TCP on server-host:server-port.
async fn bind_api(
    config: &Config,
    host: &str,
) -> Result<(http::Listener, Option<SocketAddr>), String> {
    if let Some(path) = config.server_unix_socket.as_deref() {
        let listener = bind_unix(path, config.unix_socket_mode)?;
        return Ok((http::Listener::Unix(listener), None));
    }
    let reuseport = config.server_reuseport;
    let listener = bind_tcp(host, config.server_port, reuseport)
        .await
        .map_err(|e| format!("cannot listen on {host}:{}: {e}", config.server_port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    crate::lifecycle!("API server listening on http://{addr}");
    Ok((http::Listener::Tcp(listener), Some(addr)))
}

/// The admin server's listener, when one is configured.
async fn bind_admin(config: &Config, host: &str) -> Result<Option<http::Listener>, String> {
    match (
        config.admin_server_unix_socket.as_deref(),
        config.admin_server_port,
    ) {
        (Some(path), _) => Ok(Some(http::Listener::Unix(bind_unix(
            path,
            config.admin_unix_socket_mode,
        )?))),
        (None, Some(port)) => {
            let admin_host = config
                .admin_server_host
                .as_deref()
                .map(|h| bind_host(h).to_string())
                .unwrap_or_else(|| host.to_string());
            let listener = bind_tcp(&admin_host, port, false)
                .await
                .map_err(|e| format!("cannot listen on {admin_host}:{port}: {e}"))?;
            if let Ok(addr) = listener.local_addr() {
                crate::lifecycle!("admin server listening on http://{addr}");
            }
            Ok(Some(http::Listener::Tcp(listener)))
        }
        (None, None) => Ok(None),
    }
}

/// What start-up reads from the database before serving.
struct Ready {
    config: Config,
    auth: Option<crate::auth::Authenticator>,
    cache: SchemaCache,
    authenticator: String,
}

enum NotReady {
    /// The database may come up yet: try again later.
    Retry(String),
    /// Waiting will not help: exit.
    Fatal(String),
}

/// Connects and reads the in-database configuration, the session user and the schema
/// cache over one connection.
async fn read_database(pg: &Connector, config: Config) -> Result<Ready, NotReady> {
    let (client, connection) = pg.connect().await.map_err(|e| {
        let message = connect_error(pg, &e);
        match worth_retrying(&e) {
            true => NotReady::Retry(message),
            false => NotReady::Fatal(message),
        }
    })?;
    on_one_task(client, connection, async |c| read_over(c, config).await).await
}

/// `read_database`'s reads, over `client`.
async fn read_over(client: &mut tokio_postgres::Client, config: Config) -> Result<Ready, NotReady> {
    let config = with_db_config(client, config)
        .await
        .map_err(NotReady::Fatal)?;
    let auth = crate::auth::Authenticator::from_config(&config).map_err(NotReady::Fatal)?;
    let cache = load_schema_on(client, &config.db_schemas)
        .await
        .map_err(NotReady::Retry)?;
    let (authenticator, version) = session_user(client).await.map_err(NotReady::Retry)?;
    crate::lifecycle!("connected to PostgreSQL {version} as {authenticator}");
    Ok(Ready {
        config,
        auth,
        cache,
        authenticator,
    })
}

/// The longest wait between start-up attempts, as PostgREST's.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(32);

/// After a first failed attempt (`first`), reads the database again with backoff (1 s
/// doubling to 32 s) until it is up, as PostgREST does: meanwhile the listeners answer
/// 503 PGRST002 with Retry-After, and the admin server's /live 200. (With
/// db-pool-automatic-recovery off, start() ends at the first failure instead.)
async fn wait_for_database(
    pg: &Connector,
    config: Config,
    listener: http::Listener,
    admin: Option<http::Listener>,
    first: String,
) -> Result<(http::Listener, Option<http::Listener>, Ready), String> {
    let waiting = crate::http::waiting::Waiting::start(listener, admin);
    let mut delay = Duration::from_secs(1);
    let mut reason = first;
    let outcome = loop {
        waiting.retry_in(delay);
        tracing::error!("{reason}; retrying in {} s", delay.as_secs());
        tokio::time::sleep(delay).await;
        match read_database(pg, config.clone()).await {
            Ok(ready) => break Ok(ready),
            Err(NotReady::Retry(e)) => reason = e,
            Err(NotReady::Fatal(e)) => break Err(e),
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    };
    let (listener, admin) = waiting.stop().await;
    outcome.map(|ready| (listener, admin, ready))
}

/// Binds a TCP listener on the first address `host` resolves to that takes it. With
/// `reuseport` (server-reuseport) several processes may listen on the same port, the
/// kernel spreading connections over them.
async fn bind_tcp(host: &str, port: u16, reuseport: bool) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        if reuseport {
            socket.set_reuseport(true)?;
        }
        match socket.bind(addr).and_then(|_| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("the host resolves to no address")))
}

/// Binds a Unix socket (server-unix-socket, admin-server-unix-socket) with permissions
/// `mode`. A socket file already there is replaced, as PostgREST does; any other file at
/// the path is an error.
fn bind_unix(path: &str, mode: u32) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "cannot listen on {path}: a file that is not a socket is there"
            ));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {path}: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {path}: {e}"))?;
    crate::lifecycle!("listening on unix socket {path} (mode {mode:o})");
    Ok(listener)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs until a termination signal.
pub async fn run(source: crate::config::ConfigSource) -> Result<(), String> {
    let running = start(source).await?;
    termination().await;
    crate::lifecycle!("stopping: no new connections; requests in flight may finish");
    let _ = running.stop.send(());
    let _ = running.done.await;
    crate::lifecycle!("stopped");
    for path in running.socket.iter().chain(running.admin_socket.iter()) {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// How long the demo's printed token is valid.
const DEMO_TOKEN_SECONDS: u64 = 3600;

/// A throwaway jwt-secret for the demo: 30 random bytes, base64 (40 characters).
fn demo_secret() -> Result<String, String> {
    use base64::Engine;
    use std::io::Read;
    let mut bytes = [0u8; 30];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot make a demo jwt-secret: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// `pgrest --demo`: a throwaway cluster with the demo schema, served until Ctrl-C.
pub async fn run_demo(mut source: crate::config::ConfigSource) -> Result<(), String> {
    let config = source.load()?;
    eprintln!(
        "pgrest: no db-uri configured; starting a throwaway PostgreSQL with a demo schema..."
    );
    let cluster = start_demo_cluster().await?;
    let demo = demo_settings(&config, &cluster)?;
    source.overrides.extend(demo.overrides);
    let result = match start(source).await {
        Ok(running) => {
            print_demo_help(&running, &cluster, demo.token.as_deref());
            termination().await;
            let _ = running.stop.send(());
            let _ = running.done.await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    cluster.stop();
    result
}

/// A throwaway cluster, stopped when this process exits, with the demo schema loaded.
async fn start_demo_cluster() -> Result<TempCluster, String> {
    let cluster = tokio::task::spawn_blocking(|| TempCluster::start("demo"))
        .await
        .map_err(|e| e.to_string())??;
    cluster.stop_when_process_exits(std::process::id());
    let prepared = cluster.execute("postgres", crate::DEMO_SQL).await;
    if let Err(e) = prepared {
        cluster.stop();
        return Err(format!("cannot load the demo schema: {e}"));
    }
    Ok(cluster)
}

/// What the demo adds to the user's configuration.
struct DemoSettings {
    /// Laid over the user's settings, as environment variables are.
    overrides: Vec<(String, String)>,
    /// The token printed when the demo made up the jwt-secret.
    token: Option<String>,
}

fn demo_settings(config: &Config, cluster: &TempCluster) -> Result<DemoSettings, String> {
    // The demo's database, kept through config reloads.
    let mut demo = vec![("PGRST_DB_URI".to_string(), cluster.uri("postgres"))];
    if config.db_anon_role.is_none() {
        demo.push(("PGRST_DB_ANON_ROLE".into(), "web_anon".into()));
    }
    if config.db_schemas == ["public"] {
        demo.push(("PGRST_DB_SCHEMAS".into(), "api".into()));
    }
    // Without a jwt-secret of the user's, the demo makes one up and prints a token signed
    // with it, so that the roles can be tried at once.
    let token = match &config.jwt_secret {
        Some(_) => None,
        None => {
            let secret = demo_secret()?;
            let token = crate::auth::sign_token(&secret, false, "web_user", DEMO_TOKEN_SECONDS)?;
            demo.push(("PGRST_JWT_SECRET".into(), secret));
            Some(token)
        }
    };
    Ok(DemoSettings {
        overrides: demo,
        token,
    })
}

/// The address to open: loopback for a wildcard address, or the Unix socket.
fn demo_url(running: &Running) -> String {
    match running.addr {
        Some(addr) if addr.ip().is_unspecified() => {
            format!("http://localhost:{}", addr.port())
        }
        Some(addr) => format!("http://{addr}"),
        None => format!(
            "http://localhost (unix socket {}; curl --unix-socket)",
            running.socket.as_deref().unwrap_or("")
        ),
    }
}

fn print_demo_help(running: &Running, cluster: &TempCluster, token: Option<&str>) {
    let url = demo_url(running);
    println!(
        "pgrest demo is serving {url} (database {})",
        cluster.uri("postgres")
    );
    println!("try:");
    println!("  curl '{url}/books?select=title,published&genre=eq.fiction&order=published.desc'");
    println!("  curl '{url}/authors?country=eq.England' -H 'Prefer: count=exact'");
    println!("  curl '{url}/book_summaries?average_stars=gte.4' -H 'Accept: text/csv'");
    if let Some(token) = token {
        println!("a token for the web_user role (1 h; send it as Authorization: Bearer):");
        println!("  TOKEN={token}");
    }
    println!("Ctrl-C stops it and removes the database.");
}
