//! A sync large enough to take iptables-nft's cache-hint path (more than 1 000 service chains
//! in one restore), then partial syncs on top of it: the kernel holds exactly the rendered
//! rules, the hint changes nothing but speed, and foreign rules stay.

mod kube_proxy_common;

use std::net::IpAddr;

use kube_proxy_common::*;
use minikind_iptables::Commands;
use minikind_kube_proxy::Syncer;
use minikind_kube_proxy::service_rules::{Endpoint, Protocol, ProxyConfig, ServicePort};

fn ports(n: usize, eps: usize) -> Vec<ServicePort> {
    (0..n)
        .map(|i| ServicePort {
            namespace: format!("ns-{}", i / 100),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250)
                .parse()
                .unwrap(),
            port: 80,
            node_port: None,
            endpoints: (0..eps)
                .map(|e| {
                    let k = i * eps + e;
                    Endpoint {
                        ip: format!("10.{}.{}.{}", 128 + k / 62500, (k / 250) % 250, 1 + k % 250)
                            .parse::<IpAddr>()
                            .unwrap(),
                        port: 8080,
                    }
                })
                .collect(),
        })
        .collect()
}

fn count(save: &str, prefix: &str) -> usize {
    save.lines().filter(|l| l.starts_with(prefix)).count()
}

fn large_sync(c: Commands) {
    let cc = c.clone();
    isolated(&c, || async move {
        tokio::task::spawn_blocking(move || {
            restore(
                &cc.restore,
                &[],
                "*nat\n:DOCKER_OUTPUT - [0:0]\n-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT\n\
                 -A DOCKER_OUTPUT -d 172.18.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553\nCOMMIT\n",
            );
            let mut syncer = Syncer::new(cc.clone(), ProxyConfig::default());
            let mut services = ports(300, 5);
            let report = syncer.sync(&services, true).expect("full sync");
            assert!(report.restored);
            assert_eq!(report.chains_written, 300 * 6, "{report}");
            let save = dump(&cc, "nat");
            assert_eq!(count(&save, ":KUBE-SVC-"), 300, "{report}");
            assert_eq!(count(&save, ":KUBE-SEP-"), 1500);
            assert_eq!(count(&save, "-A KUBE-SERVICES "), 301);
            // Rule lines of the kernel = the renderer's nat rule count + the jumps + Docker's.
            let rules = count(&save, "-A ");
            assert_eq!(rules, report.nat_rules + 3 + 2, "{report}");

            // Partial: one service loses its endpoints, one is removed.
            services[7].endpoints.clear();
            services.pop();
            let report = syncer.sync(&services, false).expect("partial sync");
            assert!(!report.full && report.restored);
            assert_eq!(report.chains_removed, 6 + 6, "{report}");
            assert_eq!(report.chains_written, 0, "{report}");
            let save = dump(&cc, "nat");
            assert_eq!(count(&save, ":KUBE-SVC-"), 298);
            assert_eq!(count(&save, ":KUBE-SEP-"), 1490);
            let filter = dump(&cc, "filter");
            assert!(filter.contains("\"ns-0/svc-7:http has no endpoints\""), "{filter}");
            assert!(save.contains("-A DOCKER_OUTPUT -d 172.18.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553"), "{save}");
        })
        .await
        .expect("sync thread");
    });
}

#[test]
fn kube_proxy_large_sync_with_iptables_nft() {
    large_sync(nft());
}

#[test]
fn kube_proxy_large_sync_with_iptables_legacy() {
    large_sync(legacy());
}
