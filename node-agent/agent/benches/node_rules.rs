//! Numbers for the node's rule work (not a test; prints what it measures):
//!
//! - kube-proxy rule rendering for 1 000 and 10 000 services × 5 endpoints;
//! - applying them with the real `iptables-restore --noflush` (nft and legacy) in a private
//!   network namespace created here (skipped when not root), full sync and a re-sync;
//! - the network-magic transform over a big `iptables-save` dump;
//! - the tools' stub-resolver round trip against a UDP responder on loopback.
//!
//! Run: `cargo bench -p minikind-agent --bench node_rules`

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use minikind_kube_proxy::service_rules::{self, Endpoint, Protocol, ProxyConfig, ServicePort};
use minikind_network_magic as network_magic;
use minikind_pod_tools::client::{self, ResolverConfig};

fn services(count: usize, endpoints: usize) -> Vec<ServicePort> {
    (0..count)
        .map(|i| ServicePort {
            namespace: format!("ns{}", i % 50),
            name: format!("svc-{i}"),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            cluster_ip: IpAddr::V4(Ipv4Addr::new(10, 96, (i / 250) as u8, (i % 250 + 1) as u8)),
            port: 80,
            node_port: None,
            endpoints: (0..endpoints)
                .map(|e| {
                    let n = i * endpoints + e;
                    Endpoint {
                        ip: IpAddr::V4(Ipv4Addr::new(
                            10,
                            244,
                            (n / 250 % 256) as u8,
                            (n % 250 + 1) as u8,
                        )),
                        port: 8080,
                    }
                })
                .collect(),
        })
        .collect()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn bench_render() {
    println!("## kube-proxy rule rendering (services × 5 endpoints)");
    for count in [1_000, 10_000] {
        let svcs = services(count, 5);
        let mut samples = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let (rendered, took) =
                time(|| service_rules::render(&svcs, &ProxyConfig::default(), &[]));
            samples.push(took);
            last = Some(rendered);
        }
        let r = last.expect("five runs");
        println!(
            "render {count:>6} services: median {:>8.2} ms, {} nat rules, {} nat chains, {} filter rules, {:.1} MiB",
            median(samples).as_secs_f64() * 1e3,
            r.nat_rules,
            r.nat_chains,
            r.filter_rules,
            r.text.len() as f64 / 1048576.0
        );
    }
}

fn bench_restore(flavours: Vec<String>, counts: Vec<usize>) {
    println!("\n## iptables-restore --noflush in a private network namespace");
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root");
        return;
    }
    let outcome = std::thread::spawn(move || {
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            println!("skipped: unshare(CLONE_NEWNET) not permitted");
            return;
        }
        for flavour in &flavours {
            let restore = format!("/usr/sbin/iptables-{flavour}-restore");
            let iptables = format!("/usr/sbin/iptables-{flavour}");
            if !Path::new(&restore).exists() {
                println!("{flavour}: {restore} missing, skipped");
                continue;
            }
            if let Err(e) = service_rules::ensure_jumps(Path::new(&iptables)) {
                println!("{flavour}: ensuring jumps failed: {e:#}");
                continue;
            }
            for &count in &counts {
                let mut svcs = services(count, 5);
                let rendered = service_rules::render(&svcs, &ProxyConfig::default(), &[]);
                let (result, full) = time(|| service_rules::restore(Path::new(&restore), &rendered));
                if let Err(e) = result {
                    println!("{flavour} {count}: restore failed: {e:#}");
                    continue;
                }
                // A re-sync after one endpoint changed (kube-proxy writes everything again).
                svcs[0].endpoints[0].port = 8081;
                let again = service_rules::render(&svcs, &ProxyConfig::default(), &[]);
                let (result, resync) = time(|| service_rules::restore(Path::new(&restore), &again));
                if let Err(e) = result {
                    println!("{flavour} {count}: re-sync failed: {e:#}");
                    continue;
                }
                println!(
                    "{flavour:>6} {count:>6} services × 5: first sync {:>8.0} ms, re-sync {:>8.0} ms ({} rules)",
                    full.as_secs_f64() * 1e3,
                    resync.as_secs_f64() * 1e3,
                    rendered.nat_rules + rendered.filter_rules
                );
            }
        }
    })
    .join();
    if outcome.is_err() {
        println!("restore benchmark thread panicked");
    }
}

fn bench_transform() {
    println!("\n## network-magic transform");
    let mut dump = String::from(
        "# Generated by iptables-nft-save v1.8.9 (nf_tables) on x\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER_OUTPUT - [0:0]\n\
         -A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553\n",
    );
    let kube = service_rules::render(&services(10_000, 5), &ProxyConfig::default(), &[]);
    for line in kube.text.lines().filter(|l| l.starts_with("-A ")) {
        dump.push_str(line);
        dump.push('\n');
    }
    dump.push_str("COMMIT\n");
    let lines = dump.lines().count();
    let samples: Vec<Duration> = (0..5)
        .map(|_| time(|| network_magic::transform(&dump, Ipv4Addr::new(172, 18, 0, 1))).1)
        .collect();
    println!(
        "transform of a {lines}-line dump ({:.1} MiB): median {:.1} ms",
        dump.len() as f64 / 1048576.0,
        median(samples).as_secs_f64() * 1e3
    );
}

fn bench_lookup() {
    println!("\n## stub-resolver round trip (UDP, loopback responder)");
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = server.local_addr().expect("local address");
    server
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut idle = 0;
        while idle < 5 {
            let Ok((n, from)) = server.recv_from(&mut buf) else {
                idle += 1;
                continue;
            };
            idle = 0;
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
            reply.queries = query.queries.clone();
            if let Some(q) = query.queries.first() {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    30,
                    RData::A(A::new(10, 96, 0, 1)),
                ));
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = server.send_to(&bytes, from);
            }
        }
    });
    let config = ResolverConfig {
        servers: vec![addr],
        search: vec![
            "default.svc.cluster.local".into(),
            "svc.cluster.local".into(),
            "cluster.local".into(),
        ],
        ndots: 5,
        timeout: Duration::from_secs(1),
        attempts: 1,
        tcp: false,
        edns: false,
    };
    let rounds = 5_000;
    let (_, took) = time(|| {
        for _ in 0..rounds {
            let _ = client::lookup(&config, "kubernetes", RecordType::A);
        }
    });
    println!(
        "{rounds} lookups of a search-list name: {:.1} µs each",
        took.as_secs_f64() * 1e6 / rounds as f64
    );
    let _ = responder.join();
}

/// Arguments (after cargo's `--bench`): `all` (default) or one part: `render`, `transform`,
/// `lookup`, `restore [nft|legacy] [COUNT…]`.
fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let part = args.first().map_or("all", String::as_str);
    let flavours: Vec<String> = args
        .iter()
        .filter(|a| *a == "nft" || *a == "legacy")
        .cloned()
        .collect();
    let flavours = if flavours.is_empty() {
        vec!["nft".to_string(), "legacy".to_string()]
    } else {
        flavours
    };
    let counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let counts = if counts.is_empty() {
        vec![1_000, 10_000]
    } else {
        counts
    };
    match part {
        "render" => bench_render(),
        "restore" => bench_restore(flavours, counts),
        "transform" => bench_transform(),
        "lookup" => bench_lookup(),
        "all" => {
            bench_render();
            bench_transform();
            bench_lookup();
            bench_restore(flavours, counts);
        }
        other => eprintln!("unknown part {other:?}: all, render, restore, transform, lookup"),
    }
}
