//! `minikind cloud-provider`: a cluster's LoadBalancer Services get an address, as
//! cloud-provider-kind gives them on a KIND cluster. Like cloud-provider-kind it runs on the
//! host, beside the engine (a node has no say over the engine), until it is stopped: every
//! `type: LoadBalancer` Service gets a container of its own on the cluster's network
//! ([`crate::provider::docker::loadbalancer`]) that forwards each Service port to the nodes'
//! NodePorts ([`proxy`]); the container's address is written to
//! `status.loadBalancer.ingress`, where `kubectl get svc` shows it as EXTERNAL-IP. The
//! container goes when the Service goes (or stops being a LoadBalancer), and with the cluster.
//!
//! It reconciles every [`PERIOD`] from a full list of Services and Nodes (cloud-provider-kind's
//! service controller re-syncs on Node changes too): a changed port or node set replaces the
//! container at the same address.

pub mod plan;
pub mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{Context, Result};
use bollard::Docker;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use crate::interrupt::StopSignals;
use crate::provider::docker::loadbalancer::{self, LoadBalancer};

/// How often the Services are looked at again.
pub const PERIOD: Duration = Duration::from_secs(2);

/// One pass: makes, replaces and removes containers, and writes the Services' status.
async fn reconcile(
    docker: &Docker,
    client: &kube::Client,
    cluster: &str,
    image: &str,
) -> Result<()> {
    let services = Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Services")?
        .items;
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?
        .items;
    let have: BTreeMap<String, LoadBalancer> = loadbalancer::list(docker, cluster)
        .await?
        .into_iter()
        .map(|lb| (lb.name.clone(), lb))
        .collect();
    let mut wanted = HashSet::new();
    for svc in &services {
        let key = plan::service_key(svc);
        if !plan::wants_load_balancer(svc) {
            if !plan::ingress_ips(svc).is_empty() && had_ours(svc, cluster, &have) {
                write_status(client, svc, serde_json::json!({"loadBalancer": {}})).await?;
            }
            continue;
        }
        let name = plan::container_name(cluster, &key);
        wanted.insert(name.clone());
        let forwards = plan::forwards(svc, &nodes);
        let digest = plan::config_digest(&forwards);
        let existing = have.get(&name);
        let keep = existing.is_some_and(|lb| lb.running && lb.config == digest);
        let ip = if keep {
            loadbalancer::address(docker, cluster, &name).await
        } else {
            // Replaced in place: the Service keeps the address it was given.
            let old = match existing {
                Some(_) => loadbalancer::address(docker, cluster, &name).await,
                None => None,
            };
            let old = old.or_else(|| plan::ingress_ips(svc).into_iter().next());
            loadbalancer::remove(docker, &name).await?;
            let args: Vec<String> = forwards.iter().map(ToString::to_string).collect();
            let start = |ip: Option<String>| {
                let body = loadbalancer::container(
                    cluster,
                    &name,
                    image,
                    &key,
                    &digest,
                    &args,
                    ip.as_deref(),
                );
                loadbalancer::start(docker, cluster, body)
            };
            let ip = match start(old.clone()).await {
                Ok(ip) => ip,
                // The old address taken meanwhile: any address will do.
                Err(e) if old.is_some() => {
                    tracing::info!("{key}: {e:#}; taking a new address");
                    loadbalancer::remove(docker, &name).await?;
                    start(None).await?
                }
                Err(e) => return Err(e),
            };
            eprintln!("Service {key}: load balancer {name} at {ip}");
            Some(ip)
        };
        if let Some(ip) = ip
            && plan::ingress_ips(svc) != [ip.clone()]
        {
            write_status(client, svc, plan::status(svc, &ip)).await?;
        }
    }
    for lb in have.values().filter(|lb| !wanted.contains(&lb.name)) {
        loadbalancer::remove(docker, &lb.name).await?;
        eprintln!("Service {}: load balancer {} removed", lb.service, lb.name);
    }
    Ok(())
}

/// Whether `svc`'s address came from a container of ours (it was a LoadBalancer here).
fn had_ours(svc: &Service, cluster: &str, have: &BTreeMap<String, LoadBalancer>) -> bool {
    have.contains_key(&plan::container_name(cluster, &plan::service_key(svc)))
}

async fn write_status(
    client: &kube::Client,
    svc: &Service,
    status: serde_json::Value,
) -> Result<()> {
    let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    Api::<Service>::namespaced(client.clone(), ns)
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await
        .with_context(|| format!("writing the status of Service {ns}/{name}"))?;
    Ok(())
}

/// Runs until a stop signal (Ctrl-C, SIGTERM): reconciles every [`PERIOD`]. A failed pass is
/// reported and tried again (the API server restarting, a container racing its removal).
pub async fn run(docker: Docker, client: kube::Client, cluster: String) -> Result<()> {
    let image = loadbalancer::node_image(&docker, &cluster).await?;
    let mut signals = StopSignals::install().context("installing signal handlers")?;
    eprintln!("Serving the LoadBalancer Services of cluster {cluster:?} (Ctrl-C stops)");
    let mut last_error = None;
    loop {
        match reconcile(&docker, &client, &cluster, &image).await {
            Ok(()) => last_error = None,
            Err(e) => {
                let text = format!("{e:#}");
                if last_error.as_ref() != Some(&text) {
                    eprintln!("cloud-provider: {text}");
                }
                last_error = Some(text);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = signals.recv() => return Ok(()),
        }
    }
}
