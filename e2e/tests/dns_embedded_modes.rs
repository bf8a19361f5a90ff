//! Both embedded-resolver modes on real clusters (issue 6, items 2 and 5):
//!
//! - `dns.embedded: builtin`: every node's agent replaces Docker's resolver rules with those of
//!   minikind's own resolver, which answers the lab's container names and forwards the rest to
//!   the lab upstream; the full chain pod → kube-dns → cluster-dns → node IP → DNAT →
//!   127.0.0.11 → lab upstream works through it, and a node restart rebuilds it cleanly.
//! - `dns magic off|on` (Docker's resolver): switched live, the nodes get Docker's rules and
//!   resolv.conf back, CoreDNS made again then loops on 127.0.0.11 and pods stop resolving;
//!   switched on again, they resolve again.
//!
//! Hermetic: internal networks, lab upstream. No query is sent while a pod's path could lead
//! off the cluster network (see the magic test).

use std::time::Duration;

use minikind_test_support::{
    Cluster, cluster_body, docker, eventually, example, lines, rule_lines,
};
use serde_json::Value;

fn container_ip(name: &str) -> String {
    let r = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    assert!(r.ok, "{}", r.stderr);
    r.stdout.trim().to_string()
}

/// What the lab upstream itself answers (asked directly: the reference for the chain).
fn lab_answer(c: &Cluster, name: &str) -> Vec<String> {
    let server = format!("@{}", container_ip(&c.node("upstream")));
    let a = lines(&c.exec_ok(&c.node("control-plane"), &["dig", &server, name, "+short"]));
    assert!(!a.is_empty(), "the lab upstream has no answer for {name}");
    a
}

fn nat_rules(c: &Cluster, node: &str) -> Vec<String> {
    rule_lines(&c.exec_ok(node, &["iptables-save", "-t", "nat"]))
}

/// The nodes' logs and NAT rules, for a failure message.
fn node_logs(c: &Cluster, nodes: &[&str]) -> String {
    let mut out = String::new();
    for node in nodes {
        let logs = docker(&["logs", "--tail", "80", node]);
        out.push_str(&format!(
            "--- {node} log:\n{}{}--- {node} nat:\n{}\n",
            logs.stdout,
            logs.stderr,
            nat_rules(c, node).join("\n")
        ));
    }
    out
}

/// Polls until a pod's `dig NAME +short` gives exactly `want`. The first packets of a pod that
/// was just made can be lost while its path to a CoreDNS replica on another node settles (one
/// `timed out` attempt, seen in both resolver modes), so a single try would be a timing bet.
fn pod_resolves(c: &Cluster, pod: &str, name: &str, want: &[String], nodes: &[&str]) {
    let mut last = String::new();
    let found = (0..60).any(|_| {
        let r = c.pod_exec(pod, &["dig", name, "+short"]);
        if lines(&r.stdout) == want {
            return true;
        }
        last = format!("{}{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    assert!(
        found,
        "{pod} never resolved {name} to {want:?}; last:\n{last}\n{}",
        node_logs(c, nodes)
    );
}

/// The builtin resolver's ports from its ready file.
fn resolver_ports(c: &Cluster, node: &str) -> (u16, u16) {
    let text = c.exec_ok(node, &["cat", "/run/minikind/dns-embedded.json"]);
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let port = |k: &str| -> u16 {
        v[k].as_str()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no {k} port in {text}"))
    };
    (port("udp"), port("tcp"))
}

/// UDP ports bound on 127.0.0.11 in a node's namespace (`/proc/net/udp`, little-endian hex).
fn udp_ports_on_resolver_ip(c: &Cluster, node: &str) -> Vec<u16> {
    c.exec_ok(node, &["cat", "/proc/net/udp"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let (addr, port) = local.split_once(':')?;
            (addr == "0B00007F").then(|| u16::from_str_radix(port, 16).ok())?
        })
        .collect()
}

/// Docker's DNS rules replaced by exactly one set for the builtin resolver's ports, with the
/// magic on top: 2 DNAT, 2 SNAT, one jump each from OUTPUT, PREROUTING and POSTROUTING.
fn assert_one_builtin_rule_set(rules: &[String], (udp, tcp): (u16, u16), node: &str) {
    let count = |pred: &dyn Fn(&String) -> bool| rules.iter().filter(|r| pred(r)).count();
    let dnat: Vec<&String> = rules
        .iter()
        .filter(|r| r.starts_with("-A DOCKER_OUTPUT"))
        .collect();
    assert_eq!(dnat.len(), 2, "{node}: {rules:#?}");
    assert!(
        dnat.iter()
            .any(|r| r.contains("-p udp")
                && r.ends_with(&format!("--to-destination 127.0.0.11:{udp}"))),
        "{node}: the UDP DNAT goes to the builtin resolver's port {udp}: {dnat:#?}"
    );
    assert!(
        dnat.iter()
            .any(|r| r.contains("-p tcp")
                && r.ends_with(&format!("--to-destination 127.0.0.11:{tcp}"))),
        "{node}: the TCP DNAT goes to port {tcp}: {dnat:#?}"
    );
    let snat: Vec<&String> = rules
        .iter()
        .filter(|r| r.starts_with("-A DOCKER_POSTROUTING"))
        .collect();
    assert_eq!(snat.len(), 2, "{node}: {rules:#?}");
    assert!(
        snat.iter()
            .any(|r| r.contains(&format!("--sport {udp} ")) && !r.contains("--to-source :53")),
        "{node}: SNAT for port {udp}, rewritten by the magic: {snat:#?}"
    );
    for (chain, target) in [
        ("OUTPUT", "DOCKER_OUTPUT"),
        ("PREROUTING", "DOCKER_OUTPUT"),
        ("POSTROUTING", "DOCKER_POSTROUTING"),
    ] {
        assert_eq!(
            count(
                &|r| r.starts_with(&format!("-A {chain} ")) && r.ends_with(&format!("-j {target}"))
            ),
            1,
            "{node}: one {chain} jump to {target}: {rules:#?}"
        );
    }
    assert_eq!(
        count(&|r| r.contains("-d 127.0.0.11/32")),
        0,
        "{node}: the magic rewrote every match on 127.0.0.11: {rules:#?}"
    );
}

#[test]
fn builtin_resolver_serves_node_names_and_the_full_chain_and_survives_a_restart() {
    let c = Cluster::create("e2e-emb", &cluster_body("embedded-builtin.yaml"));
    let cp = c.node("control-plane");
    let w = c.node("worker");

    for node in [&cp, &w] {
        let ports = resolver_ports(&c, node);
        assert_one_builtin_rule_set(&nat_rules(&c, node), ports, node);
        // Docker's own resolver is still bound in the namespace (dockerd holds its sockets),
        // but at other ports, which no rule leads to any more.
        let bound = udp_ports_on_resolver_ip(&c, node);
        assert!(bound.contains(&ports.0), "{node}: {bound:?}");
        assert!(
            bound.iter().any(|p| *p != ports.0),
            "{node}: Docker's resolver socket is missing: {bound:?}"
        );
    }

    // A node resolves another node's container name (and its short id, an alias Docker gives
    // every container on a user-defined network) through its resolv.conf → host IP → DNAT →
    // 127.0.0.11: answered by the builtin resolver, whose query log is the node's log.
    let w_ip = container_ip(&w);
    assert_eq!(
        lines(&c.exec_ok(&cp, &["dig", &w, "+short"])),
        vec![w_ip.clone()]
    );
    let id = docker(&["inspect", "-f", "{{.Id}}", &w]).stdout;
    let short_id = &id.trim()[..12];
    assert_eq!(
        lines(&c.exec_ok(&cp, &["dig", short_id, "+short"])),
        vec![w_ip.clone()]
    );
    let upstream = c.node("upstream");
    assert_eq!(
        lines(&c.exec_ok(&w, &["dig", &upstream.to_uppercase(), "+short"])),
        vec![container_ip(&upstream)],
        "names are case-insensitive"
    );
    eventually(
        "the builtin resolver's log line for the sibling's name",
        Duration::from_secs(20),
        || {
            let logs = docker(&["logs", &cp]).stdout;
            logs.contains(&format!("\"A IN {w}. udp ")).then_some(())
        },
    );

    // `dns magic status` shows the builtin resolver behind the magic on every node.
    let status = c.minikind_ok(&["dns", "magic", "status"]);
    for node in [&cp, &w] {
        let row = status
            .lines()
            .find(|l| l.starts_with(node.as_str()))
            .unwrap_or_else(|| panic!("no row for {node}:\n{status}"));
        let words: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&words[1..3], ["on", "builtin"], "{status}");
        let (udp, _) = resolver_ports(&c, node);
        assert!(row.contains(&format!("127.0.0.11:{udp}")), "{status}");
    }

    // The full chain from a pod: pod → 10.96.0.10 → cluster-dns → node IP → DNAT → 127.0.0.11
    // (the builtin resolver, which logs it) → lab upstream.
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-003-dns-walkthrough/busybox.yaml"),
    ]);
    c.wait_pod_ready("default", "busybox");
    let www = lab_answer(&c, "www.example.test");
    pod_resolves(&c, "busybox", "www.example.test", &www, &[&cp, &w]);
    eventually(
        "a builtin resolver's log line for the forwarded name",
        Duration::from_secs(20),
        || {
            let logs: String = [&cp, &w]
                .iter()
                .map(|n| docker(&["logs", n]).stdout)
                .collect();
            logs.contains("\"A IN www.example.test. udp ").then_some(())
        },
    );

    // A restart: a fresh namespace where Docker installs its rules again; the agent replaces
    // them once more (new ports, nothing duplicated) and the magic goes on top.
    let r = docker(&["restart", "-t", "2", &w]);
    assert!(r.ok, "{}", r.stderr);
    let ports = eventually(
        "the restarted node's resolver",
        Duration::from_secs(60),
        || {
            let logs = docker(&["logs", &w]).stdout;
            if logs.matches("boot complete").count() < 2 {
                return None;
            }
            let ports = resolver_ports(&c, &w);
            let rules = nat_rules(&c, &w);
            // Until the magic's restore lands the DNAT still matches 127.0.0.11.
            rules
                .iter()
                .any(|r| r.starts_with("-A PREROUTING") && r.ends_with("-j DOCKER_OUTPUT"))
                .then_some(ports)
        },
    );
    assert_one_builtin_rule_set(&nat_rules(&c, &w), ports, &w);
    let cp_ip = container_ip(&cp);
    assert_eq!(lines(&c.exec_ok(&w, &["dig", &cp, "+short"])), vec![cp_ip]);
    pod_resolves(&c, "busybox", "www.example.test", &www, &[&cp, &w]);
}

/// The CoreDNS pods' names.
fn coredns_pods(c: &Cluster) -> Vec<String> {
    c.coredns_pods()
        .iter()
        .filter_map(|p| Some(p["metadata"]["name"].as_str()?.to_string()))
        .collect()
}

/// Deletes the CoreDNS pods and waits until none of them is left, so that every replica that
/// answers from then on was made (with the node's resolv.conf of that moment) afterwards.
fn remake_coredns(c: &Cluster) {
    let old = coredns_pods(c);
    assert!(!old.is_empty(), "no CoreDNS pods");
    let mut args = vec!["delete", "pods", "-n", "kube-system"];
    args.extend(old.iter().map(String::as_str));
    c.minikind_ok(&args);
    eventually("the old CoreDNS pods gone", Duration::from_secs(60), || {
        let now = coredns_pods(c);
        (!now.iter().any(|p| old.contains(p))).then_some(())
    });
}

/// `magic status` rows: node → the MAGIC column (which may read `off (switched off)`).
fn magic_states(c: &Cluster) -> Vec<(String, String)> {
    let out = c.minikind_ok(&["dns", "magic", "status"]);
    out.lines()
        .skip(1)
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            (words[0].to_string(), words[1].to_string())
        })
        .collect()
}

#[test]
fn magic_switched_off_and_on_live_breaks_and_heals_pod_lookups() {
    let c = Cluster::create(
        "e2e-magicsw",
        "nodes:\n- role: control-plane\n- role: worker\nnetworking:\n  internal: true\ndns:\n  upstream: lab\n",
    );
    let cp = c.node("control-plane");
    let w = c.node("worker");
    assert_eq!(
        magic_states(&c),
        vec![
            (cp.clone(), "on".to_string()),
            (w.clone(), "on".to_string())
        ]
    );
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-003-dns-walkthrough/busybox.yaml"),
    ]);
    c.wait_pod_ready("default", "busybox");
    let www = lab_answer(&c, "www.example.test");
    pod_resolves(&c, "busybox", "www.example.test", &www, &[&cp, &w]);
    let magic_rules = nat_rules(&c, &w);

    // One node: Docker's rules and resolv.conf come back there only.
    let out = c.minikind_ok(&["dns", "magic", "off", "--node", "worker"]);
    assert!(
        out.starts_with(&format!("{w}: network magic off:")),
        "{out}"
    );
    assert_eq!(
        magic_states(&c),
        vec![
            (cp.clone(), "on".to_string()),
            (w.clone(), "off".to_string())
        ]
    );
    let resolv = c.exec_ok(&w, &["cat", "/etc/resolv.conf"]);
    assert_eq!(resolv, c.exec_ok(&w, &["cat", "/etc/resolv.conf.original"]));
    assert!(resolv.contains("nameserver 127.0.0.11"), "{resolv}");
    let docker_rules = nat_rules(&c, &w);
    assert!(
        !docker_rules
            .iter()
            .any(|r| r.starts_with("-A PREROUTING") && r.contains("DOCKER_OUTPUT")),
        "{docker_rules:#?}"
    );
    assert!(
        docker_rules
            .iter()
            .any(|r| r == "-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT"),
        "{docker_rules:#?}"
    );
    assert!(
        docker_rules
            .iter()
            .filter(|r| r.starts_with("-A DOCKER_POSTROUTING"))
            .all(|r| r.ends_with("--to-source :53")),
        "{docker_rules:#?}"
    );
    // kube-proxy's jumps were left alone: only Docker's rules changed.
    for rule in magic_rules.iter().filter(|r| {
        ["-A PREROUTING ", "-A OUTPUT ", "-A POSTROUTING "]
            .iter()
            .any(|c| r.starts_with(c))
            && !r.contains("DOCKER_")
    }) {
        assert!(
            docker_rules.contains(rule),
            "{rule} is gone: {docker_rules:#?}"
        );
    }
    // The node itself resolves as Docker made it: 127.0.0.11 and Docker's own resolver.
    assert_eq!(
        lines(&c.exec_ok(&w, &["dig", &cp, "+short"])),
        vec![container_ip(&cp)]
    );

    // Every node, and idempotent where it already is off.
    let out = c.minikind_ok(&["dns", "magic", "off"]);
    assert!(
        out.contains(&format!("{w}: network magic already off")),
        "{out}"
    );
    assert!(out.contains(&format!("{cp}: network magic off:")), "{out}");
    // CoreDNS made now copies the node's resolv.conf — 127.0.0.11, its own loopback — and its
    // loop check stops it: the pod's lookups fail. (No lookup is made before the old replicas,
    // whose resolv.conf names the host IP, are gone.)
    remake_coredns(&c);
    eventually(
        "a pod's lookup failing with the magic off",
        Duration::from_secs(90),
        || {
            let r = c.pod_exec(
                "busybox",
                &["dig", "www.example.test", "+short", "+time=2", "+tries=1"],
            );
            let answered = r
                .stdout
                .lines()
                .any(|l| l.trim().parse::<std::net::IpAddr>().is_ok());
            (!answered).then_some(())
        },
    );

    // On again: the rules and resolv.conf of the boot; CoreDNS made again resolves.
    let out = c.minikind_ok(&["dns", "magic", "on"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(": network magic on: host IP"))
            .count(),
        2,
        "{out}"
    );
    let mut back = nat_rules(&c, &w);
    let mut before = magic_rules.clone();
    back.sort();
    before.sort();
    let docker_part = |rules: &[String]| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.contains("DOCKER_"))
            .cloned()
            .collect()
    };
    assert_eq!(docker_part(&back), docker_part(&before));
    assert_eq!(
        magic_states(&c),
        vec![
            (cp.clone(), "on".to_string()),
            (w.clone(), "on".to_string())
        ]
    );
    remake_coredns(&c);
    let healed = eventually(
        "a pod's lookup with the magic back on",
        Duration::from_secs(120),
        || {
            let r = c.pod_exec("busybox", &["dig", "www.example.test", "+short"]);
            let got = lines(&r.stdout);
            (got == www).then_some(got)
        },
    );
    assert_eq!(healed, www);
}
