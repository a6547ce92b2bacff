//! Short-lived connections for start-up and reload work: connecting (and saying why it
//! failed), the in-database configuration, the schema cache.

use super::tls::Connector;
use crate::schema::SchemaCache;

/// One short-lived connection for start-up and reload work, driven in the background.
pub async fn connect_once(
    connector: &Connector,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), String> {
    connect_typed(connector)
        .await
        .map_err(|e| connect_error(connector, &e))
}

pub async fn connect_typed(
    connector: &Connector,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = connector.connect().await?;
    let conn = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, conn))
}

/// "cannot connect to the database at host:port: why".
pub fn connect_error(connector: &Connector, e: &tokio_postgres::Error) -> String {
    let pg = &connector.config;
    let ports = pg.get_ports().iter().chain(std::iter::repeat(&5432));
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .zip(ports)
        .map(|(h, p)| match h {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
            tokio_postgres::config::Host::Unix(path) => format!("{}:{p}", path.display()),
        })
        .collect();
    format!(
        "cannot connect to the database at {}: {}",
        hosts.join(","),
        super::describe(e)
    )
}

/// Whether waiting can cure a failed connection: no server answered (refused, timed
/// out, reset), or it is starting up, shutting down or full. A server that answered no
/// (authentication, a missing database, TLS certificates) or a configuration error will
/// say the same next time.
pub fn worth_retrying(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => matches!(db.code().code(), "57P03" | "57P01" | "57P02" | "53300"),
        None => {
            super::tls::describe_tls(e).is_none()
                && !e.to_string().starts_with("invalid configuration")
        }
    }
}

/// Lays the in-database configuration over `config` when db-config is on: the
/// authenticator's `pgrst.*` role settings (database-specific ones win over those for
/// every database) over whatever the db-pre-config function sets.
pub async fn with_db_config(
    client: &mut tokio_postgres::Client,
    config: crate::config::Config,
) -> Result<crate::config::Config, String> {
    if !config.db_config {
        return Ok(config);
    }
    let fail = |e: tokio_postgres::Error| {
        format!(
            "cannot read the in-database configuration: {}",
            super::describe(&e)
        )
    };
    let names: Vec<String> = crate::config::IN_DB_KEYS
        .iter()
        .map(|k| format!("pgrst.{}", k.replace('-', "_")))
        .collect();
    let mut settings = match config.db_pre_config.as_deref() {
        Some(pre) => pre_config_settings(client, pre, &names)
            .await
            .map_err(fail)?,
        None => Vec::new(),
    };
    settings.extend(role_settings(client, &names).await.map_err(fail)?);
    if !settings.is_empty() {
        tracing::info!(
            "applying {} in-database configuration setting(s)",
            settings.len()
        );
    }
    config.with_db_settings(&settings)
}

/// `pgrst.db_schemas` -> `db-schemas`.
fn config_key(setting: &str) -> String {
    setting.trim_start_matches("pgrst.").replace('_', "-")
}

/// What db-pre-config sets, read in a transaction that is rolled back.
async fn pre_config_settings(
    client: &mut tokio_postgres::Client,
    function: &str,
    names: &[String],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT {}()",
        crate::sql::quote_qualified(function)
    ))
    .await?;
    let rows = tx
        .query(
            "SELECT k, current_setting(k, true) FROM unnest($1::text[]) AS k",
            &[&names],
        )
        .await?;
    let settings = rows
        .iter()
        .filter_map(|row| {
            let value = row.get::<_, Option<String>>(1).filter(|v| !v.is_empty())?;
            Some((config_key(row.get(0)), value))
        })
        .collect();
    tx.rollback().await?;
    Ok(settings)
}

/// The authenticator's `pgrst.*` role settings; a database-specific one wins over the
/// one for every database.
async fn role_settings(
    client: &mut tokio_postgres::Client,
    names: &[String],
) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT DISTINCT ON (k) k, v FROM (
               SELECT s.setdatabase, split_part(c, '=', 1) AS k,
                      substr(c, strpos(c, '=') + 1) AS v
               FROM pg_catalog.pg_db_role_setting s, unnest(s.setconfig) AS c
               WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)
                 AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database
                                           WHERE datname = current_database()))
             ) AS t
             WHERE k = ANY($1)
             ORDER BY k, setdatabase DESC",
            &[&names],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| (config_key(row.get(0)), row.get(1)))
        .collect())
}

/// Loads the schema cache of `schemas` over a connection of its own.
pub async fn load_schema(pg: &Connector, schemas: &[String]) -> Result<SchemaCache, String> {
    let (client, connection) = pg.connect().await.map_err(|e| connect_error(pg, &e))?;
    on_one_task(client, connection, async |c| {
        load_schema_on(c, schemas).await
    })
    .await
}

/// Runs `work` over `client` with its connection polled in the same task (see
/// `in_one_task`), then closes the connection.
pub async fn on_one_task<T>(
    mut client: tokio_postgres::Client,
    connection: super::tls::Connection,
    work: impl AsyncFnOnce(&mut tokio_postgres::Client) -> T,
) -> T {
    let mut connection = Some(Box::pin(connection));
    let out = in_one_task(&mut connection, work(&mut client)).await;
    drop(client);
    if let Some(rest) = connection {
        let _ = rest.await;
    }
    out
}

/// Polls `work` and the connection its client talks through in one task, until `work`
/// is done. The catalog rows of a schema load stream through the connection in batches
/// of one socket read each; with the connection spawned as a task of its own, every batch
/// woke the other thread and back (50,000 tables: 500,000 column rows, PostgreSQL held
/// up by the wake-ups). A connection that ends is dropped at once, so whatever `work`
/// still waits for fails instead of hanging.
async fn in_one_task<T>(
    connection: &mut Option<std::pin::Pin<Box<super::tls::Connection>>>,
    work: impl std::future::Future<Output = T>,
) -> T {
    use std::future::Future;
    use std::task::Poll;
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| loop {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        match connection.as_mut().map(|c| c.as_mut().poll(cx)) {
            Some(Poll::Ready(_)) => *connection = None,
            // The connection moved rows to `work`'s channel: take them now rather than
            // on a wake-up.
            Some(Poll::Pending) | None => return Poll::Pending,
        }
    })
    .await
}

pub async fn load_schema_on(
    client: &mut tokio_postgres::Client,
    schemas: &[String],
) -> Result<SchemaCache, String> {
    SchemaCache::load(client, schemas)
        .await
        .map_err(|e| format!("cannot load the schema cache: {}", super::describe(&e)))
}
