//! What a node's builtin embedded resolver (`dns.embedded: builtin`) needs from the host: the
//! external servers Docker's resolver would have used, and the names Docker's resolver would
//! have answered — every container on the cluster network with its aliases and short id, as
//! the engine reports them once the containers have their addresses.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{InspectContainerOptions, UploadToContainerOptionsBuilder};
use minikind_contract::NAMES_PATH;
use minikind_dns_embedded::{ContainerNames, NamesTable, NetworkNames};
use minikind_resolv_conf::ResolvConf;

use crate::config::{ClusterConfig, Upstream};
use crate::docker;

/// systemd-resolved's stub: when it is the host file's only server, Docker reads the real
/// servers from [`SYSTEMD_RESOLV_CONF`].
const SYSTEMD_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// libnetwork's fallback when no usable server is left (`resolvconf.FilterResolvDNS`).
const DOCKER_DEFAULT_SERVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
];

/// The servers Docker's resolver forwards to for a node of this cluster: the node's `--dns`
/// (the lab upstream or `dns.upstream: <IP>`), or, with `upstream: host`, the host's servers —
/// none on an `--internal` network, where Docker does not use the host's servers.
/// `read` returns a host file's text (absent: `None`).
pub fn external_servers(
    cfg: &ClusterConfig,
    lab_upstream_ip: Option<&str>,
    read: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    match cfg.dns.upstream {
        Upstream::Lab => lab_upstream_ip.map(str::to_string).into_iter().collect(),
        Upstream::Server(ip) => vec![ip.to_string()],
        Upstream::Host if cfg.networking.internal => Vec::new(),
        Upstream::Host => host_servers(read)
            .into_iter()
            .map(|ip| ip.to_string())
            .collect(),
    }
}

/// The host's servers as Docker 20.10 takes them for a container on an IPv4 network: from
/// `/etc/resolv.conf`, or systemd-resolved's own file when the stub is the only one; loopback
/// and IPv6 servers dropped (the container cannot reach them); Google's two when nothing is
/// left.
pub fn host_servers(read: impl Fn(&str) -> Option<String>) -> Vec<IpAddr> {
    let servers = |text: Option<String>| ResolvConf::parse(&text.unwrap_or_default()).nameservers();
    let mut found = servers(read("/etc/resolv.conf"));
    if found == [SYSTEMD_STUB] {
        found = servers(read(SYSTEMD_RESOLV_CONF));
    }
    found.retain(|ip| ip.is_ipv4() && !ip.is_loopback());
    if found.is_empty() {
        return DOCKER_DEFAULT_SERVERS.to_vec();
    }
    found
}

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
    for c in docker::containers(docker, docker::cluster_filter(cluster)).await? {
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

    fn files(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn servers_follow_the_upstream_setting() {
        let mut cfg = ClusterConfig::default();
        let host = files(&[("/etc/resolv.conf", "nameserver 192.0.2.53\n")]);
        assert_eq!(external_servers(&cfg, None, &host), vec!["192.0.2.53"]);
        cfg.networking.internal = true;
        assert!(
            external_servers(&cfg, None, &host).is_empty(),
            "Docker does not use the host's servers on an internal network"
        );
        cfg.dns.upstream = Upstream::Lab;
        assert_eq!(
            external_servers(&cfg, Some("172.18.0.2"), &host),
            vec!["172.18.0.2"]
        );
        cfg.dns.upstream = Upstream::Server("198.51.100.53".parse().unwrap());
        assert_eq!(external_servers(&cfg, None, &host), vec!["198.51.100.53"]);
    }

    #[test]
    fn host_servers_as_docker_takes_them() {
        let plain = files(&[(
            "/etc/resolv.conf",
            "nameserver 127.0.0.1\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver 198.51.100.53\n",
        )]);
        assert_eq!(
            host_servers(plain),
            vec![
                "192.0.2.53".parse::<IpAddr>().unwrap(),
                "198.51.100.53".parse().unwrap()
            ]
        );
        let resolved = files(&[
            ("/etc/resolv.conf", "nameserver 127.0.0.53\noptions edns0\n"),
            (SYSTEMD_RESOLV_CONF, "nameserver 203.0.113.1\n"),
        ]);
        assert_eq!(
            host_servers(resolved),
            vec!["203.0.113.1".parse::<IpAddr>().unwrap()]
        );
        let only_loopback = files(&[("/etc/resolv.conf", "nameserver 127.0.0.1\n")]);
        assert_eq!(host_servers(only_loopback), DOCKER_DEFAULT_SERVERS.to_vec());
        assert_eq!(host_servers(files(&[])), DOCKER_DEFAULT_SERVERS.to_vec());
    }

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
