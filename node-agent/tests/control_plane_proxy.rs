//! `pods/log` and `pods/exec` proxied to a (fake) kubelet endpoint on loopback, through
//! kube-rs and kubectl.

mod control_plane_common;
use control_plane_common::server;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, AttachParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

async fn fake_logs(
    Path((ns, pod, c)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> String {
    format!("log of {ns}/{pod}/{c}\nquery {}\n", q.unwrap_or_default())
}

/// A kubelet-style exec endpoint: answers the websocket with the command on stdout and a
/// Success status on channel 3.
async fn fake_exec(
    Path((_ns, _pod, c)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Response {
    let cmd: Vec<String> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.into_owned())
        .collect();
    let key = req.headers().get("sec-websocket-key").cloned().unwrap();
    let proto = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|p| {
            p.split(',')
                .map(str::trim)
                .find(|p| p.starts_with("v5.") || p.starts_with("v4."))
        })
        .unwrap_or("v4.channel.k8s.io")
        .to_string();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let up = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let io = TokioIo::new(up.await.unwrap());
        let mut ws =
            tokio_tungstenite::WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let mut out = vec![1u8];
        out.extend_from_slice(format!("ran in {c}: {}\n", cmd.join(" ")).as_bytes());
        ws.send(Message::Binary(out.into())).await.unwrap();
        let mut status = vec![3u8];
        status.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
        ws.send(Message::Binary(status.into())).await.unwrap();
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = ws.close(Some(normal)).await;
        while ws.next().await.is_some() {}
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", proto)
        .body(Body::empty())
        .unwrap()
}

async fn fake_kubelet() -> u16 {
    let app = axum::Router::new()
        .route(
            "/containerLogs/{ns}/{pod}/{c}",
            axum::routing::get(fake_logs),
        )
        .route(
            "/exec/{ns}/{pod}/{c}",
            axum::routing::get(fake_exec).post(fake_exec),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    port
}

#[tokio::test]
async fn control_plane_proxy_logs_and_exec() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let client = cp.client().await.unwrap();
    let port = fake_kubelet().await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True"}],
            }})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let two: Pod = serde_json::from_value(json!({
        "metadata": {"name": "two"},
        "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &two).await.unwrap();

    let text = pods
        .logs(
            "p",
            &LogParams {
                tail_lines: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(text.contains("log of default/p/main"), "{text}");
    assert!(text.contains("tailLines=5"), "{text}");
    let e = pods.logs("two", &LogParams::default()).await.unwrap_err();
    let kube::Error::Api(s) = e else { panic!() };
    assert_eq!(s.code, 400);
    assert!(s.message.contains("choose one of: [a b]"), "{}", s.message);

    let mut att = pods
        .exec("p", ["echo", "hi"], &AttachParams::default().stderr(false))
        .await
        .unwrap();
    let mut stdout = att.stdout().unwrap();
    let mut got = String::new();
    stdout.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "ran in main: echo hi\n");
    let status = att.take_status().unwrap().await.unwrap();
    assert_eq!(status.status.as_deref(), Some("Success"));

    let kubectl = control_plane_common::kubectl();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(&kc, &cp.kubeconfig).unwrap();
    let cache = dir.path().join("cache");
    let run = |args: Vec<&'static str>| {
        let kc = kc.clone();
        let cache = cache.clone();
        let kubectl = kubectl.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .env("KUBECONFIG", kc)
                .arg("--cache-dir")
                .arg(cache)
                .args(args)
                .output()
                .unwrap()
        })
    };
    let out = run(vec!["logs", "p"]).await.unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("log of default/p/main"),
        "{out:?}"
    );
    let out = run(vec!["exec", "p", "--", "uname", "-a"]).await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ran in main: uname -a\n"
    );
    cp.shutdown().await.unwrap();
}
