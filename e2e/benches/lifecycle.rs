//! Cluster lifecycle timings on the local Docker engine (a benchmark, not a test: it prints
//! numbers and never fails on them).
//!
//! `cargo build --release -p minikind && cargo bench -p minikind-e2e --bench lifecycle`
//!
//! Measures: node image build (rootfs + import, forced), image size; for 1 and 3 nodes with a
//! warm image the wall time of `create cluster` until every node's agent reported the network
//! magic applied, the cluster-DNS wait alone and the whole create (which ends with cluster DNS
//! answering from a pod on every node), and `delete cluster`; on each 3-node cluster the first
//! scale of CoreDNS from 2 to 4 replicas until all 4 are ready, and on how many of them the
//! two CoreDNS replicas were on different nodes. Clusters are hermetic (internal
//! network, lab upstream) and deleted at the end of each round.
//!
//! Then, on one 3-node cluster published on the host's loopback (so that the kubeconfig
//! survives the control plane's restarts; lab upstream), how long after the control plane's API
//! answers again a pod on every node resolves cluster DNS again, after `docker restart` of the
//! control plane, `docker kill` + `docker start` of it, and a crash of its node agent (the
//! agent process killed inside the node; Docker's on-failure policy starts the node again).

use std::time::{Duration, Instant};

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use minikind_test_support::{
    docker, labelled_objects, minikind, minikind_command, minikind_stdin, unique_name,
};

/// Runs `create cluster`; returns the time each step's ` ✓ <step>` line appeared (in order)
/// and the total time.
fn create_timed(cfg: &str) -> Result<(Vec<(String, Duration)>, Duration), String> {
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
    let mut steps = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some((_, step)) = line.split_once("✓ ") {
            steps.push((step.trim().to_string(), start.elapsed()));
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok((steps, start.elapsed()))
}

/// When the step starting with `name` ended, and how long it took (from the previous step's
/// end).
fn step(steps: &[(String, Duration)], name: &str) -> Option<(Duration, Duration)> {
    let i = steps.iter().position(|(s, _)| s.starts_with(name))?;
    let prev = if i == 0 {
        Duration::ZERO
    } else {
        steps[i - 1].1
    };
    Some((steps[i].1, steps[i].1 - prev))
}

/// Rounds of the 1-node and the 3-node create.
const ROUNDS: [(usize, usize); 2] = [(1, 3), (3, 10)];

/// Repeats of each restart kind.
const RESTARTS: usize = 3;

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    // Nearest rank.
    let p90 = v[(v.len() * 9).div_ceil(10).saturating_sub(1)];
    format!(
        "min {:6.0} ms  median {:6.0} ms  p90 {:6.0} ms  max {:6.0} ms  (n={})",
        ms(v[0]),
        ms(v[v.len() / 2]),
        ms(p90),
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

    println!("load: {}", uptime());
    for (nodes, rounds) in ROUNDS {
        let mut magic = Vec::new();
        let mut dns_wait = Vec::new();
        let mut creates = Vec::new();
        let mut deletes = Vec::new();
        let mut scale_ups = Vec::new();
        // Rounds whose two CoreDNS replicas were on different nodes after the create.
        let mut spread = 0;
        for _ in 0..rounds {
            let name = unique_name("bench");
            let cfg = config(&name, true, nodes);
            match create_timed(&cfg) {
                Ok((steps, t)) => {
                    if let Some((at, _)) = step(&steps, "Booting nodes") {
                        magic.push(at);
                    }
                    if let Some((_, took)) = step(&steps, "Waiting for cluster DNS") {
                        dns_wait.push(took);
                    }
                    creates.push(t);
                }
                Err(e) => {
                    let _ = minikind(&["delete", "cluster", "--name", &name]);
                    panic!("create failed: {e}");
                }
            }
            if nodes == 3 {
                let mut on = coredns_nodes(&name);
                on.sort();
                on.dedup();
                spread += usize::from(on.len() >= 2);
                match scale_coredns(&name, 4) {
                    Ok(t) => scale_ups.push(t),
                    Err(e) => eprintln!("scale-up of CoreDNS in {name}: {e}"),
                }
            }
            let (r, t) = timed(|| minikind(&["-q", "delete", "cluster", "--name", &name]));
            assert!(r.ok, "delete failed: {}", r.stderr);
            assert!(labelled_objects(&name).is_empty());
            deletes.push(t);
        }
        println!("{nodes} node(s), warm image, lab upstream:");
        println!(
            "  create until every node's magic is applied   {}",
            stats(magic)
        );
        println!(
            "  the cluster-DNS wait alone                    {}",
            stats(dns_wait)
        );
        println!(
            "  whole create (until cluster DNS is ready)     {}",
            stats(creates)
        );
        println!(
            "  delete                                        {}",
            stats(deletes)
        );
        if nodes == 3 {
            println!(
                "  first CoreDNS scale 2 → 4 until 4 ready       {}",
                stats(scale_ups)
            );
            println!(
                "  CoreDNS's 2 replicas on different nodes       {spread} of {rounds} creates"
            );
        }
        println!("load: {}", uptime());
    }

    restarts();
    println!("load: {}", uptime());
}

/// A hermetic (`internal`) or loopback-published cluster config of `nodes` nodes, lab upstream.
fn config(name: &str, internal: bool, nodes: usize) -> String {
    let mut cfg = format!(
        "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\nnetworking:\n  internal: {internal}\ndns:\n  upstream: lab\nnodes:\n- role: control-plane\n"
    );
    for _ in 1..nodes {
        cfg.push_str("- role: worker\n");
    }
    cfg
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A field of an object as `minikind get … -o json` prints it.
fn get_json(cluster: &str, args: &[&str]) -> Option<serde_json::Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend(["-o", "json", "--name", cluster]);
    let r = minikind(&full);
    r.ok.then(|| serde_json::from_str(&r.stdout).ok()).flatten()
}

/// The nodes the CoreDNS pods run on (one entry per pod).
fn coredns_nodes(cluster: &str) -> Vec<String> {
    get_json(
        cluster,
        &["pods", "-n", "kube-system", "-l", "k8s-app=kube-dns"],
    )
    .and_then(|l| l["items"].as_array().cloned())
    .unwrap_or_default()
    .iter()
    .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
    .collect()
}

/// Scales CoreDNS and returns the time until the Deployment reports every replica ready.
fn scale_coredns(cluster: &str, replicas: u64) -> Result<Duration, String> {
    let start = Instant::now();
    let n = replicas.to_string();
    let r = minikind(&[
        "scale",
        "deployment",
        "coredns",
        "-n",
        "kube-system",
        "--replicas",
        &n,
        "--name",
        cluster,
    ]);
    if !r.ok {
        return Err(r.stderr);
    }
    while start.elapsed() < Duration::from_secs(60) {
        let d = get_json(cluster, &["deployment", "coredns", "-n", "kube-system"]);
        if d.is_some_and(|d| d["status"]["readyReplicas"].as_u64() == Some(replicas)) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("not ready within 60 s".into())
}

/// The lookup every probe pod makes (ClusterFirst, through the pod's node's service rules and
/// the tunnels to wherever CoreDNS runs).
const LOOKUP: [&str; 5] = [
    "dig",
    "+short",
    "+time=1",
    "+tries=1",
    "kubernetes.default.svc.cluster.local",
];

/// Whether the probe pod `pod` resolves the name now.
fn pod_resolves(cluster: &str, pod: &str) -> bool {
    let mut args = vec!["exec", "--name", cluster, pod, "--"];
    args.extend(LOOKUP);
    let r = minikind(&args);
    r.ok && !r.stdout.trim().is_empty()
}

fn api_answers(cluster: &str) -> bool {
    minikind(&["get", "nodes", "--name", cluster]).ok
}

/// Polls until `f` holds (every 50 ms, 120 s at most); the time it first held.
fn until(start: Instant, f: impl Fn() -> bool) -> Option<Duration> {
    while start.elapsed() < Duration::from_secs(120) {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The restart measures: for each way the control plane goes down, the time from its API
/// answering again until a pod on every node resolves cluster DNS again.
fn restarts() {
    let name = unique_name("bench-restart");
    let r = minikind_stdin(
        &["create", "cluster", "--config", "-"],
        &config(&name, false, 3),
    );
    assert!(r.ok, "create failed: {}", r.stderr);
    let cp = format!("{name}-control-plane");
    let nodes = [
        cp.clone(),
        format!("{name}-worker"),
        format!("{name}-worker2"),
    ];
    let pods: Vec<String> = (0..nodes.len()).map(|i| format!("dns-probe-{i}")).collect();
    for (node, pod) in nodes.iter().zip(&pods) {
        let manifest = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "namespace": "default"},
            "spec": {
                "nodeName": node,
                "tolerations": [{"operator": "Exists"}],
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "sleep", "image": "minikind/tools", "command": ["sleep", "100000"]}],
            },
        });
        let r = minikind_stdin(
            &["apply", "-f", "-", "--name", &name],
            &manifest.to_string(),
        );
        assert!(r.ok, "{}", r.stderr);
    }
    let settle = |what: &str| {
        let start = Instant::now();
        let ok = until(start, || {
            api_answers(&name) && pods.iter().all(|p| pod_resolves(&name, p))
        });
        assert!(ok.is_some(), "{what}: the cluster did not settle");
    };
    settle("after create");
    println!(
        "restart cluster: CoreDNS replicas on {:?}",
        coredns_nodes(&name)
    );
    let mut results: Vec<(&str, Vec<Duration>, Vec<Duration>)> = Vec::new();
    for kind in ["docker restart", "docker kill + start", "agent crash"] {
        let mut api = Vec::new();
        let mut dns = Vec::new();
        // The node's restart policy (on-failure:1, as KIND's) starts a crashed node once, and
        // Docker counts that against the container until it is started by hand.
        let repeats = if kind == "agent crash" { 1 } else { RESTARTS };
        for _ in 0..repeats {
            let started_at = || docker(&["inspect", "-f", "{{.State.StartedAt}}", &cp]).stdout;
            let before = started_at();
            let start = Instant::now();
            match kind {
                "docker restart" => {
                    let r = docker(&["restart", "-t", "2", &cp]);
                    assert!(r.ok, "{}", r.stderr);
                }
                "docker kill + start" => {
                    let r = docker(&["kill", &cp]);
                    assert!(r.ok, "{}", r.stderr);
                    let r = docker(&["start", &cp]);
                    assert!(r.ok, "{}", r.stderr);
                }
                _ => {
                    // PID 1 only reaps and forwards signals; its child is the agent proper.
                    let children = docker(&["exec", &cp, "cat", "/proc/1/task/1/children"]);
                    let pid = children
                        .stdout
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    assert!(!pid.is_empty(), "no agent under PID 1: {}", children.stderr);
                    // The node image has no `kill` of its own; busybox comes with the host's.
                    // The exec itself may fail: the node goes down with its agent while it runs.
                    // The start time checked below shows whether the node restarted.
                    let _ = docker(&["exec", &cp, "busybox", "kill", "-9", &pid]);
                }
            }
            // The API may still answer for a moment before the node goes down (the agent
            // crash): wait for the container to have started again first.
            let Some(t_api) = until(start, || started_at() != before && api_answers(&name)) else {
                eprintln!("{kind}: the API did not come back");
                continue;
            };
            let all_dns = std::thread::scope(|s| {
                let name = &name;
                let handles: Vec<_> = pods
                    .iter()
                    .map(|p| s.spawn(move || until(start, || pod_resolves(name, p))))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap())
                    .collect::<Option<Vec<_>>>()
            });
            let Some(all_dns) = all_dns else {
                eprintln!("{kind}: DNS did not come back from every node");
                continue;
            };
            let last = all_dns.into_iter().max().unwrap_or_default();
            api.push(t_api);
            dns.push(last.saturating_sub(t_api));
            settle(kind);
        }
        results.push((kind, api, dns));
    }
    let _ = minikind(&["delete", "cluster", "--name", &name]);
    println!(
        "3 nodes, control plane down and up again (API on the host's loopback, lab upstream):"
    );
    for (kind, api, dns) in results {
        println!(
            "  {kind:20} until the API answers again                {}",
            stats(api)
        );
        println!(
            "  {kind:20} API answering → DNS from a pod on every node {}",
            stats(dns)
        );
    }
}
