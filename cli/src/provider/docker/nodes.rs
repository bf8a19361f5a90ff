//! How minikind's containers are made: node containers as KIND makes them (its docker
//! provider's `create.go`: `planCreation`, `runArgsForNode`), and the lab upstream; their names
//! (KIND's `providers/common/namer.go`), and where the host reaches them.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, RestartPolicy,
    RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
};
use futures::future::try_join_all;
use minikind_contract::env as agent_env;

use std::net::IpAddr;

use super::endpoint::{self, Endpoint};
use super::{CLUSTER_LABEL, ROLE_LABEL, short_id};
use crate::config::{
    ClusterConfig, EmbeddedDns, Networking, NodeConfig, NodeRole, Protocol, Upstream,
};

/// Port the API server listens on inside the control-plane node.
pub const API_SERVER_PORT: &str = "6443/tcp";

/// How much the engine lets us have. KIND runs nodes `--privileged`; some engines (this
/// workplace's, running inside a sandbox that lacks CAP_SYS_RESOURCE) refuse that, and then a
/// node gets the narrowest set that still lets the agent do its job: NET_ADMIN for iptables and
/// links, SYS_ADMIN for namespaces and mounts, SYS_PTRACE to enter other processes' namespaces,
/// and `/proc/sys` left writable for the sysctls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privileges {
    Privileged,
    Capabilities,
}

impl Privileges {
    pub const NARROW_CAPS: &[&str] = &["NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE"];

    fn apply(self, hc: &mut HostConfig) {
        let sec = vec![
            "seccomp=unconfined".to_string(),
            "apparmor=unconfined".to_string(),
        ];
        match self {
            Privileges::Privileged => hc.privileged = Some(true),
            Privileges::Capabilities => {
                hc.cap_add = Some(Self::NARROW_CAPS.iter().map(|c| c.to_string()).collect());
                // The API form of `--security-opt systempaths=unconfined`: no masked or
                // read-only /proc paths, so the agent can write its sysctls.
                hc.masked_paths = Some(Vec::new());
                hc.readonly_paths = Some(Vec::new());
            }
        }
        hc.security_opt = Some(sec);
    }

    pub fn label(self) -> &'static str {
        match self {
            Privileges::Privileged => "privileged",
            Privileges::Capabilities => "capabilities",
        }
    }
}

/// Node names as KIND gives them: `<c>-control-plane`, `<c>-worker`, `<c>-worker2`, …
pub fn node_names(cluster: &str, roles: &[NodeRole]) -> Vec<(String, NodeRole)> {
    let mut workers = 0;
    roles
        .iter()
        .map(|role| match role {
            NodeRole::ControlPlane => (format!("{cluster}-control-plane"), *role),
            NodeRole::Worker => {
                workers += 1;
                let suffix = if workers == 1 {
                    String::new()
                } else {
                    workers.to_string()
                };
                (format!("{cluster}-worker{suffix}"), *role)
            }
        })
        .collect()
}

pub fn network_name(cluster: &str) -> String {
    format!("minikind-{cluster}")
}

pub fn upstream_name(cluster: &str) -> String {
    format!("{cluster}-upstream")
}

pub fn var_volume_name(node: &str) -> String {
    format!("{node}-var")
}

pub fn labels(cluster: &str, role: &str) -> HashMap<String, String> {
    HashMap::from([
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
    ])
}

/// The container body for one node. `embedded_servers` are the builtin resolver's external
/// servers (only used with `dns.embedded: builtin`).
#[allow(clippy::too_many_arguments)]
pub fn node_container(
    cluster: &str,
    name: &str,
    node: &NodeConfig,
    image: &str,
    cfg: &ClusterConfig,
    upstream_ip: Option<&str>,
    embedded_servers: &[String],
    privileges: Privileges,
) -> ContainerCreateBody {
    let role = node.role;
    let mut env = vec![
        format!("{}={cluster}", agent_env::CLUSTER),
        format!("{}={}", agent_env::ROLE, role.as_str()),
        format!("{}={}", agent_env::NETWORK_MAGIC, cfg.dns.network_magic),
        format!("{}={}", agent_env::POD_SUBNET, cfg.networking.pod_subnet),
        format!(
            "{}={}",
            agent_env::KUBE_PROXY_MODE,
            if cfg.networking.kube_proxy_nftables {
                "nftables"
            } else {
                "iptables"
            }
        ),
        format!(
            "{}={}",
            agent_env::SERVICE_SUBNET,
            cfg.networking.service_subnet
        ),
        format!(
            "{}={}",
            agent_env::NETWORK_INTERNAL,
            cfg.networking.internal
        ),
    ];
    env.push(format!(
        "{}={}",
        agent_env::DNS_EMBEDDED,
        cfg.dns.embedded.as_str()
    ));
    if cfg.dns.embedded == EmbeddedDns::Builtin {
        env.push(format!(
            "{}={}",
            agent_env::DNS_SERVERS,
            embedded_servers.join(",")
        ));
    }
    if let Some(nl) = &cfg.dns.node_local_dns {
        env.push(format!("{}={}", agent_env::NODE_LOCAL_DNS, nl.to_env()));
    }
    // Like KIND_DNS_SEARCH: unset keeps the search lines, set-but-empty drops them.
    if let Some(search) = &cfg.networking.dns_search {
        env.push(format!("{}={}", agent_env::DNS_SEARCH, search.join(" ")));
    }
    if !node.labels.is_empty() {
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("{}={}", agent_env::NODE_LABELS, labels.join(",")));
    }
    // kubeadm taints the control plane `NoSchedule`; KIND removes the taint only when the
    // cluster is that one node (its `kubeadminit` action), so workloads go to the workers.
    if role == NodeRole::ControlPlane && cfg.nodes.len() > 1 {
        env.push(format!(
            "{}={}:NoSchedule",
            agent_env::NODE_TAINTS,
            minikind_contract::CONTROL_PLANE_TAINT_KEY
        ));
    }

    let mut hc = HostConfig {
        network_mode: Some(network_name(cluster)),
        tmpfs: Some(HashMap::from([
            ("/run".to_string(), String::new()),
            ("/tmp".to_string(), String::new()),
        ])),
        mounts: Some(vec![Mount {
            target: Some("/var".to_string()),
            source: Some(var_volume_name(name)),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        }]),
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::ON_FAILURE),
            maximum_retry_count: Some(1),
        }),
        // `extraMounts`, written as kind writes its `--volume` flags.
        binds: (!node.mounts.is_empty())
            .then(|| node.mounts.iter().map(|m| m.docker_bind()).collect()),
        ..Default::default()
    };
    privileges.apply(&mut hc);
    let upstream_dns = match (cfg.dns.upstream, upstream_ip) {
        (Upstream::Lab, Some(ip)) => Some(ip.to_string()),
        (Upstream::Server(ip), _) => Some(ip.to_string()),
        _ => None,
    };
    hc.dns = upstream_dns.map(|ip| vec![ip]);

    // Empty = a random free port, chosen by the engine.
    let host_port = |p: u16| if p == 0 { String::new() } else { p.to_string() };
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    if role == NodeRole::ControlPlane {
        bindings.insert(
            API_SERVER_PORT.to_string(),
            Some(vec![PortBinding {
                host_ip: Some(cfg.networking.published_address().to_string()),
                host_port: Some(host_port(cfg.networking.api_server_port)),
            }]),
        );
    }
    // `extraPortMappings`, as kind's `--publish=<listenAddress>:<hostPort>:<port>/<proto>`.
    for m in &node.port_mappings {
        let key = format!("{}/{}", m.container_port, m.protocol.as_docker());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(m.listen_address.to_string()),
                host_port: Some(host_port(m.host_port)),
            });
    }
    let mut exposed = None;
    if !bindings.is_empty() {
        let mut keys: Vec<String> = bindings.keys().cloned().collect();
        keys.sort();
        exposed = Some(keys);
        hc.port_bindings = Some(bindings);
    }

    let mut labels = labels(cluster, role.as_str());
    labels.insert("dev.minikind.privileges".into(), privileges.label().into());
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(name.to_string()),
        env: Some(env),
        labels: Some(labels),
        exposed_ports: exposed,
        host_config: Some(hc),
        ..Default::default()
    }
}

/// The lab upstream: an authoritative server for the hermetic `example.test` zone, run from the
/// node image with no privileges at all.
pub fn upstream_container(cluster: &str, image: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(upstream_name(cluster)),
        entrypoint: Some(vec![
            minikind_contract::MINIKIND_PATH.to_string(),
            "lab-upstream".to_string(),
        ]),
        labels: Some(labels(cluster, "upstream")),
        host_config: Some(HostConfig {
            network_mode: Some(network_name(cluster)),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(1),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A name is in use when any object carries its label, or when a container or network with
/// one of the names we would make exists (someone else's: we must not touch it).
pub async fn ensure_name_free(docker: &Docker, name: &str, containers: &[String]) -> Result<()> {
    if !super::containers(docker, super::cluster_filter(name))
        .await?
        .is_empty()
        || !super::networks(docker, super::cluster_filter(name))
            .await?
            .is_empty()
    {
        bail!(
            "a cluster named {name:?} already exists: delete it first \
             (`minikind delete cluster --name {name}`) or choose another name with --name"
        );
    }
    let exact = containers.iter().map(|c| format!("^/{c}$")).collect();
    let by_name = HashMap::from([("name".to_string(), exact)]);
    if let Some(c) = super::containers(docker, by_name).await?.into_iter().next() {
        bail!(
            "cannot create cluster {name:?}: a container named {:?} already exists and is not \
             minikind's",
            c.name
        );
    }
    let net = network_name(name);
    if docker.inspect_network(&net, None).await.is_ok() {
        bail!(
            "cannot create cluster {name:?}: a network named {net:?} already exists and is not minikind's"
        );
    }
    Ok(())
}

/// Where this host reaches the API server: the published port on `apiServerAddress`, or, on an
/// `--internal` network (where Docker publishes nothing), the node's own address, which the
/// host reaches over the network's bridge.
pub async fn api_server_url(docker: &Docker, cluster: &str, cp: &str) -> Result<String> {
    let network = docker
        .inspect_network(&network_name(cluster), None)
        .await
        .with_context(|| format!("inspecting the network of cluster {cluster}"))?;
    if network.internal == Some(true) {
        let ip = container_ip(docker, cp, &network_name(cluster)).await?;
        return Ok(format!("https://{ip}:6443"));
    }
    let info = docker
        .inspect_container(cp, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {cp}"))?;
    let binding = info
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(API_SERVER_PORT))
        .flatten()
        .and_then(|b| b.into_iter().next())
        .with_context(|| format!("{cp} publishes no API server port"))?;
    // Published on every address (`0.0.0.0`, `::`, or none said): reached at the engine's
    // host, which is this machine's loopback for a local engine.
    let host = match binding.host_ip.as_deref().map(str::parse::<IpAddr>) {
        Some(Ok(ip)) if !ip.is_unspecified() => ip,
        _ => endpoint::resolve(&endpoint::Env::from_process())?.host_address()?,
    };
    let host = match host {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => format!("[{v6}]"),
        other => other.to_canonical().to_string(),
    };
    let port = binding
        .host_port
        .context("the API server port binding has no port")?;
    Ok(format!("https://{host}:{port}"))
}

/// Creates and starts the lab upstream; returns its address on the cluster network.
pub async fn start_upstream(docker: &Docker, cluster: &str, image: &str) -> Result<String> {
    let name = upstream_name(cluster);
    create_and_start(docker, &name, upstream_container(cluster, image), cluster).await
}

/// Creates the container `name` from `body`, starts it, and gives its address on the cluster's
/// network (the lab upstream, a load balancer).
pub async fn create_and_start(
    docker: &Docker,
    name: &str,
    body: ContainerCreateBody,
    cluster: &str,
) -> Result<String> {
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    docker
        .create_container(Some(opts), body)
        .await
        .with_context(|| format!("creating {name}"))?;
    docker
        .start_container(name, None)
        .await
        .with_context(|| format!("starting {name}"))?;
    container_ip(docker, name, &network_name(cluster)).await
}

pub async fn container_ip(docker: &Docker, container: &str, network: &str) -> Result<String> {
    let info = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {container}"))?;
    info.network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .filter(|ip| !ip.is_empty())
        .with_context(|| format!("{container} has no address on {network}"))
}

/// The config with `apiServerPort: 0` replaced by a port free on the host now. The engine
/// re-picks an empty host port at every container start, so a restarted control plane would
/// move and the kubeconfig point at nothing; minikind picks the port once, as kind's provider
/// does (`common.PortOrGetFreePort` in kind's pkg/cluster/internal/providers/common), and it is
/// published on every start after. Nothing is published on an `--internal` network.
fn with_fixed_api_port(cfg: &ClusterConfig) -> Result<ClusterConfig> {
    let mut fixed = cfg.clone();
    if fixed.networking.api_server_port == 0 && !fixed.networking.internal {
        let addr = std::net::SocketAddr::new(fixed.networking.published_address(), 0);
        let probe = match std::net::TcpListener::bind(addr) {
            // Not an address of this machine: the engine's host elsewhere (see
            // [`place_api_server`]). kind draws the number on the client all the same; a port
            // the engine's host has taken fails the node's start with the engine's "port is
            // already allocated", and `apiServerPort` picks another.
            Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                let any = std::net::SocketAddr::new(unspecified_like(addr.ip()), 0);
                std::net::TcpListener::bind(any)
            }
            other => other,
        }
        .with_context(|| format!("finding a free port for the API server on {addr}"))?;
        fixed.networking.api_server_port = probe.local_addr()?.port();
    }
    // `extraPortMappings` with no host port likewise (kind's `generatePortMappings`). SCTP
    // cannot be probed from here: the engine picks, and a restart may move it.
    for node in &mut fixed.nodes {
        for m in node.port_mappings.iter_mut().filter(|m| m.host_port == 0) {
            let addr = std::net::SocketAddr::new(m.listen_address, 0);
            let port = match m.protocol {
                Protocol::Tcp => std::net::TcpListener::bind(addr)?.local_addr()?.port(),
                Protocol::Udp => std::net::UdpSocket::bind(addr)?.local_addr()?.port(),
                Protocol::Sctp => continue,
            };
            m.host_port = port;
        }
    }
    Ok(fixed)
}

/// Fails, before anything is made, when a host port the config maps is taken on this machine
/// (by another cluster or any other program): the engine would fail the node's start half-way
/// through. Skipped for an engine on another host, whose ports cannot be tried from here.
pub fn check_host_ports(cfg: &ClusterConfig, engine: &Endpoint) -> Result<()> {
    if !engine.host_address()?.to_canonical().is_loopback() {
        return Ok(());
    }
    for (i, node) in cfg.nodes.iter().enumerate() {
        for m in node.port_mappings.iter().filter(|m| m.host_port != 0) {
            let addr = std::net::SocketAddr::new(m.listen_address, m.host_port);
            let taken = match m.protocol {
                Protocol::Tcp => std::net::TcpListener::bind(addr).err(),
                Protocol::Udp => std::net::UdpSocket::bind(addr).err(),
                Protocol::Sctp => None,
            };
            if let Some(e) = taken {
                bail!(
                    "the {} node's extraPortMappings: host port {}/{} on {} cannot be published \
                     ({e}): another cluster or program holds it",
                    node_ordinal(i),
                    m.host_port,
                    m.protocol.as_docker(),
                    m.listen_address
                );
            }
        }
    }
    Ok(())
}

fn node_ordinal(i: usize) -> String {
    format!("nodes[{i}]")
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Where the engine publishes the API server, said once at create. A local engine publishes
/// it on `apiServerAddress` (KIND's 127.0.0.1 by default) of this machine. An engine on
/// another machine (`DOCKER_HOST=tcp://…`/`ssh://…`, or a context naming one) publishes it on
/// *its* host, where this machine's loopback means nothing: with no `apiServerAddress` given,
/// minikind publishes on the address this machine reaches the engine's host at, and the
/// kubeconfig points there. Returns the line to show, or None for a local engine.
pub fn place_api_server(net: &mut Networking, engine: &Endpoint) -> Result<Option<String>> {
    let host = engine.host_address()?;
    if host.to_canonical().is_loopback() {
        return Ok(None);
    }
    if net.internal {
        bail!(
            "networking.internal needs a local engine: this machine reaches the nodes of an \
             internal network over its bridge, and the engine at {} ({}) is on another host",
            engine.host,
            engine.source
        );
    }
    Ok(Some(match net.api_server_address {
        None => {
            net.api_server_address = Some(host);
            format!(
                "the engine at {} ({}) is on another host: the API server is published on that \
                 host's address {host}, which the kubeconfig points at",
                engine.host, engine.source
            )
        }
        Some(given) if given.to_canonical().is_loopback() => format!(
            "the engine at {} ({}) is on another host: apiServerAddress {given} is that host's \
             loopback, which this machine reaches only through a tunnel you set up",
            engine.host, engine.source
        ),
        Some(given) => format!(
            "the engine at {} ({}) is on another host: the API server is published on {given} \
             there",
            engine.host, engine.source
        ),
    }))
}

/// Creates and starts every node at once. Tries `--privileged` first as KIND does; when the
/// engine refuses to apply it, the nodes are made again with the narrow capability set.
pub async fn start_nodes(
    docker: &Docker,
    cluster: &str,
    names: &[(String, NodeRole)],
    image: &str,
    cfg: &ClusterConfig,
    upstream_ip: Option<&str>,
    embedded_servers: &[String],
) -> Result<Privileges> {
    for (node, _) in names {
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(var_volume_name(node)),
                labels: Some(labels(cluster, "var")),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the /var volume of {node}"))?;
    }
    let fixed = with_fixed_api_port(cfg)?;
    let cfg = &fixed;
    let engine = docker
        .info()
        .await
        .ok()
        .and_then(|i| i.id)
        .unwrap_or_default();
    let mut privileges = if RefusalMemo::says_refused(&engine) {
        tracing::debug!(%engine, "this engine refused --privileged before: capabilities only");
        Privileges::Capabilities
    } else {
        Privileges::Privileged
    };
    loop {
        // `names` come from the config's nodes, in its order.
        let attempt = try_join_all(names.iter().zip(&cfg.nodes).map(
            |((node, role), spec)| async move {
                let body = node_container(
                    cluster,
                    node,
                    spec,
                    image,
                    cfg,
                    upstream_ip,
                    embedded_servers,
                    privileges,
                );
                let opts = CreateContainerOptionsBuilder::default().name(node).build();
                let created = docker
                    .create_container(Some(opts), body)
                    .await
                    .with_context(|| format!("creating node {node}"))?;
                docker
                    .start_container(node, None)
                    .await
                    .with_context(|| format!("starting node {node}"))?;
                // Where the host reaches this node's API server (only the control plane publishes
                // it; an --internal network publishes nothing). Asked only when it will be logged.
                let published =
                    if *role == NodeRole::ControlPlane && tracing::enabled!(tracing::Level::INFO) {
                        docker
                            .inspect_container(node, None::<InspectContainerOptions>)
                            .await
                            .ok()
                            .and_then(|info| published_api_port(&info))
                    } else {
                        None
                    };
                tracing::info!(
                    node = %node,
                    role = %role.as_str(),
                    id = %short_id(&created.id),
                    privileges = %privileges.label(),
                    // Nothing on an --internal network: the host reaches the node's own address.
                    api_port = %published.as_deref().unwrap_or("none"),
                    "node container created and started"
                );
                anyhow::Ok(())
            },
        ))
        .await;
        match attempt {
            Ok(_) => return Ok(privileges),
            Err(e) if privileges == Privileges::Privileged && refuses_privileged(&e) => {
                tracing::info!(
                    error = %format!("{e:#}"),
                    capabilities = %Privileges::NARROW_CAPS.join(","),
                    "the engine refuses --privileged: making the nodes again with capabilities only"
                );
                for (node, _) in names {
                    let rm = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = docker.remove_container(node, Some(rm)).await;
                }
                RefusalMemo::remember(&engine);
                privileges = Privileges::Capabilities;
            }
            Err(e) => return Err(e),
        }
    }
}

/// `HOST_IP:PORT` the engine published the API server port on, if any.
fn published_api_port(info: &bollard::models::ContainerInspectResponse) -> Option<String> {
    let binding = info
        .network_settings
        .as_ref()?
        .ports
        .as_ref()?
        .get(API_SERVER_PORT)?
        .as_ref()?
        .first()?
        .clone();
    Some(format!(
        "{}:{}",
        binding.host_ip.unwrap_or_default(),
        binding.host_port?
    ))
}

/// Which engines refused `--privileged`, so the next create does not make every node twice:
/// one engine ID a line in `$XDG_CACHE_HOME/minikind/refuses-privileged` (else
/// `~/.cache/minikind/…`). A new engine has a new ID and is tried again; deleting the file
/// forgets. Losing it costs one refused attempt, never a wrong cluster.
struct RefusalMemo;

impl RefusalMemo {
    fn path() -> Option<std::path::PathBuf> {
        Some(minikind_images::lock::cache_dir()?.join("refuses-privileged"))
    }

    fn says_refused(engine: &str) -> bool {
        Self::path().is_some_and(|p| Self::lists(&p, engine))
    }

    fn remember(engine: &str) {
        if let Some(path) = Self::path()
            && let Err(e) = Self::add(&path, engine)
        {
            tracing::debug!(path = %path.display(), error = %e, "could not remember the refusal");
        }
    }

    fn lists(path: &std::path::Path, engine: &str) -> bool {
        !engine.is_empty()
            && std::fs::read_to_string(path).is_ok_and(|text| text.lines().any(|l| l == engine))
    }

    fn add(path: &std::path::Path, engine: &str) -> std::io::Result<()> {
        if engine.is_empty() || Self::lists(path, engine) {
            return Ok(());
        }
        std::fs::create_dir_all(path.parent().unwrap_or(path))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        std::io::Write::write_all(&mut f, format!("{engine}\n").as_bytes())
    }
}

/// runc's answer when the engine itself lacks a capability `--privileged` asks for.
fn refuses_privileged(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("unable to apply caps")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(host: &str) -> Endpoint {
        Endpoint {
            host: host.into(),
            source: "DOCKER_HOST".into(),
            tls: None,
        }
    }

    #[test]
    fn a_remote_engine_publishes_the_api_server_on_its_host() {
        let default = || ClusterConfig::default().networking;
        // Local socket, or TCP on loopback: nothing changes, KIND's 127.0.0.1 stays.
        for local in ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"] {
            let mut net = default();
            assert_eq!(place_api_server(&mut net, &engine(local)).unwrap(), None);
            assert_eq!(net.published_address().to_string(), "127.0.0.1");
        }
        // Not given: the engine host's address, said once.
        let mut net = default();
        let said = place_api_server(&mut net, &engine("tcp://10.1.2.3:2376"))
            .unwrap()
            .unwrap();
        assert_eq!(net.published_address().to_string(), "10.1.2.3");
        assert!(said.contains("tcp://10.1.2.3:2376 (DOCKER_HOST)"), "{said}");
        // Given: kept; a loopback one is that host's loopback, and the line says so.
        let mut net = default();
        net.api_server_address = Some("127.0.0.1".parse().unwrap());
        let said = place_api_server(&mut net, &engine("ssh://me@10.1.2.3"))
            .unwrap()
            .unwrap();
        assert_eq!(net.published_address().to_string(), "127.0.0.1");
        assert!(said.contains("tunnel"), "{said}");
        // An internal network is reached over this machine's bridge: a clear refusal.
        let mut net = default();
        net.internal = true;
        let err = place_api_server(&mut net, &engine("tcp://10.1.2.3:2375")).unwrap_err();
        assert!(
            err.to_string()
                .contains("networking.internal needs a local engine"),
            "{err}"
        );
    }

    #[test]
    fn node_names_follow_kind() {
        let roles = [
            NodeRole::ControlPlane,
            NodeRole::Worker,
            NodeRole::Worker,
            NodeRole::Worker,
        ];
        let names: Vec<String> = node_names("lab", &roles)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "lab-control-plane",
                "lab-worker",
                "lab-worker2",
                "lab-worker3"
            ]
        );
    }

    #[test]
    fn a_refusal_is_remembered_per_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("minikind").join("refuses-privileged");
        assert!(!RefusalMemo::lists(&path, "ENGINE-A"));
        RefusalMemo::add(&path, "ENGINE-A").unwrap();
        RefusalMemo::add(&path, "ENGINE-A").unwrap();
        assert!(RefusalMemo::lists(&path, "ENGINE-A"));
        assert!(!RefusalMemo::lists(&path, "ENGINE-B"));
        assert!(!RefusalMemo::lists(&path, ""));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "ENGINE-A\n");
    }

    #[test]
    fn the_api_port_is_chosen_once_unless_given_or_internal() {
        let cfg = ClusterConfig::default();
        let fixed = with_fixed_api_port(&cfg).unwrap();
        assert_ne!(fixed.networking.api_server_port, 0);
        let mut given = cfg.clone();
        given.networking.api_server_port = 7443;
        assert_eq!(
            with_fixed_api_port(&given)
                .unwrap()
                .networking
                .api_server_port,
            7443
        );
        let mut internal = cfg.clone();
        internal.networking.internal = true;
        assert_eq!(
            with_fixed_api_port(&internal)
                .unwrap()
                .networking
                .api_server_port,
            0
        );
    }

    #[test]
    fn control_plane_publishes_the_api_port_on_loopback() {
        let cfg = ClusterConfig::default();
        let body = node_container(
            "lab",
            "lab-control-plane",
            &NodeConfig::new(NodeRole::ControlPlane),
            "img",
            &cfg,
            None,
            &[],
            Privileges::Privileged,
        );
        let hc = body.host_config.unwrap();
        let pb = hc.port_bindings.unwrap();
        let b = pb[API_SERVER_PORT].as_ref().unwrap()[0].clone();
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.host_port.as_deref(), Some(""));
        assert_eq!(hc.privileged, Some(true));
        assert!(hc.tmpfs.unwrap().contains_key("/run"));
        assert_eq!(body.hostname.as_deref(), Some("lab-control-plane"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[CLUSTER_LABEL], "lab");
        assert_eq!(labels[ROLE_LABEL], "control-plane");
    }

    #[test]
    fn extra_port_mappings_and_mounts_are_published_as_kind_does() {
        let cfg = ClusterConfig::default();
        let dir = tempfile::tempdir().unwrap();
        let mut node = NodeConfig::new(NodeRole::Worker);
        node.port_mappings = vec![
            crate::config::PortMapping {
                container_port: 30053,
                host_port: 8053,
                listen_address: "127.0.0.1".parse().unwrap(),
                protocol: Protocol::Udp,
            },
            crate::config::PortMapping {
                container_port: 30053,
                host_port: 8054,
                listen_address: "0.0.0.0".parse().unwrap(),
                protocol: Protocol::Udp,
            },
        ];
        node.mounts = vec![crate::config::ExtraMount {
            host_path: dir.path().to_path_buf(),
            container_path: "/data".into(),
            read_only: true,
            selinux_relabel: false,
            propagation: crate::config::Propagation::Bidirectional,
        }];
        node.labels.insert("tier".into(), "gold".into());
        let body = node_container(
            "lab",
            "lab-worker",
            &node,
            "img",
            &cfg,
            None,
            &[],
            Privileges::Privileged,
        );
        assert_eq!(body.exposed_ports, Some(vec!["30053/udp".to_string()]));
        let hc = body.host_config.unwrap();
        let b = hc.port_bindings.unwrap()["30053/udp"].clone().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b[0].host_port.as_deref(), Some("8053"));
        assert_eq!(
            hc.binds,
            Some(vec![format!("{}:/data:ro,rshared", dir.path().display())])
        );
        assert!(
            body.env
                .unwrap()
                .contains(&format!("{}=tier=gold", agent_env::NODE_LABELS))
        );
    }

    #[test]
    fn workers_publish_nothing_and_get_the_lab_dns() {
        let mut cfg = ClusterConfig::default();
        cfg.dns.upstream = Upstream::Lab;
        let body = node_container(
            "lab",
            "lab-worker",
            &NodeConfig::new(NodeRole::Worker),
            "img",
            &cfg,
            Some("172.30.0.2"),
            &[],
            Privileges::Capabilities,
        );
        let hc = body.host_config.unwrap();
        assert!(hc.port_bindings.is_none());
        assert_eq!(hc.dns, Some(vec!["172.30.0.2".to_string()]));
        assert_eq!(hc.privileged, None);
        assert!(hc.cap_add.unwrap().contains(&"NET_ADMIN".to_string()));
        assert_eq!(hc.readonly_paths, Some(vec![]));
    }

    #[test]
    fn dns_search_env_keeps_unset_and_empty_apart() {
        let mut cfg = ClusterConfig::default();
        let env = |cfg: &ClusterConfig| {
            node_container(
                "c",
                "c-worker",
                &NodeConfig::new(NodeRole::Worker),
                "i",
                cfg,
                None,
                &[],
                Privileges::Privileged,
            )
            .env
            .unwrap()
        };
        assert!(
            !env(&cfg)
                .iter()
                .any(|e| e.starts_with(agent_env::DNS_SEARCH))
        );
        cfg.networking.dns_search = Some(vec![]);
        assert!(env(&cfg).contains(&format!("{}=", agent_env::DNS_SEARCH)));
        cfg.networking.dns_search = Some(vec!["a.test".into(), "b.test".into()]);
        assert!(env(&cfg).contains(&format!("{}=a.test b.test", agent_env::DNS_SEARCH)));
    }

    #[test]
    fn the_embedded_resolver_mode_and_its_servers_reach_the_agent() {
        let mut cfg = ClusterConfig::default();
        let env = |cfg: &ClusterConfig, servers: &[String]| {
            node_container(
                "c",
                "c-worker",
                &NodeConfig::new(NodeRole::Worker),
                "i",
                cfg,
                None,
                servers,
                Privileges::Privileged,
            )
            .env
            .unwrap()
        };
        let docker = env(&cfg, &["192.0.2.53".to_string()]);
        assert!(docker.contains(&format!("{}=docker", agent_env::DNS_EMBEDDED)));
        assert!(
            !docker.iter().any(|e| e.starts_with(agent_env::DNS_SERVERS)),
            "Docker's own resolver knows its servers: {docker:?}"
        );
        cfg.dns.embedded = EmbeddedDns::Builtin;
        let builtin = env(&cfg, &["172.18.0.2".to_string(), "192.0.2.53".to_string()]);
        assert!(builtin.contains(&format!("{}=builtin", agent_env::DNS_EMBEDDED)));
        assert!(builtin.contains(&format!("{}=172.18.0.2,192.0.2.53", agent_env::DNS_SERVERS)));
        assert!(
            !builtin
                .iter()
                .any(|e| e.starts_with(agent_env::NODE_LOCAL_DNS)),
            "NodeLocal DNSCache is off unless configured: {builtin:?}"
        );
        cfg.dns.node_local_dns = Some(minikind_control_plane::node_local_dns::NodeLocalDns {
            domain: "cluster.local".into(),
            address: minikind_control_plane::node_local_dns::DEFAULT_ADDRESS,
            mode: minikind_control_plane::node_local_dns::Mode::Local,
        });
        let nl = env(&cfg, &[]);
        assert!(nl.contains(&format!(
            "{}=local,169.254.20.10",
            agent_env::NODE_LOCAL_DNS
        )));
    }
}
