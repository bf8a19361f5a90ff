//! The cluster comes alive (issue 5): pods, service rules and the DNS add-on, checked from pods
//! the way seed 003 checks them by hand, plus seed 001's CoreDNS scaling and the full chain to
//! the lab upstream. Hermetic: internal network, lab upstream.

use std::time::Duration;

use minikind_test_support::{Cluster, cluster_body, docker, eventually, example, lines, pod_ip};

fn svc_ip(c: &Cluster, ns: &str, name: &str) -> String {
    let out = c.minikind_ok(&["get", "svc", name, "-n", ns, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["spec"]["clusterIP"].as_str().unwrap().to_string()
}

/// What the lab upstream itself answers for a name (the reference for the full chain).
fn lab_answer(c: &Cluster, name: &str) -> Vec<String> {
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &c.node("upstream"),
    ]);
    let server = format!("@{}", ip.stdout.trim());
    lines(&c.exec_ok(&c.node("control-plane"), &["dig", &server, name, "+short"]))
}

#[test]
fn seed_003_walkthrough_on_three_nodes() {
    let c = Cluster::create(
        "e2e-dns",
        &cluster_body("seed-003-dns-walkthrough/cluster.yaml"),
    );
    // `create` returns once a pod on every node has resolved kubernetes.default: right after
    // it, one try from each node through that node's service rules answers, and the check
    // pods are gone again.
    for role in ["control-plane", "worker", "worker2"] {
        let r = c.exec(
            &c.node(role),
            &[
                "dig",
                "@10.96.0.10",
                "kubernetes.default.svc.cluster.local",
                "+short",
                "+time=2",
                "+tries=1",
            ],
        );
        assert!(
            r.ok && r.stdout.trim() == "10.96.0.1",
            "from {role} right after create: {} {}",
            r.stdout,
            r.stderr
        );
    }
    let pods = c.minikind_ok(&["get", "pods", "-A"]);
    assert!(!pods.contains("dns-check"), "{pods}");
    for f in [
        "busybox.yaml",
        "other-namespace.yaml",
        "headless.yaml",
        "dns-policies.yaml",
    ] {
        c.minikind_ok(&[
            "apply",
            "-f",
            &example(&format!("seed-003-dns-walkthrough/{f}")),
        ]);
    }
    let busybox = c.wait_pod_ready("default", "busybox");
    let busybox_ip = pod_ip(&busybox);

    // The pod's resolver configuration and hosts file, as the kubelet writes them.
    let resolv = c.pod_exec("busybox", &["cat", "/etc/resolv.conf"]).stdout;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let hosts = c.pod_exec("busybox", &["cat", "/etc/hosts"]).stdout;
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file."),
        "{hosts}"
    );
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&busybox_ip) && l.ends_with("busybox")),
        "{hosts}"
    );

    // A record of the service, by its short name through the search list.
    let ip = svc_ip(&c, "default", "busybox-svc");
    // The Service was made with the pod: cluster-dns learns it from its watch a moment later.
    let r = eventually("busybox-svc resolving", Duration::from_secs(20), || {
        let r = c.pod_exec("busybox", &["nslookup", "busybox-svc"]);
        r.ok.then_some(r)
    });
    assert!(
        r.stdout.contains("busybox-svc.default.svc.cluster.local") && r.stdout.contains(&ip),
        "{}",
        r.stdout
    );

    // SRV of the named port: priority 0, weight 100 (one record), port, target.
    let srv = c.pod_exec(
        "busybox",
        &[
            "dig",
            "_busybox-svc-port._tcp.busybox-svc.default.svc.cluster.local",
            "SRV",
            "+short",
        ],
    );
    assert_eq!(
        lines(&srv.stdout),
        vec!["0 100 1234 busybox-svc.default.svc.cluster.local.".to_string()],
        "{}",
        srv.stderr
    );

    // Another namespace's service: only as `svc.ns`.
    let other_ip = svc_ip(&c, "other", "other-svc");
    let bare = c.pod_exec("busybox", &["nslookup", "other-svc"]);
    assert!(
        !bare.ok,
        "other-svc must not resolve from default: {}",
        bare.stdout
    );
    let qualified = c.pod_exec("busybox", &["nslookup", "other-svc.other"]);
    assert!(
        qualified.ok && qualified.stdout.contains(&other_ip),
        "{}",
        qualified.stdout
    );

    // The pod's own A record (pods insecure).
    let dashed = format!("{}.default.pod.cluster.local", busybox_ip.replace('.', "-"));
    let a = c.pod_exec("busybox", &["dig", &dashed, "+short"]);
    assert_eq!(lines(&a.stdout), vec![busybox_ip.clone()]);

    // Each dnsPolicy's resolv.conf.
    for p in ["policy-default", "policy-hostnet", "policy-none"] {
        c.wait_pod_ready("default", p);
    }
    let node_resolv = c.exec_ok(&c.node("worker"), &["cat", "/etc/resolv.conf"]);
    let node_ns = node_resolv
        .lines()
        .find(|l| l.starts_with("nameserver"))
        .unwrap()
        .to_string();
    let default = c
        .pod_exec("policy-default", &["cat", "/etc/resolv.conf"])
        .stdout;
    assert!(
        default.contains(&node_ns) && !default.contains("10.96.0.10"),
        "Default:\n{default}"
    );
    let hostnet = c
        .pod_exec("policy-hostnet", &["cat", "/etc/resolv.conf"])
        .stdout;
    assert!(
        hostnet.contains("nameserver 10.96.0.10") && hostnet.contains("ndots:5"),
        "ClusterFirstWithHostNet:\n{hostnet}"
    );
    let none = c
        .pod_exec("policy-none", &["cat", "/etc/resolv.conf"])
        .stdout;
    assert!(none.contains("nameserver 192.0.2.53"), "None:\n{none}");
    assert!(
        none.contains("search ns1.svc.cluster-domain.example my.dns.search.suffix"),
        "None:\n{none}"
    );
    assert!(
        none.contains("ndots:2") && none.contains("edns0"),
        "None:\n{none}"
    );

    // Headless service: per-pod hostnames and the set of ready endpoints.
    let hl1 = pod_ip(&c.wait_pod_ready("default", "hl-1"));
    let hl2 = pod_ip(&c.wait_pod_ready("default", "hl-2"));
    let one = eventually("web-1.hl resolving", Duration::from_secs(20), || {
        let r = c.pod_exec(
            "busybox",
            &["dig", "web-1.hl.default.svc.cluster.local", "+short"],
        );
        (!r.stdout.trim().is_empty()).then_some(lines(&r.stdout))
    });
    assert_eq!(one, vec![hl1.clone()]);
    let all = c.pod_exec(
        "busybox",
        &["dig", "hl.default.svc.cluster.local", "+short"],
    );
    let mut want = vec![hl1, hl2];
    want.sort();
    assert_eq!(lines(&all.stdout), want);

    // An upstream name through the whole chain: pod → 10.96.0.10 → cluster-dns → node IP →
    // DNAT → 127.0.0.11 → lab upstream.
    let www = lab_answer(&c, "www.example.test");
    let r = c.pod_exec("busybox", &["dig", "www.example.test", "+short"]);
    assert_eq!(lines(&r.stdout), www, "{}", r.stderr);
}

#[test]
fn without_the_magic_coredns_finds_a_loop_and_pods_cannot_resolve() {
    // Seed 000's cluster with KIND's fix off (examples/seed-000-kind-dns-fix/magic-off.yaml).
    let c = Cluster::create(
        "e2e-nomagic-pod",
        &cluster_body("seed-000-kind-dns-fix/magic-off.yaml"),
    );
    // CoreDNS's resolv.conf (dnsPolicy Default) names 127.0.0.11: in its own namespace that is
    // CoreDNS itself, and the loop plugin stops it, again and again.
    let (pod, log) = eventually("CoreDNS's loop detection", Duration::from_secs(60), || {
        for p in c.coredns_pods() {
            let name = p["metadata"]["name"].as_str()?.to_string();
            for prev in [true, false] {
                let mut args = vec!["logs", "-n", "kube-system", name.as_str()];
                if prev {
                    args.push("--previous");
                }
                let log = c.minikind(&args).stdout;
                if log.contains("Loop (") && log.contains("detected for zone \".\"") {
                    return Some((name, log));
                }
            }
        }
        None
    });
    assert!(log.contains("[FATAL] plugin/loop:"), "{pod}: {log}");
    let restarted = eventually("a CoreDNS restart", Duration::from_secs(60), || {
        let p = c.pod_json("kube-system", &pod)?;
        let n = p["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
        (n >= 1).then_some(n)
    });
    assert!(restarted >= 1);

    c.minikind_ok(&["apply", "-f", &example("seed-000-kind-dns-fix/client.yaml")]);
    c.wait_pod_ready("default", "client");
    let r = c.pod_exec(
        "client",
        &["dig", "www.example.test", "+short", "+time=2", "+tries=1"],
    );
    // dig prints its errors on stdout as the real one does: look for an answer line.
    let answered = r
        .stdout
        .lines()
        .any(|l| l.trim().parse::<std::net::IpAddr>().is_ok());
    assert!(
        !answered,
        "nothing resolves without the magic: {}",
        r.stdout
    );
}
