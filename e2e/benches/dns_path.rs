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

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use minikind_test_support::{Cluster, docker};

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
    let node_pid = docker(&["inspect", "-f", "{{.State.Pid}}", &node])
        .stdout
        .trim()
        .to_string();
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
    let pod_netns = PathBuf::from(format!("/proc/{node_pid}/root/run/netns/mk-{uid}"));
    let node_netns = PathBuf::from(format!("/proc/{node_pid}/ns/net"));
    let kube_dns: SocketAddr = "10.96.0.10:53".parse().unwrap();

    // Cold: a name nobody asked before, every time.
    let run_id = std::process::id();
    let names: Vec<String> = (0..LATENCY_SAMPLES)
        .map(|i| format!("c{run_id}-{i}.wild.example.test."))
        .collect();
    let cold = in_netns(&pod_netns, move || latencies(kube_dns, &names));
    // Cached: one name, warmed first.
    let warm = vec!["www.example.test.".to_string(); LATENCY_SAMPLES + 10];
    let mut cached = in_netns(&pod_netns, move || latencies(kube_dns, &warm));
    cached.drain(..10);
    report(&format!("{mode}: pod → a new upstream name (cold)"), cold);
    report(
        &format!("{mode}: pod → www.example.test, cached by CoreDNS"),
        cached,
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
        let (qps, lost) = load(&node_netns, server, name);
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

/// Runs `work` on a thread that has joined the network namespace at `path`.
fn in_netns<T: Send + 'static>(path: &Path, work: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let f = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("entering {}: {e}", path.display()));
        work()
    })
    .join()
    .expect("the namespace thread")
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// One exchange; `Some(rtt)` for a NOERROR reply with an answer.
fn ask(sock: &UdpSocket, server: SocketAddr, id: u16, name: &str) -> Option<Duration> {
    let q = query(id, name);
    let start = Instant::now();
    sock.send_to(&q, server).ok()?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = sock.recv_from(&mut buf).ok()?;
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id != id {
            continue; // a late reply to an earlier, timed-out query
        }
        let ok = reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty();
        return ok.then(|| start.elapsed());
    }
}

fn socket() -> UdpSocket {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock
}

fn latencies(server: SocketAddr, names: &[String]) -> Vec<Duration> {
    let sock = socket();
    names
        .iter()
        .enumerate()
        .filter_map(|(i, n)| ask(&sock, server, i as u16, n))
        .collect()
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    if samples.is_empty() {
        println!("{what}: no answers");
        return;
    }
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n={})",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*samples.last().unwrap()),
        samples.len()
    );
}

/// Closed-loop load: each client keeps one query in flight for the whole run.
fn load(netns: &Path, server: SocketAddr, name: &str) -> (f64, u64) {
    let done = std::sync::Arc::new(AtomicU64::new(0));
    let lost = std::sync::Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let clients: Vec<_> = (0..LOAD_CLIENTS)
        .map(|_| {
            let (netns, name) = (netns.to_path_buf(), name.to_string());
            let (done, lost) = (done.clone(), lost.clone());
            std::thread::spawn(move || {
                in_netns(&netns, move || {
                    let sock = socket();
                    let end = Instant::now() + Duration::from_secs(LOAD_SECONDS);
                    let mut id: u16 = 0;
                    while Instant::now() < end {
                        id = id.wrapping_add(1);
                        match ask(&sock, server, id, &name) {
                            Some(_) => done.fetch_add(1, Ordering::Relaxed),
                            None => lost.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let qps = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    (qps, lost.load(Ordering::Relaxed))
}
