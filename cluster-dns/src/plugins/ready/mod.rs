//! `ready [ADDRESS]`: `GET /ready` answers 200 `OK` once every plugin that reports readiness
//! (the `kubernetes` plugin, after its first sync) is ready, else 503 naming those that are not
//! (coredns plugin/ready/ready.go).

use std::sync::Arc;

use axum::http::StatusCode;

use crate::corefile::{CorefileError, Directive};

/// Where the endpoint is served.
pub const PATH: &str = "/ready";

/// Names of the plugins that are not ready (empty: ready).
pub type NotReady = Arc<dyn Fn() -> Vec<&'static str> + Send + Sync>;

pub fn parse(d: &Directive) -> Result<String, CorefileError> {
    if !d.block.is_empty() {
        return Err(d.err("takes no block"));
    }
    match d.arg_strs().as_slice() {
        [] => Ok(":8181".to_string()),
        [a] => Ok(a.to_string()),
        _ => Err(d.err("takes at most one address")),
    }
}

/// `GET /ready`: 200 `OK`, or 503 with the names of what is not ready.
pub async fn handle(not_ready: NotReady) -> (StatusCode, String) {
    let nr = not_ready();
    if nr.is_empty() {
        (StatusCode::OK, "OK".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, nr.join(", "))
    }
}
