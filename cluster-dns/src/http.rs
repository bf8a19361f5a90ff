//! The HTTP side: the health, ready and prometheus plugins' endpoints, on whichever addresses
//! the Corefile gives them (one server per address, serving the paths placed there).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::routing::get;

use crate::plugins::{health, prometheus, ready};

/// What the handlers need from the running server.
#[derive(Clone)]
pub struct State {
    /// Names of the plugins that are not ready (empty: ready).
    pub not_ready: ready::NotReady,
    /// Refreshes gauges before a scrape.
    pub before_metrics: prometheus::BeforeScrape,
}

/// The routes of one address.
pub fn router(paths: &[&'static str], state: State) -> Router {
    let mut r = Router::new();
    for p in paths {
        match *p {
            health::PATH => r = r.route(health::PATH, get(health::handle)),
            ready::PATH => {
                let f = state.not_ready.clone();
                r = r.route(ready::PATH, get(move || ready::handle(f.clone())));
            }
            prometheus::PATH => {
                let f = state.before_metrics.clone();
                r = r.route(prometheus::PATH, get(move || prometheus::handle(f.clone())));
            }
            _ => {}
        }
    }
    r
}

/// `:8080` → `0.0.0.0:8080`, `localhost:9153` → `127.0.0.1:9153`.
pub fn http_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("address '{s}' lacks a port"))?;
    let port: u16 = port.parse().map_err(|_| anyhow!("invalid port in '{s}'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = match host {
        "" => IpAddr::from([0, 0, 0, 0]),
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        h => h.parse().map_err(|_| anyhow!("invalid host in '{s}'"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Binds an HTTP address, retrying for a second while a replaced server lets go of it.
pub async fn bind_retry(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for _ in 0..20 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}
