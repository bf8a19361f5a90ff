//! The iptables rules node-cache installs for each local address (k8s-dns-node-cache,
//! cmd/node-cache/app/cache_app.go, `initIptables`): NOTRACK in raw PREROUTING and OUTPUT and
//! ACCEPT in filter INPUT and OUTPUT for the DNS port over TCP and UDP, and NOTRACK in raw
//! OUTPUT for the health port, so that queries to the cache and its answers skip conntrack (and
//! kube-proxy's DNAT of a kube-dns ClusterIP the cache also holds).
//!
//! This is the one place their text is written: [`Rule::args`] is node-cache's argument list
//! (what `iptables -I` is given), [`Rule::save_line`] the same rule as `iptables-save` prints
//! it (what the periodic check and `minikind dns trace` look for).

use std::fmt::Write as _;
use std::net::IpAddr;

/// The comment on the NOTRACK rules.
pub const COMMENT_SKIP_CONNTRACK: &str = "NodeLocal DNS Cache: skip conntrack";
/// The comment on the ACCEPT rules.
pub const COMMENT_ALLOW_TRAFFIC: &str = "NodeLocal DNS Cache: allow DNS traffic";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Raw,
    Filter,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Raw => "raw",
            Table::Filter => "filter",
        }
    }
}

/// Which end of the packet the rule matches: the address and port it is sent to, or from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Destination,
    Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: Table,
    pub chain: &'static str,
    pub proto: &'static str,
    pub end: End,
    pub ip: IpAddr,
    pub port: u16,
    /// `NOTRACK` or `ACCEPT`.
    pub target: &'static str,
}

impl Rule {
    fn comment(&self) -> &'static str {
        if self.target == "NOTRACK" {
            COMMENT_SKIP_CONNTRACK
        } else {
            COMMENT_ALLOW_TRAFFIC
        }
    }

    /// node-cache's argument list, in its order.
    pub fn args(&self) -> Vec<String> {
        let (addr, port) = match self.end {
            End::Destination => ("-d", "--dport"),
            End::Source => ("-s", "--sport"),
        };
        [
            "-p",
            self.proto,
            addr,
            &self.ip.to_string(),
            port,
            &self.port.to_string(),
            "-j",
            self.target,
            "-m",
            "comment",
            "--comment",
            self.comment(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The rule as `iptables-save` prints it (address with its prefix length, the protocol's
    /// implicit match named, the comment quoted, the target last), without `-A CHAIN`.
    pub fn spec(&self) -> String {
        let (addr, port) = match self.end {
            End::Destination => ("-d", "--dport"),
            End::Source => ("-s", "--sport"),
        };
        let bits = if self.ip.is_ipv4() { 32 } else { 128 };
        let mut out = String::new();
        let _ = write!(
            out,
            "{addr} {}/{bits} -p {p} -m {p} {port} {} -m comment --comment \"{}\" -j {}",
            self.ip,
            self.port,
            self.comment(),
            self.target,
            p = self.proto,
        );
        out
    }

    /// The line `iptables-save -t <table>` prints for it.
    pub fn save_line(&self) -> String {
        format!("-A {} {}", self.chain, self.spec())
    }
}

/// Every rule for the local addresses, in node-cache's order (each address's twelve rules in
/// turn).
pub fn rules(local_ips: &[IpAddr], dns_port: u16, health_port: u16) -> Vec<Rule> {
    use End::{Destination as D, Source as S};
    use Table::{Filter, Raw};
    let mut out = Vec::new();
    for &ip in local_ips {
        let r = |table, chain, proto, end, port, target| Rule {
            table,
            chain,
            proto,
            end,
            ip,
            port,
            target,
        };
        out.extend([
            // Queries to the cache skip conntrack…
            r(Raw, "PREROUTING", "tcp", D, dns_port, "NOTRACK"),
            r(Raw, "PREROUTING", "udp", D, dns_port, "NOTRACK"),
            // …so the filter rules that accept tracked connections do not see them.
            r(Filter, "INPUT", "tcp", D, dns_port, "ACCEPT"),
            r(Filter, "INPUT", "udp", D, dns_port, "ACCEPT"),
            // Its answers too.
            r(Raw, "OUTPUT", "tcp", S, dns_port, "NOTRACK"),
            r(Raw, "OUTPUT", "udp", S, dns_port, "NOTRACK"),
            r(Filter, "OUTPUT", "tcp", S, dns_port, "ACCEPT"),
            r(Filter, "OUTPUT", "udp", S, dns_port, "ACCEPT"),
            // Queries made on the node itself (hostNetwork pods, the node's own resolver).
            r(Raw, "OUTPUT", "tcp", D, dns_port, "NOTRACK"),
            r(Raw, "OUTPUT", "udp", D, dns_port, "NOTRACK"),
            // The liveness probe to the health plugin.
            r(Raw, "OUTPUT", "tcp", D, health_port, "NOTRACK"),
            r(Raw, "OUTPUT", "tcp", S, health_port, "NOTRACK"),
        ]);
    }
    out
}

/// How many times a rule's line appears in one table's `iptables-save` text.
pub fn count_in(save: &str, rule: &Rule) -> usize {
    let want = rule.save_line();
    save.lines().filter(|l| l.trim_end() == want).count()
}

/// The restore input that inserts `missing` at the top of their chains, each in turn (as
/// node-cache's `EnsureRule(Prepend, …)` does one by one), for one table.
pub fn insert_input(table: Table, missing: &[&Rule]) -> String {
    let mut out = format!("*{}\n", table.as_str());
    for r in missing.iter().filter(|r| r.table == table) {
        let _ = writeln!(out, "-I {} 1 {}", r.chain, r.spec());
    }
    out.push_str("COMMIT\n");
    out
}

/// The restore input that deletes every copy of the rules present in one table's save text.
pub fn delete_input(table: Table, save: &str, rules: &[Rule]) -> Option<String> {
    let mut out = format!("*{}\n", table.as_str());
    let mut any = false;
    for r in rules.iter().filter(|r| r.table == table) {
        for _ in 0..count_in(save, r) {
            let _ = writeln!(out, "-D {} {}", r.chain, r.spec());
            any = true;
        }
    }
    out.push_str("COMMIT\n");
    any.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// The list in node-cache's own words: `table chain args…` per rule, for one address,
    /// as `initIptables` builds it (testdata/node-cache-rules.txt).
    #[test]
    fn golden_against_node_cache_rule_list() {
        let golden = include_str!("../../testdata/node-cache-rules.txt");
        let ours: Vec<String> = rules(&ips(&["169.254.20.10"]), 53, 8080)
            .iter()
            .map(|r| {
                let args: Vec<String> = r
                    .args()
                    .into_iter()
                    .map(|a| {
                        if a.contains(' ') {
                            format!("\"{a}\"")
                        } else {
                            a
                        }
                    })
                    .collect();
                format!("{} {} {}", r.table.as_str(), r.chain, args.join(" "))
            })
            .collect();
        let want: Vec<&str> = golden
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(ours, want);
    }

    #[test]
    fn save_lines_and_restore_inputs() {
        let all = rules(&ips(&["169.254.20.10", "10.96.0.10"]), 53, 8080);
        assert_eq!(all.len(), 24, "twelve per address");
        assert_eq!(
            all[0].save_line(),
            "-A PREROUTING -d 169.254.20.10/32 -p tcp -m tcp --dport 53 -m comment \
             --comment \"NodeLocal DNS Cache: skip conntrack\" -j NOTRACK"
        );
        assert_eq!(
            all[7].save_line(),
            "-A OUTPUT -s 169.254.20.10/32 -p udp -m udp --sport 53 -m comment \
             --comment \"NodeLocal DNS Cache: allow DNS traffic\" -j ACCEPT"
        );
        let save = format!(
            "*raw\n:PREROUTING ACCEPT [0:0]\n{}\n{}\nCOMMIT\n",
            all[0].save_line(),
            all[0].save_line()
        );
        assert_eq!(count_in(&save, &all[0]), 2);
        assert_eq!(count_in(&save, &all[1]), 0);
        let del = delete_input(Table::Raw, &save, &all).unwrap();
        assert_eq!(del.matches("-D PREROUTING -d 169.254.20.10/32").count(), 2);
        assert!(delete_input(Table::Filter, &save, &all).is_none());
        let missing: Vec<&Rule> = all.iter().collect();
        let ins = insert_input(Table::Filter, &missing);
        assert!(ins.starts_with("*filter\n-I INPUT 1 -d 169.254.20.10/32 -p tcp"));
        assert_eq!(ins.lines().filter(|l| l.starts_with("-I")).count(), 8);
    }
}
