//! A small Kubernetes API on loopback speaking the list/watch protocol kube-rs uses (kube-rs
//! kube-runtime/src/watcher.rs): lists carry `metadata.resourceVersion` and `items`; watches stream newline-delimited
//! JSON events. Tests and the benchmark push objects and events into it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Resource paths kube-rs requests for the kinds the plugin watches.
pub const SERVICES: &str = "/api/v1/services";
pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const PODS: &str = "/api/v1/pods";

struct Inner {
    rv: u64,
    /// path → (namespace/name → object)
    objects: BTreeMap<&'static str, BTreeMap<String, Value>>,
    events: broadcast::Sender<(&'static str, String)>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

fn kind_of(path: &str) -> (&'static str, &'static str, &'static str) {
    match path {
        SERVICES => (SERVICES, "ServiceList", "v1"),
        SLICES => (SLICES, "EndpointSliceList", "discovery.k8s.io/v1"),
        NAMESPACES => (NAMESPACES, "NamespaceList", "v1"),
        _ => (PODS, "PodList", "v1"),
    }
}

fn key(obj: &Value) -> String {
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    format!("{ns}/{name}")
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let (tx, _) = broadcast::channel(65536);
        let inner = Arc::new(Mutex::new(Inner {
            rv: 1,
            objects: BTreeMap::new(),
            events: tx,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API");
        let addr = listener.local_addr().expect("fake API address");
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi {
            inner,
            addr,
            task: Arc::new(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds or replaces an object; watchers see ADDED or MODIFIED.
    pub fn put(&self, path: &'static str, mut obj: Value) {
        let mut g = self.inner.lock().expect("fake API lock");
        g.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(g.rv.to_string());
        let k = key(&obj);
        let existed = g
            .objects
            .entry(path)
            .or_default()
            .insert(k, obj.clone())
            .is_some();
        let ev = json!({"type": if existed { "MODIFIED" } else { "ADDED" }, "object": obj});
        let _ = g.events.send((path, ev.to_string()));
    }

    /// Removes an object; watchers see DELETED.
    pub fn delete(&self, path: &'static str, namespace: &str, name: &str) {
        let mut g = self.inner.lock().expect("fake API lock");
        g.rv += 1;
        let rv = g.rv;
        if let Some(mut obj) = g
            .objects
            .entry(path)
            .or_default()
            .remove(&format!("{namespace}/{name}"))
        {
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            let ev = json!({"type": "DELETED", "object": obj});
            let _ = g.events.send((path, ev.to_string()));
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

async fn handle(
    State(inner): State<Shared>,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let path = uri.path();
    if ![SERVICES, SLICES, NAMESPACES, PODS].contains(&path) {
        let status = json!({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404});
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(status.to_string()))
            .expect("response");
    }
    let (p, list_kind, api_version) = kind_of(path);
    if q.get("watch").map(String::as_str) == Some("true") {
        let rx = inner.lock().expect("fake API lock").events.subscribe();
        let stream = futures::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok((ep, line)) if ep == p => {
                        return Some((Ok::<Bytes, Infallible>(Bytes::from(line + "\n")), rx));
                    }
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let g = inner.lock().expect("fake API lock");
    let all: Vec<&Value> = g
        .objects
        .get(p)
        .map(|m| m.values().collect())
        .unwrap_or_default();
    // Pages as the API server cuts them: `limit` items, `continue` = where the next page starts.
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let items = &all[start.min(end)..end];
    let mut meta = json!({"resourceVersion": g.rv.to_string()});
    if end < all.len() {
        meta["continue"] = json!(end.to_string());
    }
    let body = json!({
        "kind": list_kind,
        "apiVersion": api_version,
        "metadata": meta,
        "items": items,
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

// ---- object builders ----

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":name}})
}

/// A Service; `cluster_ips` empty with `headless` gives `clusterIP: None`.
pub fn service(ns: &str, name: &str, cluster_ips: &[&str], ports: &[(&str, i32, &str)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| {
            let mut v = json!({"port": p, "protocol": proto});
            if !n.is_empty() {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    let cluster_ip = cluster_ips.first().copied().unwrap_or("None");
    json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":ns,"labels":{"app":name}},
        "spec":{"type":"ClusterIP","clusterIP":cluster_ip,"clusterIPs":if cluster_ips.is_empty() { json!(["None"]) } else { json!(cluster_ips) },"ports":ports}})
}

pub fn external_service(ns: &str, name: &str, target: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Service","metadata":{"name":name,"namespace":ns},
        "spec":{"type":"ExternalName","externalName":target}})
}

/// One endpoint of a slice: address, ready, hostname, pod name.
pub struct Ep<'a>(
    pub &'a str,
    pub Option<bool>,
    pub Option<&'a str>,
    pub Option<&'a str>,
);

pub fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    family: &str,
    eps: &[Ep],
    ports: &[(&str, i32, &str)],
) -> Value {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|Ep(ip, ready, host, pod)| {
            let mut v = json!({"addresses":[ip]});
            if let Some(r) = ready {
                v["conditions"] = json!({"ready": r});
            }
            if let Some(h) = host {
                v["hostname"] = json!(h);
            }
            if let Some(p) = pod {
                v["targetRef"] = json!({"kind":"Pod","name":p,"namespace":ns});
            }
            v
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| {
            let mut v = json!({"port": p, "protocol": proto});
            if !n.is_empty() {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    json!({"apiVersion":"discovery.k8s.io/v1","kind":"EndpointSlice",
        "metadata":{"name":name,"namespace":ns,"labels":{"kubernetes.io/service-name":svc}},
        "addressType":family,"endpoints":endpoints,"ports":ports})
}

pub fn pod(ns: &str, name: &str, ip: &str) -> Value {
    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name,"namespace":ns},
        "spec":{"containers":[{"name":"c","image":"x"}]},
        "status":{"podIP":ip,"podIPs":[{"ip":ip}]}})
}
