use std::net::IpAddr;

use super::*;
use crate::service_rules::Protocol;

fn port(ns: &str, name: &str, ip: &str, node_port: Option<u16>, eps: &[&str]) -> ServicePort {
    ServicePort {
        namespace: ns.into(),
        name: name.into(),
        port_name: "p80".into(),
        protocol: Protocol::Tcp,
        cluster_ip: ip.parse().unwrap(),
        port: 80,
        node_port,
        endpoints: eps
            .iter()
            .map(|ip| Endpoint {
                ip: ip.parse().unwrap(),
                port: 80,
            })
            .collect(),
    }
}

/// kube-proxy's `NewFakeProxier`: cluster CIDR 10.0.0.0/8, service CIDR 172.30.0.0/16, node
/// IP 192.168.0.2.
fn fake_proxier() -> NftConfig {
    NftConfig {
        cluster_cidr: Some("10.0.0.0/8".parse().unwrap()),
        masquerade_all: false,
        service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
        node_ips: vec![IpAddr::from([192, 168, 0, 2])],
    }
}

/// kube-proxy's `baseRules` (pkg/proxy/nftables/proxier_test.go) and, from
/// `TestOverallNFTablesRules`, the lines of its svc1 (ClusterIP), svc3 (NodePort), svc4's
/// service and endpoint chains (two endpoints; its external IP is not modelled here) and svc6
/// (no endpoints).
const KUBE_PROXY_GOLDEN: &str = r#"
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 }
add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80
add chain ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }
add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }
add chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
add element ip kube-proxy cluster-ips { 172.30.0.46 }
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
"#;

/// Each chain's rules in order (a chain's rule order is its behaviour).
fn rules_by_chain(text: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("add rule ip kube-proxy ") {
            let (chain, rule) = rest.split_once(' ').unwrap();
            out.entry(chain.to_string())
                .or_default()
                .push(rule.to_string());
        }
    }
    out
}

#[test]
fn the_table_is_kube_proxys_golden_text() {
    let ports = [
        port("ns1", "svc1", "172.30.0.41", None, &["10.180.0.1"]),
        port("ns3", "svc3", "172.30.0.43", Some(3003), &["10.180.0.3"]),
        port(
            "ns4",
            "svc4",
            "172.30.0.44",
            None,
            &["10.180.0.5", "10.180.0.4"],
        ),
        port("ns6", "svc6", "172.30.0.46", None, &[]),
    ];
    let ours = render_table(&fake_proxier(), &ports);
    let sorted = |t: &str| {
        let mut v: Vec<String> = t
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&ours), sorted(KUBE_PROXY_GOLDEN));
    assert_eq!(rules_by_chain(&ours), rules_by_chain(KUBE_PROXY_GOLDEN));
}

#[test]
fn masquerade_all_and_no_endpoint_node_ports() {
    let mut cfg = fake_proxier();
    cfg.masquerade_all = true;
    let t = render_table(
        &cfg,
        &[port("ns1", "svc1", "172.30.0.41", None, &["10.180.0.1"])],
    );
    assert!(t.contains(
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 jump mark-for-masquerade\n"
    ), "{t}");
    let t = render_table(
        &fake_proxier(),
        &[port("ns1", "svc1", "172.30.0.41", Some(3001), &[])],
    );
    assert!(t.contains(
        "add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment \"ns1/svc1:p80\" : goto reject-chain }\n"
    ), "{t}");
    assert!(!t.contains("service-ULMVA6XW"), "{t}");
}

fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// In a network namespace of its own, with the host's `nft`: the transaction loads, a
/// connection to the ClusterIP reaches the endpoint through the DNAT, a second sync replaces
/// the table (a removed service's chains are gone), and a ClusterIP port with no endpoints is
/// rejected at once.
#[test]
fn the_table_loads_and_dnats_in_a_private_namespace() {
    use std::io::{Read, Write};
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        sh(&["ip", "link", "set", "lo", "up"]);
        sh(&["ip", "link", "add", "kp0", "type", "bridge"]);
        sh(&["ip", "link", "set", "kp0", "up"]);
        sh(&["ip", "addr", "add", "10.244.0.7/24", "dev", "kp0"]);
        // A route to the service CIDR, as a node has (its default route): the route is
        // looked up before the nat hook rewrites the destination.
        sh(&["ip", "route", "add", "default", "dev", "kp0"]);
        let server = std::net::TcpListener::bind("10.244.0.7:8080").unwrap();
        let nft = std::path::Path::new("nft");
        let cfg = NftConfig {
            cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
            masquerade_all: false,
            service_cidrs: vec!["10.96.0.0/16".parse().unwrap()],
            node_ips: vec![IpAddr::from([10, 244, 0, 7])],
        };
        let mut web = port("default", "web", "10.96.0.10", None, &["10.244.0.7"]);
        web.endpoints[0].port = 8080;
        let gone = port("default", "gone", "10.96.0.11", None, &["10.244.0.7"]);
        let empty = port("default", "empty", "10.96.0.12", None, &[]);
        sync(nft, &cfg, &[web.clone(), gone.clone(), empty.clone()]).unwrap();
        let listing = sh(&["nft", "list", "table", "ip", "kube-proxy"]);
        assert!(listing.contains(&service_chain(&gone)), "{listing}");

        let mut c = std::net::TcpStream::connect("10.96.0.10:80").unwrap();
        let (mut s, _) = server.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");

        let refused = std::net::TcpStream::connect("10.96.0.12:80").unwrap_err();
        assert_eq!(
            refused.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{refused}"
        );

        sync(nft, &cfg, &[web.clone()]).unwrap();
        let listing = sh(&["nft", "list", "table", "ip", "kube-proxy"]);
        assert!(!listing.contains(&service_chain(&gone)), "{listing}");
        assert!(listing.contains(&service_chain(&web)), "{listing}");
        assert_eq!(
            sh(&["nft", "list", "tables"]).matches("kube-proxy").count(),
            1
        );
    })
    .join()
    .expect("the test thread");
}
