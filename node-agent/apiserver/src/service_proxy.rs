//! `pods/proxy` and `services/proxy`: plain HTTP to a pod's address, or to an endpoint of a
//! Service's port, chosen as kube-apiserver's `ResourceLocation` chooses them
//! (`pkg/registry/core/{pod,service}`): the id is `[scheme:]name[:port]`; a pod's port is a
//! number or a container port's name (default: its first container port); a Service's port is
//! its name or number (default: its only port), and the endpoint is a random ready address of
//! the Endpoints subset carrying that port's name. The request and response stream through;
//! no endpoint is 503 `no endpoints available for service "…"`, as upstream says it.
//!
//! The API server runs in the control-plane node's network namespace, which routes to every
//! node's pod CIDR, so it dials pod addresses directly, as kube-apiserver does. HTTPS to
//! pods is not offered.

use super::ApiState;
use crate::errors::{ApiError, ApiResult};
use crate::resources::idx;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `[scheme:]name[:port]` (apimachinery's `SplitSchemeNamePort`).
pub fn split_id(id: &str) -> ApiResult<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return Err(ApiError::bad_request(format!("invalid request {id:?}"))),
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return Err(ApiError::bad_request(format!("invalid request {id:?}")));
    }
    if scheme == "https" {
        return Err(ApiError::bad_request(format!(
            "{id:?}: minikind proxies plain HTTP only"
        )));
    }
    Ok((scheme, name, port))
}

fn ip_of(v: &Value, ptr: &str) -> Option<std::net::IpAddr> {
    v.pointer(ptr)?.as_str()?.parse().ok()
}

/// Where `pods/<id>/proxy` goes.
pub fn pod_target(st: &ApiState, ns: &str, id: &str) -> ApiResult<SocketAddr> {
    let (_, name, port) = split_id(id)?;
    let pod = st
        .store
        .get(idx::pods(), ns, name)
        .ok_or_else(|| ApiError::not_found("", "pods", name))?
        .value();
    let ip = ip_of(&pod, "/status/podIP").ok_or_else(|| {
        ApiError::service_unavailable(format!("pod {name} has no IP address yet"))
    })?;
    let ports: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .collect();
    let number = |p: &Value| p.get("containerPort").and_then(Value::as_u64);
    let port = if port.is_empty() {
        ports.first().and_then(|p| number(p)).ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {name} declares no container port: name one in the URL ({name}:PORT)"
            ))
        })?
    } else if let Ok(n) = port.parse::<u64>() {
        n
    } else {
        ports
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(port))
            .and_then(|p| number(p))
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} has no container port named {port:?}"))
            })?
    };
    let port = u16::try_from(port)
        .map_err(|_| ApiError::bad_request(format!("port {port} is out of range")))?;
    Ok(SocketAddr::new(ip, port))
}

/// Where `services/<id>/proxy` goes.
pub fn service_target(st: &ApiState, ns: &str, id: &str) -> ApiResult<SocketAddr> {
    let (_, name, port) = split_id(id)?;
    let svc = st
        .store
        .get(idx::services(), ns, name)
        .ok_or_else(|| ApiError::not_found("", "services", name))?
        .value();
    let ports: Vec<&Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let port_name = |p: &Value| {
        p.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let wanted = if let Ok(n) = port.parse::<u64>() {
        ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(n))
            .map(|p| port_name(p))
            .ok_or_else(|| {
                ApiError::service_unavailable(format!(
                    "no service port {n} found for service {name:?}"
                ))
            })?
    } else if port.is_empty() && ports.len() == 1 {
        port_name(ports[0])
    } else {
        port.to_string()
    };
    let none =
        || ApiError::service_unavailable(format!("no endpoints available for service {id:?}"));
    let eps = st
        .store
        .get(idx::endpoints(), ns, name)
        .ok_or_else(none)?
        .value();
    let mut choices = Vec::new();
    for ss in eps
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(p) = ss
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| port_name(p) == wanted)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for a in ss
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = ip_of(a, "/ip") {
                choices.push(SocketAddr::new(ip, p));
            }
        }
    }
    if choices.is_empty() {
        return Err(none());
    }
    Ok(choices[rand::rng().random_range(0..choices.len())])
}

/// Forwards `req` to `addr` with path `path` (and the request's query), streaming both ways.
pub async fn forward(
    addr: SocketAddr,
    path: &str,
    raw_query: &str,
    req: Request,
) -> ApiResult<Response> {
    let reach =
        |e: String| ApiError::service_unavailable(format!("error trying to reach {addr}: {e}"));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| reach("dial timed out".into()))?
        .map_err(|e| reach(e.to_string()))?;
    forward_on(tcp, addr, path, raw_query, req).await
}

/// [`forward`] over a connection already made (plain TCP, or TLS to a kubelet).
pub async fn forward_on<S>(
    io: S,
    addr: SocketAddr,
    path: &str,
    raw_query: &str,
    req: Request,
) -> ApiResult<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let reach =
        |e: String| ApiError::service_unavailable(format!("error trying to reach {addr}: {e}"));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| reach(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = if raw_query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{raw_query}")
    };
    let (parts, body) = req.into_parts();
    let mut out = hyper::Request::builder()
        .method(parts.method)
        .uri(uri)
        .header("host", addr.to_string());
    for (k, v) in &parts.headers {
        // Hop-by-hop headers and the caller's credentials stay here.
        if !matches!(
            k.as_str(),
            "host"
                | "authorization"
                | "connection"
                | "upgrade"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "keep-alive"
                | "proxy-authorization"
        ) {
            out = out.header(k, v);
        }
    }
    let out = out
        .body(body)
        .map_err(|e| ApiError::internal(format!("building the proxied request: {e}")))?;
    let resp = send
        .send_request(out)
        .await
        .map_err(|e| reach(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    let mut r = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "keep-alive"
        ) {
            r = r.header(k, v);
        }
    }
    r.body(Body::new(body))
        .map_err(|e| ApiError::internal(format!("building the proxied response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_as_apimachinery_splits_them() {
        assert_eq!(split_id("web").unwrap(), ("", "web", ""));
        assert_eq!(split_id("kube-dns:dns").unwrap(), ("", "kube-dns", "dns"));
        assert_eq!(split_id("http:web:8080").unwrap(), ("http", "web", "8080"));
        assert_eq!(split_id("a:b:c:d").unwrap_err().code, 400);
        assert_eq!(split_id("ftp:web:1").unwrap_err().code, 400);
        assert_eq!(split_id("https:web:443").unwrap_err().code, 400);
    }
}
