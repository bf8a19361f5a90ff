//! `pods/portforward`: proxied to the kubelet of the pod's node (`/portForward/{ns}/{pod}`),
//! which speaks SPDY/3.1 with stream protocol `portforward.k8s.io`. Two ways in, as
//! kube-apiserver 1.31+ serves them:
//!
//! - a WebSocket whose subprotocols are SPDY ones with the `SPDY/3.1+` prefix
//!   (`SPDY/3.1+portforward.k8s.io`, what kubectl 1.31+ asks for first): apiserver's
//!   `util/proxy/streamtunnel.go` handler. The upgrade to the kubelet is made as a SPDY one
//!   with the prefix taken off; once the kubelet switched protocols, the client gets the
//!   WebSocket handshake with the kubelet's choice prefixed again, and the SPDY bytes ride in
//!   binary WebSocket messages (client-go's `tunneling_connection.go` reads them as one
//!   byte stream, so message boundaries mean nothing);
//! - a plain `Upgrade: SPDY/3.1` request (kubectl's fallback): passed through as exec's
//!   upgrades are.
//!
//! A backend answer other than 101 goes back to the client as it came.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::ApiState;
use crate::errors::{ApiError, ApiResult};

/// The prefix that marks a SPDY protocol tunneled through a WebSocket (apimachinery's
/// `portforward.WebsocketsSPDYTunnelingPrefix`).
pub const TUNNELING_PREFIX: &str = "SPDY/3.1+";
/// The suffix a tunneled protocol must have (`portforward.KubernetesSuffix`).
const KUBERNETES_SUFFIX: &str = ".k8s.io";
const SPDY: &str = "SPDY/3.1";
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

fn tokens<'a>(h: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The SPDY protocols a tunneling client offers, prefix removed (`streamtunnel.go`'s
/// `spdyProtocolsFromWebsocketProtocols`).
pub fn tunneled_protocols(h: &HeaderMap) -> Vec<String> {
    tokens(h, "sec-websocket-protocol")
        .filter(|p| p.starts_with(TUNNELING_PREFIX) && p.ends_with(KUBERNETES_SUFFIX))
        .map(|p| p[TUNNELING_PREFIX.len()..].to_string())
        .collect()
}

enum Mode {
    /// SPDY inside a WebSocket, with the client's key.
    Tunnel(HeaderValue),
    /// SPDY end to end.
    Spdy,
}

/// `GET|POST pods/<name>/portforward`.
pub async fn forward(
    st: &ApiState,
    ns: &str,
    pod: &str,
    raw_query: &str,
    mut req: Request,
) -> ApiResult<Response> {
    let h = req.headers();
    let upgrade_to = |token: &str| tokens(h, "upgrade").any(|t| t.eq_ignore_ascii_case(token));
    let (mode, protocols) = if upgrade_to("websocket") {
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(ApiError::bad_request(
                "unable to upgrade: the WebSocket request has no Sec-WebSocket-Key",
            ));
        };
        let p = tunneled_protocols(h);
        if p.is_empty() {
            return Err(ApiError::bad_request(
                "unable to upgrade: no tunneling spdy protocols provided",
            ));
        }
        (Mode::Tunnel(key), p)
    } else if upgrade_to(SPDY) {
        (
            Mode::Spdy,
            tokens(h, PROTOCOL_HEADER).map(String::from).collect(),
        )
    } else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let addr = crate::proxy::pod_kubelet(st, ns, pod)?;
    let uri = if raw_query.is_empty() {
        format!("/portForward/{ns}/{pod}")
    } else {
        format!("/portForward/{ns}/{pod}?{raw_query}")
    };
    // The upgrade the kubelet sees is a SPDY one in both cases (`createSPDYRequest`).
    let mut up = hyper::Request::post(uri)
        .header("host", addr.to_string())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, SPDY);
    for p in &protocols {
        up = up.header(PROTOCOL_HEADER, p.as_str());
    }
    let mut resp = crate::proxy::kubelet_upgrade(st, addr, up).await?;
    if resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        // Passed through as it came (a refused protocol, a pod without a sandbox, …).
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = crate::proxy::refusal_body(resp).await;
        let mut out = Response::builder().status(status);
        for (k, v) in &headers {
            if k != header::TRANSFER_ENCODING && k != header::CONTENT_LENGTH {
                out = out.header(k, v);
            }
        }
        return out
            .body(Body::from(body))
            .map_err(|e| ApiError::internal(format!("building the response: {e}")));
    }
    let chosen = resp
        .headers()
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from);
    let kubelet_side = hyper::upgrade::on(&mut resp);
    let client_side = hyper::upgrade::on(&mut req);
    let out = match mode {
        Mode::Spdy => {
            let mut out = Response::builder().status(101);
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            tokio::spawn(async move {
                let (Ok(a), Ok(b)) = (client_side.await, kubelet_side.await) else {
                    return;
                };
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
            });
            out
        }
        Mode::Tunnel(key) => {
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            let mut out = Response::builder()
                .status(101)
                .header(header::UPGRADE, "websocket")
                .header(header::CONNECTION, "Upgrade")
                .header(header::SEC_WEBSOCKET_ACCEPT, accept);
            if let Some(p) = chosen {
                out = out.header(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    format!("{TUNNELING_PREFIX}{p}"),
                );
            }
            tokio::spawn(async move {
                let (Ok(a), Ok(b)) = (client_side.await, kubelet_side.await) else {
                    return;
                };
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(a), Role::Server, None).await;
                tunnel(ws, TokioIo::new(b)).await;
            });
            out
        }
    };
    out.body(Body::empty())
        .map_err(|e| ApiError::internal(format!("building the port-forward response: {e}")))
}

/// Copies binary WebSocket messages to the kubelet's byte stream and back until either side
/// ends; the WebSocket then gets a normal close.
pub async fn tunnel<W, K>(ws: WebSocketStream<W>, kubelet: K)
where
    W: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    K: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (mut krd, mut kwr) = tokio::io::split(kubelet);
    let up = async {
        while let Some(m) = source.next().await {
            match m {
                Ok(Message::Binary(b)) => {
                    if kwr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                // client-go's tunneling connection sends nothing else; a close ends it.
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = kwr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match krd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(buf[..n].to_vec().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_prefixed_kubernetes_protocols_are_tunneled() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(
                "SPDY/3.1+portforward.k8s.io, v4.channel.k8s.io, SPDY/3.1+other.example",
            ),
        );
        assert_eq!(tunneled_protocols(&h), vec!["portforward.k8s.io"]);
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(tunneled_protocols(&h).is_empty());
    }
}
