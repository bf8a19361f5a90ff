//! The control plane assembled: the API server (`minikind-apiserver`) and its controllers
//! (`minikind-controllers`) started together in one process, and the cluster DNS add-on
//! installed through the API, with the optional NodeLocal DNSCache add-on (`node_local_dns`)
//! (control-plane node only; also runnable standalone on a host as
//! `minikind apiserver`, the way the tests and benchmarks use it).
//!
//! It owns the start-up order (store, PKI, initial objects, controllers, serving), the
//! standalone command and the DNS add-on's objects. It must not grow API or controller logic of
//! its own: those belong to the two crates it wires together.

pub mod dns_addon;
pub mod node_local_dns;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use minikind_apiserver::clusterip::ServiceAllocator;
/// The cluster PKI (the node agent issues its kubelet's serving certificate with it).
pub use minikind_apiserver::pki;
use minikind_apiserver::{ApiState, admission, kubeconfig, memory, resources, store};
use minikind_contract::{DEFAULT_POD_SUBNET, DEFAULT_SERVICE_SUBNET};
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Everything the control plane needs to start.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    /// Where to listen (`0.0.0.0:6443` on a node).
    pub listen: SocketAddr,
    /// Data directory; the store and the PKI live under it (`/var/lib/minikind` on a node).
    pub data_dir: PathBuf,
    /// Extra names and addresses for the serving certificate (node name, node IP, …);
    /// `127.0.0.1`, `localhost`, the `kubernetes.default.svc…` names and the first service IP
    /// are always added.
    pub sans: Vec<String>,
    pub service_cidr: Ipv4Net,
    pub pod_cidr: Ipv4Net,
    /// The address the `default/kubernetes` endpoints point at.
    pub advertise_address: Ipv4Addr,
    /// The server URL written into the admin kubeconfig (`https://<node-name>:6443` on a
    /// node); None = derived from the bound address.
    pub kubeconfig_server: Option<String>,
    /// Where to write the admin kubeconfig (`/etc/kubernetes/admin.conf` on a node); it is
    /// always also written to `<data>/admin.conf`.
    pub admin_kubeconfig: Option<PathBuf>,
    /// Plain HTTP without authentication; refused unless `listen` is a loopback address.
    pub insecure_http: bool,
    /// Watch history kept for resourceVersion replay.
    pub history: usize,
    /// The cluster DNS add-on to install at start (objects that exist are kept), through the
    /// same [`dns_addon::install`] the node agent calls.
    pub dns_addon: Option<dns_addon::DnsAddon>,
}

impl ControlPlaneConfig {
    /// The configuration the node agent uses on a control-plane node.
    pub fn for_node(
        node_name: &str,
        node_ip: Ipv4Addr,
        service_cidr: Ipv4Net,
        pod_cidr: Ipv4Net,
    ) -> Self {
        ControlPlaneConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
            data_dir: PathBuf::from("/var/lib/minikind"),
            sans: vec![node_name.to_string(), node_ip.to_string()],
            service_cidr,
            pod_cidr,
            advertise_address: node_ip,
            kubeconfig_server: Some(format!("https://{node_name}:6443")),
            admin_kubeconfig: Some(PathBuf::from(minikind_contract::ADMIN_KUBECONFIG)),
            insecure_http: false,
            history: store::DEFAULT_HISTORY,
            // The node agent installs the add-on itself (from the cluster config).
            dns_addon: None,
        }
    }

    /// A loopback configuration on a free port (tests, benchmarks).
    pub fn loopback(data_dir: PathBuf) -> Self {
        ControlPlaneConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            sans: vec![],
            service_cidr: DEFAULT_SERVICE_SUBNET.parse().expect("valid CIDR"),
            pod_cidr: DEFAULT_POD_SUBNET.parse().expect("valid CIDR"),
            advertise_address: Ipv4Addr::LOCALHOST,
            kubeconfig_server: None,
            admin_kubeconfig: None,
            insecure_http: false,
            history: store::DEFAULT_HISTORY,
            dns_addon: None,
        }
    }
}

/// A started control plane.
pub struct RunningControlPlane {
    pub addr: SocketAddr,
    /// The admin kubeconfig (server = `kubeconfig_server` or `https://<bound address>`).
    pub kubeconfig: String,
    pub state: Arc<ApiState>,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningControlPlane {
    /// The server's base URL as clients on this host reach it.
    pub fn url(&self) -> String {
        let scheme = if self.state.token.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// A kube client using the admin kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig)
            .context("parsing the admin kubeconfig")?;
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .context("loading the admin kubeconfig")?;
        kube::Client::try_from(cfg).context("building a kube client")
    }

    /// Stops serving and the controllers; waits for the listener to close.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let served = self.server.await.context("API server task")?;
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.store.close())
            .await
            .context("closing the store")?;
        served
    }

    /// Serves until the process gets SIGINT or SIGTERM.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        self.shutdown().await
    }
}

/// Opens the store, issues the certificates, bootstraps the initial objects, starts the
/// controllers and begins serving.
pub async fn start(cfg: ControlPlaneConfig) -> anyhow::Result<RunningControlPlane> {
    if cfg.insecure_http && !cfg.listen.ip().is_loopback() {
        bail!(
            "--insecure-http is only allowed on a loopback address, not {}",
            cfg.listen
        );
    }
    memory::tune_allocator();
    let store = store::Store::open(&cfg.data_dir, cfg.history)
        .with_context(|| format!("opening the store under {}", cfg.data_dir.display()))?;
    let allocator = Arc::new(ServiceAllocator::new(cfg.service_cidr));
    for s in store
        .list(resources::idx::services(), None, None, 0, |_| true)
        .0
    {
        allocator.record_existing(&s.value());
    }
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let mut sans = cfg.sans.clone();
    sans.extend(
        [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from),
    );
    sans.push(allocator.nth(1).to_string());
    if !addr.ip().is_unspecified() {
        sans.push(addr.ip().to_string());
    }
    sans.sort();
    sans.dedup();
    let server_url = cfg.kubeconfig_server.clone().unwrap_or_else(|| {
        let host = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
            ip => ip.to_string(),
        };
        let scheme = if cfg.insecure_http { "http" } else { "https" };
        format!("{scheme}://{host}:{}", addr.port())
    });
    // Plain HTTP has no PKI, so no service-account key either: TokenRequest answers 503 there,
    // and every client is the admin anyway.
    let service_account_key = if cfg.insecure_http {
        None
    } else {
        Some(Arc::new(pki::load_or_create_service_account_key(
            &cfg.data_dir,
        )?))
    };
    let (tls, token, kubeconfig, kubelet_client) = if cfg.insecure_http {
        let kc = serde_yaml::to_string(&serde_json::json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "minikind", "cluster": {"server": server_url}}],
            "users": [{"name": "minikind", "user": {}}],
            "contexts": [{"name": "minikind", "context": {"cluster": "minikind", "user": "minikind"}}],
            "current-context": "minikind",
        }))?;
        (None, None, kc, None)
    } else {
        let pki = pki::load_or_create(&cfg.data_dir, &sans)?;
        let acceptor = pki::tls_acceptor(&pki)?;
        let kubelet_client = pki::kubelet_client_config(&pki)?;
        let kc = kubeconfig::build("minikind", &server_url, &pki.ca_pem, &pki.token);
        (Some(acceptor), Some(pki.token), kc, Some(kubelet_client))
    };
    let admin_path = cfg.data_dir.join("admin.conf");
    std::fs::write(&admin_path, &kubeconfig)
        .with_context(|| format!("writing {}", admin_path.display()))?;
    if let Some(p) = &cfg.admin_kubeconfig {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(p, &kubeconfig).with_context(|| format!("writing {}", p.display()))?;
    }
    let state = Arc::new(ApiState {
        store,
        admission: admission::Admission {
            services: allocator,
        },
        token,
        service_account_key,
        server_address: format!("{}:{}", cfg.advertise_address, addr.port()),
        inflight: Default::default(),
        kubelet_client,
    });
    minikind_controllers::kubernetes_service::bootstrap(&state, cfg.advertise_address, addr.port())
        .await
        .map_err(|e| anyhow::anyhow!("creating the initial objects: {}", e.message))?;
    let cancel = CancellationToken::new();
    minikind_controllers::spawn_all(
        state.clone(),
        &minikind_controllers::ControllerConfig {
            pod_cidr: cfg.pod_cidr,
            node_cidr_prefix: 24,
        },
        cancel.clone(),
    );
    tokio::spawn(memory::trim_periodically(cancel.clone()));
    let app = minikind_apiserver::router(state.clone());
    let server = tokio::spawn(minikind_apiserver::serve(
        listener,
        tls,
        app,
        cancel.clone(),
    ));
    let cp = RunningControlPlane {
        addr,
        kubeconfig,
        state,
        cancel,
        server,
    };
    if let Some(addon) = &cfg.dns_addon {
        // Through the API, now that it serves: the same code and admission as the node
        // agent's install. Random ClusterIPs come from the upper band, so no Service created
        // meanwhile can take kube-dns's 10th address.
        if let Err(e) = install_dns_addon(&cp, cfg.service_cidr, addon).await {
            let _ = cp.shutdown().await;
            return Err(e.context("installing the DNS add-on"));
        }
    }
    Ok(cp)
}

/// Installs the add-on with a client that talks to the bound address itself, whatever server
/// name the kubeconfig carries (`kubeconfig_server` may not resolve on this host).
async fn install_dns_addon(
    cp: &RunningControlPlane,
    service_cidr: Ipv4Net,
    addon: &dns_addon::DnsAddon,
) -> anyhow::Result<()> {
    let kc = kube::config::Kubeconfig::from_yaml(&cp.kubeconfig)
        .context("parsing the admin kubeconfig")?;
    let mut kcfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the admin kubeconfig")?;
    let host = match cp.addr.ip() {
        // The serving certificate always names 127.0.0.1.
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if cp.state.token.is_some() {
        "https"
    } else {
        "http"
    };
    kcfg.cluster_url = format!("{scheme}://{}", SocketAddr::new(host, cp.addr.port()))
        .parse()
        .context("building the API server URL")?;
    let client = kube::Client::try_from(kcfg).context("building a kube client")?;
    dns_addon::install(&client, service_cidr, addon).await?;
    Ok(())
}

/// Runs the control plane on a node until the agent stops (SIGINT/SIGTERM).
pub async fn run_control_plane(cfg: ControlPlaneConfig) -> anyhow::Result<()> {
    let cp = start(cfg).await?;
    tracing::info!("API server listening on {}", cp.addr);
    cp.run_until_signal().await
}

#[derive(clap::Parser, Debug)]
#[command(
    name = "kubelet-cert",
    about = "Issue a kubelet serving certificate signed by the cluster CA (PEM certificate and key on stdout)"
)]
struct KubeletCertArgs {
    /// Data directory holding the PKI (`pki/ca.key`).
    #[arg(long, default_value = "/var/lib/minikind")]
    data: PathBuf,
    #[arg(long)]
    node_name: String,
    #[arg(long)]
    node_ip: IpAddr,
}

/// `minikind kubelet-cert …`: on the control-plane node (which holds the CA key), a worker's
/// kubelet serving certificate, for `minikind create` to copy to the worker.
pub fn kubelet_cert_cli_main(args: Vec<OsString>) -> i32 {
    use clap::Parser;
    let a = match KubeletCertArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match pki::issue_kubelet_serving(&a.data, &a.node_name, a.node_ip) {
        Ok(issued) => {
            print!("{}", issued.combined_pem());
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

#[derive(clap::Parser, Debug)]
#[command(
    name = "apiserver",
    about = "Run minikind's Kubernetes API server standalone"
)]
struct ApiserverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Data directory (store, PKI, admin.conf).
    #[arg(long)]
    data: PathBuf,
    /// Plain HTTP without authentication (loopback addresses only).
    #[arg(long)]
    insecure_http: bool,
    #[arg(long, default_value = DEFAULT_SERVICE_SUBNET)]
    service_cidr: Ipv4Net,
    #[arg(long, default_value = DEFAULT_POD_SUBNET)]
    pod_cidr: Ipv4Net,
    /// Address the `default/kubernetes` endpoints point at.
    #[arg(long, default_value = "127.0.0.1")]
    advertise_address: Ipv4Addr,
    /// Extra subject alternative names for the serving certificate.
    #[arg(long = "san")]
    sans: Vec<String>,
    /// Also write the admin kubeconfig here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Install the cluster DNS add-on (coredns ConfigMap and Deployment, kube-dns Service).
    #[arg(long)]
    dns_addon: bool,
}

/// `minikind apiserver …`: the standalone server.
pub fn apiserver_cli_main(args: Vec<OsString>) -> i32 {
    use clap::Parser;
    let a = match ApiserverArgs::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let cfg = ControlPlaneConfig {
        listen: a.listen,
        data_dir: a.data,
        sans: a.sans,
        service_cidr: a.service_cidr,
        pod_cidr: a.pod_cidr,
        advertise_address: a.advertise_address,
        kubeconfig_server: None,
        admin_kubeconfig: a.kubeconfig_out,
        insecure_http: a.insecure_http,
        history: store::DEFAULT_HISTORY,
        dns_addon: a.dns_addon.then(dns_addon::DnsAddon::default),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return 1;
        }
    };
    let res = rt.block_on(async move {
        let data = cfg.data_dir.clone();
        let cp = start(cfg).await?;
        println!("minikind API server listening on {}", cp.url());
        println!("admin kubeconfig: {}", data.join("admin.conf").display());
        cp.run_until_signal().await
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
