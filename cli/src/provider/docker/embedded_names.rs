//! The builtin embedded resolver's names table (`dns.embedded: builtin`): the names Docker's
//! resolver would have answered — every container on the cluster network with its aliases and
//! short id, as the engine reports them once the containers have their addresses — written into
//! each node.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, UploadToContainerOptionsBuilder};
use minikind_contract::NAMES_PATH;
use minikind_dns_embedded::{ContainerNames, NamesTable, NetworkNames};

/// The names table for `network` from the engine's view of the containers on it: name,
/// id (its short form is answered), hostname, aliases and addresses of each.
pub fn names_table(network: &str, containers: &[ContainerInspectResponse]) -> NamesTable {
    let mut entries: Vec<ContainerNames> = containers
        .iter()
        .filter_map(|c| {
            let endpoint = c
                .network_settings
                .as_ref()?
                .networks
                .as_ref()?
                .get(network)?;
            let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
            Some(ContainerNames {
                name: c.name.as_deref()?.trim_start_matches('/').to_string(),
                id: text(&c.id),
                hostname: c.config.as_ref().and_then(|cfg| text(&cfg.hostname)),
                aliases: endpoint.aliases.clone().unwrap_or_default(),
                ipv4: text(&endpoint.ip_address).and_then(|ip| ip.parse().ok()),
                ipv6: text(&endpoint.global_ipv6_address).and_then(|ip| ip.parse().ok()),
            })
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    NamesTable {
        networks: vec![NetworkNames {
            network: network.to_string(),
            containers: entries,
        }],
    }
}

/// Builds the cluster's names table from the engine and writes it into each of `nodes` at
/// [`NAMES_PATH`] (the node's resolver re-reads it when it changes).
pub async fn write_names(
    docker: &Docker,
    cluster: &str,
    network: &str,
    nodes: &[String],
) -> Result<NamesTable> {
    let mut inspected = Vec::new();
    for c in super::containers(docker, super::cluster_filter(cluster)).await? {
        inspected.push(
            docker
                .inspect_container(&c.name, None::<InspectContainerOptions>)
                .await
                .with_context(|| format!("inspecting {}", c.name))?,
        );
    }
    let table = names_table(network, &inspected);
    let json = serde_json::to_string_pretty(&table).context("encoding the names table")?;
    let archive = names_archive(&json)?;
    for node in nodes {
        let opts = UploadToContainerOptionsBuilder::default()
            .path(names_parent())
            .build();
        docker
            .upload_to_container(node, Some(opts), bollard::body_full(archive.clone().into()))
            .await
            .with_context(|| format!("writing {node}:{NAMES_PATH}"))?;
    }
    Ok(table)
}

/// `/etc` for `/etc/minikind/names.json`: the archive carries the `minikind` directory too,
/// since the image does not have it.
fn names_parent() -> &'static str {
    let dir = NAMES_PATH.rsplit_once('/').map_or("/", |(d, _)| d);
    dir.rsplit_once('/')
        .map_or("/", |(p, _)| if p.is_empty() { "/" } else { p })
}

/// A tar of `<dir>/` and `<dir>/names.json`, stamped with the current time: the resolver
/// notices a new table by its modification time.
fn names_archive(json: &str) -> Result<Vec<u8>> {
    let rel = NAMES_PATH
        .strip_prefix(names_parent())
        .unwrap_or(NAMES_PATH)
        .trim_start_matches('/');
    let (dir, _) = rel
        .rsplit_once('/')
        .context("the names path has no directory")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(0o755);
    header.set_mtime(now);
    builder
        .append_data(&mut header, format!("{dir}/"), std::io::empty())
        .context("packing the names table")?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(now);
    builder
        .append_data(&mut header, rel, json.as_bytes())
        .context("packing the names table")?;
    builder.into_inner().context("packing the names table")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, EndpointSettings, NetworkSettings};
    use std::collections::HashMap;

    fn container(
        name: &str,
        id: &str,
        net: &str,
        ip: &str,
        aliases: &[&str],
    ) -> ContainerInspectResponse {
        ContainerInspectResponse {
            name: Some(format!("/{name}")),
            id: Some(id.to_string()),
            config: Some(ContainerConfig {
                hostname: Some(name.to_string()),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([(
                    net.to_string(),
                    EndpointSettings {
                        aliases: Some(aliases.iter().map(|a| a.to_string()).collect()),
                        ip_address: Some(ip.to_string()),
                        global_ipv6_address: Some(String::new()),
                        ..Default::default()
                    },
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn names_come_from_the_engines_view_of_the_network() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let table = names_table(
            "minikind-lab",
            &[
                container(
                    "lab-worker",
                    id,
                    "minikind-lab",
                    "172.18.0.3",
                    &["0123456789ab"],
                ),
                container(
                    "lab-control-plane",
                    "fedcba",
                    "minikind-lab",
                    "172.18.0.2",
                    &[],
                ),
                container("elsewhere", "1", "bridge", "172.17.0.2", &[]),
            ],
        );
        assert_eq!(table.networks.len(), 1);
        let net = &table.networks[0];
        assert_eq!(net.network, "minikind-lab");
        let names: Vec<&str> = net.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["lab-control-plane", "lab-worker"]);
        let worker = &net.containers[1];
        assert_eq!(worker.id.as_deref(), Some(id));
        assert_eq!(worker.hostname.as_deref(), Some("lab-worker"));
        assert_eq!(worker.aliases, vec!["0123456789ab"]);
        assert_eq!(worker.ipv4, Some("172.18.0.3".parse().unwrap()));
        assert_eq!(worker.ipv6, None);
    }

    #[test]
    fn the_archive_makes_the_directory_and_the_file() {
        assert_eq!(names_parent(), "/etc");
        let bytes = names_archive("{\"networks\":[]}").unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            let mut text = String::new();
            use std::io::Read;
            entry.read_to_string(&mut text).unwrap();
            assert!(entry.header().mtime().unwrap() > 0);
            seen.push((path, text));
        }
        assert_eq!(
            seen,
            vec![
                ("minikind/".to_string(), String::new()),
                (
                    "minikind/names.json".to_string(),
                    "{\"networks\":[]}".to_string()
                )
            ]
        );
    }
}
