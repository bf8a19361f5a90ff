//! `minikind dns-embedded --names FILE --servers IP,… [--netns PATH] [--listen-ip 127.0.0.11]`

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::Parser;

use super::ext_servers;
use super::forward::{FORWARD_TIMEOUT, MAX_EXTERNAL_SERVERS, MAX_IN_FLIGHT};
use super::names::NamesTable;
use super::{DOCKER_RESOLVER_IP, EmbeddedConfig, EmbeddedResolver};
use crate::querylog::QueryLog;
use minikind_iptables::{Commands, Flavour};

/// How often the names file is checked for changes.
const NAMES_POLL: Duration = Duration::from_secs(1);

#[derive(Parser, Debug)]
#[command(
    name = "dns-embedded",
    about = "Serve Docker's embedded DNS resolver (127.0.0.11) with Docker's NAT rules"
)]
struct Args {
    /// JSON names table (networks, containers, aliases, addresses); re-read when it changes.
    #[arg(long)]
    names: PathBuf,
    /// External servers, in order: IP or IP:PORT (port 53 by default); Docker uses the first 3.
    #[arg(long, value_delimiter = ',', value_parser = parse_server)]
    servers: Vec<SocketAddr>,
    /// Also take the servers Docker gave the container from this resolv.conf (its
    /// `# ExtServers: [...]` comment, else its nameserver lines), after any --servers.
    #[arg(long)]
    servers_from: Option<PathBuf>,
    /// Network namespace to serve in, e.g. /proc/<pid>/ns/net (default: the current one).
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(DOCKER_RESOLVER_IP))]
    listen_ip: IpAddr,
    /// iptables back end for the NAT rules: "" (the `iptables` alternative), legacy or nft.
    #[arg(long, default_value = "", value_parser = ["", "legacy", "nft"])]
    iptables: String,
    /// Do not install the DOCKER_OUTPUT/DOCKER_POSTROUTING rules.
    #[arg(long)]
    no_iptables: bool,
    /// Answer unknown single-label A/AAAA names empty instead of forwarding them (Docker does
    /// this when the container set its own ndots).
    #[arg(long)]
    ndots_guard: bool,
    /// Once serving (and the NAT rules are in place), write `{"udp":…,"tcp":…}` here.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Timeout per external server, in milliseconds.
    #[arg(long, default_value_t = FORWARD_TIMEOUT.as_millis() as u64)]
    timeout_ms: u64,
}

/// Parses `IP` (port 53) or `IP:PORT` / `[IPv6]:PORT`.
fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not an IP address or IP:PORT"))
}

/// `--servers` first, then the ones Docker recorded in `--servers-from`, without duplicates.
/// A host-loopback server (`host(127.0.0.53)`) is skipped: Docker dials those from the host's
/// namespace, and from inside the container they are unreachable.
fn collect_servers(
    explicit: &[SocketAddr],
    from: Option<&Path>,
) -> anyhow::Result<Vec<SocketAddr>> {
    let mut servers = explicit.to_vec();
    let Some(path) = from else {
        return Ok(servers);
    };
    for server in ext_servers::from_file(path)? {
        if server.from_host && server.addr.ip().is_loopback() {
            eprintln!(
                "dns-embedded: skipping {} from {}: a loopback server of the host",
                server.addr,
                path.display()
            );
            continue;
        }
        if !servers.contains(&server.addr) {
            servers.push(server.addr);
        }
    }
    Ok(servers)
}

/// Entry point; returns the exit code.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let result = run(args);
    QueryLog::Stdout.flush();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("dns-embedded: {e:#}");
            1
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let table = NamesTable::load(&args.names)?;
    let servers = collect_servers(&args.servers, args.servers_from.as_deref())?;
    if servers.len() > MAX_EXTERNAL_SERVERS {
        eprintln!(
            "dns-embedded: {} servers given, only the first {MAX_EXTERNAL_SERVERS} are used (as in Docker)",
            servers.len()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let config = EmbeddedConfig {
            listen_ip: args.listen_ip,
            servers,
            forward_timeout: Duration::from_millis(args.timeout_ms),
            max_in_flight: MAX_IN_FLIGHT,
            ndots_guard: args.ndots_guard,
            netns: args.netns.clone(),
            log: QueryLog::Stdout,
        };
        let mut resolver = EmbeddedResolver::start(config, &table).await?;
        if !args.no_iptables {
            let tools = Commands::on_path(
                Flavour::parse_optional(&args.iptables).map_err(anyhow::Error::msg)?,
            );
            // Runs iptables for a moment; nothing else is being served yet.
            let rules = resolver.apply_rules(&tools)?;
            println!(
                "[INFO] dns-embedded: DNAT {ip}:53 -> udp {ip}:{} tcp {ip}:{}",
                rules.udp_port,
                rules.tcp_port,
                ip = rules.resolver_ip
            );
        }
        println!(
            "[INFO] dns-embedded: listening on udp {} tcp {}, forwarding to {:?}",
            resolver.udp_addr(),
            resolver.tcp_addr(),
            resolver.servers()
        );
        if let Some(path) = &args.ready_file {
            let ready = serde_json::json!({
                "udp": resolver.udp_addr().to_string(),
                "tcp": resolver.tcp_addr().to_string(),
                "servers": resolver.servers().iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            std::fs::write(path, format!("{ready}\n"))
                .with_context(|| format!("writing --ready-file {}", path.display()))?;
        }
        let watcher = tokio::spawn(watch_names(args.names.clone(), resolver.names()));
        tokio::select! {
            _ = resolver.wait() => {
                watcher.abort();
                anyhow::bail!("a server loop stopped")
            }
            _ = crate::signal::shutdown_signal() => {
                watcher.abort();
                println!("[INFO] dns-embedded: shutting down");
                Ok(())
            }
        }
    })
}

/// Re-reads the names file whenever its modification time changes; a bad file is reported and
/// the previous table kept.
async fn watch_names(path: PathBuf, names: super::names::NamesHandle) {
    let mut seen = mtime(&path);
    loop {
        tokio::time::sleep(NAMES_POLL).await;
        let now = mtime(&path);
        if now == seen {
            continue;
        }
        seen = now;
        match NamesTable::load(&path) {
            Ok(table) => {
                names.replace(&table);
                println!(
                    "[INFO] dns-embedded: reloaded names from {}",
                    path.display()
                );
            }
            Err(e) => eprintln!("dns-embedded: keeping the previous names: {e}"),
        }
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_accept_ip_or_ip_port() {
        assert_eq!(
            parse_server("192.0.2.53").unwrap(),
            "192.0.2.53:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("2001:db8::1").unwrap(),
            "[2001:db8::1]:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:5300").unwrap(),
            "[::1]:5300".parse().unwrap()
        );
        let err = parse_server("dns.example").unwrap_err();
        assert!(err.contains("dns.example"), "{err}");
    }

    #[test]
    fn servers_from_a_docker_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf.original");
        std::fs::write(
            &path,
            "nameserver 127.0.0.11\n# ExtServers: [host(127.0.0.53) host(192.0.2.53) 198.51.100.53]\n",
        )
        .unwrap();
        let explicit: SocketAddr = "198.51.100.53:53".parse().unwrap();
        let servers = collect_servers(&[explicit], Some(&path)).unwrap();
        assert_eq!(servers, vec![explicit, "192.0.2.53:53".parse().unwrap()]);
        assert_eq!(collect_servers(&[explicit], None).unwrap(), vec![explicit]);
        let err = collect_servers(&[], Some(&dir.path().join("missing"))).unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
    }

    #[test]
    fn bad_arguments_and_files_fail_with_codes() {
        let args = |v: &[&str]| v.iter().map(Into::into).collect::<Vec<OsString>>();
        assert_eq!(cli_main(args(&["dns-embedded"])), 2, "--names is required");
        assert_eq!(
            cli_main(args(&["dns-embedded", "--names", "x", "--servers", "nope"])),
            2
        );
        assert_eq!(
            cli_main(args(&[
                "dns-embedded",
                "--names",
                "/nonexistent/names.json"
            ])),
            1
        );
    }
}
