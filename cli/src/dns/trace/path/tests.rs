//! Path assembly on text recorded from a 3-node lab cluster (`examples/seed-003-dns-walkthrough`
//! with seed 001's logging Corefile): busybox (10.244.2.2) on trc1-worker; CoreDNS replicas
//! coredns-gzpjqvjrtz-5hvmv (10.244.1.2, trc1-worker2) and coredns-gzpjqvjrtz-f2mv5
//! (10.244.2.3, trc1-worker); the magic's host IP 172.26.0.1; the lab upstream at 172.26.0.2.
//! `rec-1.wild.example.test` was looked up with the magic on; `off-6.wild.example.test` after
//! the magic was switched off on trc1-worker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use minikind_pod_tools::attempt::{Attempt, parse_line};

use super::*;
use crate::dns::trace::model::CacheVerdict;
use crate::dns::trace::querylog::{parse_all, parse_errors};

const WORKER: &str = include_str!("../testdata/worker-iptables-save.txt");
const WORKER_MAGIC_OFF: &str = include_str!("../testdata/worker-iptables-save-magic-off.txt");
const WORKER2: &str = include_str!("../testdata/worker2-iptables-save.txt");
const LOG_5HVMV: &str = include_str!("../testdata/coredns-5hvmv.log");
const LOG_F2MV5: &str = include_str!("../testdata/coredns-f2mv5.log");
const UPSTREAM: &str = include_str!("../testdata/upstream.log");
const PROBE_REC1: &str = include_str!("../testdata/probe-rec1.txt");
const PROBE_OFF6: &str = include_str!("../testdata/probe-off6.txt");

fn at(t: &str) -> SystemTime {
    humantime::parse_rfc3339(t).unwrap()
}

fn node(ip: &str, save: Option<&str>) -> NodeInfo {
    NodeInfo {
        ip: Some(ip.parse().unwrap()),
        rules: save.map(Ruleset::parse),
        embedded: EmbeddedMode::Docker,
        queries: Vec::new(),
        conntrack: Vec::new(),
    }
}

fn replica(name: &str, ip: &str, node: &str, log: &str) -> Replica {
    Replica {
        name: format!("kube-system/{name}"),
        ip: Some(ip.parse().unwrap()),
        node: Some(node.into()),
        queries: parse_all(log),
        errors: parse_errors(log),
        log_error: None,
        forward_to: vec!["172.26.0.1".parse().unwrap()],
        zones: ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]
            .map(String::from)
            .to_vec(),
    }
}

fn evidence(worker_save: &str, window: (&str, &str)) -> Evidence {
    Evidence {
        client: PodRef {
            namespace: "default".into(),
            name: "busybox".into(),
            ip: Some("10.244.2.2".parse().unwrap()),
            node: Some("trc1-worker".into()),
        },
        nodes: BTreeMap::from([
            ("trc1-control-plane".to_string(), node("172.26.0.5", None)),
            (
                "trc1-worker".to_string(),
                node("172.26.0.3", Some(worker_save)),
            ),
            (
                "trc1-worker2".to_string(),
                node("172.26.0.4", Some(WORKER2)),
            ),
        ]),
        replicas: vec![
            replica(
                "coredns-gzpjqvjrtz-5hvmv",
                "10.244.1.2",
                "trc1-worker2",
                LOG_5HVMV,
            ),
            replica(
                "coredns-gzpjqvjrtz-f2mv5",
                "10.244.2.3",
                "trc1-worker",
                LOG_F2MV5,
            ),
        ],
        corefile_logs: Some(true),
        upstream: Some(UpstreamInfo {
            container: "trc1-upstream".into(),
            ip: Some("172.26.0.2".parse().unwrap()),
            queries: parse_all(UPSTREAM),
        }),
        node_cache: None,
        attempts: Vec::new(),
        window: (at(window.0), at(window.1)),
    }
}

fn attempts(probe: &str) -> Vec<Attempt> {
    probe
        .lines()
        .filter_map(parse_line)
        .map(|(_, a)| a)
        .collect()
}

fn kinds(hops: &[Hop]) -> Vec<&'static str> {
    hops.iter()
        .map(|h| match h {
            Hop::NodeLocal(_) => "node_local",
            Hop::NodeCache(_) => "node_cache",
            Hop::NodeCacheForward(_) => "node_cache_forward",
            Hop::ServiceRule(_) => "service_rule",
            Hop::Endpoint(_) => "endpoint",
            Hop::Replica(_) => "replica",
            Hop::ClusterDns(_) => "cluster_dns",
            Hop::Forward(_) => "forward",
            Hop::EmbeddedResolver(_) => "embedded_resolver",
            Hop::Upstream(_) => "upstream",
            Hop::Stop(_) => "stop",
        })
        .collect()
}

fn cluster_dns(hops: &[Hop]) -> &ClusterDnsHop {
    hops.iter()
        .find_map(|h| match h {
            Hop::ClusterDns(d) => Some(d),
            _ => None,
        })
        .expect("a cluster-dns hop")
}

fn endpoint(hops: &[Hop]) -> &EndpointHop {
    hops.iter()
        .find_map(|h| match h {
            Hop::Endpoint(e) => Some(e),
            _ => None,
        })
        .expect("an endpoint hop")
}

fn stop_of(hops: &[Hop]) -> &StopHop {
    match hops.last() {
        Some(Hop::Stop(s)) => s,
        other => panic!("the path does not stop: {other:?}"),
    }
}

#[test]
fn search_attempts_answered_in_the_cluster_zone() {
    let ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let tried = attempts(PROBE_REC1);
    assert_eq!(tried.len(), 4);
    // Which replica answered each is read from the logs: the client port and id match.
    let want = [
        (
            "coredns-gzpjqvjrtz-f2mv5",
            "KUBE-SEP-ZHICQ2ODADGCY7DS",
            None,
            "10.244.2.3:53",
        ),
        (
            "coredns-gzpjqvjrtz-f2mv5",
            "KUBE-SEP-ZHICQ2ODADGCY7DS",
            None,
            "10.244.2.3:53",
        ),
        (
            "coredns-gzpjqvjrtz-5hvmv",
            "KUBE-SEP-Z6M7ZHWCTBNMPLD7",
            Some("0.50000000000"),
            "10.244.1.2:53",
        ),
    ];
    for (a, (pod, sep, p, to)) in tried.iter().zip(want) {
        let hops = assemble(a, &ev);
        assert_eq!(
            kinds(&hops),
            ["service_rule", "endpoint", "cluster_dns"],
            "{hops:#?}"
        );
        let Hop::ServiceRule(svc) = &hops[0] else {
            unreachable!()
        };
        assert_eq!(svc.chain, "KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(svc.service.as_deref(), Some("kube-system/kube-dns:dns"));
        assert_eq!(svc.node, "trc1-worker");
        let ep = endpoint(&hops);
        assert_eq!(
            (
                ep.sep_chain.as_str(),
                ep.probability.as_deref(),
                ep.of_endpoints
            ),
            (sep, p, 2)
        );
        assert_eq!(ep.to, Some(to.parse().unwrap()));
        assert!(
            ep.evidence.contains(&format!("with id {}", a.id)),
            "{}",
            ep.evidence
        );
        let dns = cluster_dns(&hops);
        assert_eq!(dns.pod, format!("kube-system/{pod}"));
        assert_eq!(dns.rcode, "NXDOMAIN");
        assert_eq!(dns.answered, Answered::OwnZone);
        assert_eq!(dns.zone.as_deref(), Some("cluster.local."));
        assert!(dns.log_line.starts_with(&format!(
            "[INFO] {} - {} \"A IN {} ",
            a.local.unwrap(),
            a.id,
            a.name
        )));
    }
}

#[test]
fn the_upstream_name_goes_through_the_magic_to_the_lab_upstream() {
    let ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let last = attempts(PROBE_REC1).pop().unwrap();
    let hops = assemble(&last, &ev);
    assert_eq!(
        kinds(&hops),
        [
            "service_rule",
            "endpoint",
            "cluster_dns",
            "forward",
            "embedded_resolver",
            "upstream"
        ],
        "{hops:#?}"
    );
    let dns = cluster_dns(&hops);
    assert_eq!(dns.pod, "kube-system/coredns-gzpjqvjrtz-f2mv5");
    assert_eq!(
        (dns.rcode.as_str(), dns.answered),
        ("NOERROR", Answered::Forwarded)
    );
    assert_eq!(dns.zone, None);
    let Hop::Forward(fwd) = &hops[3] else {
        unreachable!()
    };
    assert_eq!(fwd.node, "trc1-worker");
    assert_eq!(fwd.from, "10.244.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(fwd.to, "172.26.0.1:53".parse().unwrap());
    assert_eq!(
        fwd.prerouting_rule,
        "-A PREROUTING -d 172.26.0.1/32 -j DOCKER_OUTPUT"
    );
    assert_eq!(fwd.dnat_to, Some("127.0.0.11:51869".parse().unwrap()));
    assert_eq!(fwd.conntrack, None, "no table read");
    let Hop::EmbeddedResolver(emb) = &hops[4] else {
        unreachable!()
    };
    assert_eq!(emb.mode, EmbeddedMode::Docker);
    assert_eq!(emb.rcode, None);
    assert!(emb.note.as_deref().unwrap().contains("keeps no query log"));
    let Hop::Upstream(up) = &hops[5] else {
        unreachable!()
    };
    // Asked by the replica's node (172.26.0.3 is trc1-worker), not by the client pod.
    assert_eq!(up.client, "172.26.0.3:48478".parse().unwrap());
    assert_eq!(up.rcode, "NOERROR");
    assert_eq!(up.duration, std::time::Duration::from_nanos(209_092));
    assert!(
        up.log_line
            .contains("\"A IN rec-1.wild.example.test. udp 41 false 512\"")
    );
}

/// The conntrack lines of a query from `client` to `server` that the DNAT sent to
/// `answered_by`, as the kernel prints them.
fn flow_line(client: SocketAddr, server: SocketAddr, answered_by: SocketAddr, ttl: u32) -> String {
    format!(
        "ipv4     2 udp      17 {ttl} src={} dst={} sport={} dport={} src={} dst={} sport={} \
         dport={} mark=0 zone=0 use=2\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port(),
        answered_by.ip(),
        client.ip(),
        answered_by.port(),
        client.port()
    )
}

/// Without `log`, an external name is still followed past the replica: the client node's
/// table names the endpoint, the replica node's table the forward's DNAT to 127.0.0.11, the
/// upstream's log the query that went out.
#[test]
fn without_log_the_forward_to_the_embedded_resolver_is_read_from_conntrack() {
    let mut ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    for r in &mut ev.replicas {
        r.queries.clear();
    }
    ev.corefile_logs = Some(false);
    let last = attempts(PROBE_REC1).pop().unwrap();
    let sa = |t: &str| -> SocketAddr { t.parse().unwrap() };
    let embedded = sa("127.0.0.11:51869");
    let table = [
        flow_line(last.local.unwrap(), last.server, sa("10.244.2.3:53"), 28),
        flow_line(sa("10.244.2.3:40001"), sa("172.26.0.1:53"), embedded, 12),
        flow_line(sa("10.244.2.3:40002"), sa("172.26.0.1:53"), embedded, 29),
    ]
    .concat();
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack =
        crate::dns::trace::conntrack::parse(&table);
    let hops = assemble(&last, &ev);
    assert_eq!(
        kinds(&hops),
        [
            "service_rule",
            "endpoint",
            "replica",
            "forward",
            "embedded_resolver",
            "upstream"
        ],
        "{hops:#?}"
    );
    let Hop::Forward(fwd) = &hops[3] else {
        unreachable!()
    };
    let seen = fwd.conntrack.as_ref().unwrap();
    assert_eq!((seen.answered_by, seen.flows), (embedded, 2));
    assert!(
        seen.line.contains("sport=40002"),
        "the newest: {}",
        seen.line
    );
    assert_eq!(fwd.dnat_to, Some(embedded));
    let Hop::Upstream(up) = &hops[5] else {
        unreachable!()
    };
    assert_eq!(up.client, sa("172.26.0.3:48478"));
    let text: String = hops
        .iter()
        .map(|h| {
            let (_, summary, evidence) = crate::dns::trace::render::hop_lines(h);
            format!("{summary}\n{}\n", evidence.join("\n"))
        })
        .collect();
    assert!(
        text.contains("answered from 127.0.0.11:51869 (conntrack of trc1-worker)"),
        "{text}"
    );
    assert!(
        text.contains("conntrack (the newest of 2 flows): ipv4"),
        "{text}"
    );

    // A name of the replica's own zone is not followed: nothing was forwarded.
    let first = &attempts(PROBE_REC1)[0];
    let table = flow_line(first.local.unwrap(), first.server, sa("10.244.2.3:53"), 28);
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack = crate::dns::trace::conntrack::parse(
        &[
            table,
            flow_line(sa("10.244.2.3:40002"), sa("172.26.0.1:53"), embedded, 29),
        ]
        .concat(),
    );
    assert_eq!(
        kinds(&assemble(first, &ev)),
        ["service_rule", "endpoint", "replica", "stop"]
    );
}

#[test]
fn with_the_magic_off_the_trace_stops_at_the_replicas_node() {
    let ev = evidence(
        WORKER_MAGIC_OFF,
        ("2026-11-22T04:35:59Z", "2026-11-22T04:36:04Z"),
    );
    let tried = attempts(PROBE_OFF6);
    let last = tried.last().unwrap();
    let hops = assemble(last, &ev);
    assert_eq!(
        kinds(&hops),
        ["service_rule", "endpoint", "cluster_dns", "stop"],
        "{hops:#?}"
    );
    let dns = cluster_dns(&hops);
    assert_eq!(dns.pod, "kube-system/coredns-gzpjqvjrtz-f2mv5");
    assert_eq!(
        (dns.rcode.as_str(), dns.answered),
        ("SERVFAIL", Answered::NotForwarded)
    );
    let stop = stop_of(&hops);
    assert_eq!(stop.at, "trc1-worker");
    for part in [
        "no `-A PREROUTING -d 172.26.0.1/32 -j DOCKER_OUTPUT`",
        "the network magic is off",
        "DOCKER_OUTPUT only redirects queries to 127.0.0.11/32",
        "hence SERVFAIL",
        "cluster-dns logged: read udp 172.26.0.1:53: Connection refused",
    ] {
        assert!(stop.reason.contains(part), "{part:?} in {}", stop.reason);
    }
    // The other node still has the magic: the same replica's rules are what matter.
    assert!(
        Ruleset::parse(WORKER2)
            .docker_dns("172.26.0.1".parse().unwrap(), "udp")
            .prerouting
            .is_some()
    );
}

#[test]
fn a_replica_that_does_not_log_is_said_so() {
    let mut ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    for r in &mut ev.replicas {
        r.queries.clear();
    }
    ev.corefile_logs = Some(false);
    let a = &attempts(PROBE_REC1)[0];
    let hops = assemble(a, &ev);
    assert_eq!(kinds(&hops), ["service_rule", "stop"]);
    let stop = stop_of(&hops);
    assert_eq!(stop.at, "KUBE-SVC-TCOU7JCQXEZGVUNU on trc1-worker");
    assert!(stop.reason.contains("no `log`"), "{}", stop.reason);
    assert!(stop.reason.contains("which of the 2"), "{}", stop.reason);

    // The node's conntrack table still holds the flow: the endpoint and the replica behind it
    // are named from it, and the path stops at what only the replica's log would say.
    let local = a.local.unwrap();
    let line = format!(
        "ipv4     2 udp      17 28 src={} dst={} sport={} dport={} src=10.244.2.3 dst={} \
         sport=53 dport={} mark=0 zone=0 use=2",
        local.ip(),
        a.server.ip(),
        local.port(),
        a.server.port(),
        local.ip(),
        local.port()
    );
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack = crate::dns::trace::conntrack::parse(&line);
    let hops = assemble(a, &ev);
    assert_eq!(
        kinds(&hops),
        ["service_rule", "endpoint", "replica", "stop"]
    );
    let Hop::Endpoint(ep) = &hops[1] else {
        unreachable!()
    };
    assert_eq!(ep.to, Some("10.244.2.3:53".parse().unwrap()));
    assert!(
        ep.evidence
            .starts_with("the conntrack table of trc1-worker: ipv4"),
        "{}",
        ep.evidence
    );
    let Hop::Replica(r) = &hops[2] else {
        unreachable!()
    };
    assert_eq!(r.pod, "kube-system/coredns-gzpjqvjrtz-f2mv5");
    assert!(
        stop_of(&hops)
            .reason
            .contains("only its `log` line would say")
    );
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack.clear();

    // Logging on, but no replica has the line (it went to one that is gone).
    ev.corefile_logs = Some(true);
    ev.replicas[0].log_error = Some("pod not found".into());
    let stop = stop_of(&assemble(a, &ev)).clone();
    assert!(
        stop.reason.contains(&format!(
            "none of the cluster-dns replicas (kube-system/coredns-gzpjqvjrtz-5hvmv, \
             kube-system/coredns-gzpjqvjrtz-f2mv5) logged a query from 10.244.2.2:51858 with id {}",
            a.id
        )),
        "{}",
        stop.reason
    );
    assert!(stop.reason.contains("pod not found"), "{}", stop.reason);
}

#[test]
fn nothing_upstream_means_a_cached_or_local_answer() {
    let mut ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    ev.upstream.as_mut().unwrap().queries.clear();
    let last = attempts(PROBE_REC1).pop().unwrap();
    let hops = assemble(&last, &ev);
    assert_eq!(
        kinds(&hops),
        [
            "service_rule",
            "endpoint",
            "cluster_dns",
            "forward",
            "embedded_resolver",
            "stop"
        ]
    );
    assert_eq!(cluster_dns(&hops).answered, Answered::NotForwarded);
    let stop = stop_of(&hops);
    assert_eq!(stop.at, "127.0.0.11 on trc1-worker");
    assert!(
        stop.reason
            .contains("no query for rec-1.wild.example.test. reached trc1-upstream")
    );
    // Lines outside the time of the query don't count either.
    let mut late = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    for q in &mut late.upstream.as_mut().unwrap().queries {
        q.time = q.time.map(|t| t + std::time::Duration::from_secs(30));
    }
    assert_eq!(kinds(&assemble(&last, &late)).last(), Some(&"stop"));
}

#[test]
fn a_builtin_resolver_logs_its_hop() {
    let mut ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let worker = ev.nodes.get_mut("trc1-worker").unwrap();
    worker.embedded = EmbeddedMode::Builtin;
    // dns-embedded's line for the replica's forward (same format as every hop).
    worker.queries = parse_all(
        "2026-11-22T04:34:43.001990000Z [INFO] 10.244.2.3:37001 - 30458 \"A IN \
         rec-1.wild.example.test. udp 41 false 512\" NOERROR qr,aa,rd,ra 57 0.000701s\n",
    );
    let last = attempts(PROBE_REC1).pop().unwrap();
    let hops = assemble(&last, &ev);
    let Hop::EmbeddedResolver(emb) = &hops[4] else {
        panic!("{hops:#?}")
    };
    assert_eq!(emb.mode, EmbeddedMode::Builtin);
    assert_eq!(emb.rcode.as_deref(), Some("NOERROR"));
    assert_eq!(emb.duration, Some(std::time::Duration::from_micros(701)));
    assert_eq!(kinds(&hops).last(), Some(&"upstream"));

    // Two upstream lines for the name in the window: the one with the embedded line's id.
    let mut twice = ev.clone();
    let up = twice.upstream.as_mut().unwrap();
    let mut other = up
        .queries
        .iter()
        .find(|q| q.name == "rec-1.wild.example.test.")
        .unwrap()
        .clone();
    other.id = 1;
    other.rcode = "SERVFAIL".into();
    up.queries.push(other);
    let hops = assemble(&last, &twice);
    let Some(Hop::Upstream(u)) = hops.last() else {
        panic!("{hops:#?}")
    };
    assert_eq!((u.rcode.as_str(), u.client.port()), ("NOERROR", 48478));

    // Builtin, but its log has no such query and the reply was a failure: the forward failed.
    let worker = ev.nodes.get_mut("trc1-worker").unwrap();
    worker.queries.clear();
    ev.upstream.as_mut().unwrap().queries.clear();
    let mut failed = last.clone();
    let hops = assemble(&failed, &ev);
    assert_eq!(kinds(&hops).last(), Some(&"stop"));
    assert!(stop_of(&hops).reason.contains("answered from its cache"));
    failed.local = None;
    assert_eq!(kinds(&assemble(&failed, &ev)), ["service_rule", "stop"]);
}

#[test]
fn a_service_without_endpoints_and_an_address_nothing_catches() {
    let rejecting = format!(
        "{WORKER}*filter\n-A KUBE-SERVICES -d 10.96.0.99/32 -p udp -m comment --comment \
         \"default/empty:dns has no endpoints\" -m udp --dport 53 -j REJECT --reject-with \
         icmp-port-unreachable\nCOMMIT\n"
    );
    let ev = evidence(&rejecting, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let mut a = attempts(PROBE_REC1).remove(0);
    a.server = "10.96.0.99:53".parse().unwrap();
    let hops = assemble(&a, &ev);
    assert!(
        stop_of(&hops).reason.contains("no ready endpoints"),
        "{hops:#?}"
    );
    a.server = "192.0.2.1:53".parse().unwrap();
    let reason = stop_of(&assemble(&a, &ev)).reason.clone();
    assert!(
        reason.contains("no rule on trc1-worker sends 192.0.2.1:53/udp anywhere"),
        "{reason}"
    );
}

#[test]
fn a_pod_with_the_nodes_resolv_conf_goes_straight_to_the_magic() {
    // dnsPolicy: Default gives the pod the node's resolv.conf: nameserver 172.26.0.1.
    let mut ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    ev.upstream.as_mut().unwrap().queries = parse_all(
        "2026-11-22T04:34:43.100000000Z [INFO] 172.26.0.3:40001 - 7 \"A IN www.example.test. \
         udp 34 false 512\" NOERROR qr,aa,rd 50 0.000150s\n",
    );
    let mut a = attempts(PROBE_REC1).pop().unwrap();
    a.server = "172.26.0.1:53".parse().unwrap();
    a.name = "www.example.test.".into();
    let hops = assemble(&a, &ev);
    assert_eq!(
        kinds(&hops),
        ["forward", "embedded_resolver", "upstream"],
        "{hops:#?}"
    );
    let Hop::Forward(fwd) = &hops[0] else {
        unreachable!()
    };
    assert_eq!(fwd.from, "10.244.2.2".parse::<IpAddr>().unwrap());
}

#[test]
fn zones_match_by_label() {
    let zones = ["cluster.local.".to_string(), "in-addr.arpa.".to_string()];
    assert_eq!(
        zone_of("a.default.svc.cluster.local.", &zones),
        Some("cluster.local.")
    );
    assert_eq!(zone_of("CLUSTER.LOCAL", &zones), Some("cluster.local."));
    assert_eq!(zone_of("notcluster.local.", &zones), None);
    assert_eq!(zone_of("www.example.test.", &zones), None);
}

#[test]
fn the_text_tree_of_a_traced_lookup() {
    use crate::dns::trace::model::{ResolvSummary, Trace, TracedAttempt};
    let ev = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let attempts: Vec<TracedAttempt> = PROBE_REC1
        .lines()
        .filter_map(parse_line)
        .map(|(number, attempt)| TracedAttempt {
            number,
            hops: assemble(&attempt, &ev),
            attempt,
        })
        .collect();
    let trace = Trace {
        cluster: "trc1".into(),
        pod: ev.client.clone(),
        name: "rec-1.wild.example.test".into(),
        rtype: "A".into(),
        resolv_conf: ResolvSummary {
            nameservers: vec!["10.96.0.10".into()],
            search: [
                "default.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
            ]
            .map(String::from)
            .to_vec(),
            ndots: 5,
        },
        command: vec!["nslookup".into(), "-debug".into()],
        attempts,
        answer: vec![
            "Name:\trec-1.wild.example.test".into(),
            "Address: 192.0.2.99".into(),
        ],
        outcome: "NOERROR, 1 answer record(s)".into(),
        notes: vec![],
    };
    let text = crate::dns::trace::render::text(&trace);
    let golden = include_str!("../testdata/trace-rec1.txt");
    assert_eq!(text, golden, "\n{text}");
    // The same as JSON: one object per hop, tagged with its kind.
    let json = serde_json::to_value(&trace).unwrap();
    let last = &json["attempts"][3];
    assert_eq!(last["number"], 4);
    assert_eq!(last["local"], "10.244.2.2:43109");
    assert_eq!(last["result"]["rcode"], "NOERROR");
    let hops: Vec<&str> = last["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["hop"].as_str().unwrap())
        .collect();
    assert_eq!(
        hops,
        [
            "service_rule",
            "endpoint",
            "cluster_dns",
            "forward",
            "embedded_resolver",
            "upstream"
        ]
    );
    assert_eq!(last["hops"][5]["duration_us"], 209);
    assert_eq!(last["hops"][2]["answered"], "forwarded");
}

#[test]
fn a_node_local_cache_catches_the_query_before_the_dnat() {
    use minikind_cluster_dns::nodecache::rules::rules;
    let cache: String = rules(
        &[
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ],
        53,
        8080,
    )
    .iter()
    .filter(|r| r.table == minikind_cluster_dns::nodecache::rules::Table::Raw)
    .map(|r| r.save_line() + "\n")
    .collect();
    let save = format!("*raw\n:PREROUTING ACCEPT [0:0]\n{cache}COMMIT\n{WORKER}");
    let ev = evidence(&save, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let attempt = attempts(PROBE_REC1).remove(0);
    let hops = assemble(&attempt, &ev);
    assert_eq!(kinds(&hops), ["node_local", "stop"], "{hops:#?}");
    let Hop::NodeLocal(h) = &hops[0] else {
        unreachable!()
    };
    assert!(
        h.rule.starts_with("-A PREROUTING -d 10.96.0.10/32 -p udp"),
        "{}",
        h.rule
    );
    // Without the cache's rules the same attempt goes through kube-proxy's service rule.
    let plain = evidence(WORKER, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    assert_eq!(kinds(&assemble(&attempt, &plain))[0], "service_rule");
}

/// The worker with node-cache's raw rules for 10.96.0.10 (iptables mode) and its cache pod,
/// whose counters moved by `delta` during the lookup of rec-1.wild.example.test.
fn node_cache_evidence(delta: &str) -> (Evidence, Vec<Attempt>) {
    use crate::dns::trace::nodelocal::{CacheCounters, NodeCacheEvidence};
    use minikind_cluster_dns::nodecache::rules::{Table, rules};
    let cache: String = rules(
        &[
            "169.254.20.10".parse().unwrap(),
            "10.96.0.10".parse().unwrap(),
        ],
        53,
        8080,
    )
    .iter()
    .filter(|r| r.table == Table::Raw)
    .map(|r| r.save_line() + "\n")
    .collect();
    let save = format!("*raw\n:PREROUTING ACCEPT [0:0]\n{cache}COMMIT\n{WORKER}");
    let mut ev = evidence(&save, ("2026-11-22T04:34:42Z", "2026-11-22T04:34:44Z"));
    let all = attempts(PROBE_REC1);
    ev.attempts = all.clone();
    ev.node_cache = Some(NodeCacheEvidence {
        pod: "kube-system/node-local-dns-x7k2p".into(),
        name: "node-local-dns-x7k2p".into(),
        before: Some(CacheCounters::default()),
        delta: Some(CacheCounters::parse(delta)),
        upstream_service: Some("10.96.200.5:53".parse().unwrap()),
        error: None,
    });
    (ev, all)
}

const CLUSTER_BLOCK: &str = "zones=\"cluster.local.\",view=\"\"}";

#[test]
fn a_node_local_cache_hit_is_read_from_its_counters() {
    let (ev, all) = node_cache_evidence(&format!(
        "coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"denial\",{CLUSTER_BLOCK} 3\n\
         coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"success\",zones=\".\",view=\"\"}} 1\n\
         coredns_dns_requests_total{{server=\"dns://10.96.0.10:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 3\n\
         coredns_dns_requests_total{{server=\"dns://10.96.0.10:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 1\n"
    ));
    for a in &all {
        let hops = assemble(a, &ev);
        assert_eq!(kinds(&hops), ["node_local", "node_cache"], "{hops:#?}");
        let Hop::NodeCache(h) = &hops[1] else {
            unreachable!()
        };
        assert_eq!(h.verdict, CacheVerdict::Hit, "{h:#?}");
        assert_eq!(h.pod, "kube-system/node-local-dns-x7k2p");
    }
    let Hop::NodeCache(h) = &assemble(&all[0], &ev)[1] else {
        unreachable!()
    };
    assert_eq!(h.zone.as_deref(), Some("cluster.local."));
    assert!(h.evidence[0].contains("+0 success +3 denial"), "{h:#?}");
    let Hop::NodeCache(h) = &assemble(&all[3], &ev)[1] else {
        unreachable!()
    };
    assert_eq!(h.zone.as_deref(), Some("."));
}

#[test]
fn the_forward_of_a_miss_just_before_the_lookup_does_not_make_it_a_miss() {
    // The same name was asked half a second before this lookup started (e.g. a trace run just
    // before): the replica's line of that miss's forward is inside the clock slack, but the
    // lookup cannot have caused it; the counters say this lookup hit the cache.
    let (mut ev, all) = node_cache_evidence(&format!(
        "coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"denial\",{CLUSTER_BLOCK} 3\n\
         coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"success\",zones=\".\",view=\"\"}} 1\n\
         coredns_dns_requests_total{{server=\"dns://10.96.0.10:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 3\n\
         coredns_dns_requests_total{{server=\"dns://10.96.0.10:53\",zone=\".\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 1\n"
    ));
    let before = "2026-11-22T04:34:41.500000000Z [INFO] 172.26.0.3:15230 - 998 \"A IN \
                  rec-1.wild.example.test.default.svc.cluster.local. tcp 80 false 65535\" NXDOMAIN \
                  qr,aa,rd 150 0.000100000s";
    ev.replicas[1].queries.push(parse_all(before).remove(0));
    let hops = assemble(&all[0], &ev);
    assert_eq!(kinds(&hops), ["node_local", "node_cache"], "{hops:#?}");
    let Hop::NodeCache(h) = &hops[1] else {
        unreachable!()
    };
    assert_eq!(h.verdict, CacheVerdict::Hit, "{h:#?}");
}

#[test]
fn a_node_local_cache_miss_goes_over_tcp_to_kube_dns_upstream_then_the_replica() {
    let (mut ev, all) = node_cache_evidence(&format!(
        "coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"denial\",{CLUSTER_BLOCK} 2\n\
         coredns_cache_misses_total{{server=\"dns://10.96.0.10:53\",{CLUSTER_BLOCK} 1\n\
         coredns_forward_requests_total{{to=\"10.96.200.5:53\"}} 1\n\
         coredns_proxy_conn_cache_hits_total{{proxy_name=\"forward\",to=\"10.96.200.5:53\",proto_type=\"tcp\"}} 1\n"
    ));
    // The replica on the worker logged the cache's TCP query from the node's address, and the
    // node's table holds that connection, DNATed to the replica.
    // kube-proxy masqueraded the node's connection to the ClusterIP as the bridge's address
    // (the replica is on the same node): the flow's reply direction says so.
    let line = "2026-11-22T04:34:43.100000000Z [INFO] 10.244.2.1:15230 - 999 \"A IN \
                rec-1.wild.example.test.default.svc.cluster.local. tcp 80 false 65535\" NXDOMAIN \
                qr,aa,rd 150 0.000100000s";
    ev.replicas[1].queries.push(parse_all(line).remove(0));
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack = conntrack::parse(
        "ipv4     2 tcp      6 431999 ESTABLISHED src=172.26.0.3 dst=10.96.200.5 sport=41234 dport=53 \
         src=10.244.2.3 dst=10.244.2.1 sport=53 dport=15230 [ASSURED] mark=0 zone=0 use=2\n\
         ipv4     2 tcp      6 431990 ESTABLISHED src=172.26.0.3 dst=10.96.200.5 sport=41000 dport=53 \
         src=10.244.1.2 dst=172.26.0.3 sport=53 dport=41000 [ASSURED] mark=0 zone=0 use=2\n",
    );
    let hops = assemble(&all[0], &ev);
    assert_eq!(
        kinds(&hops),
        [
            "node_local",
            "node_cache",
            "node_cache_forward",
            "cluster_dns"
        ],
        "{hops:#?}"
    );
    let Hop::NodeCache(c) = &hops[1] else {
        unreachable!()
    };
    assert_eq!(c.verdict, CacheVerdict::Miss);
    assert!(c.evidence[0].contains("coredns-gzpjqvjrtz-f2mv5"), "{c:#?}");
    let Hop::NodeCacheForward(f) = &hops[2] else {
        unreachable!()
    };
    assert_eq!(f.proto, "tcp");
    assert_eq!(f.to, "10.96.200.5:53".parse().unwrap());
    assert_eq!(f.connection.as_deref(), Some("pooled"));
    // The logged source port picks the connection: the endpoint on the worker, not the other.
    assert_eq!(f.endpoint, Some("10.244.2.3:53".parse().unwrap()));
    assert_eq!(f.flows, 1);
    assert_eq!(
        cluster_dns(&hops).pod,
        "kube-system/coredns-gzpjqvjrtz-f2mv5"
    );
    assert_eq!(cluster_dns(&hops).answered, Answered::OwnZone);
    // The other two cluster.local attempts: one miss proven by the log, one counted: the
    // block's two hits are theirs.
    for a in &all[1..3] {
        let hops = assemble(a, &ev);
        let Hop::NodeCache(c) = &hops[1] else {
            unreachable!()
        };
        assert_eq!(c.verdict, CacheVerdict::Hit, "{hops:#?}");
    }
    // Without the log line the pool's flows are all that is known: the newest is shown, and
    // the counters alone cannot say which of three attempts missed.
    ev.replicas[1].queries.pop();
    let hops = assemble(&all[0], &ev);
    assert_eq!(
        kinds(&hops),
        ["node_local", "node_cache", "stop"],
        "{hops:#?}"
    );
    let Hop::NodeCache(c) = &hops[1] else {
        unreachable!()
    };
    assert_eq!(c.verdict, CacheVerdict::Unknown);
    assert!(
        c.evidence
            .last()
            .unwrap()
            .contains("2 denial hit(s) and 1 miss(es) for 3 attempt(s)"),
        "{c:#?}"
    );
}

#[test]
fn a_node_local_rule_without_a_cache_pod_is_a_black_hole() {
    let (mut ev, all) = node_cache_evidence("");
    ev.node_cache = None;
    let hops = assemble(&all[0], &ev);
    assert_eq!(kinds(&hops), ["node_local", "stop"]);
    let Hop::Stop(s) = &hops[1] else {
        unreachable!()
    };
    assert!(s.reason.contains("no node-local-dns pod"), "{s:?}");
}

#[test]
fn the_answers_kind_tells_a_hit_from_a_miss_without_any_log() {
    // `kubernetes.default` from a pod: the first search candidate is new to the cache (a
    // denial), the second was cached (a success). No replica logs; the cache dialled a new
    // TCP connection to kube-dns-upstream, which the node's table shows DNATed to 10.244.1.2.
    let (mut ev, _) = node_cache_evidence(&format!(
        "coredns_cache_hits_total{{server=\"dns://10.96.0.10:53\",type=\"success\",{CLUSTER_BLOCK} 1\n\
         coredns_cache_misses_total{{server=\"dns://10.96.0.10:53\",{CLUSTER_BLOCK} 1\n\
         coredns_dns_requests_total{{server=\"dns://10.96.0.10:53\",zone=\"cluster.local.\",view=\"\",proto=\"udp\",family=\"1\",type=\"A\"}} 2\n\
         coredns_forward_requests_total{{to=\"10.96.200.5:53\"}} 1\n\
         coredns_proxy_conn_cache_misses_total{{proxy_name=\"forward\",to=\"10.96.200.5:53\",proto_type=\"tcp\"}} 1\n"
    ));
    let probe = ";; attempt 1: kubernetes.default.default.svc.cluster.local. A to 10.96.0.10#53 (UDP) from 10.244.2.2#51858 id 26459: NXDOMAIN, 0 answers, 4.103 ms
;; attempt 2: kubernetes.default.svc.cluster.local. A to 10.96.0.10#53 (UDP) from 10.244.2.2#50717 id 11163: NOERROR, 1 answer, 0.630 ms
";
    let all = attempts(probe);
    assert_eq!(all.len(), 2);
    ev.attempts = all.clone();
    ev.corefile_logs = Some(false);
    for r in &mut ev.replicas {
        r.queries.clear();
    }
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack = conntrack::parse(
        "ipv4     2 tcp      6 431999 ESTABLISHED src=172.26.0.3 dst=10.96.200.5 sport=41000 dport=53 \
         src=10.244.1.2 dst=172.26.0.3 sport=53 dport=41000 [ASSURED] mark=0 zone=0 use=2\n",
    );
    let miss = assemble(&all[0], &ev);
    assert_eq!(
        kinds(&miss),
        [
            "node_local",
            "node_cache",
            "node_cache_forward",
            "replica",
            "stop"
        ],
        "{miss:#?}"
    );
    let Hop::NodeCacheForward(f) = &miss[2] else {
        unreachable!()
    };
    assert_eq!(f.connection.as_deref(), Some("dialled"));
    assert_eq!(f.endpoint, Some("10.244.1.2:53".parse().unwrap()));
    let Hop::Replica(r) = &miss[3] else {
        unreachable!()
    };
    assert_eq!(r.pod, "kube-system/coredns-gzpjqvjrtz-5hvmv");
    let hit = assemble(&all[1], &ev);
    assert_eq!(kinds(&hit), ["node_local", "node_cache"], "{hit:#?}");
    // The text names both.
    let text: String = [&miss, &hit]
        .iter()
        .flat_map(|h| h.iter().map(crate::dns::trace::render::hop_lines))
        .map(|(label, summary, ev)| format!("{label}: {summary}\n{}\n", ev.join("\n")))
        .collect();
    assert!(text.contains("cache miss, forwarded"), "{text}");
    assert!(text.contains("cache hit, answered on the node"), "{text}");
    assert!(
        text.contains(
            "172.26.0.3 → 10.96.200.5:53 over TCP (dialled connection), DNAT → 10.244.1.2:53"
        ),
        "{text}"
    );
    // Two pooled connections to two endpoints and no log: the endpoint is not guessed.
    ev.nodes.get_mut("trc1-worker").unwrap().conntrack = conntrack::parse(
        "ipv4     2 tcp      6 431999 ESTABLISHED src=172.26.0.3 dst=10.96.200.5 sport=41000 dport=53 \
         src=10.244.1.2 dst=172.26.0.3 sport=53 dport=41000 [ASSURED] mark=0 zone=0 use=2\n\
         ipv4     2 tcp      6 431998 ESTABLISHED src=172.26.0.3 dst=10.96.200.5 sport=41001 dport=53 \
         src=10.244.2.3 dst=172.26.0.3 sport=53 dport=41001 [ASSURED] mark=0 zone=0 use=2\n",
    );
    let miss = assemble(&all[0], &ev);
    assert_eq!(
        kinds(&miss),
        ["node_local", "node_cache", "node_cache_forward", "stop"],
        "{miss:#?}"
    );
    let Hop::NodeCacheForward(f) = &miss[2] else {
        unreachable!()
    };
    assert_eq!((f.endpoint, f.flows), (None, 2));
    assert!(
        f.evidence
            .last()
            .unwrap()
            .contains("2 pooled connections, to 10.244.1.2:53, 10.244.2.3:53"),
        "{f:#?}"
    );
}

#[test]
fn a_miss_of_the_root_block_goes_to_the_nodes_resolv_conf_and_on_to_the_upstream() {
    // rec-1.wild.example.test. is in the cache's `.` block, which forwards to the node's
    // resolv.conf (the magic's host IP) over the client's transport: Docker's rules, the
    // embedded resolver, the lab upstream's line from the node's address.
    let (ev, all) = node_cache_evidence(
        "coredns_cache_misses_total{server=\"dns://10.96.0.10:53\",zones=\".\",view=\"\"} 1\n\
         coredns_cache_hits_total{server=\"dns://10.96.0.10:53\",type=\"denial\",zones=\"cluster.local.\",view=\"\"} 3\n\
         coredns_forward_requests_total{to=\"172.26.0.1:53\"} 1\n\
         coredns_proxy_conn_cache_misses_total{proxy_name=\"forward\",to=\"172.26.0.1:53\",proto_type=\"udp\"} 1\n",
    );
    let hops = assemble(&all[3], &ev);
    assert_eq!(
        kinds(&hops),
        [
            "node_local",
            "node_cache",
            "node_cache_forward",
            "embedded_resolver",
            "upstream"
        ],
        "{hops:#?}"
    );
    let Hop::NodeCacheForward(f) = &hops[2] else {
        unreachable!()
    };
    assert_eq!(
        (f.to, f.proto.as_str(), f.connection.as_deref()),
        ("172.26.0.1:53".parse().unwrap(), "udp", Some("dialled"))
    );
    let Hop::EmbeddedResolver(e) = &hops[3] else {
        unreachable!()
    };
    assert_eq!(e.listen, Some("127.0.0.11:51869".parse().unwrap()));
    let Hop::Upstream(u) = &hops[4] else {
        unreachable!()
    };
    assert_eq!(u.client, "172.26.0.3:48478".parse().unwrap());
}
