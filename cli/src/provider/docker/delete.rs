//! `minikind delete cluster` and `delete clusters`: remove every container, volume and network
//! that carries the cluster's label, and nothing else.

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::{RemoveContainerOptionsBuilder, RemoveVolumeOptions};

use crate::provider::docker;

/// What a delete removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: Vec<String>,
    pub volumes: Vec<String>,
    pub networks: Vec<String>,
}

impl Removed {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.volumes.is_empty() && self.networks.is_empty()
    }
}

/// Removes the cluster's objects in dependency order: containers (with their anonymous
/// volumes), then named volumes, then networks.
pub async fn remove_cluster_objects(docker: &Docker, cluster: &str) -> Result<Removed> {
    let mut removed = Removed::default();
    let containers = docker::containers(docker, docker::cluster_filter(cluster)).await?;
    let rm = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    let results = futures::future::join_all(
        containers
            .iter()
            .map(|c| docker.remove_container(&c.id, Some(rm.clone()))),
    )
    .await;
    for (c, r) in containers.iter().zip(results) {
        match r {
            Ok(()) => {
                tracing::debug!(%cluster, container = %c.name, role = %c.role, "removed container");
                removed.containers.push(c.name.clone());
            }
            // Already gone (a concurrent delete, or an auto-removed container): fine.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing container {}", c.name)),
        }
    }
    for v in docker::volumes(docker, docker::cluster_filter(cluster)).await? {
        match docker.remove_volume(&v, None::<RemoveVolumeOptions>).await {
            Ok(()) => {
                tracing::debug!(%cluster, volume = %v, "removed volume");
                removed.volumes.push(v);
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing volume {v}")),
        }
    }
    for (n, _) in docker::networks(docker, docker::cluster_filter(cluster)).await? {
        match docker.remove_network(&n).await {
            Ok(()) => {
                tracing::debug!(%cluster, network = %n, "removed network");
                removed.networks.push(n);
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("removing network {n}")),
        }
    }
    Ok(removed)
}
