//! The wire fast path gives byte for byte what the general path gives for the same packet: from
//! the cache (hits), and from the `kubernetes` answers it keeps until the data changes.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use minikind_cluster_dns::fastpath;
use minikind_cluster_dns::packet::prepare;
use minikind_cluster_dns::plugins::kubernetes::Change;
use minikind_cluster_dns::query::{Step, prepare_decoded};
use minikind_cluster_dns::run::{Config, Options};
use minikind_cluster_dns::zones::ZoneTable;
use minikind_dns_log::Proto;
use serde_json::json;

fn objects(web_ip: &str) -> Vec<Change> {
    let from = |v: serde_json::Value| v;
    let mut eps = Vec::new();
    for i in 1..=60 {
        eps.push(json!({"addresses":[format!("10.244.7.{i}")]}));
    }
    vec![
        Change::Namespace(serde_json::from_value(from(json!({"metadata":{"name":"default"}}))).unwrap()),
        Change::Service(
            serde_json::from_value(json!({"metadata":{"name":"web","namespace":"default"},
                "spec":{"clusterIP":web_ip,"clusterIPs":[web_ip],"ports":[{"name":"http","port":80,"protocol":"TCP"}]}}))
            .unwrap(),
        ),
        Change::Service(
            serde_json::from_value(json!({"metadata":{"name":"db","namespace":"default"},
                "spec":{"clusterIP":"None","ports":[{"name":"sql","port":5432}]}}))
            .unwrap(),
        ),
        Change::Slice(
            serde_json::from_value(json!({"metadata":{"name":"db-1","namespace":"default","labels":{"kubernetes.io/service-name":"db"}},
                "addressType":"IPv4","endpoints":[{"addresses":["10.244.1.5"],"hostname":"db-0"},{"addresses":["10.244.1.6"]}],
                "ports":[{"name":"sql","port":5432,"protocol":"TCP"}]}))
            .unwrap(),
        ),
        Change::Service(
            serde_json::from_value(json!({"metadata":{"name":"big","namespace":"default"},
                "spec":{"clusterIP":"None"}}))
            .unwrap(),
        ),
        Change::Slice(
            serde_json::from_value(json!({"metadata":{"name":"big-1","namespace":"default","labels":{"kubernetes.io/service-name":"big"}},
                "addressType":"IPv4","endpoints":eps}))
            .unwrap(),
        ),
        Change::Service(
            serde_json::from_value(json!({"metadata":{"name":"ext","namespace":"default"},
                "spec":{"type":"ExternalName","externalName":"example.org"}}))
            .unwrap(),
        ),
    ]
}

fn build(corefile: &str) -> (Config, Arc<ZoneTable>) {
    let cf = minikind_cluster_dns::corefile::parse_str(corefile, "Corefile", None, &|_| None)
        .expect("corefile");
    let opts = Options {
        banner: false,
        ..Default::default()
    };
    let config = Config::build(&cf, corefile.to_string(), &opts).expect("config");
    for b in &config.blocks {
        if let Some(k) = &b.kubernetes {
            for c in objects("10.96.0.50") {
                k.apply(c);
            }
            k.mark_synced();
        }
    }
    let t = config.tables.values().next().expect("a listener").clone();
    (config, t)
}

fn packet(name: &str, qtype: RecordType, edns: Option<(u16, bool)>, id: u16) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some((size, d)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_dnssec_ok(d);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

const QUERIES: &[(&str, RecordType)] = &[
    ("web.default.svc.cluster.local.", RecordType::A),
    ("WeB.DeFault.svc.Cluster.local.", RecordType::A),
    ("web.default.svc.cluster.local.", RecordType::AAAA),
    ("web.default.svc.cluster.local.", RecordType::TXT),
    ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
    ("db.default.svc.cluster.local.", RecordType::A),
    ("db.default.svc.cluster.local.", RecordType::SRV),
    ("db-0.db.default.svc.cluster.local.", RecordType::A),
    ("big.default.svc.cluster.local.", RecordType::A),
    ("nosuch.default.svc.cluster.local.", RecordType::A),
    ("nosuch.cluster.local.", RecordType::A),
    ("cluster.local.", RecordType::SOA),
    ("dns-version.cluster.local.", RecordType::TXT),
    ("50.0.96.10.in-addr.arpa.", RecordType::PTR),
    ("10-244-1-5.default.pod.cluster.local.", RecordType::A),
];

const EDNS: &[Option<(u16, bool)>] = &[
    None,
    Some((1232, false)),
    Some((4096, true)),
    Some((512, false)),
];

fn done(s: Step) -> Option<Vec<u8>> {
    match s {
        Step::Done(v) => Some(v),
        _ => None,
    }
}

fn addrs() -> (SocketAddr, SocketAddr) {
    (
        "127.0.0.1:5300".parse().unwrap(),
        "127.0.0.1:53".parse().unwrap(),
    )
}

/// Without a cache: the kept `kubernetes` answers, copied for each asker, equal a fresh answer
/// from the general path, over UDP (with truncation) and TCP.
#[test]
fn kept_kubernetes_answers_equal_the_general_path() {
    let (_c, t) = build(
        ".:53 {\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods insecure\n }\n}\n",
    );
    let (client, local) = addrs();
    let mut id = 1;
    for proto in [Proto::Udp, Proto::Tcp] {
        for (name, qtype) in QUERIES {
            for edns in EDNS {
                id += 1;
                let p = packet(name, *qtype, *edns, id);
                let general = done(prepare_decoded(&t, &p, client, local, proto, true))
                    .unwrap_or_else(|| panic!("{name} {qtype:?}: an answer"));
                // Another id and the same question: now from the kept answer.
                id += 1;
                let p = packet(name, *qtype, *edns, id);
                let fast = fastpath::serve(&t, &p, client, local, proto)
                    .and_then(done)
                    .unwrap_or_else(|| panic!("{name} {qtype:?} {edns:?}: served from the wire"));
                let again = done(prepare_decoded(&t, &p, client, local, proto, true)).unwrap();
                assert_eq!(fast, again, "{name} {qtype:?} {edns:?} {proto:?}");
                assert_eq!(&general[2..], &again[2..], "stable answers");
            }
        }
    }
    // A CNAME to chase is never kept: the general path finishes it.
    let p = packet("ext.default.svc.cluster.local.", RecordType::A, None, 9);
    assert!(matches!(
        prepare(&t, &p, client, local, Proto::Udp),
        Step::Later(_)
    ));
    assert!(fastpath::serve(&t, &p, client, local, Proto::Udp).is_none());
}

/// With a cache: a hit served from the wire equals a hit served by the general path (TTLs count
/// down, so they may differ by the second that passed), and a name the cache evicted is answered
/// from the kept answer and cached again.
#[test]
fn cache_hits_equal_the_general_path() {
    let (_c, t) = build(
        ".:53 {\n cache 30 {\n  success 64\n  denial 64\n }\n prometheus :9153\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods insecure\n }\n}\n",
    );
    let (client, local) = addrs();
    let mut id = 100;
    for proto in [Proto::Udp, Proto::Tcp] {
        for (name, qtype) in QUERIES {
            for edns in EDNS {
                id += 1;
                let p = packet(name, *qtype, *edns, id);
                done(prepare(&t, &p, client, local, proto)).expect("first answer");
                let general = done(prepare_decoded(&t, &p, client, local, proto, true)).unwrap();
                let fast = fastpath::serve(&t, &p, client, local, proto)
                    .and_then(done)
                    .unwrap_or_else(|| panic!("{name} {qtype:?}: a hit from the wire"));
                if fast != general {
                    let (mut f, mut g) = (
                        Message::from_vec(&fast).unwrap(),
                        Message::from_vec(&general).unwrap(),
                    );
                    for r in f.answers.iter_mut().chain(g.answers.iter_mut()) {
                        assert!(r.ttl <= 30);
                        r.ttl = 0;
                    }
                    for r in f.authorities.iter_mut().chain(g.authorities.iter_mut()) {
                        r.ttl = 0;
                    }
                    assert_eq!(f, g, "{name} {qtype:?} {edns:?} {proto:?}");
                }
            }
        }
    }
    // 64 entries for 4 × 15 × 2 questions: many were evicted, and come back from the kept
    // answers (the fast path answers every one of them).
    for (name, qtype) in QUERIES {
        id += 1;
        let p = packet(name, *qtype, None, id);
        assert!(
            fastpath::serve(&t, &p, client, local, Proto::Udp).is_some(),
            "{name} {qtype:?}"
        );
    }
}

/// A change to the data retires every kept answer at once.
#[test]
fn a_change_retires_kept_answers() {
    let (c, t) = build(".:53 {\n kubernetes cluster.local {\n }\n}\n");
    let (client, local) = addrs();
    let p = packet("web.default.svc.cluster.local.", RecordType::A, None, 1);
    done(prepare(&t, &p, client, local, Proto::Udp)).unwrap();
    assert!(fastpath::serve(&t, &p, client, local, Proto::Udp).is_some());
    let k = c.blocks[0].kubernetes.as_ref().unwrap();
    for change in objects("10.96.0.51") {
        k.apply(change);
    }
    assert!(
        fastpath::serve(&t, &p, client, local, Proto::Udp).is_none(),
        "the old answer is gone"
    );
    let out = done(prepare(&t, &p, client, local, Proto::Udp)).unwrap();
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.answers[0].data.to_string(), "10.96.0.51");
    let out = fastpath::serve(&t, &p, client, local, Proto::Udp)
        .and_then(done)
        .expect("kept again");
    let m = Message::from_vec(&out).unwrap();
    assert_eq!(m.answers[0].data.to_string(), "10.96.0.51");
}

/// Random damage to real queries: whenever the fast path answers, the general path gives the
/// same bytes (the stable-toolchain companion of the `packet` fuzz target's differential check).
#[test]
fn damaged_packets_answer_alike() {
    use rand::{Rng, SeedableRng};
    let (_c, t) = build(
        ".:53 {\n kubernetes cluster.local in-addr.arpa ip6.arpa {\n  pods insecure\n }\n}\n",
    );
    let (client, local) = addrs();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut fast_answers = 0;
    for round in 0..40_000u32 {
        let (name, qtype) = QUERIES[round as usize % QUERIES.len()];
        let edns = EDNS[(round as usize / QUERIES.len()) % EDNS.len()];
        let mut p = packet(name, qtype, edns, round as u16);
        for _ in 0..rng.random_range(0..3) {
            let at = rng.random_range(0..p.len());
            p[at] = rng.random();
        }
        for proto in [Proto::Udp, Proto::Tcp] {
            let general = prepare_decoded(&t, &p, client, local, proto, true);
            if let Some(Step::Done(fast)) = fastpath::serve(&t, &p, client, local, proto) {
                fast_answers += 1;
                match general {
                    Step::Done(g) => assert_eq!(fast, g, "{p:?}"),
                    _ => panic!("only the fast path answered {p:?}"),
                }
            }
        }
    }
    assert!(fast_answers > 10_000, "{fast_answers}");
}
