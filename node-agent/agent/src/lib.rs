//! The node agent proper: PID 1 of a node container.
//!
//! As PID 1 it does two jobs, split over two processes the way tini and KIND's systemd do: the
//! first process only reaps orphans and forwards signals, and its child — the same binary —
//! boots the node (sysctls, iptables flavour, network magic) and then keeps the node's
//! services running. Keeping the reaper apart means the services' own child processes are never
//! stolen from them by a `waitpid(-1)`.
//!
//! The node's settings come from the environment the CLI gives every node container
//! (`minikind_contract::env`); it survives `docker restart`, so the agent re-applies the same
//! settings at every boot.
//!
//! This crate owns boot and wiring only: the order things start in, the settings handed to
//! each component, the builtin resolver's child process ([`builtin_resolver`]), and the log
//! lines the CLI waits for. What each component does belongs to its own crate (iptables mode,
//! network magic, kubelet, kube-proxy, control plane); logic that grows here belongs there.

pub mod builtin_resolver;
pub mod preload;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;

use crate::builtin_resolver::ResolverOptions;
use minikind_contract::{
    BOOT_COMPLETE, CONTROL_PLANE_READY, KUBELET_SERVING_PEM, NODE_KUBECONFIG, env,
};
use minikind_control_plane::{
    self as control_plane, ControlPlaneConfig, dns_addon, node_local_dns,
};
use minikind_kube_proxy::{self as kube_proxy, KubeProxyConfig};
use minikind_kubelet::{self as kubelet, ApiCredentials, KubeletConfig};
use minikind_network_magic::{self as network_magic, MagicOptions};
use tokio_util::sync::CancellationToken;

/// Set by the reaper on the child it starts, so the child knows it is not the reaper.
const CHILD_ENV: &str = "MINIKIND_AGENT_CHILD";

/// The settings of this node, read from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSettings {
    pub cluster: String,
    pub role: String,
    pub network_magic: bool,
    pub dns_search: Option<Vec<String>>,
    pub pod_subnet: Ipv4Net,
    pub service_subnet: Ipv4Net,
    pub internal_network: bool,
    /// `dns.embedded: builtin`: serve 127.0.0.11 with minikind's resolver.
    pub builtin_resolver: bool,
    /// The builtin resolver's external servers (`IP` or `IP:PORT`), in order.
    pub dns_servers: Vec<String>,
    /// The node's own labels (checked by the CLI as the kubelet checks `--node-labels`).
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// `dns.nodeLocalDNS`: the add-on to install (control plane) and, in local mode, the
    /// kubelet's cluster DNS.
    pub node_local_dns: Option<node_local_dns::NodeLocalDns>,
    /// The taints it registers with (`--register-with-taints`).
    pub node_taints: Vec<kubelet::Taint>,
    /// kube-proxy in nftables mode (`networking.kubeProxyMode: nftables`) instead of iptables.
    pub kube_proxy_nftables: bool,
}

impl NodeSettings {
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<NodeSettings> {
        let need = |k: &str| {
            get(k).with_context(|| {
                format!("{k} is not set: this node was not made by minikind create")
            })
        };
        let magic = need(env::NETWORK_MAGIC)?;
        let network_magic = match magic.as_str() {
            "true" => true,
            "false" => false,
            other => anyhow::bail!("{}={other:?}: expected true or false", env::NETWORK_MAGIC),
        };
        let cidr = |k: &str| -> Result<Ipv4Net> {
            let v = need(k)?;
            v.parse()
                .with_context(|| format!("{k}={v:?} is not an IPv4 CIDR"))
        };
        let internal_network = match get(env::NETWORK_INTERNAL).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                anyhow::bail!(
                    "{}={other:?}: expected true or false",
                    env::NETWORK_INTERNAL
                )
            }
        };
        let builtin_resolver = match get(env::DNS_EMBEDDED).as_deref() {
            None | Some("docker") => false,
            Some("builtin") => true,
            Some(other) => {
                anyhow::bail!(
                    "{}={other:?}: expected docker or builtin",
                    env::DNS_EMBEDDED
                )
            }
        };
        let dns_servers = match get(env::DNS_SERVERS) {
            None => Vec::new(),
            Some(list) => parse_servers(&list)?,
        };
        let mut node_labels = std::collections::BTreeMap::new();
        for pair in get(env::NODE_LABELS)
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair
                .split_once('=')
                .with_context(|| format!("{}: {pair:?} is not key=value", env::NODE_LABELS))?;
            node_labels.insert(k.to_string(), v.to_string());
        }
        let node_local_dns = match get(env::NODE_LOCAL_DNS) {
            None => None,
            Some(v) => Some(
                node_local_dns::NodeLocalDns::from_env(CLUSTER_DOMAIN, &v)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", env::NODE_LOCAL_DNS))?,
            ),
        };
        let node_taints = get(env::NODE_TAINTS)
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                kubelet::Taint::parse(t).with_context(|| format!("{}: {t:?}", env::NODE_TAINTS))
            })
            .collect::<Result<Vec<_>>>()?;
        let kube_proxy_nftables = match get(env::KUBE_PROXY_MODE).as_deref() {
            None | Some("iptables") => false,
            Some("nftables") => true,
            Some(other) => anyhow::bail!(
                "{}={other:?}: kube-proxy's mode is iptables or nftables",
                env::KUBE_PROXY_MODE
            ),
        };
        Ok(NodeSettings {
            kube_proxy_nftables,
            node_local_dns,
            node_labels,
            node_taints,
            builtin_resolver,
            dns_servers,
            internal_network,
            pod_subnet: cidr(env::POD_SUBNET)?,
            service_subnet: cidr(env::SERVICE_SUBNET)?,
            cluster: need(env::CLUSTER)?,
            role: need(env::ROLE)?,
            network_magic,
            dns_search: get(env::DNS_SEARCH)
                .map(|s| s.split_whitespace().map(str::to_string).collect()),
        })
    }
}

/// The comma-separated server list of [`env::DNS_SERVERS`], each checked to be `IP` or
/// `IP:PORT` (empty items are skipped).
fn parse_servers(list: &str) -> Result<Vec<String>> {
    let mut servers = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let ok = item.parse::<std::net::IpAddr>().is_ok()
            || item.parse::<std::net::SocketAddr>().is_ok();
        if !ok {
            anyhow::bail!(
                "{}={list:?}: {item:?} is not an IP address or IP:PORT",
                env::DNS_SERVERS
            );
        }
        servers.push(item.to_string());
    }
    Ok(servers)
}

/// `minikind node-agent`: the entrypoint of every node container.
pub fn cli_main(_args: Vec<OsString>) -> i32 {
    if std::process::id() == 1 && std::env::var_os(CHILD_ENV).is_none() {
        return reaper::run();
    }
    match run_agent() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("minikind node agent: {e:#}");
            1
        }
    }
}

fn run_agent() -> Result<()> {
    // The roles (kube-proxy's syncs, the kubelet's pods) log through `tracing`; on a node that
    // goes to the container's log. `MINIKIND_LOG` takes an EnvFilter directive.
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINIKIND_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn,rustls=warn,tower=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(false)
        .try_init();
    let settings = NodeSettings::from_env(|k| std::env::var(k).ok())?;
    println!(
        "minikind node agent: booting {} node of cluster {}",
        settings.role, settings.cluster
    );
    boot(&settings)?;
    println!("{BOOT_COMPLETE}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the agent's runtime")?;
    rt.block_on(serve(settings))
}

/// Everything that must hold before the node counts as up. Runs at every start of the
/// container, so each piece is idempotent.
///
/// The order matters with the builtin resolver: it replaces Docker's DNS rules with its own
/// (same shape, its ports) first, and the magic then rewrites those exactly as it would
/// rewrite Docker's.
fn boot(settings: &NodeSettings) -> Result<()> {
    let selection =
        minikind_iptables::select(Path::new("/")).context("choosing the iptables mode")?;
    println!("minikind node agent: {selection}");
    let resolver = if settings.builtin_resolver {
        let ropts = ResolverOptions::for_node(settings.dns_servers.clone(), selection.flavour)?;
        let running =
            builtin_resolver::start(&ropts).context("starting the builtin embedded resolver")?;
        println!(
            "minikind node agent: builtin embedded resolver (pid {}) serves 127.0.0.11 at udp \
             port {} and tcp port {}, forwarding to [{}]; Docker's DNS rules replaced",
            running.pid(),
            running.ready.udp.port(),
            running.ready.tcp.port(),
            settings.dns_servers.join(", ")
        );
        Some((running, ropts))
    } else {
        None
    };
    let opts = MagicOptions {
        enabled: settings.network_magic,
        dns_search: settings.dns_search.clone(),
        ..MagicOptions::default()
    };
    // The sysctls first, magic or not (pods need the node to route), then the magic itself.
    let report = network_magic::boot(&opts).context("applying the network magic")?;
    println!(
        "minikind node agent: sysctls {}",
        network_magic::BOOT_SYSCTLS
            .iter()
            .map(|(k, v)| format!("{}={v}", k.replace('/', ".")))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("minikind node agent: {report}");
    if let Some((running, ropts)) = resolver {
        // A restarted resolver rebuilds Docker's chains for its new ports in Docker's form:
        // put the magic back on top unless it is (or was switched) off.
        let configured = settings.network_magic;
        builtin_resolver::supervise(running, ropts, move |_| {
            let wanted = network_magic::live_state(Path::new(network_magic::LIVE_STATE_PATH))
                .unwrap_or(configured);
            if !wanted {
                return;
            }
            match network_magic::switch(&opts, true) {
                Ok(report) => println!("minikind node agent: {report}"),
                Err(e) => eprintln!("minikind node agent: re-applying the network magic: {e:#}"),
            }
        });
    }
    Ok(())
}

/// The node's long-running duties: on the control-plane node the API server with its store and
/// controllers; on every node the kubelet. They run until the
/// container is stopped.
async fn serve(settings: NodeSettings) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let node_name = nix::unistd::gethostname()
        .context("reading the node's hostname")?
        .to_string_lossy()
        .into_owned();
    let node_ip = node_ipv4().context("finding the node's address")?;
    let shutdown = CancellationToken::new();
    // The node's own images go into its store while the control plane and the kubelet start:
    // off the node's way to Ready. A container of one of them (CoreDNS, the create's checks)
    // waits for the import as for a pull (the kubelet's `image_imports`).
    let imports = kubelet::image_imports::Imports::default();
    let preloading = {
        let importing = imports.begin(preload::references(dns_addon::COREDNS_IMAGE)?);
        tokio::task::spawn_blocking(move || {
            let report = preload::preload(
                Path::new(minikind_contract::IMAGES_DIR),
                &minikind_images::preloaded::Sources::node(),
                dns_addon::COREDNS_IMAGE,
            );
            drop(importing);
            report
        })
    };

    let control_plane = if settings.role == "control-plane" {
        let cfg = ControlPlaneConfig::for_node(
            &node_name,
            node_ip,
            settings.service_subnet,
            settings.pod_subnet,
        );
        let cfg_data_dir = cfg.data_dir.clone();
        let running = control_plane::start(cfg)
            .await
            .context("starting the control plane")?;
        // This node's kubelet serving certificate, from the CA the control plane just loaded
        // (workers get theirs from `minikind create`, issued by `minikind kubelet-cert`).
        let serving =
            control_plane::pki::issue_kubelet_serving(&cfg_data_dir, &node_name, node_ip.into())
                .context("issuing the kubelet serving certificate")?;
        write_private(Path::new(KUBELET_SERVING_PEM), &serving.combined_pem())?;
        write_file(Path::new(NODE_KUBECONFIG), &running.kubeconfig)?;
        println!("minikind node agent: API server on {}", running.addr);
        // The DNS add-on is installed by `minikind create` once every node is Ready (its
        // `dns_addon` step, with the NodeLocal DNSCache add-on when the config asks for it), not
        // here: installed now, both CoreDNS replicas would be scheduled on this node, the only
        // Ready one.
        println!("{CONTROL_PLANE_READY}");
        Some(running)
    } else {
        None
    };

    // Workers get their kubeconfig and serving certificate from `minikind create` once the
    // control plane is up (the certificate first).
    let (kubeconfig, serving_pem) = tokio::select! {
        k = async {
            let kubeconfig = wait_for_file(Path::new(NODE_KUBECONFIG)).await?;
            let serving = wait_for_file(Path::new(KUBELET_SERVING_PEM)).await?;
            anyhow::Ok((kubeconfig, serving))
        } => k?,
        _ = term.recv() => return stop(control_plane).await,
    };
    let client = kubelet::client_from_kubeconfig(&kubeconfig).await?;
    let mut kcfg = KubeletConfig::new(&node_name, node_ip);
    // With NodeLocal DNSCache in local mode, pods are pointed at the node's cache.
    kcfg.cluster_dns = match &settings.node_local_dns {
        Some(nl) => nl.pod_nameserver(settings.service_subnet),
        None => dns_addon::cluster_dns_ip(settings.service_subnet),
    };
    kcfg.cluster_domain = CLUSTER_DOMAIN.to_string();
    kcfg.cluster_cidr = settings.pod_subnet;
    let credentials = ApiCredentials::from_kubeconfig(&kubeconfig)?;
    // Callers of the kubelet endpoint must hold a certificate from the cluster CA (the one the
    // kubeconfig trusts); see the kubelet's `auth.rs`.
    kcfg.tls = Some(kubelet::KubeletTls {
        serving_pem,
        client_ca_pem: credentials.ca_crt.clone(),
    });
    kcfg.credentials = Some(credentials);
    // Containers get their roots from the node's image store (being pre-loaded, and what
    // `minikind load` fills).
    kcfg.roots = std::sync::Arc::new(
        kubelet::image_roots::StoreRoots::open(
            Path::new(minikind_contract::IMAGES_DIR),
            &settings.cluster,
        )?
        .with_imports(imports),
    );
    kcfg.tunnel_pod_routes = settings.internal_network;
    kcfg.node_labels.extend(settings.node_labels.clone());
    kcfg.register_taints = settings.node_taints.clone();
    if settings.role == "control-plane" {
        kcfg.node_labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            String::new(),
        );
    }
    // Service rules first, as in KIND where the node turns Ready (and gets pods) only once
    // its network is up: pods such as CoreDNS reach the API through the kubernetes service.
    let mut pcfg = KubeProxyConfig::for_node(settings.pod_subnet.into());
    if settings.kube_proxy_nftables {
        pcfg.nftables = Some((
            PathBuf::from(kube_proxy::nftables::NFT_PATH),
            kube_proxy::nftables::NftConfig {
                cluster_cidr: Some(settings.pod_subnet.into()),
                masquerade_all: false,
                service_cidrs: vec![settings.service_subnet.into()],
                node_ips: vec![node_ip.into()],
            },
        ));
    }
    let proxy = tokio::spawn(kube_proxy::run_kube_proxy(
        pcfg,
        client.clone(),
        shutdown.clone(),
    ));
    println!("minikind node agent: kube-proxy started");
    let wait = wait_service_rules(settings.kube_proxy_nftables);
    match tokio::time::timeout(std::time::Duration::from_secs(30), wait).await {
        Ok(()) => println!("minikind node agent: service rules in place"),
        Err(_) => eprintln!(
            "minikind node agent: no service rules after 30s; starting the kubelet anyway"
        ),
    }
    let kubelet = tokio::spawn(kubelet::run_kubelet(kcfg, client, shutdown.clone()));
    println!("minikind node agent: kubelet started");
    tokio::spawn(image_gc(shutdown.clone()));

    // A failed pre-load stops the node as it did when the kubelet waited for it: the node's
    // own images are part of the node, not something to run without.
    let preload_failure = async {
        match preloading.await {
            Ok(Ok(report)) => {
                println!("minikind node agent: {report}");
                std::future::pending().await
            }
            Ok(Err(e)) => e.context("pre-loading the node's images"),
            Err(e) => anyhow::Error::new(e).context("the pre-load task"),
        }
    };
    let failure = tokio::select! {
        _ = term.recv() => None,
        _ = tokio::signal::ctrl_c() => None,
        e = preload_failure => Some(e),
    };
    shutdown.cancel();
    for (what, task) in [("kubelet", kubelet), ("kube-proxy", proxy)] {
        match task.await {
            Ok(Err(e)) => eprintln!("minikind node agent: {what}: {e:#}"),
            Err(e) => eprintln!("minikind node agent: {what} task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    stop(control_plane).await?;
    failure.map_or(Ok(()), Err)
}

/// The kubelet's image GC loop: every `ImageGCPeriod` (5 minutes), one pass with its default
/// thresholds (`minikind_image_store::gc`) over the node's store.
async fn image_gc(shutdown: CancellationToken) {
    use minikind_image_store::gc::{DiskUsage, GcPolicy};
    const PERIOD: std::time::Duration = std::time::Duration::from_secs(300);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PERIOD) => {}
        }
        let pass = tokio::task::spawn_blocking(|| {
            let dir = Path::new(minikind_contract::IMAGES_DIR);
            let store = minikind_image_store::Store::open(dir)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            store.gc(&GcPolicy::default(), DiskUsage::of(dir)?, now)
        })
        .await;
        match pass {
            Ok(Ok(r)) if !r.removed.is_empty() => println!(
                "minikind node agent: image GC at {}% disk use freed {} bytes: removed {}",
                r.used_percent,
                r.freed,
                r.removed.join(", ")
            ),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("minikind node agent: image GC: {e:#}"),
            Err(e) => eprintln!("minikind node agent: image GC task: {e}"),
        }
    }
}

async fn stop(control_plane: Option<control_plane::RunningControlPlane>) -> Result<()> {
    println!("minikind node agent: stopping");
    if let Some(cp) = control_plane {
        cp.shutdown().await.context("stopping the control plane")?;
    }
    Ok(())
}

/// Waits until kube-proxy's first sync put the `default/kubernetes` service into the nat table.
async fn wait_service_rules(nftables: bool) {
    loop {
        let save = tokio::task::spawn_blocking(move || {
            if nftables {
                // The kubernetes Service's chain in kube-proxy's table.
                let out = std::process::Command::new(kube_proxy::nftables::NFT_PATH)
                    .args(["list", "chains", "ip"])
                    .output()
                    .map_err(|e| e.to_string())?;
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                minikind_iptables::save(Path::new("iptables-save"), &["-t", "nat"])
                    .map_err(|e| e.to_string())
            }
        })
        .await;
        let marker = if nftables {
            "-default/kubernetes/tcp/https"
        } else {
            "default/kubernetes:https cluster IP"
        };
        if let Ok(Ok(text)) = save
            && text.contains(marker)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The cluster domain, fixed as in KIND.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

async fn wait_for_file(path: &Path) -> Result<String> {
    loop {
        match tokio::fs::read_to_string(path).await {
            Ok(s) if !s.trim().is_empty() => return Ok(s),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// [`write_file`] readable by root only (a private key).
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The node's address on the cluster network: Docker's interface `eth0` (an internal
/// network has no default route to ask about).
pub fn node_ipv4() -> Result<std::net::Ipv4Addr> {
    let text = kubelet::pod_network::ip(&["-4", "-o", "addr", "show", "dev", "eth0"])?;
    parse_inet(&text).with_context(|| format!("no IPv4 address on eth0 in {text:?}"))
}

/// The address of the first `inet a.b.c.d/len` in `ip -o addr` output.
fn parse_inet(text: &str) -> Option<std::net::Ipv4Addr> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "inet" {
            return words.next()?.split('/').next()?.parse().ok();
        }
    }
    None
}

mod reaper {
    //! PID 1's share: start the agent as a child, forward termination signals to it, reap
    //! every orphan, and exit with the agent's status.

    use nix::sys::signal::{self, SigSet, Signal};
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    use nix::unistd::Pid;

    pub fn run() -> i32 {
        // Block the signals we forward before the child exists, so none is lost in between.
        let mut set = SigSet::empty();
        for s in [
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
            Signal::SIGCHLD,
        ] {
            set.add(s);
        }
        if let Err(e) = set.thread_block() {
            eprintln!("minikind node agent: blocking signals: {e}");
            return 1;
        }
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("minikind node agent: finding my own executable: {e}");
                return 1;
            }
        };
        let mut cmd = std::process::Command::new(exe);
        cmd.args(std::env::args_os().skip(1))
            .env(super::CHILD_ENV, "1");
        // The child must not inherit the blocked mask.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| SigSet::all().thread_unblock().map_err(std::io::Error::from));
        }
        let child = match cmd.spawn() {
            Ok(c) => Pid::from_raw(c.id() as i32),
            Err(e) => {
                eprintln!("minikind node agent: starting the agent: {e}");
                return 1;
            }
        };
        loop {
            let sig = match set.wait() {
                Ok(s) => s,
                Err(_) => continue,
            };
            if sig != Signal::SIGCHLD {
                let _ = signal::kill(child, sig);
                continue;
            }
            loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                    Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                        return 128 + sig as i32;
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<NodeSettings> {
        let mut vars = vars.to_vec();
        vars.push((env::POD_SUBNET, minikind_contract::DEFAULT_POD_SUBNET));
        vars.push((
            env::SERVICE_SUBNET,
            minikind_contract::DEFAULT_SERVICE_SUBNET,
        ));
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NodeSettings::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn dns_search_unset_empty_and_list() {
        let base = [
            (env::CLUSTER, "c"),
            (env::ROLE, "worker"),
            (env::NETWORK_MAGIC, "true"),
        ];
        assert_eq!(settings(&base).unwrap().dns_search, None);
        let mut with = base.to_vec();
        with.push((env::DNS_SEARCH, ""));
        assert_eq!(settings(&with).unwrap().dns_search, Some(vec![]));
        with.pop();
        with.push((env::DNS_SEARCH, "a.test b.test"));
        assert_eq!(
            settings(&with).unwrap().dns_search,
            Some(vec!["a.test".to_string(), "b.test".to_string()])
        );
    }

    #[test]
    fn node_local_dns_from_the_environment() {
        let base = [
            (env::CLUSTER, "c"),
            (env::ROLE, "worker"),
            (env::NETWORK_MAGIC, "true"),
        ];
        assert_eq!(settings(&base).unwrap().node_local_dns, None);
        let mut with = base.to_vec();
        with.push((env::NODE_LOCAL_DNS, "local,169.254.20.10"));
        let nl = settings(&with).unwrap().node_local_dns.unwrap();
        assert_eq!(nl.mode, node_local_dns::Mode::Local);
        assert_eq!(
            nl.pod_nameserver(minikind_contract::DEFAULT_SERVICE_SUBNET.parse().unwrap()),
            node_local_dns::DEFAULT_ADDRESS
        );
        with[3] = (env::NODE_LOCAL_DNS, "ipvs,169.254.20.10");
        let e = settings(&with).unwrap_err().to_string();
        assert!(e.contains(env::NODE_LOCAL_DNS) && e.contains("ipvs"), "{e}");
    }

    #[test]
    fn the_node_address_is_eth0s() {
        let line = "45: eth0    inet 172.18.0.3/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever preferred_lft forever";
        assert_eq!(parse_inet(line), Some("172.18.0.3".parse().unwrap()));
        assert_eq!(parse_inet(""), None);
    }

    #[test]
    fn embedded_resolver_mode_and_servers() {
        let base = [
            (env::CLUSTER, "c"),
            (env::ROLE, "worker"),
            (env::NETWORK_MAGIC, "true"),
        ];
        let s = settings(&base).unwrap();
        assert!(!s.builtin_resolver && s.dns_servers.is_empty());
        let mut with = base.to_vec();
        with.push((env::DNS_EMBEDDED, "builtin"));
        with.push((env::DNS_SERVERS, "172.18.0.2, 192.0.2.53:5353,"));
        let s = settings(&with).unwrap();
        assert!(s.builtin_resolver);
        assert_eq!(s.dns_servers, vec!["172.18.0.2", "192.0.2.53:5353"]);
        with[3] = (env::DNS_EMBEDDED, "docker");
        assert!(!settings(&with).unwrap().builtin_resolver);
        with[3] = (env::DNS_EMBEDDED, "dockerd");
        let e = settings(&with).unwrap_err().to_string();
        assert!(
            e.contains(env::DNS_EMBEDDED) && e.contains("docker or builtin"),
            "{e}"
        );
        with[3] = (env::DNS_EMBEDDED, "builtin");
        with[4] = (env::DNS_SERVERS, "172.18.0.2,dns.example");
        let e = settings(&with).unwrap_err().to_string();
        assert!(
            e.contains(env::DNS_SERVERS) && e.contains("\"dns.example\""),
            "{e}"
        );
    }

    #[test]
    fn missing_or_bad_settings_are_named() {
        let e = settings(&[(env::CLUSTER, "c")]).unwrap_err().to_string();
        assert!(e.contains(env::NETWORK_MAGIC), "{e}");
        let e = settings(&[
            (env::CLUSTER, "c"),
            (env::ROLE, "worker"),
            (env::NETWORK_MAGIC, "yes"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("expected true or false"), "{e}");
    }
}
