//! Services and EndpointSlices created through the in-process API server end up in the
//! namespace's `iptables-save` with kube-proxy's chains, comments and probabilities; changes
//! update them, deletions remove them, services without endpoints get the filter REJECT.

mod kube_proxy_common;

use std::time::Duration;

use kube_proxy_common::*;
use minikind_iptables::Commands;
use minikind_kube_proxy::service_rules::Protocol;

const NS: &str = "default";

/// The SVC chain's rules as the kernel stores them: (probability or "last", SEP chain).
fn split(save: &str, chain: &str) -> Vec<(String, String)> {
    rules_of(save, chain)
        .into_iter()
        .filter(|l| l.contains(" -> "))
        .map(|l| {
            let p = l
                .split("--probability ")
                .nth(1)
                .map_or("last", |r| r.split(' ').next().unwrap_or_default());
            let sep = l.rsplit("-j ").next().unwrap_or_default();
            (p.to_string(), sep.to_string())
        })
        .collect()
}

fn scale_and_delete(commands: Commands) {
    let c = commands.clone();
    isolated(&commands, || async move {
        let lab = Lab::start(c.clone(), Duration::from_secs(30)).await;
        lab.service(
            NS,
            "dns4",
            "10.96.100.10",
            &[("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
        )
        .await;
        let four = ["10.244.0.2", "10.244.0.3", "10.244.0.4", "10.244.0.5"];
        let ports = [("dns", "UDP", 53), ("dns-tcp", "TCP", 53)];
        lab.slice(NS, "dns4", &four, &[], &ports).await;

        let udp = port(NS, "dns4", "dns", Protocol::Udp);
        let svc_chain = udp.svc_chain();
        let seps: Vec<String> = four.iter().map(|ip| udp.sep_chain(&ep(ip, 53))).collect();
        let cc = c.clone();
        let chain = svc_chain.clone();
        let save = eventually(10, "4 endpoints in the UDP service chain", move || {
            let save = dump(&cc, "nat");
            (split(&save, &chain).len() == 4)
                .then_some(save.clone())
                .ok_or(save)
        })
        .await;
        // The seed's 0.25 / 0.333… / 0.5 split, as the kernel stores kube-proxy's values.
        let expected: Vec<(String, String)> =
            ["0.25000000000", "0.33333333349", "0.50000000000", "last"]
                .iter()
                .zip(&seps)
                .map(|(p, s)| (p.to_string(), s.clone()))
                .collect();
        assert_eq!(split(&save, &svc_chain), expected, "{save}");
        let entry = format!(
            "-A KUBE-SERVICES -d 10.96.100.10/32 -p udp -m comment --comment \"default/dns4:dns cluster IP\" -m udp --dport 53 -j {svc_chain}"
        );
        assert!(save.lines().any(|l| l == entry), "missing {entry}\n{save}");
        let dnat = format!(
            "-A {} -p udp -m comment --comment \"default/dns4:dns\" -m udp -j DNAT --to-destination 10.244.0.2:53",
            seps[0]
        );
        assert!(save.lines().any(|l| l == dnat), "missing {dnat}\n{save}");
        let tcp_chain = port(NS, "dns4", "dns-tcp", Protocol::Tcp).svc_chain();
        assert_eq!(split(&save, &tcp_chain).len(), 4, "{save}");
        // The masquerade plumbing.
        assert!(
            save.contains("-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"),
            "{save}"
        );
        assert!(save.contains("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING"), "{save}");
        assert!(
            save.contains(
                "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"
            ),
            "{save}"
        );

        // Scale down to two endpoints (one of the others turns not ready).
        lab.slice(NS, "dns4", &four[..2], &four[2..3], &ports).await;
        let cc = c.clone();
        let chain = svc_chain.clone();
        let save = eventually(10, "2 endpoints left", move || {
            let save = dump(&cc, "nat");
            (split(&save, &chain).len() == 2)
                .then_some(save.clone())
                .ok_or(save)
        })
        .await;
        assert_eq!(
            split(&save, &svc_chain),
            vec![
                ("0.50000000000".to_string(), seps[0].clone()),
                ("last".to_string(), seps[1].clone())
            ]
        );
        for gone in &seps[2..] {
            assert!(!has_chain(&save, gone), "stale {gone} left behind\n{save}");
        }

        // Deleting the service removes every chain of it.
        lab.delete_service(NS, "dns4").await;
        let cc = c.clone();
        let chains: Vec<String> = seps
            .iter()
            .cloned()
            .chain([svc_chain.clone(), tcp_chain.clone()])
            .collect();
        let save = eventually(10, "the service's chains removed", move || {
            let save = dump(&cc, "nat");
            if chains.iter().any(|ch| has_chain(&save, ch)) {
                Err(save)
            } else {
                Ok(save)
            }
        })
        .await;
        assert!(!save.contains("default/dns4"), "{save}");
        // The API server's own service is still there.
        assert!(
            save.contains("\"default/kubernetes:https cluster IP\""),
            "{save}"
        );
        lab.shutdown().await;
    });
}

#[test]
fn kube_proxy_scaling_and_deletion_with_iptables_nft() {
    scale_and_delete(nft());
}

#[test]
fn kube_proxy_scaling_and_deletion_with_iptables_legacy() {
    scale_and_delete(legacy());
}

#[test]
fn kube_proxy_rejects_services_without_endpoints() {
    let c = nft();
    isolated(&c.clone(), || async move {
        let lab = Lab::start(c.clone(), Duration::from_secs(30)).await;
        lab.service(NS, "empty", "10.96.100.20", &[("http", "TCP", 80)])
            .await;
        // Not-ready endpoints do not count.
        lab.slice(NS, "empty", &[], &["10.244.0.9"], &[("http", "TCP", 8080)])
            .await;
        let reject = "-A KUBE-SERVICES -d 10.96.100.20/32 -p tcp -m comment --comment \"default/empty:http has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable";
        let cc = c.clone();
        let filter = eventually(10, "the REJECT rule", move || {
            let s = dump(&cc, "filter");
            s.lines().any(|l| l == reject).then_some(s.clone()).ok_or(s)
        })
        .await;
        assert!(filter.contains("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"), "{filter}");
        let nat = dump(&c, "nat");
        assert!(
            !nat.contains("default/empty"),
            "no nat rules for it:\n{nat}"
        );

        // An endpoint becomes ready: the REJECT goes, the DNAT comes.
        lab.slice(NS, "empty", &["10.244.0.9"], &[], &[("http", "TCP", 8080)])
            .await;
        let cc = c.clone();
        let nat = eventually(10, "the DNAT", move || {
            let s = dump(&cc, "nat");
            s.contains("--to-destination 10.244.0.9:8080")
                .then_some(s.clone())
                .ok_or(s)
        })
        .await;
        assert!(nat.contains("\"default/empty:http cluster IP\""), "{nat}");
        let filter = dump(&c, "filter");
        assert!(!filter.contains("has no endpoints"), "{filter}");
        lab.shutdown().await;
    });
}

#[test]
fn kube_proxy_ignores_headless_and_external_name_services() {
    let c = nft();
    isolated(&c.clone(), || async move {
        let lab = Lab::start(c.clone(), Duration::from_secs(30)).await;
        let api = lab.services(NS);
        for v in [
            serde_json::json!({"metadata": {"name": "headless"},
                "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
            serde_json::json!({"metadata": {"name": "ext"},
                "spec": {"type": "ExternalName", "externalName": "db.example.test", "ports": [{"name": "pg", "port": 5432}]}}),
        ] {
            let svc = serde_json::from_value(v).unwrap();
            api.create(&kube::api::PostParams::default(), &svc)
                .await
                .expect("creating");
        }
        lab.slice(NS, "headless", &["10.244.0.7"], &[], &[("http", "TCP", 80)])
            .await;
        // A marker service after them: once it is in, the others have been seen too.
        lab.service(NS, "marker", "10.96.100.30", &[("http", "TCP", 80)])
            .await;
        let cc = c.clone();
        eventually(10, "the marker's REJECT", move || {
            let s = dump(&cc, "filter");
            s.contains("default/marker:http has no endpoints")
                .then_some(())
                .ok_or(s)
        })
        .await;
        let all = format!("{}{}", dump(&c, "nat"), dump(&c, "filter"));
        assert!(!all.contains("default/headless"), "{all}");
        assert!(!all.contains("default/ext"), "{all}");
        assert!(!all.contains("10.244.0.7"), "{all}");
        lab.shutdown().await;
    });
}
