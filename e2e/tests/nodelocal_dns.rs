//! NodeLocal DNSCache on a real node (issue 16), replaying
//! `examples/seed-001-nodelocal-dnscache`: lookups from a pod to the kube-dns ClusterIP leave
//! one conntrack entry each without the cache and none with it (iptables mode: the cache holds
//! 10.96.0.10 behind NOTRACK); a SIGKILLed cache leaves its rules and addresses behind and the
//! address refuses queries until the kubelet restarts it; a graceful stop removes them and
//! kube-proxy's path answers again. Hermetic: lab upstream, queries only from the node and a pod.
//! The add-on is switched on and off live (`minikind dns nodelocal on|off`); its DaemonSet
//! runs the cache. The local mode (pods' nameserver 169.254.20.10) comes from the cluster config.

use std::time::Duration;

use minikind_test_support::{Cluster, Run, cluster_body, eventually, example, pod_ip};

/// Entries in the node's conntrack table for `pod → 10.96.0.10:53`.
fn entries(c: &Cluster, node: &str, pod: &str) -> usize {
    let out = c.exec_ok(node, &["cat", "/proc/net/nf_conntrack"]);
    out.lines()
        .filter(|l| l.contains(&format!("src={pod} dst=10.96.0.10 ")))
        .count()
}

/// `n` lookups of kubernetes.default from the client pod, one `dig` each (a new socket, so a
/// new source port, each time), all answered.
fn lookups(c: &Cluster, n: usize) {
    let script = format!(
        "i=0; ok=0; while [ $i -lt {n} ]; do \
         [ \"$(dig @10.96.0.10 kubernetes.default.svc.cluster.local +short +time=2 +tries=1)\" = 10.96.0.1 ] && ok=$((ok+1)); \
         i=$((i+1)); done; echo $ok"
    );
    let r = c.pod_exec("client", &["sh", "-c", &script]);
    assert!(r.ok, "lookups failed: {} {}", r.stdout, r.stderr);
    assert_eq!(r.stdout.trim(), n.to_string(), "every lookup answered");
}

fn status(c: &Cluster) -> String {
    c.minikind_ok(&["dns", "nodelocal", "status"])
}

fn node_dig(c: &Cluster, node: &str) -> Run {
    c.exec(
        node,
        &[
            "dig",
            "@10.96.0.10",
            "kubernetes.default.svc.cluster.local",
            "+short",
            "+time=1",
            "+tries=1",
        ],
    )
}

#[test]
fn node_cache_skips_conntrack_and_leaves_its_rules_when_killed() {
    let c = Cluster::create(
        "e2e-nl",
        &cluster_body("seed-001-nodelocal-dnscache/cluster.yaml"),
    );
    let node = c.node("control-plane");
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-001-nodelocal-dnscache/client.yaml"),
    ]);
    let pod = pod_ip(&c.wait_pod_ready("default", "client"));

    // Without the cache: one entry per lookup (a few may reuse a tracked 5-tuple).
    let before = entries(&c, &node, &pod);
    lookups(&c, 200);
    let without = entries(&c, &node, &pod) - before;
    println!("without the cache: {without} new conntrack entries per 200 lookups");
    assert!(without >= 180, "{without} entries for 200 lookups");

    // The add-on, live: its DaemonSet puts a cache on the node.
    c.minikind_ok(&["dns", "nodelocal", "on"]);
    eventually(
        "the node's cache pod ready",
        Duration::from_secs(60),
        || {
            let pods = c.pods("kube-system", "k8s-app=node-local-dns");
            let p = pods.first()?;
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (ready && p["spec"]["nodeName"] == node.as_str()).then_some(())
        },
    );
    eventually(
        "the cache's interface and 24 rules",
        Duration::from_secs(30),
        || {
            let s = status(&c);
            (s.contains("NodeLocal DNSCache: on")
                && s.contains("169.254.20.10/32,10.96.0.10/32")
                && s.contains(" 24/24 "))
            .then_some(())
        },
    );
    let magic = c.minikind_ok(&["dns", "magic", "status"]);
    assert!(
        magic.contains("169.254.20.10/32,10.96.0.10/32 (24 rules)"),
        "{magic}"
    );

    // With the cache: the same lookups leave nothing in the table.
    let before = entries(&c, &node, &pod);
    lookups(&c, 200);
    let with = entries(&c, &node, &pod).saturating_sub(before);
    println!("with the cache: {with} new conntrack entries per 200 lookups");
    assert_eq!(with, 0);
    let trace = c.minikind_ok(&["dns", "trace", "client", "kubernetes.default"]);
    assert!(trace.contains("node-local cache"), "{trace}");

    // SIGKILL: rules and addresses stay; 10.96.0.10 is refused on the node until the kubelet
    // has restarted the cache (the second kill waits out the restart back-off).
    for kill in 0..2 {
        let r = c.exec(
            &node,
            &["sh", "-c", "for p in /proc/[0-9]*; do [ ${p#/proc/} = $$ ] && continue; grep -q node-cache $p/cmdline 2>/dev/null && kill -9 ${p#/proc/}; done; true"],
        );
        assert!(r.ok, "{}", r.stderr);
        if kill == 1 {
            let refused = node_dig(&c, &node);
            assert!(
                refused.stdout.trim() != "10.96.0.1",
                "answered right after the kill: {} {}",
                refused.stdout,
                refused.stderr
            );
            let s = status(&c);
            assert!(
                s.contains("169.254.20.10/32,10.96.0.10/32") && s.contains(" 24/24 "),
                "{s}"
            );
        }
        eventually(
            "the restarted cache to answer",
            Duration::from_secs(60),
            || (node_dig(&c, &node).stdout.trim() == "10.96.0.1").then_some(()),
        );
    }

    // Switched off: the DaemonSet's pod stops gracefully and removes the rules and the
    // interface; kube-proxy's path answers again.
    c.minikind_ok(&["dns", "nodelocal", "off"]);
    eventually(
        "the cache's rules and interface gone",
        Duration::from_secs(60),
        || {
            let s = status(&c);
            let row = s
                .lines()
                .find(|l| l.starts_with(node.as_str()))?
                .to_string();
            let w: Vec<&str> = row.split_whitespace().collect();
            (w.get(1) == Some(&"-") && w.get(2) == Some(&"0")).then_some(())
        },
    );
    assert!(c.pods("kube-system", "k8s-app=node-local-dns").is_empty());
    assert_eq!(node_dig(&c, &node).stdout.trim(), "10.96.0.1");
}

/// The local mode, from the cluster config: the kubelet points pods at the node's cache, which
/// binds only the link-local address and forwards cluster names to kube-dns-upstream.
#[test]
fn local_mode_from_the_config_points_pods_at_the_cache() {
    let c = Cluster::create(
        "e2e-nll",
        "dns:\n  upstream: lab\n  nodeLocalDNS:\n    mode: local\n",
    );
    let node = c.node("control-plane");
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-001-nodelocal-dnscache/client.yaml"),
    ]);
    c.wait_pod_ready("default", "client");
    let resolv = c.pod_exec("client", &["cat", "/etc/resolv.conf"]).stdout;
    assert!(resolv.contains("nameserver 169.254.20.10"), "{resolv}");
    let s = status(&c);
    assert!(
        s.contains("NodeLocal DNSCache: on (addresses 169.254.20.10;"),
        "{s}"
    );
    let row = s.lines().find(|l| l.starts_with(node.as_str())).unwrap();
    assert!(
        row.contains("169.254.20.10/32") && row.contains("12/12"),
        "{s}"
    );
    // Cluster names and the lab upstream's, through the cache.
    let r = c.pod_exec(
        "client",
        &["dig", "+short", "kubernetes.default.svc.cluster.local"],
    );
    assert_eq!(r.stdout.trim(), "10.96.0.1", "{}", r.stderr);
    let r = c.pod_exec("client", &["dig", "+short", "www.example.test"]);
    assert!(
        r.ok && !r.stdout.trim().is_empty(),
        "{} {}",
        r.stdout,
        r.stderr
    );
    // kube-dns's address is not the cache's in this mode: it still goes through kube-proxy.
    let r = c.exec(
        &node,
        &[
            "dig",
            "@10.96.0.10",
            "+short",
            "kubernetes.default.svc.cluster.local",
        ],
    );
    assert_eq!(r.stdout.trim(), "10.96.0.1");
    let save = c.exec_ok(&node, &["iptables-save", "-t", "raw"]);
    assert!(!save.contains("-d 10.96.0.10/32"), "{save}");
}
