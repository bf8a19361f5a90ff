//! `minikind dns trace` on a real cluster (issue 6, item 4): seed 003's busybox pod looks up an
//! upstream name; the trace shows the NXDOMAIN search attempts that cluster-dns answers itself,
//! then the final NOERROR through the kube-dns rules, the replica that answered, the network
//! magic's DNAT, the embedded resolver and the lab upstream — and every one of those facts is
//! checked against the cluster. Hermetic: internal network, lab upstream.

use std::time::Duration;

use minikind_test_support::{Cluster, docker, eventually, example};
use serde_json::Value;

fn trace(c: &Cluster, args: &[&str]) -> minikind_test_support::Run {
    let mut full = vec!["dns", "trace"];
    full.extend_from_slice(args);
    c.minikind(&full)
}

fn trace_json(c: &Cluster, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    let r = trace(c, &full);
    assert!(
        r.ok,
        "dns trace {args:?} failed:\n{}\n{}",
        r.stdout, r.stderr
    );
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("dns trace -o json is not JSON ({e}):\n{}", r.stdout))
}

fn hop<'a>(attempt: &'a Value, kind: &str) -> Option<&'a Value> {
    attempt["hops"]
        .as_array()?
        .iter()
        .find(|h| h["hop"] == kind)
}

/// The CoreDNS pods with their IP and node.
fn replicas(c: &Cluster) -> Vec<(String, String, String)> {
    c.coredns_pods()
        .iter()
        .filter_map(|p| {
            Some((
                format!("kube-system/{}", p["metadata"]["name"].as_str()?),
                p["status"]["podIP"].as_str()?.to_string(),
                p["spec"]["nodeName"].as_str()?.to_string(),
            ))
        })
        .collect()
}

fn container_ip(name: &str) -> String {
    let r = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        name,
    ]);
    assert!(r.ok, "docker inspect {name}: {}", r.stderr);
    r.stdout.trim().to_string()
}

#[test]
fn dns_trace_follows_each_search_attempt_to_the_lab_upstream() {
    let c = Cluster::create(
        "e2e-trace",
        "networking:\n  internal: true\ndns:\n  upstream: lab\n",
    );
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-003-dns-walkthrough/busybox.yaml"),
    ]);
    // kubeadm's Corefile has no `log`: the endpoint and the replica behind it still come
    // from the client node's conntrack table, and the hint about `log` is said once.
    c.wait_pod_ready("default", "busybox");
    let r = trace(&c, &["busybox", "kubernetes.default", "-o", "json"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{v:#}");
    for a in attempts {
        let ep = hop(a, "endpoint").unwrap_or_else(|| panic!("no endpoint hop: {a:#}"));
        assert!(
            ep["evidence"]
                .as_str()
                .unwrap()
                .starts_with("the conntrack table of "),
            "{ep:#}"
        );
        let replica = hop(a, "replica").unwrap_or_else(|| panic!("no replica hop: {a:#}"));
        assert!(
            replicas(&c).iter().any(
                |(name, ip, _)| replica["pod"] == name.as_str() && replica["ip"] == ip.as_str()
            ),
            "{replica:#}"
        );
    }
    let notes: Vec<&str> = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|n| n.contains("no `log`"))
        .collect();
    assert_eq!(notes.len(), 1, "{v:#}");
    assert!(notes[0].contains("no restart needed"), "{}", notes[0]);

    // Still without `log`, a lab name goes past the replica: its node's conntrack table shows
    // the forward DNATed to the embedded resolver, the lab upstream's log the query.
    let r = trace(&c, &["busybox", "www.example.test.", "-o", "json"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let last = v["attempts"].as_array().unwrap().last().unwrap();
    let fwd = hop(last, "forward").unwrap_or_else(|| panic!("no forward hop: {last:#}"));
    let seen = &fwd["conntrack"];
    assert_eq!(seen["answered_by"], fwd["dnat_to"], "{fwd:#}");
    assert!(
        seen["answered_by"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.11:"),
        "{fwd:#}"
    );
    assert!(
        seen["line"].as_str().unwrap().contains("dport=53"),
        "{fwd:#}"
    );
    assert!(hop(last, "upstream").is_some(), "{last:#}");

    // Seed 001's logging Corefile, and new replicas that read it: the replicas' own view.
    c.minikind_ok(&[
        "apply",
        "-f",
        &example("seed-001-coredns-scaling-and-ndots/coredns-log.yaml"),
    ]);
    c.restart_coredns();
    c.wait_pod_ready("default", "busybox");

    // Until the old replicas have left every node's rules a query may still reach one that
    // doesn't log. Warm up with names nobody asked before (the lab zone's wildcard, so no
    // cache can answer) until a whole trace reaches the upstream.
    let mut n = 0;
    eventually(
        "a trace that names the replica and reaches the lab upstream",
        Duration::from_secs(90),
        || {
            n += 1;
            let name = format!("warm-{n}.wild.example.test");
            let r = trace(&c, &["busybox", &name, "-o", "json"]);
            let v: Value = serde_json::from_str(&r.stdout).ok()?;
            let attempts = v["attempts"].as_array()?;
            let all_named = attempts.iter().all(|a| hop(a, "cluster_dns").is_some());
            (all_named && hop(attempts.last()?, "upstream").is_some()).then_some(())
        },
    );

    // The text trace of seed 003's upstream name.
    let r = trace(&c, &["busybox", "www.example.test"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let out = r.stdout;
    assert!(
        out.contains("fewer than ndots 5: each search domain first"),
        "{out}"
    );
    for (i, name) in [
        "www.example.test.default.svc.cluster.local.",
        "www.example.test.svc.cluster.local.",
        "www.example.test.cluster.local.",
    ]
    .iter()
    .enumerate()
    {
        let line = format!("\n{}: {name} A to 10.96.0.10#53 (UDP) from ", i + 1);
        let at = out
            .find(&line)
            .unwrap_or_else(|| panic!("no {line:?} in:\n{out}"));
        let attempt_line = out[at + 1..].lines().next().unwrap();
        assert!(
            attempt_line.contains(": NXDOMAIN, 0 answers, "),
            "{attempt_line}"
        );
    }
    assert!(
        out.contains("\n4: www.example.test. A to 10.96.0.10#53 (UDP) from "),
        "{out}"
    );
    for text in [
        "service rule ",
        "KUBE-SERVICES → KUBE-SVC-TCOU7JCQXEZGVUNU (kube-system/kube-dns:dns)",
        "endpoint ",
        "cluster-dns ",
        "answered from its own zone cluster.local. (kubernetes plugin)",
        "forward ",
        "PREROUTING → DOCKER_OUTPUT DNAT → 127.0.0.11:",
        "embedded ",
        "keeps no query log",
        "upstream ",
        "Outcome: NOERROR, 1 answer record(s)",
        "Address: 192.0.2.10",
    ] {
        assert!(out.contains(text), "no {text:?} in:\n{out}");
    }
    assert!(out.contains(&format!("{}-upstream", c.name)), "{out}");

    // The same as data, checked against the cluster: AAAA, which no cache holds yet.
    let v = trace_json(&c, &["busybox", "www.example.test", "--type", "AAAA"]);
    let busybox = c.pod_json("default", "busybox").unwrap();
    let busybox_ip = busybox["status"]["podIP"].as_str().unwrap();
    assert_eq!(v["pod"]["ip"], busybox_ip);
    assert_eq!(v["resolv_conf"]["ndots"], 5);
    let attempts = v["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{v:#}");
    let live = replicas(&c);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["number"], i + 1);
        assert_eq!(a["rtype"], "AAAA");
        assert!(
            a["local"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{busybox_ip}:")),
            "{a:#}"
        );
        let svc = hop(a, "service_rule").unwrap_or_else(|| panic!("{a:#}"));
        assert_eq!(svc["chain"], "KUBE-SVC-TCOU7JCQXEZGVUNU");
        // The endpoint taken is the replica that logged the query, which is a live CoreDNS
        // pod, and the DNAT goes to its address.
        let dns = hop(a, "cluster_dns").unwrap_or_else(|| panic!("{a:#}"));
        let (pod, ip, node) = live
            .iter()
            .find(|(name, ..)| dns["pod"] == name.as_str())
            .unwrap_or_else(|| panic!("{} is not a CoreDNS pod: {live:?}", dns["pod"]));
        assert_eq!(dns["ip"], ip.as_str(), "{pod}");
        assert_eq!(dns["node"], node.as_str(), "{pod}");
        let ep = hop(a, "endpoint").unwrap();
        assert_eq!(ep["to"], format!("{ip}:53"));
        assert!(ep["sep_chain"].as_str().unwrap().starts_with("KUBE-SEP-"));
        assert!(dns["log_line"].as_str().unwrap().contains(&format!(
            "{} - {} \"AAAA IN ",
            a["local"].as_str().unwrap(),
            a["id"]
        )));
        if i < 3 {
            assert_eq!(a["result"]["rcode"], "NXDOMAIN");
            assert_eq!(dns["answered"], "own_zone");
            assert_eq!(dns["zone"], "cluster.local.");
            assert!(hop(a, "forward").is_none());
        }
    }
    let last = attempts.last().unwrap();
    assert_eq!(last["name"], "www.example.test.");
    assert_eq!(last["result"]["rcode"], "NOERROR");
    let dns = hop(last, "cluster_dns").unwrap();
    assert_eq!(dns["answered"], "forwarded");
    let fwd = hop(last, "forward").unwrap();
    assert!(
        fwd["dnat_to"].as_str().unwrap().starts_with("127.0.0.11:"),
        "{fwd:#}"
    );
    assert!(
        fwd["prerouting_rule"]
            .as_str()
            .unwrap()
            .starts_with("-A PREROUTING -d ")
    );
    assert_eq!(hop(last, "embedded_resolver").unwrap()["mode"], "docker");
    let up = hop(last, "upstream").unwrap();
    assert_eq!(up["rcode"], "NOERROR");
    assert_eq!(up["container"], format!("{}-upstream", c.name));
    // The upstream was asked by the answering replica's node (Docker's resolver forwards
    // from the node's namespace).
    let node = dns["node"].as_str().unwrap();
    let client = up["client"].as_str().unwrap();
    assert!(
        client.starts_with(&format!("{}:", container_ip(node))),
        "{client} is not {node}'s address"
    );
    assert!(up["duration_us"].as_u64().is_some());

    // With KIND's fix switched off on every node, cluster-dns's forward to the host IP is no
    // longer redirected: the trace stops at the replica's node and says why.
    c.minikind_ok(&["dns", "magic", "off"]);
    // cluster-dns's forward keeps its UDP sockets to the upstream pooled, as CoreDNS's does,
    // and a pooled socket's conntrack entry still carries the DNAT the magic made: until the
    // pool's idle sockets expire (10 s) the forward goes on reaching the embedded resolver, as
    // a real CoreDNS would. Each try asks a new name, so no cached answer stands in,
    // So each try first leaves the pool idle past its expiry.
    let (v, last) = (1..=4)
        .find_map(|attempt| {
            std::thread::sleep(Duration::from_secs(11));
            let name = format!("off{attempt}.wild.example.test");
            let v = trace_json(&c, &["busybox", &name]);
            let last = v["attempts"].as_array().unwrap().last().unwrap().clone();
            let servfail = hop(&last, "cluster_dns").is_some_and(|d| d["rcode"] == "SERVFAIL");
            servfail.then_some((v, last))
        })
        .expect("the forward still reaches the embedded resolver after the magic is off");
    assert!(
        last["name"]
            .as_str()
            .is_some_and(|n| n.ends_with(".wild.example.test.")),
        "{v:#}"
    );
    let dns = hop(&last, "cluster_dns").unwrap_or_else(|| panic!("{last:#}"));
    assert_eq!(dns["rcode"], "SERVFAIL", "{last:#}");
    assert_eq!(dns["answered"], "not_forwarded");
    let hops = last["hops"].as_array().unwrap();
    let stop = hops.last().unwrap();
    assert_eq!(stop["hop"], "stop", "{last:#}");
    assert_eq!(stop["at"], dns["node"]);
    let reason = stop["reason"].as_str().unwrap();
    assert!(
        reason.contains("-j DOCKER_OUTPUT`") && reason.contains("the network magic is off"),
        "{reason}"
    );
    assert!(hop(&last, "upstream").is_none());

    // Bad input: a clear error, nothing traced.
    let r = trace(&c, &["no-such-pod", "www.example.test"]);
    assert!(
        !r.ok && r.stderr.contains("pod default/no-such-pod not found"),
        "{}",
        r.stderr
    );
    let r = trace(&c, &["busybox", "www.example.test", "--type", "BOGUS"]);
    assert!(
        !r.ok && r.stderr.contains("--type \"BOGUS\""),
        "{}",
        r.stderr
    );
}
