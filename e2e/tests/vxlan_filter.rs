//! VXLAN between the nodes of an `--internal` cluster is admitted only from the nodes: each
//! node's `MINIKIND-OVERLAY` filter chain accepts UDP 4789 from its peers' addresses and drops
//! it from anyone else on the Docker network, while pod traffic across nodes keeps flowing.
//!
//! Hermetic: internal network, lab upstream. The stranger is the cluster's own lab upstream
//! container (on the cluster network, not a node): it sends a datagram to a node's VXLAN port
//! with minikind's `dig -p 4789`. Nothing is sent from the host to a cluster address.

use std::collections::BTreeMap;
use std::time::Duration;

use minikind_test_support::{Cluster, docker, eventually, pod_ip};

const CONFIG: &str = "nodes:\n- role: control-plane\n- role: worker\nnetworking:\n  internal: true\ndns:\n  upstream: lab\n";

const JUMP: &str = "-A INPUT -p udp -m udp --dport 4789 -m comment --comment \"minikind: VXLAN only from the cluster nodes\" -j MINIKIND-OVERLAY";
const DROP: &str =
    "-A MINIKIND-OVERLAY -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP";

fn accept(peer: &str) -> String {
    format!(
        "-A MINIKIND-OVERLAY -s {peer}/32 -m comment --comment \"minikind: VXLAN from node {peer}\" -j ACCEPT"
    )
}

/// A container's address on the cluster network.
fn address(container: &str) -> String {
    let r = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ]);
    assert!(r.ok, "docker inspect {container}: {}", r.stderr);
    let ip = r.stdout.trim().to_string();
    assert!(!ip.is_empty(), "{container} has no address");
    ip
}

/// The node's filter table with packet counters: rule → packets (`iptables-save -c`).
fn counted_rules(c: &Cluster, node: &str) -> BTreeMap<String, u64> {
    c.exec_ok(node, &["iptables-save", "-c", "-t", "filter"])
        .lines()
        .filter_map(|l| {
            let (counters, rule) = l.strip_prefix('[')?.split_once("] ")?;
            let packets = counters.split(':').next()?.parse().ok()?;
            rule.starts_with("-A ").then(|| (rule.to_string(), packets))
        })
        .collect()
}

/// The rule lines of the node's filter table, in order.
fn filter_rules(c: &Cluster, node: &str) -> Vec<String> {
    c.exec_ok(node, &["iptables-save", "-t", "filter"])
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
}

/// Waits until the node's chain admits exactly `peer`, then checks the one jump to it, with no
/// ACCEPT ahead of it in INPUT.
fn wait_filter(c: &Cluster, node: &str, peer: &str) {
    let want = vec![accept(peer), DROP.to_string()];
    let rules = eventually(
        &format!("the VXLAN filter on {node}"),
        Duration::from_secs(30),
        || {
            let rules = filter_rules(c, node);
            let chain: Vec<String> = rules
                .iter()
                .filter(|r| r.starts_with("-A MINIKIND-OVERLAY "))
                .cloned()
                .collect();
            (chain == want).then_some(rules)
        },
    );
    assert_eq!(
        rules.iter().filter(|r| *r == JUMP).count(),
        1,
        "{node}: {rules:#?}"
    );
    let before_jump: Vec<&String> = rules
        .iter()
        .filter(|r| r.starts_with("-A INPUT "))
        .take_while(|r| *r != JUMP)
        .collect();
    assert!(
        !before_jump.iter().any(|r| r.contains("-j ACCEPT")),
        "{node}: an ACCEPT ahead of the jump: {rules:#?}"
    );
}

#[test]
fn vxlan_is_admitted_from_the_nodes_only() {
    let c = Cluster::create("e2e-vxlan", CONFIG);
    let nodes = [c.node("control-plane"), c.node("worker")];
    let ips: Vec<String> = nodes.iter().map(|n| address(n)).collect();

    // (a) The chain in each node: its one peer admitted, everyone else dropped, one jump.
    for (i, node) in nodes.iter().enumerate() {
        wait_filter(&c, node, &ips[1 - i]);
    }

    // Pod traffic across nodes still flows through the tunnel: a pod on one node asks a
    // CoreDNS pod on the other node directly (no Service in between).
    c.wait_coredns_rolled_out();
    let coredns = c.coredns_pods();
    let dns = coredns
        .iter()
        .find(|p| p["status"]["podIP"].is_string())
        .expect("a CoreDNS pod with an address");
    let dns_ip = pod_ip(dns);
    let dns_node = dns["spec"]["nodeName"]
        .as_str()
        .expect("scheduled")
        .to_string();
    let (client_node, server_node) = if dns_node == nodes[0] { (1, 0) } else { (0, 1) };
    assert_eq!(nodes[server_node], dns_node);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: vxlan-client\n  namespace: default\n\
         spec:\n  nodeName: {}\n  containers:\n  - name: c\n    image: minikind/tools\n    \
         command: [sleep, \"3600\"]\n",
        nodes[client_node]
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("client.yaml");
    std::fs::write(&file, manifest).unwrap();
    c.minikind_ok(&["apply", "-f", file.to_str().unwrap()]);
    let client = c.wait_pod_ready("default", "vxlan-client");
    assert_eq!(client["spec"]["nodeName"], nodes[client_node].as_str());
    let peer_accept = accept(&ips[client_node]);
    let accepted_before = counted_rules(&c, &dns_node)[&peer_accept];
    let server = format!("@{dns_ip}");
    let answer = eventually(
        "a cross-node lookup from the pod",
        Duration::from_secs(20),
        || {
            let r = c.pod_exec(
                "vxlan-client",
                &[
                    "dig",
                    &server,
                    "kubernetes.default.svc.cluster.local",
                    "+short",
                    "+time=2",
                    "+tries=1",
                ],
            );
            (r.ok && !r.stdout.trim().is_empty()).then_some(r.stdout)
        },
    );
    assert_eq!(answer.trim(), "10.96.0.1");
    let accepted_after = counted_rules(&c, &dns_node)[&peer_accept];
    assert!(
        accepted_after > accepted_before,
        "the lookup did not come through {peer_accept} on {dns_node} \
         ({accepted_before} → {accepted_after} packets)"
    );

    // (b) A stranger on the cluster network — the lab upstream container — sends UDP to a
    // node's VXLAN port: the node drops it, and counts it.
    let stranger = c.node("upstream");
    let stranger_ip = address(&stranger);
    assert!(!ips.contains(&stranger_ip), "{stranger_ip} is a node");
    let target = &nodes[0];
    let dropped_before = counted_rules(&c, target)[DROP];
    let r = docker(&[
        "exec",
        &stranger,
        minikind_contract::MINIKIND_PATH,
        "dig",
        &format!("@{}", ips[0]),
        "-p",
        "4789",
        "vxlan.example.test",
        "+time=1",
        "+tries=1",
    ]);
    assert!(!r.ok, "a DNS answer from a VXLAN port: {}", r.stdout);
    let dropped_after = eventually(
        "the stranger's datagram dropped",
        Duration::from_secs(5),
        || {
            let n = counted_rules(&c, target)[DROP];
            (n > dropped_before).then_some(n)
        },
    );
    assert!(dropped_after > dropped_before);
    // No node's admission counted it.
    let rules = counted_rules(&c, target);
    assert!(
        !rules.keys().any(|r| r.contains(&stranger_ip)),
        "{rules:#?}"
    );

    // A restarted node (a fresh network namespace, the agent run again) makes its chain and
    // its one jump again, and reaches the other node's pods through the tunnel.
    let restarted = &nodes[client_node];
    let r = docker(&["restart", "-t", "2", restarted]);
    assert!(r.ok, "{}", r.stderr);
    eventually(
        &format!("{restarted} booted again"),
        Duration::from_secs(60),
        || {
            (docker(&["logs", restarted])
                .stdout
                .matches("boot complete")
                .count()
                >= 2)
                .then_some(())
        },
    );
    wait_filter(&c, restarted, &ips[server_node]);
    let answer = eventually(
        "a cross-node lookup from the restarted node",
        Duration::from_secs(30),
        || {
            let r = c.exec(
                restarted,
                &[
                    "dig",
                    &server,
                    "kubernetes.default.svc.cluster.local",
                    "+short",
                    "+time=2",
                    "+tries=1",
                ],
            );
            (r.ok && !r.stdout.trim().is_empty()).then_some(r.stdout)
        },
    );
    assert_eq!(answer.trim(), "10.96.0.1");
}
