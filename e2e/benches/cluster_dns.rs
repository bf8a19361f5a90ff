//! The live cluster's DNS timings (a benchmark: prints numbers, never fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench cluster_dns`
//!
//! On one hermetic 3-node cluster: the time from `minikind apply` of a new Service (with a
//! ready pod behind it already) to its name resolving from a pod, over several services; and
//! the node agents' resident memory.

use std::time::{Duration, Instant};

use minikind_test_support::Cluster;

const SERVICES: usize = 10;

fn main() {
    let c = Cluster::create(
        "bench-dns",
        "nodes:\n- role: control-plane\n- role: worker\n- role: worker\nnetworking:\n  internal: true\ndns:\n  upstream: lab\n",
    );
    let manifest = std::env::temp_dir().join(format!("minikind-bench-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: client\n  labels: {app: client}\nspec:\n  containers:\n  - name: c\n    image: minikind/tools\n    command: [sleep, \"3600\"]\n",
    )
    .unwrap();
    c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
    c.wait_pod_ready("default", "client");

    let mut times = Vec::new();
    for i in 0..SERVICES {
        let name = format!("svc-{i}");
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: client}}\n  ports:\n  - name: p\n    port: 80\n"),
        )
        .unwrap();
        let fqdn = format!("{name}.default.svc.cluster.local");
        let start = Instant::now();
        c.minikind_ok(&["apply", "-f", manifest.to_str().unwrap()]);
        loop {
            let r = c.pod_exec("client", &["dig", &fqdn, "+short", "+time=1", "+tries=1"]);
            if r.stdout
                .lines()
                .any(|l| l.trim().parse::<std::net::Ipv4Addr>().is_ok())
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{fqdn} never resolved"
            );
        }
        times.push(start.elapsed());
    }
    let _ = std::fs::remove_file(&manifest);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "new Service → resolvable from a pod (apply + polling dig through `minikind exec`): min {:.0} ms, median {:.0} ms, max {:.0} ms (n={})",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    );
    println!(
        "  (each poll is one `minikind exec`, itself ~50-100 ms: the figure is an upper bound)"
    );

    for node in ["control-plane", "worker", "worker2"] {
        let n = c.node(node);
        // PID 1 is the reaper; the agent is its child.
        let child = c.exec_ok(&n, &["cat", "/proc/1/task/1/children"]);
        let pid = child.split_whitespace().next().unwrap_or("1").to_string();
        let status = c.exec_ok(&n, &["cat", &format!("/proc/{pid}/status")]);
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS"))
            .unwrap_or("VmRSS: ?");
        println!(
            "node agent RSS on {n}: {}",
            rss.trim_start_matches("VmRSS:").trim()
        );
    }
}
