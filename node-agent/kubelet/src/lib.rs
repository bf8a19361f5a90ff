//! The kubelet role of a node: it registers the Node and heartbeats its status, builds the
//! node's pod network (bridge on the node's pod CIDR, routes to the other nodes' CIDRs,
//! masquerade off the pod subnet), and runs the pods bound to the node — each a network
//! namespace with an address from the CIDR, processes from the node's filesystem with the
//! pod's hostname and resolver files, restarts with back-off, probes, logs — reporting their
//! status to the API and removing them when they are deleted. It also serves the kubelet
//! endpoint (`/containerLogs`, `/exec`, `/portForward`) the API server proxies `pods/log`,
//! `pods/exec` and `pods/portforward` to.
//!
//! Entry points: [`run_kubelet`] (the node agent calls it) and [`cli_main`]
//! (`minikind kubelet …`, standalone against any API server).
//!
//! This crate owns everything between a bound pod and its running processes: pod network
//! namespaces ([`pod_network`], also `minikind netns`), pods' `hostPort`s ([`hostports`], the
//! CNI portmap plugin's chains), the node's pod IPAM and routes, the
//! tunnels of an internal network ([`overlay`]), the pods' resolver files ([`pod_dns`]),
//! sandboxes, containers, probes, logs and the streaming endpoint. It talks to the control
//! plane only through the API (a kube client), and must not touch the nat rules of services
//! (kube-proxy's) nor Docker's DNS rules and the node's own resolv.conf (the network magic's).

pub mod auth;
pub mod backoff;
pub mod container;
pub mod env;
pub mod events;
pub mod handles;
pub mod hostports;
pub mod image_config;
pub mod image_imports;
pub mod image_roots;
pub mod ipam;
pub mod isolation;
pub mod logs;
pub mod node;
pub mod node_lease;
pub mod overlay;
pub mod pod_dns;
pub mod pod_network;
pub mod pod_worker;
pub mod portforward;
pub mod probe_worker;
pub mod probes;
pub mod pty;
pub mod rootfs;
pub mod routes;
pub mod sandbox;
pub mod server;
pub mod spawn;
pub mod spdy;
pub mod status;
pub mod token_manager;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use auth::KubeletTls;
pub use backoff::BackoffConfig;
use handles::PodHandle;
use ipam::PodIpam;
pub use node::Taint;
use pod_worker::Outcome;

/// What pods get of the kubelet's kubeconfig in their service-account files: the cluster CA
/// (`ca.crt`), so in-cluster clients (cluster-dns's kubernetes plugin) trust the API server.
/// Never the kubelet's token: a pod's `token` is its own service account's
/// ([`token_manager`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiCredentials {
    /// The API server's CA in PEM (written to `ca.crt`).
    pub ca_crt: String,
}

impl std::fmt::Debug for ApiCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiCredentials")
            .field("ca_crt", &format!("{} bytes", self.ca_crt.len()))
            .finish()
    }
}

impl ApiCredentials {
    /// The CA of the current context of a kubeconfig (inline data or a file).
    pub fn from_kubeconfig(yaml: &str) -> Result<ApiCredentials> {
        use base64::Engine;
        use serde_json::Value;
        let kc: Value = serde_yaml::from_str(yaml).context("parsing the kubeconfig")?;
        let named = |list: &str, name: &str, field: &str| -> Option<Value> {
            kc.get(list)?
                .as_array()?
                .iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
                .get(field)
                .cloned()
        };
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let ctx_name = kc
            .get("current-context")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the kubeconfig has no current-context"))?;
        let ctx = named("contexts", ctx_name, "context")
            .ok_or_else(|| anyhow!("the kubeconfig has no context {ctx_name:?}"))?;
        let cluster_name = text(&ctx, "cluster").unwrap_or_default();
        let cluster = named("clusters", &cluster_name, "cluster")
            .ok_or_else(|| anyhow!("the kubeconfig has no cluster {cluster_name:?}"))?;
        let ca_crt = match (
            text(&cluster, "certificate-authority-data"),
            text(&cluster, "certificate-authority"),
        ) {
            (Some(data), _) => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .context("decoding certificate-authority-data")?,
            )
            .context("certificate-authority-data is not PEM text")?,
            (None, Some(path)) => {
                std::fs::read_to_string(&path).with_context(|| format!("reading the CA {path}"))?
            }
            (None, None) => String::new(),
        };
        Ok(ApiCredentials { ca_crt })
    }
}

/// Everything the kubelet needs to know about its node.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's InternalIP (its address on the cluster's Docker network).
    pub node_ip: Ipv4Addr,
    /// The cluster DNS service address (the 10th service IP, 10.96.0.10).
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// Where pods' files, IP allocations and logs live (`/var/lib/minikind/kubelet`).
    pub root: PathBuf,
    /// The cluster's pod subnet; traffic from pods leaving it is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The node bridge the pods' veths hang off.
    pub bridge: String,
    /// The kubelet endpoint (`0.0.0.0:10250` on a node).
    pub listen: SocketAddr,
    /// Its serving certificate and client CA; required (the kubelet does not start without).
    pub tls: Option<KubeletTls>,
    /// Extra labels for the Node (`node-role.kubernetes.io/control-plane` …).
    pub node_labels: BTreeMap<String, String>,
    /// Taints the Node gets when this kubelet creates it (`--register-with-taints`).
    pub register_taints: Vec<Taint>,
    /// Credentials for pods' service-account files; None = pods get none.
    pub credentials: Option<ApiCredentials>,
    /// The node's resolv.conf (the base of `dnsPolicy: Default`).
    pub node_resolv_conf: PathBuf,
    /// The node's hosts file (the base of hostNetwork pods' `/etc/hosts`).
    pub node_hosts: PathBuf,
    /// The iptables command (`iptables`; its `-restore` sibling is used too).
    pub iptables: String,
    /// Routes to other nodes' pod CIDRs and the masquerade rules (off in tests on one node).
    pub manage_network: bool,
    /// Reach other nodes' pods through point-to-point VXLAN links instead of routes via the
    /// node IPs (needed on a Docker `--internal` network; see `overlay.rs`).
    pub tunnel_pod_routes: bool,
    pub heartbeat: Duration,
    pub backoff: BackoffConfig,
    /// How often ConfigMap volumes are refreshed.
    pub volume_refresh: Duration,
    /// A stopping kubelet gives containers at most this long after SIGTERM.
    pub shutdown_grace: Duration,
    /// Where containers' root filesystems come from: a node's agent sets the image store
    /// (`image_roots::StoreRoots`); the default (`rootfs::NodeToolsRoots`, the test machine's
    /// own programs for every name) serves the kubelet's tests.
    pub roots: Arc<dyn rootfs::RootProvider>,
}

impl KubeletConfig {
    /// The settings of a KIND-like node, with the node's name and address.
    pub fn new(node_name: &str, node_ip: Ipv4Addr) -> KubeletConfig {
        KubeletConfig {
            node_name: node_name.to_string(),
            node_ip,
            cluster_dns: Ipv4Addr::new(10, 96, 0, 10),
            cluster_domain: "cluster.local".into(),
            root: PathBuf::from("/var/lib/minikind/kubelet"),
            cluster_cidr: Ipv4Net::new(Ipv4Addr::new(10, 244, 0, 0), 16).expect("valid prefix"),
            bridge: crate::pod_network::DEFAULT_BRIDGE.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 10250)),
            tls: None,
            node_labels: BTreeMap::new(),
            register_taints: Vec::new(),
            credentials: None,
            node_resolv_conf: PathBuf::from("/etc/resolv.conf"),
            node_hosts: PathBuf::from("/etc/hosts"),
            iptables: "iptables".into(),
            manage_network: true,
            tunnel_pod_routes: false,
            heartbeat: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            volume_refresh: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            roots: Arc::new(rootfs::NodeToolsRoots::default()),
        }
    }
}

/// The running kubelet, shared by the pod workers and the endpoint.
pub struct Kubelet {
    pub cfg: KubeletConfig,
    pub client: kube::Client,
    pub pod_cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ipam: Mutex<PodIpam>,
    /// Pods by (namespace, name).
    pub pods: RwLock<HashMap<(String, String), Arc<PodHandle>>>,
    pub shutdown: CancellationToken,
    /// When this kubelet started (probe workers of a young kubelet spread their first probe).
    pub started: std::time::Instant,
    /// The pods' service-account tokens.
    pub tokens: token_manager::TokenManager,
    /// The event recorder's correlation state (counts, similar events, spam filter).
    pub events: Mutex<events::Correlator>,
}

impl Kubelet {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<PodHandle>> {
        self.pods
            .read()
            .ok()?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

/// Runs the kubelet until `shutdown`: registers the Node, waits for its pod CIDR, builds the
/// pod network, serves the kubelet endpoint and runs the node's pods. On shutdown the
/// containers are stopped and the sandboxes (network namespaces, IPs, files) stay for the
/// next start, which runs the pods again with the same addresses.
pub async fn run_kubelet(
    cfg: KubeletConfig,
    client: kube::Client,
    shutdown: CancellationToken,
) -> Result<()> {
    let started = std::time::Instant::now();
    std::fs::create_dir_all(&cfg.root)
        .with_context(|| format!("creating {}", cfg.root.display()))?;
    let tls = cfg
        .tls
        .as_ref()
        .ok_or_else(|| anyhow!("the kubelet endpoint needs a serving certificate and client CA"))?
        .acceptor()
        .context("the kubelet endpoint's TLS settings")?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {} for the kubelet endpoint", cfg.listen))?;
    let port = listener
        .local_addr()
        .context("reading the kubelet endpoint address")?
        .port();
    // The API server may still be starting (workers boot alongside the control plane): keep
    // trying, as a kubelet does, until it answers or we are stopped.
    let mut wait = Duration::from_millis(200);
    loop {
        match node::register(&client, &cfg, port).await {
            Ok(()) => break,
            Err(e) => tracing::info!(
                "registering node {}: {e:#}; retrying in {wait:?}",
                cfg.node_name
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        cfg.clone(),
        port,
        shutdown.clone(),
    ));
    let lease = tokio::spawn(node_lease::run(
        client.clone(),
        cfg.node_name.clone(),
        shutdown.clone(),
    ));
    let pod_cidr = match node::wait_pod_cidr(&client, &cfg.node_name, &shutdown).await {
        Ok(c) => c,
        Err(_) if shutdown.is_cancelled() => {
            let _ = heartbeat.await;
            let _ = lease.await;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let gateway = ipam::gateway_of(pod_cidr);
    tracing::info!(node = %cfg.node_name, "pod CIDR {pod_cidr}, bridge {} at {gateway}", cfg.bridge);
    {
        let bridge = cfg.bridge.clone();
        let gw = Ipv4Net::new(gateway, pod_cidr.prefix_len()).context("bridge prefix")?;
        tokio::task::spawn_blocking(move || crate::pod_network::ensure_bridge(&bridge, gw))
            .await
            .context("bridge task")?
            .context("making the node bridge")?;
    }
    let mut routes = None;
    if cfg.manage_network {
        let (ipt, cidr, cluster) = (cfg.iptables.clone(), pod_cidr, cfg.cluster_cidr);
        tokio::task::spawn_blocking(move || routes::ensure_masquerade(&ipt, cidr, cluster))
            .await
            .context("masquerade task")?
            .context("installing the pod masquerade rules")?;
        routes = Some(tokio::spawn(routes::watch_nodes(
            client.clone(),
            cfg.node_name.clone(),
            cfg.tunnel_pod_routes.then(|| overlay::Tunnels {
                node_ip: cfg.node_ip,
                iptables: cfg.iptables.clone(),
            }),
            shutdown.clone(),
        )));
    }
    let ipam = PodIpam::open(&cfg.root, pod_cidr)?;
    let k = Arc::new(Kubelet {
        cfg,
        client,
        pod_cidr,
        gateway,
        ipam: Mutex::new(ipam),
        pods: RwLock::new(HashMap::new()),
        shutdown: shutdown.clone(),
        started,
        tokens: Default::default(),
        events: Default::default(),
    });
    let server = tokio::spawn(server::serve(k.clone(), listener, tls));
    let result = watch_pods(k.clone()).await;
    shutdown.cancel();
    let _ = heartbeat.await;
    let _ = lease.await;
    if let Some(r) = routes {
        let _ = r.await;
    }
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => tracing::warn!("kubelet endpoint: {e:#}"),
        Ok(_) => {}
        Err(_) => tracing::debug!("kubelet endpoint connections still open at shutdown"),
    }
    result
}

struct Worker {
    tx: watch::Sender<Option<Pod>>,
    join: tokio::task::JoinHandle<Outcome>,
    handle: Arc<PodHandle>,
}

/// Watches the pods bound to this node and keeps one worker per pod.
async fn watch_pods(k: Arc<Kubelet>) -> Result<()> {
    let api: Api<Pod> = Api::all(k.client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", k.cfg.node_name));
    let stream = watcher(api, wc).default_backoff();
    futures::pin_mut!(stream);
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut removed: HashSet<String> = HashSet::new();
    let mut listing: Option<HashSet<String>> = None;
    let mut cleaned = false;
    // Until the first listing is complete, every pod is one this kubelet found already bound
    // to its node when it started: the herd a restarted kubelet picks up all at once.
    let mut first_listing = true;
    loop {
        let ev = tokio::select! {
            ev = stream.next() => ev,
            _ = k.shutdown.cancelled() => break,
        };
        // Workers that finished (their pod is gone) leave the registry.
        let finished: Vec<String> = workers
            .iter()
            .filter(|(_, w)| w.join.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in finished {
            if let Some(w) = workers.remove(&uid) {
                forget(&k, &w.handle);
                removed.insert(uid);
            }
        }
        let ev = match ev {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                tracing::debug!("watching pods: {e}");
                continue;
            }
            None => break,
        };
        match ev {
            watcher::Event::Init => listing = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(l) = listing.as_mut() {
                    l.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                apply(&k, &mut workers, &removed, pod, first_listing);
            }
            watcher::Event::InitDone => {
                first_listing = false;
                let seen = listing.take().unwrap_or_default();
                for (uid, w) in &workers {
                    if !seen.contains(uid) {
                        w.tx.send_replace(None);
                    }
                }
                if !cleaned {
                    cleaned = true;
                    let keep: HashSet<String> = seen
                        .union(&workers.keys().cloned().collect())
                        .cloned()
                        .collect();
                    if let Err(e) = cleanup_orphans(&k, &keep).await {
                        tracing::warn!("removing what deleted pods left behind: {e:#}");
                    }
                }
            }
            watcher::Event::Apply(pod) => apply(&k, &mut workers, &removed, pod, false),
            watcher::Event::Delete(pod) => {
                if let Some(w) = workers.get(pod.metadata.uid.as_deref().unwrap_or_default()) {
                    w.tx.send_replace(None);
                }
            }
        }
    }
    // Shutdown: every worker sees the token, stops its containers and returns.
    for (_, w) in workers {
        let _ = w.join.await;
        forget(&k, &w.handle);
    }
    Ok(())
}

fn forget(k: &Kubelet, handle: &PodHandle) {
    if let Ok(mut pods) = k.pods.write() {
        let key = (handle.namespace.clone(), handle.name.clone());
        if pods.get(&key).is_some_and(|h| h.uid == handle.uid) {
            pods.remove(&key);
        }
    }
}

fn apply(
    k: &Arc<Kubelet>,
    workers: &mut HashMap<String, Worker>,
    removed: &HashSet<String>,
    pod: Pod,
    found_at_start: bool,
) {
    let Some(uid) = pod.metadata.uid.clone() else {
        return;
    };
    if removed.contains(&uid) {
        return;
    }
    if let Some(w) = workers.get(&uid) {
        w.tx.send_replace(Some(pod));
        return;
    }
    let handle = pod_worker::new_handle(k, &pod);
    if let Ok(mut pods) = k.pods.write() {
        pods.insert(
            (handle.namespace.clone(), handle.name.clone()),
            handle.clone(),
        );
    }
    let (tx, rx) = watch::channel(Some(pod));
    let join = tokio::spawn(pod_worker::run(
        k.clone(),
        handle.clone(),
        rx,
        found_at_start,
    ));
    workers.insert(uid, Worker { tx, join, handle });
}

/// After the first listing: sandboxes, files, logs and IPs of pods that no longer exist
/// (deleted while no kubelet ran) are removed.
async fn cleanup_orphans(k: &Kubelet, keep: &HashSet<String>) -> Result<()> {
    let mut uids: HashSet<String> = HashSet::new();
    for ns in crate::pod_network::list("mk-") {
        uids.insert(ns.trim_start_matches("mk-").to_string());
    }
    if let Ok(entries) = std::fs::read_dir(k.cfg.root.join("pods")) {
        for e in entries.flatten() {
            if let Some(n) = e.file_name().to_str() {
                uids.insert(n.to_string());
            }
        }
    }
    for uid in uids.difference(keep) {
        tracing::info!("removing the sandbox of deleted pod {uid}");
        sandbox::teardown(k, uid, None).await?;
    }
    if let Ok(entries) = std::fs::read_dir(k.cfg.root.join("logs")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.rsplit('_').next().unwrap_or_default();
            if !keep.contains(uid) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let freed = k
        .ipam
        .lock()
        .map_err(|_| anyhow!("the IP allocator's lock is poisoned"))?
        .retain(|h| keep.contains(&h.uid))?;
    for (ip, h) in freed {
        tracing::info!("released {ip} of deleted pod {}", h.pod);
    }
    Ok(())
}

#[derive(clap::Parser, Debug)]
#[command(
    name = "kubelet",
    about = "Run minikind's kubelet against an API server"
)]
struct KubeletArgs {
    /// Kubeconfig to reach the API server with (its token and CA also go to pods).
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    node_name: String,
    /// The node's InternalIP.
    #[arg(long)]
    node_ip: Ipv4Addr,
    #[arg(long, default_value = "10.96.0.10")]
    cluster_dns: Ipv4Addr,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    #[arg(long, default_value = "/var/lib/minikind/kubelet")]
    root: PathBuf,
    /// The cluster's pod subnet.
    #[arg(long, default_value = minikind_contract::DEFAULT_POD_SUBNET)]
    pod_subnet: Ipv4Net,
    #[arg(long, default_value = "0.0.0.0:10250")]
    listen: SocketAddr,
    /// Extra node labels, `key=value`.
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// Leave routes and masquerade rules alone.
    #[arg(long)]
    no_network: bool,
    /// The endpoint's serving certificate (PEM; it may also hold the key).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Its key (PEM); default: the certificate file.
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// The CA client certificates must be signed by; default: the kubeconfig's CA.
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
}

fn config_from_args(a: &KubeletArgs, kubeconfig: &str) -> Result<KubeletConfig> {
    let mut cfg = KubeletConfig::new(&a.node_name, a.node_ip);
    cfg.cluster_dns = a.cluster_dns;
    cfg.cluster_domain = a.cluster_domain.clone();
    cfg.root = a.root.clone();
    cfg.cluster_cidr = a.pod_subnet;
    cfg.listen = a.listen;
    cfg.manage_network = !a.no_network;
    for l in &a.node_labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow!("--node-label {l:?}: expected key=value"))?;
        cfg.node_labels.insert(k.to_string(), v.to_string());
    }
    let credentials = ApiCredentials::from_kubeconfig(kubeconfig)?;
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    if let Some(cert) = &a.tls_cert_file {
        let mut serving_pem = read(cert)?;
        if let Some(key) = &a.tls_private_key_file {
            serving_pem.push_str(&read(key)?);
        }
        let client_ca_pem = match &a.client_ca_file {
            Some(p) => read(p)?,
            None => credentials.ca_crt.clone(),
        };
        cfg.tls = Some(KubeletTls {
            serving_pem,
            client_ca_pem,
        });
    }
    cfg.credentials = Some(credentials);
    Ok(cfg)
}

/// A kube client from a kubeconfig file's text.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml).context("parsing the kubeconfig")?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    kube::Client::try_from(cfg).context("building a kube client")
}

/// `minikind kubelet …`: runs the kubelet until SIGINT/SIGTERM.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    use clap::Parser;
    let a = match KubeletArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubelet: starting the async runtime: {e}");
            return 1;
        }
    };
    let res: Result<()> = rt.block_on(async move {
        let kubeconfig = std::fs::read_to_string(&a.kubeconfig)
            .with_context(|| format!("reading {}", a.kubeconfig.display()))?;
        let cfg = config_from_args(&a, &kubeconfig)?;
        let client = client_from_kubeconfig(&kubeconfig).await?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
        });
        run_kubelet(cfg, client, shutdown).await
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kubelet: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_to_config() {
        use clap::Parser;
        let a = KubeletArgs::try_parse_from([
            "kubelet",
            "--kubeconfig",
            "/etc/kubernetes/kubelet.conf",
            "--node-name",
            "kind-worker",
            "--node-ip",
            "172.18.0.3",
            "--node-label",
            "node-role.kubernetes.io/worker=",
            "--listen",
            "0.0.0.0:10250",
        ])
        .unwrap();
        let kc = "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster: {server: 'https://x:6443'}\n\
                  users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n";
        let cfg = config_from_args(&a, kc).unwrap();
        assert_eq!(cfg.node_name, "kind-worker");
        assert_eq!(cfg.node_ip, Ipv4Addr::new(172, 18, 0, 3));
        assert_eq!(cfg.cluster_dns, Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(cfg.node_labels["node-role.kubernetes.io/worker"], "");
        assert!(cfg.credentials.is_some());
        // No serving certificate named: none (run_kubelet then refuses to start).
        assert!(cfg.tls.is_none());
        let dir = tempfile::tempdir().unwrap();
        let (crt, key, ca) = (
            dir.path().join("kubelet.crt"),
            dir.path().join("kubelet.key"),
            dir.path().join("ca.crt"),
        );
        std::fs::write(&crt, "CERT\n").unwrap();
        std::fs::write(&key, "KEY\n").unwrap();
        std::fs::write(&ca, "CA\n").unwrap();
        let with_tls = KubeletArgs::try_parse_from([
            "kubelet".as_ref(),
            "--kubeconfig".as_ref(),
            "k".as_ref(),
            "--node-name".as_ref(),
            "n".as_ref(),
            "--node-ip".as_ref(),
            "1.2.3.4".as_ref(),
            "--tls-cert-file".as_ref(),
            crt.as_os_str(),
            "--tls-private-key-file".as_ref(),
            key.as_os_str(),
            "--client-ca-file".as_ref(),
            ca.as_os_str(),
        ])
        .unwrap();
        let tls = config_from_args(&with_tls, kc).unwrap().tls.unwrap();
        assert_eq!(tls.serving_pem, "CERT\nKEY\n");
        assert_eq!(tls.client_ca_pem, "CA\n");
        let bad = KubeletArgs::try_parse_from([
            "kubelet",
            "--kubeconfig",
            "k",
            "--node-name",
            "n",
            "--node-ip",
            "1.2.3.4",
            "--node-label",
            "novalue",
        ])
        .unwrap();
        let e = config_from_args(&bad, kc).unwrap_err().to_string();
        assert!(e.contains("\"novalue\""), "{e}");
    }

    #[test]
    fn credentials_from_a_kubeconfig() {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: {ca}\n\
             users:\n- name: u\n  user:\n    token: s3cret\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
        );
        let c = ApiCredentials::from_kubeconfig(&yaml).unwrap();
        assert!(c.ca_crt.starts_with("-----BEGIN CERTIFICATE-----"));
        let e = ApiCredentials::from_kubeconfig(
            &yaml.replace("current-context: c", "current-context: nope"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"nope\""), "{e}");
    }
}
