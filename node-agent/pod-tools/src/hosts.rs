//! `/etc/hosts` lookups, as glibc's `files` source does them.

use std::net::IpAddr;

/// One address line of a hosts file: the address, its canonical name, its aliases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub addr: IpAddr,
    pub name: String,
    pub aliases: Vec<String>,
}

/// Parses hosts-file text; comments are stripped and lines without a valid address or name
/// are ignored, as glibc does.
pub fn parse(text: &str) -> Vec<HostEntry> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace();
            let addr = words.next()?.parse().ok()?;
            let name = words.next()?.to_string();
            Some(HostEntry {
                addr,
                name,
                aliases: words.map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The entries whose name or alias is `name` (case-insensitive, a trailing dot ignored) with
/// an address of the wanted family (`None`: any), in file order.
pub fn by_name<'a>(entries: &'a [HostEntry], name: &str, v6: Option<bool>) -> Vec<&'a HostEntry> {
    let name = name.trim_end_matches('.');
    entries
        .iter()
        .filter(|e| v6.is_none_or(|v6| e.addr.is_ipv6() == v6))
        .filter(|e| {
            e.name.eq_ignore_ascii_case(name)
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .collect()
}

/// The first entry for an address.
pub fn by_addr(entries: &[HostEntry], addr: IpAddr) -> Option<&HostEntry> {
    entries.iter().find(|e| e.addr == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBELET: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
        10.244.1.5\tweb-0.web.default.svc.cluster.local\tweb-0 # the pod\nnot-an-ip name\n";

    #[test]
    fn finds_names_and_aliases_by_family() {
        let entries = parse(KUBELET);
        assert_eq!(entries.len(), 3);
        let web = by_name(&entries, "WEB-0", Some(false));
        assert_eq!(web.len(), 1);
        assert_eq!(web[0].name, "web-0.web.default.svc.cluster.local");
        assert_eq!(
            by_name(&entries, "localhost", Some(true))[0].addr,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(by_name(&entries, "localhost.", None).len(), 2);
        assert!(by_name(&entries, "web-0", Some(true)).is_empty());
        assert_eq!(
            by_addr(&entries, "10.244.1.5".parse().unwrap())
                .unwrap()
                .aliases,
            vec!["web-0"]
        );
    }
}
