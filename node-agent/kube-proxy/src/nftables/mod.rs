//! kube-proxy's nftables mode (`pkg/proxy/nftables/proxier.go`, GA in 1.33; KIND's
//! `kubeProxyMode: nftables`): the Services as one table, `ip kube-proxy`, written as one
//! `nft -f -` transaction per sync.
//!
//! The layout is kube-proxy's: base chains hooked at filter and nat priorities; the verdict
//! maps `service-ips` (`address . protocol . port : goto service-…`) and `service-nodeports`,
//! the sets `cluster-ips` and `nodeport-ips`, the `no-endpoint-services` /
//! `no-endpoint-nodeports` maps that reject or drop; per service port a chain
//! `service-<hash>-<ns>/<svc>/<proto>/<port name>` choosing an endpoint with
//! `numgen random mod N vmap { 0 : goto endpoint-…, … }`, an `external-…` chain for NodePort
//! traffic, and per endpoint a chain `endpoint-<hash>-…__<ip>/<port>` that DNATs; packets to be
//! masqueraded carry the mark 0x4000 (`mark-for-masquerade`, `masquerading`).
//!
//! Reproduced: ClusterIP and NodePort (external traffic policy Cluster) services with their
//! endpoints, services without endpoints (rejected), unallocated cluster IPs (dropped), the
//! local-traffic detector by cluster CIDR, `--masquerade-all`. Not reproduced (minikind's
//! model does not carry them): session affinity, `externalTrafficPolicy: Local`, external IPs,
//! load-balancer IPs and source ranges — the `firewall-ips` map exists, empty, as kube-proxy
//! has it for a cluster with no source ranges.
//!
//! Each sync replaces the whole table inside one transaction (`add table`, `delete table`,
//! then everything): the kernel swaps it atomically, so no packet sees a half-written table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::service_rules::{Endpoint, ServicePort, base32};

/// kube-proxy's table (`ip6 kube-proxy` for IPv6, which minikind does not run).
pub const TABLE: &str = "ip kube-proxy";
/// Where a node has `nft` (the node image copies the host's, as it copies iptables).
pub const NFT_PATH: &str = "/usr/sbin/nft";
/// kube-proxy's `chainNameBaseLengthMax`.
const CHAIN_NAME_BASE_MAX: usize = 240;

/// The settings that shape the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftConfig {
    /// The cluster CIDR of the local-traffic detector: traffic to a ClusterIP from outside it
    /// is masqueraded.
    pub cluster_cidr: Option<IpNet>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// The service CIDRs: traffic to an unallocated address in them is dropped.
    pub service_cidrs: Vec<IpNet>,
    /// The addresses that accept NodePort traffic (kube-proxy's default: the node's IPs).
    pub node_ips: Vec<IpAddr>,
}

/// `HASH-name`, the hash the first 8 characters of base32(sha256(name)) (kube-proxy's
/// `hashAndTruncate`).
fn hash_and_truncate(name: &str) -> String {
    let encoded = base32(&Sha256::digest(name.as_bytes()));
    let mut out = format!("{}-{name}", &encoded[..8]);
    if out.len() > CHAIN_NAME_BASE_MAX {
        out.truncate(CHAIN_NAME_BASE_MAX - 3);
        out.push_str("...");
    }
    out
}

fn port_base(sp: &ServicePort) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        sp.namespace,
        sp.name,
        sp.protocol.as_str(),
        sp.port_name
    ))
}

/// `service-<hash>-ns/svc/proto/portname`.
pub fn service_chain(sp: &ServicePort) -> String {
    format!("service-{}", port_base(sp))
}

/// `external-<hash>-…`: NodePort (and external) traffic.
pub fn external_chain(sp: &ServicePort) -> String {
    format!("external-{}", port_base(sp))
}

/// `endpoint-<hash>-ns/svc/proto/portname__ip/port`.
pub fn endpoint_chain(sp: &ServicePort, ep: &Endpoint) -> String {
    let ip = ep.ip.to_string().replace(':', ".");
    format!(
        "endpoint-{}",
        hash_and_truncate(&format!(
            "{}/{}/{}/{}__{ip}/{}",
            sp.namespace,
            sp.name,
            sp.protocol.as_str(),
            sp.port_name,
            ep.port
        ))
    )
}

/// The table's fixed part: sets, maps, base chains and their rules (kube-proxy's
/// `setupNFTables`), with this node's NodePort addresses.
fn base(cfg: &NftConfig, chains: &mut String, rules: &mut String, elements: &mut String) {
    let t = TABLE;
    let _ = writeln!(
        chains,
        "add table {t} {{ comment \"rules for kube-proxy\" ; }}"
    );
    for (kind, name, ty, comment) in [
        ("set", "cluster-ips", "ipv4_addr", "Active ClusterIPs"),
        (
            "set",
            "nodeport-ips",
            "ipv4_addr",
            "IPs that accept NodePort traffic",
        ),
        (
            "map",
            "firewall-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
        (
            "map",
            "no-endpoint-nodeports",
            "inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
        (
            "map",
            "no-endpoint-services",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "map",
            "service-ips",
            "ipv4_addr . inet_proto . inet_service : verdict",
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
        (
            "map",
            "service-nodeports",
            "inet_proto . inet_service : verdict",
            "NodePort traffic",
        ),
    ] {
        let _ = writeln!(
            chains,
            "add {kind} {t} {name} {{ type {ty} ; comment \"{comment}\" ; }}"
        );
    }
    for chain in [
        "cluster-ips-check",
        "filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }",
        "filter-output-pre-dnat { type filter hook output priority -110 ; }",
        "filter-forward { type filter hook forward priority 0 ; }",
        "filter-input { type filter hook input priority 0 ; }",
        "filter-output { type filter hook output priority 0 ; }",
        "firewall-check",
        "mark-for-masquerade",
        "masquerading",
        "nat-output { type nat hook output priority -100 ; }",
        "nat-postrouting { type nat hook postrouting priority 100 ; }",
        "nat-prerouting { type nat hook prerouting priority -100 ; }",
        "nodeport-endpoints-check",
        "reject-chain { comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\" ; }",
        "services",
        "service-endpoints-check",
    ] {
        let _ = writeln!(chains, "add chain {t} {chain}");
    }
    let cidrs: Vec<String> = cfg.service_cidrs.iter().map(ToString::to_string).collect();
    let mut base_rules = vec![
        "cluster-ips-check ip daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\"".to_string(),
    ];
    if !cidrs.is_empty() {
        base_rules.push(format!(
            "cluster-ips-check ip daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
            cidrs.join(", ")
        ));
    }
    base_rules.extend(
        [
            "filter-prerouting-pre-dnat ct state new jump firewall-check",
            "filter-forward ct state new jump service-endpoints-check",
            "filter-forward ct state new jump cluster-ips-check",
            "filter-input ct state new jump nodeport-endpoints-check",
            "filter-input ct state new jump service-endpoints-check",
            "filter-output ct state new jump service-endpoints-check",
            "filter-output-pre-dnat ct state new jump firewall-check",
            "filter-output ct state new jump cluster-ips-check",
            "firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
            "mark-for-masquerade mark set mark or 0x4000",
            "masquerading mark and 0x4000 == 0 return",
            "masquerading mark set mark xor 0x4000",
            "masquerading masquerade fully-random",
            "nat-output jump services",
            "nat-postrouting jump masquerading",
            "nat-prerouting jump services",
            "nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports",
            "reject-chain reject",
            "services ip daddr . meta l4proto . th dport vmap @service-ips",
            "services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
            "service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        ]
        .map(str::to_string),
    );
    for r in base_rules {
        let _ = writeln!(rules, "add rule {t} {r}");
    }
    let node_ips: Vec<String> = cfg
        .node_ips
        .iter()
        .filter(|ip| ip.is_ipv4())
        .map(ToString::to_string)
        .collect();
    if !node_ips.is_empty() {
        let _ = writeln!(
            elements,
            "add element {t} nodeport-ips {{ {} }}",
            node_ips.join(", ")
        );
    }
}

/// One service port's chains, rules and map elements.
fn service(
    cfg: &NftConfig,
    sp: &ServicePort,
    chains: &mut String,
    rules: &mut String,
    elements: &mut String,
) {
    let t = TABLE;
    let proto = sp.protocol.as_str();
    let (ip, port) = (sp.cluster_ip, sp.port);
    let _ = writeln!(elements, "add element {t} cluster-ips {{ {ip} }}");
    let mut eps = sp.endpoints.clone();
    eps.sort_by_cached_key(ToString::to_string);
    eps.dedup();
    if eps.is_empty() {
        let name = sp.name_string();
        let _ = writeln!(
            elements,
            "add element {t} no-endpoint-services {{ {ip} . {proto} . {port} comment \"{name}\" : goto reject-chain }}"
        );
        if let Some(np) = sp.node_port {
            let _ = writeln!(
                elements,
                "add element {t} no-endpoint-nodeports {{ {proto} . {np} comment \"{name}\" : goto reject-chain }}"
            );
        }
        return;
    }
    let svc = service_chain(sp);
    let _ = writeln!(chains, "add chain {t} {svc}");
    if cfg.masquerade_all {
        let _ = writeln!(
            rules,
            "add rule {t} {svc} ip daddr {ip} jump mark-for-masquerade"
        );
    } else if let Some(cidr) = cfg.cluster_cidr {
        let _ = writeln!(
            rules,
            "add rule {t} {svc} ip daddr {ip} ip saddr != {cidr} jump mark-for-masquerade"
        );
    }
    let targets: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto {}", endpoint_chain(sp, ep)))
        .collect();
    let _ = writeln!(
        rules,
        "add rule {t} {svc} numgen random mod {} vmap {{ {} }}",
        eps.len(),
        targets.join(" , ")
    );
    if let Some(np) = sp.node_port {
        // externalTrafficPolicy Cluster: NodePort traffic is always masqueraded.
        let ext = external_chain(sp);
        let _ = writeln!(chains, "add chain {t} {ext}");
        let _ = writeln!(rules, "add rule {t} {ext} jump mark-for-masquerade");
        let _ = writeln!(rules, "add rule {t} {ext} goto {svc}");
        let _ = writeln!(
            elements,
            "add element {t} service-nodeports {{ {proto} . {np} : goto {ext} }}"
        );
    }
    for ep in &eps {
        let chain = endpoint_chain(sp, ep);
        let _ = writeln!(chains, "add chain {t} {chain}");
        let _ = writeln!(
            rules,
            "add rule {t} {chain} ip saddr {} jump mark-for-masquerade",
            ep.ip
        );
        let _ = writeln!(
            rules,
            "add rule {t} {chain} meta l4proto {proto} dnat to {ep}"
        );
    }
    let _ = writeln!(
        elements,
        "add element {t} service-ips {{ {ip} . {proto} . {port} : goto {svc} }}"
    );
}

/// The whole table as kube-proxy would have it, in `nft -f` syntax: chains and sets first (a
/// rule or element may only name what exists), then rules, then elements.
pub fn render_table(cfg: &NftConfig, ports: &[ServicePort]) -> String {
    let (mut chains, mut rules, mut elements) = (String::new(), String::new(), String::new());
    base(cfg, &mut chains, &mut rules, &mut elements);
    // IPv4 only, as minikind's clusters; a ClusterIP seen twice keeps its first port entry.
    let mut seen = BTreeSet::new();
    for sp in ports.iter().filter(|sp| sp.cluster_ip.is_ipv4()) {
        if seen.insert((sp.cluster_ip, sp.protocol, sp.port)) {
            service(cfg, sp, &mut chains, &mut rules, &mut elements);
        }
    }
    chains + &rules + &elements
}

/// One sync's transaction: the table created if missing, deleted, and written again — all
/// applied by the kernel at once.
pub fn transaction(cfg: &NftConfig, ports: &[ServicePort]) -> String {
    format!(
        "add table {TABLE}\ndelete table {TABLE}\n{}",
        render_table(cfg, ports)
    )
}

/// Applies `text` with `nft -f -` (one transaction).
pub fn apply(nft: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", nft.display()))?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(text.as_bytes())
        .context("writing the transaction to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "{} -f -: {}",
            nft.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Syncs the Services as kube-proxy's nftables table.
pub fn sync(nft: &std::path::Path, cfg: &NftConfig, ports: &[ServicePort]) -> anyhow::Result<()> {
    apply(nft, &transaction(cfg, ports))
}

#[cfg(test)]
mod tests;
