//! The object commands (`apply`, `delete`, `get`, `scale`) against minikind's API server run
//! in-process on loopback. The module is compiled here directly (the CLI is a binary crate).

#[path = "../src/objects/mod.rs"]
#[allow(dead_code)]
mod objects;

use clap::Parser;
use minikind_control_plane::{ControlPlaneConfig, start};
use objects::{ObjectCommand, run_to};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: ObjectCommand,
}

async fn run(client: &kube::Client, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec!["minikind"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    let mut out = Vec::new();
    run_to(cli.cmd, client.clone(), &mut out).await?;
    Ok(String::from_utf8(out)?)
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: one
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: "busybox:1"}
"#;

#[tokio::test]
async fn objects_apply_get_scale_delete() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(ControlPlaneConfig::loopback(dir.path().join("data")))
        .await
        .unwrap();
    let client = cp.client().await.unwrap();
    let file = dir.path().join("app.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let f = file.to_str().unwrap();

    let out = run(&client, &["apply", "-f", f]).await.unwrap();
    assert_eq!(
        out,
        "configmap/settings created\nservice/web created\ndeployment.apps/web created\n"
    );
    let out = run(&client, &["apply", "-f", f]).await.unwrap();
    assert_eq!(
        out,
        "configmap/settings unchanged\nservice/web unchanged\ndeployment.apps/web unchanged\n"
    );
    std::fs::write(&file, MANIFEST.replace("mode: one", "mode: two")).unwrap();
    let out = run(&client, &["apply", "-f", f]).await.unwrap();
    assert!(out.starts_with("configmap/settings configured\n"), "{out}");

    let out = run(&client, &["get", "svc"]).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("CLUSTER-IP")
            && lines[0].contains("PORT(S)"),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("web ") && l.contains("80/TCP")),
        "{out}"
    );
    let out = run(&client, &["get", "services", "-A", "-o", "wide"])
        .await
        .unwrap();
    assert!(
        out.lines().next().unwrap().starts_with("NAMESPACE"),
        "{out}"
    );
    assert!(out.contains("SELECTOR") && out.contains("app=web"), "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("default")
            && l.contains("kubernetes")
            && l.contains("10.96.0.1")),
        "{out}"
    );
    let out = run(&client, &["get", "cm", "settings", "-o", "yaml"])
        .await
        .unwrap();
    assert!(
        out.contains("mode: two") && !out.contains("managedFields"),
        "{out}"
    );
    let out = run(&client, &["get", "deploy", "-o", "json"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"][0]["kind"], "Deployment");
    let out = run(&client, &["get", "nodes"]).await.unwrap();
    assert_eq!(out, "", "no nodes: message on stderr only");
    let out = run(
        &client,
        &["get", "endpointslices", "-n", "default", "-o", "name"],
    )
    .await
    .unwrap();
    assert!(
        out.contains("endpointslice.discovery.k8s.io/kubernetes"),
        "{out}"
    );

    let out = run(&client, &["scale", "deployment", "web", "--replicas", "3"])
        .await
        .unwrap();
    assert_eq!(out, "deployment.apps/web scaled\n");
    let out = run(&client, &["get", "deploy/web", "-o", "json"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["spec"]["replicas"], 3);

    let out = run(&client, &["rollout", "restart", "deployment/web"])
        .await
        .unwrap();
    assert_eq!(out, "deployment.apps/web restarted\n");
    let out = run(&client, &["get", "deploy/web", "-o", "json"])
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let stamp =
        v["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .unwrap_or_default();
    assert!(stamp.ends_with('Z') && stamp.len() == 20, "{v}");
    let e = run(&client, &["rollout", "restart", "cm", "settings"])
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("only deployments"), "{e:#}");

    let out = run(&client, &["delete", "-f", f]).await.unwrap();
    assert_eq!(
        out,
        "configmap/settings deleted\nservice/web deleted\ndeployment.apps/web deleted\n"
    );
    let e = run(&client, &["delete", "cm", "settings"])
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("NotFound"), "{e:#}");
    run(&client, &["delete", "cm", "settings", "--ignore-not-found"])
        .await
        .unwrap();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn objects_errors_name_the_document_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(ControlPlaneConfig::loopback(dir.path().join("data")))
        .await
        .unwrap();
    let client = cp.client().await.unwrap();
    let cases = [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n",
            "document 2: unknown kind \"Gadget\"",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [oops\n",
            "document 2 is not valid YAML",
        ),
        (
            "kind: ConfigMap\nmetadata: {name: a}\n",
            "document 1: missing field `apiVersion`",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
            "missing field `metadata.name`",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: Odd, ports: [{port: 1}]}\n",
            "spec.type",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let e = run(&client, &["apply", "-f", file.to_str().unwrap()])
            .await
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(want), "case {i}: {msg}");
    }
    let e = run(&client, &["get", "gadgets"]).await.unwrap_err();
    assert!(format!("{e:#}").contains("unknown resource type \"gadgets\""));
    let e = run(&client, &["scale", "svc", "x", "--replicas", "1"])
        .await
        .unwrap_err();
    assert!(format!("{e:#}").contains("only deployments"));
    cp.shutdown().await.unwrap();
}

/// Every kind the object commands know, in one stream: a new namespace first, then objects in
/// it (cluster-scoped and namespaced, core and grouped).
const ALL_KINDS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: team, labels: {app: web}}
spec:
  nodeName: n1
  containers: [{name: app, image: "busybox:1"}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: outside, namespace: team}
subsets:
- addresses: [{ip: 192.0.2.10}]
  ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-1, namespace: team, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
endpoints: [{addresses: [192.0.2.10], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {mode: one}
---
apiVersion: v1
kind: Event
metadata: {name: hello, namespace: team}
involvedObject: {kind: Pod, name: p, namespace: team}
reason: Testing
message: applied from stdin
type: Normal
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: app, image: "busybox:1"}]
"#;

/// `apply -f -` reads the manifest from stdin and creates every kind; `get` shows each one;
/// `delete -f` removes them all.
#[tokio::test]
async fn objects_apply_from_stdin_every_kind() {
    let dir = tempfile::tempdir().unwrap();
    let cp = start(ControlPlaneConfig::loopback(dir.path().join("data")))
        .await
        .unwrap();
    let client = cp.client().await.unwrap();

    // This test's process reads the manifest on its stdin (nextest runs each test in a
    // process of its own, and no other test here reads stdin).
    let input = dir.path().join("stdin.yaml");
    std::fs::write(&input, ALL_KINDS).unwrap();
    nix::unistd::dup2_stdin(std::fs::File::open(&input).unwrap()).unwrap();
    let out = run(&client, &["apply", "-f", "-"]).await.unwrap();
    assert_eq!(
        out,
        "namespace/team created\nnode/n1 created\npod/p created\nservice/web created\n\
         endpoints/outside created\nendpointslice.discovery.k8s.io/outside-1 created\n\
         configmap/settings created\nevent/hello created\ndeployment.apps/web created\n"
    );

    let checks: [(&str, &str, &str, serde_json::Value); 9] = [
        ("ns", "team", "/status/phase", "Active".into()),
        (
            "nodes",
            "n1",
            "/metadata/labels/kubernetes.io~1hostname",
            "n1".into(),
        ),
        ("pods", "p", "/spec/nodeName", "n1".into()),
        ("svc", "web", "/spec/ports/0/targetPort", 80.into()),
        (
            "endpoints",
            "outside",
            "/subsets/0/addresses/0/ip",
            "192.0.2.10".into(),
        ),
        (
            "endpointslices",
            "outside-1",
            "/endpoints/0/addresses/0",
            "192.0.2.10".into(),
        ),
        ("cm", "settings", "/data/mode", "one".into()),
        ("events", "hello", "/message", "applied from stdin".into()),
        ("deploy", "web", "/spec/replicas", 1.into()),
    ];
    for (kind, name, field, want) in checks {
        let out = run(&client, &["get", kind, name, "-n", "team", "-o", "json"])
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v.pointer(field), Some(&want), "{kind}/{name}: {v}");
    }

    // Deleted in reverse, the namespace last (its deletion would take the rest with it).
    let docs: Vec<&str> = ALL_KINDS.split("\n---\n").collect();
    let reversed: Vec<&str> = docs.into_iter().rev().collect();
    let file = dir.path().join("reversed.yaml");
    std::fs::write(&file, reversed.join("\n---\n")).unwrap();
    let out = run(&client, &["delete", "-f", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(
        out,
        "deployment.apps/web deleted\nevent/hello deleted\nconfigmap/settings deleted\n\
         endpointslice.discovery.k8s.io/outside-1 deleted\nendpoints/outside deleted\n\
         service/web deleted\npod/p deleted\nnode/n1 deleted\nnamespace/team deleted\n"
    );
    cp.shutdown().await.unwrap();
}
