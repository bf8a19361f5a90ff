//! `minikind load docker-image` into a three-node cluster (a benchmark, not a test: it prints
//! numbers and never fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench images`
//!
//! For a ~5 MB and a ~100 MB image (the host's busybox-static plus incompressible filler, built
//! with the engine's import endpoint): the wall time of a first load (export from the engine,
//! streamed into all three nodes at once, unpacked) and of a reload (every node has the ID:
//! only listed and skipped), over a few rounds, each round a new image (the filler differs).

use std::time::{Duration, Instant};

use minikind_test_support::images::busybox_image;
use minikind_test_support::{Cluster, docker, unique_name};

const ROUNDS: usize = 5;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    format!(
        "min {:.0} ms, median {:.0} ms, max {:.0} ms, mean {:.0} ms (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(v[v.len() - 1]),
        mean,
        v.len()
    )
}

fn main() {
    let c = Cluster::create(
        "bench-images",
        "nodes:\n- role: control-plane\n- role: worker\n- role: worker\nnetworking:\n  internal: true\ndns:\n  upstream: lab\n",
    );
    let busybox = std::fs::metadata("/bin/busybox")
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    for (label, total) in [("~5 MB", 5_000_000usize), ("~100 MB", 100_000_000)] {
        let (mut first, mut again) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let tag = format!("{}:{round}", unique_name("minikind-bench-img"));
            busybox_image(&tag, total.saturating_sub(busybox) + round);
            let t = Instant::now();
            c.minikind_ok(&["load", "docker-image", &tag]);
            first.push(t.elapsed());
            let t = Instant::now();
            c.minikind_ok(&["load", "docker-image", &tag]);
            again.push(t.elapsed());
            c.minikind_ok(&["delete", "image", &tag]);
            let _ = docker(&["rmi", &tag]);
        }
        println!("load docker-image {label} into 3 nodes: {}", summary(first));
        println!("  reload (ID present, skipped): {}", summary(again));
    }
}
