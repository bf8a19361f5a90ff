//! NodeLocal DNSCache against kube-dns, from a pod, in one run (a benchmark: prints numbers,
//! never fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench nodelocal_dns`
//!
//! One hermetic two-node cluster with the cache in local mode (`dns.nodeLocalDNS.mode: local`):
//! a pod on the worker asks 169.254.20.10 (the worker's cache, behind NOTRACK) or 10.96.0.10
//! (kube-dns behind kube-proxy's DNAT, CoreDNS's two replicas). From the pod's network namespace
//! (entered from the host, so only the DNS path is timed):
//! - latency p50/p99, one query at a time: a cached name (a cache hit; through kube-dns,
//!   CoreDNS's own cache), a new missing cluster name each time (a cache miss, forwarded over
//!   TCP to kube-dns-upstream; through kube-dns, answered by CoreDNS's kubernetes plugin);
//! - load as dnsperf runs it (Debian's dnsperf could be installed, but it would have to run
//!   inside the pod's namespace from the host, and one Rust load generator serves every bench
//!   here): `CLIENTS` clients each keeping one query in flight for `SECONDS`, queries per second
//!   and latency under load;
//! - the cache's resident memory on each node (`VmRSS` and `VmHWM` of `cluster-dns node-cache`).

use std::net::SocketAddr;

use minikind_test_support::dnsload::{
    Load, Reply, answered, in_netns, latencies, load, ready_pod_netns, report,
};
use minikind_test_support::{Cluster, cluster_body, docker};

const SAMPLES: usize = 2000;
const MISSES: usize = 1000;
const CLIENTS: usize = 8;
const SECONDS: u64 = 5;

fn nxdomain(r: &Reply) -> bool {
    r.rcode == 3
}

fn main() {
    let c = Cluster::create(
        "bench-nl",
        &cluster_body("seed-001-nodelocal-dnscache/cluster-local.yaml"),
    );
    let (cp, worker) = (c.node("control-plane"), c.node("worker"));
    c.wait_node_local_caches(&[&cp, &worker]);
    let manifest =
        std::env::temp_dir().join(format!("minikind-bench-nl-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  nodeName: {worker}\n  \
             containers:\n  - name: c\n    image: minikind/tools\n    command: [sleep, \"3600\"]\n"
        ),
    )
    .unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let _ = std::fs::remove_file(&manifest);
    let (netns, _) = ready_pod_netns(&c, "client");
    let cache: SocketAddr = "169.254.20.10:53".parse().unwrap();
    let kube_dns: SocketAddr = "10.96.0.10:53".parse().unwrap();
    let run = std::process::id();
    let name = "kubernetes.default.svc.cluster.local.";

    for (what, server) in [
        ("node-local cache (169.254.20.10)", cache),
        ("kube-dns (10.96.0.10)", kube_dns),
    ] {
        // A cached name, warmed first.
        let names = vec![name.to_string(); SAMPLES + 20];
        let mut hit = in_netns(&netns, move || latencies(server, &names, false, answered));
        hit.drain(..20.min(hit.len()));
        println!(
            "{}",
            report(&format!("{what}: cached name, one at a time"), hit)
        );
        let tag = if server == cache { "nl" } else { "kd" };
        let names: Vec<String> = (0..MISSES)
            .map(|i| format!("b{i}-{run}-{tag}.default.svc.cluster.local."))
            .collect();
        let miss = in_netns(&netns, move || latencies(server, &names, false, nxdomain));
        println!(
            "{}",
            report(&format!("{what}: a new missing name each time"), miss)
        );
        let Load { qps, lost, rtts } = load(
            &netns,
            server,
            &[name.to_string()],
            CLIENTS,
            SECONDS,
            answered,
        );
        println!(
            "{}",
            report(
                &format!(
                    "{what}: load, {CLIENTS} clients × {SECONDS} s: {qps:.0} queries/s, {lost} lost; latency under load"
                ),
                rtts
            )
        );
    }

    for node in [&cp, &worker] {
        println!("node-cache on {node}: {}", cache_memory(node));
    }
}

/// `VmRSS` and `VmHWM` of the node's `cluster-dns node-cache` process, found from the host:
/// the process whose arguments are `… node-cache …` and whose network namespace is the
/// node's (the cache has the node's network).
fn cache_memory(node: &str) -> String {
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", node])
        .stdout
        .trim()
        .to_string();
    let node_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).expect("the node's netns");
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let p = entry.path();
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_cache = args.first().is_some_and(|a| a.ends_with(b"cluster-dns"))
            && args.get(1) == Some(&&b"node-cache"[..]);
        if !is_cache || std::fs::read_link(p.join("ns/net")).ok().as_ref() != Some(&node_net) {
            continue;
        }
        let status = std::fs::read_to_string(p.join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find(|l| l.starts_with(k))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "?".into())
        };
        return format!("VmRSS {}, VmHWM {}", field("VmRSS:"), field("VmHWM:"));
    }
    "no cluster-dns node-cache process found".into()
}
