//! `minikind create cluster`, laid out as KIND's create flow (`pkg/cluster/internal/create/
//! create.go`: `Cluster`): one module per step, as KIND's `pkg/cluster/internal/create/
//! actions/*`, each with one `execute` that opens and closes its own status line; [`actions`]
//! builds the list a config needs and [`run`] runs it, the steps sharing a [`Context`]. A
//! failure, or SIGINT (Ctrl-C), SIGTERM or SIGHUP, at any step deletes everything the attempt
//! made, unless `--retain` — in one place, [`create`]; a further signal does not cut that short.

mod boot;
mod cluster_dns;
mod context;
mod control_plane;
mod dns_addon;
mod embedded_names;
mod join_workers;
mod kubeconfig;
mod lab_upstream;
mod network;
mod node_image;
mod nodes;
mod nodes_ready;

use std::time::Duration;

use anyhow::{Context as _, Result};
use bollard::Docker;

use self::context::Context;
use crate::cluster::kubeconfig as user_kubeconfig;
use crate::config::{ClusterConfig, EmbeddedDns, NodeRole, Upstream};
use crate::interrupt::{Interrupted, StopSignals};
use crate::progress::{self, Status};
use crate::provider::docker::{delete, endpoint, nodes as docker_nodes};

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
    let mut opts = opts;
    let engine = endpoint::resolve(&endpoint::Env::from_process())?;
    docker_nodes::check_host_ports(&opts.config, &engine)?;
    if let Some(placed) = docker_nodes::place_api_server(&mut opts.config.networking, &engine)? {
        status.line(&placed);
    } else if let Some(warning) = opts.config.networking.api_server_exposure_warning() {
        status.warning(&warning);
    }
    let mut wanted: Vec<String> = docker_nodes::node_names(&opts.name, &opts.config.roles())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    wanted.push(docker_nodes::upstream_name(&opts.name));
    docker_nodes::ensure_name_free(docker, &opts.name, &wanted).await?;
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

    // From here on SIGINT, SIGTERM and SIGHUP stop the create the same way: nothing it made
    // is left behind (unless --retain).
    let mut signals = StopSignals::install().context("installing the signal handlers")?;
    let outcome = tokio::select! {
        r = run(docker, status, &opts) => r,
        signal = signals.recv() => Err(anyhow::Error::new(Interrupted { signal })),
    };
    // The steps' future is gone (its open step marked ✗); no spinner may linger either.
    if let Some(i) = outcome
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<Interrupted>())
    {
        progress::clear_spinner();
        tracing::debug!(cluster = %opts.name, signal = %i.signal, "create interrupted");
    }
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
                user_kubeconfig::unexport(&opts.name)?;
                delete::remove_cluster_objects(docker, &opts.name).await?;
                tokio::time::sleep(Duration::from_millis(300)).await;
                delete::remove_cluster_objects(docker, &opts.name).await
            };
            match finish_despite_signals(cleanup, &mut signals).await {
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

/// Runs the rollback to its end: a signal now would leave the cluster half-removed, so each one
/// that arrives is only said on standard error (the create's error keeps the first signal, or
/// the failure, that started the rollback).
async fn finish_despite_signals<T>(
    cleanup: impl std::future::Future<Output = T>,
    signals: &mut StopSignals,
) -> T {
    let mut cleanup = std::pin::pin!(cleanup);
    loop {
        tokio::select! {
            done = &mut cleanup => return done,
            signal = signals.recv() => {
                tracing::debug!(%signal, "signal during the rollback: finishing it first");
                progress::error_line(&format!(
                    "minikind: {signal} received: cleanup in progress, exiting once it is done"
                ));
            }
        }
    }
}

/// The create's steps, in the order they run; [`actions`] picks those a config needs, as KIND's
/// `Cluster` builds its `actionsToRun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    NodeImage,
    Network,
    /// Only with `dns.upstream: lab`.
    LabUpstream,
    Nodes,
    /// Only with `dns.embedded: builtin`.
    EmbeddedNames,
    Boot,
    ControlPlane,
    /// Only when the config has workers.
    JoinWorkers,
    NodesReady,
    /// After every node is Ready, so that CoreDNS's replicas can spread (see [`dns_addon`]).
    DnsAddon,
    ClusterDns,
    Kubeconfig,
}

impl Action {
    /// Runs the step; it opens and closes its own status line.
    async fn execute(self, ctx: &mut Context<'_>) -> Result<()> {
        match self {
            Action::NodeImage => node_image::execute(ctx).await,
            Action::Network => network::execute(ctx).await,
            Action::LabUpstream => lab_upstream::execute(ctx).await,
            Action::Nodes => nodes::execute(ctx).await,
            Action::EmbeddedNames => embedded_names::execute(ctx).await,
            Action::Boot => boot::execute(ctx).await,
            Action::ControlPlane => control_plane::execute(ctx).await,
            Action::JoinWorkers => join_workers::execute(ctx).await,
            Action::NodesReady => nodes_ready::execute(ctx).await,
            Action::DnsAddon => dns_addon::execute(ctx).await,
            Action::ClusterDns => cluster_dns::execute(ctx).await,
            Action::Kubeconfig => kubeconfig::execute(ctx).await,
        }
    }
}

/// The steps this config needs, in order.
fn actions(cfg: &ClusterConfig) -> Vec<Action> {
    let mut list = vec![Action::NodeImage, Action::Network];
    if cfg.dns.upstream == Upstream::Lab {
        list.push(Action::LabUpstream);
    }
    list.push(Action::Nodes);
    if cfg.dns.embedded == EmbeddedDns::Builtin {
        list.push(Action::EmbeddedNames);
    }
    list.extend([Action::Boot, Action::ControlPlane]);
    if cfg.roles().contains(&NodeRole::Worker) {
        list.push(Action::JoinWorkers);
    }
    list.extend([
        Action::NodesReady,
        Action::DnsAddon,
        Action::ClusterDns,
        Action::Kubeconfig,
    ]);
    list
}

/// Runs the config's steps one after the other; the first error stops them.
async fn run(docker: &Docker, status: &Status, opts: &CreateOptions) -> Result<Created> {
    let mut ctx = Context::new(docker, status, &opts.name, &opts.config, opts.wait);
    for action in actions(&opts.config) {
        action.execute(&mut ctx).await?;
    }
    Ok(Created {
        nodes: ctx.node_names(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_follow_the_config() {
        use Action::*;
        let mut cfg = ClusterConfig::default();
        assert_eq!(
            actions(&cfg),
            [
                NodeImage,
                Network,
                Nodes,
                Boot,
                ControlPlane,
                NodesReady,
                DnsAddon,
                ClusterDns,
                Kubeconfig
            ]
        );
        cfg.nodes = vec![
            crate::config::NodeConfig::new(NodeRole::ControlPlane),
            crate::config::NodeConfig::new(NodeRole::Worker),
        ];
        cfg.dns.upstream = Upstream::Lab;
        cfg.dns.embedded = EmbeddedDns::Builtin;
        assert_eq!(
            actions(&cfg),
            [
                NodeImage,
                Network,
                LabUpstream,
                Nodes,
                EmbeddedNames,
                Boot,
                ControlPlane,
                JoinWorkers,
                NodesReady,
                DnsAddon,
                ClusterDns,
                Kubeconfig
            ]
        );
    }
}
