//! KIND's per-node options (`pkg/apis/config/v1alpha4/types.go`: `Node`): `extraPortMappings`,
//! `extraMounts`, `labels`, and the one part of `kubeadmConfigPatches` minikind reproduces, the
//! kubelet's `node-labels`. Parsed and checked here; the Docker provider publishes the ports
//! and binds the mounts as kind's provider does (`runArgsForNode`), the node's kubelet sets
//! the labels.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::NodeRole;

/// One node of the config: its role and KIND's options for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub role: NodeRole,
    pub port_mappings: Vec<PortMapping>,
    pub mounts: Vec<ExtraMount>,
    /// `labels` and the kubelet `node-labels` of `kubeadmConfigPatches`, checked as the
    /// kubelet checks `--node-labels`.
    pub labels: BTreeMap<String, String>,
}

impl NodeConfig {
    pub fn new(role: NodeRole) -> Self {
        NodeConfig {
            role,
            port_mappings: Vec::new(),
            mounts: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// `extraPortMappings[]`: a port of the node published on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    /// 0: a random free port, chosen by the engine.
    pub host_port: u16,
    /// KIND's default is 0.0.0.0, every address of the host.
    pub listen_address: IpAddr,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// As Docker spells it in a port key (`80/tcp`).
    pub fn as_docker(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// `extraMounts[]`: a host path bind-mounted into the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMount {
    /// Absolute (a relative one is taken from the directory minikind runs in, as kind does).
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
    pub selinux_relabel: bool,
    pub propagation: Propagation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Docker's default (`rprivate`).
    None,
    /// `rslave`: mounts made on the host later appear in the node.
    HostToContainer,
    /// `rshared`: and the node's mounts appear on the host.
    Bidirectional,
}

impl ExtraMount {
    /// The bind as kind writes it for `docker run --volume`
    /// (kind's `generateMountBindings`): `host:container[:ro,Z,rslave|rshared]`.
    pub fn docker_bind(&self) -> String {
        let mut attrs = Vec::new();
        if self.read_only {
            attrs.push("ro");
        }
        if self.selinux_relabel {
            attrs.push("Z");
        }
        match self.propagation {
            Propagation::None => {}
            Propagation::HostToContainer => attrs.push("rslave"),
            Propagation::Bidirectional => attrs.push("rshared"),
        }
        let mut bind = format!("{}:{}", self.host_path.display(), self.container_path);
        if !attrs.is_empty() {
            bind.push(':');
            bind.push_str(&attrs.join(","));
        }
        bind
    }
}

// ---- as written ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPortMapping {
    container_port: Option<i64>,
    host_port: Option<i64>,
    listen_address: Option<String>,
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMount {
    host_path: Option<String>,
    container_path: Option<String>,
    read_only: Option<bool>,
    selinux_relabel: Option<bool>,
    propagation: Option<String>,
}

/// A problem with one field: where (a path below the config's root) and what.
pub(super) type FieldError = (String, String);

fn port(value: i64, at: &str, zero_ok: bool) -> Result<u16, FieldError> {
    match u16::try_from(value) {
        Ok(0) if !zero_ok => Err((at.into(), "0 is not a port".into())),
        Ok(p) => Ok(p),
        Err(_) => Err((at.into(), format!("{value} is not a port (0-65535)"))),
    }
}

pub(super) fn port_mapping(raw: RawPortMapping, at: &str) -> Result<PortMapping, FieldError> {
    let container_port = port(
        raw.container_port
            .ok_or_else(|| (format!("{at}.containerPort"), "is required".to_string()))?,
        &format!("{at}.containerPort"),
        false,
    )?;
    let host_port = port(raw.host_port.unwrap_or(0), &format!("{at}.hostPort"), true)?;
    let listen_address = match raw.listen_address {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(a) => a.parse().map_err(|_| {
            (
                format!("{at}.listenAddress"),
                format!("{a:?} is not an IP address"),
            )
        })?,
    };
    let protocol = match raw.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err((
                format!("{at}.protocol"),
                format!("{other:?} is not one of TCP, UDP, SCTP"),
            ));
        }
    };
    Ok(PortMapping {
        container_port,
        host_port,
        listen_address,
        protocol,
    })
}

pub(super) fn mount(raw: RawMount, at: &str, cwd: &Path) -> Result<ExtraMount, FieldError> {
    let host = raw
        .host_path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| (format!("{at}.hostPath"), "is required".to_string()))?;
    let host_path = cwd.join(&host);
    if !host_path.exists() {
        return Err((
            format!("{at}.hostPath"),
            format!("{} does not exist on this host", host_path.display()),
        ));
    }
    let container_path = raw
        .container_path
        .filter(|p| !p.is_empty())
        .ok_or_else(|| (format!("{at}.containerPath"), "is required".to_string()))?;
    if !container_path.starts_with('/') || container_path.contains(':') {
        return Err((
            format!("{at}.containerPath"),
            format!("{container_path:?} is not an absolute path without ':'"),
        ));
    }
    if host.contains(':') {
        return Err((
            format!("{at}.hostPath"),
            format!("{host:?} holds a ':', which Docker's bind syntax cannot carry"),
        ));
    }
    let propagation = match raw.propagation.as_deref() {
        None | Some("None") => Propagation::None,
        Some("HostToContainer") => Propagation::HostToContainer,
        Some("Bidirectional") => Propagation::Bidirectional,
        Some(other) => {
            return Err((
                format!("{at}.propagation"),
                format!("{other:?} is not one of None, HostToContainer, Bidirectional"),
            ));
        }
    };
    Ok(ExtraMount {
        host_path,
        container_path,
        read_only: raw.read_only.unwrap_or(false),
        selinux_relabel: raw.selinux_relabel.unwrap_or(false),
        propagation,
    })
}

/// Two mappings that cannot both be published: the same host port and protocol on the same
/// address, or on any address when either listens on all of them. Port 0 (random) never
/// clashes.
pub fn clash(a: &PortMapping, b: &PortMapping) -> bool {
    a.host_port != 0
        && a.host_port == b.host_port
        && a.protocol == b.protocol
        && (a.listen_address == b.listen_address
            || a.listen_address.is_unspecified()
            || b.listen_address.is_unspecified())
}

// ---- labels ----------------------------------------------------------------------------------

/// Labels a kubelet may set on its own Node in the reserved `kubernetes.io`/`k8s.io`
/// namespaces (kubernetes `pkg/kubelet/apis/well_known_labels.go`: `kubeletLabels`), besides
/// the `kubelet.kubernetes.io` and `node.kubernetes.io` prefixes.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

/// Checks one label as the kubelet checks `--node-labels`: a valid key and value, and nothing
/// in the reserved namespaces a kubelet may not set on itself (`node-role.kubernetes.io/…` is
/// refused there too, which is why kubeadm sets that one from the control plane).
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let key_errors = minikind_apiserver::validation::qualified_name_errors(key);
    if !key_errors.is_empty() {
        return Err(format!(
            "{key:?} is not a label key: {}",
            key_errors.join("; ")
        ));
    }
    let value_errors = minikind_apiserver::validation::label_value_errors(value);
    if !value_errors.is_empty() {
        return Err(format!(
            "{value:?} is not a label value: {}",
            value_errors.join("; ")
        ));
    }
    if let Some((prefix, _)) = key.split_once('/') {
        let reserved = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
        let allowed_prefix = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
        if (reserved("kubernetes.io") || reserved("k8s.io"))
            && !allowed_prefix("kubelet.kubernetes.io")
            && !allowed_prefix("node.kubernetes.io")
            && !KUBELET_LABELS.contains(&key)
        {
            return Err(format!(
                "{key:?} is in the 'kubernetes.io' or 'k8s.io' namespace, where a kubelet may \
                 only set labels beginning with kubelet.kubernetes.io or node.kubernetes.io, or \
                 {}",
                KUBELET_LABELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// The kubelet's `--node-labels` value: `key=value` pairs separated by commas.
fn node_labels_flag(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        check_label(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

// ---- kubeadmConfigPatches --------------------------------------------------------------------

/// Which kubeadm document a patch targets, and so which nodes it reaches: kubeadm reads
/// `InitConfiguration` on the control plane it initialises and `JoinConfiguration` on every
/// node that joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PatchTarget {
    Init,
    Join,
}

impl PatchTarget {
    pub(super) fn reaches(self, role: NodeRole) -> bool {
        matches!(
            (self, role),
            (PatchTarget::Init, NodeRole::ControlPlane) | (PatchTarget::Join, NodeRole::Worker)
        )
    }
}

/// A kubeadm patch whose only effect is kubelet node labels: its target and the labels.
/// Anything else in it is an error naming the part minikind does not reproduce.
pub(super) fn kubeadm_patch(
    text: &str,
    at: &str,
) -> Result<(PatchTarget, BTreeMap<String, String>), FieldError> {
    let err = |m: String| (at.to_string(), m);
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| err(format!("not a YAML document: {e}")))?;
    let map = doc
        .as_mapping()
        .ok_or_else(|| err("not a YAML mapping".into()))?;
    let kind = map
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| err("has no `kind`".into()))?;
    let target = match kind {
        "InitConfiguration" => PatchTarget::Init,
        "JoinConfiguration" => PatchTarget::Join,
        other => {
            return Err(err(format!(
                "a {other} patch is a kubeadm setting minikind does not reproduce (only the \
                 kubelet's node-labels in an InitConfiguration or JoinConfiguration are)"
            )));
        }
    };
    let mut labels = BTreeMap::new();
    for (k, v) in map {
        match k.as_str().unwrap_or_default() {
            "kind" => {}
            "apiVersion" => {
                let v = v.as_str().unwrap_or_default();
                if !v.starts_with("kubeadm.k8s.io/") {
                    return Err(err(format!(
                        "apiVersion {v:?} is not a kubeadm API version"
                    )));
                }
            }
            "nodeRegistration" => {
                labels = node_registration(v).map_err(&err)?;
            }
            other => {
                return Err(err(format!(
                    "`{other}` in {kind} is a kubeadm setting minikind does not reproduce (only \
                     nodeRegistration.kubeletExtraArgs node-labels is)"
                )));
            }
        }
    }
    Ok((target, labels))
}

fn node_registration(v: &serde_yaml::Value) -> Result<BTreeMap<String, String>, String> {
    let map = v.as_mapping().ok_or("nodeRegistration is not a mapping")?;
    let mut labels = BTreeMap::new();
    for (k, v) in map {
        match k.as_str().unwrap_or_default() {
            "kubeletExtraArgs" => labels = kubelet_extra_args(v)?,
            other => {
                return Err(format!(
                    "`nodeRegistration.{other}` is a kubeadm setting minikind does not reproduce \
                     (only nodeRegistration.kubeletExtraArgs node-labels is)"
                ));
            }
        }
    }
    Ok(labels)
}

/// `kubeletExtraArgs` as v1beta3 writes it (a map) or v1beta4 (a list of `{name, value}`).
fn kubelet_extra_args(v: &serde_yaml::Value) -> Result<BTreeMap<String, String>, String> {
    let args: Vec<(String, String)> = match v {
        serde_yaml::Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap_or_default().to_string(),
                    v.as_str().unwrap_or_default().to_string(),
                )
            })
            .collect(),
        serde_yaml::Value::Sequence(s) => s
            .iter()
            .map(|a| {
                (
                    a.get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    a.get("value")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect(),
        _ => return Err("kubeletExtraArgs is neither a mapping nor a list".into()),
    };
    let mut labels = BTreeMap::new();
    for (name, value) in args {
        if name != "node-labels" {
            return Err(format!(
                "the kubelet flag --{name} is a setting minikind does not reproduce (only \
                 node-labels is)"
            ));
        }
        labels.extend(node_labels_flag(&value)?);
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(yaml: &str) -> Result<PortMapping, FieldError> {
        port_mapping(
            serde_yaml::from_str(yaml).unwrap(),
            "nodes[0].extraPortMappings[0]",
        )
    }

    #[test]
    fn port_mappings_default_as_kind() {
        let m = pm("containerPort: 80\nhostPort: 8080\n").unwrap();
        assert_eq!(m.listen_address.to_string(), "0.0.0.0");
        assert_eq!(m.protocol, Protocol::Tcp);
        assert_eq!((m.container_port, m.host_port), (80, 8080));
        let m = pm("containerPort: 53\nprotocol: UDP\nlistenAddress: 127.0.0.1\n").unwrap();
        assert_eq!(m.host_port, 0);
        assert_eq!(m.protocol, Protocol::Udp);
        let (at, msg) = pm("containerPort: 70000\n").unwrap_err();
        assert_eq!(at, "nodes[0].extraPortMappings[0].containerPort");
        assert!(msg.contains("70000"), "{msg}");
        let (at, _) = pm("hostPort: 80\n").unwrap_err();
        assert_eq!(at, "nodes[0].extraPortMappings[0].containerPort");
        let (at, msg) = pm("containerPort: 80\nprotocol: tcp\n").unwrap_err();
        assert_eq!(at, "nodes[0].extraPortMappings[0].protocol");
        assert!(msg.contains("TCP, UDP, SCTP"), "{msg}");
        assert!(pm("containerPort: 80\nlistenAddress: localhost\n").is_err());
    }

    #[test]
    fn clashing_host_ports() {
        let a = pm("containerPort: 80\nhostPort: 8080\n").unwrap();
        let b = pm("containerPort: 81\nhostPort: 8080\nlistenAddress: 127.0.0.1\n").unwrap();
        let c = pm("containerPort: 81\nhostPort: 8080\nprotocol: UDP\n").unwrap();
        let d = pm("containerPort: 81\nhostPort: 8080\nlistenAddress: 127.0.0.2\n").unwrap();
        let any = pm("containerPort: 81\n").unwrap();
        assert!(clash(&a, &b), "0.0.0.0 covers 127.0.0.1");
        assert!(!clash(&a, &c), "another protocol");
        assert!(!clash(&b, &d), "two loopback addresses");
        assert!(!clash(&any, &any), "random ports never clash");
    }

    #[test]
    fn mounts_are_checked_and_written_as_kind_binds() {
        let dir = tempfile::tempdir().unwrap();
        let raw = |y: &str| -> RawMount { serde_yaml::from_str(y).unwrap() };
        let m = mount(
            raw(
                "hostPath: data\ncontainerPath: /data\nreadOnly: true\npropagation: HostToContainer\n",
            ),
            "nodes[0].extraMounts[0]",
            dir.path(),
        );
        let (at, msg) = m.unwrap_err();
        assert_eq!(at, "nodes[0].extraMounts[0].hostPath");
        assert!(msg.contains("does not exist"), "{msg}");
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let m = mount(
            raw("hostPath: data\ncontainerPath: /data\nreadOnly: true\npropagation: HostToContainer\n"),
            "x",
            dir.path(),
        )
        .unwrap();
        assert_eq!(
            m.docker_bind(),
            format!("{}:/data:ro,rslave", dir.path().join("data").display())
        );
        let plain = mount(
            raw(&format!(
                "hostPath: {}\ncontainerPath: /d\n",
                dir.path().display()
            )),
            "x",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(plain.docker_bind(), format!("{}:/d", dir.path().display()));
        let (at, _) = mount(raw("hostPath: /\ncontainerPath: d\n"), "x", dir.path()).unwrap_err();
        assert_eq!(at, "x.containerPath");
        let (at, _) = mount(
            raw("hostPath: /\ncontainerPath: /d\npropagation: Shared\n"),
            "x",
            dir.path(),
        )
        .unwrap_err();
        assert_eq!(at, "x.propagation");
    }

    #[test]
    fn labels_follow_the_kubelets_rules() {
        check_label("ingress-ready", "true").unwrap();
        check_label(
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "",
        )
        .unwrap();
        check_label("topology.kubernetes.io/zone", "a").unwrap();
        check_label("example.com/tier", "gold").unwrap();
        let e = check_label("node-role.kubernetes.io/ingress", "").unwrap_err();
        assert!(e.contains("'kubernetes.io' or 'k8s.io' namespace"), "{e}");
        assert!(check_label("bad key!", "x").is_err());
        assert!(check_label("k", "bad value!").is_err());
    }

    #[test]
    fn kubeadm_patches_give_node_labels_and_nothing_else() {
        // kind's ingress guide, as written there.
        let (target, labels) = kubeadm_patch(
            "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: \"ingress-ready=true\"\n",
            "nodes[0].kubeadmConfigPatches[0]",
        )
        .unwrap();
        assert_eq!(target, PatchTarget::Init);
        assert_eq!(labels["ingress-ready"], "true");
        // v1beta4's list form.
        let (target, labels) = kubeadm_patch(
            "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n  - name: node-labels\n    value: a=1,b=2\n",
            "x",
        )
        .unwrap();
        assert_eq!(target, PatchTarget::Join);
        assert_eq!(labels.len(), 2);
        for (patch, says) in [
            (
                "kind: ClusterConfiguration\napiServer: {}\n",
                "a ClusterConfiguration patch",
            ),
            (
                "kind: InitConfiguration\nnodeRegistration:\n  taints: []\n",
                "nodeRegistration.taints",
            ),
            (
                "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    max-pods: \"10\"\n",
                "--max-pods",
            ),
            (
                "kind: InitConfiguration\nlocalAPIEndpoint: {}\n",
                "`localAPIEndpoint`",
            ),
            (
                "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: node-role.kubernetes.io/x=\n",
                "namespace",
            ),
        ] {
            let (at, msg) = kubeadm_patch(patch, "kubeadmConfigPatches[1]").unwrap_err();
            assert_eq!(at, "kubeadmConfigPatches[1]");
            assert!(msg.contains(says), "{patch}: {msg}");
        }
    }
}
