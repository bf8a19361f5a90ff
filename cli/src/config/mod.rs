//! The cluster config file: minikind's own `minikind.dev/v1alpha1`, and KIND's
//! `kind.x-k8s.io/v1alpha4` for the fields that mean the same thing.
//!
//! Parsing is strict: an unknown field, a bad CIDR or a bad name is one error naming it, and
//! nothing is created.

mod node_options;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use minikind_agent::CLUSTER_DOMAIN;
use minikind_control_plane::node_local_dns::{self, NodeLocalDns};
use serde::Deserialize;

#[allow(unused_imports)]
pub use node_options::{ExtraMount, NodeConfig, PortMapping, Propagation, Protocol};

pub const MINIKIND_API_VERSION: &str = "minikind.dev/v1alpha1";
pub const KIND_API_VERSION: &str = "kind.x-k8s.io/v1alpha4";

/// Default name when neither `--name`, the config nor `MINIKIND_CLUSTER_NAME` gives one.
pub const DEFAULT_CLUSTER_NAME: &str = "minikind";

/// Longest cluster name: `<name>-control-plane` must still be a valid 63-character hostname.
pub const MAX_NAME_LEN: usize = 63 - "-control-plane".len();

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("{source_name}: {message}")]
    Syntax {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: field `{field}`: {message}")]
    Field {
        source_name: String,
        field: String,
        message: String,
    },
    #[error(
        "invalid cluster name {name:?}: {reason} (names match ^[a-z0-9.-]+$, start and end with \
         a letter or digit, and have at most {MAX_NAME_LEN} characters)"
    )]
    Name { name: String, reason: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::ControlPlane => "control-plane",
            NodeRole::Worker => "worker",
        }
    }
}

/// Where the nodes' DNS forwards names it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The host's resolvers, as Docker passes them to its embedded resolver.
    Host,
    /// A `<cluster>-upstream` container serving the hermetic `example.test` zone.
    Lab,
    /// A given server, passed to every node as `--dns`.
    Server(IpAddr),
}

/// Who serves 127.0.0.11 inside the nodes (`dns.embedded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddedDns {
    /// Docker's own resolver (dockerd), as in KIND.
    #[default]
    Docker,
    /// minikind's reimplementation (`dns-embedded`), started by each node's agent in place of
    /// Docker's rules, with the same rules, names and forwarding.
    Builtin,
}

impl EmbeddedDns {
    pub fn as_str(self) -> &'static str {
        match self {
            EmbeddedDns::Docker => "docker",
            EmbeddedDns::Builtin => "builtin",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsOptions {
    pub network_magic: bool,
    pub upstream: Upstream,
    pub embedded: EmbeddedDns,
    /// `dns.nodeLocalDNS`: the NodeLocal DNSCache add-on (None: off).
    pub node_local_dns: Option<NodeLocalDns>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Networking {
    pub pod_subnet: Ipv4Net,
    pub service_subnet: Ipv4Net,
    /// KIND's `dnsSearch`: `None` keeps the node's search lines, an empty list drops them.
    pub dns_search: Option<Vec<String>>,
    /// KIND's `apiServerAddress`: where the engine publishes the API server. None = not
    /// given: 127.0.0.1, or the engine's host when the engine is on another machine (see
    /// `provider::docker::nodes::place_api_server`).
    pub api_server_address: Option<IpAddr>,
    /// 0 = a random free port, as KIND does.
    pub api_server_port: u16,
    /// A Docker `--internal` network: no route off the machine.
    pub internal: bool,
    /// KIND's `kubeProxyMode: nftables` (else iptables, the default).
    pub kube_proxy_nftables: bool,
}

impl Networking {
    /// The address the API server is published on: as given, else KIND's 127.0.0.1.
    pub fn published_address(&self) -> IpAddr {
        self.api_server_address
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// The warning for an API server published beyond this machine, as KIND gives one: any
    /// `apiServerAddress` outside 127.0.0.0/8 and ::1 (KIND's docs strongly recommend keeping
    /// the default 127.0.0.1 for security). `None` when it stays on the loopback, and on an
    /// `internal` network, where Docker publishes no port at all.
    pub fn api_server_exposure_warning(&self) -> Option<String> {
        let address = self.published_address();
        // `::ffff:127.0.0.1` is the IPv4 loopback too.
        if address.to_canonical().is_loopback() || self.internal {
            return None;
        }
        let published = match self.api_server_port {
            0 => match address {
                IpAddr::V4(a) => format!("{a}:<a random port>"),
                IpAddr::V6(a) => format!("[{a}]:<a random port>"),
            },
            port => std::net::SocketAddr::new(address, port).to_string(),
        };
        Some(format!(
            "the API server will be published on {published}, reachable from other machines; \
             keep networking.apiServerAddress at 127.0.0.1 unless you need that"
        ))
    }
}

/// A validated cluster description.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub name: Option<String>,
    /// The control plane first, as KIND names and creates them.
    pub nodes: Vec<NodeConfig>,
    pub networking: Networking,
    pub dns: DnsOptions,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: None,
            nodes: vec![NodeConfig::new(NodeRole::ControlPlane)],
            networking: Networking {
                pod_subnet: minikind_contract::DEFAULT_POD_SUBNET
                    .parse()
                    .expect("constant CIDR"),
                service_subnet: minikind_contract::DEFAULT_SERVICE_SUBNET
                    .parse()
                    .expect("constant CIDR"),
                dns_search: None,
                api_server_address: None,
                api_server_port: 0,
                internal: false,
                kube_proxy_nftables: false,
            },
            dns: DnsOptions {
                network_magic: true,
                upstream: Upstream::Host,
                embedded: EmbeddedDns::Docker,
                node_local_dns: None,
            },
        }
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    kind: String,
    api_version: String,
    name: Option<String>,
    #[serde(default)]
    nodes: Option<Vec<RawNode>>,
    #[serde(default)]
    networking: Option<RawNetworking>,
    #[serde(default)]
    dns: Option<RawDns>,
    /// Applied to every node (as a node's own, after them in kind).
    #[serde(default)]
    kubeadm_config_patches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNode {
    role: Option<String>,
    #[serde(default)]
    extra_port_mappings: Vec<node_options::RawPortMapping>,
    #[serde(default)]
    extra_mounts: Vec<node_options::RawMount>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    kubeadm_config_patches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNetworking {
    pod_subnet: Option<String>,
    service_subnet: Option<String>,
    // Option<Option<…>> keeps KIND's distinction between "absent" and "empty".
    #[serde(default, deserialize_with = "present")]
    dns_search: Option<Option<Vec<String>>>,
    api_server_address: Option<String>,
    api_server_port: Option<i64>,
    internal: Option<bool>,
    kube_proxy_mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDns {
    network_magic: Option<bool>,
    upstream: Option<String>,
    embedded: Option<String>,
    /// `true`/`false`, or `{address: IP, mode: iptables|local}`.
    #[serde(rename = "nodeLocalDNS")]
    node_local_dns: Option<serde_yaml::Value>,
}

/// `dns.nodeLocalDNS`: `true` (the add-on's defaults: 169.254.20.10, iptables mode), `false`,
/// or a mapping with `address` and `mode` (each optional).
fn parse_node_local_dns(v: &serde_yaml::Value) -> Result<Option<NodeLocalDns>, String> {
    use serde_yaml::Value;
    let mut nl = NodeLocalDns {
        domain: CLUSTER_DOMAIN.to_string(),
        address: node_local_dns::DEFAULT_ADDRESS,
        mode: node_local_dns::Mode::Iptables,
    };
    match v {
        Value::Bool(false) => return Ok(None),
        Value::Bool(true) => {}
        Value::Mapping(m) => {
            for (k, val) in m {
                let key = k.as_str().ok_or("keys must be strings")?;
                if key != "address" && key != "mode" {
                    return Err(format!("unknown field `{key}` (expected address or mode)"));
                }
                let text = val
                    .as_str()
                    .ok_or_else(|| format!("{key}: expected a string"))?;
                if key == "address" {
                    nl.address = text
                        .parse()
                        .map_err(|_| format!("address: {text:?} is not an IPv4 address"))?;
                } else {
                    nl.mode =
                        node_local_dns::Mode::parse(text).map_err(|e| format!("mode: {e}"))?;
                }
            }
        }
        _ => return Err("expected true, false or a mapping with address and mode".into()),
    }
    Ok(Some(nl))
}

fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// KIND fields that minikind knows but does not reproduce: named so the error says why.
const KIND_ONLY_FIELDS: &[&str] = &[
    "featureGates",
    "runtimeConfig",
    "kubeadmConfigPatchesJSON6902",
    "containerdConfigPatches",
    "containerdConfigPatchesJSON6902",
    "image",
    "ipFamily",
    "disableDefaultCNI",
];

/// `networking.kubeProxyMode`: whether nodes run kube-proxy's nftables mode (else iptables,
/// KIND's default). `none` and `ipvs` are one error saying why.
fn kube_proxy_nftables(mode: &str) -> Result<bool, String> {
    match mode {
        "iptables" => Ok(false),
        "nftables" => Ok(true),
        "none" => Err(
            "none (no kube-proxy) is not reproduced: the cluster's own DNS reaches the API \
             server through the kubernetes Service, which needs kube-proxy's rules; use iptables \
             or nftables"
                .into(),
        ),
        "ipvs" => Err(
            "ipvs is not reproduced: minikind programs no IPVS virtual servers (kube-proxy's \
             IPVS mode is deprecated upstream); use iptables or nftables"
                .into(),
        ),
        other => Err(format!(
            "{other:?} is not one of iptables, nftables, ipvs, none"
        )),
    }
}

impl ClusterConfig {
    /// The nodes' roles, in order.
    pub fn roles(&self) -> Vec<NodeRole> {
        self.nodes.iter().map(|n| n.role).collect()
    }

    /// Parses and validates a config document; `source_name` (a path or `-`) goes into errors.
    pub fn parse(text: &str, source_name: &str) -> Result<ClusterConfig, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            source_name: source_name.to_string(),
            message,
        };
        let field = |field: &str, message: String| ConfigError::Field {
            source_name: source_name.to_string(),
            field: field.to_string(),
            message,
        };

        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| {
            let msg = e.to_string();
            match KIND_ONLY_FIELDS
                .iter()
                .find(|f| msg.contains(&format!("unknown field `{f}`")))
            {
                Some(f) => syntax(format!(
                    "{msg} (`{f}` is a KIND setting minikind does not reproduce)"
                )),
                None => syntax(msg),
            }
        })?;

        if raw.kind != "Cluster" {
            return Err(field(
                "kind",
                format!("must be `Cluster`, not {:?}", raw.kind),
            ));
        }
        let is_kind = match raw.api_version.as_str() {
            MINIKIND_API_VERSION => false,
            KIND_API_VERSION => true,
            other => {
                return Err(field(
                    "apiVersion",
                    format!("{other:?} is not one of {MINIKIND_API_VERSION}, {KIND_API_VERSION}"),
                ));
            }
        };

        let mut cfg = ClusterConfig::default();
        if let Some(name) = raw.name {
            validate_name(&name)?;
            cfg.name = Some(name);
        }

        let mut cluster_patches = Vec::new();
        for (i, text) in raw.kubeadm_config_patches.iter().enumerate() {
            cluster_patches.push(
                node_options::kubeadm_patch(text, &format!("kubeadmConfigPatches[{i}]"))
                    .map_err(|(f, m)| field(&f, m))?,
            );
        }
        let cwd = std::env::current_dir().map_err(|e| {
            syntax(format!(
                "the current directory (relative extraMounts hostPaths start there): {e}"
            ))
        })?;
        let nodes = raw.nodes.unwrap_or_else(|| {
            vec![RawNode {
                role: None,
                extra_port_mappings: Vec::new(),
                extra_mounts: Vec::new(),
                labels: BTreeMap::new(),
                kubeadm_config_patches: Vec::new(),
            }]
        });
        {
            let mut roles = Vec::new();
            for (i, n) in nodes.into_iter().enumerate() {
                let role = match n.role.as_deref() {
                    None | Some("control-plane") => NodeRole::ControlPlane,
                    Some("worker") => NodeRole::Worker,
                    Some(other) => {
                        return Err(field(
                            &format!("nodes[{i}].role"),
                            format!("{other:?} is not one of control-plane, worker"),
                        ));
                    }
                };
                let at = format!("nodes[{i}]");
                let mut node = NodeConfig::new(role);
                for (j, m) in n.extra_port_mappings.into_iter().enumerate() {
                    node.port_mappings.push(
                        node_options::port_mapping(m, &format!("{at}.extraPortMappings[{j}]"))
                            .map_err(|(f, m)| field(&f, m))?,
                    );
                }
                for (j, m) in n.extra_mounts.into_iter().enumerate() {
                    node.mounts.push(
                        node_options::mount(m, &format!("{at}.extraMounts[{j}]"), &cwd)
                            .map_err(|(f, m)| field(&f, m))?,
                    );
                }
                for (k, v) in n.labels {
                    node_options::check_label(&k, &v)
                        .map_err(|m| field(&format!("{at}.labels"), m))?;
                    node.labels.insert(k, v);
                }
                let mut patches = Vec::new();
                for (j, text) in n.kubeadm_config_patches.iter().enumerate() {
                    patches.push(
                        node_options::kubeadm_patch(
                            text,
                            &format!("{at}.kubeadmConfigPatches[{j}]"),
                        )
                        .map_err(|(f, m)| field(&f, m))?,
                    );
                }
                for (target, labels) in patches.iter().chain(&cluster_patches) {
                    if target.reaches(role) {
                        node.labels.extend(labels.clone());
                    }
                }
                roles.push(node);
            }
            // Two mappings of one host port cannot both be published (kind leaves that to
            // the engine, which fails half-way through the create).
            let all: Vec<(usize, usize, &PortMapping)> = roles
                .iter()
                .enumerate()
                .flat_map(|(i, n)| {
                    n.port_mappings
                        .iter()
                        .enumerate()
                        .map(move |(j, m)| (i, j, m))
                })
                .collect();
            for (k, (i, j, a)) in all.iter().enumerate() {
                if let Some((i2, j2, _)) =
                    all[..k].iter().find(|(_, _, b)| node_options::clash(a, b))
                {
                    return Err(field(
                        &format!("nodes[{i}].extraPortMappings[{j}].hostPort"),
                        format!(
                            "host port {}/{} is already mapped by nodes[{i2}].extraPortMappings[{j2}]",
                            a.host_port,
                            a.protocol.as_docker()
                        ),
                    ));
                }
            }
            let cps = roles
                .iter()
                .filter(|r| r.role == NodeRole::ControlPlane)
                .count();
            if cps == 0 {
                return Err(field("nodes", "no node has role control-plane".into()));
            }
            if cps > 1 {
                return Err(field(
                    "nodes",
                    format!("{cps} control-plane nodes: minikind runs exactly one"),
                ));
            }
            // The control plane comes first, as in KIND's node naming.
            roles.sort_by_key(|r| r.role != NodeRole::ControlPlane);
            cfg.nodes = roles;
        }

        if let Some(net) = raw.networking {
            if let Some(mode) = net.kube_proxy_mode {
                cfg.networking.kube_proxy_nftables =
                    kube_proxy_nftables(&mode).map_err(|m| field("networking.kubeProxyMode", m))?;
            }
            if let Some(s) = net.pod_subnet {
                cfg.networking.pod_subnet =
                    parse_cidr(&s).map_err(|m| field("networking.podSubnet", m))?;
            }
            if let Some(s) = net.service_subnet {
                cfg.networking.service_subnet =
                    parse_cidr(&s).map_err(|m| field("networking.serviceSubnet", m))?;
            }
            if let Some(search) = net.dns_search {
                let search = search.unwrap_or_default();
                for (i, d) in search.iter().enumerate() {
                    if d.is_empty() || d.contains(char::is_whitespace) {
                        return Err(field(
                            &format!("networking.dnsSearch[{i}]"),
                            format!("{d:?} is not a domain name"),
                        ));
                    }
                }
                cfg.networking.dns_search = Some(search);
            }
            if let Some(a) = net.api_server_address {
                cfg.networking.api_server_address = Some(a.parse().map_err(|_| {
                    field(
                        "networking.apiServerAddress",
                        format!("{a:?} is not an IP address"),
                    )
                })?);
            }
            if let Some(p) = net.api_server_port {
                cfg.networking.api_server_port = u16::try_from(p).map_err(|_| {
                    field(
                        "networking.apiServerPort",
                        format!("{p} is not a port (0-65535)"),
                    )
                })?;
            }
            if let Some(internal) = net.internal {
                if is_kind {
                    return Err(field(
                        "networking.internal",
                        format!("minikind's own setting: use apiVersion {MINIKIND_API_VERSION}"),
                    ));
                }
                cfg.networking.internal = internal;
            }
        }
        let (pod, svc) = (cfg.networking.pod_subnet, cfg.networking.service_subnet);
        if pod.contains(&svc.network()) || svc.contains(&pod.network()) {
            return Err(field(
                "networking.serviceSubnet",
                format!("{svc} overlaps podSubnet {pod}"),
            ));
        }
        if svc.prefix_len() > 28 {
            return Err(field(
                "networking.serviceSubnet",
                format!("{svc} is too small: kube-dns needs the 10th address"),
            ));
        }
        if pod.prefix_len() > 22 {
            return Err(field(
                "networking.podSubnet",
                format!("{pod} is too small: every node gets a /24 from it"),
            ));
        }

        let mapped = cfg.nodes.iter().any(|n| !n.port_mappings.is_empty());
        if cfg.networking.internal && mapped {
            return Err(field(
                "networking.internal",
                "Docker publishes no ports from an internal network: drop the \
                 extraPortMappings or the internal network"
                    .into(),
            ));
        }

        if let Some(dns) = raw.dns {
            if is_kind {
                return Err(field(
                    "dns",
                    format!("minikind's own section: use apiVersion {MINIKIND_API_VERSION}"),
                ));
            }
            if let Some(m) = dns.network_magic {
                cfg.dns.network_magic = m;
            }
            if let Some(u) = dns.upstream {
                cfg.dns.upstream = match u.as_str() {
                    "host" => Upstream::Host,
                    "lab" => Upstream::Lab,
                    other => Upstream::Server(other.parse().map_err(|_| {
                        field(
                            "dns.upstream",
                            format!("{other:?} is not host, lab or an IP address"),
                        )
                    })?),
                };
            }
            if let Some(v) = dns.node_local_dns {
                cfg.dns.node_local_dns =
                    parse_node_local_dns(&v).map_err(|e| field("dns.nodeLocalDNS", e))?;
            }
            if let Some(e) = dns.embedded {
                cfg.dns.embedded = match e.as_str() {
                    "docker" => EmbeddedDns::Docker,
                    "builtin" => EmbeddedDns::Builtin,
                    other => {
                        return Err(field(
                            "dns.embedded",
                            format!("{other:?} is not docker or builtin"),
                        ));
                    }
                };
            }
        }
        Ok(cfg)
    }
}

fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("{s:?} is not an IPv4 CIDR like 10.244.0.0/16"))?;
    if net.trunc() != net {
        return Err(format!(
            "{s:?} has host bits set; did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

/// KIND's rule for cluster names, plus a length that keeps node names valid hostnames.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    let err = |reason| ConfigError::Name {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(err("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err("it is too long"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(err("it has a character other than a-z, 0-9, '.' and '-'"));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(err("it must start and end with a letter or digit"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::parse(s, "cfg.yaml")
    }

    #[test]
    fn minimal_minikind_config_gets_kind_defaults() {
        let c = parse("kind: Cluster\napiVersion: minikind.dev/v1alpha1\n").unwrap();
        assert_eq!(c, ClusterConfig::default());
        assert_eq!(c.networking.pod_subnet.to_string(), "10.244.0.0/16");
        assert_eq!(c.networking.service_subnet.to_string(), "10.96.0.0/16");
        assert!(c.dns.network_magic);
    }

    #[test]
    fn full_minikind_config() {
        let c = parse(
            "kind: Cluster
apiVersion: minikind.dev/v1alpha1
name: lab
nodes:
- role: worker
- role: control-plane
- role: worker
networking:
  podSubnet: 10.200.0.0/16
  serviceSubnet: 10.100.0.0/16
  dnsSearch: [corp.test, example.test]
  apiServerPort: 7443
  internal: true
dns:
  networkMagic: false
  upstream: lab
  embedded: builtin
",
        )
        .unwrap();
        assert_eq!(c.name.as_deref(), Some("lab"));
        assert_eq!(
            c.nodes.iter().map(|n| n.role).collect::<Vec<_>>(),
            vec![NodeRole::ControlPlane, NodeRole::Worker, NodeRole::Worker]
        );
        assert_eq!(
            c.networking.dns_search,
            Some(vec!["corp.test".into(), "example.test".into()])
        );
        assert_eq!(c.networking.api_server_port, 7443);
        assert!(c.networking.internal);
        assert!(!c.dns.network_magic);
        assert_eq!(c.dns.upstream, Upstream::Lab);
        assert_eq!(c.dns.embedded, EmbeddedDns::Builtin);
    }

    #[test]
    fn dns_search_absent_empty_and_set_differ() {
        let base = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n";
        assert_eq!(parse(base).unwrap().networking.dns_search, None);
        let empty = parse(&format!("{base}networking:\n  dnsSearch: []\n")).unwrap();
        assert_eq!(empty.networking.dns_search, Some(vec![]));
        let null = parse(&format!("{base}networking:\n  dnsSearch: null\n")).unwrap();
        assert_eq!(null.networking.dns_search, Some(vec![]));
    }

    #[test]
    fn kind_v1alpha4_file_is_accepted_for_shared_fields() {
        let c = parse(
            "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: from-kind
nodes:
- role: control-plane
- role: worker
networking:
  apiServerAddress: 127.0.0.1
  apiServerPort: 6443
",
        )
        .unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.networking.api_server_port, 6443);
    }

    #[test]
    fn an_api_server_beyond_the_loopback_is_warned_about() {
        let warning = |address: &str, port: u16, internal: bool| {
            let mut net = ClusterConfig::default().networking;
            net.api_server_address = Some(address.parse().unwrap());
            net.api_server_port = port;
            net.internal = internal;
            net.api_server_exposure_warning()
        };
        // The default, the rest of 127.0.0.0/8 and ::1 (also written as a mapped address).
        for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(warning(loopback, 0, false), None, "{loopback}");
            assert_eq!(warning(loopback, 6443, false), None, "{loopback}");
        }
        assert_eq!(
            warning("0.0.0.0", 6443, false).as_deref(),
            Some(
                "the API server will be published on 0.0.0.0:6443, reachable from other \
                 machines; keep networking.apiServerAddress at 127.0.0.1 unless you need that"
            )
        );
        let w = warning("192.168.1.20", 0, false).unwrap();
        assert!(
            w.contains("published on 192.168.1.20:<a random port>, reachable from other machines"),
            "{w}"
        );
        let w = warning("::", 7443, false).unwrap();
        assert!(w.contains("published on [::]:7443,"), "{w}");
        assert!(warning("10.1.2.3", 6443, false).is_some());
        // On an internal network Docker publishes nothing: nothing to warn about.
        assert_eq!(warning("0.0.0.0", 6443, true), None);
        // Parsed from a file, KIND's way of asking for it.
        let c = parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  \
             apiServerAddress: 0.0.0.0\n",
        )
        .unwrap();
        assert!(c.networking.api_server_exposure_warning().is_some());
        assert_eq!(
            ClusterConfig::default()
                .networking
                .api_server_exposure_warning(),
            None
        );
    }

    #[test]
    fn minikind_fields_in_a_kind_file_are_refused() {
        let e = parse(
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\ndns:\n  networkMagic: false\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("field `dns`") && e.contains("minikind.dev/v1alpha1"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse(
            "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nnodes:\n- role: worker\n  rol: x\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cfg.yaml") && e.contains("unknown field `rol`"),
            "{e}"
        );
        let e = parse("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nfeatureGates: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("featureGates") && e.contains("does not reproduce"),
            "{e}"
        );
    }

    #[test]
    fn kube_proxy_mode_iptables_is_taken_and_the_others_named() {
        let base =
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnetworking:\n  kubeProxyMode: ";
        assert!(
            !parse(&format!("{base}iptables\n"))
                .unwrap()
                .networking
                .kube_proxy_nftables
        );
        assert!(
            parse(&format!("{base}nftables\n"))
                .unwrap()
                .networking
                .kube_proxy_nftables
        );
        for (mode, why) in [
            ("none", "not reproduced"),
            ("ipvs", "no IPVS"),
            ("userspace", "is not one of iptables, nftables, ipvs, none"),
        ] {
            let e = parse(&format!("{base}{mode}\n")).unwrap_err().to_string();
            assert!(
                e.contains("field `networking.kubeProxyMode`") && e.contains(why),
                "{mode}: {e}"
            );
        }
    }

    /// The examples of kind's configuration guide (kind.sigs.k8s.io/docs/user/configuration),
    /// each with what minikind does: taken, or one error naming the field and why.
    #[test]
    fn kinds_documented_examples_are_taken_or_named() {
        let head = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n";
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("minimal", "", None),
            ("name", "name: app-1-cluster\n", None),
            (
                "multi-node",
                "nodes:\n- role: control-plane\n- role: worker\n- role: worker\n",
                None,
            ),
            (
                "control-plane HA",
                "nodes:\n- role: control-plane\n- role: control-plane\n- role: control-plane\n- role: worker\n",
                Some("minikind runs exactly one"),
            ),
            (
                "feature gates",
                "featureGates:\n  \"CSIMigration\": true\n",
                Some("`featureGates` is a KIND setting minikind does not reproduce"),
            ),
            (
                "runtime config",
                "runtimeConfig:\n  \"api/alpha\": \"false\"\n",
                Some("`runtimeConfig` is a KIND setting minikind does not reproduce"),
            ),
            (
                "IPv6",
                "networking:\n  ipFamily: ipv6\n",
                Some("`ipFamily` is a KIND setting minikind does not reproduce"),
            ),
            (
                "API server",
                "networking:\n  apiServerAddress: \"127.0.0.1\"\n  apiServerPort: 6443\n",
                None,
            ),
            (
                "pod and service subnets",
                "networking:\n  podSubnet: \"10.244.0.0/16\"\n  serviceSubnet: \"10.96.0.0/12\"\n",
                None,
            ),
            (
                "disable default CNI",
                "networking:\n  disableDefaultCNI: true\n",
                Some("`disableDefaultCNI` is a KIND setting minikind does not reproduce"),
            ),
            (
                "kube-proxy mode",
                "networking:\n  kubeProxyMode: \"ipvs\"\n",
                Some("ipvs is not reproduced"),
            ),
            (
                "extra mounts",
                "nodes:\n- role: control-plane\n  extraMounts:\n  - hostPath: /tmp\n    containerPath: /files\n    readOnly: true\n    selinuxRelabel: false\n    propagation: None\n",
                None,
            ),
            (
                "extra port mappings",
                "nodes:\n- role: control-plane\n  extraPortMappings:\n  - containerPort: 80\n    hostPort: 80\n    listenAddress: \"127.0.0.1\"\n    protocol: TCP\n",
                None,
            ),
            (
                "node labels",
                "nodes:\n- role: control-plane\n- role: worker\n  labels:\n    tier: frontend\n",
                None,
            ),
            (
                "node image",
                "nodes:\n- role: control-plane\n  image: kindest/node:v1.16.4@sha256:b91a2c2317a000f3a783489dfb755064177dbc3a0b2f4147d50f04825d016f55\n",
                Some("`image` is a KIND setting minikind does not reproduce"),
            ),
            (
                "kubeadm patch beyond node labels",
                "kubeadmConfigPatches:\n- |\n  kind: ClusterConfiguration\n  apiServer:\n    extraArgs:\n      enable-admission-plugins: NodeRestriction,MutatingAdmissionWebhook,ValidatingAdmissionWebhook\n",
                Some("kubeadmConfigPatches[0]"),
            ),
        ];
        for (what, body, refused) in cases {
            let r = parse(&format!("{head}{body}"));
            match (refused, r) {
                (None, Ok(_)) => {}
                (Some(why), Err(e)) => {
                    let e = e.to_string();
                    assert!(e.contains(why), "{what}: {e}");
                }
                (None, Err(e)) => panic!("{what}: refused: {e}"),
                (Some(why), Ok(_)) => panic!("{what}: taken, expected an error with {why:?}"),
            }
        }
    }

    /// kind's ingress guide's config, as the guide gives it.
    const KIND_INGRESS_GUIDE: &str = r#"kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: "ingress-ready=true"
  extraPortMappings:
  - containerPort: 80
    hostPort: 80
    protocol: TCP
  - containerPort: 443
    hostPort: 443
    protocol: TCP
"#;

    #[test]
    fn kinds_node_options_are_taken() {
        let c = parse(KIND_INGRESS_GUIDE).unwrap();
        let cp = &c.nodes[0];
        assert_eq!(cp.labels["ingress-ready"], "true");
        assert_eq!(cp.port_mappings.len(), 2);
        assert_eq!(cp.port_mappings[1].host_port, 443);
        assert_eq!(cp.port_mappings[1].listen_address.to_string(), "0.0.0.0");

        // Node labels, mounts, and cluster-wide patches reaching the nodes their kind names.
        let dir = tempfile::tempdir().unwrap();
        let c = parse(&format!(
            "kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
kubeadmConfigPatches:
- |
  kind: JoinConfiguration
  nodeRegistration:
    kubeletExtraArgs:
      node-labels: tier=worker
nodes:
- role: worker
  labels:
    app: web
  extraMounts:
  - hostPath: {}
    containerPath: /data
    readOnly: true
- role: control-plane
",
            dir.path().display()
        ))
        .unwrap();
        let (cp, w) = (&c.nodes[0], &c.nodes[1]);
        assert_eq!(cp.role, NodeRole::ControlPlane);
        assert!(cp.labels.is_empty(), "{:?}", cp.labels);
        assert_eq!(w.labels["app"], "web");
        assert_eq!(w.labels["tier"], "worker");
        assert_eq!(w.mounts[0].container_path, "/data");
        assert!(w.mounts[0].read_only);
    }

    #[test]
    fn bad_node_options_are_named() {
        let base =
            "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n";
        let err = |body: &str| parse(&format!("{base}{body}")).unwrap_err().to_string();
        let e = err("  extraPortMappings:\n  - containerPort: 80\n    hostPort: 99999\n");
        assert!(e.contains("nodes[0].extraPortMappings[0].hostPort"), "{e}");
        let e = err("  extraMounts:\n  - hostPath: /nonexistent/minikind\n    containerPath: /x\n");
        assert!(
            e.contains("nodes[0].extraMounts[0].hostPath") && e.contains("does not exist"),
            "{e}"
        );
        let e = err("  labels:\n    node-role.kubernetes.io/x: \"\"\n");
        assert!(
            e.contains("nodes[0].labels") && e.contains("'kubernetes.io'"),
            "{e}"
        );
        let e = err("  kubeadmConfigPatches:\n  - |\n    kind: ClusterConfiguration\n");
        assert!(e.contains("nodes[0].kubeadmConfigPatches[0]"), "{e}");
        // One host port twice, across nodes.
        let e = err(
            "  extraPortMappings:\n  - containerPort: 80\n    hostPort: 8080\n\
             - role: worker\n  extraPortMappings:\n  - containerPort: 81\n    hostPort: 8080\n",
        );
        assert!(
            e.contains("nodes[1].extraPortMappings[0].hostPort")
                && e.contains("already mapped by nodes[0].extraPortMappings[0]"),
            "{e}"
        );
        // Nothing is published from an internal network.
        let e = parse(
            "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nnetworking:\n  internal: true\n\
             nodes:\n- role: control-plane\n  extraPortMappings:\n  - containerPort: 80\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("networking.internal"), "{e}");
    }

    #[test]
    fn bad_cidrs_are_named() {
        let base = "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nnetworking:\n";
        let e = parse(&format!("{base}  podSubnet: 10.244.0.0/33\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("networking.podSubnet"), "{e}");
        let e = parse(&format!("{base}  serviceSubnet: banana\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("networking.serviceSubnet"), "{e}");
        let e = parse(&format!("{base}  serviceSubnet: 10.96.0.1/16\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("host bits") && e.contains("10.96.0.0/16"), "{e}");
        let e = parse(&format!(
            "{base}  podSubnet: 10.0.0.0/8\n  serviceSubnet: 10.96.0.0/16\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn control_plane_count_is_checked() {
        let base = "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nnodes:\n";
        let e = parse(&format!("{base}- role: worker\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`nodes`") && e.contains("no node has role control-plane"),
            "{e}"
        );
        let e = parse(&format!(
            "{base}- role: control-plane\n- role: control-plane\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("2 control-plane nodes"), "{e}");
        let e = parse(&format!("{base}- role: master\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nodes[0].role"), "{e}");
    }

    #[test]
    fn wrong_kind_and_api_version_are_named() {
        let e = parse("kind: Pod\napiVersion: minikind.dev/v1alpha1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`kind`"), "{e}");
        let e = parse("kind: Cluster\napiVersion: v1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`apiVersion`"), "{e}");
        let e = parse("kind: Cluster\n").unwrap_err().to_string();
        assert!(e.contains("apiVersion"), "{e}");
    }

    #[test]
    fn names_follow_kinds_rule() {
        for ok in ["minikind", "a", "lab-1.test", "0x"] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "Upper",
            "under_score",
            "-lead",
            "trail-",
            "sp ace",
            &"a".repeat(50),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains("invalid cluster name"), "{bad}: {e}");
        }
        let e = parse("kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: Bad\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"Bad\""), "{e}");
    }

    #[test]
    fn every_example_config_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("kind: Cluster") {
                    ClusterConfig::parse(&text, &path.display().to_string())
                        .unwrap_or_else(|e| panic!("{e}"));
                    seen += 1;
                }
            }
        }
        assert!(
            seen >= 2,
            "no example cluster configs found in {}",
            dir.display()
        );
    }

    #[test]
    fn upstream_forms() {
        let base = "kind: Cluster\napiVersion: minikind.dev/v1alpha1\ndns:\n  upstream: ";
        assert_eq!(
            parse(&format!("{base}host\n")).unwrap().dns.upstream,
            Upstream::Host
        );
        assert_eq!(
            parse(&format!("{base}192.0.2.53\n")).unwrap().dns.upstream,
            Upstream::Server("192.0.2.53".parse().unwrap())
        );
        let e = parse(&format!("{base}moon\n")).unwrap_err().to_string();
        assert!(e.contains("dns.upstream"), "{e}");
    }

    #[test]
    fn embedded_resolver_forms_and_errors() {
        let base = "kind: Cluster\napiVersion: minikind.dev/v1alpha1\n";
        assert_eq!(parse(base).unwrap().dns.embedded, EmbeddedDns::Docker);
        for (text, want) in [
            ("docker", EmbeddedDns::Docker),
            ("builtin", EmbeddedDns::Builtin),
        ] {
            let c = parse(&format!("{base}dns:\n  embedded: {text}\n")).unwrap();
            assert_eq!(c.dns.embedded, want);
            assert_eq!(want.as_str(), text);
        }
        for bad in ["Builtin", "dockerd", "\"\""] {
            let e = parse(&format!("{base}dns:\n  embedded: {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("field `dns.embedded`") && e.contains("docker or builtin"),
                "{bad}: {e}"
            );
        }
        let e = parse(&format!("{base}dns:\n  embedded: [docker]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.embedded"), "{e}");
        let e = parse(&format!("{base}dns:\n  embeded: builtin\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `embeded`"), "{e}");
        // KIND's files have no `dns` section at all.
        let e =
            parse("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\ndns:\n  embedded: builtin\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.contains("field `dns`") && e.contains(MINIKIND_API_VERSION),
            "{e}"
        );
    }

    #[test]
    fn node_local_dns_true_a_mapping_or_off() {
        let base = "kind: Cluster\napiVersion: minikind.dev/v1alpha1\ndns:\n  nodeLocalDNS: ";
        assert_eq!(
            parse(&format!("{base}false\n")).unwrap().dns.node_local_dns,
            None
        );
        assert_eq!(
            parse("kind: Cluster\napiVersion: minikind.dev/v1alpha1\n")
                .unwrap()
                .dns
                .node_local_dns,
            None
        );
        let on = parse(&format!("{base}true\n"))
            .unwrap()
            .dns
            .node_local_dns
            .unwrap();
        assert_eq!(on.address, node_local_dns::DEFAULT_ADDRESS);
        assert_eq!(on.mode, node_local_dns::Mode::Iptables);
        let local = parse(&format!(
            "{base}\n    address: 169.254.0.53\n    mode: local\n"
        ))
        .unwrap()
        .dns
        .node_local_dns
        .unwrap();
        assert_eq!(local.address, Ipv4Addr::new(169, 254, 0, 53));
        assert_eq!(local.mode, node_local_dns::Mode::Local);
        for (bad, says) in [
            ("yes-please", "expected true, false"),
            ("{address: nope}", "not an IPv4 address"),
            ("{mode: ipvs}", "iptables or local"),
            ("{port: 53}", "unknown field `port`"),
        ] {
            let e = parse(&format!("{base}{bad}\n")).unwrap_err().to_string();
            assert!(
                e.contains("dns.nodeLocalDNS") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }
}
