//! The whole DNS path, measured from where its users stand (a benchmark: prints numbers, never
//! fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench dns_path`
//!
//! For each resolver mode (`dns.embedded: docker`, then `builtin`) on a one-node hermetic
//! cluster:
//! - lookup latency (p50/p99) of an upstream name from inside a pod's network namespace through
//!   the full chain — pod → kube-dns ClusterIP (kube-proxy DNAT) → CoreDNS → node IP →
//!   DOCKER_OUTPUT DNAT → 127.0.0.11 → lab upstream — cold (a new name each time: a wildcard in
//!   the lab zone, so no cache on the way holds it) and cached (one name, answered by CoreDNS's
//!   cache);
//! - the node's embedded resolver (Docker's own, then minikind's) under load: queries per second
//!   from the node's namespace for a container name (answered locally) and for a forwarded name.
//!
//! The bench enters the namespaces from the host (`/proc/<node pid>/root/run/netns/<pod netns>`
//! and `/proc/<node pid>/ns/net`), so nothing but the DNS path itself is timed.

use std::net::SocketAddr;

use minikind_test_support::Cluster;
use minikind_test_support::dnsload::{
    answered, in_netns, latencies, load, node_netns, pod_netns, report,
};

const LATENCY_SAMPLES: usize = 400;
const LOAD_SECONDS: u64 = 5;
const LOAD_CLIENTS: usize = 8;

fn main() {
    for mode in ["docker", "builtin"] {
        run_mode(mode);
    }
}

fn run_mode(mode: &str) {
    let c = Cluster::create(
        &format!("bench-path-{mode}"),
        &format!("networking:\n  internal: true\ndns:\n  upstream: lab\n  embedded: {mode}\n"),
    );
    let node = c.node("control-plane");
    let manifest =
        std::env::temp_dir().join(format!("minikind-bench-path-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\nspec:\n  containers:\n  - name: c\n    image: minikind/tools\n    command: [sleep, \"3600\"]\n",
    )
    .unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    let _ = std::fs::remove_file(&manifest);
    let pod = c.wait_pod_ready("default", "client");
    let uid = pod["metadata"]["uid"].as_str().expect("pod uid");
    let pod_netns = pod_netns(&node, uid);
    let node_netns = node_netns(&node);
    let kube_dns: SocketAddr = "10.96.0.10:53".parse().unwrap();

    // Cold: a name nobody asked before, every time.
    let run_id = std::process::id();
    let names: Vec<String> = (0..LATENCY_SAMPLES)
        .map(|i| format!("c{run_id}-{i}.wild.example.test."))
        .collect();
    let cold = in_netns(&pod_netns, move || {
        latencies(kube_dns, &names, false, answered)
    });
    // Cached: one name, warmed first.
    let warm = vec!["www.example.test.".to_string(); LATENCY_SAMPLES + 10];
    let mut cached = in_netns(&pod_netns, move || {
        latencies(kube_dns, &warm, false, answered)
    });
    cached.drain(..10);
    println!(
        "{}",
        report(&format!("{mode}: pod → a new upstream name (cold)"), cold)
    );
    println!(
        "{}",
        report(
            &format!("{mode}: pod → www.example.test, cached by CoreDNS"),
            cached,
        )
    );

    // The embedded resolver itself, from the node's namespace: the node's resolv.conf names the
    // address the network magic redirects to 127.0.0.11.
    let resolv = c.exec_ok(&node, &["cat", "/etc/resolv.conf"]);
    let ns = resolv
        .lines()
        .find_map(|l| l.strip_prefix("nameserver "))
        .expect("the node's resolv.conf names a server")
        .trim();
    let server: SocketAddr = format!("{ns}:53").parse().unwrap();
    let local_name = format!("{node}.");
    for (what, name) in [
        ("container name (local answer)", local_name.as_str()),
        ("www.example.test (forwarded)", "www.example.test."),
    ] {
        let run = load(
            &node_netns,
            server,
            &[name.to_string()],
            LOAD_CLIENTS,
            LOAD_SECONDS,
            answered,
        );
        let (qps, lost) = (run.qps, run.lost);
        println!(
            "{mode}: embedded resolver, {what}: {qps:.0} queries/s ({LOAD_CLIENTS} clients, {LOAD_SECONDS} s, {lost} lost or failed)"
        );
    }
    let rss = c
        .exec(&node, &["cat", "/proc/1/status"])
        .stdout
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .map(str::to_string)
        .unwrap_or_default();
    println!("{mode}: node agent (pid 1) {rss}");
}
