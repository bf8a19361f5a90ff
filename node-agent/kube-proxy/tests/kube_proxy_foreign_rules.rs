//! kube-proxy never flushes what others own: Docker's embedded-DNS chains and the network
//! magic's PREROUTING copy (as they are on a KIND node after boot) survive syncs, full
//! resyncs and restarts; a deleted jump rule comes back at the next full resync; a restarted
//! kube-proxy removes the chains of services deleted while it was down.

mod kube_proxy_common;

use std::time::Duration;

use kube_proxy_common::*;
use minikind_kube_proxy::service_rules::Protocol;

const NS: &str = "default";

/// A KIND node's nat table after the network magic (Docker's rules rewritten to the host IP,
/// PREROUTING copy added) plus a filter rule of the user's.
const NODE_RULES: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A POSTROUTING -d 172.18.0.1/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 172.18.0.1/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:38405
-A DOCKER_OUTPUT -d 172.18.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 38405 -j SNAT --to-source 172.18.0.1:53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 41553 -j SNAT --to-source 172.18.0.1:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 192.0.2.66/32 -j DROP
COMMIT
";

/// Every foreign rule is still there, exactly once.
fn assert_foreign_rules_intact(nat: &str, filter: &str) {
    for line in NODE_RULES.lines().filter(|l| l.starts_with("-A ")) {
        let in_nat = nat.lines().filter(|l| *l == line).count();
        let in_filter = filter.lines().filter(|l| *l == line).count();
        assert_eq!(
            in_nat + in_filter,
            1,
            "{line} should be present once\n{nat}\n{filter}"
        );
    }
    for chain in ["DOCKER_OUTPUT", "DOCKER_POSTROUTING"] {
        assert!(has_chain(nat, chain), "{chain} gone\n{nat}");
    }
}

/// kube-proxy's jumps exist once each (ensured again at every full sync and restart).
fn assert_jumps_once(nat: &str, filter: &str) {
    let count = |save: &str, target: &str| {
        save.lines()
            .filter(|l| l.ends_with(&format!("-j {target}")) && !l.starts_with("-A KUBE-"))
            .count()
    };
    assert_eq!(count(nat, "KUBE-SERVICES"), 2, "PREROUTING + OUTPUT\n{nat}");
    assert_eq!(count(nat, "KUBE-POSTROUTING"), 1, "{nat}");
    assert_eq!(
        count(filter, "KUBE-SERVICES"),
        2,
        "FORWARD + OUTPUT\n{filter}"
    );
    assert_eq!(count(filter, "KUBE-FORWARD"), 1, "{filter}");
}

#[test]
fn kube_proxy_keeps_docker_and_magic_rules_across_syncs_and_restarts() {
    let c = nft();
    isolated(&c.clone(), || async move {
        restore(&c.restore, &[], NODE_RULES);
        // A one-second full resync, so several full syncs happen during the test.
        let mut lab = Lab::start(c.clone(), Duration::from_secs(1)).await;
        lab.service(NS, "web", "10.96.100.40", &[("http", "TCP", 80)])
            .await;
        lab.slice(
            NS,
            "web",
            &["10.244.1.2", "10.244.1.3"],
            &[],
            &[("http", "TCP", 8080)],
        )
        .await;
        let web = port(NS, "web", "http", Protocol::Tcp).svc_chain();
        let cc = c.clone();
        let chain = web.clone();
        eventually(10, "web's rules", move || {
            let s = dump(&cc, "nat");
            has_chain(&s, &chain).then_some(()).ok_or(s)
        })
        .await;
        // Let full resyncs run over the rules.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let (nat, filter) = (dump(&c, "nat"), dump(&c, "filter"));
        assert_foreign_rules_intact(&nat, &filter);
        assert_jumps_once(&nat, &filter);
        assert!(has_chain(&nat, &web), "{nat}");

        // Someone deletes a jump (a firewall reload, an admin): the next full resync puts it
        // back, once.
        run(
            &c.iptables.to_string_lossy(),
            &[
                "-w",
                "-t",
                "nat",
                "-D",
                "PREROUTING",
                "-m",
                "comment",
                "--comment",
                "kubernetes service portals",
                "-j",
                "KUBE-SERVICES",
            ],
        );
        let cc = c.clone();
        eventually(10, "the PREROUTING jump restored", move || {
            let s = dump(&cc, "nat");
            s.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES")
                .then_some(())
                .ok_or(s)
        })
        .await;
        assert_jumps_once(&dump(&c, "nat"), &dump(&c, "filter"));

        // While kube-proxy is down, web goes and api comes.
        lab.stop_proxy().await;
        lab.delete_service(NS, "web").await;
        lab.service(NS, "api", "10.96.100.41", &[("grpc", "TCP", 9000)])
            .await;
        lab.slice(NS, "api", &["10.244.1.9"], &[], &[("grpc", "TCP", 9000)])
            .await;
        lab.start_proxy();
        let api = port(NS, "api", "grpc", Protocol::Tcp).svc_chain();
        let cc = c.clone();
        let (gone, new) = (web.clone(), api.clone());
        let nat = eventually(10, "web's chains removed, api's added", move || {
            let s = dump(&cc, "nat");
            (!has_chain(&s, &gone) && has_chain(&s, &new))
                .then_some(s.clone())
                .ok_or(s)
        })
        .await;
        let sep_left: Vec<String> = service_chains(&nat)
            .into_iter()
            .filter(|ch| ch.starts_with("KUBE-SEP-"))
            .collect();
        // The API server's own endpoint and api's one; none of web's two.
        let api_sep = port(NS, "api", "grpc", Protocol::Tcp).sep_chain(&ep("10.244.1.9", 9000));
        assert!(sep_left.contains(&api_sep), "{nat}");
        for ip in ["10.244.1.2", "10.244.1.3"] {
            let web_sep = port(NS, "web", "http", Protocol::Tcp).sep_chain(&ep(ip, 8080));
            assert!(!sep_left.contains(&web_sep), "stale {web_sep}\n{nat}");
        }
        let filter = dump(&c, "filter");
        assert_foreign_rules_intact(&nat, &filter);
        assert_jumps_once(&nat, &filter);
        lab.shutdown().await;

        // Rules stay in place after kube-proxy stops, as kube-proxy leaves them.
        let nat = dump(&c, "nat");
        assert!(has_chain(&nat, &api), "{nat}");
    });
}
