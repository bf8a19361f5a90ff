//! The walk-throughs under `examples/seed-*`, run as their READMEs tell a user to, so that the
//! examples cannot rot. Hermetic: internal network, lab upstream.

use std::time::Duration;

use minikind_test_support::{
    Cluster, cluster_body, docker, eventually, example, lines, pod_ip, rule_lines,
};

/// The names of the `A` queries one client sent, in the order CoreDNS's `log` lines show them
/// (`[INFO] 10.244.1.3:43544 - 7349 "A IN abc. udp 21 false 512" REFUSED …`). A retried query
/// (same name twice in a row) counts once.
fn a_queries_from(log: &str, client_ip: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in log.lines() {
        let Some(rest) = l.strip_prefix("[INFO] ") else {
            continue;
        };
        let Some((client, rest)) = rest.split_once(' ') else {
            continue;
        };
        if client.rsplit_once(':').map(|(ip, _)| ip) != Some(client_ip) {
            continue;
        }
        let Some(q) = rest.split('"').nth(1) else {
            continue;
        };
        let mut f = q.split(' ');
        if (f.next(), f.next()) != (Some("A"), Some("IN")) {
            continue;
        }
        let name = f.next().unwrap_or_default().to_string();
        if out.last() != Some(&name) {
            out.push(name);
        }
    }
    out
}

/// The order a stub resolver tries `name` in with the pod search list and `ndots`.
fn expected_attempts(name: &str, ndots: usize, found_absolute: bool) -> Vec<String> {
    let search = [
        "default.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
    ];
    let suffixed = search.iter().map(|s| format!("{name}.{s}."));
    let absolute = format!("{name}.");
    if name.matches('.').count() >= ndots {
        if found_absolute {
            return vec![absolute];
        }
        std::iter::once(absolute).chain(suffixed).collect()
    } else {
        suffixed.chain(std::iter::once(absolute)).collect()
    }
}

#[test]
fn seed_001_coredns_scaling_and_ndots_query_log() {
    let dir = "seed-001-coredns-scaling-and-ndots";
    let c = Cluster::create("e2e-seed001", &cluster_body(&format!("{dir}/cluster.yaml")));
    c.minikind_ok(&["apply", "-f", &example(&format!("{dir}/ndots.yaml"))]);
    let client = c.wait_pod_ready("default", "ndots-5");
    c.wait_pod_ready("default", "ndots-2");

    // Part 1: four CoreDNS replicas give kube-proxy's 1/4, 1/3, 1/2 rules.
    c.minikind_ok(&[
        "scale",
        "deployment",
        "coredns",
        "--replicas",
        "4",
        "-n",
        "kube-system",
    ]);
    let status = c.wait_coredns_rolled_out();
    assert!(
        status.ends_with("deployment \"coredns\" successfully rolled out\n"),
        "{status}"
    );
    let w2 = c.node("worker2");
    let probs = eventually(
        "four kube-dns endpoints in the rules",
        Duration::from_secs(60),
        || {
            let rules = c.kube_dns_endpoint_rules(&w2);
            (rules.len() == 4).then_some(rules)
        },
    );
    for (rule, p) in probs
        .iter()
        .zip(["0.25000000000", "0.33333333349", "0.50000000000"])
    {
        assert!(rule.contains(&format!("--probability {p}")), "{rule}");
    }
    assert!(
        !probs[3].contains("statistic"),
        "the last endpoint takes the rest: {}",
        probs[3]
    );

    // Pods on different nodes reach each other: the client asks every replica directly.
    let my_node = client["spec"]["nodeName"].as_str().unwrap().to_string();
    let mut other_nodes = 0;
    for p in c.coredns_pods() {
        let Some(ip) = p["status"]["podIP"].as_str() else {
            continue;
        };
        if p["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        if p["spec"]["nodeName"].as_str() != Some(my_node.as_str()) {
            other_nodes += 1;
        }
        let answer = eventually(
            &format!("an answer from the replica at {ip}"),
            Duration::from_secs(20),
            || {
                let r = c.pod_exec(
                    "ndots-5",
                    &[
                        "dig",
                        &format!("@{ip}"),
                        "kubernetes.default.svc.cluster.local",
                        "+short",
                    ],
                );
                let l = lines(&r.stdout);
                (!l.is_empty()).then_some(l)
            },
        );
        assert_eq!(answer, vec!["10.96.0.1".to_string()], "via {ip}");
    }
    assert!(
        other_nodes > 0,
        "no CoreDNS replica on another node than {my_node}"
    );
    // And every node reaches every replica, also across nodes: the node's own traffic into a
    // tunnel leaves with a pod-subnet source, so the answer comes back the same way (the
    // cluster's DNS check from the control plane depends on it when CoreDNS runs elsewhere).
    for p in c.coredns_pods() {
        let (Some(ip), None) = (
            p["status"]["podIP"].as_str(),
            p["metadata"]["deletionTimestamp"].as_str(),
        ) else {
            continue;
        };
        for n in ["control-plane", "worker", "worker2"] {
            let r = c.exec(
                &c.node(n),
                &[
                    "dig",
                    &format!("@{ip}"),
                    "kubernetes.default.svc.cluster.local",
                    "+short",
                    "+time=2",
                    "+tries=2",
                ],
            );
            assert_eq!(
                lines(&r.stdout),
                vec!["10.96.0.1".to_string()],
                "from node {n} to the replica at {ip} on {}",
                p["spec"]["nodeName"]
            );
        }
    }

    // Part 2: one replica that logs every query, then the seed's names at ndots 5 and 2.
    let replica = c.one_coredns_replica(
        &example(&format!("{dir}/coredns-log.yaml")),
        &["control-plane", "worker", "worker2"],
    );
    let replica_name = replica["metadata"]["name"].as_str().unwrap().to_string();

    let names = ["abc", "abc.123", "abc.123.def", "www.example.test"];
    for pod in ["ndots-5", "ndots-2"] {
        for name in names {
            let r = c.pod_exec(pod, &["getent", "ahostsv4", name]);
            if name == "www.example.test" {
                assert!(
                    r.ok && r.stdout.contains("192.0.2.10"),
                    "{pod} {name}: {}{}",
                    r.stdout,
                    r.stderr
                );
            } else {
                assert_eq!(
                    r.code,
                    Some(2),
                    "{pod} {name} must not resolve: {}",
                    r.stdout
                );
            }
        }
    }
    let log = eventually("the query log", Duration::from_secs(20), || {
        let r = c.minikind(&["logs", "-n", "kube-system", &replica_name]);
        (r.ok && r.stdout.contains("www.example.test.")).then_some(r.stdout)
    });
    for (pod, ndots) in [("ndots-5", 5), ("ndots-2", 2)] {
        let ip = pod_ip(&c.pod_json("default", pod).unwrap());
        let want: Vec<String> = names
            .iter()
            .flat_map(|n| expected_attempts(n, ndots, *n == "www.example.test"))
            .collect();
        let got = eventually(
            &format!("all of {pod}'s queries in the log"),
            Duration::from_secs(20),
            || {
                let r = c.minikind(&["logs", "-n", "kube-system", &replica_name]);
                let got = a_queries_from(&r.stdout, &ip);
                (got.len() >= want.len()).then_some(got)
            },
        );
        assert_eq!(got, want, "{pod} ({ip}), log:\n{log}");
    }
}

/// A container's address on the cluster network.
fn container_ip(c: &Cluster, container: &str) -> String {
    let r = docker(&[
        "inspect",
        "-f",
        &format!(
            "{{{{(index .NetworkSettings.Networks \"minikind-{}\").IPAddress}}}}",
            c.name
        ),
        container,
    ]);
    assert!(r.ok, "{}", r.stderr);
    r.stdout.trim().to_string()
}

#[test]
fn seed_002_docker_embedded_resolver_names_and_options() {
    let dir = "seed-002-docker-embedded-dns";
    let c = Cluster::create("e2e-seed002", &cluster_body(&format!("{dir}/cluster.yaml")));
    let cp = c.node("control-plane");
    let image = docker(&["inspect", "-f", "{{.Config.Image}}", &cp]);
    let image = image.stdout.trim();
    let upstream = container_ip(&c, &c.node("upstream"));

    // The README's extra container: aliases, hostname, --dns/--dns-search/--dns-opt; labelled
    // with the cluster so that deleting the cluster removes it.
    let web = c.node("web");
    let network = format!("minikind-{}", c.name);
    let label = format!("dev.minikind.cluster={}", c.name);
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &web,
        "--hostname",
        "web-host",
        "--network",
        &network,
        "--network-alias",
        "db",
        "--network-alias",
        "cache",
        "--dns",
        &upstream,
        "--dns-search",
        "example.test",
        "--dns-opt",
        "ndots:2",
        "--label",
        &label,
        "--cap-add",
        "NET_ADMIN",
        "--entrypoint",
        "sleep",
        image,
        "3600",
    ]);
    assert!(run.ok, "{}", run.stderr);
    let id = run.stdout.trim()[..12].to_string();
    let web_ip = container_ip(&c, &web);

    let resolv = c.exec_ok(&web, &["cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search example.test\nnameserver 127.0.0.11\noptions ndots:2\n"
    );
    // Docker's four rules (in whichever iptables back end the engine uses).
    let saves: String = ["iptables-legacy-save", "iptables-nft-save"]
        .iter()
        .map(|t| c.exec(&web, &[t, "-t", "nat"]).stdout)
        .collect();
    let rules = rule_lines(&saves);
    for want in [
        "-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT",
        "-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING",
    ] {
        assert!(rules.iter().any(|r| r == want), "{want} in {rules:#?}");
    }
    for proto in ["udp", "tcp"] {
        let dnat = rules
            .iter()
            .find(|r| {
                r.contains(&format!(
                    "-p {proto} -m {proto} --dport 53 -j DNAT --to-destination 127.0.0.11:"
                ))
            })
            .unwrap_or_else(|| panic!("{proto} DNAT in {rules:#?}"));
        let port = dnat.rsplit(':').next().unwrap();
        assert!(
            rules
                .iter()
                .any(|r| r.ends_with(&format!("--sport {port} -j SNAT --to-source :53"))),
            "{proto} SNAT for {port} in {rules:#?}"
        );
    }

    // Every kind of name Docker's resolver knows, case-insensitively, TTL 600.
    let answer = c.exec_ok(&web, &["dig", &web, "+noall", "+answer"]);
    assert!(
        answer.contains("\t600\tIN\tA\t") && answer.contains(&web_ip),
        "{answer}"
    );
    for name in [
        "DB".to_string(),
        "cache".into(),
        id.clone(),
        "web-host".into(),
        format!("{web}.{network}"),
    ] {
        let a = c.exec_ok(&web, &["dig", &name, "+short"]);
        assert_eq!(lines(&a), vec![web_ip.clone()], "{name}");
    }
    let ptr = c.exec_ok(&web, &["dig", "-x", &web_ip, "+short"]);
    assert_eq!(lines(&ptr), vec![format!("{web}.{network}.")]);
    let aaaa = c.exec_ok(&web, &["dig", "db", "AAAA"]);
    assert!(
        aaaa.contains("status: NOERROR") && aaaa.contains("ANSWER: 0"),
        "{aaaa}"
    );
    // Forwarded to the --dns server, with the --dns-search list.
    let www = c.exec_ok(&web, &["dig", "www", "+search", "+short"]);
    assert_eq!(lines(&www), vec!["192.0.2.10".to_string()]);
    let nope = c.exec_ok(&web, &["dig", "nope.example.test"]);
    assert!(nope.contains("status: NXDOMAIN"), "{nope}");

    // Pods reach the same names through CoreDNS and KIND's fix.
    c.minikind_ok(&["apply", "-f", &example(&format!("{dir}/client.yaml"))]);
    c.wait_pod_ready("default", "client");
    let from_pod = eventually("db from a pod", Duration::from_secs(20), || {
        let r = c.pod_exec("client", &["getent", "hosts", "db"]);
        r.ok.then_some(r.stdout)
    });
    assert!(from_pod.starts_with(&web_ip), "{from_pod}");
}

#[test]
fn attempts_follow_the_resolver_rules() {
    assert_eq!(
        expected_attempts("abc.123.def", 2, false),
        [
            "abc.123.def.",
            "abc.123.def.default.svc.cluster.local.",
            "abc.123.def.svc.cluster.local.",
            "abc.123.def.cluster.local."
        ]
    );
    assert_eq!(
        expected_attempts("abc.123", 2, false).last().unwrap(),
        "abc.123."
    );
    let log = "[INFO] 10.244.1.3:1 - 2 \"A IN a. udp 21 false 512\" REFUSED qr,rd 21 0.1s\n\
               [INFO] 10.244.1.3:1 - 2 \"A IN a. udp 21 false 512\" REFUSED qr,rd 21 0.1s\n\
               [INFO] 10.244.1.4:1 - 3 \"A IN b. udp 21 false 512\" NXDOMAIN qr,rd 21 0.1s\n\
               [INFO] 10.244.1.3:1 - 4 \"AAAA IN c. udp 21 false 512\" NXDOMAIN qr,rd 21 0.1s\n";
    assert_eq!(a_queries_from(log, "10.244.1.3"), ["a."]);
}
