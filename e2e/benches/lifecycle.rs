//! Cluster lifecycle timings on the local Docker engine (a benchmark, not a test: it prints
//! numbers and never fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench lifecycle`
//!
//! Measures: node image build (rootfs + import, forced), image size, and for 1 and 3 nodes
//! with a warm image the wall time of `create cluster` until every node's agent reported the
//! network magic applied, and of `delete cluster`. Clusters are hermetic (internal network,
//! lab upstream) and deleted at the end of each round.

use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use minikind_test_support::{docker, labelled_objects, minikind, minikind_command, unique_name};

/// Runs `create cluster` and returns (time until the line ` ✓ <marker>` appeared, total time).
fn create_timed(cfg: &str, marker: &str) -> Result<(Duration, Duration), String> {
    let start = Instant::now();
    let mut child = minikind_command()
        .args(["create", "cluster", "--config", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(cfg.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut at_marker = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if at_marker.is_none() && line.contains(&format!("✓ {marker}")) {
            at_marker = Some(start.elapsed());
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let total = start.elapsed();
    Ok((at_marker.unwrap_or(total), total))
}

const ROUNDS: usize = 5;

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    format!(
        "min {:7.0} ms   median {:7.0} ms   mean {:7.0} ms   max {:7.0} ms   (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        mean,
        ms(v[v.len() - 1]),
        v.len()
    )
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let (r, build) = timed(|| minikind(&["-q", "build", "node-image"]));
    assert!(r.ok, "build node-image: {}", r.stderr);
    let image = r.stdout.trim().to_string();
    let size = docker(&["image", "inspect", "-f", "{{.Size}}", &image]);
    let bytes: f64 = size.stdout.trim().parse().unwrap_or(0.0);
    println!("node image {image}");
    println!(
        "  build (rootfs + import, forced)   {:7.0} ms",
        build.as_secs_f64() * 1000.0
    );
    println!("  size                              {:7.1} MB", bytes / 1e6);

    for nodes in [1usize, 3] {
        let mut magic = Vec::new();
        let mut creates = Vec::new();
        let mut deletes = Vec::new();
        for _ in 0..ROUNDS {
            let name = unique_name("bench");
            let mut cfg = format!(
                "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnetworking:\n  internal: true\ndns:\n  upstream: lab\nnodes:\n- role: control-plane\n"
            );
            for _ in 1..nodes {
                cfg.push_str("- role: worker\n");
            }
            match create_timed(&cfg, "Booting nodes") {
                Ok((m, t)) => {
                    magic.push(m);
                    creates.push(t);
                }
                Err(e) => {
                    let _ = minikind(&["delete", "cluster", "--name", &name]);
                    panic!("create failed: {e}");
                }
            }
            let (r, t) = timed(|| minikind(&["-q", "delete", "cluster", "--name", &name]));
            assert!(r.ok, "delete failed: {}", r.stderr);
            assert!(labelled_objects(&name).is_empty());
            deletes.push(t);
        }
        println!("{nodes} node(s), warm image, lab upstream:");
        println!(
            "  create until every node's magic is applied      {}",
            stats(magic)
        );
        println!(
            "  whole create (API, nodes Ready, cluster DNS)    {}",
            stats(creates)
        );
        println!(
            "  delete                                          {}",
            stats(deletes)
        );
    }
}
