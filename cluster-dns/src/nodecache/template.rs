//! node-cache's Corefile template and how its pillars are filled (k8s-dns-node-cache
//! cmd/node-cache/app/configmap.go, `updateCorefile`; kubernetes
//! cluster/addons/dns/nodelocaldns/nodelocaldns.yaml for the template).
//!
//! Two kinds of pillar: the installer fills the cluster domain, the local address and the
//! kube-dns ClusterIP ([`corefile_template`] with [`InstallPillars`], what the `node-local-dns`
//! ConfigMap holds); node-cache itself fills the rest when it starts ([`fill`]).

use std::net::IpAddr;

/// Filled by node-cache: the upstream for names outside the cluster (the node's resolv.conf).
pub const UPSTREAM_SERVERS: &str = "__PILLAR__UPSTREAM__SERVERS__";
/// Filled by node-cache: the ClusterIP of the `-upstreamsvc` Service (`kube-dns-upstream`).
pub const CLUSTER_DNS: &str = "__PILLAR__CLUSTER__DNS__";
/// Filled by the installer, and again by node-cache from `-localip`: the addresses to bind.
pub const LOCAL_DNS: &str = "__PILLAR__LOCAL__DNS__";
/// Filled by the installer with the kube-dns ClusterIP in iptables mode (the cache answers it
/// too), left empty when the kubelet points pods at the local address; node-cache blanks a
/// leftover one.
pub const DNS_SERVER: &str = "__PILLAR__DNS__SERVER__";
/// Filled by the installer: the cluster domain.
pub const DNS_DOMAIN: &str = "__PILLAR__DNS__DOMAIN__";

/// Where node-cache forwards names outside the cluster when the kube-dns ConfigMap names no
/// upstream: the node's resolver file (the pod has `dnsPolicy: Default`).
pub const DEFAULT_UPSTREAM: &str = "/etc/resolv.conf";

/// The template of the `node-local-dns` ConfigMap (kubernetes' nodelocaldns.yaml), every
/// pillar still in it.
pub const TEMPLATE: &str = "__PILLAR__DNS__DOMAIN__:53 {
    errors
    cache {
            success 9984 30
            denial 9984 5
    }
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    health __PILLAR__LOCAL__DNS__:8080
    }
in-addr.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
ip6.arpa:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__CLUSTER__DNS__ {
            force_tcp
    }
    prometheus :9253
    }
.:53 {
    errors
    cache 30
    reload
    loop
    bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__
    forward . __PILLAR__UPSTREAM__SERVERS__
    prometheus :9253
    }
";

/// What the installer fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallPillars {
    pub domain: String,
    pub local_ip: IpAddr,
    /// The kube-dns ClusterIP in iptables mode; None when pods are pointed at `local_ip`.
    pub dns_server: Option<IpAddr>,
}

impl InstallPillars {
    /// The `-localip` argument node-cache gets: the addresses it binds and sets up.
    pub fn local_ips(&self) -> Vec<IpAddr> {
        std::iter::once(self.local_ip)
            .chain(self.dns_server)
            .collect()
    }
}

/// The ConfigMap's Corefile: the template with the installer's pillars filled.
pub fn corefile_template(p: &InstallPillars) -> String {
    TEMPLATE
        .replace(DNS_DOMAIN, &p.domain)
        .replace(LOCAL_DNS, &p.local_ip.to_string())
        .replace(
            DNS_SERVER,
            &p.dns_server.map(|ip| ip.to_string()).unwrap_or_default(),
        )
}

/// node-cache's own filling of a base Corefile: the upstream servers, the cluster DNS address
/// (None when the upstream Service's address is unknown: an error only if the base needs it),
/// the local addresses, and a leftover `DNS_SERVER` blanked.
pub fn fill(
    base: &str,
    cluster_dns: Option<IpAddr>,
    local_ips: &[IpAddr],
) -> Result<String, String> {
    let mut out = base.replace(UPSTREAM_SERVERS, DEFAULT_UPSTREAM);
    if out.contains(CLUSTER_DNS) {
        let ip = cluster_dns.ok_or_else(|| {
            format!(
                "the Corefile needs {CLUSTER_DNS}, but the upstream Service's address is unknown"
            )
        })?;
        out = out.replace(CLUSTER_DNS, &ip.to_string());
    }
    let locals: Vec<String> = local_ips.iter().map(IpAddr::to_string).collect();
    out = out.replace(LOCAL_DNS, &locals.join(" "));
    Ok(out.replace(DNS_SERVER, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_then_node_cache_fill_every_pillar() {
        let p = InstallPillars {
            domain: "cluster.local".into(),
            local_ip: "169.254.20.10".parse().unwrap(),
            dns_server: Some("10.96.0.10".parse().unwrap()),
        };
        let cm = corefile_template(&p);
        assert!(cm.starts_with("cluster.local:53 {"));
        assert!(cm.contains("bind 169.254.20.10 10.96.0.10\n"));
        assert!(cm.contains("health 169.254.20.10:8080"));
        assert!(cm.contains(CLUSTER_DNS) && cm.contains(UPSTREAM_SERVERS));
        let done = fill(&cm, Some("10.96.0.20".parse().unwrap()), &p.local_ips()).unwrap();
        assert!(!done.contains("__PILLAR__"), "{done}");
        assert!(done.contains("forward . 10.96.0.20 {"));
        assert!(done.contains("forward . /etc/resolv.conf\n"));
        assert!(
            fill(&cm, None, &p.local_ips())
                .unwrap_err()
                .contains(CLUSTER_DNS)
        );

        // Pods pointed at the local address: the kube-dns address is not bound.
        let local_only = InstallPillars {
            dns_server: None,
            ..p
        };
        let cm = corefile_template(&local_only);
        assert!(cm.contains("bind 169.254.20.10 \n"));
        assert_eq!(local_only.local_ips().len(), 1);
    }
}
