//! `pods/log`, `pods/exec` and `nodes/proxy` (and, in [`crate::portforward`],
//! `pods/portforward`): proxied to the kubelet endpoint of the pod's node
//! (`https://<InternalIP>:<daemonEndpoints.kubeletEndpoint.Port>`), as the real API server does:
//! the connection presents the API server's kubelet client certificate and accepts only a
//! kubelet serving certificate signed by the cluster CA that names the InternalIP it dialled
//! (kube-apiserver's `--kubelet-client-certificate` and `--kubelet-certificate-authority`).
//! Logs stream through (also with `follow`); exec is a transparent HTTP upgrade proxy, so the
//! websocket (`v5.channel.k8s.io`/`v4.channel.k8s.io`) runs end to end between the client and
//! the kubelet.

use super::ApiState;
use crate::errors::{ApiError, ApiResult};
use crate::meta::str_at;
use crate::resources::idx;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The kubelet address and the container name for a pod request.
fn target(
    st: &ApiState,
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> ApiResult<(SocketAddr, String)> {
    let p = st
        .store
        .get(idx::pods(), ns, pod)
        .ok_or_else(|| ApiError::not_found("", "pods", pod))?
        .value();
    let names: Vec<String> = p
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if names.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {pod}"
            )));
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {pod}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let node = str_at(&p, "/spec/nodeName")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {pod} does not have a host assigned")))?
        .to_string();
    Ok((kubelet_addr(st, &node)?, container))
}

/// The kubelet endpoint of the node `pod` runs on (`pods/portforward`, which names no
/// container).
pub(crate) fn pod_kubelet(st: &ApiState, ns: &str, pod: &str) -> ApiResult<SocketAddr> {
    let p = st
        .store
        .get(idx::pods(), ns, pod)
        .ok_or_else(|| ApiError::not_found("", "pods", pod))?
        .value();
    let node = str_at(&p, "/spec/nodeName")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("pod {pod} does not have a host assigned")))?
        .to_string();
    kubelet_addr(st, &node)
}

/// The kubelet endpoint of `node`: its InternalIP and `daemonEndpoints.kubeletEndpoint.Port`.
fn kubelet_addr(st: &ApiState, node: &str) -> ApiResult<SocketAddr> {
    let n = st
        .store
        .get(idx::nodes(), "", node)
        .ok_or_else(|| ApiError::not_found("", "nodes", node))?
        .value();
    let ip = n
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::service_unavailable(format!("node {node} reports no InternalIP address"))
        })?;
    let port = n
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Ok(SocketAddr::new(ip, port))
}

type KubeletStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Dials the kubelet and completes the mutual TLS handshake.
/// Sends the upgrade request `up` (exec's WebSocket, port-forward's SPDY) to the kubelet at
/// `addr` on a connection of its own, kept open for the upgraded stream; the kubelet's answer
/// as it came (101, or its refusal).
pub(crate) async fn kubelet_upgrade(
    st: &ApiState,
    addr: SocketAddr,
    up: hyper::http::request::Builder,
) -> ApiResult<hyper::Response<hyper::body::Incoming>> {
    let up = up
        .body(Body::empty())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let stream = connect(st, addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::service_unavailable(format!("kubelet at {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    send.send_request(up)
        .await
        .map_err(|e| ApiError::service_unavailable(format!("kubelet at {addr}: {e}")))
}

/// The body of a kubelet answer that did not upgrade: its error message (64 KiB at most).
pub(crate) async fn refusal_body(
    resp: hyper::Response<hyper::body::Incoming>,
) -> axum::body::Bytes {
    axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024)
        .await
        .unwrap_or_default()
}

pub(crate) async fn connect(st: &ApiState, addr: SocketAddr) -> ApiResult<KubeletStream> {
    let Some(cfg) = st.kubelet_client.clone() else {
        return Err(ApiError::service_unavailable(
            "no kubelet client certificate: the API server serves plain HTTP without a PKI",
        ));
    };
    let dial = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| {
            ApiError::service_unavailable(format!("error dialing the kubelet at {addr}: {e}"))
        })?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        // A refused handshake (an untrusted serving certificate, our certificate refused) is
        // no passing trouble: an internal error, as kube-apiserver answers, not 503 that
        // clients retry.
        tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                ApiError::internal(format!("TLS handshake with the kubelet at {addr}: {e}"))
            })
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::service_unavailable(format!(
            "timed out dialing the kubelet at {addr}"
        ))),
    }
}

fn encode(query: &HashMap<String, String>, drop: &[&str]) -> String {
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        if !drop.contains(&k.as_str()) {
            ser.append_pair(k, v);
        }
    }
    ser.finish()
}

/// `nodes/<name>/proxy/<path>`: the request passed to the node's kubelet endpoint over the
/// same mutual TLS as logs and exec (`/containerLogs/…`, `/pods`, `/healthz`).
pub async fn node(
    st: &ApiState,
    node: &str,
    path: &str,
    raw_query: &str,
    req: Request,
) -> ApiResult<Response> {
    let (_, name, port) = crate::service_proxy::split_id(node)?;
    let mut addr = kubelet_addr(st, name)?;
    if let Ok(p) = port.parse::<u16>() {
        addr.set_port(p);
    }
    let stream = connect(st, addr).await?;
    crate::service_proxy::forward_on(stream, addr, path, raw_query, req).await
}

/// `GET pods/<name>/log`.
pub async fn log(
    st: &ApiState,
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let (addr, container) = target(st, ns, pod, query)?;
    let uri = format!(
        "/containerLogs/{ns}/{pod}/{container}?{}",
        encode(query, &["container"])
    );
    let stream = connect(st, addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ApiError::service_unavailable(format!("kubelet at {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(uri)
        .header("host", addr.to_string())
        .body(Body::empty())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| ApiError::service_unavailable(format!("kubelet at {addr}: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        let body = axum::body::to_bytes(Body::new(resp.into_body()), 64 * 1024)
            .await
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status.as_u16() {
            404 => ApiError::not_found("", "pods", pod),
            400 => ApiError::bad_request(msg),
            _ => ApiError::internal(format!("kubelet answered {status}: {msg}")),
        });
    }
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::new(resp.into_body()))
        .map_err(|e| ApiError::internal(format!("building the log response: {e}")))
}

/// `GET|POST pods/<name>/exec` with an Upgrade: the client's upgrade request is replayed to
/// the kubelet and, once both sides switched protocols, bytes are copied both ways.
pub async fn exec(
    st: &ApiState,
    ns: &str,
    pod: &str,
    query: &HashMap<String, String>,
    raw_query: &str,
    mut req: Request,
) -> ApiResult<Response> {
    let (addr, container) = target(st, ns, pod, query)?;
    if !req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
    {
        return Err(ApiError::bad_request(
            "exec needs a websocket upgrade (SPDY is not supported); use a kubectl of version 1.30 or later",
        ));
    }
    // The query keeps its repeated `command` parameters: pass it on as it came.
    let rest: Vec<(String, String)> = form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != "container")
        .collect();
    let q = {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &rest {
            ser.append_pair(k, v);
        }
        ser.finish()
    };
    let uri = format!("/exec/{ns}/{pod}/{container}?{q}");
    let mut up = hyper::Request::builder()
        .method(req.method().clone())
        .uri(uri)
        .header("host", addr.to_string());
    for name in [
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    ] {
        for v in req.headers().get_all(name) {
            up = up.header(name, v);
        }
    }
    let mut resp = kubelet_upgrade(st, addr, up).await?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = refusal_body(resp).await;
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status.as_u16() {
            404 => ApiError::not_found("", "pods", pod),
            400 => ApiError::bad_request(msg),
            _ => ApiError::internal(format!("kubelet answered {status}: {msg}")),
        });
    }
    let mut out = Response::builder().status(101);
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    let kubelet_side = hyper::upgrade::on(&mut resp);
    let client_side = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (Ok(a), Ok(b)) = (client_side.await, kubelet_side.await) else {
            return;
        };
        let mut a = TokioIo::new(a);
        let mut b = TokioIo::new(b);
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    out.body(Body::empty())
        .map_err(|e| ApiError::internal(format!("building the exec response: {e}")))
}
