//! The kubelet endpoint the API server proxies `pods/log` and `pods/exec` to:
//! `GET /containerLogs/{ns}/{pod}/{container}` (`follow`, `tailLines`, `previous`,
//! `timestamps`, `limitBytes`, `sinceSeconds`) and `/exec/{ns}/{pod}/{container}?command=…`
//! upgraded to a websocket with subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`
//! (one channel byte first: 0 stdin, 1 stdout, 2 stderr, 3 status JSON, 4 resize, 255 close),
//! and `/portForward/{ns}/{pod}` upgraded to SPDY/3.1 ([`crate::portforward`]).
//!
//! It serves HTTPS only, and only to the API server: see [`crate::auth`] for who may call it
//! and how (mutual TLS against the cluster CA; `/healthz` alone is public).

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use tower::ServiceExt;

use super::Kubelet;
use super::auth;
use super::handles::{ContainerHandle, ProcessTemplate};
use super::logs::{self, LogOptions};
use super::spawn::{self, ProcessSpec};

/// The exec subprotocols, preferred first.
pub const EXEC_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const STATUS: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// How long a caller has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the endpoint over TLS until the kubelet stops: each connection's client certificate
/// (if any) names the caller, and [`auth::check`] decides before the router sees a request.
pub async fn serve(
    k: Arc<Kubelet>,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
) -> Result<()> {
    let shutdown = k.shutdown.clone();
    serve_router(router(k), listener, tls, shutdown).await
}

/// [`serve`] for any router (tests stand in fake kubelets behind the same TLS and checks).
pub async fn serve_router(
    app: Router,
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<()> {
    loop {
        let sock = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("kubelet endpoint: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (app, tls, shutdown) = (app.clone(), tls.clone(), shutdown.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(sock)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!("kubelet endpoint: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let caller = match stream.get_ref().1.peer_certificates() {
                Some([leaf, ..]) => match auth::Caller::from_der(leaf) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::debug!("kubelet endpoint: {e:#}");
                        return;
                    }
                },
                _ => None,
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    let caller = caller.clone();
                    async move {
                        if let Some(refused) =
                            auth::check(req.method(), req.uri().path(), caller.as_ref())
                        {
                            return Ok::<_, std::convert::Infallible>(refused);
                        }
                        app.oneshot(req.map(Body::new)).await
                    }
                });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!("kubelet endpoint: connection ended: {e}");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

pub fn router(k: Arc<Kubelet>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/exec/{ns}/{pod}/{uid}/{container}",
            get(exec_with_uid).post(exec_with_uid),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(super::portforward::port_forward).post(super::portforward::port_forward),
        )
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            get(super::portforward::port_forward_with_uid)
                .post(super::portforward::port_forward_with_uid),
        )
        .with_state(k)
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into(),
    )
        .into_response()
}

/// The query as a multimap (`command` repeats).
fn query_pairs(q: Option<String>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        out.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    out
}

fn flag(q: &HashMap<String, Vec<String>>, name: &str) -> bool {
    q.get(name)
        .and_then(|v| v.last())
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn number<T: std::str::FromStr>(
    q: &HashMap<String, Vec<String>>,
    name: &str,
) -> Result<Option<T>, Box<Response>> {
    match q.get(name).and_then(|v| v.last()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Box::new(text(
                StatusCode::BAD_REQUEST,
                format!("{name}={v:?} is not a valid number"),
            ))
        }),
    }
}

/// The pods this kubelet runs, briefly.
async fn pods(State(k): State<Arc<Kubelet>>) -> Response {
    let pods: Vec<serde_json::Value> = k
        .pods
        .read()
        .map(|p| {
            p.values()
                .map(|h| {
                    let rt = h.runtime();
                    json!({
                        "metadata": {"namespace": h.namespace, "name": h.name, "uid": h.uid},
                        "status": {"phase": super::status::phase(&rt),
                                   "podIP": rt.pod_ip.map(|i| i.to_string())},
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    axum::Json(json!({"kind": "PodList", "apiVersion": "v1", "items": pods})).into_response()
}

fn find_container(
    k: &Kubelet,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<Arc<ContainerHandle>, Box<Response>> {
    let Some(h) = k.pod(ns, pod) else {
        return Err(Box::new(text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} not found on this node"),
        )));
    };
    h.container(container).ok_or_else(|| {
        Box::new(if h.runtime().containers.iter().any(|c| c.name == container) {
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            )
        } else {
            text(
                StatusCode::BAD_REQUEST,
                format!("container {container} is not valid for pod {pod}"),
            )
        })
    })
}

async fn container_logs(
    State(k): State<Arc<Kubelet>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = query_pairs(q);
    let ch = match find_container(&k, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let opts = LogOptions {
        follow: flag(&q, "follow"),
        previous: flag(&q, "previous"),
        timestamps: flag(&q, "timestamps"),
        tail_lines: match number(&q, "tailLines") {
            Ok(v) => v,
            Err(r) => return *r,
        },
        limit_bytes: match number(&q, "limitBytes") {
            Ok(v) => v,
            Err(r) => return *r,
        },
        since_seconds: match number(&q, "sinceSeconds") {
            Ok(v) => v,
            Err(r) => return *r,
        },
    };
    let run = *ch.run.borrow();
    let restart = if opts.previous {
        run.restart - 1
    } else {
        run.restart
    };
    let path = logs::run_file(&ch.log_dir, restart);
    let data = match tokio::fs::read(&path).await {
        Ok(d) if restart >= 0 => d,
        _ if opts.previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
            );
        }
    };
    let first = logs::render(&data, &opts);
    if !opts.follow || opts.previous {
        return text(StatusCode::OK, String::from_utf8_lossy(&first).into_owned());
    }
    // Follow: what is there now, then what the run writes until it ends.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    let (done_tx, done_rx) = tokio::sync::watch::channel(!run.running);
    let mut run_rx = ch.run.subscribe();
    tokio::spawn(async move {
        let _ = run_rx
            .wait_for(|r| !r.running || r.restart != restart)
            .await;
        let _ = done_tx.send(true);
    });
    let offset = data.len() as u64;
    let timestamps = opts.timestamps;
    tokio::spawn(async move {
        if !first.is_empty() && tx.send(first).await.is_err() {
            return;
        }
        logs::follow(path, offset, timestamps, done_rx, tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(bytes::Bytes::from(b)), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "building the response"))
}

async fn exec_with_uid(
    state: State<Arc<Kubelet>>,
    Path((ns, pod, _uid, container)): Path<(String, String, String, String)>,
    q: RawQuery,
    req: Request,
) -> Response {
    exec(state, Path((ns, pod, container)), q, req).await
}

/// What the exec request asked for.
#[derive(Debug, Clone)]
struct ExecRequest {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
    protocol: &'static str,
}

/// The subprotocol to answer with: the first one the client offers that we speak.
fn choose_protocol(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|offered| EXEC_PROTOCOLS.iter().copied().find(|p| *p == offered))
}

async fn exec(
    State(k): State<Arc<Kubelet>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Response {
    let q = query_pairs(q);
    let command = q.get("command").cloned().unwrap_or_default();
    if command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least one command for the container",
        );
    }
    let ch = match find_container(&k, &ns, &pod, &container) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if !ch.run.borrow().running {
        return text(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} is not running"),
        );
    }
    let headers = req.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs a websocket upgrade (SPDY is not supported by minikind's kubelet)",
        );
    };
    if !upgrade {
        return text(StatusCode::BAD_REQUEST, "exec needs a websocket upgrade");
    }
    let Some(protocol) = choose_protocol(headers) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "no supported exec subprotocol offered; supported: {}",
                EXEC_PROTOCOLS.join(", ")
            ),
        );
    };
    let ask = ExecRequest {
        command,
        stdin: flag(&q, "stdin"),
        stdout: flag(&q, "stdout"),
        stderr: flag(&q, "stderr"),
        tty: flag(&q, "tty"),
        protocol,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let tmpl = ch.template();
    let pid = ch.run.borrow().pid;
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                if let Err(e) = run_exec(ws, tmpl, pid, ask).await {
                    tracing::debug!("exec: {e:#}");
                }
            }
            Err(e) => tracing::debug!("exec upgrade: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        )
        .body(Body::empty())
        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "building the response"))
}

/// The metav1.Status sent on channel 3 when the command ends.
pub fn exit_status_json(command: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn finish<S>(ws: &mut S, status: serde_json::Value) -> Result<()>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    ws.send(frame(STATUS, status.to_string().as_bytes()))
        .await
        .context("sending the exit status")?;
    // A close frame with code 1000: client-go (kubectl) takes only a normal closure as the
    // end of the streams. An empty close frame reads as 1005 there, and kubectl then fails
    // with "error reading from error stream" and exit code 1 instead of the command's.
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = ws.send(Message::Close(Some(normal))).await;
    Ok(())
}

/// Runs the command in the container's namespaces and pumps the streams.
async fn run_exec<T>(
    ws: WebSocketStream<T>,
    tmpl: ProcessTemplate,
    pid: Option<i32>,
    ask: ExecRequest,
) -> Result<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let (Some(process), Some(pid)) = (tmpl.process, pid) else {
        let msg = "exec failed: the container is not running".to_string();
        return finish(&mut sink, json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError", "code": 500})).await;
    };
    // The container's user, environment and directory, with the command asked for.
    let spec = ProcessSpec {
        argv: ask.command.clone(),
        ..process
    };
    type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
    type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;
    let started = if ask.tty {
        start_on_terminal(pid, &spec, &ask)
    } else {
        start_with_pipes(pid, &spec, &ask)
    };
    let (mut child, readers, mut stdin, terminal, session): (
        _,
        Vec<(u8, Reader)>,
        Option<Writer>,
        _,
        _,
    ) = match started {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("exec failed: {e:#}");
            return finish(
                    &mut sink,
                    json!({"metadata": {}, "status": "Failure", "message": msg, "reason": "InternalError", "code": 500}),
                )
                .await;
        }
    };
    // The relay's process group, and on a terminal the command's own session.
    let groups: Vec<i32> = child
        .id()
        .map(|p| p as i32)
        .into_iter()
        .chain(session)
        .collect();
    let kill_all = || {
        for g in &groups {
            let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
        }
    };
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(32);
    let mut pumps = Vec::new();
    for (channel, mut reader) in readers {
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                // A terminal's master side reads EIO once the command closed it: the end.
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((channel, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(out_tx);
    let v5 = ask.protocol == EXEC_PROTOCOLS[0];
    let mut client_gone = false;
    let mut outputs_open = true;
    let exit = loop {
        tokio::select! {
            st = child.wait() => break st.context("waiting for the exec process")?,
            msg = stream.next(), if !client_gone => match msg {
                Some(Ok(Message::Binary(data))) if !data.is_empty() => match data[0] {
                    STDIN => {
                        if let Some(s) = stdin.as_mut()
                            && s.write_all(&data[1..]).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    CLOSE if v5 && data.get(1) == Some(&STDIN) => stdin = None,
                    RESIZE => {
                        if let Some(master) = &terminal {
                            resize_from(master, &data[1..]);
                        }
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went away: the command goes too.
                    client_gone = true;
                    stdin = None;
                    kill_all();
                }
                Some(Ok(_)) => {}
            },
            out = out_rx.recv(), if outputs_open => match out {
                Some((channel, data)) => {
                    if sink.send(frame(channel, &data)).await.is_err() {
                        client_gone = true;
                    }
                }
                None => outputs_open = false,
            },
        }
    };
    drop(stdin);
    // What the command left running in its group ends with it (as with a container).
    kill_all();
    let drain = async {
        while let Some((channel, data)) = out_rx.recv().await {
            if sink.send(frame(channel, &data)).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    for p in pumps {
        p.abort();
    }
    if client_gone {
        return Ok(());
    }
    use std::os::unix::process::ExitStatusExt;
    let code = exit
        .code()
        .unwrap_or_else(|| 128 + exit.signal().unwrap_or(0));
    finish(&mut sink, exit_status_json(&ask.command, code)).await
}

type Started = (
    tokio::process::Child,
    Vec<(u8, Box<dyn tokio::io::AsyncRead + Unpin + Send>)>,
    Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>>,
    Option<std::os::fd::OwnedFd>,
    // The session (process group) the command leads on a terminal.
    Option<i32>,
);

/// Starts the command with pipes: stdout on channel 1, stderr on channel 2.
fn start_with_pipes(pid: i32, spec: &ProcessSpec, ask: &ExecRequest) -> Result<Started> {
    let pipe_or_null = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut prepared = spawn::enter_command(pid, spec)?;
    prepared
        .cmd
        .stdin(pipe_or_null(ask.stdin))
        .stdout(pipe_or_null(ask.stdout))
        .stderr(pipe_or_null(ask.stderr));
    let mut child = prepared.spawn()?.child;
    let mut readers: Vec<(u8, Box<dyn tokio::io::AsyncRead + Unpin + Send>)> = Vec::new();
    if let Some(o) = child.stdout.take() {
        readers.push((STDOUT, Box::new(o)));
    }
    if let Some(e) = child.stderr.take() {
        readers.push((STDERR, Box::new(e)));
    }
    let stdin = child
        .stdin
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>);
    Ok((child, readers, stdin, None, None))
}

/// Starts the command on a new pseudo-terminal: everything it prints comes on channel 1.
fn start_on_terminal(pid: i32, spec: &ProcessSpec, ask: &ExecRequest) -> Result<Started> {
    let pty = super::pty::open_in(&std::path::PathBuf::from(format!("/proc/{pid}/root")))?;
    let master = pty.master;
    // The prepared command (with our copies of the slave side) is consumed by `spawn`: those
    // copies must close, or reading the master never ends.
    let spawned = spawn::enter_command_on_terminal(pid, spec, pty.slave)?.spawn()?;
    let child = spawned.child;
    let file = |fd: &std::os::fd::OwnedFd| -> Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(std::fs::File::from(
            fd.try_clone().context("duplicating the terminal")?,
        )))
    };
    let readers: Vec<(u8, Box<dyn tokio::io::AsyncRead + Unpin + Send>)> =
        if ask.stdout || ask.stderr {
            vec![(STDOUT, Box::new(file(&master)?))]
        } else {
            vec![]
        };
    let stdin = if ask.stdin {
        Some(Box::new(file(&master)?) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>)
    } else {
        None
    };
    Ok((child, readers, stdin, Some(master), Some(spawned.pid)))
}

/// Applies a resize message (`{"Width":80,"Height":24}`); a malformed one is ignored.
fn resize_from(master: &std::os::fd::OwnedFd, data: &[u8]) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    match serde_json::from_slice::<Size>(data) {
        Ok(s) => {
            if let Err(e) = super::pty::resize(master, s.width, s.height) {
                tracing::debug!("exec resize: {e:#}");
            }
        }
        Err(e) => tracing::debug!("exec resize message: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_like_the_kubelet() {
        assert_eq!(
            exit_status_json(&["true".into()], 0),
            json!({"metadata": {}, "status": "Success"})
        );
        let s = exit_status_json(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(
            s["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"
        );
    }

    #[test]
    fn protocol_choice_follows_the_clients_order() {
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"),
        );
        assert_eq!(choose_protocol(&h), Some("v4.channel.k8s.io"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("channel.k8s.io, v5.channel.k8s.io"),
        );
        assert_eq!(choose_protocol(&h), Some("v5.channel.k8s.io"));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("base64.channel.k8s.io"),
        );
        assert_eq!(choose_protocol(&h), None);
        let q = query_pairs(Some(
            "command=sh&command=-c&command=echo%20hi&stdout=true&tty=0".into(),
        ));
        assert_eq!(q["command"], vec!["sh", "-c", "echo hi"]);
        assert!(flag(&q, "stdout") && !flag(&q, "tty") && !flag(&q, "stdin"));
    }
}
