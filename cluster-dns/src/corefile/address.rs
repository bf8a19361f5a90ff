//! Server block keys: `[dns://]zone[:port]`, with reverse zones written as CIDRs
//! (`10.0.0.0/8` → `10.in-addr.arpa.`).

use std::net::IpAddr;

use ipnet::IpNet;

/// A zone a server block answers for, on one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    /// Lower-case, fully qualified (`cluster.local.`, `.` for the root).
    pub zone: String,
    pub port: u16,
    /// For a CIDR key not on an octet/nibble boundary: only names of addresses inside it match.
    pub net: Option<IpNet>,
}

/// Parses one key; `default_port` applies when the key has none (53, or `-dns.port`).
pub fn parse_address(key: &str, default_port: u16) -> Result<Vec<ListenAddr>, String> {
    let mut s = key;
    for scheme in ["dns://", "DNS://"] {
        if let Some(rest) = s.strip_prefix(scheme) {
            s = rest;
        }
    }
    if s.contains("://") {
        return Err(format!(
            "unsupported transport in server address '{key}' (only dns://)"
        ));
    }
    // The port is after the last ':' unless the zone itself is an IPv6 CIDR.
    let (zone, port) = split_port(s);
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("invalid port '{p}' in '{key}'"))?,
        None => default_port,
    };
    if zone.is_empty() {
        return Err(format!("empty zone in server address '{key}'"));
    }
    if zone.contains('/') {
        let net: IpNet = zone
            .parse()
            .map_err(|_| format!("invalid CIDR zone '{zone}' in '{key}'"))?;
        return Ok(reverse_zones(net)
            .into_iter()
            .map(|(zone, net)| ListenAddr { zone, port, net })
            .collect());
    }
    Ok(vec![ListenAddr {
        zone: normalize_zone(zone)?,
        port,
        net: None,
    }])
}

fn split_port(s: &str) -> (&str, Option<&str>) {
    if s.contains('/') && s.matches(':').count() > 1 {
        // IPv6 CIDR, possibly followed by :port after the prefix length.
        if let Some(slash) = s.find('/')
            && let Some(colon) = s[slash..].find(':')
        {
            return (&s[..slash + colon], Some(&s[slash + colon + 1..]));
        }
        return (s, None);
    }
    match s.rfind(':') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Lower-cases and adds the final dot; rejects labels that are empty or too long.
pub fn normalize_zone(zone: &str) -> Result<String, String> {
    if zone == "." {
        return Ok(".".into());
    }
    let z = zone.trim_end_matches('.').to_ascii_lowercase();
    if z.len() > 253 {
        return Err(format!("zone '{zone}' is longer than 253 characters"));
    }
    for label in z.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid zone '{zone}': empty or over-long label"));
        }
    }
    Ok(format!("{z}."))
}

/// The reverse zone(s) of a CIDR. On a boundary (octets for v4, nibbles for v6) it is one zone;
/// otherwise the zone of the enclosing boundary, filtered by the network.
pub fn reverse_zones(net: IpNet) -> Vec<(String, Option<IpNet>)> {
    match net {
        IpNet::V4(n) => {
            let octets = n.network().octets();
            let full = (n.prefix_len() / 8) as usize;
            let exact = n.prefix_len() % 8 == 0;
            let mut labels: Vec<String> = octets[..full].iter().map(|o| o.to_string()).collect();
            labels.reverse();
            let mut zone = labels.join(".");
            zone.push_str(if zone.is_empty() {
                "in-addr.arpa."
            } else {
                ".in-addr.arpa."
            });
            vec![(zone, if exact { None } else { Some(net) })]
        }
        IpNet::V6(n) => {
            let nibbles: Vec<u8> = n
                .network()
                .octets()
                .iter()
                .flat_map(|b| [b >> 4, b & 0xf])
                .collect();
            let full = (n.prefix_len() / 4) as usize;
            let exact = n.prefix_len() % 4 == 0;
            let mut labels: Vec<String> =
                nibbles[..full].iter().map(|x| format!("{x:x}")).collect();
            labels.reverse();
            let mut zone = labels.join(".");
            zone.push_str(if zone.is_empty() {
                "ip6.arpa."
            } else {
                ".ip6.arpa."
            });
            vec![(zone, if exact { None } else { Some(net) })]
        }
    }
}

/// Reads the address a reverse name (`4.3.2.1.in-addr.arpa.`) stands for; None if it is not a
/// complete one.
pub fn address_from_reverse(name: &str) -> Option<IpAddr> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if let Some(rest) = n.strip_suffix(".in-addr.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        let mut o = [0u8; 4];
        for (i, p) in parts.iter().rev().enumerate() {
            if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            o[i] = p.parse().ok()?;
        }
        return Some(IpAddr::from(o));
    }
    if let Some(rest) = n.strip_suffix(".ip6.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, p) in parts.iter().rev().enumerate() {
            if p.len() != 1 {
                return None;
            }
            let v = u8::from_str_radix(p, 16).ok()?;
            b[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        return Some(IpAddr::from(b));
    }
    None
}

/// The reverse name of an address (`1.2.3.4` → `4.3.2.1.in-addr.arpa.`).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v) => {
            let mut s = String::with_capacity(73);
            for b in v.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa.");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let a = parse_address(".:53", 53).unwrap();
        assert_eq!(
            a[0],
            ListenAddr {
                zone: ".".into(),
                port: 53,
                net: None
            }
        );
        let a = parse_address("dns://Cluster.Local:5353", 53).unwrap();
        assert_eq!((a[0].zone.as_str(), a[0].port), ("cluster.local.", 5353));
        let a = parse_address("example.org", 1053).unwrap();
        assert_eq!(a[0].port, 1053);
        let a = parse_address("10.0.0.0/8:53", 53).unwrap();
        assert_eq!(a[0].zone, "10.in-addr.arpa.");
        let a = parse_address("10.96.0.0/12", 53).unwrap();
        assert_eq!(a[0].zone, "10.in-addr.arpa.");
        assert!(a[0].net.is_some());
        let a = parse_address("fd00::/8:53", 53).unwrap();
        assert_eq!((a[0].zone.as_str(), a[0].port), ("d.f.ip6.arpa.", 53));
        assert!(parse_address("x:99999", 53).is_err());
        assert!(parse_address("a..b", 53).is_err());
        assert!(parse_address("tls://.:853", 53).is_err());
    }

    #[test]
    fn reverse_round_trip() {
        for ip in ["10.96.0.10", "fd00::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(address_from_reverse(&reverse_name(ip)), Some(ip));
        }
        assert_eq!(address_from_reverse("3.2.1.in-addr.arpa."), None);
        assert_eq!(address_from_reverse("300.2.1.1.in-addr.arpa."), None);
    }
}
