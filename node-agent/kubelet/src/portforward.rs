//! `/portForward/{ns}/{pod}`: the kubelet's port-forward endpoint, which the API server proxies
//! `pods/portforward` to. As the kubelet's `pkg/kubelet/cri/streaming/portforward`
//! (`httpstream.go`) does, the request is upgraded to SPDY/3.1 with subprotocol
//! `portforward.k8s.io`; the client then opens, per forwarded connection, an *error* stream and
//! a *data* stream carrying the same `port` and `requestID` headers. Once both are there, the
//! kubelet connects to `localhost:<port>` inside the pod's network namespace (as containerd's
//! `portForward` does: IPv4 first, then IPv6), copies bytes between that connection and the
//! data stream, and writes what went wrong, if anything, on the error stream before closing
//! both.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Kubelet;
use super::spdy::{self, Frame};

/// The stream protocol of the SPDY connection (apimachinery's `portforward.k8s.io`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The HTTP upgrade token (apimachinery's `spdy.HeaderSpdy31`).
pub const UPGRADE: &str = "SPDY/3.1";
/// The header the client offers protocols in and the server answers its choice in.
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// How long the second stream of a pair may lag behind the first (the kubelet's
/// `streamCreationTimeout` default).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one direction may go on once the other ended (containerd's port forwarder).
const LINGER: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CHUNK: usize = 32 * 1024;

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(msg.into()))
        .unwrap_or_default()
}

/// The values of the protocol header, split on commas.
pub fn offered_protocols(h: &HeaderMap) -> Vec<String> {
    h.get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn is_spdy_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, UPGRADE)
}

pub async fn port_forward_with_uid(
    state: State<Arc<Kubelet>>,
    Path((ns, pod, _uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    port_forward(state, Path((ns, pod)), req).await
}

pub async fn port_forward(
    State(k): State<Arc<Kubelet>>,
    Path((ns, pod)): Path<(String, String)>,
    mut req: Request,
) -> Response {
    let Some(h) = k.pod(&ns, &pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} not found on this node"),
        );
    };
    let Some(sandbox) = h.sandbox.read().ok().and_then(|s| s.clone()) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("pod {pod:?} has no sandbox yet: ContainerCreating"),
        );
    };
    if !is_spdy_upgrade(req.headers()) {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request (port forwarding speaks SPDY/3.1)",
        );
    }
    // As apimachinery's `httpstream.Handshake`: a client that names no protocol is an old
    // one and gets the only one there is; one that names others is refused.
    let offered = offered_protocols(req.headers());
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
        return Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header("x-accepted-stream-protocol-versions", PROTOCOL)
            .body(Body::from(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{PROTOCOL:?}]"
            )))
            .unwrap_or_default();
    }
    let target = Target {
        netns: sandbox
            .netns
            .as_ref()
            .map(|n| std::path::Path::new("/run/netns").join(n)),
        pod: format!("{ns}/{pod}"),
        uid: h.uid.clone(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let shutdown = k.shutdown.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let io = hyper_util::rt::TokioIo::new(up);
                if let Err(e) = serve(io, target, shutdown).await {
                    tracing::debug!("port-forward: {e:#}");
                }
            }
            Err(e) => tracing::debug!("port-forward upgrade: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, UPGRADE)
        .header(PROTOCOL_HEADER, PROTOCOL)
        .body(Body::empty())
        .unwrap_or_default()
}

/// Where connections go: the pod's network namespace (None: the node's, `hostNetwork`).
#[derive(Debug, Clone)]
pub struct Target {
    pub netns: Option<PathBuf>,
    /// `ns/name` and UID, for error messages.
    pub pod: String,
    pub uid: String,
}

/// One forwarded connection's two streams, as they arrive.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
    data_rx: Option<mpsc::UnboundedReceiver<Option<Bytes>>>,
}

/// The stream headers of apimachinery's `portforward` constants.
struct StreamAsk {
    kind: &'static str,
    port: u16,
    request: String,
}

/// Checks a new stream's headers as the kubelet's `httpStreamReceived` does.
fn parse_stream(stream: u32, h: &spdy::Headers) -> Result<StreamAsk, String> {
    let port = spdy::header(h, "port").filter(|p| !p.is_empty());
    let Some(port) = port else {
        return Err("\"port\" header is required".into());
    };
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    let kind = match spdy::header(h, "streamtype") {
        None | Some("") => return Err("\"streamType\" header is required".into()),
        Some("error") => "error",
        Some("data") => "data",
        Some(other) => return Err(format!("invalid stream type {other:?}")),
    };
    // Old clients sent no requestID: the error stream came right before its data stream.
    let request = match spdy::header(h, "requestid").filter(|r| !r.is_empty()) {
        Some(r) => r.to_string(),
        None if kind == "error" => stream.to_string(),
        None => stream.saturating_sub(2).to_string(),
    };
    Ok(StreamAsk {
        kind,
        port,
        request,
    })
}

enum Event {
    Frame(Frame),
    /// The client closed the connection (or sent what is no SPDY).
    Closed,
    PairTimeout(String),
    Done(String),
}

/// Runs one SPDY connection until the client closes it.
pub async fn serve<T>(io: T, target: Target, shutdown: CancellationToken) -> Result<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    // One writer: frames go out in order, through the connection's one header compressor.
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Frame>();
    let writer = tokio::spawn(async move {
        let mut w = spdy::Writer::new();
        while let Some(f) = out_rx.recv().await {
            let bytes = w.encode(&f)?;
            wr.write_all(&bytes).await.context("writing a SPDY frame")?;
        }
        let _ = wr.shutdown().await;
        anyhow::Ok(())
    });
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Event>();
    let reader = {
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            let mut r = spdy::Reader::new(rd);
            loop {
                match r.next().await {
                    Ok(Some(f)) => {
                        if ev_tx.send(Event::Frame(f)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("port-forward: {e:#}");
                        break;
                    }
                }
            }
            let _ = ev_tx.send(Event::Closed);
        })
    };
    let conn_done = CancellationToken::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Where DATA frames of the client's data streams go.
    let mut inbound: HashMap<u32, mpsc::UnboundedSender<Option<Bytes>>> = HashMap::new();
    let mut last_stream = 0u32;
    loop {
        let ev = tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = ev_rx.recv() => ev,
        };
        let frame = match ev {
            Some(Event::Frame(f)) => f,
            // The client is gone.
            None | Some(Event::Closed) => break,
            Some(Event::PairTimeout(id)) => {
                if let Some(p) = pairs.remove(&id)
                    && let Some(e) = p.error
                {
                    let msg = format!("timed out waiting for the data stream of request {id}");
                    let _ = out_tx.send(Frame::Data {
                        stream: e,
                        fin: true,
                        data: msg.into(),
                    });
                }
                continue;
            }
            Some(Event::Done(id)) => {
                pairs.remove(&id);
                continue;
            }
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                last_stream = last_stream.max(stream);
                let ask = match parse_stream(stream, &headers) {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("port-forward: refusing stream {stream}: {e}");
                        let _ = out_tx.send(Frame::RstStream {
                            stream,
                            status: spdy::REFUSED_STREAM,
                        });
                        continue;
                    }
                };
                let _ = out_tx.send(Frame::SynReply {
                    stream,
                    flags: 0,
                    headers: vec![],
                });
                let fresh = !pairs.contains_key(&ask.request);
                let p = pairs.entry(ask.request.clone()).or_default();
                p.port = ask.port;
                if ask.kind == "error" {
                    p.error = Some(stream);
                } else {
                    let (tx, rx) = mpsc::unbounded_channel();
                    inbound.insert(stream, tx);
                    p.data = Some(stream);
                    p.data_rx = Some(rx);
                }
                if fresh {
                    let ev_tx = ev_tx.clone();
                    let id = ask.request.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(PAIR_TIMEOUT).await;
                        let _ = ev_tx.send(Event::PairTimeout(id));
                    });
                }
                if let Some(p) = pairs.get_mut(&ask.request)
                    && let (Some(error), Some(data), Some(rx)) = (p.error, p.data, p.data_rx.take())
                {
                    let fwd = Forward {
                        target: target.clone(),
                        port: p.port,
                        error,
                        data,
                        out: out_tx.clone(),
                        stop: conn_done.child_token(),
                    };
                    let ev_tx = ev_tx.clone();
                    let id = ask.request.clone();
                    // A completed pair is no longer waited for (the timeout finds nothing).
                    p.data = None;
                    p.error = None;
                    tokio::spawn(async move {
                        fwd.run(rx).await;
                        let _ = ev_tx.send(Event::Done(id));
                    });
                }
            }
            Frame::Data { stream, fin, data } => {
                if let Some(tx) = inbound.get(&stream) {
                    if !data.is_empty() {
                        let _ = tx.send(Some(data));
                    }
                    if fin {
                        let _ = tx.send(None);
                        inbound.remove(&stream);
                    }
                }
            }
            Frame::RstStream { stream, .. } => {
                // The client gave up on the stream: its side ends here.
                inbound.remove(&stream);
            }
            // Pings from the client (odd IDs) are answered with the same frame.
            Frame::Ping(id) => {
                let _ = out_tx.send(Frame::Ping(id));
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. } | Frame::Headers { .. } | Frame::Ignored(_) => {}
        }
    }
    conn_done.cancel();
    reader.abort();
    let _ = out_tx.send(Frame::GoAway {
        last_good: last_stream,
        status: 0,
    });
    drop(out_tx);
    drop(ev_tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    Ok(())
}

/// One forwarded connection.
struct Forward {
    target: Target,
    port: u16,
    error: u32,
    data: u32,
    out: mpsc::UnboundedSender<Frame>,
    stop: CancellationToken,
}

impl Forward {
    async fn run(self, mut from_client: mpsc::UnboundedReceiver<Option<Bytes>>) {
        let result = async {
            let conn = connect(&self.target, self.port).await?;
            let (mut rd, mut wr) = conn.into_split();
            let (stream, out) = (self.data, self.out.clone());
            let mut to_client = tokio::spawn(async move {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let data = Bytes::copy_from_slice(&buf[..n]);
                            if out
                                .send(Frame::Data {
                                    stream,
                                    fin: false,
                                    data,
                                })
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            });
            let mut to_pod = tokio::spawn(async move {
                while let Some(Some(data)) = from_client.recv().await {
                    if wr.write_all(&data).await.is_err() {
                        return;
                    }
                }
                // The client finished sending (or reset the stream).
                let _ = wr.shutdown().await;
            });
            // The first direction to end ends the other within a second, as containerd does.
            tokio::select! {
                _ = &mut to_client => {
                    let _ = tokio::time::timeout(LINGER, &mut to_pod).await;
                }
                _ = &mut to_pod => {
                    let _ = tokio::time::timeout(LINGER, &mut to_client).await;
                }
                _ = self.stop.cancelled() => {}
            }
            to_client.abort();
            to_pod.abort();
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = result {
            let msg = format!(
                "error forwarding port {} to pod {}, uid {}: {e:#}",
                self.port, self.target.pod, self.target.uid
            );
            tracing::debug!("port-forward: {msg}");
            let _ = self.out.send(Frame::Data {
                stream: self.error,
                fin: false,
                data: msg.into(),
            });
        }
        for stream in [self.data, self.error] {
            let _ = self.out.send(Frame::Data {
                stream,
                fin: true,
                data: Bytes::new(),
            });
        }
    }
}

/// Connects to `localhost:<port>` in the target's network namespace.
async fn connect(target: &Target, port: u16) -> Result<tokio::net::TcpStream> {
    let netns = target.netns.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: joining a network namespace changes the calling thread for good,
    // which must never be one of the runtime's.
    std::thread::Builder::new()
        .name("port-forward-dial".into())
        .spawn(move || {
            let _ = tx.send(dial_in(netns.as_deref(), port));
        })
        .context("starting the dialing thread")?;
    let std = rx.await.context("the dialing thread ended")??;
    std.set_nonblocking(true)?;
    let s = tokio::net::TcpStream::from_std(std)?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn dial_in(netns: Option<&std::path::Path>, port: u16) -> Result<std::net::TcpStream> {
    if let Some(ns) = netns {
        let f = std::fs::File::open(ns)
            .with_context(|| format!("opening the network namespace {}", ns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering the network namespace {}", ns.display()))?;
    }
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
            let ns = netns
                .map(|n| n.display().to_string())
                .unwrap_or_else(|| "of the node".into());
            anyhow::anyhow!(
                "failed to connect to localhost:{port} inside namespace {ns:?}, IPv4: {e4} IPv6 {e6}"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> spdy::Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn syn(stream: u32, kind: &str, port: u16, request: &str) -> Frame {
        Frame::SynStream {
            stream,
            flags: 0,
            headers: h(&[
                ("streamtype", kind),
                ("port", &port.to_string()),
                ("requestid", request),
            ]),
        }
    }

    /// A SPDY session against [`serve`] on the node's own loopback (a `hostNetwork` pod):
    /// pings answered, bad streams refused, a pair forwarded to a local server with both
    /// streams finished after it, a refused port reported on the error stream.
    #[tokio::test]
    async fn a_session_forwards_pairs_and_reports_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong:").await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        // A port nothing listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);

        let (client, server) = tokio::io::duplex(64 * 1024);
        let target = Target {
            netns: None,
            pod: "default/web".into(),
            uid: "u1".into(),
        };
        let session = tokio::spawn(serve(server, target, CancellationToken::new()));
        let (rd, mut wr) = tokio::io::split(client);
        let mut r = spdy::Reader::new(rd);
        let mut w = spdy::Writer::new();
        let mut send = async |f: Frame| wr.write_all(&w.encode(&f).unwrap()).await.unwrap();
        send(Frame::Ping(1)).await;
        send(syn(1, "stdin", port, "0")).await;
        send(syn(3, "error", port, "1")).await;
        send(syn(5, "data", port, "1")).await;
        send(Frame::Data {
            stream: 5,
            fin: true,
            data: Bytes::from_static(b"ping"),
        })
        .await;
        send(syn(7, "error", closed_port, "2")).await;
        send(syn(9, "data", closed_port, "2")).await;

        let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut fins = Vec::new();
        let mut seen = Vec::new();
        while fins.len() < 4 {
            let f = tokio::time::timeout(Duration::from_secs(10), r.next())
                .await
                .expect("the session answers")
                .unwrap()
                .expect("the session stays open");
            match f {
                Frame::Data { stream, fin, data } => {
                    got.entry(stream).or_default().extend_from_slice(&data);
                    if fin {
                        fins.push(stream);
                    }
                }
                other => seen.push(other),
            }
        }
        assert!(seen.contains(&Frame::Ping(1)), "{seen:?}");
        assert!(
            seen.contains(&Frame::RstStream {
                stream: 1,
                status: spdy::REFUSED_STREAM
            }),
            "{seen:?}"
        );
        for s in [3, 5, 7, 9] {
            assert!(
                seen.contains(&Frame::SynReply {
                    stream: s,
                    flags: 0,
                    headers: vec![]
                }),
                "reply to {s}: {seen:?}"
            );
        }
        fins.sort();
        assert_eq!(fins, vec![3, 5, 7, 9]);
        assert_eq!(got.get(&5).map(Vec::as_slice), Some(&b"pong:ping"[..]));
        assert!(got.get(&3).is_none_or(Vec::is_empty), "{got:?}");
        let err = String::from_utf8_lossy(&got[&7]).into_owned();
        assert!(
            err.starts_with(&format!(
                "error forwarding port {closed_port} to pod default/web, uid u1: failed to connect to localhost:{closed_port} inside namespace \"of the node\", IPv4: "
            )),
            "{err}"
        );
        // The client hangs up: the session ends.
        drop(wr);
        drop(r);
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ends with the connection")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn stream_headers_are_checked_like_the_kubelets() {
        let ok = parse_stream(
            5,
            &h(&[("streamtype", "data"), ("port", "8080"), ("requestid", "2")]),
        )
        .unwrap();
        assert_eq!((ok.kind, ok.port, ok.request.as_str()), ("data", 8080, "2"));
        // No requestID: the data stream pairs with the error stream just before it.
        let legacy = parse_stream(5, &h(&[("streamtype", "data"), ("port", "80")])).unwrap();
        assert_eq!(legacy.request, "3");
        let e = |hs: &[(&str, &str)]| parse_stream(1, &h(hs)).err().unwrap();
        assert_eq!(e(&[("streamtype", "data")]), "\"port\" header is required");
        assert!(e(&[("streamtype", "data"), ("port", "http")]).starts_with("unable to parse"));
        assert_eq!(
            e(&[("streamtype", "data"), ("port", "0")]),
            "port \"0\" must be > 0"
        );
        assert_eq!(e(&[("port", "80")]), "\"streamType\" header is required");
        assert_eq!(
            e(&[("streamtype", "stdin"), ("port", "80")]),
            "invalid stream type \"stdin\""
        );
    }
}
