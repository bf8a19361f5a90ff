//! The cluster's network, as KIND's docker provider makes its own (`network.go`:
//! `ensureNetwork`): a bridge network labelled with the cluster, internal when asked.

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::NetworkCreateRequest;

use super::nodes::{labels, network_name};
use super::short_id;

/// Creates the cluster's bridge network; returns its ID.
pub async fn create(docker: &Docker, cluster: &str, internal: bool) -> Result<String> {
    let network = docker
        .create_network(NetworkCreateRequest {
            name: network_name(cluster),
            driver: Some("bridge".into()),
            internal: Some(internal),
            labels: Some(labels(cluster, "network")),
            ..Default::default()
        })
        .await
        .context("creating the cluster network")?;
    Ok(network.id)
}

/// Logs the network the engine made: its subnet and gateway, and whether it is internal.
pub async fn log_network(docker: &Docker, network: &str, id: &str) {
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
