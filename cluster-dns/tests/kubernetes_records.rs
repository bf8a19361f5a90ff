//! Every record rule of the Kubernetes DNS specification, as CoreDNS's `kubernetes` plugin
//! answers it, checked over UDP and TCP against a server whose data comes from a fake API
//! server through the real watchers.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use support::dns::*;
use support::fake_api::*;

async fn fixtures(api: &FakeApi) {
    for ns in ["default", "kube-system", "other"] {
        api.put(NAMESPACES, namespace(ns));
    }
    api.put(
        SERVICES,
        service(
            "default",
            "web",
            &["10.96.0.50"],
            &[("http", 80, "TCP"), ("https", 443, "TCP")],
        ),
    );
    api.put(
        SLICES,
        slice(
            "default",
            "web-1",
            "web",
            "IPv4",
            &[Ep("10.244.1.10", Some(true), None, Some("web-a"))],
            &[("http", 8080, "TCP"), ("https", 8443, "TCP")],
        ),
    );
    api.put(
        SERVICES,
        service("default", "plain", &["10.96.0.51"], &[("", 8080, "TCP")]),
    );
    api.put(
        SERVICES,
        service(
            "default",
            "dual",
            &["10.96.0.52", "fd00::52"],
            &[("http", 80, "TCP")],
        ),
    );
    api.put(
        SERVICES,
        service("default", "db", &[], &[("mysql", 3306, "TCP")]),
    );
    api.put(
        SLICES,
        slice(
            "default",
            "db-abc",
            "db",
            "IPv4",
            &[
                Ep("10.244.1.5", Some(true), Some("db-0"), Some("db-0")),
                Ep("10.244.2.6", None, None, Some("db-1")),
                Ep("10.244.3.7", Some(false), None, Some("db-2")),
            ],
            &[("mysql", 3306, "TCP")],
        ),
    );
    // The same endpoint in a second slice (as during a slice migration): de-duplicated.
    api.put(
        SLICES,
        slice(
            "default",
            "db-xyz",
            "db",
            "IPv4",
            &[Ep("10.244.1.5", Some(true), Some("db-0"), Some("db-0"))],
            &[("mysql", 3306, "TCP")],
        ),
    );
    api.put(
        SERVICES,
        service("default", "empty", &[], &[("http", 80, "TCP")]),
    );
    api.put(
        SLICES,
        slice(
            "default",
            "empty-1",
            "empty",
            "IPv4",
            &[Ep("10.244.9.9", Some(false), None, None)],
            &[("http", 80, "TCP")],
        ),
    );
    api.put(SERVICES, service("default", "noports", &[], &[]));
    api.put(
        SLICES,
        slice(
            "default",
            "noports-1",
            "noports",
            "IPv4",
            &[Ep("10.244.4.4", Some(true), None, None)],
            &[],
        ),
    );
    api.put(
        SERVICES,
        service("default", "v6db", &[], &[("pg", 5432, "TCP")]),
    );
    api.put(
        SLICES,
        slice(
            "default",
            "v6db-1",
            "v6db",
            "IPv6",
            &[Ep("fd00::10:5", Some(true), None, None)],
            &[("pg", 5432, "TCP")],
        ),
    );
    api.put(
        SERVICES,
        external_service("default", "ext", "target.example.org"),
    );
    // ExternalName targets whose upstream answers go through a CNAME, and one inside the zone.
    api.put(
        SERVICES,
        external_service("default", "chained", "chain.example.org"),
    );
    api.put(
        SERVICES,
        external_service("default", "alias", "dual.default.svc.cluster.local"),
    );
    api.put(
        SERVICES,
        service(
            "kube-system",
            "kube-dns",
            &["10.96.0.10"],
            &[
                ("dns", 53, "UDP"),
                ("dns-tcp", 53, "TCP"),
                ("metrics", 9153, "TCP"),
            ],
        ),
    );
    api.put(
        SLICES,
        slice(
            "kube-system",
            "kube-dns-1",
            "kube-dns",
            "IPv4",
            &[
                Ep("10.244.0.3", Some(true), None, None),
                Ep("10.244.0.4", Some(true), None, None),
            ],
            &[
                ("dns", 53, "UDP"),
                ("dns-tcp", 53, "TCP"),
                ("metrics", 9153, "TCP"),
            ],
        ),
    );
    // A service in a namespace that does not exist: not exposed.
    api.put(
        SERVICES,
        service("ghost", "svc", &["10.96.0.99"], &[("http", 80, "TCP")]),
    );
}

struct Case {
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &'static [&'static str],
    /// Expect the SOA in the authority section (negative answers from the plugin).
    soa: bool,
    additional: &'static [&'static str],
}

const fn c(
    name: &'static str,
    qtype: RecordType,
    rcode: ResponseCode,
    answers: &'static [&'static str],
    soa: bool,
) -> Case {
    Case {
        name,
        qtype,
        rcode,
        answers,
        soa,
        additional: &[],
    }
}

use RecordType::*;
use ResponseCode::{NXDomain, NoError};

const CASES: &[Case] = &[
    // ClusterIP services by family.
    c(
        "web.default.svc.cluster.local.",
        A,
        NoError,
        &["web.default.svc.cluster.local. A 10.96.0.50"],
        false,
    ),
    c("web.default.svc.cluster.local.", AAAA, NoError, &[], true),
    c(
        "dual.default.svc.cluster.local.",
        AAAA,
        NoError,
        &["dual.default.svc.cluster.local. AAAA fd00::52"],
        false,
    ),
    c(
        "dual.default.svc.cluster.local.",
        A,
        NoError,
        &["dual.default.svc.cluster.local. A 10.96.0.52"],
        false,
    ),
    // SRV for named ports, priority 0, weight 100/N, address in the additional section.
    Case {
        name: "_http._tcp.web.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &[
            "_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local.",
        ],
        soa: false,
        additional: &["web.default.svc.cluster.local. A 10.96.0.50"],
    },
    Case {
        name: "web.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &[
            "web.default.svc.cluster.local. SRV 0 50 443 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. SRV 0 50 80 web.default.svc.cluster.local.",
        ],
        soa: false,
        additional: &["web.default.svc.cluster.local. A 10.96.0.50"],
    },
    c(
        "_http._udp.web.default.svc.cluster.local.",
        SRV,
        NXDomain,
        &[],
        true,
    ),
    c(
        "_nope._tcp.web.default.svc.cluster.local.",
        SRV,
        NXDomain,
        &[],
        true,
    ),
    c(
        "_dns._udp.kube-dns.kube-system.svc.cluster.local.",
        SRV,
        NoError,
        &[
            "_dns._udp.kube-dns.kube-system.svc.cluster.local. SRV 0 100 53 kube-dns.kube-system.svc.cluster.local.",
        ],
        false,
    ),
    // An unnamed port: A works, the service's SRV still lists it (CoreDNS matches any port).
    c(
        "plain.default.svc.cluster.local.",
        A,
        NoError,
        &["plain.default.svc.cluster.local. A 10.96.0.51"],
        false,
    ),
    // PTR for cluster IPs and endpoint IPs.
    c(
        "50.0.96.10.in-addr.arpa.",
        PTR,
        NoError,
        &["50.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."],
        false,
    ),
    c(
        "2.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
        PTR,
        NoError,
        &[
            "2.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. PTR dual.default.svc.cluster.local.",
        ],
        false,
    ),
    c(
        "5.1.244.10.in-addr.arpa.",
        PTR,
        NoError,
        &["5.1.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."],
        false,
    ),
    c(
        "6.2.244.10.in-addr.arpa.",
        PTR,
        NoError,
        &["6.2.244.10.in-addr.arpa. PTR 10-244-2-6.db.default.svc.cluster.local."],
        false,
    ),
    // Unknown reverse name: fallthrough to forward (the upstream says NXDOMAIN, no SOA).
    c("9.9.9.10.in-addr.arpa.", PTR, NXDomain, &[], false),
    // Headless: ready endpoints only; none ready → NXDOMAIN.
    c(
        "db.default.svc.cluster.local.",
        A,
        NoError,
        &[
            "db.default.svc.cluster.local. A 10.244.1.5",
            "db.default.svc.cluster.local. A 10.244.2.6",
        ],
        false,
    ),
    c("db.default.svc.cluster.local.", AAAA, NoError, &[], true),
    c(
        "db-0.db.default.svc.cluster.local.",
        A,
        NoError,
        &["db-0.db.default.svc.cluster.local. A 10.244.1.5"],
        false,
    ),
    c(
        "10-244-2-6.db.default.svc.cluster.local.",
        A,
        NoError,
        &["10-244-2-6.db.default.svc.cluster.local. A 10.244.2.6"],
        false,
    ),
    c(
        "10-244-3-7.db.default.svc.cluster.local.",
        A,
        NXDomain,
        &[],
        true,
    ),
    c("db-2.db.default.svc.cluster.local.", A, NXDomain, &[], true),
    Case {
        name: "_mysql._tcp.db.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &[
            "_mysql._tcp.db.default.svc.cluster.local. SRV 0 50 3306 10-244-2-6.db.default.svc.cluster.local.",
            "_mysql._tcp.db.default.svc.cluster.local. SRV 0 50 3306 db-0.db.default.svc.cluster.local.",
        ],
        soa: false,
        additional: &[
            "10-244-2-6.db.default.svc.cluster.local. A 10.244.2.6",
            "db-0.db.default.svc.cluster.local. A 10.244.1.5",
        ],
    },
    c("empty.default.svc.cluster.local.", A, NXDomain, &[], true),
    c(
        "noports.default.svc.cluster.local.",
        A,
        NoError,
        &["noports.default.svc.cluster.local. A 10.244.4.4"],
        false,
    ),
    c(
        "noports.default.svc.cluster.local.",
        SRV,
        NoError,
        &[],
        true,
    ),
    c(
        "v6db.default.svc.cluster.local.",
        AAAA,
        NoError,
        &["v6db.default.svc.cluster.local. AAAA fd00::10:5"],
        false,
    ),
    c(
        "fd00--10-5.v6db.default.svc.cluster.local.",
        AAAA,
        NoError,
        &["fd00--10-5.v6db.default.svc.cluster.local. AAAA fd00::10:5"],
        false,
    ),
    // ExternalName: CNAME, and for A the target chased through forward.
    c(
        "ext.default.svc.cluster.local.",
        CNAME,
        NoError,
        &["ext.default.svc.cluster.local. CNAME target.example.org."],
        false,
    ),
    c(
        "ext.default.svc.cluster.local.",
        A,
        NoError,
        &[
            "ext.default.svc.cluster.local. CNAME target.example.org.",
            "target.example.org. A 192.0.2.10",
        ],
        false,
    ),
    c(
        "web-0.ext.default.svc.cluster.local.",
        A,
        NXDomain,
        &[],
        true,
    ),
    // ExternalName SRV, as CoreDNS's plugin answers it: port 0, weight 100, and in the
    // additional section the target's A answers then its AAAA answers (without their CNAMEs),
    // both looked up through the rest of the chain.
    Case {
        name: "ext.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &["ext.default.svc.cluster.local. SRV 0 100 0 target.example.org."],
        soa: false,
        additional: &["target.example.org. A 192.0.2.10"],
    },
    Case {
        name: "chained.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &["chained.default.svc.cluster.local. SRV 0 100 0 chain.example.org."],
        soa: false,
        additional: &[
            "chain.example.org. CNAME real.example.org.",
            "real.example.org. A 192.0.2.11",
            "real.example.org. AAAA 2001:db8::11",
        ],
    },
    // A target inside the zone: its A records from the plugin only (no AAAA, as CoreDNS).
    Case {
        name: "alias.default.svc.cluster.local.",
        qtype: SRV,
        rcode: NoError,
        answers: &["alias.default.svc.cluster.local. SRV 0 100 0 dual.default.svc.cluster.local."],
        soa: false,
        additional: &["dual.default.svc.cluster.local. A 10.96.0.52"],
    },
    // No ports by name on an ExternalName service.
    c(
        "_http._tcp.ext.default.svc.cluster.local.",
        SRV,
        NXDomain,
        &[],
        true,
    ),
    c(
        "_http._tcp.ext.default.svc.cluster.local.",
        A,
        NXDomain,
        &[],
        true,
    ),
    // dns-version.
    c(
        "dns-version.cluster.local.",
        TXT,
        NoError,
        &["dns-version.cluster.local. TXT 1.1.0"],
        false,
    ),
    // NODATA for the apex, svc, pod and an existing namespace; NXDOMAIN otherwise.
    c("cluster.local.", A, NoError, &[], true),
    c("svc.cluster.local.", A, NoError, &[], true),
    c("pod.cluster.local.", A, NoError, &[], true),
    c("default.svc.cluster.local.", A, NoError, &[], true),
    c("nonexistent.svc.cluster.local.", A, NXDomain, &[], true),
    c("nosuch.default.svc.cluster.local.", A, NXDomain, &[], true),
    c("svc.ghost.svc.cluster.local.", A, NXDomain, &[], true),
    c("foo.cluster.local.", A, NXDomain, &[], true),
    c(
        "a.b.c.web.default.svc.cluster.local.",
        A,
        NXDomain,
        &[],
        true,
    ),
    c("web.default.svc.cluster.local.", MX, NoError, &[], true),
    c("web.default.svc.cluster.local.", TXT, NoError, &[], true),
    c("nosuch.default.svc.cluster.local.", MX, NXDomain, &[], true),
    // Pods (insecure).
    c(
        "10-244-1-5.default.pod.cluster.local.",
        A,
        NoError,
        &["10-244-1-5.default.pod.cluster.local. A 10.244.1.5"],
        false,
    ),
    c("10-244-1-5.nons.pod.cluster.local.", A, NXDomain, &[], true),
    c("garbage.default.pod.cluster.local.", A, NXDomain, &[], true),
    c("default.pod.cluster.local.", A, NoError, &[], true),
    // The apex SOA and NS.
    c(
        "cluster.local.",
        NS,
        NoError,
        &["cluster.local. NS ns.dns.cluster.local."],
        false,
    ),
];

async fn start_main() -> (
    FakeApi,
    FakeUpstream,
    SocketAddr,
    std::sync::Arc<minikind_cluster_dns::Instance>,
) {
    let api = FakeApi::start().await;
    fixtures(&api).await;
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let port = free_port();
    let corefile = format!(
        ".:{port} {{\n bind 127.0.0.1\n kubernetes cluster.local in-addr.arpa ip6.arpa {{\n  endpoint {}\n  pods insecure\n  fallthrough in-addr.arpa ip6.arpa\n }}\n forward . {}\n}}\n",
        api.url(),
        up.addr
    );
    let (inst, _) = start_server(&corefile).await;
    (api, up, SocketAddr::from(([127, 0, 0, 1], port)), inst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_rule_over_udp_and_tcp() {
    let (_api, _up, server, _inst) = start_main().await;
    let mut failures = Vec::new();
    for tcp in [false, true] {
        for case in CASES {
            let m = q(server, case.name, case.qtype, tcp).await;
            let got = rrs(&m.answers);
            let mut want: Vec<String> = case.answers.iter().map(|s| s.to_string()).collect();
            want.sort();
            let soa = m
                .authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA);
            let extra = rrs(&m.additionals);
            let mut want_extra: Vec<String> =
                case.additional.iter().map(|s| s.to_string()).collect();
            want_extra.sort();
            if m.metadata.response_code != case.rcode
                || got != want
                || soa != case.soa
                || (!case.additional.is_empty() && extra != want_extra)
            {
                failures.push(format!(
                    "{} {:?} tcp={tcp}: got {:?} {:?} soa={soa} extra={:?}; want {:?} {:?} soa={} extra={:?}",
                    case.name, case.qtype, m.metadata.response_code, got, extra, case.rcode, want, case.soa, want_extra
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_flags_ttl_soa_and_case() {
    let (_api, _up, server, _inst) = start_main().await;
    let m = q(
        server,
        "WeB.DeFault.SVC.cluster.LOCAL.",
        RecordType::A,
        false,
    )
    .await;
    assert!(m.metadata.authoritative, "AA set");
    assert!(!m.metadata.recursion_available, "RA not set");
    assert_eq!(
        m.answers[0].name.to_ascii(),
        "WeB.DeFault.SVC.cluster.LOCAL."
    );
    assert_eq!(
        m.queries[0].name.to_ascii(),
        "WeB.DeFault.SVC.cluster.LOCAL."
    );
    assert_eq!(m.answers[0].ttl, 5, "default ttl");

    let m = q(
        server,
        "nosuch.default.svc.cluster.local.",
        RecordType::A,
        false,
    )
    .await;
    let soa = &m.authorities[0];
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(soa.ttl, 5);
    let RData::SOA(s) = &soa.data else {
        panic!("not an SOA: {soa:?}")
    };
    assert_eq!(s.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(s.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!(
        (s.refresh, s.retry, s.expire, s.minimum),
        (7200, 1800, 86400, 5)
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(
        s.serial <= now && s.serial + 600 > now,
        "serial {} is the time of the last change",
        s.serial
    );

    let m = q(server, "dns-version.cluster.local.", RecordType::TXT, false).await;
    assert_eq!(m.answers[0].ttl, 28800);
    let m = q(server, "cluster.local.", RecordType::SOA, true).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_change_answers() {
    let (api, _up, server, _inst) = start_main().await;
    let name = "late.default.svc.cluster.local.";
    assert_eq!(
        q(server, name, RecordType::A, false)
            .await
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
    api.put(
        SERVICES,
        service("default", "late", &["10.96.0.77"], &[("http", 80, "TCP")]),
    );
    let mut ok = false;
    for _ in 0..100 {
        let m = q(server, name, RecordType::A, false).await;
        if rrs(&m.answers) == vec![format!("{name} A 10.96.0.77")] {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "ADDED service visible");
    api.put(
        SERVICES,
        service("default", "late", &["10.96.0.78"], &[("http", 80, "TCP")]),
    );
    api.delete(SERVICES, "default", "web");
    let mut ok = false;
    for _ in 0..100 {
        let a = q(server, name, RecordType::A, false).await;
        let w = q(
            server,
            "web.default.svc.cluster.local.",
            RecordType::A,
            false,
        )
        .await;
        if rrs(&a.answers) == vec![format!("{name} A 10.96.0.78")]
            && w.metadata.response_code == ResponseCode::NXDomain
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "MODIFIED and DELETED applied");
}

/// Options that change the rules: namespaces, labels, noendpoints, endpoint_pod_names,
/// ignore empty_service, pods verified, fallthrough, ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_options() {
    let api = FakeApi::start().await;
    fixtures(&api).await;
    api.put(
        SERVICES,
        service("other", "labelled", &["10.96.1.1"], &[("http", 80, "TCP")]),
    );
    api.put(PODS, pod("default", "db-0", "10.244.1.5"));
    let port = free_port();
    let corefile = format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n  namespaces default\n  endpoint_pod_names\n  ignore empty_service\n  pods verified\n  ttl 30\n }}\n}}\n",
        api.url()
    );
    let (_inst, _) = start_server(&corefile).await;
    let s = SocketAddr::from(([127, 0, 0, 1], port));
    // namespaces: other is not exposed.
    assert_eq!(
        q(s, "labelled.other.svc.cluster.local.", A, false)
            .await
            .metadata
            .response_code,
        NXDomain
    );
    // ttl 30.
    let m = q(s, "web.default.svc.cluster.local.", A, false).await;
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(m.authorities.len(), 0);
    // endpoint_pod_names: db-1 (pod name) instead of the dashed IP.
    let m = q(s, "db-1.db.default.svc.cluster.local.", A, false).await;
    assert_eq!(
        rrs(&m.answers),
        vec!["db-1.db.default.svc.cluster.local. A 10.244.2.6"]
    );
    // ignore empty_service: a ClusterIP service with no ready endpoint is NXDOMAIN.
    api.put(
        SERVICES,
        service("default", "lonely", &["10.96.0.60"], &[("http", 80, "TCP")]),
    );
    let mut code = NoError;
    for _ in 0..50 {
        code = q(s, "lonely.default.svc.cluster.local.", A, false)
            .await
            .metadata
            .response_code;
        if code == NXDomain {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, NXDomain);
    assert_eq!(
        q(s, "lonely.default.svc.cluster.local.", A, false)
            .await
            .authorities[0]
            .ttl,
        30
    );
    // pods verified: only IPs of existing pods in that namespace.
    assert_eq!(
        q(s, "10-244-1-5.default.pod.cluster.local.", A, false)
            .await
            .answers
            .len(),
        1
    );
    assert_eq!(
        q(s, "10-244-1-6.default.pod.cluster.local.", A, false)
            .await
            .metadata
            .response_code,
        NXDomain
    );
    // Outside the server's zone: REFUSED; a non-IN class: REFUSED.
    assert_eq!(
        q(s, "example.org.", A, false).await.metadata.response_code,
        ResponseCode::Refused
    );
    let mut m = query_msg("web.default.svc.cluster.local.", A, None);
    m.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    assert_eq!(
        ask(s, &m, false).await.0.metadata.response_code,
        ResponseCode::Refused
    );

    // labels and noendpoints in a second server.
    let port2 = free_port();
    let corefile = format!(
        "cluster.local:{port2} {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n  labels app in (web, db)\n  noendpoints\n }}\n}}\n",
        api.url()
    );
    let (_inst2, _) = start_server(&corefile).await;
    let s2 = SocketAddr::from(([127, 0, 0, 1], port2));
    assert_eq!(
        q(s2, "web.default.svc.cluster.local.", A, true)
            .await
            .answers
            .len(),
        1
    );
    assert_eq!(
        q(s2, "plain.default.svc.cluster.local.", A, true)
            .await
            .metadata
            .response_code,
        NXDomain
    );
    // noendpoints: a headless service has no records.
    assert_eq!(
        q(s2, "db.default.svc.cluster.local.", A, true)
            .await
            .metadata
            .response_code,
        NXDomain
    );
}

/// Before the watchers have listed, name errors are SERVFAIL and /ready is 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_is_servfail_and_not_ready() {
    let dead = free_port();
    let port = free_port();
    let ready = free_port();
    let corefile = format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n ready 127.0.0.1:{ready}\n kubernetes {{\n  endpoint http://127.0.0.1:{dead}\n  startup_timeout 0s\n }}\n}}\n"
    );
    let (_inst, _) = start_server(&corefile).await;
    let s = SocketAddr::from(([127, 0, 0, 1], port));
    let m = q(s, "web.default.svc.cluster.local.", A, false).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    let (code, body) = http_get(SocketAddr::from(([127, 0, 0, 1], ready)), "/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("kubernetes"), "{body}");
    // The apex is still NODATA (not a name error).
    assert_eq!(
        q(s, "cluster.local.", A, false)
            .await
            .metadata
            .response_code,
        NoError
    );
}

/// While the kubernetes plugin still waits for its first sync at start, `/ready` already
/// answers (503, naming the plugin) and `/health` 200, as CoreDNS's plugins do: a kubelet's
/// first readiness probe meets a server that is starting, not a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_while_the_first_sync_is_awaited() {
    let dead = free_port();
    let port = free_port();
    let ready = free_port();
    let health = free_port();
    let corefile = format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n health 127.0.0.1:{health}\n ready 127.0.0.1:{ready}\n kubernetes {{\n  endpoint http://127.0.0.1:{dead}\n  startup_timeout 30s\n }}\n}}\n"
    );
    let starting = tokio::spawn(async move { start_server(&corefile).await });
    let lo = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(lo(ready)).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "/ready not listening while the sync is awaited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, body) = http_get(lo(ready), "/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("kubernetes"), "{body}");
    assert_eq!(http_get(lo(health), "/health").await.0, 200);
    // Still starting: the 30 s wait for the sync has not passed.
    assert!(!starting.is_finished());
    starting.abort();
}

/// `kubeconfig PATH CONTEXT`: the named context's cluster and user are used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_with_context() {
    let api = FakeApi::start().await;
    fixtures(&api).await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let dead = free_port();
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: wrong\nclusters:\n- name: wrong\n  cluster:\n    server: http://127.0.0.1:{dead}\n- name: lab\n  cluster:\n    server: {}\ncontexts:\n- name: wrong\n  context:\n    cluster: wrong\n    user: u\n- name: lab\n  context:\n    cluster: lab\n    user: u\nusers:\n- name: u\n  user:\n    token: not-checked-by-the-fake\n",
            api.url()
        ),
    )
    .unwrap();
    let port = free_port();
    let corefile = format!(
        "cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes {{\n  kubeconfig {} lab\n }}\n}}\n",
        kc.display()
    );
    let (_inst, _) = start_server(&corefile).await;
    let m = q(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "web.default.svc.cluster.local.",
        A,
        false,
    )
    .await;
    assert_eq!(
        rrs(&m.answers),
        vec!["web.default.svc.cluster.local. A 10.96.0.50"]
    );
}
