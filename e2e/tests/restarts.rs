//! A cluster comes back whole after every node is restarted (issue 13, item 7): a 3-node
//! cluster with a few pods is snapshotted — every API object and every node's iptables rules —
//! then each node container is `docker restart`ed, and afterwards the kubeconfig still works,
//! every API object and every rule set is what it was (fields that record the restart itself
//! aside, each named below with the reason), every pod is Running again with each container's
//! restart count up, and cluster DNS answers from a pod on every node and from every node.
//!
//! The API is published on the host's loopback (not `--internal`) so that the kubeconfig's
//! port is the one that must survive; the lab upstream keeps every query on the machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use minikind_test_support::{Cluster, docker, eventually, minikind_stdin};
use serde_json::{Value, json};

const CONFIG: &str =
    "dns:\n  upstream: lab\nnodes:\n- role: control-plane\n- role: worker\n- role: worker\n";

/// The name every lookup asks for, and the Service it names.
const NAME: &str = "kubernetes.default.svc.cluster.local";

/// The workload: a pod pinned to every node (tolerating the control plane's taint) to ask
/// DNS from, and a Deployment of two replicas (asking for different nodes).
fn workload(nodes: &[String]) -> Vec<Value> {
    let mut items: Vec<Value> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": format!("probe-{i}"), "namespace": "default"},
                "spec": {
                    "nodeName": node,
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "sleep", "image": "minikind/tools", "command": ["sleep", "100000"]}],
                },
            })
        })
        .collect();
    items.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
                    ]}},
                    "containers": [{"name": "web", "image": "minikind/tools", "command": ["sleep", "100000"]}],
                },
            },
        },
    }));
    items
}

/// Keys dropped wherever they occur, each because a restart legitimately changes it.
const VOLATILE_KEYS: &[&str] = &[
    // Bumped by every write, and every status the restarted kubelets report is a write.
    "resourceVersion",
    // Records when and by which manager each field was last written: the status writes again.
    "managedFields",
    // Node heartbeats and condition times: a restarted node reports afresh and its Ready
    // condition goes False and True again while its kubelet is down.
    "lastHeartbeatTime",
    "lastTransitionTime",
    // Pod conditions are probed again by the new kubelet; Deployment/ReplicaSet conditions are
    // updated when their pods' readiness comes and goes.
    "lastProbeTime",
    "lastUpdateTime",
    // Leases are renewed by the restarted kubelets and controllers (and re-acquired by the
    // restarted controllers, which counts a transition and names the new holder).
    "renewTime",
    "acquireTime",
    "leaseTransitions",
    "holderIdentity",
];

/// Container status fields that describe the running instance, which a restart replaces: a
/// new container (id, state and start time), the old one as the last state, one more restart.
/// The restart count is checked on its own (it must rise).
const INSTANCE_KEYS: &[&str] = &["containerID", "state", "lastState", "restartCount"];

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in VOLATILE_KEYS {
                m.remove(*k);
            }
            for (_, x) in m.iter_mut() {
                strip(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// One API object as compared: its identity and the object without the fields above.
fn normalise(mut o: Value) -> (String, Value) {
    let key = format!(
        "{} {} {}/{}",
        o["apiVersion"].as_str().unwrap_or(""),
        o["kind"].as_str().unwrap_or(""),
        o["metadata"]["namespace"].as_str().unwrap_or(""),
        o["metadata"]["name"].as_str().unwrap_or("")
    );
    strip(&mut o);
    for list in ["containerStatuses", "initContainerStatuses"] {
        if let Some(cs) = o
            .pointer_mut(&format!("/status/{list}"))
            .and_then(Value::as_array_mut)
        {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                for k in INSTANCE_KEYS {
                    c.remove(*k);
                }
            }
        }
    }
    // The pod's start is when the kubelet first saw it; the restarted kubelet sees the same
    // pod again and keeps it — so `startTime` stays in. Nothing else is dropped.
    (key, o)
}

/// Every API object the cluster serves a list of, normalised, by identity. Events are left
/// out: they are the record of what happened, and a restart happening is news they report.
fn api_objects(c: &Cluster) -> BTreeMap<String, Value> {
    let resources = c.kubectl_ok(&["api-resources", "--verbs=list", "-o", "name"]);
    let resources: Vec<&str> = resources
        .lines()
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.starts_with("events"))
        .collect();
    assert!(resources.contains(&"pods"), "{resources:?}");
    let list: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", &resources.join(","), "-A", "-o", "json"]))
            .expect("kubectl's JSON");
    list["items"]
        .as_array()
        .expect("a List")
        .iter()
        .cloned()
        .map(normalise)
        .collect()
}

/// The keys of two snapshots that differ, with both sides, for the failure message.
fn differences(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
        if a.get(k) != b.get(k) {
            out.push(format!(
                "{k}:\n  before {}\n  after  {}",
                a.get(k).map(Value::to_string).unwrap_or("(none)".into()),
                b.get(k).map(Value::to_string).unwrap_or("(none)".into())
            ));
        }
    }
    out
}

/// A node's whole rule set (`iptables-save`, every table), with what legitimately differs
/// masked: the dump's comment lines (they carry the time of the dump), the packet and byte
/// counters on chain lines, and the ports of Docker's embedded resolver, which Docker picks at
/// random at every start of the container and names in its DNAT/SNAT rules.
fn rule_set(c: &Cluster, node: &str) -> Vec<String> {
    let save = c.exec_ok(node, &["iptables-save"]);
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let l = if l.starts_with(':') {
                // `:CHAIN POLICY [packets:bytes]`
                l.split(" [").next().unwrap_or(l).to_string()
            } else {
                l.to_string()
            };
            mask_resolver_ports(&l)
        })
        .collect()
}

/// Replaces the ports Docker picks for its resolver with `PORT`: the one after `127.0.0.11:`
/// (the DNAT target) and the source port of the replies' SNAT rule (`-s 127.0.0.11/32 …
/// --sport N`). Port 53, which the rules redirect from and back to, stays.
fn mask_resolver_ports(rule: &str) -> String {
    let replies = rule.contains("-s 127.0.0.11/32");
    let words: Vec<&str> = rule.split(' ').collect();
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if w.starts_with("127.0.0.11:") {
                "127.0.0.11:PORT".to_string()
            } else if replies && i > 0 && words[i - 1] == "--sport" {
                "PORT".to_string()
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Restart counts by pod and container.
fn restart_counts(c: &Cluster) -> BTreeMap<String, u64> {
    let list: Value =
        serde_json::from_str(&c.kubectl_ok(&["get", "pods", "-A", "-o", "json"])).unwrap();
    let mut out = BTreeMap::new();
    for p in list["items"].as_array().unwrap() {
        for cs in p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
        {
            out.insert(
                format!(
                    "{}/{}/{}",
                    p["metadata"]["namespace"].as_str().unwrap_or(""),
                    p["metadata"]["name"].as_str().unwrap_or(""),
                    cs["name"].as_str().unwrap_or("")
                ),
                cs["restartCount"].as_u64().unwrap_or(0),
            );
        }
    }
    out
}

/// Whether every pod is Running with every container ready.
fn all_pods_ready(c: &Cluster) -> Result<(), String> {
    let out = c.kubectl(&["get", "pods", "-A", "-o", "json"], None);
    if !out.ok {
        return Err(out.stderr);
    }
    let list: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
    for p in list["items"].as_array().into_iter().flatten() {
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if p["status"]["phase"] != "Running" || !ready {
            return Err(format!(
                "{} is {} (ready: {ready})",
                p["metadata"]["name"], p["status"]["phase"]
            ));
        }
    }
    Ok(())
}

/// `dig +short` of [`NAME`] from the probe pod on each node, and from each node itself
/// through kube-dns's ClusterIP (the node's own service rules and the tunnels to CoreDNS).
fn dns_answers(c: &Cluster, nodes: &[String], dns_ip: &str) -> Vec<(String, String)> {
    let dig = ["dig", "+short", "+time=1", "+tries=1", NAME];
    let mut out = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let r = c.pod_exec(&format!("probe-{i}"), &dig);
        out.push((format!("pod on {node}"), r.stdout.trim().to_string()));
        let server = format!("@{dns_ip}");
        let r = c.exec(node, &[&dig[..], &[server.as_str()]].concat());
        out.push((format!("node {node}"), r.stdout.trim().to_string()));
    }
    out
}

#[test]
fn restarting_every_node_leaves_objects_rules_pods_and_dns_as_they_were() {
    let c = Cluster::create("e2e-restarts", CONFIG);
    let nodes = vec![c.node("control-plane"), c.node("worker"), c.node("worker2")];
    // Through minikind's own apply (this API server serves no OpenAPI document for kubectl's
    // client-side validation).
    for item in workload(&nodes) {
        let r = minikind_stdin(&["apply", "-f", "-", "--name", &c.name], &item.to_string());
        assert!(r.ok, "apply {item}: {}", r.stderr);
    }
    c.wait_coredns_rolled_out();
    // kubeadm's preferred anti-affinity honoured: the create installs the add-on once every
    // node is Ready, so the two CoreDNS replicas sit on different nodes and the restart of
    // any one node leaves a replica answering.
    let dns_nodes: std::collections::BTreeSet<String> = c
        .coredns_pods()
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(dns_nodes.len(), 2, "CoreDNS replicas on {dns_nodes:?}");
    c.minikind_ok(&["rollout", "status", "deployment/web", "--timeout", "60s"]);
    eventually("every pod ready", Duration::from_secs(60), || {
        all_pods_ready(&c).ok()
    });
    // Both of the Deployment's replicas are scheduled. Which nodes they sit on does not matter
    // here: every node is restarted below, so each replica is stopped once either way (they
    // used to land on the workers only because both CoreDNS replicas made the control plane
    // the busiest node).
    let web_nodes: Vec<String> = c
        .pods("default", "app=web")
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(web_nodes.len(), 2, "{web_nodes:?}");
    assert!(web_nodes.iter().all(|n| nodes.contains(n)), "{web_nodes:?}");

    let kubernetes_ip = c.kubectl_ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let dns_ip = c.kubectl_ok(&[
        "get",
        "svc",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let want: Vec<(String, String)> = nodes
        .iter()
        .flat_map(|n| [format!("pod on {n}"), format!("node {n}")])
        .map(|who| (who, kubernetes_ip.clone()))
        .collect();
    let dns_before = dns_answers(&c, &nodes, &dns_ip);
    assert_eq!(dns_before, want, "DNS before the restart");

    // Let every status write from the start-up settle (second CoreDNS endpoint, conditions),
    // then take the snapshots.
    std::thread::sleep(Duration::from_secs(3));
    let objects = api_objects(&c);
    let rules: Vec<Vec<String>> = nodes.iter().map(|n| rule_set(&c, n)).collect();
    for (node, r) in nodes.iter().zip(&rules) {
        assert!(
            r.iter().any(|l| l.starts_with("-A KUBE-SVC-")),
            "{node} has no service rules yet: {r:#?}"
        );
    }
    let counts = restart_counts(&c);
    assert!(counts.len() >= 6, "{counts:?}");
    let server = c.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);

    // Every node, one after the other (the control plane first, as the worst case for the
    // others: their agents lose the API while it is down).
    for node in &nodes {
        let r = docker(&["restart", "-t", "2", node]);
        assert!(r.ok, "docker restart {node}: {}", r.stderr);
    }
    let restarted = Instant::now();

    // The kubeconfig is the same and works.
    eventually(
        "the API through the kubeconfig",
        Duration::from_secs(60),
        || {
            c.kubectl(&["get", "--raw", "/readyz"], None)
                .ok
                .then_some(())
        },
    );
    let server_after = c.kubectl_ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert_eq!(server_after, server);

    // Every pod Running and ready again, each container restarted once more.
    eventually("every pod ready again", Duration::from_secs(90), || {
        all_pods_ready(&c).ok()
    });
    let counts_after = restart_counts(&c);
    assert_eq!(
        counts_after.keys().collect::<Vec<_>>(),
        counts.keys().collect::<Vec<_>>(),
        "the same pods and containers"
    );
    for (k, before) in &counts {
        let after = counts_after[k];
        assert!(after > *before, "{k}: restartCount {before} → {after}");
    }

    // DNS answers from a pod on every node and from every node.
    let mut last = Vec::new();
    let answered = eventually_or_last(Duration::from_secs(60), &mut last, || {
        let got = dns_answers(&c, &nodes, &dns_ip);
        (got == want).then_some(()).ok_or(got)
    });
    assert!(answered.is_some(), "DNS after the restart: {last:#?}");
    eprintln!(
        "restart → every pod ready and DNS answering everywhere: {:?}",
        restarted.elapsed()
    );

    // Every API object as it was (the status writes of the restart have converged by now;
    // allow them a little longer if not).
    let mut diff = Vec::new();
    let same = eventually_or_last(Duration::from_secs(30), &mut diff, || {
        let d = differences(&objects, &api_objects(&c));
        d.is_empty().then_some(()).ok_or(d)
    });
    assert!(
        same.is_some(),
        "API objects differ after the restart:\n{}",
        diff.join("\n")
    );

    // Every rule set as it was.
    for (node, before) in nodes.iter().zip(&rules) {
        let mut last = Vec::new();
        let same = eventually_or_last(Duration::from_secs(30), &mut last, || {
            let after = rule_set(&c, node);
            (after == *before).then_some(()).ok_or(after)
        });
        if same.is_none() {
            let gone: Vec<_> = before.iter().filter(|l| !last.contains(*l)).collect();
            let new: Vec<_> = last.iter().filter(|l| !before.contains(*l)).collect();
            panic!(
                "{node}'s rules differ after the restart\nonly before: {gone:#?}\nonly after: \
                 {new:#?}\n(order or count differ when both are empty)"
            );
        }
    }
}

/// Polls `f` (every 200 ms, up to `limit`) until it returns `Ok`; keeps the last `Err` in
/// `last` for the failure message and returns `None` when time runs out.
fn eventually_or_last<T, E>(
    limit: Duration,
    last: &mut E,
    mut f: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Some(v),
            Err(e) => *last = e,
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn resolver_ports_are_masked_and_nothing_else() {
    assert_eq!(
        mask_resolver_ports(
            "-A DOCKER_OUTPUT -d 172.18.0.2/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:40311"
        ),
        "-A DOCKER_OUTPUT -d 172.18.0.2/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:PORT"
    );
    assert_eq!(
        mask_resolver_ports(
            "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 39917 -j SNAT --to-source 172.18.0.2:53"
        ),
        "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport PORT -j SNAT --to-source 172.18.0.2:53"
    );
    let kube = "-A KUBE-SEP-X -p udp -m udp --sport 1234 -j DNAT --to-destination 10.244.1.2:53";
    assert_eq!(mask_resolver_ports(kube), kube);
}
