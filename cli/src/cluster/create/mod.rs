//! `minikind create cluster`: each step a small action with its own status line, as in KIND's
//! create flow. A failure (or Ctrl-C) at any step deletes everything the attempt made, unless
//! `--retain`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use bollard::Docker;
use futures::future::try_join_all;
use minikind_node_agent::agent::{
    ADMIN_KUBECONFIG, BOOT_COMPLETE, CONTROL_PLANE_READY, NODE_KUBECONFIG,
};

use crate::cluster::{access, embedded_dns, kubeconfig};
use crate::config::{ClusterConfig, EmbeddedDns, NodeRole, Upstream};
use crate::progress::Status;
use crate::provider::docker::nodes::{self, Privileges};
use crate::provider::docker::{delete, embedded_names, files, network, wait};

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
    nodes::ensure_name_free(docker, &opts.name, &wanted).await?;
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
    let network_id = network::create(docker, name, cfg.networking.internal).await?;
    step.done();
    if tracing::enabled!(tracing::Level::INFO) {
        network::log_network(docker, &nodes::network_name(name), &network_id).await;
    }

    let upstream_ip = if cfg.dns.upstream == Upstream::Lab {
        let step = status.step("Starting lab upstream 🧪");
        let ip = nodes::start_upstream(docker, name, &image.reference).await?;
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
    let privileges = nodes::start_nodes(
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
            embedded_names::write_names(docker, name, &nodes::network_name(name), &node_list)
                .await?;
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
        wait::log_line(docker, node, BOOT_COMPLETE, started_at, opts.wait).await?;
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
    wait::log_line(docker, &cp, CONTROL_PLANE_READY, started_at, opts.wait).await?;
    let admin = files::read_node_file(docker, &cp, ADMIN_KUBECONFIG).await?;
    let server = nodes::api_server_url(docker, name, &cp).await?;
    let client = access::client_for(&admin, &server).await?;
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
                .map(|w| files::write_node_file(docker, w, NODE_KUBECONFIG, &admin, 0o600)),
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
        context = %minikind_node_agent::control_plane::kubeconfig::entry_name(name),
        %server,
        "kubeconfig written"
    );
    status.line(&format!(
        "Set kubectl context to \"{}\" (in {})",
        minikind_node_agent::control_plane::kubeconfig::entry_name(name),
        path.display()
    ));

    Ok(Created {
        nodes: names.into_iter().map(|(n, _)| n).collect(),
    })
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

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
