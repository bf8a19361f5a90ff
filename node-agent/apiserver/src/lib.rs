//! minikind's Kubernetes API server: the subset of the API a KIND-like cluster uses.
//!
//! It owns the object store (redb, with watch history), the HTTP(S) server — routing of
//! Kubernetes-style paths, authentication and RBAC ([`auth`]), discovery, OpenAPI ([`openapi`]),
//! CustomResourceDefinitions and their custom resources ([`crd`]), the object verbs, server-side
//! tables, strict field validation, patches, protobuf bodies, the pod/service/node proxies —, admission
//! (defaults, validation, and ClusterIP/NodePort allocation, which happens synchronously with
//! the write, as in kube-apiserver), and the PKI and kubeconfig the server is reached with.
//!
//! It must not run controllers (`minikind-controllers` does, against [`ApiState`]) nor start
//! itself: `minikind-control-plane` assembles the two. Nothing here touches the node's network
//! or processes.

pub mod admission;
pub mod auth;
pub mod clusterip;
pub mod crd;
pub mod cron;
pub mod errors;
pub mod kubeconfig;
pub mod memory;
pub mod meta;
pub mod pki;
pub mod portforward;
pub mod resources;
pub mod secrets;
pub mod selectors;
pub mod service_proxy;
pub mod store;
pub mod validation;

pub mod discovery;
pub mod limits;
pub mod objects;
pub mod openapi;
pub mod patch;
pub mod protobuf;
#[rustfmt::skip]
mod protobuf_schema;
pub mod proxy;
pub mod strict;
pub mod tables;
pub mod typed;
pub mod watch;
pub mod workload_admission;
mod workload_tables;

use crate::admission::Admission;
use crate::errors::{ApiError, ApiResult};
use crate::resources::ResIdx;
use crate::store::Store;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// Largest accepted request body (the real server's limit is 3 MiB for objects).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub struct ApiState {
    pub store: Arc<Store>,
    pub admission: Admission,
    /// Bearer token every request but the health and version endpoints must carry; None
    /// disables authentication (loopback plain-HTTP mode).
    pub token: Option<String>,
    /// The key service-account tokens are signed and verified with (TokenRequest and
    /// [`auth::authenticate`]).
    pub service_account_key: Option<Arc<auth::tokens::ServiceAccountKey>>,
    /// `serverAddressByClientCIDRs` in `/api`.
    pub server_address: String,
    /// Requests being served (bounded; see [`limits`]).
    pub inflight: limits::InFlight,
    /// The TLS client `pods/log` and `pods/exec` reach kubelets with (the kubelet client
    /// certificate, the cluster CA as the only trust); None in plain-HTTP mode, where there is
    /// no PKI and the proxy refuses.
    pub kubelet_client: Option<Arc<rustls::ClientConfig>>,
}

/// One parsed request.
pub struct Ctx {
    pub method: axum::http::Method,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
    pub query: HashMap<String, String>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: Bytes,
}

pub fn json_response(code: u16, v: &Value) -> Response {
    raw_json_response(code, Bytes::from(serde_json::to_vec(v).unwrap_or_default()))
}

pub fn raw_json_response(code: u16, body: Bytes) -> Response {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(State(st): State<Arc<ApiState>>, req: Request) -> Response {
    let state = st.clone();
    let _permit = match state.inflight.admit(&req) {
        Ok(p) => p,
        Err(too_many) => return too_many.response(),
    };
    match route(st, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn header(req: &Request, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn route(st: Arc<ApiState>, req: Request) -> ApiResult<Response> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // Health and version are open, as the real server allows them to anyone.
    match path.as_str() {
        "/healthz" | "/readyz" | "/livez" => {
            return Ok(Response::builder()
                .status(200)
                .header("content-type", "text/plain; charset=utf-8")
                .body(Body::from("ok"))
                .unwrap_or_default());
        }
        "/version" => return Ok(json_response(200, &discovery::version())),
        _ => {}
    }
    let user = auth::authenticate(&st, &header(&req, "authorization"))?;
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    auth::authorize(
        &st,
        &user,
        &auth::Attributes::of_request(req.method().as_str(), &path, watching),
    )?;
    let accept = header(&req, "accept");
    let content_type = header(&req, "content-type");
    let user_agent = header(&req, "user-agent");
    let method = req.method().clone();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["api"] => {
            return Ok(match discovery::aggregated_version(&accept) {
                Some(v) => aggregated_response(discovery::aggregated(true, v), v),
                None => json_response(200, &discovery::api_versions(&st.server_address)),
            });
        }
        ["apis"] => {
            return Ok(match discovery::aggregated_version(&accept) {
                Some(v) => aggregated_response(discovery::aggregated(false, v), v),
                None => json_response(200, &discovery::api_group_list()),
            });
        }
        ["api", v] => {
            return discovery::resource_list("", v)
                .map(|l| json_response(200, &l))
                .ok_or_else(|| ApiError::not_found_path(&path));
        }
        ["apis", g] => {
            return discovery::api_group(g)
                .map(|l| json_response(200, &l))
                .ok_or_else(|| ApiError::not_found_path(&path));
        }
        ["apis", g, v] => {
            return discovery::resource_list(g, v)
                .map(|l| json_response(200, &l))
                .ok_or_else(|| ApiError::not_found_path(&path));
        }
        ["openapi", "v3"] => return Ok(json_response(200, &openapi::v3_root())),
        ["openapi", "v3", "api", v] => {
            return openapi::v3_document("", v)
                .map(|(d, _)| json_response(200, &d))
                .ok_or_else(|| ApiError::not_found_path(&path));
        }
        ["openapi", "v3", "apis", g, v] => {
            return openapi::v3_document(g, v)
                .map(|(d, _)| json_response(200, &d))
                .ok_or_else(|| ApiError::not_found_path(&path));
        }
        ["openapi", "v2"] => {
            if !openapi::v2_accepts_json(&accept) {
                return Err(ApiError::not_acceptable(
                    "only application/json is served for /openapi/v2",
                ));
            }
            return Ok(json_response(200, &openapi::v2()));
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::not_found_path(&path)),
    };
    // pods/proxy and services/proxy carry a path of their own after `proxy`.
    if group.is_empty()
        && let [
            "namespaces",
            ns,
            kind @ ("pods" | "services"),
            id,
            "proxy",
            tail @ ..,
        ] = rest
    {
        let mut sub_path = format!("/{}", tail.join("/"));
        if req.uri().path().ends_with('/') && !tail.is_empty() {
            sub_path.push('/');
        }
        let addr = if *kind == "pods" {
            service_proxy::pod_target(&st, ns, id)?
        } else {
            service_proxy::service_target(&st, ns, id)?
        };
        return service_proxy::forward(addr, &sub_path, &raw_query, req).await;
    }
    if group.is_empty()
        && let ["nodes", id, "proxy", tail @ ..] = rest
    {
        let mut sub_path = format!("/{}", tail.join("/"));
        if req.uri().path().ends_with('/') && !tail.is_empty() {
            sub_path.push('/');
        }
        return proxy::node(&st, id, &sub_path, &raw_query, req).await;
    }
    let find = |plural: &str| resources::by_path(group, version, plural);
    let target: Option<Target> = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if find(plural).is_some_and(|r| resources::get(r).namespaced) =>
        {
            let r = find(plural).expect("checked");
            match tail {
                [] => Some((r, Some(*ns), None, None)),
                [name] => Some((r, Some(*ns), Some(*name), None)),
                [name, sub] => Some((r, Some(*ns), Some(*name), Some(*sub))),
                _ => None,
            }
        }
        [plural, tail @ ..] => find(plural).and_then(|r| match tail {
            [] => Some((r, None, None, None)),
            [name] if !resources::get(r).namespaced => Some((r, None, Some(*name), None)),
            [name, sub] if !resources::get(r).namespaced => {
                Some((r, None, Some(*name), Some(*sub)))
            }
            _ => None,
        }),
        _ => None,
    };
    let Some((res, ns, name, sub)) = target else {
        return Err(ApiError::not_found_path(&path));
    };
    let r = resources::get(res);
    if let Some(s) = sub
        && !r.subresources.contains(&s)
    {
        return Err(ApiError::not_found_path(&path));
    }
    // Log, exec and port-forward are proxied to the kubelet before the body is read (the
    // streaming ones upgrade).
    match (&method, name, sub) {
        (&axum::http::Method::GET, Some(n), Some("log")) => {
            return proxy::log(&st, ns.unwrap_or_default(), n, &query).await;
        }
        (_, Some(n), Some("exec")) => {
            let ns = ns.unwrap_or_default().to_string();
            let n = n.to_string();
            return proxy::exec(&st, &ns, &n, &query, &raw_query, req).await;
        }
        (_, Some(n), Some("portforward")) => {
            let ns = ns.unwrap_or_default().to_string();
            let n = n.to_string();
            return portforward::forward(&st, &ns, &n, &raw_query, req).await;
        }
        _ => {}
    }
    let body = axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large("the request body is too large (limit 3 MiB)"))?;
    let ctx = Ctx {
        method: method.clone(),
        namespace: ns.map(String::from),
        name: name.map(String::from),
        sub: sub.map(String::from),
        query,
        accept,
        content_type,
        user_agent,
        body,
    };
    // Reviews and TokenRequests are answered, not stored.
    if r.is_review() || (res == resources::idx::serviceaccounts() && sub == Some("token")) {
        if method != axum::http::Method::POST {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method} {path})"
            )));
        }
        let body = objects::decode_body(&ctx)?;
        let answer = match (ctx.namespace.as_deref(), ctx.name.as_deref()) {
            (Some(ns), Some(sa)) if !r.is_review() => {
                let key = st.service_account_key.as_ref().ok_or_else(|| {
                    ApiError::service_unavailable("this server has no service-account signing key")
                })?;
                let req = auth::tokens::parse_request(&body)?;
                auth::tokens::issue(
                    &st.store,
                    key,
                    ns,
                    sa,
                    &req,
                    jiff::Timestamp::now().as_second(),
                )?
            }
            _ => auth::reviews::answer_review(&st, &user, r.kind, &body)?,
        };
        return Ok(json_response(201, &answer));
    }
    use axum::http::Method;
    let is_watch = ctx
        .query
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    match (&method, ctx.name.as_deref(), ctx.sub.as_deref()) {
        (&Method::GET, None, None) if is_watch => watch::watch(&st, &ctx, res),
        (&Method::GET, None, None) => objects::list(&st, &ctx, res),
        (&Method::GET, Some(_), None) if is_watch => watch::watch(&st, &ctx, res),
        (&Method::GET, Some(n), None | Some("status") | Some("scale")) => {
            objects::get(&st, &ctx, res, n)
        }
        (&Method::POST, None, None) => objects::create(&st, &ctx, res).await,
        (&Method::POST, Some(n), Some("binding")) => objects::bind(&st, &ctx, n).await,
        (&Method::PUT, Some(n), None | Some("status") | Some("scale")) => {
            objects::update(&st, &ctx, res, n).await
        }
        (&Method::PATCH, Some(n), None | Some("status") | Some("scale")) => {
            objects::patch(&st, &ctx, res, n).await
        }
        (&Method::DELETE, Some(n), None) => objects::delete(&st, &ctx, res, n).await,
        (&Method::DELETE, None, None) => objects::delete_collection(&st, &ctx, res).await,
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {path})"
        ))),
    }
}

/// What a resource path names: (resource, namespace, name, subresource).
type Target<'a> = (ResIdx, Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn aggregated_response(v: Value, version: &str) -> Response {
    let ct = if version == "v2beta1" {
        discovery::AGGREGATED_V2BETA1_CT
    } else {
        discovery::AGGREGATED_CT
    };
    Response::builder()
        .status(200)
        .header("content-type", ct)
        .body(Body::from(serde_json::to_vec(&v).unwrap_or_default()))
        .unwrap_or_default()
}

/// Serves the router on `listener`, over TLS when an acceptor is given, until `shutdown`.
/// Connections are bounded and must handshake and send their request heads in time
/// ([`limits`]), so idle or slow clients cannot hold the server.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let gate = limits::Gate::new(limits::connection_bound());
    loop {
        let (sock, _peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(permit) = gate.admit().await else {
            // At the bound: close it now rather than leave it queued in the kernel.
            tracing::debug!("connection refused: the connection bound is reached");
            continue;
        };
        let handshake = tls.is_some().then(|| gate.begin_handshake());
        let _ = sock.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut app = app.clone();
                    async move { app.call(req.map(Body::new)).await }
                });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits::HEADER_READ_TIMEOUT);
            let res = match tls.zip(handshake) {
                Some((acc, handshake)) => match tokio::select! {
                    r = tokio::time::timeout(limits::HANDSHAKE_TIMEOUT, acc.accept(sock)) => r,
                    _ = handshake.evicted.cancelled() => {
                        tracing::debug!("connection given up during its handshake for a newer one");
                        return;
                    }
                } {
                    Ok(Ok(stream)) => {
                        drop(handshake);
                        let conn =
                            builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            r = conn => r,
                            _ = shutdown.cancelled() => Ok(()),
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                },
                None => {
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(sock), svc);
                    tokio::select! {
                        r = conn => r,
                        _ = shutdown.cancelled() => Ok(()),
                    }
                }
            };
            if let Err(e) = res {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}
