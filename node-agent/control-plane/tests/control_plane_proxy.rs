//! `pods/log`, `pods/exec` and `nodes/proxy` proxied by the API server to a kubelet endpoint on
//! loopback: logs (query, container choice) and a kubelet path through `nodes/proxy` against a
//! fake endpoint through kube-rs and kubectl, and
//! `kubectl exec` end to end into minikind's real kubelet (exit codes, streams, stdin, the
//! `v5.channel.k8s.io` subprotocol). kube-rs's exec through the API server to the real kubelet
//! is in kubelet_endpoint.rs.

mod control_plane_common;
// The kubelet's own test lab (a real kubelet against this API server), shared rather than
// copied: the exec test below needs exactly what the kubelet tests set up.
#[path = "../../kubelet/tests/kubelet_common/mod.rs"]
mod kubelet_common;
use control_plane_common::server;
use minikind_control_plane::pki;

use axum::extract::{Path, RawQuery};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

async fn fake_logs(
    Path((ns, pod, c)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> String {
    format!("log of {ns}/{pod}/{c}\nquery {}\n", q.unwrap_or_default())
}

/// A stand-in kubelet endpoint behind the kubelet's own TLS and caller checks: serving
/// certificate `serving`, callers' certificates checked against `client_ca_pem`.
async fn fake_kubelet(client_ca_pem: &str, serving: &pki::Issued) -> u16 {
    let app = axum::Router::new().route(
        "/containerLogs/{ns}/{pod}/{c}",
        axum::routing::get(fake_logs),
    );
    let tls = minikind_kubelet::KubeletTls {
        serving_pem: serving.combined_pem(),
        client_ca_pem: client_ca_pem.to_string(),
    }
    .acceptor()
    .unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(minikind_kubelet::server::serve_router(
        app,
        l,
        tls,
        tokio_util::sync::CancellationToken::new(),
    ));
    port
}

/// Node `name` at 127.0.0.1 with its kubelet endpoint on `port`.
async fn node_at(client: &kube::Client, name: &str, port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "conditions": [{"type": "Ready", "status": "True"}],
            }})),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn control_plane_proxy_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let client = cp.client().await.unwrap();
    // The fake endpoint accepts only the API server's kubelet client certificate: the logs
    // below coming back prove the proxy presents it and trusts the CA-signed serving one.
    let ca = pki::Ca::load(&dir.path().join("data")).unwrap();
    let serving = ca
        .kubelet_serving("n1", "127.0.0.1".parse().unwrap())
        .unwrap();
    let port = fake_kubelet(&ca.pem, &serving).await;
    node_at(&client, "n1", port).await;
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
    // nodes/proxy: any kubelet path, over the same mutual TLS, the query passed on.
    let out = run(vec![
        "get",
        "--raw",
        "/api/v1/nodes/n1/proxy/containerLogs/default/p/main?tailLines=2",
    ])
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "log of default/p/main\nquery tailLines=2\n",
        "{out:?}"
    );
    cp.shutdown().await.unwrap();
}

/// The proxy trusts only kubelet serving certificates of the cluster CA: an endpoint with a
/// certificate from another CA (for the right name and address) gets no request, and the
/// client gets 500 naming the failed handshake (not 503, which clients retry).
#[tokio::test]
async fn control_plane_proxy_refuses_a_kubelet_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let client = cp.client().await.unwrap();
    let ca = pki::Ca::load(&dir.path().join("data")).unwrap();
    pki::load_or_create(&dir.path().join("other"), &[]).unwrap();
    let other = pki::Ca::load(&dir.path().join("other")).unwrap();
    let serving = other
        .kubelet_serving("n1", "127.0.0.1".parse().unwrap())
        .unwrap();
    // It would accept the API server as a caller: only the serving side is wrong.
    let port = fake_kubelet(&ca.pem, &serving).await;
    node_at(&client, "n1", port).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let e = pods.logs("p", &LogParams::default()).await.unwrap_err();
    let kube::Error::Api(s) = e else {
        panic!("{e:?}")
    };
    assert_eq!(s.code, 500, "{}", s.message);
    assert!(s.message.contains("TLS handshake"), "{}", s.message);
    // Both CAs are named minikind-ca: the signature is what fails.
    assert!(
        s.message.contains("invalid peer certificate"),
        "{}",
        s.message
    );
    cp.shutdown().await.unwrap();
}

/// Runs kubectl with `args` against `kubeconfig`, feeding it `stdin` (or nothing), for at most
/// 30 s; a kubectl that hangs is killed and fails the test.
async fn kubectl(dir: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = tokio::process::Command::new(control_plane_common::kubectl())
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kubectl-cache"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting kubectl");
    let mut input = child.stdin.take().expect("kubectl's stdin");
    if let Some(data) = stdin {
        input
            .write_all(data)
            .await
            .expect("writing kubectl's stdin");
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish within 30 s"))
        .expect("kubectl's output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `kubectl exec` through the API server's proxy into minikind's kubelet, which runs the
/// command in the pod: the exit code comes back as kubectl's, stdout and stderr stay apart,
/// stdin reaches the process, and kubectl says it negotiated `v5.channel.k8s.io`.
#[test]
fn control_plane_proxy_kubectl_exec_into_the_kubelet() {
    use kubelet_common::{Lab, isolated, pod};
    isolated(|| async {
        let lab = Lab::start().await;
        let dir = lab.dir.path().to_path_buf();
        std::fs::write(dir.join("kubeconfig"), &lab.cp.kubeconfig).unwrap();
        lab.create(pod("box", &["sleep", "3600"])).await;
        lab.wait_running("box").await;

        let out = kubectl(
            &dir,
            &[
                "exec",
                "box",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
            None,
        )
        .await;
        assert_eq!(out.status.code(), Some(7), "{out:?}");
        assert_eq!(text(&out.stdout), "out\n");
        // The process's stderr, then kubectl's own line, from the status's exit code.
        assert_eq!(
            text(&out.stderr),
            "err\ncommand terminated with exit code 7\n"
        );

        let out = kubectl(
            &dir,
            &["exec", "box", "--", "sh", "-c", "echo $HOSTNAME"],
            None,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(text(&out.stdout), "box\n");
        assert_eq!(text(&out.stderr), "");

        // -i: kubectl's stdin goes to the process and its end closes the process's stdin.
        let out = kubectl(
            &dir,
            &["exec", "-i", "box", "--", "sh", "-c", "tr a-z A-Z; exit 3"],
            Some(b"piped through\n"),
        )
        .await;
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(text(&out.stdout), "PIPED THROUGH\n");

        // -c picks the container; the API server puts it in the kubelet's path.
        let mut two = pod("two", &["sleep", "3600"]);
        let mut side = two["spec"]["containers"][0].clone();
        side["name"] = json!("side");
        side["env"] = json!([{"name": "WHO", "value": "the side container"}]);
        two["spec"]["containers"].as_array_mut().unwrap().push(side);
        lab.create(two).await;
        lab.wait_running("two").await;
        let out = kubectl(
            &dir,
            &["exec", "two", "-c", "side", "--", "sh", "-c", "echo $WHO"],
            None,
        )
        .await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(text(&out.stdout), "the side container\n");

        // kubectl logs the subprotocol it negotiated at -v=4 (`"Subprotocol negotiated"
        // protocol="v5.channel.k8s.io"` in 1.37, `The subprotocol is …` before).
        let out = kubectl(&dir, &["-v=4", "exec", "box", "--", "true"], None).await;
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let log = text(&out.stderr);
        let negotiated: Vec<&str> = log
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains("subprotocol"))
            .collect();
        assert!(
            negotiated.len() == 1 && negotiated[0].contains("v5.channel.k8s.io"),
            "kubectl did not report negotiating v5.channel.k8s.io:\n{log}"
        );
        lab.shutdown().await;
    });
}
