//! Real resolver libraries, visible (`examples/resolver-libraries/`): the same `getaddrinfo`
//! probe built against glibc and against musl (images made here from host files with the
//! engine's import endpoint, loaded with `minikind load docker-image`), run from pods at ndots 5
//! and at ndots 2 with `use-vc`, and CoreDNS's query log showing where the libraries differ:
//! a name with at least `ndots` dots (glibc walks the search list after the name as written
//! fails, musl does not), a truncated UDP reply (glibc asks again over TCP and gets every
//! record, Debian's musl 1.2.3 keeps what fit), and `options use-vc` (glibc: TCP, musl: ignored).

use std::time::Duration;

use minikind_test_support::images::{HostImages, glibc_probe_image, musl_probe_image};
use minikind_test_support::{Cluster, cluster_body, eventually, example, lines, pod_ip};

const DIR: &str = "resolver-libraries";
const GLIBC: &str = "minikind-example/resolver-probe:glibc";
const MUSL: &str = "minikind-example/resolver-probe:musl";
/// `big.example.test`'s A records in the lab upstream's zone.
const BIG: usize = 60;

/// One query of the log: type, name, protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Query {
    qtype: String,
    name: String,
    proto: String,
}

/// The queries CoreDNS's `log` wrote for client `ip`, in order
/// (`[INFO] IP:PORT - ID "TYPE CLASS NAME PROTO SIZE DO BUFSIZE" RCODE …`).
fn queries_from(log: &str, ip: &str) -> Vec<Query> {
    log.lines()
        .filter(|l| l.contains(&format!("] {ip}:")))
        .filter_map(|l| {
            let quoted = l.split('"').nth(1)?;
            let f: Vec<&str> = quoted.split_whitespace().collect();
            (f.len() >= 4).then(|| Query {
                qtype: f[0].to_string(),
                name: f[2].to_string(),
                proto: f[3].to_string(),
            })
        })
        .collect()
}

/// The distinct names asked, in first-asked order.
fn names(qs: &[Query], contains: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for q in qs.iter().filter(|q| q.name.contains(contains)) {
        if !out.contains(&q.name) {
            out.push(q.name.clone());
        }
    }
    out
}

#[test]
fn glibc_and_musl_resolve_differently_as_the_real_libraries_do() {
    glibc_probe_image(GLIBC);
    musl_probe_image(MUSL);
    let _images = HostImages::new(&[GLIBC, MUSL]);
    let c = Cluster::create(
        "e2e-resolvers",
        &cluster_body(&format!("{DIR}/cluster.yaml")),
    );
    c.minikind_ok(&["load", "docker-image", GLIBC, MUSL]);

    // One replica that logs every query (seed 001's Corefile with `log`).
    let replica = c.one_coredns_replica(
        &example("seed-001-coredns-scaling-and-ndots/coredns-log.yaml"),
        &["control-plane"],
    );
    let replica = replica["metadata"]["name"].as_str().unwrap().to_string();

    c.minikind_ok(&["apply", "-f", &example(&format!("{DIR}/pods.yaml"))]);
    let pods = ["glibc", "musl", "glibc-2", "musl-2"];
    for p in pods {
        c.wait_pod_ready("default", p);
    }
    let resolve = |pod: &str, name: &str| c.pod_exec(pod, &["resolve", name]);

    // Both find a service through the search list and an upstream name, and both fail on `abc`.
    for pod in pods {
        let r = resolve(pod, "kubernetes.default");
        assert_eq!(
            lines(&r.stdout),
            vec!["10.96.0.1".to_string()],
            "{pod}: {r:?}"
        );
        let r = resolve(pod, "www.example.test");
        let mut got = lines(&r.stdout);
        got.sort();
        assert_eq!(got, vec!["192.0.2.10", "2001:db8::10"], "{pod}: {r:?}");
    }
    for pod in ["glibc", "musl"] {
        let r = resolve(pod, "abc");
        assert_eq!(r.code, Some(2), "{pod} must not resolve abc: {r:?}");
    }
    // 60 A records: glibc retries the truncated UDP reply over TCP and gets all of them; musl
    // 1.2.3 keeps what the truncated reply held.
    let glibc_big = lines(&resolve("glibc", "big.example.test.").stdout).len();
    let musl_big = lines(&resolve("musl", "big.example.test.").stdout).len();
    assert_eq!(glibc_big, BIG, "glibc's addresses for big.example.test");
    assert!(
        musl_big < BIG,
        "musl got {musl_big} addresses: a truncated reply should have held fewer than {BIG}"
    );
    // Two dots, ndots 2: both try the name as written first; only glibc then walks the list.
    for pod in ["glibc-2", "musl-2"] {
        let r = resolve(pod, "abc.123.def");
        assert_eq!(r.code, Some(2), "{pod} must not resolve abc.123.def: {r:?}");
    }

    let ip = |pod: &str| pod_ip(&c.pod_json("default", pod).unwrap());
    let log = eventually(
        "every probe's queries in the log",
        Duration::from_secs(30),
        || {
            let r = c.minikind(&["logs", "-n", "kube-system", &replica]);
            let log = r.stdout;
            let done = ["glibc-2", "musl-2"].iter().all(|p| {
                queries_from(&log, &ip(p))
                    .iter()
                    .any(|q| q.name == "abc.123.def.")
            }) && queries_from(&log, &ip("musl"))
                .iter()
                .any(|q| q.name == "big.example.test.");
            done.then_some(log)
        },
    );
    let (glibc, musl) = (
        queries_from(&log, &ip("glibc")),
        queries_from(&log, &ip("musl")),
    );
    let (glibc2, musl2) = (
        queries_from(&log, &ip("glibc-2")),
        queries_from(&log, &ip("musl-2")),
    );

    // ndots 5, `abc`: the same walk, search list first, each name asked for A and AAAA.
    let walk = [
        "abc.default.svc.cluster.local.",
        "abc.svc.cluster.local.",
        "abc.cluster.local.",
        "abc.",
    ];
    for (lib, qs) in [("glibc", &glibc), ("musl", &musl)] {
        let abc: Vec<&Query> = qs.iter().filter(|q| q.name.starts_with("abc.")).collect();
        assert_eq!(names(qs, "abc."), walk, "{lib}:\n{log}");
        for name in walk {
            for t in ["A", "AAAA"] {
                assert!(
                    abc.iter().any(|q| q.name == name && q.qtype == t),
                    "{lib} did not ask {t} {name}:\n{log}"
                );
            }
        }
    }
    // The truncated reply: glibc asks again over TCP, musl never uses TCP.
    assert!(
        glibc
            .iter()
            .any(|q| q.name == "big.example.test." && q.qtype == "A" && q.proto == "tcp"),
        "glibc did not retry big.example.test over TCP:\n{log}"
    );
    assert!(
        musl.iter().all(|q| q.proto == "udp"),
        "musl used TCP:\n{log}"
    );
    // ndots 2 and use-vc: glibc tries `abc.123.def.` first, then the search list, all over
    // TCP; musl asks the name as written only, over UDP (it has no `use-vc`).
    assert_eq!(
        names(&glibc2, "abc.123.def"),
        [
            "abc.123.def.",
            "abc.123.def.default.svc.cluster.local.",
            "abc.123.def.svc.cluster.local.",
            "abc.123.def.cluster.local.",
        ],
        "glibc-2:\n{log}"
    );
    assert!(glibc2.iter().all(|q| q.proto == "tcp"), "glibc-2:\n{log}");
    assert_eq!(
        names(&musl2, "abc.123.def"),
        ["abc.123.def."],
        "musl-2:\n{log}"
    );
    assert!(musl2.iter().all(|q| q.proto == "udp"), "musl-2:\n{log}");
}
