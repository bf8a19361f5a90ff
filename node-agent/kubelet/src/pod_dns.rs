//! A pod's resolver files as the kubelet makes them (kubernetes pkg/kubelet/network/dns/dns.go
//! `GetPodDNS`, pkg/kubelet/kubelet_pods.go `ensureHostsFile`): `/etc/resolv.conf` from
//! `dnsPolicy` + `dnsConfig` with the kubelet's limits and `DNSConfigForming` warnings, and the
//! kubelet-managed `/etc/hosts` with `hostAliases`.
//!
//! Differences from the kubelet, on purpose: merged `dnsConfig.options` keep a stable order
//! (existing options first, in order, then new ones) where the kubelet's Go map gives a random
//! one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use minikind_resolv_conf::{Line, ResolvConf};

/// At most this many nameservers (glibc's `MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (the kubelet's expanded limit, GA since 1.28).
pub const MAX_SEARCH_PATHS: usize = 32;
/// At most this many characters in the joined search line.
pub const MAX_SEARCH_CHARS: usize = 2048;
/// A search domain longer than a DNS-1123 subdomain is dropped (glibc 2.28 aborts on it).
pub const MAX_SEARCH_DOMAIN_LEN: usize = 253;
/// The options a ClusterFirst pod gets.
pub const CLUSTER_FIRST_OPTIONS: [&str; 1] = ["ndots:5"];

/// `spec.dnsPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsPolicy {
    #[default]
    ClusterFirst,
    ClusterFirstWithHostNet,
    Default,
    None,
}

impl FromStr for DnsPolicy {
    type Err = String;

    /// The API's spelling; empty is the API server's default, ClusterFirst.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "ClusterFirst" => Ok(DnsPolicy::ClusterFirst),
            "ClusterFirstWithHostNet" => Ok(DnsPolicy::ClusterFirstWithHostNet),
            "Default" => Ok(DnsPolicy::Default),
            "None" => Ok(DnsPolicy::None),
            other => Err(format!(
                "spec.dnsPolicy: unsupported value {other:?}: supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""
            )),
        }
    }
}

/// One `spec.dnsConfig.options` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOption {
    pub name: String,
    pub value: Option<String>,
}

/// `spec.dnsConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<DnsOption>,
}

/// What of a pod the resolver configuration depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDnsInput {
    pub namespace: String,
    pub dns_policy: DnsPolicy,
    pub host_network: bool,
    pub dns_config: Option<PodDnsConfig>,
}

/// The node-side settings (the kubelet's `clusterDNS`, `clusterDomain`, `--resolv-conf`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDns {
    /// The cluster DNS service IPs (`10.96.0.10`); empty = not configured.
    pub cluster_dns: Vec<IpAddr>,
    /// `cluster.local`; empty = no cluster search domains.
    pub cluster_domain: String,
    /// The node's resolv.conf; `None` is the kubelet's `--resolv-conf=""`.
    pub node_resolv_conf: Option<ResolvConf>,
    /// The node's IPs (only used for `--resolv-conf=""`: a loopback server per family).
    pub node_ips: Vec<IpAddr>,
}

/// A warning event the kubelet would record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsWarning {
    /// `DNSConfigForming` or `MissingClusterDNS`.
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for DnsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Warning {}: {}", self.reason, self.message)
    }
}

/// A pod's resolver configuration and the warnings forming it produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDns {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
    pub warnings: Vec<DnsWarning>,
}

impl PodDns {
    /// The file the container runtime writes: `search`, `nameserver`s, `options`.
    pub fn resolv_conf(&self) -> ResolvConf {
        ResolvConf::from_parts(&self.nameservers, &self.searches, &self.options)
    }
}

/// The node's resolv.conf as the kubelet reads it: every `nameserver`, the last `search` line
/// (trailing dots dropped), the last `options` line. `domain` lines are ignored.
fn host_config(conf: &ResolvConf) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut servers = Vec::new();
    let mut searches = Vec::new();
    let mut options = Vec::new();
    for line in &conf.lines {
        match line {
            Line::Nameserver(addr) => servers.push(addr.clone()),
            Line::Search(domains) => {
                searches = domains
                    .iter()
                    .map(|d| d.trim_end_matches('.').to_string())
                    .collect();
            }
            Line::Options(o) => options = o.clone(),
            Line::Domain(_) | Line::Other(_) => {}
        }
    }
    (servers, searches, options)
}

fn omit_duplicates(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Forms a pod's DNS configuration as the kubelet's `GetPodDNS` does.
pub fn pod_dns(pod: &PodDnsInput, node: &NodeDns) -> PodDns {
    let mut warnings = Vec::new();
    let (mut servers, mut searches, mut options) = match &node.node_resolv_conf {
        Some(conf) => host_config(conf),
        None => Default::default(),
    };

    let cluster = match pod.dns_policy {
        DnsPolicy::None => {
            servers.clear();
            searches.clear();
            options.clear();
            false
        }
        DnsPolicy::ClusterFirstWithHostNet => true,
        // hostNetwork pods with ClusterFirst fall back to Default.
        DnsPolicy::ClusterFirst => !pod.host_network,
        DnsPolicy::Default => false,
    };
    let host_like = !cluster && pod.dns_policy != DnsPolicy::None;
    let mut fallback_to_host = host_like;
    if cluster {
        if node.cluster_dns.is_empty() {
            warnings.push(DnsWarning {
                reason: "MissingClusterDNS",
                message: "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.".into(),
            });
            fallback_to_host = true;
        } else {
            servers = node.cluster_dns.iter().map(IpAddr::to_string).collect();
            if !node.cluster_domain.is_empty() {
                let domain = &node.cluster_domain;
                let cluster_search = [
                    format!("{}.svc.{domain}", pod.namespace),
                    format!("svc.{domain}"),
                    domain.clone(),
                ];
                searches = omit_duplicates(cluster_search.into_iter().chain(searches));
            }
            options = CLUSTER_FIRST_OPTIONS
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
    }
    if fallback_to_host && node.node_resolv_conf.is_none() {
        // No node resolv.conf: the local machine's nameserver, and no search.
        servers = node
            .node_ips
            .iter()
            .map(|ip| {
                if ip.is_ipv6() {
                    "::1".to_string()
                } else {
                    "127.0.0.1".to_string()
                }
            })
            .collect();
        if servers.is_empty() {
            servers.push("127.0.0.1".into());
        }
        searches = vec![".".into()];
    }

    if let Some(config) = &pod.dns_config {
        servers = omit_duplicates(
            servers
                .into_iter()
                .chain(config.nameservers.iter().cloned()),
        );
        searches = omit_duplicates(searches.into_iter().chain(config.searches.iter().cloned()));
        options = merge_options(&options, &config.options);
    }

    let servers = fit_nameservers(servers, &mut warnings);
    let searches = fit_searches(searches, &mut warnings);
    PodDns {
        nameservers: servers,
        searches,
        options,
        warnings,
    }
}

/// Options merged by name, the pod's value winning; existing order kept, new ones appended.
fn merge_options(existing: &[String], pod: &[DnsOption]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> = existing
        .iter()
        .map(|o| match o.split_once(':') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (o.clone(), None),
        })
        .collect();
    for option in pod {
        let value = option.value.clone().filter(|v| !v.is_empty());
        match merged.iter_mut().find(|(n, _)| *n == option.name) {
            Some(slot) => slot.1 = value,
            None => merged.push((option.name.clone(), value)),
        }
    }
    merged
        .into_iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n}:{v}"),
            None => n,
        })
        .collect()
}

fn fit_nameservers(mut servers: Vec<String>, warnings: &mut Vec<DnsWarning>) -> Vec<String> {
    if servers.len() > MAX_NAMESERVERS {
        servers.truncate(MAX_NAMESERVERS);
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
                servers.join(" ")
            ),
        });
    }
    servers
}

fn fit_searches(mut searches: Vec<String>, warnings: &mut Vec<DnsWarning>) -> Vec<String> {
    let mut exceeded = false;
    if searches.len() > MAX_SEARCH_PATHS {
        searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = searches.len();
    searches.retain(|s| s.len() <= MAX_SEARCH_DOMAIN_LEN);
    exceeded |= searches.len() != before;
    // Drop domains from the end until the joined line fits.
    while searches.join(" ").len() > MAX_SEARCH_CHARS {
        searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push(DnsWarning {
            reason: "DNSConfigForming",
            message: format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                searches.join(" ")
            ),
        });
    }
    searches
}

/// One `spec.hostAliases` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// The pod's hostname: `spec.hostname`, else the pod name cut to 63 characters without a
/// trailing `-` or `.` (the kubelet's truncation).
pub fn pod_hostname(pod_name: &str, spec_hostname: Option<&str>) -> String {
    if let Some(h) = spec_hostname.filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    if pod_name.len() <= 63 {
        return pod_name.to_string();
    }
    let cut: String = pod_name.chars().take(63).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The kubelet-managed `/etc/hosts` of a pod with its own network namespace.
/// `subdomain` (with `namespace` and `cluster_domain`) gives the FQDN form
/// `<ip>\t<hostname>.<subdomain>.<ns>.svc.<zone>\t<hostname>`.
pub fn managed_hosts_file(
    pod_ips: &[IpAddr],
    hostname: &str,
    subdomain: Option<&str>,
    namespace: &str,
    cluster_domain: &str,
    aliases: &[HostAlias],
) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let domain = subdomain
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}.{namespace}.svc.{cluster_domain}"));
    for ip in pod_ips {
        match &domain {
            Some(d) => out.push_str(&format!("{ip}\t{hostname}.{d}\t{hostname}\n")),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&host_alias_lines(aliases));
    out
}

/// A hostNetwork pod's `/etc/hosts`: the node's file, then the aliases.
pub fn host_network_hosts_file(node_hosts: &str, aliases: &[HostAlias]) -> String {
    format!("{node_hosts}{}", host_alias_lines(aliases))
}

fn host_alias_lines(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
    }
    out
}

/// The inputs above read from a Kubernetes Pod object.
pub fn input_from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Result<PodDnsInput, String> {
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let dns_policy = spec.dns_policy.as_deref().unwrap_or("").parse()?;
    let dns_config = spec.dns_config.as_ref().map(|c| PodDnsConfig {
        nameservers: c.nameservers.clone().unwrap_or_default(),
        searches: c.searches.clone().unwrap_or_default(),
        options: c
            .options
            .iter()
            .flatten()
            .filter_map(|o| {
                Some(DnsOption {
                    name: o.name.clone()?,
                    value: o.value.clone(),
                })
            })
            .collect(),
    });
    Ok(PodDnsInput {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        dns_policy,
        host_network: spec.host_network.unwrap_or(false),
        dns_config,
    })
}

/// `spec.hostAliases` of a Pod object.
pub fn host_aliases_from_pod(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<HostAlias> {
    pod.spec
        .iter()
        .flat_map(|s| s.host_aliases.iter().flatten())
        .map(|a| HostAlias {
            ip: a.ip.clone(),
            hostnames: a.hostnames.clone().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeDns {
        NodeDns {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            cluster_domain: "cluster.local".into(),
            node_resolv_conf: Some(ResolvConf::parse(
                "# patched by the network magic\nnameserver 172.18.0.1\nsearch corp.example.\noptions edns0 trust-ad ndots:0\n",
            )),
            node_ips: vec!["172.18.0.2".parse().unwrap()],
        }
    }

    fn pod(policy: DnsPolicy, host_network: bool) -> PodDnsInput {
        PodDnsInput {
            namespace: "default".into(),
            dns_policy: policy,
            host_network,
            dns_config: None,
        }
    }

    #[test]
    fn cluster_first_file() {
        let dns = pod_dns(&pod(DnsPolicy::ClusterFirst, false), &node());
        assert_eq!(
            dns.resolv_conf().render(),
            "search default.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        assert!(dns.warnings.is_empty());
    }

    #[test]
    fn host_network_falls_back_unless_with_host_net() {
        let default = pod_dns(&pod(DnsPolicy::ClusterFirst, true), &node());
        assert_eq!(default.nameservers, vec!["172.18.0.1"]);
        assert_eq!(default.searches, vec!["corp.example"]);
        assert_eq!(default.options, vec!["edns0", "trust-ad", "ndots:0"]);
        assert_eq!(pod_dns(&pod(DnsPolicy::Default, false), &node()), default);
        let with_host_net = pod_dns(&pod(DnsPolicy::ClusterFirstWithHostNet, true), &node());
        assert_eq!(with_host_net.nameservers, vec!["10.96.0.10"]);
    }

    #[test]
    fn none_uses_only_dns_config_and_merges() {
        let mut p = pod(DnsPolicy::None, false);
        p.dns_config = Some(PodDnsConfig {
            nameservers: vec!["192.0.2.53".into(), "192.0.2.53".into()],
            searches: vec!["ns1.svc.cluster-domain.example".into()],
            options: vec![
                DnsOption {
                    name: "ndots".into(),
                    value: Some("2".into()),
                },
                DnsOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
        });
        let dns = pod_dns(&p, &node());
        assert_eq!(
            dns.resolv_conf().render(),
            "search ns1.svc.cluster-domain.example\nnameserver 192.0.2.53\noptions ndots:2 edns0\n"
        );
        // Merged on top of ClusterFirst: the pod's ndots wins, in place.
        p.dns_policy = DnsPolicy::ClusterFirst;
        let dns = pod_dns(&p, &node());
        assert_eq!(dns.nameservers, vec!["10.96.0.10", "192.0.2.53"]);
        assert_eq!(dns.options, vec!["ndots:2", "edns0"]);
        assert_eq!(
            dns.searches.last().unwrap(),
            "ns1.svc.cluster-domain.example"
        );
    }

    #[test]
    fn limits_trim_with_the_kubelet_warning() {
        let mut p = pod(DnsPolicy::ClusterFirst, false);
        p.dns_config = Some(PodDnsConfig {
            nameservers: vec!["192.0.2.1".into(), "192.0.2.2".into(), "192.0.2.3".into()],
            searches: (0..40).map(|i| format!("s{i}.example")).collect(),
            options: vec![],
        });
        let dns = pod_dns(&p, &node());
        assert_eq!(
            dns.nameservers,
            vec!["10.96.0.10", "192.0.2.1", "192.0.2.2"]
        );
        assert_eq!(dns.searches.len(), MAX_SEARCH_PATHS);
        assert_eq!(dns.warnings.len(), 2);
        assert_eq!(dns.warnings[0].reason, "DNSConfigForming");
        assert_eq!(
            dns.warnings[0].message,
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 10.96.0.10 192.0.2.1 192.0.2.2"
        );
        assert!(dns.warnings[1].message.starts_with(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: default.svc.cluster.local svc.cluster.local"
        ));
    }

    #[test]
    fn long_search_line_is_cut_from_the_end() {
        let mut p = pod(DnsPolicy::None, false);
        let long = |c: char| format!("{}.example", c.to_string().repeat(240));
        p.dns_config = Some(PodDnsConfig {
            nameservers: vec![],
            searches: ('a'..='j')
                .map(long)
                .chain([format!("{}.x", "z".repeat(260))])
                .collect(),
            options: vec![],
        });
        let dns = pod_dns(&p, &node());
        // the 262-char domain is dropped; 10 × 248 chars + spaces > 2048: cut to 8
        assert_eq!(dns.searches.len(), 8);
        assert!(dns.searches.join(" ").len() <= MAX_SEARCH_CHARS);
        assert_eq!(dns.warnings.len(), 1);
    }

    #[test]
    fn missing_cluster_dns_and_missing_node_file() {
        let mut n = node();
        n.cluster_dns.clear();
        let dns = pod_dns(&pod(DnsPolicy::ClusterFirst, false), &n);
        assert_eq!(dns.nameservers, vec!["172.18.0.1"]);
        assert_eq!(dns.warnings[0].reason, "MissingClusterDNS");
        n.node_resolv_conf = None;
        let dns = pod_dns(&pod(DnsPolicy::Default, false), &n);
        assert_eq!(
            (dns.nameservers, dns.searches),
            (vec!["127.0.0.1".to_string()], vec![".".to_string()])
        );
    }

    #[test]
    fn policies_parse() {
        assert_eq!("".parse::<DnsPolicy>().unwrap(), DnsPolicy::ClusterFirst);
        assert_eq!("None".parse::<DnsPolicy>().unwrap(), DnsPolicy::None);
        assert!(
            "clusterfirst"
                .parse::<DnsPolicy>()
                .unwrap_err()
                .contains("spec.dnsPolicy")
        );
    }

    #[test]
    fn hosts_file_like_the_kubelet() {
        let file = managed_hosts_file(
            &["10.244.1.32".parse().unwrap()],
            "tomcat7-deployment-76744f6846-7v5lr",
            None,
            "default",
            "cluster.local",
            &[HostAlias {
                ip: "10.1.2.3".into(),
                hostnames: vec!["foo.remote".into(), "bar.remote".into()],
            }],
        );
        assert_eq!(
            file,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.244.1.32\ttomcat7-deployment-76744f6846-7v5lr\n\n# Entries added by HostAliases.\n10.1.2.3\tfoo.remote\tbar.remote\n"
        );
        let file = managed_hosts_file(
            &["10.244.2.7".parse().unwrap()],
            "web-0",
            Some("web"),
            "prod",
            "cluster.local",
            &[],
        );
        assert!(
            file.ends_with(
                "fe00::2\tip6-allrouters\n10.244.2.7\tweb-0.web.prod.svc.cluster.local\tweb-0\n"
            ),
            "{file}"
        );
        assert_eq!(
            host_network_hosts_file("127.0.0.1 localhost\n", &[]),
            "127.0.0.1 localhost\n"
        );
    }

    #[test]
    fn hostnames_are_cut_like_the_kubelet() {
        assert_eq!(pod_hostname("web-0", Some("db")), "db");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(&long, None), "a".repeat(62));
        assert_eq!(pod_hostname("short", Some("")), "short");
    }
}
