//! CORS: the headers PostgREST sends on every response and on preflight requests.

use super::response::{set, Resp};
use crate::config::Config;

/// The response headers a browser script may read: PostgREST's, and with read replicas
/// the commit LSN a client sends back to read its own writes.
fn expose_headers(config: &Config) -> &'static str {
    match config.db_replica_uris.is_empty() {
        true => "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit",
        false => "Content-Encoding, Content-Location, Content-Range, Content-Type, Date, Location, Server, Transfer-Encoding, Range-Unit, X-Pgrst-Lsn",
    }
}

/// CORS headers as PostgREST sends them: any origin unless server-cors-allowed-origins
/// lists some (then only those, echoed, with credentials allowed). `preflight` carries the
/// Access-Control-Request-Headers of a preflight request.
pub fn cors(
    config: &Config,
    r: &mut Resp,
    origin: Option<&str>,
    options: bool,
    preflight: Option<&str>,
) {
    let allowed = config.server_cors_allowed_origins.as_deref();
    match (allowed, origin) {
        (None, Some(_)) => set(r, "Access-Control-Allow-Origin", "*"),
        (None, None) if options => set(r, "Access-Control-Allow-Origin", "*"),
        (Some(list), Some(o)) if list.iter().any(|a| a == o) => {
            set(r, "Access-Control-Allow-Origin", o);
            set(r, "Access-Control-Allow-Credentials", "true");
        }
        _ => return,
    }
    if origin.is_none() {
        return;
    }
    match preflight {
        Some(requested) => {
            set(
                r,
                "Access-Control-Allow-Methods",
                "GET, POST, PATCH, PUT, DELETE, OPTIONS, HEAD",
            );
            let mut headers = vec!["Authorization".to_string()];
            headers.extend(
                requested
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_string),
            );
            headers.extend(["Accept", "Accept-Language", "Content-Language"].map(String::from));
            set(r, "Access-Control-Allow-Headers", &headers.join(", "));
            set(r, "Access-Control-Max-Age", "86400");
        }
        None => set(r, "Access-Control-Expose-Headers", expose_headers(config)),
    }
}
