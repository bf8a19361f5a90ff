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
    /// Left as it is (not started yet).
    Hold,
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
                    let outcome = outcome(&p);
                    if matches!(outcome, Outcome::Hold) {
                        continue;
                    }
                    n += 1;
                    let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
                    let status = match outcome {
                        Outcome::Hold => continue,
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

/// `kubectl get <what> -o jsonpath=<path>`.
async fn jsonpath(k: &Kubectl, what: &[&str], path: &str) -> String {
    let arg = format!("jsonpath={path}");
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend(["-o", arg.as_str()]);
    k.ok(&args, None).await
}

async fn names(k: &Kubectl, what: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = jsonpath(k, what, "{.items[*].metadata.name}")
        .await
        .split_whitespace()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn control_plane_workloads_statefulsets_ordered_named_and_rolled() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    let hold = Arc::new(AtomicBool::new(true));
    let h = hold.clone();
    let kubelets = fake_kubelets(client.clone(), move |_| {
        if h.load(Ordering::SeqCst) {
            Outcome::Hold
        } else {
            Outcome::Run
        }
    });
    let manifest = |name: &str, policy: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\nspec:\n  clusterIP: None\n  \
             selector: {{app: {name}}}\n  ports:\n  - port: 80\n---\napiVersion: apps/v1\nkind: \
             StatefulSet\nmetadata:\n  name: {name}\nspec:\n  serviceName: nginx\n  replicas: 3\n  \
             podManagementPolicy: {policy}\n  selector:\n    matchLabels: {{app: {name}}}\n  \
             template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      \
             containers:\n      - name: c\n        image: img:1\n"
        )
    };
    k.ok(
        &["apply", "-f", "-"],
        Some(&manifest("web", "OrderedReady")),
    )
    .await;
    eventually(10, "web-0", || {
        let k = &k;
        async move { (names(k, &["pods"]).await == ["web-0"]).then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        names(&k, &["pods"]).await,
        ["web-0"],
        "web-1 waits for web-0 to be ready"
    );
    hold.store(false, Ordering::SeqCst);
    // The default strategy has `partition: 0`, which is what kubectl reports on.
    let out = rollout_status(&k, "statefulset/web").await;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    assert_eq!(names(&k, &["pods"]).await, ["web-0", "web-1", "web-2"]);
    let dns = jsonpath(&k, &["pod", "web-1"], "{.spec.hostname}.{.spec.subdomain}").await;
    assert_eq!(dns, "web-1.nginx");
    // The headless Service's endpoints carry the hostnames cluster DNS answers for.
    let hosts = eventually(10, "endpoint hostnames", || {
        let k = &k;
        async move {
            let h = jsonpath(
                k,
                &["endpointslices", "-l", "kubernetes.io/service-name=nginx"],
                "{.items[*].endpoints[*].hostname}",
            )
            .await;
            let mut v: Vec<String> = h.split_whitespace().map(String::from).collect();
            v.sort();
            (v.len() == 3).then_some(v)
        }
    })
    .await;
    assert_eq!(hosts, ["web-0", "web-1", "web-2"]);
    let sts = k.ok(&["get", "sts"], None).await;
    assert!(
        sts.lines()
            .next()
            .unwrap()
            .starts_with("NAME   READY   AGE"),
        "{sts}"
    );
    assert!(sts.contains("3/3"), "{sts}");

    // A new template: replaced from the highest ordinal down; rollout status waits for it.
    k.ok(&["set", "image", "sts/web", "c=img:2"], None).await;
    let out = rollout_status(&k, "statefulset/web").await;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let revs = jsonpath(
        &k,
        &["sts", "web"],
        "{.status.currentRevision} {.status.updateRevision}",
    )
    .await;
    let (cur, upd) = revs.split_once(' ').unwrap();
    assert_eq!(cur, upd, "the update finished: {revs}");
    let images = jsonpath(&k, &["pods"], "{.items[*].spec.containers[0].image}").await;
    assert_eq!(images, "img:2 img:2 img:2");
    let history = k.ok(&["rollout", "history", "sts/web"], None).await;
    assert!(history.contains("1") && history.contains("2"), "{history}");

    // Scale down: highest ordinals go.
    let out = k.ok(&["scale", "sts/web", "--replicas=1"], None).await;
    assert!(out.contains("statefulset.apps/web scaled"), "{out}");
    eventually(15, "only web-0", || {
        let k = &k;
        async move { (names(k, &["pods"]).await == ["web-0"]).then_some(()) }
    })
    .await;

    // Parallel: all at once, even while none is ready.
    hold.store(true, Ordering::SeqCst);
    k.ok(&["apply", "-f", "-"], Some(&manifest("par", "Parallel")))
        .await;
    eventually(10, "3 par pods at once", || {
        let k = &k;
        async move {
            (names(k, &["pods", "-l", "app=par"]).await == ["par-0", "par-1", "par-2"])
                .then_some(())
        }
    })
    .await;
    kubelets.abort();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_workloads_daemonsets_per_node_with_taints() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let client = cp.client().await.unwrap();
    register_node(&client, "cp", "172.18.0.2").await;
    register_node(&client, "w1", "172.18.0.3").await;
    register_node(&client, "w2", "172.18.0.4").await;
    k.ok(
        &[
            "taint",
            "node",
            "cp",
            "node-role.kubernetes.io/control-plane:NoSchedule",
        ],
        None,
    )
    .await;
    k.ok(&["label", "node", "w2", "disk=ssd"], None).await;
    let kubelets = fake_kubelets(client.clone(), |_| Outcome::Run);
    let ds = |name: &str, extra: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n  selector:\n    \
             matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    \
             spec:\n{extra}      containers:\n      - name: c\n        image: img:1\n"
        )
    };
    let on_nodes = |sel: &'static str| {
        let k = &k;
        async move {
            let mut v: Vec<String> = jsonpath(k, &["pods", "-l", sel], "{.items[*].spec.nodeName}")
                .await
                .split_whitespace()
                .map(String::from)
                .collect();
            v.sort();
            v
        }
    };
    k.ok(&["apply", "-f", "-"], Some(&ds("plain", ""))).await;
    k.ok(
        &["apply", "-f", "-"],
        Some(&ds(
            "everywhere",
            "      tolerations:\n      - key: node-role.kubernetes.io/control-plane\n        \
             operator: Exists\n        effect: NoSchedule\n",
        )),
    )
    .await;
    k.ok(
        &["apply", "-f", "-"],
        Some(&ds("ssd", "      nodeSelector: {disk: ssd}\n")),
    )
    .await;
    rollout_status(&k, "ds/plain").await;
    rollout_status(&k, "ds/everywhere").await;
    rollout_status(&k, "ds/ssd").await;
    assert_eq!(
        on_nodes("app=plain").await,
        ["w1", "w2"],
        "the tainted node is skipped"
    );
    assert_eq!(on_nodes("app=everywhere").await, ["cp", "w1", "w2"]);
    assert_eq!(on_nodes("app=ssd").await, ["w2"]);
    let out = k.ok(&["get", "ds", "plain"], None).await;
    assert!(
        out.lines().next().unwrap().starts_with(
            "NAME    DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE"
        ),
        "{out}"
    );
    assert_eq!(
        &rows(&out)[0][1..7],
        ["2", "2", "2", "2", "2", "<none>"],
        "{out}"
    );
    // A new node gets its pod; a rolling update replaces them all.
    register_node(&client, "w3", "172.18.0.5").await;
    eventually(10, "a pod on w3", || async {
        (on_nodes("app=plain").await == ["w1", "w2", "w3"]).then_some(())
    })
    .await;
    k.ok(&["set", "image", "ds/plain", "c=img:2"], None).await;
    let out = rollout_status(&k, "ds/plain").await;
    assert!(
        out.contains("daemon set \"plain\" successfully rolled out"),
        "{out}"
    );
    let images = jsonpath(
        &k,
        &["pods", "-l", "app=plain"],
        "{.items[*].spec.containers[0].image}",
    )
    .await;
    assert_eq!(images, "img:2 img:2 img:2");
    let history = k.ok(&["rollout", "history", "ds/plain"], None).await;
    let revs: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revs, ["1", "2"], "{history}");
    let out = k.ok(&["rollout", "undo", "ds/plain"], None).await;
    assert!(out.contains("rolled back"), "{out}");
    rollout_status(&k, "ds/plain").await;
    let images = jsonpath(
        &k,
        &["pods", "-l", "app=plain"],
        "{.items[*].spec.containers[0].image}",
    )
    .await;
    assert_eq!(images, "img:1 img:1 img:1");
    kubelets.abort();
    cp.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_plane_workloads_jobs_and_cronjobs() {
    let bin = kubectl();
    let dir = tempfile::tempdir().unwrap();
    let cp = server(&dir.path().join("data")).await;
    let k = Kubectl::new(bin, dir.path(), &cp.kubeconfig);
    let client = cp.client().await.unwrap();
    register_node(&client, "n1", "172.18.0.2").await;
    // Pods labelled `outcome` do what it says; the others succeed.
    let kubelets = fake_kubelets(client.clone(), |p| {
        match p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("outcome"))
            .map(String::as_str)
        {
            Some("fail") => Outcome::Fail,
            Some("run") => Outcome::Run,
            _ => Outcome::Succeed,
        }
    });
    let out = k
        .ok(
            &[
                "create",
                "job",
                "hello",
                "--image=img:1",
                "--",
                "echo",
                "hi",
            ],
            None,
        )
        .await;
    assert!(out.contains("job.batch/hello created"), "{out}");
    k.ok(
        &[
            "wait",
            "--for=condition=complete",
            "job/hello",
            "--timeout=20s",
        ],
        None,
    )
    .await;
    let out = k.ok(&["get", "jobs"], None).await;
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("NAME    STATUS     COMPLETIONS   DURATION   AGE"),
        "{out}"
    );
    assert_eq!(&rows(&out)[0][1..3], ["Complete", "1/1"], "{out}");
    let job = |name: &str, spec: &str, labels: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    \
             metadata:\n      labels: {{{labels}}}\n    spec:\n      restartPolicy: Never\n      \
             containers:\n      - name: c\n        image: img:1\n"
        )
    };
    // completions 3, parallelism 2: three pods succeed, never more than two at once.
    k.ok(
        &["apply", "-f", "-"],
        Some(&job("three", "  completions: 3\n  parallelism: 2\n", "")),
    )
    .await;
    k.ok(
        &[
            "wait",
            "--for=condition=complete",
            "job/three",
            "--timeout=20s",
        ],
        None,
    )
    .await;
    assert_eq!(
        jsonpath(&k, &["job", "three"], "{.status.succeeded}").await,
        "3"
    );
    assert_eq!(names(&k, &["pods", "-l", "job-name=three"]).await.len(), 3);
    // backoffLimit 1: two failed pods, then Failed.
    k.ok(
        &["apply", "-f", "-"],
        Some(&job("broken", "  backoffLimit: 1\n", "outcome: fail")),
    )
    .await;
    k.ok(
        &[
            "wait",
            "--for=condition=failed",
            "job/broken",
            "--timeout=20s",
        ],
        None,
    )
    .await;
    let reason = jsonpath(
        &k,
        &["job", "broken"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
    )
    .await;
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(names(&k, &["pods", "-l", "job-name=broken"]).await.len(), 2);
    // activeDeadlineSeconds: a pod that never ends is stopped and the Job fails.
    k.ok(
        &["apply", "-f", "-"],
        Some(&job("slow", "  activeDeadlineSeconds: 1\n", "outcome: run")),
    )
    .await;
    k.ok(
        &[
            "wait",
            "--for=condition=failed",
            "job/slow",
            "--timeout=20s",
        ],
        None,
    )
    .await;
    let reason = jsonpath(
        &k,
        &["job", "slow"],
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
    )
    .await;
    assert_eq!(reason, "DeadlineExceeded");
    eventually(10, "slow's pod stopped", || {
        let k = &k;
        async move {
            names(k, &["pods", "-l", "job-name=slow"])
                .await
                .is_empty()
                .then_some(())
        }
    })
    .await;
    // ttlSecondsAfterFinished 0: gone once complete, pods too.
    k.ok(
        &["apply", "-f", "-"],
        Some(&job("brief", "  ttlSecondsAfterFinished: 0\n", "")),
    )
    .await;
    eventually(15, "brief deleted with its pods", || {
        let k = &k;
        async move {
            let jobs = names(k, &["jobs"]).await;
            let pods = names(k, &["pods", "-l", "job-name=brief"]).await;
            (!jobs.iter().any(|j| j == "brief") && pods.is_empty()).then_some(())
        }
    })
    .await;

    // CronJobs. The schedule's last time is moved back by hand so a run is due at once.
    use k8s_openapi::api::batch::v1::CronJob;
    let cjs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let due = |name: &'static str| {
        let cjs = cjs.clone();
        async move {
            let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(150);
            let t = t.strftime("%Y-%m-%dT%H:%M:00Z").to_string();
            cjs.patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"lastScheduleTime": t}})),
            )
            .await
            .unwrap();
        }
    };
    let out = k
        .ok(
            &[
                "create",
                "cronjob",
                "tick",
                "--image=img:1",
                "--schedule=*/1 * * * *",
                "--",
                "echo",
                "hi",
            ],
            None,
        )
        .await;
    assert!(out.contains("cronjob.batch/tick created"), "{out}");
    let out = k.ok(&["get", "cj"], None).await;
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("NAME   SCHEDULE      TIMEZONE   SUSPEND   ACTIVE   LAST SCHEDULE   AGE"),
        "{out}"
    );
    due("tick").await;
    let first = eventually(10, "a job of tick", || {
        let k = &k;
        async move {
            names(k, &["jobs"])
                .await
                .into_iter()
                .find(|j| j.starts_with("tick-"))
        }
    })
    .await;
    let minutes: i64 = first.trim_start_matches("tick-").parse().unwrap();
    assert!(
        (jiff::Timestamp::now().as_second() / 60 - minutes) <= 2,
        "{first}"
    );
    k.ok(
        &[
            "wait",
            "--for=condition=complete",
            &format!("job/{first}"),
            "--timeout=20s",
        ],
        None,
    )
    .await;
    // History limit 1 for successful Jobs: the next run's Job replaces the first. The next run
    // is at a minute half an hour away from the first's, three hours back, so it cannot have
    // the first one's name.
    // Start times have one-second resolution and equal ones are ordered by name (upstream's
    // `byJobStartTime`), so the next run must start in a later second than the first for the
    // first to be the older one: on an idle machine both fall in the same second otherwise.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let minute = (jiff::Timestamp::now().as_second() / 60 + 30) % 60;
    let patch =
        format!(r#"{{"spec":{{"successfulJobsHistoryLimit":1,"schedule":"{minute} * * * *"}}}}"#);
    k.ok(&["patch", "cj/tick", "-p", &patch], None).await;
    let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3 * 3600);
    cjs.patch_status(
        "tick",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"lastScheduleTime": t.strftime("%Y-%m-%dT%H:%M:00Z").to_string()}}),
        ),
    )
    .await
    .unwrap();
    eventually(20, "one successful tick job, not the first", || {
        let k = &k;
        let first = first.clone();
        async move {
            let v: Vec<String> = names(k, &["jobs"])
                .await
                .into_iter()
                .filter(|j| j.starts_with("tick-"))
                .collect();
            (v.len() == 1 && v[0] != first).then_some(())
        }
    })
    .await;
    // Forbid: while a Job runs, no other starts; Replace: the running one is replaced.
    let cron = |policy: &str, schedule: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: long\nspec:\n  schedule: \
             \"{schedule}\"\n  concurrencyPolicy: {policy}\n  jobTemplate:\n    spec:\n      template:\n        \
             metadata:\n          labels: {{outcome: run}}\n        spec:\n          restartPolicy: \
             OnFailure\n          containers:\n          - name: c\n            image: img:1\n"
        )
    };
    let long_jobs = || {
        let k = &k;
        async move {
            names(k, &["jobs"])
                .await
                .into_iter()
                .filter(|j| j.starts_with("long-"))
                .collect::<Vec<_>>()
        }
    };
    let set_last = |mins_ago: i64| {
        let cjs = cjs.clone();
        async move {
            let t = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(mins_ago * 60);
            let t = t.strftime("%Y-%m-%dT%H:00:00Z").to_string();
            cjs.patch_status(
                "long",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"lastScheduleTime": t}})),
            )
            .await
            .unwrap();
        }
    };
    k.ok(&["apply", "-f", "-"], Some(&cron("Forbid", "@hourly")))
        .await;
    set_last(120).await;
    let running = eventually(10, "one long job", || async {
        let v = long_jobs().await;
        (v.len() == 1).then_some(v)
    })
    .await;
    let active = jsonpath(&k, &["cj", "long"], "{.status.active[*].name}").await;
    assert_eq!(active, running[0]);
    // Another time is due (minute 7 of an hour, never the hourly run's name): Forbid waits.
    k.ok(&["apply", "-f", "-"], Some(&cron("Forbid", "7 * * * *")))
        .await;
    set_last(180).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        long_jobs().await,
        running,
        "Forbid starts nothing while one runs"
    );
    // Replace: the running Job goes, the due one starts.
    k.ok(&["apply", "-f", "-"], Some(&cron("Replace", "7 * * * *")))
        .await;
    eventually(10, "the running job replaced", || {
        let running = running.clone();
        async move {
            let v = long_jobs().await;
            (v.len() == 1 && v != running).then_some(())
        }
    })
    .await;
    kubelets.abort();
    cp.shutdown().await.unwrap();
}
