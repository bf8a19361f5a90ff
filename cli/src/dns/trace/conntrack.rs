//! The node's connection-tracking table, as the kernel prints it in `/proc/net/nf_conntrack`
//! (one flow a line: the original direction's `src= dst= sport= dport=`, then the reply
//! direction's). A DNATed flow's reply comes *from* the address the DNAT chose, so the table
//! names the endpoint kube-proxy's rules picked for a query without any log: the evidence
//! `conntrack -L` shows, read without the conntrack tool (not in the node image).
//!
//! UDP entries live 30 s after their last packet (`nf_conntrack_udp_timeout`), so the table is
//! read right after the lookup.

use std::net::{IpAddr, SocketAddr};

/// Where the table is in a node (its network namespace's view).
pub const PROC_PATH: &str = "/proc/net/nf_conntrack";

/// One flow: its protocol, the original direction and the reply direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub proto: String,
    pub original: (SocketAddr, SocketAddr),
    pub reply: (SocketAddr, SocketAddr),
    /// Seconds the flow has left to live (its timer restarts with each packet).
    pub ttl: u64,
    /// The line as the kernel printed it, for the evidence.
    pub line: String,
}

impl Flow {
    /// Whether this is the flow of a query from `client` to `server` over `proto`.
    pub fn is(&self, proto: &str, client: SocketAddr, server: SocketAddr) -> bool {
        self.proto == proto && self.original == (client, server)
    }

    /// Where the flow really went: the reply's source (the DNAT's target, or the server
    /// itself when nothing rewrote it).
    pub fn answered_by(&self) -> SocketAddr {
        self.reply.0
    }
}

/// The flows over `proto` from `from` (that address, and that port when given) to `server`:
/// the forwards of one client to one server. The newest first (the most seconds left to live:
/// a flow's timer restarts with each packet).
pub fn from_to<'a>(
    flows: &'a [Flow],
    proto: &str,
    from: IpAddr,
    port: Option<u16>,
    server: SocketAddr,
) -> Vec<&'a Flow> {
    let mut found: Vec<&Flow> = flows
        .iter()
        .filter(|f| f.proto == proto && f.original.1 == server && f.original.0.ip() == from)
        .filter(|f| port.is_none_or(|p| f.original.0.port() == p))
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.ttl));
    found
}

/// Every TCP and UDP flow of the table; lines of other protocols or that do not parse are
/// skipped (the kernel's format has not changed since 2.6, but a table is no place to fail).
pub fn parse(text: &str) -> Vec<Flow> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    // `ipv4 2 udp 17 27 src=…`: family, its number, protocol, its number, seconds left, then
    // the rest.
    let _family = words.next()?;
    let _family_number = words.next()?;
    let proto = words.next()?;
    if proto != "udp" && proto != "tcp" {
        return None;
    }
    let _proto_number = words.next()?;
    let ttl: u64 = words.next()?.parse().ok()?;
    let mut fields: Vec<(&str, &str)> = Vec::new();
    for w in words {
        if let Some((k, v)) = w.split_once('=') {
            fields.push((k, v));
        }
    }
    // The first src/dst/sport/dport are the original direction, the second the reply's.
    let nth = |key: &str, n: usize| {
        fields
            .iter()
            .filter(|(k, _)| *k == key)
            .nth(n)
            .map(|(_, v)| *v)
    };
    let addr = |n: usize, ip_key: &str, port_key: &str| -> Option<SocketAddr> {
        let ip: IpAddr = nth(ip_key, n)?.parse().ok()?;
        let port: u16 = nth(port_key, n)?.parse().ok()?;
        Some(SocketAddr::new(ip, port))
    };
    Some(Flow {
        proto: proto.to_string(),
        original: (addr(0, "src", "sport")?, addr(0, "dst", "dport")?),
        reply: (addr(1, "src", "sport")?, addr(1, "dst", "dport")?),
        ttl,
        line: line.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines read off a node of this project's cluster after `nslookup kubernetes.default`.
    const TABLE: &str = "\
ipv4     2 udp      17 27 src=10.244.0.4 dst=10.96.0.10 sport=53244 dport=53 src=10.244.0.2 dst=10.244.0.4 sport=53 dport=53244 mark=0 zone=0 use=2
ipv4     2 udp      17 20 src=172.27.0.2 dst=10.255.255.53 sport=58369 dport=53 src=10.255.255.53 dst=172.27.0.2 sport=53 dport=58369 mark=0 zone=0 use=2
ipv4     2 tcp      6 431999 ESTABLISHED src=10.244.0.4 dst=10.96.0.10 sport=40000 dport=53 src=10.244.1.3 dst=10.244.0.4 sport=53 dport=40000 [ASSURED] mark=0 zone=0 use=2
ipv4     2 icmp     1 29 src=10.244.0.4 dst=10.244.0.2 type=8 code=0 id=7 src=10.244.0.2 dst=10.244.0.4 type=0 code=0 id=7 mark=0 use=1
garbage
";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_forwards_flows_are_found_newest_first() {
        let table = "\
ipv4     2 udp      17 12 src=10.244.1.2 dst=172.26.0.1 sport=40001 dport=53 src=127.0.0.11 dst=10.244.1.2 sport=51869 dport=40001 mark=0 use=1
ipv4     2 udp      17 29 src=10.244.1.2 dst=172.26.0.1 sport=40002 dport=53 src=127.0.0.11 dst=10.244.1.2 sport=51869 dport=40002 mark=0 use=1
ipv4     2 udp      17 29 src=10.244.1.9 dst=172.26.0.1 sport=40003 dport=53 src=127.0.0.11 dst=10.244.1.9 sport=51869 dport=40003 mark=0 use=1
";
        let flows = parse(table);
        let server = sa("172.26.0.1:53");
        let from: IpAddr = "10.244.1.2".parse().unwrap();
        let all = from_to(&flows, "udp", from, None, server);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].original.0.port(), 40002);
        assert_eq!(all[0].answered_by(), sa("127.0.0.11:51869"));
        let one = from_to(&flows, "udp", from, Some(40001), server);
        assert_eq!((one.len(), one[0].ttl), (1, 12));
        assert!(from_to(&flows, "tcp", from, None, server).is_empty());
    }

    #[test]
    fn the_reply_direction_names_the_endpoint_the_dnat_chose() {
        let flows = parse(TABLE);
        assert_eq!(flows.len(), 3, "udp and tcp only: {flows:?}");
        let q = flows
            .iter()
            .find(|f| f.is("udp", sa("10.244.0.4:53244"), sa("10.96.0.10:53")))
            .unwrap();
        assert_eq!(q.answered_by(), sa("10.244.0.2:53"));
        let tcp = flows
            .iter()
            .find(|f| f.is("tcp", sa("10.244.0.4:40000"), sa("10.96.0.10:53")))
            .unwrap();
        assert_eq!(tcp.answered_by(), sa("10.244.1.3:53"));
        assert_eq!((q.ttl, tcp.ttl), (27, 431999));
        // Not rewritten: the server answered itself.
        let direct = &flows[1];
        assert_eq!(direct.answered_by(), direct.original.1);
        assert!(!direct.is("tcp", direct.original.0, direct.original.1));
    }
}
