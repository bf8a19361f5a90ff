//! The host↔node contract: the facts the `minikind` CLI on the host and the node agent inside
//! every node container must agree on — paths in the node's filesystem, log lines the CLI
//! waits for, environment variables the CLI sets on a node, Docker labels, default subnets.
//!
//! It owns those facts and nothing else: no logic, no dependencies. Anything that only one
//! side needs stays with that side. Changing a value here changes both sides at once, which is
//! the point: nodes built from one binary and a CLI from another would disagree otherwise.

/// The Kubernetes release minikind's API and kubelet report: the kubectl the tests pin, so that
/// kubectl (which warns when its minor version is more than one away from the server's) and
/// the protobuf tables (generated from this release's k8s.io/api) agree with it. The Rust
/// types (k8s-openapi's feature in the workspace manifest) are still 1.34's: their 1.35 types
/// change field shapes (a Deployment's `spec` no longer optional) across every crate.
pub mod kubernetes {
    macro_rules! minor {
        () => {
            "37"
        };
    }
    pub const MAJOR: &str = "1";
    pub const MINOR: &str = minor!();
    /// The minor version before, the oldest one this release stays compatible with.
    pub const MIN_COMPATIBILITY_MINOR: &str = "36";
    /// `gitVersion` of `/version` and the node's `kubeletVersion`.
    pub const GIT_VERSION: &str = concat!("v1.", minor!(), ".0-minikind");
    /// The kubelet's probe user agent (`kube-probe/<major>.<minor>`).
    pub const PROBE_USER_AGENT: &str = concat!("kube-probe/1.", minor!());
}

/// The environment variables the CLI sets on a node container and the agent reads at boot.
pub mod env {
    pub const CLUSTER: &str = "MINIKIND_CLUSTER";
    pub const ROLE: &str = "MINIKIND_ROLE";
    /// `true`/`false`: KIND's DNS fix on or off.
    pub const NETWORK_MAGIC: &str = "MINIKIND_NETWORK_MAGIC";
    /// Like `KIND_DNS_SEARCH`: unset keeps the search lines, empty drops them, otherwise a
    /// space-separated list replaces them.
    pub const DNS_SEARCH: &str = "MINIKIND_DNS_SEARCH";
    pub const POD_SUBNET: &str = "MINIKIND_POD_SUBNET";
    /// kube-proxy's mode (`iptables` or `nftables`, KIND's `networking.kubeProxyMode`).
    pub const KUBE_PROXY_MODE: &str = "MINIKIND_KUBE_PROXY_MODE";
    pub const SERVICE_SUBNET: &str = "MINIKIND_SERVICE_SUBNET";
    /// `true` when the cluster network is a Docker `--internal` one (pods then reach other
    /// nodes through tunnels; see the kubelet's `overlay.rs`). Unset means false.
    pub const NETWORK_INTERNAL: &str = "MINIKIND_NETWORK_INTERNAL";
    /// `docker` (unset: the same) or `builtin`: who serves 127.0.0.11 (`dns.embedded`).
    pub const DNS_EMBEDDED: &str = "MINIKIND_DNS_EMBEDDED";
    /// The external servers Docker's resolver would use (the node's `--dns`), comma-separated
    /// `IP` or `IP:PORT`: the builtin resolver forwards to them. Docker 20.10 records them
    /// nowhere inside the container, so the CLI hands them over.
    pub const DNS_SERVERS: &str = "MINIKIND_DNS_SERVERS";
    /// The node's own labels (KIND's `labels` and kubeadm `node-labels`), as the kubelet's
    /// `--node-labels` takes them: `key=value` pairs separated by commas. Unset: none.
    pub const NODE_LABELS: &str = "MINIKIND_NODE_LABELS";
    /// NodeLocal DNSCache (`dns.nodeLocalDNS`): `<mode>,<address>` (`iptables,169.254.20.10`
    /// or `local,…`); unset: off. The format is `minikind_control_plane::node_local_dns`'s.
    pub const NODE_LOCAL_DNS: &str = "MINIKIND_NODE_LOCAL_DNS";
    /// The taints the node registers with, as the kubelet's `--register-with-taints` takes
    /// them: `key[=value]:Effect` separated by commas. Unset: none.
    pub const NODE_TAINTS: &str = "MINIKIND_NODE_TAINTS";
}

/// The key of the taint kubeadm puts on control-plane nodes (effect `NoSchedule`). KIND keeps
/// it in clusters of more than one node; minikind's own system pods tolerate it as KIND's do.
pub const CONTROL_PLANE_TAINT_KEY: &str = "node-role.kubernetes.io/control-plane";

/// Printed once the node has booted; `minikind create` waits for it in the container's log.
pub const BOOT_COMPLETE: &str = "minikind node agent: boot complete";
/// Printed by the control-plane node once the API server serves and the admin kubeconfig is
/// written to [`ADMIN_KUBECONFIG`].
pub const CONTROL_PLANE_READY: &str = "minikind node agent: control plane ready";

/// The admin kubeconfig on the control-plane node (server `https://<node>:6443`).
pub const ADMIN_KUBECONFIG: &str = "/etc/kubernetes/admin.conf";
/// The kubeconfig a node's own services use; the CLI copies it to workers when they join.
pub const NODE_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";

/// The kubelet's serving certificate and key in one PEM file (upstream kubelet's
/// `/var/lib/kubelet/pki/kubelet-server-current.pem`), signed by the cluster CA for the node's
/// name and IP. The control-plane node's agent issues its own; for a worker the CLI has
/// `minikind kubelet-cert` issue it on the control-plane node and copies it over before the
/// node kubeconfig.
pub const KUBELET_SERVING_PEM: &str = "/var/lib/kubelet/pki/kubelet-server-current.pem";
/// The program on the control-plane node that issues a worker's [`KUBELET_SERVING_PEM`]
/// (`minikind kubelet-cert --node-name N --node-ip IP`, the PEM on stdout).
pub const KUBELET_CERT_PROGRAM: &str = "kubelet-cert";

/// The names table the CLI writes into every node (JSON, see `minikind dns-embedded --names`)
/// and the node's builtin resolver reads. Not under `/run`: the engine's archive API cannot
/// write into a tmpfs mount.
pub const NAMES_PATH: &str = "/etc/minikind/names.json";

/// Where the node image carries the `minikind` binary: the node's entrypoint
/// (`minikind node-agent`) and what the CLI execs in a node (`minikind network-magic …`).
pub const MINIKIND_PATH: &str = "/usr/local/bin/minikind";

/// The node's image store (blobs, the image index, unpacked layers, container roots): on the
/// node's `/var` volume, so images survive a node restart and overlayfs works on it. The
/// `minikind-image-store` crate owns what is inside; the CLI only runs `minikind node images …`.
pub const IMAGES_DIR: &str = "/var/lib/minikind/images";

/// minikind's own tools image (`dig`, `nslookup`, `getent`, `sleep`, busybox's applets), which
/// every node pre-loads into its image store at boot (`minikind_images::preloaded`): what the
/// create's DNS checks, `minikind dns test`'s probe pods and the walk-throughs run.
pub const TOOLS_IMAGE: &str = concat!("minikind/tools:", env!("CARGO_PKG_VERSION"));

/// The Docker label that says which cluster an object belongs to; listing and deleting go by
/// it only.
pub const CLUSTER_LABEL: &str = "dev.minikind.cluster";
/// The node's (or helper container's) role: `control-plane`, `worker`, `upstream`.
pub const ROLE_LABEL: &str = "dev.minikind.role";

/// The pod subnet when the cluster config names none (KIND's default `podSubnet`).
pub const DEFAULT_POD_SUBNET: &str = "10.244.0.0/16";
/// The service subnet when the cluster config names none (KIND's default `serviceSubnet`).
pub const DEFAULT_SERVICE_SUBNET: &str = "10.96.0.0/16";
