//! Pool connections with [`merge::Merge`] on their byte stream. tokio-postgres' own
//! `Config::connect` opens the socket itself and never shows it, so for pool connections
//! the socket is opened here (the same hosts, host addresses, ports, timeouts, keepalives
//! and target_session_attrs as it would use) and handed to `Config::connect_raw`, which
//! does the TLS negotiation and authentication as always. Cancel requests for such a
//! connection go to the address it was opened to.

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::merge::{Batch, Merge};
use crate::net::Stream as Socket;

/// Why a pool connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The socket: refused, unreachable, timed out, or a server that does not allow
    /// writes under target_session_attrs=read-write.
    Socket(io::Error),
    Postgres(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for ConnectError {
    fn from(e: tokio_postgres::Error) -> ConnectError {
        ConnectError::Postgres(e)
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Socket(e) => e.fmt(f),
            ConnectError::Postgres(e) => f.write_str(&super::describe(e)),
        }
    }
}

/// Where a connection went, for its cancel requests.
#[derive(Clone, Debug)]
pub struct Peer {
    addr: Addr,
    /// The host name TLS verifies (none over a Unix socket).
    hostname: Option<String>,
}

#[derive(Clone, Debug)]
enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// TLS with the merging adapter above it (the one below steps aside once TLS starts).
struct AboveTls<T> {
    tls: T,
    batch: Batch,
}

type BoxedTlsFuture<S, E> = Pin<Box<dyn std::future::Future<Output = Result<Merge<S>, E>> + Send>>;

impl<S, T> TlsConnect<S> for AboveTls<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
    T::Stream: Send + 'static,
{
    type Stream = Merge<T::Stream>;
    type Error = T::Error;
    type Future = BoxedTlsFuture<T::Stream, T::Error>;

    fn connect(self, stream: S) -> Self::Future {
        let batch = self.batch;
        let connecting = self.tls.connect(stream);
        Box::pin(async move { connecting.await.map(|s| Merge::new(s, batch)) })
    }
}

/// Opens a connection as `config` says, tries each host in turn as libpq does, and spawns
/// its connection task. Returns the client, where it went, and its batch switch.
pub async fn open(
    config: &Config,
    tls: &MakeRustlsConnect,
) -> Result<(tokio_postgres::Client, Peer, Batch), ConnectError> {
    let mut last = None;
    for peer in candidates(config).await? {
        match open_at(config, tls, &peer).await {
            Ok((client, batch)) => return Ok((client, peer, batch)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        ConnectError::Socket(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve any addresses",
        ))
    }))
}

/// Every address to try, in order: each host (or hostaddr) with its port, names resolved.
async fn candidates(config: &Config) -> Result<Vec<Peer>, ConnectError> {
    let (hosts, hostaddrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    let count = hosts.len().max(hostaddrs.len());
    let mut order: Vec<usize> = (0..count).collect();
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        shuffle(&mut order);
    }
    let mut peers = Vec::new();
    let mut resolve_error = None;
    for i in order {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hostname = match hosts.get(i) {
            Some(Host::Tcp(name)) => Some(name.clone()),
            _ => None,
        };
        match (hostaddrs.get(i), hosts.get(i)) {
            (Some(ip), _) => peers.push(Peer {
                addr: Addr::Tcp(SocketAddr::new(*ip, port)),
                hostname,
            }),
            (None, Some(Host::Unix(dir))) => peers.push(Peer {
                addr: Addr::Unix(dir.join(format!(".s.PGSQL.{port}"))),
                hostname,
            }),
            (None, Some(Host::Tcp(name))) => match tokio::net::lookup_host((&**name, port)).await {
                Ok(addrs) => peers.extend(addrs.map(|addr| Peer {
                    addr: Addr::Tcp(addr),
                    hostname: hostname.clone(),
                })),
                Err(e) => resolve_error = Some(e),
            },
            (None, None) => {}
        }
    }
    match (peers.is_empty(), resolve_error) {
        (true, Some(e)) => Err(ConnectError::Socket(e)),
        _ => Ok(peers),
    }
}

/// load_balance_hosts=random: a shuffle seeded by the standard library's per-instance
/// random hash keys (no random-number crate for this one use).
fn shuffle(order: &mut [usize]) {
    for i in (1..order.len()).rev() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(i);
        let j = (hasher.finish() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
}

async fn open_at(
    config: &Config,
    tls: &MakeRustlsConnect,
    peer: &Peer,
) -> Result<(tokio_postgres::Client, Batch), ConnectError> {
    let socket = connect_socket(config, &peer.addr).await?;
    let batch = Batch::default();
    let Ok(tls) = MakeTlsConnect::<Merge<Socket>>::make_tls_connect(
        &mut tls.clone(),
        peer.hostname.as_deref().unwrap_or(""),
    );
    let above = AboveTls {
        tls,
        batch: batch.clone(),
    };
    let (client, connection) = config
        .connect_raw(Merge::new(socket, batch.clone()), above)
        .await?;
    tokio::spawn(connection);
    check_session_attrs(&client, config.get_target_session_attrs()).await?;
    Ok((client, batch))
}

/// target_session_attrs: whether the server takes writes (or, for read-only, does not).
async fn check_session_attrs(
    client: &tokio_postgres::Client,
    wanted: TargetSessionAttrs,
) -> Result<(), ConnectError> {
    if wanted == TargetSessionAttrs::Any {
        return Ok(());
    }
    let row = client.query_one("SHOW transaction_read_only", &[]).await?;
    let read_only = row.get::<_, String>(0) == "on";
    match (wanted, read_only) {
        (TargetSessionAttrs::ReadWrite, true) => Err(ConnectError::Socket(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "database does not allow writes",
        ))),
        (TargetSessionAttrs::ReadOnly, false) => Err(ConnectError::Socket(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "database is not read only",
        ))),
        _ => Ok(()),
    }
}

async fn connect_socket(config: &Config, addr: &Addr) -> Result<Socket, ConnectError> {
    let timeout = config.get_connect_timeout().copied();
    match addr {
        Addr::Tcp(addr) => {
            let stream = with_timeout(TcpStream::connect(addr), timeout).await?;
            tune_tcp(&stream, config).map_err(ConnectError::Socket)?;
            Ok(Socket::Tcp(stream))
        }
        Addr::Unix(path) => Ok(Socket::Unix(
            with_timeout(UnixStream::connect(path), timeout).await?,
        )),
    }
}

/// No Nagle delay (a request's messages go out at once), keepalives and the user timeout
/// as the connection string says.
fn tune_tcp(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let socket = SockRef::from(stream);
    if let Some(timeout) = config.get_tcp_user_timeout() {
        socket.set_tcp_user_timeout(Some(*timeout))?;
    }
    if config.get_keepalives() {
        let mut keepalive = TcpKeepalive::new().with_time(config.get_keepalives_idle());
        if let Some(interval) = config.get_keepalives_interval() {
            keepalive = keepalive.with_interval(interval);
        }
        if let Some(retries) = config.get_keepalives_retries() {
            keepalive = keepalive.with_retries(retries);
        }
        socket.set_tcp_keepalive(&keepalive)?;
    }
    Ok(())
}

async fn with_timeout<T>(
    connect: impl std::future::Future<Output = io::Result<T>>,
    timeout: Option<Duration>,
) -> Result<T, ConnectError> {
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ))
            }),
        None => connect.await,
    };
    result.map_err(ConnectError::Socket)
}

/// Sends a cancel request for what `client` runs, to the address it was opened to.
pub async fn cancel(
    client: &tokio_postgres::Client,
    peer: &Peer,
    config: &Config,
    tls: &MakeRustlsConnect,
) {
    let Ok(socket) = connect_socket(config, &peer.addr).await else {
        return;
    };
    // rustls' connector is made without failing (its error type is uninhabited).
    let Ok(tls) = MakeTlsConnect::<Socket>::make_tls_connect(
        &mut tls.clone(),
        peer.hostname.as_deref().unwrap_or(""),
    );
    let _ = client.cancel_token().cancel_query_raw(socket, tls).await;
}
