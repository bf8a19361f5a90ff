//! node-cache mode against the real `ip` and iptables, in a network namespace of the test's
//! own (nothing on the host is touched): the interface and node-cache's rules appear once the
//! server runs, queries to both local addresses are answered (cluster names over TCP to the
//! upstream Service's address, then from the cache), a deleted rule is put back by the periodic
//! check, and a graceful stop removes the rules and the interface.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use minikind_cluster_dns::nodecache::{self, NodeCacheFlags, rules, template};
use minikind_iptables::Commands;
use support::dns::*;

const LOCAL: &str = "169.254.20.10";
const KUBE_DNS: &str = "10.96.0.10";
/// Where the `kube-dns-upstream` Service's address is played by a fake upstream on `lo`.
const UPSTREAM: &str = "127.0.0.20";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn saved() -> String {
    sh(&["iptables-save", "-t", "raw"]) + &sh(&["iptables-save", "-t", "filter"])
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn node_cache_sets_up_serves_heals_and_tears_down() {
    // SAFETY: unshare on this test's own thread before any other thread exists in it; the
    // runtime built afterwards inherits the namespace.
    assert_eq!(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        0,
        "unshare (tests run as root)"
    );
    sh(&["ip", "link", "set", "lo", "up"]);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario());
}

async fn scenario() {
    let up =
        FakeUpstream::start_at(Behaviour::Answer, format!("{UPSTREAM}:53").parse().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let pillars = template::InstallPillars {
        domain: "cluster.local".into(),
        local_ip: LOCAL.parse().unwrap(),
        dns_server: Some(KUBE_DNS.parse().unwrap()),
    };
    let base = dir.path().join("Corefile.base");
    std::fs::write(&base, template::corefile_template(&pillars)).unwrap();
    // SAFETY: set before the node-cache task (which reads it) starts.
    unsafe { std::env::set_var(nodecache::service_host_env("kube-dns-upstream"), UPSTREAM) };
    let flags = NodeCacheFlags {
        local_ips: pillars.local_ips(),
        base_corefile: base,
        conf: dir.path().join("Corefile"),
        upstream_svc: "kube-dns-upstream".into(),
        sync_interval: Duration::from_millis(300),
        quiet: true,
        ..Default::default()
    };
    let all = rules::rules(&flags.local_ips, 53, 8080);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let node_cache = tokio::spawn(nodecache::run(
        flags,
        Commands::on_path(None),
        |_inst| async {
            let _ = stop_rx.await;
        },
    ));

    eventually("node-cache's 24 rules", || {
        all.iter().all(|r| rules::count_in(&saved(), r) == 1)
    })
    .await;
    let link = sh(&["ip", "-o", "addr", "show", "dev", "nodelocaldns"]);
    assert!(
        link.contains(&format!("{LOCAL}/32")) && link.contains(&format!("{KUBE_DNS}/32")),
        "{link}"
    );
    assert!(sh(&["ip", "-d", "link", "show", "nodelocaldns"]).contains("bridge"));

    // Both addresses answer; cluster names go to the upstream Service over TCP, once (the
    // other TCP queries it saw are the loop plugin's HINFO probes, one per zone).
    let mut upstream_seen = Vec::new();
    for server in [LOCAL, KUBE_DNS] {
        let s = SocketAddr::new(server.parse::<IpAddr>().unwrap(), 53);
        let m = q(
            s,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            false,
        )
        .await;
        assert_eq!(
            rrs(&m.answers),
            vec!["kubernetes.default.svc.cluster.local. A 192.0.2.10"]
        );
        upstream_seen.push(up.tcp_queries.load(Ordering::SeqCst));
    }
    assert_eq!(
        upstream_seen[0], upstream_seen[1],
        "the second answer came from the cache"
    );
    assert_eq!(
        up.udp_queries.load(Ordering::SeqCst),
        0,
        "force_tcp towards the cluster DNS"
    );
    // Each of the three blocks forwarding to it (cluster domain, in-addr.arpa, ip6.arpa) has
    // its own forward and so its own pool, as in CoreDNS: at most one connection each.
    let conns = up.tcp_conns.load(Ordering::SeqCst);
    assert!(conns <= 3, "{conns} connections");
    let (code, body) = http_get(format!("{LOCAL}:8080").parse().unwrap(), "/health").await;
    assert_eq!((code, body.as_str()), (200, "OK"));
    let (code, metrics) = http_get("127.0.0.1:9253".parse().unwrap(), "/metrics").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("coredns_cache_hits_total"), "{metrics}");

    // A rule deleted by someone else is put back by the periodic check.
    let gone = &all[1];
    let mut del = vec![
        "iptables".to_string(),
        "-t".into(),
        "raw".into(),
        "-D".into(),
        gone.chain.into(),
    ];
    del.extend(gone.args());
    let del: Vec<&str> = del.iter().map(String::as_str).collect();
    sh(&del);
    assert_eq!(rules::count_in(&saved(), gone), 0);
    eventually("the deleted rule to come back", || {
        rules::count_in(&saved(), gone) == 1
    })
    .await;

    // A graceful stop removes the rules and the interface.
    stop_tx.send(()).unwrap();
    assert_eq!(node_cache.await.unwrap(), 0);
    let left = saved();
    assert!(all.iter().all(|r| rules::count_in(&left, r) == 0), "{left}");
    assert!(!left.contains("NodeLocal DNS Cache"), "{left}");
    assert!(!nodecache::iface::exists("nodelocaldns").unwrap());
}
