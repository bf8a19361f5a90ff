//! The workload kinds on a real multi-node cluster, driven by the pinned kubectl: the control
//! plane carries kubeadm's `NoSchedule` taint (so workloads land on the workers while CoreDNS,
//! tolerating it, still runs), a StatefulSet behind a headless Service gets stable names that
//! resolve through cluster DNS from a pod (`web-1.nginx.default.svc.cluster.local`), a
//! DaemonSet puts one pod on each worker, a Deployment rolls out through ReplicaSets and back
//! (`rollout restart/history/undo`), `kubectl create job` runs to completion, and a foreground
//! deletion removes a StatefulSet after its pods.

use minikind_test_support::{Cluster, Run, eventually};
use std::time::Duration;

const CONFIG: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\nnodes:\n- role: \
                      control-plane\n- role: worker\n- role: worker\n";

const MANIFEST: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: minikind/tools
        command: [sleep, "100000"]
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: minikind/tools
        command: [sleep, "100000"]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: front
spec:
  replicas: 2
  selector:
    matchLabels: {app: front}
  template:
    metadata:
      labels: {app: front}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: minikind/tools
        command: [sleep, "100000"]
"#;

fn revisions(history: &str) -> Vec<String> {
    history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .map(String::from)
        .collect()
}

#[test]
fn workloads_statefulset_dns_daemonset_rollout_job_on_a_tainted_control_plane() {
    let c = Cluster::create("e2e-wl", CONFIG);
    let cp = c.node("control-plane");
    let workers = [c.node("worker"), c.node("worker2")];

    // kubeadm's taint on the control plane; CoreDNS runs regardless (it tolerates it).
    let taints = c.kubectl_ok(&["get", "node", &cp, "-o", "jsonpath={.spec.taints}"]);
    assert!(
        taints.contains("node-role.kubernetes.io/control-plane") && taints.contains("NoSchedule"),
        "{taints}"
    );
    c.wait_coredns_rolled_out();

    let Run {
        ok,
        stdout: out,
        stderr: err,
        ..
    } = c.kubectl(&["apply", "-f", "-"], Some(MANIFEST));
    assert!(ok, "{out}\n{err}");
    for what in ["statefulset/web", "daemonset/agent", "deployment/front"] {
        c.kubectl_ok(&["rollout", "status", what, "--timeout=120s"]);
    }
    // Nothing of ours on the control plane; one agent per worker.
    let placed = |sel: &str| -> Vec<String> {
        let mut v: Vec<String> = c
            .kubectl_ok(&[
                "get",
                "pods",
                "-l",
                sel,
                "-o",
                "jsonpath={.items[*].spec.nodeName}",
            ])
            .split_whitespace()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(placed("app=agent"), workers.to_vec());
    for sel in ["app=web", "app=front"] {
        assert!(!placed(sel).contains(&cp), "{sel} on the control plane");
    }

    // Stable names, resolved through cluster DNS from a pod.
    let ip1 = c.kubectl_ok(&["get", "pod", "web-1", "-o", "jsonpath={.status.podIP}"]);
    assert!(!ip1.is_empty());
    let answer = eventually(
        "web-1.nginx resolves from web-0",
        Duration::from_secs(30),
        || {
            let Run {
                ok, stdout: out, ..
            } = c.kubectl(
                &[
                    "exec",
                    "web-0",
                    "--",
                    "nslookup",
                    "web-1.nginx.default.svc.cluster.local",
                ],
                None,
            );
            (ok && out.contains(&ip1)).then_some(out)
        },
    );
    assert!(answer.contains(&ip1), "{answer}");
    // The pod's UTS name is its hostname (busybox runs minikind's tools: `cat` is one).
    let hostname = c.kubectl_ok(&["exec", "web-2", "--", "cat", "/proc/sys/kernel/hostname"]);
    assert_eq!(hostname.trim(), "web-2");

    // A Deployment rolls forward and back through its ReplicaSets.
    c.kubectl_ok(&["rollout", "restart", "deployment/front"]);
    c.kubectl_ok(&["rollout", "status", "deployment/front", "--timeout=120s"]);
    let rs = c.kubectl_ok(&["get", "rs", "-l", "app=front", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "{rs}");
    assert_eq!(
        revisions(&c.kubectl_ok(&["rollout", "history", "deployment/front"])),
        ["1", "2"]
    );
    let out = c.kubectl_ok(&["rollout", "undo", "deployment/front"]);
    assert!(out.contains("rolled back"), "{out}");
    c.kubectl_ok(&["rollout", "status", "deployment/front", "--timeout=120s"]);
    assert_eq!(
        revisions(&c.kubectl_ok(&["rollout", "history", "deployment/front"])),
        ["2", "3"]
    );

    // A Job from `kubectl create job` runs to completion.
    c.kubectl_ok(&[
        "create",
        "job",
        "once",
        "--image=minikind/tools",
        "--",
        "sleep",
        "1",
    ]);
    c.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/once",
        "--timeout=120s",
    ]);
    let jobs = c.kubectl_ok(&["get", "jobs"]);
    assert!(
        jobs.lines()
            .any(|l| l.starts_with("once") && l.contains("Complete") && l.contains("1/1")),
        "{jobs}"
    );

    // Foreground deletion: the StatefulSet goes after its pods.
    c.kubectl_ok(&[
        "delete",
        "statefulset",
        "web",
        "--cascade=foreground",
        "--timeout=120s",
    ]);
    let left = c.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
    assert!(left.trim().is_empty(), "{left}");
}
