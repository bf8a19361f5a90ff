//! kube-proxy's iptables layout, rendered from a small model of Services and
//! their ready endpoints, as the `iptables-restore --noflush --counters` input kube-proxy's
//! iptables proxier writes on a full sync (pkg/proxy/iptables/proxier.go): the same chains,
//! rule order, comments, hashes, probabilities and masquerade handling.
//!
//! Covered: ClusterIP services (with `Cluster` traffic policy, no session affinity), NodePorts,
//! REJECT for services without endpoints, the masquerade chains, the local-traffic detector by
//! cluster CIDR (what KIND configures), "large cluster mode" (no per-endpoint comments above
//! 1000 endpoints) and the removal of stale service chains. Service order is sorted by name
//! (kube-proxy iterates a Go map, so its order is random).

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

/// Above this many endpoints kube-proxy drops the per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// A service port's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The lower-case form kube-proxy uses in rules and hashes.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    /// The API's spelling (`TCP`, `UDP`, `SCTP`); empty is the default, TCP.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(format!("unsupported protocol {other:?} (TCP, UDP or SCTP)")),
        }
    }
}

/// A ready endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    /// `ip:port` (`[ip]:port` for IPv6), as Go's `net.JoinHostPort`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// One port of one ClusterIP service with its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub namespace: String,
    pub name: String,
    /// The port's name (`dns`); empty for an unnamed single port.
    pub port_name: String,
    pub protocol: Protocol,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// `ns/name:port` (`ns/name` for an unnamed port): kube-proxy's ServicePortName string.
    pub fn name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// `KUBE-SVC-<hash>`.
    pub fn svc_chain(&self) -> String {
        format!(
            "KUBE-SVC-{}",
            port_proto_hash(&self.name_string(), self.protocol.as_str())
        )
    }

    /// `KUBE-EXT-<hash>` (NodePort traffic).
    pub fn ext_chain(&self) -> String {
        format!(
            "KUBE-EXT-{}",
            port_proto_hash(&self.name_string(), self.protocol.as_str())
        )
    }

    /// `KUBE-SEP-<hash>` of one endpoint.
    pub fn sep_chain(&self, endpoint: &Endpoint) -> String {
        let input = format!("{}{}{endpoint}", self.name_string(), self.protocol.as_str());
        format!("KUBE-SEP-{}", hash16(input.as_bytes()))
    }

    /// Endpoints in kube-proxy's order: sorted by their `ip:port` string, duplicates removed.
    fn sorted_endpoints(&self) -> Vec<Endpoint> {
        let mut eps = self.endpoints.clone();
        eps.sort_by_cached_key(|e| e.to_string());
        eps.dedup();
        eps
    }
}

/// The first 16 characters of base32(sha256(`name` + `protocol`)).
pub fn port_proto_hash(name: &str, protocol: &str) -> String {
    hash16(format!("{name}{protocol}").as_bytes())
}

fn hash16(input: &[u8]) -> String {
    let digest = Sha256::digest(input);
    let mut encoded = base32(&digest);
    encoded.truncate(16);
    encoded
}

/// RFC 4648 base32 with the standard alphabet (Go's `base32.StdEncoding`), padding omitted:
/// only the first 16 characters are ever used.
pub(crate) fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `1/n` with 10 decimals, as kube-proxy's `computeProbability`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// kube-proxy's settings that change the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// `--cluster-cidr` with the ClusterCIDR local detector (KIND: the pod subnet); traffic
    /// from outside it to a cluster IP is masqueraded.
    pub cluster_cidr: Option<IpNet>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (14 → mark 0x4000).
    pub masquerade_bit: u8,
    /// `--iptables-localhost-nodeports` (the default, true, adds the KUBE-FIREWALL rule).
    pub localhost_node_ports: bool,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` is set (no INVALID drop rule then).
    pub conntrack_tcp_liberal: bool,
    /// iptables supports `--random-fully` (every 1.6.2+ does).
    pub random_fully: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            cluster_cidr: Some(
                minikind_contract::DEFAULT_POD_SUBNET
                    .parse()
                    .expect("a valid CIDR literal"),
            ),
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_node_ports: true,
            conntrack_tcp_liberal: false,
            random_fully: true,
        }
    }
}

impl ProxyConfig {
    /// Go's `%#08x` of the mark bit: `0x004000`.
    pub fn masquerade_mark(&self) -> String {
        format!("{:#08x}", 1u32 << self.masquerade_bit.min(31))
    }
}

/// The rendered restore input and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub filter_rules: usize,
    pub nat_rules: usize,
    pub nat_chains: usize,
}

/// One table's chain lines and rule lines, written separately as kube-proxy does.
#[derive(Default)]
struct Table {
    /// The top-level chains, in the order declared.
    chains: String,
    /// The per-service chains (declared after the top-level ones, see [`ChainOrder`]).
    service_chains: Vec<String>,
    rules: String,
    chain_count: usize,
    rule_count: usize,
}

/// Whether `name` is one of the per-service chains (`KUBE-SVC-…`, `KUBE-SEP-…`, …).
pub fn is_service_chain(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-SEP-",
        "KUBE-FW-",
        "KUBE-EXT-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

impl Table {
    fn chain(&mut self, name: &str) {
        if is_service_chain(name) {
            self.service_chains.push(name.to_string());
        } else {
            self.chains.push_str(&format!(":{name} - [0:0]\n"));
        }
        self.chain_count += 1;
    }

    /// The chain lines: the top-level chains, then the service chains in `order`.
    fn declarations(&mut self, order: ChainOrder) -> String {
        if order == ChainOrder::Descending {
            self.service_chains.sort_unstable_by(|a, b| b.cmp(a));
        }
        let mut out = std::mem::take(&mut self.chains);
        out.reserve(self.service_chains.iter().map(|c| c.len() + 8).sum());
        for c in &self.service_chains {
            out.push(':');
            out.push_str(c);
            out.push_str(" - [0:0]\n");
        }
        out
    }

    fn rule(&mut self, words: &[&str]) {
        // Straight into the buffer: 170 000 rules at 10 000 services.
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.rules.push(' ');
            }
            self.rules.push_str(w);
        }
        self.rules.push('\n');
        self.rule_count += 1;
    }
}

/// The order of the service chains' declaration lines. It does not change what a restore
/// builds, only how fast the iptables flavours build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainOrder {
    /// As the services are rendered (sorted by service name, so the hashed chain names come
    /// in no particular order), as kube-proxy writes them.
    AsRendered,
    /// Descending by chain name. iptables-legacy-restore keeps chains in a sorted list and
    /// places each new one by walking from a sparse index that is rebuilt only every few
    /// hundred chains; a chain sorting before all the others goes straight to the head. With
    /// 60 000 new chains (10 000 services × 5 endpoints) that takes about a third off the
    /// restore's CPU time. Not for iptables-nft: a table created in name order makes its
    /// later restores several times slower (see BENCHMARKS-kube-proxy.md).
    Descending,
}

/// Renders the full-sync restore input for `services`. Chains in `existing_nat_chains` (from
/// `iptables-save -t nat`) that are service chains but no longer used are flushed and deleted.
pub fn render(
    services: &[ServicePort],
    config: &ProxyConfig,
    existing_nat_chains: &[String],
) -> Rendered {
    render_ordered(
        services,
        config,
        existing_nat_chains,
        ChainOrder::AsRendered,
    )
}

/// [`render`] with the service chains declared in `order`.
pub fn render_ordered(
    services: &[ServicePort],
    config: &ProxyConfig,
    existing_nat_chains: &[String],
    order: ChainOrder,
) -> Rendered {
    let mut filter = Table::default();
    let mut nat = Table::default();
    let mark = config.masquerade_mark();
    let mark_mask = format!("{mark}/{mark}");

    for chain in [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ] {
        filter.chain(chain);
    }
    for chain in [
        KUBE_SERVICES,
        KUBE_NODEPORTS,
        KUBE_POSTROUTING,
        KUBE_MARK_MASQ,
    ] {
        nat.chain(chain);
    }
    nat.rule(&[
        "-A",
        KUBE_POSTROUTING,
        "-m",
        "mark",
        "!",
        "--mark",
        &mark_mask,
        "-j",
        "RETURN",
    ]);
    nat.rule(&["-A", KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", &mark]);
    let mut masq = vec![
        "-A",
        KUBE_POSTROUTING,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes service traffic requiring SNAT\"",
        "-j",
        "MASQUERADE",
    ];
    if config.random_fully {
        masq.push("--random-fully");
    }
    nat.rule(&masq);
    nat.rule(&["-A", KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", &mark]);

    let ipv4 = services.first().is_none_or(|s| s.cluster_ip.is_ipv4());
    if ipv4 && config.localhost_node_ports {
        filter.chain(KUBE_FIREWALL);
        filter.rule(&[
            "-A",
            KUBE_FIREWALL,
            "-m",
            "comment",
            "--comment",
            "\"block incoming localnet connections\"",
            "-d",
            "127.0.0.0/8",
            "!",
            "-s",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        ]);
    }

    let total_endpoints: usize = services.iter().map(|s| s.endpoints.len()).sum();
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;
    let mut ordered: Vec<&ServicePort> = services.iter().collect();
    ordered.sort_by_cached_key(|s| (s.name_string(), s.protocol));
    for svc in ordered {
        render_service(svc, config, large, &mut filter, &mut nat);
    }

    // Stale service chains: a chain line flushes them, -X deletes them.
    let stale: Vec<&String> = if existing_nat_chains.iter().any(|c| is_service_chain(c)) {
        let active: HashSet<&str> = nat.service_chains.iter().map(String::as_str).collect();
        existing_nat_chains
            .iter()
            .filter(|c| is_service_chain(c) && !active.contains(c.as_str()))
            .collect()
    } else {
        Vec::new()
    };
    for chain in stale {
        nat.chain(chain);
        nat.rule(&["-X", chain]);
    }

    let nodeports_comment =
        "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    let mut tail = vec![
        "-A",
        KUBE_SERVICES,
        "-m",
        "comment",
        "--comment",
        nodeports_comment,
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
    ];
    if !ipv4 {
        tail.extend(["!", "-d", "::1/128"]);
    } else if !config.localhost_node_ports {
        tail.extend(["!", "-d", "127.0.0.0/8"]);
    }
    tail.extend(["-j", KUBE_NODEPORTS]);
    nat.rule(&tail);

    if !config.conntrack_tcp_liberal {
        filter.rule(&[
            "-A",
            KUBE_FORWARD,
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
            "-j",
            "DROP",
        ]);
    }
    filter.rule(&[
        "-A",
        KUBE_FORWARD,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes forwarding rules\"",
        "-m",
        "mark",
        "--mark",
        &mark_mask,
        "-j",
        "ACCEPT",
    ]);
    filter.rule(&[
        "-A",
        KUBE_FORWARD,
        "-m",
        "comment",
        "--comment",
        "\"kubernetes forwarding conntrack rule\"",
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    ]);

    let text = format!(
        "*filter\n{}{}COMMIT\n*nat\n{}{}COMMIT\n",
        filter.declarations(order),
        filter.rules,
        nat.declarations(order),
        nat.rules
    );
    Rendered {
        text,
        filter_rules: filter.rule_count,
        nat_rules: nat.rule_count,
        nat_chains: nat.chain_count,
    }
}

fn render_service(
    svc: &ServicePort,
    config: &ProxyConfig,
    large: bool,
    filter: &mut Table,
    nat: &mut Table,
) {
    let proto = svc.protocol.as_str();
    let name = svc.name_string();
    let cluster_ip = svc.cluster_ip.to_string();
    let port = svc.port.to_string();
    let endpoints = svc.sorted_endpoints();
    let has_endpoints = !endpoints.is_empty();
    let svc_chain = svc.svc_chain();
    let ext_chain = svc.ext_chain();
    let cluster_comment = format!("\"{name} cluster IP\"");

    if has_endpoints {
        nat.rule(&[
            "-A",
            KUBE_SERVICES,
            "-m",
            "comment",
            "--comment",
            &cluster_comment,
            "-m",
            proto,
            "-p",
            proto,
            "-d",
            &cluster_ip,
            "--dport",
            &port,
            "-j",
            &svc_chain,
        ]);
    } else {
        let reject_comment = format!("\"{name} has no endpoints\"");
        filter.rule(&[
            "-A",
            KUBE_SERVICES,
            "-m",
            "comment",
            "--comment",
            &reject_comment,
            "-m",
            proto,
            "-p",
            proto,
            "-d",
            &cluster_ip,
            "--dport",
            &port,
            "-j",
            "REJECT",
        ]);
    }

    if let Some(node_port) = svc.node_port {
        let node_port = node_port.to_string();
        if has_endpoints {
            nat.rule(&[
                "-A",
                KUBE_NODEPORTS,
                "-m",
                "comment",
                "--comment",
                &name,
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                &ext_chain,
            ]);
        } else {
            let reject_comment = format!("\"{name} has no endpoints\"");
            filter.rule(&[
                "-A",
                KUBE_EXTERNAL_SERVICES,
                "-m",
                "comment",
                "--comment",
                &reject_comment,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-m",
                proto,
                "-p",
                proto,
                "--dport",
                &node_port,
                "-j",
                "REJECT",
            ]);
        }
    }

    if !has_endpoints {
        return;
    }

    // Off-cluster (or all, with --masquerade-all) traffic to the cluster IP is marked.
    let base = [
        "-m",
        "comment",
        "--comment",
        &cluster_comment,
        "-m",
        proto,
        "-p",
        proto,
        "-d",
        &cluster_ip,
        "--dport",
        &port,
    ];
    if config.masquerade_all {
        let mut words = vec!["-A", svc_chain.as_str()];
        words.extend(base);
        words.extend(["-j", KUBE_MARK_MASQ]);
        nat.rule(&words);
    } else if let Some(cidr) = &config.cluster_cidr {
        let cidr = cidr.to_string();
        let mut words = vec!["-A", svc_chain.as_str()];
        words.extend(base);
        words.extend(["!", "-s", cidr.as_str(), "-j", KUBE_MARK_MASQ]);
        nat.rule(&words);
    }

    if svc.node_port.is_some() {
        nat.chain(&ext_chain);
        let comment = format!("\"masquerade traffic for {name} external destinations\"");
        nat.rule(&[
            "-A",
            &ext_chain,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            KUBE_MARK_MASQ,
        ]);
        nat.rule(&["-A", &ext_chain, "-j", &svc_chain]);
    }

    nat.chain(&svc_chain);
    let n = endpoints.len();
    // Each name is a SHA-256: computed once for the jump and the chain.
    let seps: Vec<String> = endpoints.iter().map(|ep| svc.sep_chain(ep)).collect();
    for (i, (ep, sep)) in endpoints.iter().zip(&seps).enumerate() {
        let comment = format!("\"{name} -> {ep}\"");
        let mut words = vec!["-A", svc_chain.as_str()];
        if !large {
            words.extend(["-m", "comment", "--comment", comment.as_str()]);
        }
        let p = probability(n - i);
        if i + 1 < n {
            words.extend([
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                p.as_str(),
            ]);
        }
        words.extend(["-j", sep.as_str()]);
        nat.rule(&words);
    }

    for (ep, sep) in endpoints.iter().zip(&seps) {
        nat.chain(sep);
        let ip = ep.ip.to_string();
        let target = ep.to_string();
        let mut prefix = vec!["-A", sep.as_str()];
        if !large {
            prefix.extend(["-m", "comment", "--comment", name.as_str()]);
        }
        let mut hairpin = prefix.clone();
        hairpin.extend(["-s", ip.as_str(), "-j", KUBE_MARK_MASQ]);
        nat.rule(&hairpin);
        let mut dnat = prefix;
        dnat.extend([
            "-m",
            proto,
            "-p",
            proto,
            "-j",
            "DNAT",
            "--to-destination",
            target.as_str(),
        ]);
        nat.rule(&dnat);
    }
}

/// A jump kube-proxy ensures outside the restore (it must not replace PREROUTING & co.).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    pub table: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    /// The rule's match arguments, before `-j <to>`.
    pub args: Vec<&'static str>,
}

/// kube-proxy's `iptablesJumpChains` plus the kubelet's KUBE-FIREWALL jumps, in its order.
pub fn jump_rules() -> Vec<JumpRule> {
    let new = ["-m", "conntrack", "--ctstate", "NEW"];
    let with = |extra: &[&'static str], comment: &'static str| -> Vec<&'static str> {
        let mut args = extra.to_vec();
        if !comment.is_empty() {
            args.extend(["-m", "comment", "--comment", comment]);
        }
        args
    };
    let j = |table, to, from, args| JumpRule {
        table,
        from,
        to,
        args,
    };
    vec![
        j(
            "filter",
            KUBE_EXTERNAL_SERVICES,
            "INPUT",
            with(&new, "kubernetes externally-visible service portals"),
        ),
        j(
            "filter",
            KUBE_EXTERNAL_SERVICES,
            "FORWARD",
            with(&new, "kubernetes externally-visible service portals"),
        ),
        j(
            "filter",
            KUBE_NODEPORTS,
            "INPUT",
            with(&[], "kubernetes health check service ports"),
        ),
        j(
            "filter",
            KUBE_SERVICES,
            "FORWARD",
            with(&new, "kubernetes service portals"),
        ),
        j(
            "filter",
            KUBE_SERVICES,
            "OUTPUT",
            with(&new, "kubernetes service portals"),
        ),
        j(
            "filter",
            KUBE_FORWARD,
            "FORWARD",
            with(&[], "kubernetes forwarding rules"),
        ),
        j(
            "filter",
            KUBE_PROXY_FIREWALL,
            "INPUT",
            with(&new, "kubernetes load balancer firewall"),
        ),
        j(
            "filter",
            KUBE_PROXY_FIREWALL,
            "OUTPUT",
            with(&new, "kubernetes load balancer firewall"),
        ),
        j(
            "filter",
            KUBE_PROXY_FIREWALL,
            "FORWARD",
            with(&new, "kubernetes load balancer firewall"),
        ),
        j(
            "nat",
            KUBE_SERVICES,
            "OUTPUT",
            with(&[], "kubernetes service portals"),
        ),
        j(
            "nat",
            KUBE_SERVICES,
            "PREROUTING",
            with(&[], "kubernetes service portals"),
        ),
        j(
            "nat",
            KUBE_POSTROUTING,
            "POSTROUTING",
            with(&[], "kubernetes postrouting rules"),
        ),
        j("filter", KUBE_FIREWALL, "INPUT", vec![]),
        j("filter", KUBE_FIREWALL, "OUTPUT", vec![]),
    ]
}

fn run(program: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", program.display(), args.join(" ")))
}

/// Makes sure every [`jump_rules`] jump exists (creating the target chain, then prepending
/// the rule, as kube-proxy's `EnsureChain`/`EnsureRule(Prepend)`); `iptables` is the
/// `iptables` command of the node's flavour.
pub fn ensure_jumps(iptables: &Path) -> anyhow::Result<()> {
    for jump in jump_rules() {
        // -N fails when the chain exists, which is what we want to know anyway.
        let _ = run(iptables, &["-w", "-t", jump.table, "-N", jump.to])?;
        let mut rule: Vec<&str> = jump.args.clone();
        rule.extend(["-j", jump.to]);
        let mut check = vec!["-w", "-t", jump.table, "-C", jump.from];
        check.extend(&rule);
        if run(iptables, &check)?.status.success() {
            continue;
        }
        let mut insert = vec!["-w", "-t", jump.table, "-I", jump.from];
        insert.extend(&rule);
        let out = run(iptables, &insert)?;
        if !out.status.success() {
            bail!(
                "adding the jump {} → {} in table {}: {}",
                jump.from,
                jump.to,
                jump.table,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Applies rendered rules atomically without touching other chains:
/// `iptables-restore -w --noflush --counters`.
pub fn restore(iptables_restore: &Path, rendered: &Rendered) -> anyhow::Result<()> {
    Ok(minikind_iptables::restore(
        iptables_restore,
        &["-w", "--noflush", "--counters"],
        &rendered.text,
        "the service rules",
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_hash_like_kube_proxy() {
        assert_eq!(
            port_proto_hash("kube-system/kube-dns:dns", "udp"),
            "TCOU7JCQXEZGVUNU"
        );
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn probabilities_have_ten_decimals() {
        let ps: Vec<String> = (1..=4).rev().map(probability).collect();
        assert_eq!(
            ps,
            vec![
                "0.2500000000",
                "0.3333333333",
                "0.5000000000",
                "1.0000000000"
            ]
        );
    }

    #[test]
    fn mark_is_go_formatted() {
        assert_eq!(ProxyConfig::default().masquerade_mark(), "0x004000");
    }

    #[test]
    fn ipv6_endpoints_are_bracketed() {
        assert_eq!(
            Endpoint {
                ip: "fd00::5".parse().unwrap(),
                port: 53
            }
            .to_string(),
            "[fd00::5]:53"
        );
    }
}

#[cfg(test)]
mod golden {
    use super::*;

    fn ep(ip: &str, port: u16) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn port(
        ns: &str,
        name: &str,
        port_name: &str,
        protocol: Protocol,
        ip: &str,
        p: u16,
        endpoints: Vec<Endpoint>,
    ) -> ServicePort {
        ServicePort {
            namespace: ns.into(),
            name: name.into(),
            port_name: port_name.into(),
            protocol,
            cluster_ip: ip.parse().unwrap(),
            port: p,
            node_port: None,
            endpoints,
        }
    }

    /// A fresh KIND cluster's services plus one without endpoints and one NodePort.
    pub(super) fn kind_services() -> Vec<ServicePort> {
        let dns_eps = |p| vec![ep("10.244.0.3", p), ep("10.244.0.2", p)];
        let mut web = port(
            "default",
            "web",
            "http",
            Protocol::Tcp,
            "10.96.50.5",
            80,
            vec![ep("10.244.1.7", 8080)],
        );
        web.node_port = Some(30080);
        let mut closed = port(
            "default",
            "closed",
            "",
            Protocol::Tcp,
            "10.96.200.1",
            80,
            vec![],
        );
        closed.node_port = Some(30081);
        vec![
            port(
                "kube-system",
                "kube-dns",
                "dns",
                Protocol::Udp,
                "10.96.0.10",
                53,
                dns_eps(53),
            ),
            port(
                "kube-system",
                "kube-dns",
                "dns-tcp",
                Protocol::Tcp,
                "10.96.0.10",
                53,
                dns_eps(53),
            ),
            port(
                "kube-system",
                "kube-dns",
                "metrics",
                Protocol::Tcp,
                "10.96.0.10",
                9153,
                dns_eps(9153),
            ),
            port(
                "default",
                "kubernetes",
                "https",
                Protocol::Tcp,
                "10.96.0.1",
                443,
                vec![ep("172.18.0.2", 6443)],
            ),
            port(
                "default",
                "none",
                "http",
                Protocol::Tcp,
                "10.96.200.2",
                80,
                vec![],
            ),
            web,
            closed,
        ]
    }

    fn testdata(name: &str) -> String {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/service_rules")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
    }

    #[test]
    fn endpoint_chain_names_match_real_kind_clusters() {
        // Hashes seen in `iptables-save` of real KIND clusters.
        let dns = port(
            "kube-system",
            "kube-dns",
            "dns",
            Protocol::Udp,
            "10.96.0.10",
            53,
            vec![],
        );
        assert_eq!(dns.svc_chain(), "KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(
            dns.sep_chain(&ep("10.244.0.2", 53)),
            "KUBE-SEP-YIL6JZP7A3QYXJU2"
        );
        assert_eq!(
            dns.sep_chain(&ep("10.244.0.3", 53)),
            "KUBE-SEP-6E7XQMQ4RAYOWTTM"
        );
        assert_eq!(
            dns.sep_chain(&ep("10.244.0.4", 53)),
            "KUBE-SEP-WXWGHGKZOCNYRYI7"
        );
    }

    #[test]
    fn kind_cluster_restore_input() {
        let stale = vec![
            "KUBE-SVC-GONEGONEGONEGONE".to_string(),
            "DOCKER_OUTPUT".to_string(),
        ];
        let rendered = render(&kind_services(), &ProxyConfig::default(), &stale);
        assert_eq!(rendered.text, testdata("kind-cluster.restore"));
    }

    #[test]
    fn descending_order_only_reorders_the_service_chain_declarations() {
        let stale = vec!["KUBE-SVC-GONEGONEGONEGONE".to_string()];
        let services = kind_services();
        let config = ProxyConfig::default();
        let plain = render(&services, &config, &stale);
        let desc = render_ordered(&services, &config, &stale, ChainOrder::Descending);
        let (decl, other): (Vec<&str>, Vec<&str>) =
            desc.text.lines().partition(|l| l.starts_with(":KUBE-S"));
        let (plain_decl, plain_other): (Vec<&str>, Vec<&str>) =
            plain.text.lines().partition(|l| l.starts_with(":KUBE-S"));
        assert_eq!(other, plain_other, "rules and top-level chains unchanged");
        let names: Vec<&str> = decl
            .iter()
            .filter(|l| is_service_chain(&l[1..]))
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(names, sorted);
        assert!(names.contains(&":KUBE-SVC-GONEGONEGONEGONE"));
        let mut a = decl.clone();
        let mut b = plain_decl.clone();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "the same chains are declared");
        assert_eq!(
            (desc.nat_rules, desc.nat_chains),
            (plain.nat_rules, plain.nat_chains)
        );
    }

    #[test]
    fn four_endpoints_split_evenly() {
        let eps = (2..6).map(|i| ep(&format!("10.244.0.{i}"), 53)).collect();
        let svc = port(
            "kube-system",
            "kube-dns",
            "dns",
            Protocol::Udp,
            "10.96.0.10",
            53,
            eps,
        );
        let rendered = render(&[svc], &ProxyConfig::default(), &[]);
        let probabilities: Vec<&str> = rendered
            .text
            .lines()
            .filter(|l| l.starts_with("-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment \"kube-system/kube-dns:dns ->"))
            .map(|l| l.split("--probability ").nth(1).map_or("last", |r| r.split(' ').next().unwrap_or("")))
            .collect();
        assert_eq!(
            probabilities,
            vec!["0.2500000000", "0.3333333333", "0.5000000000", "last"]
        );
    }

    #[test]
    fn large_clusters_drop_endpoint_comments() {
        let eps: Vec<Endpoint> = (0..1001u32)
            .map(|i| ep(&format!("10.244.{}.{}", i / 250, i % 250 + 1), 80))
            .collect();
        let svc = port(
            "default",
            "big",
            "http",
            Protocol::Tcp,
            "10.96.9.9",
            80,
            eps,
        );
        let rendered = render(&[svc], &ProxyConfig::default(), &[]);
        assert!(!rendered.text.contains("default/big:http ->"));
        assert!(rendered.text.contains("\"default/big:http cluster IP\""));
        assert_eq!(rendered.nat_chains, 4 + 1 + 1001);
    }

    /// Restores the rendered rules with the real iptables in a private network namespace and
    /// compares what `iptables-save` prints with lines saved from real KIND clusters.
    #[test]
    fn kind_cluster_rules_load_and_save_like_real_clusters() {
        let restore_program = std::path::Path::new("/usr/sbin/iptables-nft-restore");
        // Prerequisites of the suite (README): missing ones fail here, never skip.
        assert!(
            restore_program.exists() && nix::unistd::geteuid().is_root(),
            "needs root and iptables-nft (apt-get install iptables)"
        );
        let rendered = render(&kind_services(), &ProxyConfig::default(), &[]);
        let result = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            ensure_jumps(std::path::Path::new("/usr/sbin/iptables-nft")).unwrap();
            restore(
                std::path::Path::new("/usr/sbin/iptables-nft-restore"),
                &rendered,
            )
            .unwrap();
            // A second sync over the first must be accepted too (--noflush, chains reused).
            restore(
                std::path::Path::new("/usr/sbin/iptables-nft-restore"),
                &rendered,
            )
            .unwrap();
            ensure_jumps(std::path::Path::new("/usr/sbin/iptables-nft")).unwrap();
            let out = Command::new("/usr/sbin/iptables-nft-save")
                .output()
                .unwrap();
            Some(String::from_utf8(out.stdout).unwrap())
        })
        .join()
        .unwrap();
        let saved = result.expect("unshare(CLONE_NEWNET) refused: the suite runs as root");
        for line in testdata("kind-cluster.save-excerpt")
            .lines()
            .filter(|l| l.starts_with('-'))
        {
            assert_eq!(
                saved.lines().filter(|l| *l == line).count(),
                1,
                "missing or duplicated in iptables-save: {line}\n{saved}"
            );
        }
        let jumps = saved
            .lines()
            .filter(|l| l.contains("-j KUBE-SERVICES"))
            .count();
        assert_eq!(
            jumps, 4,
            "PREROUTING/OUTPUT (nat) and FORWARD/OUTPUT (filter) jumps, once each"
        );
    }
}
