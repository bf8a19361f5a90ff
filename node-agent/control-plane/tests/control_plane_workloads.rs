//! The workload controllers on the in-process server, driven by the pinned kubectl as a user
//! would: Deployments through ReplicaSets (`rollout status/history/undo/pause/resume`,
//! revision history limit, Recreate), standalone ReplicaSets (`scale`, adoption), cascading
//! deletion (`--cascade=foreground|orphan|background`), StatefulSets, DaemonSets, Jobs and
//! CronJobs. A task plays the kubelets' part: pods bound to a node start Running and Ready
//! (or run to completion when the test says so), and terminating pods are finished.

mod control_plane_common;
use control_plane_common::{Kubectl, eventually, kubectl, register_node, server};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;

/// What the fake kubelets do with a pod of theirs that has not started yet.
#[derive(Clone, Copy)]
enum Outcome {
    /// Running and Ready.
    Run,
    /// Phase `Succeeded` (a Job pod whose command exits 0).
    Succeed,
    /// Phase `Failed`.
    Fail,
}

/// Plays the kubelets: every 100 ms, pods bound to a node start (as `outcome(pod)` says) and
/// terminating pods are removed.
fn fake_kubelets(
    client: Client,
    outcome: impl Fn(&Pod) -> Outcome + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let mut n = 0u32;
        loop {
            if let Ok(l) = pods.list(&ListParams::default()).await {
                for p in l.items {
                    let ns = p.metadata.namespace.clone().unwrap_or_default();
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = api
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let bound = p.spec.as_ref().and_then(|s| s.node_name.clone()).is_some();
                    let started = p.status.as_ref().and_then(|s| s.pod_ip.clone()).is_some();
                    if !bound || started {
                        continue;
                    }
                    n += 1;
                    let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
                    let status = match outcome(&p) {
                        Outcome::Run => json!({"status": {
                            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": "2020-01-01T00:00:00Z"}],
                        }}),
                        Outcome::Succeed => json!({"status": {
                            "phase": "Succeeded", "podIP": ip, "podIPs": [{"ip": ip}],
                        }}),
                        Outcome::Fail => json!({"status": {
                            "phase": "Failed", "podIP": ip, "podIPs": [{"ip": ip}],
                        }}),
                    };
                    let _ = api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                        .await;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Lines of `kubectl get` output after the header, split into columns.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

async fn rollout_status(k: &Kubectl, what: &str) -> String {
    k.ok(&["rollout", "status", what, "--timeout=30s"], None)
        .await
}

#[tokio::test]
async fn control_plane_workloads_deployment_rollouts_through_kubectl() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let kubelets = fake_kubelets(client.clone(), |_| Outcome::Run);

    k.ok(
        &[
            "create",
            "deployment",
            "web",
            "--image=img:1",
            "--replicas=3",
        ],
        None,
    )
    .await;
    let out = rollout_status(&k, "deployment/web").await;
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let rs = k.ok(&["get", "rs"], None).await;
    assert!(rs.starts_with("NAME"), "{rs}");
    assert!(
        rs.lines()
            .next()
            .unwrap()
            .contains("DESIRED   CURRENT   READY"),
        "{rs}"
    );
    let r = rows(&rs);
    assert_eq!(r.len(), 1, "{rs}");
    assert!(r[0][0].starts_with("web-"), "{rs}");
    assert_eq!(&r[0][1..4], ["3", "3", "3"], "{rs}");
    let first_rs = r[0][0].clone();
    let hash = first_rs.trim_start_matches("web-").to_string();
    // The pods carry the hash and belong to the ReplicaSet.
    let owners = k
        .ok(
            &["get", "pods", "-l", &format!("pod-template-hash={hash}"), "-o",
              "jsonpath={range .items[*]}{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {end}"],
            None,
        )
        .await;
    assert_eq!(
        owners.split_whitespace().collect::<Vec<_>>(),
        vec![format!("ReplicaSet/{first_rs}"); 3],
        "{owners}"
    );
    let rev = k
        .ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
            ],
            None,
        )
        .await;
    assert_eq!(rev, "1");

    // A new image: a second ReplicaSet takes over.
    k.ok(&["set", "image", "deployment/web", "*=img:2"], None)
        .await;
    rollout_status(&k, "deployment/web").await;
    let r = rows(&k.ok(&["get", "rs"], None).await);
    assert_eq!(r.len(), 2, "{r:?}");
    let old = r.iter().find(|x| x[0] == first_rs).unwrap();
    assert_eq!(&old[1..4], ["0", "0", "0"], "{r:?}");
    let history = k.ok(&["rollout", "history", "deployment/web"], None).await;
    assert!(history.contains("REVISION"), "{history}");
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let rev1 = k
        .ok(
            &["rollout", "history", "deployment/web", "--revision=1"],
            None,
        )
        .await;
    assert!(rev1.contains("img:1"), "{rev1}");

    // Undo: back to img:1, whose ReplicaSet becomes revision 3.
    let out = k.ok(&["rollout", "undo", "deployment/web"], None).await;
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rollout_status(&k, "deployment/web").await;
    let image = k
        .ok(
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        )
        .await;
    assert_eq!(image, "img:1");
    let history = k.ok(&["rollout", "history", "deployment/web"], None).await;
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["2", "3"], "{history}");
    let r = rows(&k.ok(&["get", "rs"], None).await);
    assert_eq!(r.len(), 2, "the old ReplicaSet came back, no third: {r:?}");
    let back = r.iter().find(|x| x[0] == first_rs).unwrap();
    assert_eq!(&back[1..4], ["3", "3", "3"], "{r:?}");

    // Paused: a template change makes no ReplicaSet until resumed.
    let out = k.ok(&["rollout", "pause", "deployment/web"], None).await;
    assert!(out.contains("deployment.apps/web paused"), "{out}");
    k.ok(&["set", "image", "deployment/web", "*=img:3"], None)
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(rows(&k.ok(&["get", "rs"], None).await).len(), 2);
    let out = k.ok(&["rollout", "resume", "deployment/web"], None).await;
    assert!(out.contains("deployment.apps/web resumed"), "{out}");
    rollout_status(&k, "deployment/web").await;
    // revisionHistoryLimit 1: only one old ReplicaSet is kept.
    k.ok(
        &[
            "patch",
            "deployment/web",
            "-p",
            r#"{"spec":{"revisionHistoryLimit":1}}"#,
        ],
        None,
    )
    .await;
    eventually(10, "one old ReplicaSet left", || {
        let k = &k;
        async move { (rows(&k.ok(&["get", "rs"], None).await).len() == 2).then_some(()) }
    })
    .await;

    // `kubectl get deploy,rs,pods` and `get all` know the short names and categories.
    let all = k.ok(&["get", "deploy,rs,pods"], None).await;
    assert!(all.contains("deployment.apps/web"), "{all}");
    assert!(all.contains("replicaset.apps/web-"), "{all}");
    let all = k.ok(&["get", "all"], None).await;
    assert!(all.contains("replicaset.apps/web-"), "{all}");

    // Foreground deletion: the Deployment goes last, after its ReplicaSets and pods.
    k.ok(
        &[
            "delete",
            "deployment",
            "web",
            "--cascade=foreground",
            "--timeout=30s",
        ],
        None,
    )
    .await;
    let left = k.ok(&["get", "rs,pods", "-o", "name"], None).await;
    assert!(left.trim().is_empty(), "{left}");
    kubelets.abort();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_workloads_replicasets_scale_adopt_and_cascade() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let kubelets = fake_kubelets(client.clone(), |_| Outcome::Run);
    // An orphan pod the ReplicaSet's selector matches is adopted and counted.
    k.ok(
        &["run", "stray", "--image=img:1", "--labels=app=front"],
        None,
    )
    .await;
    let rs = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: front\nspec:\n  \
              replicas: 2\n  selector:\n    matchLabels: {app: front}\n  template:\n    \
              metadata:\n      labels: {app: front}\n    spec:\n      containers:\n      - \
              name: c\n        image: img:1\n";
    k.ok(&["apply", "-f", "-"], Some(rs)).await;
    let pods = eventually(10, "2 pods of front, one of them the stray", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "pods", "-l", "app=front", "-o",
                      "jsonpath={range .items[*]}{.metadata.name}={.metadata.ownerReferences[0].name} {end}"], None)
                .await;
            let v: Vec<String> = out.split_whitespace().map(String::from).collect();
            (v.len() == 2 && v.iter().all(|p| p.ends_with("=front"))).then_some(v)
        }
    })
    .await;
    assert!(pods.iter().any(|p| p == "stray=front"), "{pods:?}");
    let out = k.ok(&["scale", "rs/front", "--replicas=4"], None).await;
    assert!(out.contains("replicaset.apps/front scaled"), "{out}");
    eventually(10, "4 ready", || {
        let k = &k;
        async move {
            let r = rows(&k.ok(&["get", "rs", "front"], None).await);
            (r[0][1..4] == ["4", "4", "4"]).then_some(())
        }
    })
    .await;
    let out = k.ok(&["scale", "rs/front", "--replicas=1"], None).await;
    assert!(out.contains("scaled"), "{out}");
    eventually(10, "1 pod", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "pods", "-l", "app=front", "-o", "name"], None)
                .await;
            (out.lines().count() == 1).then_some(())
        }
    })
    .await;
    // Orphan: the pod stays, without its owner.
    k.ok(&["delete", "rs", "front", "--cascade=orphan"], None)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let owners = k
        .ok(
            &[
                "get",
                "pods",
                "-l",
                "app=front",
                "-o",
                "jsonpath={.items[*].metadata.ownerReferences}",
            ],
            None,
        )
        .await;
    assert_eq!(owners.trim(), "", "{owners}");
    assert_eq!(
        k.ok(&["get", "pods", "-l", "app=front", "-o", "name"], None)
            .await
            .lines()
            .count(),
        1
    );
    // Background (the default): re-created, it adopts the pod; deleted, its pods go after it.
    k.ok(&["apply", "-f", "-"], Some(rs)).await;
    eventually(10, "2 pods again", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "pods", "-l", "app=front", "-o", "name"], None)
                .await;
            (out.lines().count() == 2).then_some(())
        }
    })
    .await;
    k.ok(&["delete", "rs", "front", "--cascade=background"], None)
        .await;
    eventually(10, "pods collected", || {
        let k = &k;
        async move {
            let out = k
                .ok(&["get", "pods", "-l", "app=front", "-o", "name"], None)
                .await;
            out.trim().is_empty().then_some(())
        }
    })
    .await;
    kubelets.abort();
    cp.shutdown().await.unwrap();
}
