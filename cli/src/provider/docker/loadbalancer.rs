//! LoadBalancer containers, as cloud-provider-kind runs them (`pkg/loadbalancer/server.go`,
//! `createLoadBalancer`): one per Service on the cluster's network, labelled with the cluster
//! (so `delete cluster` removes it with the nodes) and the Service, running the proxy from the
//! node image (`minikind lb-proxy`, where cloud-provider-kind runs envoy).

use std::collections::HashMap;

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, NetworkingConfig,
    RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptionsBuilder};
use minikind_contract::{CLUSTER_LABEL, ROLE_LABEL};

use super::nodes::{self, network_name};

/// The role label's value on a load balancer (not a node: `get nodes` leaves it out).
pub const ROLE: &str = "loadbalancer";
/// The Service a load balancer serves, `namespace/name`.
pub const SERVICE_LABEL: &str = "dev.minikind.loadbalancer.service";
/// A digest of its forwards ([`crate::cloud_provider::plan::config_digest`]).
pub const CONFIG_LABEL: &str = "dev.minikind.loadbalancer.config";

/// A load balancer container of the cluster.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub name: String,
    pub service: String,
    pub config: String,
    pub running: bool,
}

/// The cluster's load balancer containers.
pub async fn list(docker: &Docker, cluster: &str) -> Result<Vec<LoadBalancer>> {
    let filter = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{CLUSTER_LABEL}={cluster}"),
            format!("{ROLE_LABEL}={ROLE}"),
        ],
    )]);
    Ok(super::containers(docker, filter)
        .await
        .context("listing the load balancer containers")?
        .into_iter()
        .map(|c| LoadBalancer {
            service: c.labels.get(SERVICE_LABEL).cloned().unwrap_or_default(),
            config: c.labels.get(CONFIG_LABEL).cloned().unwrap_or_default(),
            name: c.name,
            running: c.running,
        })
        .collect())
}

/// The container body: the node image's `minikind lb-proxy FORWARD…` on the cluster network,
/// at `ip` when it is given (a replaced container keeps its Service's address).
pub fn container(
    cluster: &str,
    name: &str,
    image: &str,
    service: &str,
    config: &str,
    forwards: &[String],
    ip: Option<&str>,
) -> ContainerCreateBody {
    let network = network_name(cluster);
    let mut labels = nodes::labels(cluster, ROLE);
    labels.insert(SERVICE_LABEL.to_string(), service.to_string());
    labels.insert(CONFIG_LABEL.to_string(), config.to_string());
    let mut entrypoint = vec![
        minikind_contract::MINIKIND_PATH.to_string(),
        "lb-proxy".to_string(),
    ];
    entrypoint.extend(forwards.iter().cloned());
    let endpoint = EndpointSettings {
        ipam_config: ip.map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(name.to_string()),
        entrypoint: Some(entrypoint),
        cmd: Some(vec![]),
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network.clone()),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: None,
            }),
            // Service ports below 1024 without any capability (cloud-provider-kind's
            // `ip_unprivileged_port_start=1`).
            sysctls: Some(HashMap::from([(
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, endpoint)])),
        }),
        ..Default::default()
    }
}

/// Creates and starts the container; its address on the cluster network.
pub async fn start(docker: &Docker, cluster: &str, body: ContainerCreateBody) -> Result<String> {
    let name = body.hostname.clone().unwrap_or_default();
    nodes::create_and_start(docker, &name, body, cluster).await
}

/// Its address on the cluster network (None when it has none, e.g. stopped).
pub async fn address(docker: &Docker, cluster: &str, name: &str) -> Option<String> {
    nodes::container_ip(docker, name, &network_name(cluster))
        .await
        .ok()
}

/// Removes it (gone already is fine).
pub async fn remove(docker: &Docker, name: &str) -> Result<()> {
    let rm = RemoveContainerOptionsBuilder::default().force(true).build();
    match docker.remove_container(name, Some(rm)).await {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {name}")),
    }
}

/// The image the cluster's control plane runs: the node image, which holds the proxy.
pub async fn node_image(docker: &Docker, cluster: &str) -> Result<String> {
    let cp = format!("{cluster}-control-plane");
    docker
        .inspect_container(&cp, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {cp}"))?
        .image
        .with_context(|| format!("{cp} names no image"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_is_the_proxy_on_the_cluster_network_with_its_labels() {
        let forwards = ["TCP:80=172.18.0.2:31080".to_string()];
        let body = container(
            "c1",
            "minikindccm-0a0b",
            "sha256:img",
            "shop/web",
            "d1",
            &forwards,
            Some("172.18.0.9"),
        );
        assert_eq!(
            body.entrypoint.unwrap(),
            [
                minikind_contract::MINIKIND_PATH,
                "lb-proxy",
                "TCP:80=172.18.0.2:31080"
            ]
        );
        let labels = body.labels.unwrap();
        assert_eq!(labels[CLUSTER_LABEL], "c1");
        assert_eq!(labels[ROLE_LABEL], ROLE);
        assert_eq!(labels[SERVICE_LABEL], "shop/web");
        assert_eq!(labels[CONFIG_LABEL], "d1");
        let hc = body.host_config.unwrap();
        assert_eq!(hc.network_mode.as_deref(), Some("minikind-c1"));
        let eps = body.networking_config.unwrap().endpoints_config.unwrap();
        let ip = eps["minikind-c1"].ipam_config.as_ref().unwrap();
        assert_eq!(ip.ipv4_address.as_deref(), Some("172.18.0.9"));
    }
}
