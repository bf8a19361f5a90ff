//! What a node's builtin embedded resolver (`dns.embedded: builtin`) needs from the host: the
//! external servers Docker's resolver would have used. The names Docker's resolver would have
//! answered come from the engine: [`crate::provider::docker::embedded_names`].

use std::net::{IpAddr, Ipv4Addr};

use minikind_resolv_conf::ResolvConf;

use crate::config::{ClusterConfig, Upstream};

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

#[cfg(test)]
mod tests {
    use super::*;
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
}
