//! The Docker provider: everything that talks to the Docker engine, as KIND keeps it in
//! `pkg/cluster/internal/providers/docker`. This module holds the connection and the labels that
//! own every object minikind makes (KIND's `provider.go`: `ListClusters`, `ListNodes`); the
//! submodules make, inspect, wait for, run commands in and remove those objects.

pub mod delete;
pub mod embedded_names;
pub mod endpoint;
pub mod exec;
pub mod files;
pub mod list;
pub mod loadbalancer;
pub mod network;
pub mod nodes;
pub mod wait;

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
};
use minikind_contract::{CLUSTER_LABEL, ROLE_LABEL};

/// Connects to the engine the docker CLI would use (`DOCKER_HOST`, `DOCKER_CONTEXT`, the current
/// context, else the local socket: see [`endpoint`]) and checks it answers, so that a missing
/// engine is one clear line rather than an error deep inside a step.
pub async fn connect() -> Result<Docker> {
    let at = endpoint::resolve(&endpoint::Env::from_process())?;
    let hint = || {
        format!(
            "cannot reach the Docker engine at {} ({}): is Docker running? Start it (e.g. \
             `sudo systemctl start docker`) or point DOCKER_HOST at it",
            at.host, at.source
        )
    };
    let docker = at.client().with_context(hint)?;
    // bollard speaks a newer API than older engines (20.10 here); agree on one both know.
    let docker = docker.negotiate_version().await.with_context(hint)?;
    docker.ping().await.with_context(hint)?;
    Ok(docker)
}

pub fn cluster_filter(cluster: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{CLUSTER_LABEL}={cluster}")],
    )])
}

pub fn any_cluster_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![CLUSTER_LABEL.to_string()])])
}

/// A container that belongs to a cluster.
#[derive(Debug, Clone)]
pub struct OwnedContainer {
    pub id: String,
    pub name: String,
    pub cluster: String,
    pub role: String,
    /// Every label it carries (a role's own labels, e.g. a load balancer's Service).
    pub labels: HashMap<String, String>,
    pub running: bool,
}

pub async fn containers(
    docker: &Docker,
    filter: HashMap<String, Vec<String>>,
) -> Result<Vec<OwnedContainer>> {
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filter)
        .build();
    let list = docker
        .list_containers(Some(opts))
        .await
        .context("listing containers")?;
    let mut out: Vec<OwnedContainer> = list
        .into_iter()
        .map(|c| {
            let labels = c.labels.unwrap_or_default();
            OwnedContainer {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                cluster: labels.get(CLUSTER_LABEL).cloned().unwrap_or_default(),
                role: labels.get(ROLE_LABEL).cloned().unwrap_or_default(),
                running: c.state.is_some_and(|s| s.to_string() == "running"),
                labels,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Networks of the filter, by name.
pub async fn networks(
    docker: &Docker,
    filter: HashMap<String, Vec<String>>,
) -> Result<BTreeMap<String, String>> {
    let opts = ListNetworksOptionsBuilder::default()
        .filters(&filter)
        .build();
    let list = docker
        .list_networks(Some(opts))
        .await
        .context("listing networks")?;
    Ok(list
        .into_iter()
        .filter_map(|n| {
            let cluster = n.labels.as_ref()?.get(CLUSTER_LABEL)?.clone();
            Some((n.name?, cluster))
        })
        .collect())
}

/// Volumes of the filter, by name.
pub async fn volumes(docker: &Docker, filter: HashMap<String, Vec<String>>) -> Result<Vec<String>> {
    let opts = ListVolumesOptionsBuilder::default()
        .filters(&filter)
        .build();
    let list = docker
        .list_volumes(Some(opts))
        .await
        .context("listing volumes")?;
    let mut names: Vec<String> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The 12 hex digits `docker ps` shows of a container or network ID.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Every cluster that owns at least one container or network (`get clusters`, and what
/// `delete clusters --all` deletes).
pub async fn cluster_names(docker: &Docker) -> Result<Vec<String>> {
    let containers = containers(docker, any_cluster_filter()).await?;
    let networks = networks(docker, any_cluster_filter()).await?;
    Ok(owning_clusters(&containers, &networks))
}

/// The clusters named by the labels of these containers and networks (network name → cluster),
/// sorted, each once. A cluster left with only its network (a delete that stopped half-way)
/// still counts; an empty label names no cluster.
fn owning_clusters(
    containers: &[OwnedContainer],
    networks: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<String> = containers
        .iter()
        .map(|c| c.cluster.clone())
        .chain(networks.values().cloned())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, cluster: &str, role: &str) -> OwnedContainer {
        OwnedContainer {
            id: format!("id-{name}"),
            name: name.into(),
            cluster: cluster.into(),
            role: role.into(),
            labels: HashMap::new(),
            running: true,
        }
    }

    #[test]
    fn every_labelled_cluster_is_selected_once() {
        let containers = [
            container("b-control-plane", "b", "control-plane"),
            container("b-worker", "b", "worker"),
            container("a-upstream", "a", "upstream"),
            container("odd", "", "worker"),
        ];
        let networks = BTreeMap::from([
            ("minikind-b".to_string(), "b".to_string()),
            // Only the network is left of this one: `delete clusters --all` must still find it.
            ("minikind-half".to_string(), "half".to_string()),
        ]);
        assert_eq!(owning_clusters(&containers, &networks), ["a", "b", "half"]);
        assert!(owning_clusters(&[], &BTreeMap::new()).is_empty());
    }
}
