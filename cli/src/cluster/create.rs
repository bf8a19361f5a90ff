//! `minikind create cluster`: each step a small action with its own status line, as in KIND's
//! create flow. A failure (or Ctrl-C) at any step deletes everything the attempt made, unless
//! `--retain`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
};
use futures::future::try_join_all;
use minikind_contract::{ADMIN_KUBECONFIG, BOOT_COMPLETE, CONTROL_PLANE_READY, NODE_KUBECONFIG};

use crate::cluster::nodes::{self, Privileges};
use crate::cluster::{delete, embedded_dns, kubeconfig};
use crate::config::{ClusterConfig, EmbeddedDns, NodeRole, Upstream};
use crate::docker;
use crate::progress::Status;

pub struct CreateOptions {
    pub name: String,
    pub config: ClusterConfig,
    pub retain: bool,
    /// Upper bound for every wait in the create (nodes booting).
    pub wait: Duration,
}

/// What a finished create made, for the summary and for tests.
#[derive(Debug)]
pub struct Created {
    pub nodes: Vec<String>,
}

pub async fn create(docker: &Docker, status: &Status, opts: CreateOptions) -> Result<Created> {
    let mut wanted: Vec<String> = nodes::node_names(&opts.name, &opts.config.nodes)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    wanted.push(nodes::upstream_name(&opts.name));
    ensure_name_free(docker, &opts.name, &wanted).await?;
    status.line(&format!("Creating cluster \"{}\" ...", opts.name));
    let cfg = &opts.config;
    tracing::debug!(
        cluster = %opts.name,
        nodes = cfg.nodes.len(),
        internal = cfg.networking.internal,
        network_magic = cfg.dns.network_magic,
        upstream = ?cfg.dns.upstream,
        embedded = %cfg.dns.embedded.as_str(),
        "creating"
    );
    let started = std::time::Instant::now();

    let outcome = tokio::select! {
        r = steps(docker, status, &opts) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };
    match outcome {
        Ok(created) => {
            tracing::info!(
                cluster = %opts.name,
                took_ms = started.elapsed().as_millis() as u64,
                "cluster created"
            );
            status.line(&format!(
                "Cluster \"{}\" is up: {} node(s). Try `minikind get nodes --name {}`.",
                opts.name,
                created.nodes.len(),
                opts.name
            ));
            Ok(created)
        }
        Err(e) if opts.retain => Err(e.context(format!(
            "creating cluster {:?} failed; its containers are kept (--retain): remove them with \
             `minikind delete cluster --name {}`",
            opts.name, opts.name
        ))),
        Err(e) => {
            tracing::debug!(
                cluster = %opts.name,
                error = %format!("{e:#}"),
                "create failed: cleaning up"
            );
            let step = status.step("Deleting what the failed create made");
            // A request the interrupted future had already sent may still land: clean twice.
            let cleanup = async {
                kubeconfig::unexport(&opts.name)?;
                delete::remove_cluster_objects(docker, &opts.name).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                delete::remove_cluster_objects(docker, &opts.name).await
            };
            match cleanup.await {
                Ok(_) => step.done(),
                Err(ce) => {
                    step.fail();
                    return Err(e.context(format!("and cleaning up failed too: {ce:#}")));
                }
            }
            Err(e.context(format!("creating cluster {:?} failed", opts.name)))
        }
    }
}

/// A name is in use when any object carries its label, or when a container or network with
/// one of the names we would make exists (someone else's: we must not touch it).
async fn ensure_name_free(docker: &Docker, name: &str, containers: &[String]) -> Result<()> {
    if !docker::containers(docker, docker::cluster_filter(name))
        .await?
        .is_empty()
        || !docker::networks(docker, docker::cluster_filter(name))
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
    if let Some(c) = docker::containers(docker, by_name)
        .await?
        .into_iter()
        .next()
    {
        bail!(
            "cannot create cluster {name:?}: a container named {:?} already exists and is not \
             minikind's",
            c.name
        );
    }
    let net = nodes::network_name(name);
    if docker.inspect_network(&net, None).await.is_ok() {
        bail!(
            "cannot create cluster {name:?}: a network named {net:?} already exists and is not minikind's"
        );
    }
    Ok(())
}

async fn steps(docker: &Docker, status: &Status, opts: &CreateOptions) -> Result<Created> {
    let cfg = &opts.config;
    let name = opts.name.as_str();

    let step = status.step("Ensuring node image");
    let image = minikind_images::ensure_node_image(docker, false).await?;
    step.done();
    tracing::info!(
        image = %image.reference,
        id = %image.id,
        rootfs_sha256 = %image.rootfs_sha256,
        rootfs_bytes = image.rootfs_bytes,
        "node image {}",
        if image.built {
            "built and imported"
        } else {
            "reused: the engine already has this content hash"
        }
    );
    status.line(&format!(
        "   {} ({}, {:.0} MB)",
        image.reference,
        if image.built { "built" } else { "reused" },
        image.rootfs_bytes as f64 / 1e6
    ));

    let step = status.step(format!(
        "Preparing network {}{}",
        nodes::network_name(name),
        if cfg.networking.internal {
            " (internal)"
        } else {
            ""
        }
    ));
    let network = docker
        .create_network(NetworkCreateRequest {
            name: nodes::network_name(name),
            driver: Some("bridge".into()),
            internal: Some(cfg.networking.internal),
            labels: Some(nodes::labels(name, "network")),
            ..Default::default()
        })
        .await
        .context("creating the cluster network")?;
    step.done();
    if tracing::enabled!(tracing::Level::INFO) {
        log_network(docker, &nodes::network_name(name), &network.id).await;
    }

    let upstream_ip = if cfg.dns.upstream == Upstream::Lab {
        let step = status.step("Starting lab upstream 🧪");
        let ip = start_upstream(docker, name, &image.reference).await?;
        step.done();
        tracing::info!(
            container = %nodes::upstream_name(name),
            %ip,
            "lab upstream started: the nodes' --dns"
        );
        Some(ip)
    } else {
        None
    };

    let names = nodes::node_names(name, &cfg.nodes);
    let builtin = cfg.dns.embedded == EmbeddedDns::Builtin;
    let embedded_servers = if builtin {
        embedded_dns::external_servers(cfg, upstream_ip.as_deref(), |p| {
            std::fs::read_to_string(p).ok()
        })
    } else {
        Vec::new()
    };
    let boxes = "📦 ".repeat(names.len());
    let step = status.step(format!("Preparing nodes {}", boxes.trim_end()));
    let started_at = unix_now();
    let privileges = start_nodes(
        docker,
        name,
        &names,
        &image.reference,
        cfg,
        upstream_ip.as_deref(),
        &embedded_servers,
    )
    .await?;
    step.done();
    if builtin {
        // Every container has its address now: tell the nodes' resolvers who is who.
        let step = status.step("Writing the embedded resolvers' names 📇");
        let node_list: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
        let table =
            embedded_dns::write_names(docker, name, &nodes::network_name(name), &node_list).await?;
        step.done();
        status.line(&format!(
            "   builtin resolver: {} name(s), forwarding to [{}]",
            table
                .networks
                .iter()
                .map(|n| n.containers.len())
                .sum::<usize>(),
            embedded_servers.join(", ")
        ));
    }
    if privileges == Privileges::Capabilities {
        status.line(&format!(
            "   the engine refuses --privileged: nodes run with {} instead",
            Privileges::NARROW_CAPS.join(", ")
        ));
    }

    let step = status.step(if cfg.dns.network_magic {
        "Booting nodes (network magic) 🪄"
    } else {
        "Booting nodes (network magic off)"
    });
    let boot_wait = std::time::Instant::now();
    try_join_all(names.iter().map(|(node, _)| async move {
        super::wait::log_line(docker, node, BOOT_COMPLETE, started_at, opts.wait).await?;
        tracing::debug!(
            node = %node,
            took_ms = boot_wait.elapsed().as_millis() as u64,
            "node agent booted"
        );
        anyhow::Ok(())
    }))
    .await?;
    step.done();

    let cp = names
        .iter()
        .find(|(_, r)| *r == NodeRole::ControlPlane)
        .map(|(n, _)| n.clone())
        .context("the config has no control-plane node")?;
    let step = status.step("Starting control-plane 🕹️");
    super::wait::log_line(docker, &cp, CONTROL_PLANE_READY, started_at, opts.wait).await?;
    let admin = kubeconfig::read_node_file(docker, &cp, ADMIN_KUBECONFIG).await?;
    let server = api_server_url(docker, name, &cp).await?;
    let client = client_for(&admin, &server).await?;
    let version = tokio::time::timeout(opts.wait, client.apiserver_version())
        .await
        .context("the API server did not answer in time")?
        .with_context(|| format!("asking the API server at {server} for its version"))?;
    step.done();
    tracing::debug!(%server, version = %version.git_version, "API server answers");
    status.line(&format!("   API server {server} ({})", version.git_version));

    let workers: Vec<&String> = names
        .iter()
        .filter(|(_, r)| *r == NodeRole::Worker)
        .map(|(n, _)| n)
        .collect();
    if !workers.is_empty() {
        let step = status.step("Joining worker nodes 🚜");
        try_join_all(
            workers
                .iter()
                .map(|w| kubeconfig::write_node_file(docker, w, NODE_KUBECONFIG, &admin, 0o600)),
        )
        .await?;
        step.done();
    }

    let step = status.step("Waiting for nodes Ready ⏳");
    let node_names: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
    tokio::time::timeout(opts.wait, wait_nodes_ready(&client, &node_names))
        .await
        .with_context(|| {
            format!(
                "nodes not Ready within {}",
                humantime::format_duration(opts.wait)
            )
        })??;
    step.done();

    if cfg.dns.network_magic {
        let step = status.step("Waiting for cluster DNS 🔎");
        super::dns_check::wait_every_node(&client, &node_names, opts.wait).await?;
        step.done();
    } else {
        // Without the fix, CoreDNS forwards to 127.0.0.11 — itself, in its own namespace — and
        // its loop plugin stops it: the failure this switch exists to show.
        status.line(
            "   network magic off: not waiting for cluster DNS (CoreDNS is expected to crash-loop \
             on its loop check; see `minikind logs -n kube-system <coredns pod>`)",
        );
    }

    let path = kubeconfig::export(name, &admin, &server)?;
    tracing::info!(
        path = %path.display(),
        context = %minikind_apiserver::kubeconfig::entry_name(name),
        %server,
        "kubeconfig written"
    );
    status.line(&format!(
        "Set kubectl context to \"{}\" (in {})",
        minikind_apiserver::kubeconfig::entry_name(name),
        path.display()
    ));

    Ok(Created {
        nodes: names.into_iter().map(|(n, _)| n).collect(),
    })
}

/// Where this host reaches the API server: the published port on `apiServerAddress`, or, on an
/// `--internal` network (where Docker publishes nothing), the node's own address, which the
/// host reaches over the network's bridge.
pub async fn api_server_url(docker: &Docker, cluster: &str, cp: &str) -> Result<String> {
    let network = docker
        .inspect_network(&nodes::network_name(cluster), None)
        .await
        .with_context(|| format!("inspecting the network of cluster {cluster}"))?;
    if network.internal == Some(true) {
        let ip = container_ip(docker, cp, &nodes::network_name(cluster)).await?;
        return Ok(format!("https://{ip}:6443"));
    }
    let info = docker
        .inspect_container(cp, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {cp}"))?;
    let binding = info
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|mut p| p.remove(nodes::API_SERVER_PORT))
        .flatten()
        .and_then(|b| b.into_iter().next())
        .with_context(|| format!("{cp} publishes no API server port"))?;
    let host = binding
        .host_ip
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let port = binding
        .host_port
        .context("the API server port binding has no port")?;
    Ok(format!("https://{host}:{port}"))
}

/// Polls the Node objects until every node is registered with condition Ready=True.
async fn wait_nodes_ready(client: &kube::Client, names: &[String]) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    loop {
        let nodes = api
            .list(&Default::default())
            .await
            .context("listing nodes")?;
        let ready = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let all = names.iter().all(|want| {
            nodes
                .items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(want.as_str()) && ready(n))
        });
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kube client from the node's admin kubeconfig, pointed at `server`.
pub async fn client_for(admin: &str, server: &str) -> Result<kube::Client> {
    let doc = minikind_apiserver::kubeconfig::rewrite_server(admin, server)?;
    let kc =
        kube::config::Kubeconfig::from_yaml(&doc).context("parsing the cluster's kubeconfig")?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the cluster's kubeconfig")?;
    kube::Client::try_from(config).context("building an API client")
}

async fn start_upstream(docker: &Docker, cluster: &str, image: &str) -> Result<String> {
    let name = nodes::upstream_name(cluster);
    let opts = CreateContainerOptionsBuilder::default().name(&name).build();
    docker
        .create_container(Some(opts), nodes::upstream_container(cluster, image))
        .await
        .with_context(|| format!("creating {name}"))?;
    docker
        .start_container(&name, None)
        .await
        .with_context(|| format!("starting {name}"))?;
    container_ip(docker, &name, &nodes::network_name(cluster)).await
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

/// Creates and starts every node at once. Tries `--privileged` first as KIND does; when the
/// engine refuses to apply it, the nodes are made again with the narrow capability set.
async fn start_nodes(
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
                name: Some(nodes::var_volume_name(node)),
                labels: Some(nodes::labels(cluster, "var")),
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating the /var volume of {node}"))?;
    }
    let mut privileges = Privileges::Privileged;
    loop {
        let attempt = try_join_all(names.iter().map(|(node, role)| async move {
            let body = nodes::node_container(
                cluster,
                node,
                *role,
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
        }))
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
        .get(nodes::API_SERVER_PORT)?
        .as_ref()?
        .first()?
        .clone();
    Some(format!(
        "{}:{}",
        binding.host_ip.unwrap_or_default(),
        binding.host_port?
    ))
}

/// The 12 hex digits `docker ps` shows of a container or network ID.
fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Logs the network the engine made: its subnet and gateway, and whether it is internal.
async fn log_network(docker: &Docker, network: &str, id: &str) {
    let info = match docker.inspect_network(network, None).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(%network, error = %e, "inspecting the new network failed");
            return;
        }
    };
    let ipam = info
        .ipam
        .and_then(|i| i.config)
        .and_then(|c| c.into_iter().next())
        .unwrap_or_default();
    tracing::info!(
        %network,
        id = %short_id(id),
        subnet = %ipam.subnet.as_deref().unwrap_or("?"),
        gateway = %ipam.gateway.as_deref().unwrap_or("?"),
        internal = info.internal.unwrap_or(false),
        "network created"
    );
}

/// runc's answer when the engine itself lacks a capability `--privileged` asks for.
fn refuses_privileged(e: &anyhow::Error) -> bool {
    format!("{e:#}").contains("unable to apply caps")
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
