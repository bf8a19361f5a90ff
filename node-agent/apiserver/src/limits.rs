//! What keeps hostile or broken clients from shutting everyone else out: a bound on open
//! connections derived from the file limit (raised to the hard limit first), a TLS-handshake
//! and a header-read timeout so connections that say nothing are closed, and a bound on
//! requests in flight answered with 429 and `Retry-After`, as kube-apiserver's
//! `--max-requests-inflight` filter (`staging/src/k8s.io/apiserver/pkg/server/filters/
//! maxinflight.go`) does. Long-running requests (watches, exec/attach/port-forward, proxies,
//! followed logs) are not counted, as there.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::errors::ApiError;

/// A client must finish its TLS handshake within this time after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must send a whole request head within this time once the server waits for one
/// (hyper's HTTP/1 `header_read_timeout`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Non-long-running requests served at once (kube-apiserver's default `--max-requests-inflight`
/// 400 plus `--max-mutating-requests-inflight` 200).
pub const MAX_INFLIGHT: usize = 600;
/// The most connections held open at once, whatever the file limit allows.
const MAX_CONNECTIONS_CEILING: usize = 60_000;
/// File descriptors kept for everything but client connections (the store, the kubelet
/// client, logs, watches' internals).
const RESERVED_FDS: u64 = 1024;

/// Raises the soft file limit to the hard one and returns how many connections to accept at
/// once: what the limit leaves after [`RESERVED_FDS`], at most [`MAX_CONNECTIONS_CEILING`].
pub fn connection_bound() -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let bound = soft.saturating_sub(RESERVED_FDS).max(16);
    usize::try_from(bound)
        .unwrap_or(usize::MAX)
        .min(MAX_CONNECTIONS_CEILING)
}

/// Open connections, each holding a permit until it closes, and which of them are still in
/// their TLS handshake. At the bound the oldest connection still handshaking is given up for
/// the new one: a client that has not even finished its handshake has shown nothing, so idle
/// or slow connections — however many — cannot lock out a client that talks.
pub struct Gate {
    permits: Arc<Semaphore>,
    handshakes: Mutex<Handshaking>,
}

#[derive(Default)]
struct Handshaking {
    next_id: u64,
    /// Oldest first; ids whose handshake ended stay until they reach the front.
    order: VecDeque<u64>,
    open: HashMap<u64, CancellationToken>,
}

/// A connection in its handshake; dropping it (handshake done or failed) takes it off the list.
pub struct Handshake {
    gate: Arc<Gate>,
    id: u64,
    /// Cancelled when the gate gives this connection up for a newer one.
    pub evicted: CancellationToken,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        let mut h = self
            .gate
            .handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        h.open.remove(&self.id);
    }
}

impl Gate {
    pub fn new(bound: usize) -> Arc<Self> {
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(bound)),
            handshakes: Mutex::default(),
        })
    }

    /// A permit for one more connection; at the bound, the oldest handshaking connection is
    /// given up for it. `None` when every connection has finished its handshake (then the new
    /// one is closed at once, so the accept queue keeps draining).
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        if !self.evict_oldest_handshake() {
            return None;
        }
        // The evicted connection's task drops its permit as soon as it sees the cancellation.
        tokio::time::timeout(
            Duration::from_millis(500),
            self.permits.clone().acquire_owned(),
        )
        .await
        .ok()?
        .ok()
    }

    /// Puts a new connection on the handshaking list.
    pub fn begin_handshake(self: &Arc<Self>) -> Handshake {
        let evicted = CancellationToken::new();
        let mut h = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        let id = h.next_id;
        h.next_id += 1;
        h.order.push_back(id);
        h.open.insert(id, evicted.clone());
        Handshake {
            gate: self.clone(),
            id,
            evicted,
        }
    }

    fn evict_oldest_handshake(&self) -> bool {
        let mut h = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(id) = h.order.pop_front() {
            if let Some(token) = h.open.remove(&id) {
                token.cancel();
                return true;
            }
        }
        false
    }
}

/// Requests in flight.
pub struct InFlight(Semaphore);

impl Default for InFlight {
    fn default() -> Self {
        InFlight(Semaphore::new(MAX_INFLIGHT))
    }
}

impl InFlight {
    /// `Ok(None)` for a request that is not counted, `Ok(Some(permit))` for one that is, and
    /// [`TooMany`] when the bound is reached.
    pub fn admit(&self, req: &Request) -> Result<Option<SemaphorePermit<'_>>, TooMany> {
        if is_exempt(req) {
            return Ok(None);
        }
        match self.0.try_acquire() {
            Ok(p) => Ok(Some(p)),
            Err(_) => Err(TooMany),
        }
    }
}

/// The in-flight bound is reached: answer [`TooMany::response`].
#[derive(Debug)]
pub struct TooMany;

impl TooMany {
    /// 429 `TooManyRequests` with `Retry-After: 1`.
    pub fn response(self) -> Response {
        too_many_requests()
    }
}

/// Long-running requests, and the health endpoints probes depend on.
fn is_exempt(req: &Request) -> bool {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or_default();
    let flag = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(k, v)| k == name && (v == "true" || v == "1"))
    };
    matches!(path, "/healthz" | "/readyz" | "/livez")
        || flag("watch")
        || path.ends_with("/exec")
        || path.ends_with("/attach")
        || path.ends_with("/portforward")
        || path.contains("/proxy")
        || (path.ends_with("/log") && flag("follow"))
}

fn too_many_requests() -> Response {
    let e = ApiError::too_many_requests();
    Response::builder()
        .status(e.code)
        .header("content-type", "application/json")
        .header("retry-after", "1")
        .body(Body::from(
            serde_json::to_vec(&e.status()).unwrap_or_default(),
        ))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[test]
    fn long_running_requests_are_not_counted() {
        for exempt in [
            "/readyz",
            "/api/v1/pods?watch=true",
            "/api/v1/namespaces/d/pods/p/exec?command=ls",
            "/api/v1/namespaces/d/pods/p/log?follow=true",
            "/api/v1/namespaces/d/services/s/proxy/metrics",
        ] {
            assert!(is_exempt(&req(exempt)), "{exempt}");
        }
        for counted in ["/api/v1/pods", "/api/v1/namespaces/d/pods/p/log", "/apis"] {
            assert!(!is_exempt(&req(counted)), "{counted}");
        }
    }

    #[tokio::test]
    async fn at_the_connection_bound_the_oldest_handshake_gives_way() {
        let gate = Gate::new(2);
        let a = gate.admit().await.unwrap();
        let hs_a = gate.begin_handshake();
        let b = gate.admit().await.unwrap();
        let hs_b = gate.begin_handshake();
        // b finished its handshake: only a can give way.
        drop(hs_b);
        let evicted = hs_a.evicted.clone();
        let release = tokio::spawn(async move {
            evicted.cancelled().await;
            drop(hs_a);
            drop(a);
        });
        let c = gate.admit().await.expect("a gave way");
        release.await.unwrap();
        // Now nobody is handshaking: the next one is refused.
        assert!(gate.admit().await.is_none());
        drop((b, c));
        assert!(gate.admit().await.is_some());
    }

    #[test]
    fn beyond_the_bound_is_429_with_retry_after() {
        let f = InFlight(Semaphore::new(1));
        let held = f.admit(&req("/api/v1/pods")).unwrap();
        assert!(held.is_some());
        let refused = f.admit(&req("/api/v1/pods")).unwrap_err().response();
        assert_eq!(refused.status(), 429);
        assert_eq!(refused.headers()["retry-after"], "1");
        assert!(f.admit(&req("/readyz")).unwrap().is_none());
        drop(held);
        assert!(f.admit(&req("/api/v1/pods")).unwrap().is_some());
    }
}
