//! The API details a real workload needs, with kubectl 1.37 against a real cluster: Secrets
//! as env, envFrom and volumes (refreshed when the Secret changes, 0644 by default, items
//! and defaultMode honoured); a Deployment sent as protobuf by `kubectl create deployment`
//! runs (no `workingDir: ""`); the node's Lease renewed in `kube-node-lease`; repeated
//! kubelet events counted on one Event; `pods/proxy` and `services/proxy` reach CoreDNS's
//! health and metrics ports, and the URL `kubectl cluster-info` prints for CoreDNS answers;
//! and kubectl sees no version skew.

use std::time::Duration;

use minikind_test_support::{Cluster, eventually};

const HERMETIC: &str = "networking:\n  internal: true\ndns:\n  upstream: lab\n";

fn k_ok(c: &Cluster, args: &[&str], stdin: Option<&str>) -> String {
    let r = c.kubectl(args, stdin);
    assert!(r.ok, "kubectl {args:?}:\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn json(c: &Cluster, args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&k_ok(c, &a, None)).expect("kubectl -o json")
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: consumer}
spec:
  containers:
  - name: main
    image: minikind/tools
    command: [sleep, "3600"]
    env:
    - name: DB_USER
      valueFrom: {secretKeyRef: {name: creds, key: username}}
    - name: MISSING
      valueFrom: {secretKeyRef: {name: nowhere, key: k, optional: true}}
    envFrom:
    - secretRef: {name: creds}
      prefix: S_
    volumeMounts:
    - {name: all, mountPath: /etc/creds}
    - {name: picked, mountPath: /etc/picked}
    - {name: maybe, mountPath: /etc/maybe}
  volumes:
  - name: all
    secret: {secretName: creds}
  - name: picked
    secret:
      secretName: creds
      defaultMode: 0400
      items: [{key: password, path: sub/pass}]
  - name: maybe
    secret: {secretName: nowhere, optional: true}
"#;

#[test]
fn secrets_protobuf_leases_events_and_version_on_a_real_cluster() {
    let c = Cluster::create(
        "e2e-api",
        &format!("nodes:\n- role: control-plane\n{HERMETIC}"),
    );
    let node = c.node("control-plane");

    // No skew warning with the pinned kubectl.
    let v = c.kubectl(&["version"], None);
    assert!(v.ok, "{}", v.stderr);
    assert!(!v.stderr.contains("WARNING"), "{}", v.stderr);

    // Secrets as env, envFrom and volumes.
    k_ok(
        &c,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=username=admin",
            "--from-literal=password=s3cret",
        ],
        None,
    );
    k_ok(&c, &["apply", "-f", "-"], Some(POD));
    c.wait_pod_ready("default", "consumer");
    // The test image's busybox links few applets; its shell runs the others.
    let sh = |script: &str| c.pod_exec("consumer", &["sh", "-c", script]);
    let env = sh("env");
    assert!(env.ok, "{}", env.stderr);
    for line in ["DB_USER=admin", "S_username=admin", "S_password=s3cret"] {
        assert!(
            env.stdout.lines().any(|l| l == line),
            "{line}:\n{}",
            env.stdout
        );
    }
    assert!(!env.stdout.contains("MISSING="), "{}", env.stdout);
    let r = sh("cat /etc/creds/username /etc/picked/sub/pass");
    assert_eq!(r.stdout, "admins3cret", "{}", r.stderr);
    let r = sh("stat -c %a /etc/creds/username /etc/picked/sub/pass");
    assert_eq!(
        r.stdout.split_whitespace().collect::<Vec<_>>(),
        ["644", "400"],
        "{}",
        r.stderr
    );
    let r = sh("ls -A /etc/maybe");
    assert!(
        r.ok && r.stdout.trim().is_empty(),
        "{} {}",
        r.stdout,
        r.stderr
    );
    // A changed Secret reaches the volume (the periodic sync), not the environment.
    k_ok(
        &c,
        &[
            "patch",
            "secret",
            "creds",
            "-p",
            r#"{"stringData":{"username":"root"}}"#,
        ],
        None,
    );
    eventually(
        "the secret volume to show the new value",
        Duration::from_secs(60),
        || {
            let r = sh("cat /etc/creds/username");
            (r.stdout == "root").then_some(())
        },
    );

    // The issue's Deployment: sent as protobuf, its pods run.
    k_ok(
        &c,
        &[
            "create",
            "deployment",
            "sleeper",
            "--image=minikind/tools",
            "--",
            "sleep",
            "3600",
        ],
        None,
    );
    let d = json(&c, &["get", "deployment", "sleeper"]);
    let container = &d["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("workingDir").is_none(), "{container}");
    eventually("the sleeper pod to run", Duration::from_secs(90), || {
        let pods = c.pods("default", "app=sleeper");
        pods.iter()
            .any(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .then_some(())
    });

    // The node's Lease, renewed every 10 s.
    let lease = |c: &Cluster| json(c, &["get", "lease", "-n", "kube-node-lease", &node]);
    let l = eventually("the node lease", Duration::from_secs(30), || {
        let r = c.kubectl(
            &["get", "lease", "-n", "kube-node-lease", &node, "-o", "json"],
            None,
        );
        r.ok.then(|| serde_json::from_str::<serde_json::Value>(&r.stdout).unwrap())
    });
    assert_eq!(l["spec"]["holderIdentity"], node.as_str(), "{l}");
    assert_eq!(l["spec"]["leaseDurationSeconds"], 40, "{l}");
    assert_eq!(l["metadata"]["ownerReferences"][0]["kind"], "Node", "{l}");
    let first = l["spec"]["renewTime"].as_str().unwrap().to_string();
    eventually("the lease to be renewed", Duration::from_secs(30), || {
        let now = lease(&c);
        (now["spec"]["renewTime"].as_str() != Some(first.as_str())).then_some(())
    });

    // A container that keeps exiting: its repeated events are one Event with a count.
    k_ok(
        &c,
        &[
            "run",
            "flaky",
            "--image=minikind/tools",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
        None,
    );
    let ev = eventually(
        "a counted event about flaky",
        Duration::from_secs(120),
        || {
            let list = json(
                &c,
                &[
                    "get",
                    "events",
                    "--field-selector",
                    "involvedObject.name=flaky",
                ],
            );
            list["items"]
                .as_array()?
                .iter()
                .find(|e| e["count"].as_i64().unwrap_or(0) >= 3)
                .cloned()
        },
    );
    assert_ne!(ev["firstTimestamp"], ev["lastTimestamp"], "{ev}");
    assert_eq!(ev["source"]["component"], "kubelet", "{ev}");

    // The proxy subresources, to CoreDNS's health (pod) and metrics (Service) ports.
    let coredns = c.coredns_pods();
    let pod = coredns[0]["metadata"]["name"].as_str().unwrap();
    let health = k_ok(
        &c,
        &[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/kube-system/pods/{pod}:8080/proxy/health"),
        ],
        None,
    );
    assert_eq!(health, "OK");
    let metrics = k_ok(
        &c,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/kube-system/services/kube-dns:metrics/proxy/metrics",
        ],
        None,
    );
    assert!(metrics.contains("coredns_build_info"), "{metrics}");
    // cluster-info's CoreDNS URL names the UDP port `dns`: the proxy dials TCP 53, which
    // speaks DNS, not HTTP, so the answer is an error from the endpoint — but an answer.
    let info = k_ok(&c, &["cluster-info"], None);
    let url = info
        .split_whitespace()
        .find(|w| w.contains("/services/kube-dns:dns/proxy"))
        .unwrap_or_else(|| panic!("no CoreDNS URL in: {info}"));
    // (kubectl may colour it: the URL ends where an escape sequence starts.)
    let path = url[url.find("/api/").unwrap()..]
        .split('\u{1b}')
        .next()
        .unwrap()
        .to_string();
    let r = c.kubectl(&["get", "--raw", &path], None);
    assert!(
        r.stderr.contains("ServiceUnavailable") && r.stderr.contains("error trying to reach"),
        "{path}: {} {}",
        r.stdout,
        r.stderr
    );
}
