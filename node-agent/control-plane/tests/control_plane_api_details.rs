//! kubectl 1.37 against the in-process API server for the details a real workload needs:
//! every kind kubectl sends as protobuf is stored as the same command's JSON would be (one
//! case per kind), Secrets as kube-apiserver keeps them, and a server version kubectl does
//! not warn about.

mod control_plane_common;
use control_plane_common::{Kubectl, kubectl, server};

use serde_json::{Value, json};

/// The object as stored, without what the server sets per object, with `name` replaced by
/// `NAME` wherever it appears, so that two objects made under different names compare.
async fn stored(k: &Kubectl, what: &str, name: &str) -> Value {
    let out = k.ok(&["get", what, name, "-o", "json"], None).await;
    let text = out.replace(name, "NAME");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "annotations",
        ] {
            m.remove(f);
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    // Allocated per object.
    if let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    v
}

/// `kubectl create ARGS` (protobuf) under `name`, and the same command's
/// `--dry-run=client -o json` created as JSON under `name-json`; both stored objects must be
/// equal.
async fn same_as_json(k: &Kubectl, what: &str, name: &str, args: &[&str]) -> Value {
    let json_name = format!("{name}-json");
    let with = |n: &str| -> Vec<String> {
        args.iter()
            .map(|a| a.replace("{name}", n))
            .collect::<Vec<_>>()
    };
    let proto_args = with(name);
    let proto_refs: Vec<&str> = proto_args.iter().map(String::as_str).collect();
    k.ok(&proto_refs, None).await;
    let mut dry = with(&json_name);
    let dash = dry.iter().position(|a| a == "--").unwrap_or(dry.len());
    dry.splice(
        dash..dash,
        ["--dry-run=client".to_string(), "-o".into(), "json".into()],
    );
    let dry_refs: Vec<&str> = dry.iter().map(String::as_str).collect();
    let manifest = k.ok(&dry_refs, None).await;
    k.ok(&["create", "-f", "-"], Some(&manifest)).await;
    let a = stored(k, what, name).await;
    let b = stored(k, what, &json_name).await;
    assert_eq!(a, b, "{what} {name}: protobuf and JSON differ");
    a
}

#[tokio::test]
async fn control_plane_api_details_protobuf_is_decoded_as_json_per_kind() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cp = server(&data).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    // Deployment: the issue's case — no `workingDir: ""`, nothing absent made present.
    let d = same_as_json(
        &k,
        "deployment",
        "web",
        &[
            "create",
            "deployment",
            "{name}",
            "--image=busybox",
            "--",
            "sleep",
            "3600",
        ],
    )
    .await;
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"], json!(["sleep", "3600"]), "{d}");
    for absent in ["workingDir", "stdin", "tty", "args"] {
        assert!(c.get(absent).is_none(), "{absent} present: {c}");
    }
    // Pod: kubectl run.
    same_as_json(
        &k,
        "pod",
        "runner",
        &[
            "run",
            "{name}",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sleep",
            "1",
        ],
    )
    .await;
    // Pod: a copy made by `kubectl debug` (typed client, protobuf).
    k.ok(
        &[
            "debug",
            "runner",
            "--copy-to=runner-copy",
            "--image=busybox",
            "--container=dbg",
            "--attach=false",
            "--",
            "sleep",
            "1",
        ],
        None,
    )
    .await;
    let copy = stored(&k, "pod", "runner-copy").await;
    let names: Vec<&str> = copy["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["runner", "dbg"], "{copy}");
    assert!(
        copy["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("workingDir").is_none()),
        "{copy}"
    );
    same_as_json(
        &k,
        "namespace",
        "team-a",
        &["create", "namespace", "{name}"],
    )
    .await;
    same_as_json(
        &k,
        "configmap",
        "cfg",
        &["create", "configmap", "{name}", "--from-literal=mode=fast"],
    )
    .await;
    same_as_json(
        &k,
        "service",
        "front",
        &["create", "service", "clusterip", "{name}", "--tcp=80:8080"],
    )
    .await;
    same_as_json(
        &k,
        "serviceaccount",
        "robot",
        &["create", "serviceaccount", "{name}"],
    )
    .await;
    same_as_json(
        &k,
        "role",
        "reader",
        &[
            "create",
            "role",
            "{name}",
            "--verb=get,list",
            "--resource=pods,secrets",
        ],
    )
    .await;
    same_as_json(
        &k,
        "clusterrole",
        "node-reader",
        &[
            "create",
            "clusterrole",
            "{name}",
            "--verb=get",
            "--resource=nodes",
        ],
    )
    .await;
    same_as_json(
        &k,
        "rolebinding",
        "jane-reads",
        &[
            "create",
            "rolebinding",
            "{name}",
            "--role=reader",
            "--user=jane",
        ],
    )
    .await;
    same_as_json(
        &k,
        "clusterrolebinding",
        "jane-nodes",
        &[
            "create",
            "clusterrolebinding",
            "{name}",
            "--clusterrole=node-reader",
            "--user=jane",
        ],
    )
    .await;
    // Secrets of the three kinds `kubectl create secret` makes.
    let s = same_as_json(
        &k,
        "secret",
        "creds",
        &[
            "create",
            "secret",
            "generic",
            "{name}",
            "--from-literal=username=admin",
        ],
    )
    .await;
    assert_eq!(s["type"], json!("Opaque"));
    assert_eq!(s["data"]["username"], json!("YWRtaW4="));
    let tls = minikind_apiserver::pki::issue_kubelet_serving(
        &data,
        "web.example",
        std::net::Ipv4Addr::LOCALHOST.into(),
    )
    .unwrap();
    let crt = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&crt, &tls.cert_pem).unwrap();
    std::fs::write(&key, &tls.key_pem).unwrap();
    let cert_arg = format!("--cert={}", crt.display());
    let key_arg = format!("--key={}", key.display());
    let s = same_as_json(
        &k,
        "secret",
        "web-tls",
        &["create", "secret", "tls", "{name}", &cert_arg, &key_arg],
    )
    .await;
    assert_eq!(s["type"], json!("kubernetes.io/tls"));
    let s = same_as_json(
        &k,
        "secret",
        "pull",
        &[
            "create",
            "secret",
            "docker-registry",
            "{name}",
            "--docker-server=registry.example",
            "--docker-username=u",
            "--docker-password=p",
        ],
    )
    .await;
    assert_eq!(s["type"], json!("kubernetes.io/dockerconfigjson"));
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_api_details_secrets_as_the_api_server_keeps_them() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    // stringData merged into data on write (it wins over data), then dropped.
    let manifest = r#"apiVersion: v1
kind: Secret
metadata: {name: app}
data: {a: eA==, b: eA==}
stringData: {b: over, c: new}
"#;
    k.ok(&["apply", "-f", "-"], Some(manifest)).await;
    let s: Value =
        serde_json::from_str(&k.ok(&["get", "secret", "app", "-o", "json"], None).await).unwrap();
    assert_eq!(
        s["data"],
        json!({"a": "eA==", "b": "b3Zlcg==", "c": "bmV3"})
    );
    assert!(s.get("stringData").is_none(), "{s}");
    assert_eq!(s["type"], json!("Opaque"));
    let table = k.ok(&["get", "secrets"], None).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["app", "Opaque", "3"])),
        "{table}"
    );

    // The keys a type requires.
    let bad_tls = r#"apiVersion: v1
kind: Secret
metadata: {name: half}
type: kubernetes.io/tls
stringData: {tls.crt: x}
"#;
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(bad_tls)).await;
    assert!(!ok);
    assert!(err.contains("data[tls.key]: Required value"), "{err}");

    // 1 MiB of data at most.
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let from = format!("--from-file=big={}", big.display());
    let (ok, _, err) = k
        .run(&["create", "secret", "generic", "huge", &from], None)
        .await;
    assert!(!ok);
    assert!(err.contains("Too long"), "{err}");

    // Immutable: data cannot change, nor can the mark be taken back.
    let frozen = r#"apiVersion: v1
kind: Secret
metadata: {name: frozen}
immutable: true
stringData: {k: v}
"#;
    k.ok(&["apply", "-f", "-"], Some(frozen)).await;
    let (ok, _, err) = k
        .run(
            &["apply", "-f", "-"],
            Some(&frozen.replace("{k: v}", "{k: w}")),
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("field is immutable when `immutable` is set"),
        "{err}"
    );
    let (ok, _, err) = k
        .run(
            &["patch", "secret", "frozen", "-p", r#"{"immutable":false}"#],
            None,
        )
        .await;
    assert!(!ok, "{err}");
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_api_details_version_is_within_kubectl_skew() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let (ok, out, err) = k.run(&["version"], None).await;
    assert!(ok, "{err}");
    assert!(out.contains("Server Version: v1.37"), "{out}");
    assert!(
        !err.contains("WARNING") && !out.contains("WARNING"),
        "{out}{err}"
    );
    cp.shutdown().await.unwrap();
}

/// A tiny HTTP server on loopback answering `<method> <path>` (the "pod" behind the proxy).
async fn echo_server() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = head.lines().next().unwrap_or_default().to_string();
                let mut it = line.split_whitespace();
                let body = format!(
                    "{} {}",
                    it.next().unwrap_or_default(),
                    it.next().unwrap_or_default()
                );
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn control_plane_api_details_pod_and_service_proxy() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let port = echo_server().await;

    // A pod whose address is loopback (no kubelet here: its status is written by hand).
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports: [{{name: http, containerPort: {port}}}]\n"
    );
    k.ok(&["apply", "-f", "-"], Some(&pod)).await;
    k.ok(
        &[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "-p",
            r#"{"status":{"podIP":"127.0.0.1","podIPs":[{"ip":"127.0.0.1"}]}}"#,
        ],
        None,
    )
    .await;
    for (id, path, want) in [
        ("web", "/hello?x=1", "GET /hello?x=1"),
        ("web:http", "/a/b/", "GET /a/b/"),
        (&format!("web:{port}")[..], "", "GET /"),
    ] {
        let url = format!("/api/v1/namespaces/default/pods/{id}/proxy{path}");
        let out = k.ok(&["get", "--raw", &url], None).await;
        assert_eq!(out, want, "{url}");
    }

    // A Service with hand-made Endpoints (no selector: no controller owns them).
    let svc = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: front}}\nspec:\n  ports: [{{name: web, port: 80}}]\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: front}}\nsubsets:\n- addresses: [{{ip: 127.0.0.1}}]\n  ports: [{{name: web, port: {port}}}]\n"
    );
    k.ok(&["apply", "-f", "-"], Some(&svc)).await;
    for id in ["front", "front:web", "front:80", "http:front:web"] {
        let url = format!("/api/v1/namespaces/default/services/{id}/proxy/status");
        let out = k.ok(&["get", "--raw", &url], None).await;
        assert_eq!(out, "GET /status", "{url}");
    }
    let (ok, _, err) = k
        .run(
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/services/front:other/proxy/",
            ],
            None,
        )
        .await;
    assert!(!ok);
    assert!(
        err.contains("no endpoints available for service \\\"front:other\\\"")
            || err.contains("no endpoints available for service \"front:other\""),
        "{err}"
    );
    let (ok, _, err) = k
        .run(
            &[
                "get",
                "--raw",
                "/api/v1/namespaces/default/pods/nope/proxy/",
            ],
            None,
        )
        .await;
    assert!(!ok && err.contains("NotFound"), "{err}");
    cp.shutdown().await.unwrap();
}
