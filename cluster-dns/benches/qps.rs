//! Throughput benchmark (not a test): dnsperf on loopback against cluster-dns serving
//! (a) cluster names from 10 000 Services / 50 000 endpoints and (b) cached forwarded names,
//! and in the same run unbound serving the same names as local data. Prints QPS, average and
//! p99 latency, and cluster-dns's RSS.
//!
//! Run: `cargo bench -p minikind-cluster-dns --bench qps` (needs `dnsperf` and `unbound`;
//! `BENCH_SECONDS` sets the length of each run, default 10).

#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_api::*;
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

const SERVICES_N: usize = 10_000;
const ENDPOINTS_PER_SERVICE: usize = 5;
const NAMESPACES_N: usize = 100;
const FORWARDED_N: usize = 1_000;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let p = u.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn svc_ip(i: usize) -> String {
    format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250)
}

fn ep_ip(i: usize, j: usize) -> String {
    let n = i * ENDPOINTS_PER_SERVICE + j;
    format!(
        "10.{}.{}.{}",
        100 + n / 65000,
        (n % 65000) / 250,
        1 + n % 250
    )
}

fn svc_name(i: usize) -> (String, String) {
    (format!("ns-{}", i % NAMESPACES_N), format!("svc-{i}"))
}

/// A loopback upstream answering every A query with 192.0.2.10 (TTL 300).
async fn upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = s.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::response(req.metadata.id, req.metadata.op_code);
            m.metadata.recursion_available = true;
            m.metadata.recursion_desired = req.metadata.recursion_desired;
            m.queries = req.queries.clone();
            if let Some(q) = req.queries.first()
                && q.query_type == RecordType::A
            {
                m.add_answer(Record::from_rdata(
                    q.name.clone(),
                    300,
                    RData::A(A::new(192, 0, 2, 10)),
                ));
            }
            if let Ok(out) = m.to_vec() {
                let _ = s.send_to(&out, from).await;
            }
        }
    });
    (addr, h)
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct PerfResult {
    qps: f64,
    avg_ms: f64,
    p99_ms: f64,
    lost: String,
}

/// Runs dnsperf and reads QPS and average latency; p99 comes from a second, short run that
/// prints every query's latency (`-v`).
fn dnsperf(port: u16, file: &str, seconds: u64) -> PerfResult {
    let out = Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            file,
            "-l",
            &seconds.to_string(),
        ])
        .args(["-c", "8", "-q", "200", "-T", "2"])
        .output()
        .expect("run dnsperf (apt-get install dnsperf)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let grab = |key: &str| -> f64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let lost = text
        .lines()
        .find(|l| l.contains("Queries lost"))
        .map(|l| l.trim().to_string())
        .unwrap_or_default();
    // p99 from a short second run with per-query lines ("> NOERROR name A 0.000123").
    let v = Command::new("dnsperf")
        .args([
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
            file,
            "-l",
            "3",
        ])
        .args(["-c", "8", "-q", "200", "-T", "2", "-v"])
        .output()
        .expect("run dnsperf -v");
    let mut lat: Vec<f64> = String::from_utf8_lossy(&v.stdout)
        .lines()
        .filter(|l| l.starts_with("> "))
        .filter_map(|l| l.split_whitespace().last()?.parse().ok())
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let p99 = if lat.is_empty() {
        eprintln!("dnsperf -v printed no latencies");
        f64::NAN
    } else {
        lat[((lat.len() as f64 * 0.99) as usize).min(lat.len() - 1)]
    };
    PerfResult {
        qps: grab("Queries per second"),
        avg_ms: grab("Average Latency (s)") * 1000.0,
        p99_ms: p99 * 1000.0,
        lost,
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    for tool in ["dnsperf", "unbound"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            eprintln!("{tool} not installed: apt-get install -y dnsperf unbound");
            std::process::exit(1);
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, _up, up_addr) = rt.block_on(async {
        let api = FakeApi::start().await;
        for n in 0..NAMESPACES_N {
            api.put(NAMESPACES, namespace(&format!("ns-{n}")));
        }
        for i in 0..SERVICES_N {
            let (ns, name) = svc_name(i);
            api.put(
                SERVICES,
                service(&ns, &name, &[&svc_ip(i)], &[("http", 80, "TCP")]),
            );
            let eps: Vec<String> = (0..ENDPOINTS_PER_SERVICE).map(|j| ep_ip(i, j)).collect();
            let eps: Vec<Ep> = eps
                .iter()
                .map(|ip| Ep(ip, Some(true), None, None))
                .collect();
            api.put(
                SLICES,
                slice(
                    &ns,
                    &format!("{name}-abcde"),
                    &name,
                    "IPv4",
                    &eps,
                    &[("http", 8080, "TCP")],
                ),
            );
        }
        let (up, h) = upstream().await;
        (api, h, up)
    });

    // cluster-dns, as its own process (so its RSS is its own).
    let port = free_port();
    let ready = free_port();
    let corefile = dir.path().join("Corefile");
    std::fs::write(
        &corefile,
        format!(
            ".:{port} {{\n    bind 127.0.0.1\n    errors\n    ready 127.0.0.1:{ready}\n    kubernetes cluster.local in-addr.arpa ip6.arpa {{\n       endpoint {}\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }}\n    forward . {up_addr} {{\n       max_concurrent 1000\n    }}\n    cache 30\n    loop\n    loadbalance\n}}\n",
            api.url()
        ),
    )
    .expect("write Corefile");
    let started = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_cluster-dns"))
        .args(["-conf", corefile.to_str().expect("utf-8 path"), "-quiet"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start cluster-dns");
    let pid = child.id();
    let _cd = Killed(child);
    let ready_addr = SocketAddr::from(([127, 0, 0, 1], ready));
    loop {
        let ok = std::net::TcpStream::connect(ready_addr)
            .ok()
            .and_then(|mut s| {
                use std::io::Read;
                s.write_all(b"GET /ready HTTP/1.0\r\n\r\n").ok()?;
                let mut b = String::new();
                s.read_to_string(&mut b).ok()?;
                Some(b.starts_with("HTTP/1.1 200") || b.starts_with("HTTP/1.0 200"))
            });
        if ok == Some(true) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!("cluster-dns not ready after 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sync_time = started.elapsed();
    let (rss_synced, _) = rss_kib(pid);

    // Query files.
    let cluster_file = dir.path().join("cluster.txt");
    let mut f = std::fs::File::create(&cluster_file).expect("create");
    for i in 0..SERVICES_N {
        let (ns, name) = svc_name(i);
        writeln!(f, "{name}.{ns}.svc.cluster.local A").expect("write");
    }
    drop(f);
    let fwd_file = dir.path().join("forwarded.txt");
    let mut f = std::fs::File::create(&fwd_file).expect("create");
    for i in 0..FORWARDED_N {
        writeln!(f, "host-{i}.example.test A").expect("write");
    }
    drop(f);

    // unbound with the same names as local data.
    let ub_port = free_port();
    let ub_conf = dir.path().join("unbound.conf");
    let mut u = std::fs::File::create(&ub_conf).expect("create");
    writeln!(
        u,
        "server:\n  interface: 127.0.0.1\n  port: {ub_port}\n  do-ip6: no\n  num-threads: 2\n  so-reuseport: yes\n  chroot: \"\"\n  username: \"\"\n  directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  do-daemonize: no\n  access-control: 127.0.0.0/8 allow\n  local-zone: \"cluster.local.\" static\n  local-zone: \"example.test.\" static",
        dir.path().display()
    )
    .expect("write");
    for i in 0..SERVICES_N {
        let (ns, name) = svc_name(i);
        writeln!(
            u,
            "  local-data: \"{name}.{ns}.svc.cluster.local. 30 IN A {}\"",
            svc_ip(i)
        )
        .expect("write");
    }
    for i in 0..FORWARDED_N {
        writeln!(
            u,
            "  local-data: \"host-{i}.example.test. 300 IN A 192.0.2.10\""
        )
        .expect("write");
    }
    drop(u);
    let ub = Command::new("unbound")
        .args(["-d", "-c", ub_conf.to_str().expect("utf-8")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start unbound");
    let _ub = Killed(ub);
    std::thread::sleep(Duration::from_millis(1500));

    let cluster = cluster_file.to_str().expect("utf-8");
    let forwarded = fwd_file.to_str().expect("utf-8");
    let a_cd = dnsperf(port, cluster, seconds);
    let a_ub = dnsperf(ub_port, cluster, seconds);
    // Warm the cache for the forwarded names right before measuring them: the kubeadm Corefile
    // caps their TTL at 30 s, and the run must stay inside it.
    let _ = dnsperf(port, forwarded, 1);
    let b_cd = dnsperf(port, forwarded, seconds);
    let b_ub = dnsperf(ub_port, forwarded, seconds);
    let results = [
        ("cluster-dns", "(a) cluster names", a_cd),
        ("unbound", "(a) cluster names", a_ub),
        ("cluster-dns", "(b) cached forwarded names", b_cd),
        ("unbound", "(b) cached forwarded names", b_ub),
    ];
    let (rss_after, hwm) = rss_kib(pid);
    println!(
        "cluster-dns: {SERVICES_N} services, {} endpoints, synced and ready in {:.1}s",
        SERVICES_N * ENDPOINTS_PER_SERVICE,
        sync_time.as_secs_f64()
    );
    println!();
    println!("| server | workload | QPS | avg latency (ms) | p99 latency (ms) | lost |");
    println!("|---|---|---|---|---|---|");
    for (server, load, r) in &results {
        println!(
            "| {server} | {load} | {:.0} | {:.3} | {:.3} | {} |",
            r.qps, r.avg_ms, r.p99_ms, r.lost
        );
    }
    println!();
    println!(
        "cluster-dns RSS: {:.1} MB after sync, {:.1} MB after the runs (peak {:.1} MB)",
        rss_synced as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    if let Some(secs) = std::env::var("BENCH_HOLD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // Keeps the servers up for inspection (RSS, heap) before tearing down.
        println!("holding cluster-dns (pid {pid}) for {secs}s");
        std::thread::sleep(Duration::from_secs(secs));
    }
    drop(api);
}
