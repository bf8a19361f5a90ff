//! `minikind get clusters` and `get nodes`.

use anyhow::Result;
use bollard::Docker;

use crate::provider::docker;

/// Node containers (not the lab upstream) of one cluster, or of all.
pub async fn nodes(docker: &Docker, cluster: Option<&str>) -> Result<Vec<docker::OwnedContainer>> {
    let filter = match cluster {
        Some(c) => docker::cluster_filter(c),
        None => docker::any_cluster_filter(),
    };
    Ok(docker::containers(docker, filter)
        .await?
        .into_iter()
        .filter(|c| c.role == "control-plane" || c.role == "worker")
        .collect())
}
