//! dns-embedded against Docker's own embedded resolver, in the same run and the same network
//! namespace: a probe container on an `--internal` network (its `--dns` is a lab upstream
//! container), dnsperf run inside the probe's namespace (nsenter) against Docker's
//! 127.0.0.11:53 and against dns-embedded serving 127.0.0.11 at its own port in that namespace.
//! Queries: the probe's own container name (answered locally) and `www.example.test` (forwarded
//! to the lab upstream). No traffic leaves the containers the bench creates, and it removes
//! them when done.
//!
//! Needs a Docker engine, a `minikind/node:*` image (`minikind build node-image`; or set
//! `MINIKIND_NODE_IMAGE`), dnsperf and nsenter; otherwise it says what is missing and exits.
//! Run: `cargo bench -p minikind-dns-embedded --bench vs_docker` (`QPS_SECONDS`, default 5).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;

use minikind_dns_embedded::querylog::QueryLog;
use minikind_dns_embedded::{
    ContainerNames, EmbeddedConfig, EmbeddedResolver, NamesTable, NetworkNames,
};
use nix::sched::{CloneFlags, setns};

/// Docker objects made by this run; removed on drop, also after a failure.
struct Lab {
    prefix: String,
    containers: Vec<String>,
    network: Option<String>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        if let Some(n) = &self.network {
            let _ = docker(&["network", "rm", n]);
        }
    }
}

fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| format!("running docker: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn pick_image() -> Result<String, String> {
    if let Ok(image) = std::env::var("MINIKIND_NODE_IMAGE") {
        return Ok(image);
    }
    // `docker images` lists the newest first.
    let list = docker(&[
        "images",
        "minikind/node",
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ])?;
    list.lines()
        .find(|l| !l.ends_with(":<none>"))
        .map(str::to_string)
        .ok_or_else(|| "no minikind/node image (run `minikind build node-image`)".to_string())
}

fn main() {
    for tool in ["dnsperf", "nsenter"] {
        if Command::new(tool).arg("--help").output().is_err() {
            println!("{tool} is not installed; no numbers measured");
            return;
        }
    }
    if let Err(e) = run() {
        println!("vs_docker: not measured: {e}");
    }
}

fn run() -> Result<(), String> {
    docker(&["version", "--format", "{{.Server.Version}}"])
        .map_err(|e| format!("no Docker engine: {e}"))?;
    let image = pick_image()?;
    let seconds: u32 = std::env::var("QPS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut lab = Lab {
        prefix: format!("mk-bench-{:08x}", rand::random::<u32>()),
        containers: Vec::new(),
        network: None,
    };
    let network = lab.prefix.clone();
    docker(&["network", "create", "--internal", &network])?;
    lab.network = Some(network.clone());

    let upstream = format!("{}-upstream", lab.prefix);
    docker(&[
        "run",
        "-d",
        "--name",
        &upstream,
        "--network",
        &network,
        "--entrypoint",
        "/usr/local/bin/minikind",
        &image,
        "lab-upstream",
    ])?;
    lab.containers.push(upstream.clone());
    let upstream_ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &upstream,
    ])?;
    let probe = format!("{}-probe", lab.prefix);
    docker(&[
        "run",
        "-d",
        "--name",
        &probe,
        "--network",
        &network,
        "--dns",
        &upstream_ip,
        "--entrypoint",
        "/usr/local/bin/minikind",
        &image,
        "sleep",
        "3600",
    ])?;
    lab.containers.push(probe.clone());
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &probe])?;
    let probe_ip: IpAddr = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &probe,
    ])?
    .parse()
    .map_err(|e| format!("probe address: {e}"))?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let upstream_addr: SocketAddr = format!("{upstream_ip}:53")
        .parse()
        .map_err(|e| format!("upstream address: {e}"))?;

    // Every runtime thread lives in the probe's namespace, so the resolver forwards from there
    // exactly as Docker's does for a --dns server.
    let ns_file = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || {
            setns(&ns_file, CloneFlags::CLONE_NEWNET).expect("entering the probe's namespace");
        })
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let names = NamesTable {
        networks: vec![NetworkNames {
            network: network.clone(),
            containers: vec![ContainerNames {
                name: probe.clone(),
                ipv4: match probe_ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                },
                ..Default::default()
            }],
        }],
    };
    let ours = runtime.block_on(async {
        EmbeddedResolver::start(
            EmbeddedConfig {
                servers: vec![upstream_addr],
                netns: Some(netns.clone()),
                log: QueryLog::Discard,
                ..Default::default()
            },
            &names,
        )
        .await
        .map_err(|e| e.to_string())
    })?;
    let docker_version = docker(&["version", "--format", "{{.Server.Version}}"])?;
    println!(
        "Docker {docker_version} embedded resolver vs dns-embedded, both in one container's namespace; \
         dnsperf -l {seconds} -c 4 -q 64 run there with nsenter; image {image}"
    );
    let local = format!("{probe} A");
    let forwarded = "www.example.test A".to_string();
    for (label, port, query) in [
        ("Docker's resolver, local name", 53, &local),
        ("dns-embedded, local name", ours.udp_addr().port(), &local),
        ("Docker's resolver, forwarded", 53, &forwarded),
        (
            "dns-embedded, forwarded",
            ours.udp_addr().port(),
            &forwarded,
        ),
    ] {
        match dnsperf_in(&pid, port, query, seconds) {
            Ok(result) => println!("{label:<32} {result}"),
            Err(e) => println!("{label:<32} failed: {e}"),
        }
    }
    drop(ours);
    drop(runtime);
    drop(lab);
    Ok(())
}

/// dnsperf in the namespace of process `pid`, against 127.0.0.11:`port`.
fn dnsperf_in(pid: &str, port: u16, query: &str, seconds: u32) -> Result<String, String> {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    writeln!(file, "{query}").map_err(|e| e.to_string())?;
    let out = Command::new("nsenter")
        .args([
            "-t",
            pid,
            "-n",
            "dnsperf",
            "-s",
            "127.0.0.11",
            "-p",
            &port.to_string(),
        ])
        .args(["-d", &file.path().display().to_string()])
        .args(["-l", &seconds.to_string(), "-c", "4", "-q", "64"])
        .output()
        .map_err(|e| format!("running nsenter dnsperf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(key))
            .map(|l| l.trim_start()[key.len()..].trim().to_string())
    };
    let qps = field("Queries per second:").ok_or_else(|| format!("no QPS in:\n{text}"))?;
    Ok(format!(
        "{qps:>12} qps   avg latency {} s   lost {}",
        field("Average Latency (s):").unwrap_or_default(),
        field("Queries lost:").unwrap_or_default()
    ))
}
