//! Queries per second of the embedded resolver on loopback, measured with dnsperf
//! (`apt-get install -y dnsperf`): a local container name, and a name forwarded to the lab
//! upstream (which always has it: the forwarding cost without any cache). Prints numbers;
//! never fails a test run. Run: `cargo bench -p minikind-dns-embedded --bench qps`.
//! `QPS_SECONDS` sets the length of each run (default 5).

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;

use minikind_dns_embedded::lab_upstream::{self, Zone};
use minikind_dns_embedded::querylog::QueryLog;
use minikind_dns_embedded::{
    ContainerNames, EmbeddedConfig, EmbeddedResolver, NamesTable, NetworkNames,
};

fn main() {
    if Command::new("dnsperf").arg("-h").output().is_err() {
        println!("dnsperf is not installed (apt-get install -y dnsperf); no numbers measured");
        return;
    }
    let seconds: u32 = std::env::var("QPS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (upstream, resolver) = runtime.block_on(async {
        let upstream = lab_upstream::start(
            "127.0.0.1:0".parse().unwrap(),
            Zone::default_zone(),
            QueryLog::Discard,
        )
        .await
        .expect("lab upstream");
        let names = NamesTable {
            networks: vec![NetworkNames {
                network: "minikind-bench".into(),
                containers: vec![ContainerNames {
                    name: "bench-worker".into(),
                    ipv4: Some("172.18.0.3".parse().unwrap()),
                    ..Default::default()
                }],
            }],
        };
        let config = EmbeddedConfig {
            listen_ip: "127.0.0.1".parse().unwrap(),
            servers: vec![upstream.addr()],
            log: QueryLog::Discard,
            ..Default::default()
        };
        let resolver = EmbeddedResolver::start(config, &names)
            .await
            .expect("embedded resolver");
        (upstream, resolver)
    });
    println!(
        "dns-embedded QPS on loopback, dnsperf -l {seconds} -c 4 -q 64, 2 tokio workers, query log off"
    );
    for (label, server, query) in [
        (
            "lab upstream directly (authoritative)",
            upstream.addr(),
            "www.example.test A",
        ),
        (
            "dns-embedded, local name",
            resolver.udp_addr(),
            "bench-worker A",
        ),
        (
            "dns-embedded, forwarded to lab upstream",
            resolver.udp_addr(),
            "www.example.test A",
        ),
    ] {
        match dnsperf(server, query, seconds) {
            Ok((qps, latency)) => {
                println!("{label:<42} {qps:>10.0} qps   avg latency {latency}")
            }
            Err(e) => println!("{label:<42} failed: {e}"),
        }
    }
    drop(resolver);
    drop(upstream);
}

/// Runs dnsperf against `server` with one repeated query; returns (QPS, average latency text).
fn dnsperf(server: SocketAddr, query: &str, seconds: u32) -> Result<(f64, String), String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    writeln!(file, "{query}").map_err(|e| e.to_string())?;
    let out = Command::new("dnsperf")
        .args([
            "-s",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
        ])
        .args(["-d", &file.path().display().to_string()])
        .args(["-l", &seconds.to_string(), "-c", "4", "-q", "64"])
        .output()
        .map_err(|e| format!("running dnsperf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim_start()[key.len()..].trim().to_string())
    };
    let qps = field("Queries per second:")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no QPS in dnsperf output:\n{text}"))?;
    let lost = field("Queries lost:").unwrap_or_default();
    let latency = field("Average Latency (s):").unwrap_or_default();
    Ok((qps, format!("{latency} s, lost {lost}")))
}
