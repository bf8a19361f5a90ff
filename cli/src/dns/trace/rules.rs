//! Reading a node's `iptables-save` output: the kube-proxy chains a query to a ClusterIP walks
//! (KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… DNAT, kubernetes pkg/proxy/iptables/proxier.go) and
//! Docker's embedded-DNS rules as the network magic left them (PREROUTING/OUTPUT → DOCKER_OUTPUT
//! → DNAT to 127.0.0.11; moby libnetwork/resolver_unix.go, kind's images/base/files/usr/local/bin/entrypoint).

use std::net::{IpAddr, SocketAddr};

/// One `-A` line of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    /// The words after `-A <chain>`, quotes removed.
    words: Vec<String>,
    /// The line as `iptables-save` printed it.
    pub text: String,
}

impl Rule {
    /// The value after `flag` (`-d`, `--dport`, `-j`, …), the first one if repeated.
    pub fn opt(&self, flag: &str) -> Option<&str> {
        self.words
            .iter()
            .position(|w| w == flag)
            .and_then(|i| self.words.get(i + 1))
            .map(String::as_str)
    }

    pub fn target(&self) -> Option<&str> {
        self.opt("-j")
    }

    /// `-d` names exactly this address (`ip` or `ip/32`, `/128`).
    fn to_address(&self, ip: IpAddr) -> bool {
        let Some(d) = self.opt("-d") else {
            return false;
        };
        let (addr, prefix) = d.split_once('/').unwrap_or((d, ""));
        let host_prefix = if ip.is_ipv4() { "32" } else { "128" };
        addr.parse::<IpAddr>() == Ok(ip) && (prefix.is_empty() || prefix == host_prefix)
    }

    fn matches(&self, dst: SocketAddr, proto: &str) -> bool {
        self.to_address(dst.ip())
            && self.opt("-p") == Some(proto)
            && self.opt("--dport") == Some(dst.port().to_string().as_str())
    }

    /// The comment (`-m comment --comment "…"`), if any.
    pub fn comment(&self) -> Option<&str> {
        self.opt("--comment")
    }

    /// `--probability` of a `-m statistic` rule.
    pub fn probability(&self) -> Option<&str> {
        self.opt("--probability")
    }

    /// `--to-destination` of a DNAT rule, as an address (a bare IP means port unchanged).
    pub fn dnat_to(&self) -> Option<SocketAddr> {
        if self.target() != Some("DNAT") {
            return None;
        }
        self.opt("--to-destination")?.parse().ok()
    }
}

/// Splits a rule line into words; double-quoted words (comments) keep their spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars();
    let mut started = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                started = true;
            }
            ' ' if !in_quotes => {
                if started {
                    out.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(current);
    }
    out
}

/// Every rule of an `iptables-save` dump (all tables).
#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    rules: Vec<Rule>,
}

/// One endpoint of a service chain: the jump to its KUBE-SEP chain and that chain's DNAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub jump: Rule,
    pub sep_chain: String,
    pub dnat: Option<Rule>,
}

impl Endpoint {
    pub fn to(&self) -> Option<SocketAddr> {
        self.dnat.as_ref().and_then(Rule::dnat_to)
    }
}

/// Docker's DNS rules for queries to `host:53` (what the network magic makes of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerDns {
    /// `-A PREROUTING -d <host> -j DOCKER_OUTPUT`: the magic's copy for traffic from pods.
    pub prerouting: Option<Rule>,
    /// `-A DOCKER_OUTPUT -d <host> -p <proto> --dport 53 -j DNAT --to-destination 127.0.0.11:<port>`.
    pub dnat: Option<Rule>,
}

impl Ruleset {
    pub fn parse(save: &str) -> Ruleset {
        let mut table = String::new();
        let mut rules = Vec::new();
        for line in save.lines() {
            let line = line.trim_end();
            if let Some(t) = line.strip_prefix('*') {
                table = t.to_string();
            } else if line.starts_with("-A ") {
                let mut w = words(line);
                if w.len() < 2 {
                    continue;
                }
                let chain = w[1].clone();
                w.drain(..2);
                rules.push(Rule {
                    table: table.clone(),
                    chain,
                    words: w,
                    text: line.to_string(),
                });
            }
        }
        Ruleset { rules }
    }

    fn chain<'a>(&'a self, table: &'a str, chain: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.rules
            .iter()
            .filter(move |r| r.table == table && r.chain == chain)
    }

    /// The nat `KUBE-SERVICES` rule that sends `dst`/`proto` to a service chain.
    pub fn service_rule(&self, dst: SocketAddr, proto: &str) -> Option<&Rule> {
        self.chain("nat", "KUBE-SERVICES").find(|r| {
            r.matches(dst, proto) && r.target().is_some_and(|t| t.starts_with("KUBE-SVC-"))
        })
    }

    /// NodeLocal DNSCache's raw PREROUTING NOTRACK rule for `dst`/`proto`
    /// (`minikind_cluster_dns::nodecache::rules`): the query is answered by the node's cache
    /// and never reaches kube-proxy's DNAT.
    pub fn node_local_rule(&self, dst: SocketAddr, proto: &str) -> Option<&Rule> {
        use minikind_cluster_dns::nodecache::rules::COMMENT_SKIP_CONNTRACK;
        self.chain("raw", "PREROUTING").find(|r| {
            r.matches(dst, proto)
                && r.target() == Some("NOTRACK")
                && r.comment() == Some(COMMENT_SKIP_CONNTRACK)
        })
    }

    /// kube-proxy's filter-table REJECT for a service with no endpoints.
    pub fn no_endpoints_rule(&self, dst: SocketAddr, proto: &str) -> Option<&Rule> {
        self.chain("filter", "KUBE-SERVICES")
            .find(|r| r.matches(dst, proto) && r.target() == Some("REJECT"))
    }

    /// The endpoints of a `KUBE-SVC-…` chain in rule order, each with its DNAT.
    pub fn endpoints(&self, svc_chain: &str) -> Vec<Endpoint> {
        self.chain("nat", svc_chain)
            .filter_map(|jump| {
                let sep = jump.target().filter(|t| t.starts_with("KUBE-SEP-"))?;
                let dnat = self
                    .chain("nat", sep)
                    .find(|r| r.target() == Some("DNAT"))
                    .cloned();
                Some(Endpoint {
                    jump: jump.clone(),
                    sep_chain: sep.to_string(),
                    dnat,
                })
            })
            .collect()
    }

    /// Docker's DNS rules that catch a query to `host:53` over `proto` arriving from a pod.
    pub fn docker_dns(&self, host: IpAddr, proto: &str) -> DockerDns {
        let dst = SocketAddr::new(host, 53);
        DockerDns {
            prerouting: self
                .chain("nat", "PREROUTING")
                .find(|r| r.to_address(host) && r.target() == Some("DOCKER_OUTPUT"))
                .cloned(),
            dnat: self
                .chain("nat", "DOCKER_OUTPUT")
                .find(|r| r.matches(dst, proto) && r.target() == Some("DNAT"))
                .cloned(),
        }
    }

    /// Every DNAT rule of `DOCKER_OUTPUT` (to say what it catches when it doesn't catch ours).
    pub fn docker_output_dnats(&self) -> Vec<&Rule> {
        self.chain("nat", "DOCKER_OUTPUT")
            .filter(|r| r.target() == Some("DNAT"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's tables as `iptables-save` printed them in a 3-node lab cluster with two
    /// CoreDNS replicas and the network magic applied (host IP 172.26.0.1).
    const WORKER_SAVE: &str = include_str!("testdata/worker-iptables-save.txt");

    #[test]
    fn finds_the_kube_dns_chains() {
        let rules = Ruleset::parse(WORKER_SAVE);
        let dns: SocketAddr = "10.96.0.10:53".parse().unwrap();
        let svc = rules.service_rule(dns, "udp").unwrap();
        assert_eq!(svc.target(), Some("KUBE-SVC-TCOU7JCQXEZGVUNU"));
        assert_eq!(svc.comment(), Some("kube-system/kube-dns:dns cluster IP"));
        assert_eq!(
            rules.service_rule(dns, "tcp").unwrap().target(),
            Some("KUBE-SVC-ERIFXISQEP7F7OF4")
        );
        assert!(
            rules
                .service_rule("10.96.0.11:53".parse().unwrap(), "udp")
                .is_none()
        );
        let eps = rules.endpoints("KUBE-SVC-TCOU7JCQXEZGVUNU");
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].jump.probability(), Some("0.50000000000"));
        assert_eq!(eps[1].jump.probability(), None);
        assert_eq!(eps[0].to(), Some("10.244.1.2:53".parse().unwrap()));
        assert_eq!(eps[1].to(), Some("10.244.2.3:53".parse().unwrap()));
        assert!(eps.iter().all(|e| e.sep_chain.starts_with("KUBE-SEP-")));
    }

    #[test]
    fn finds_the_magic_rules() {
        let rules = Ruleset::parse(WORKER_SAVE);
        let host: IpAddr = "172.26.0.1".parse().unwrap();
        let magic = rules.docker_dns(host, "udp");
        assert_eq!(
            magic.prerouting.unwrap().text,
            "-A PREROUTING -d 172.26.0.1/32 -j DOCKER_OUTPUT"
        );
        let dnat = magic.dnat.unwrap();
        assert_eq!(dnat.dnat_to(), Some("127.0.0.11:51869".parse().unwrap()));
        assert_eq!(
            rules.docker_dns(host, "tcp").dnat.unwrap().dnat_to(),
            Some("127.0.0.11:44909".parse().unwrap())
        );
        assert_eq!(
            rules.docker_dns("172.26.0.9".parse().unwrap(), "udp"),
            DockerDns::default()
        );
    }

    #[test]
    fn words_keep_quoted_comments() {
        assert_eq!(
            words(r#"-A X -m comment --comment "a \"b\" c" -j Y"#),
            [
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "Y"
            ]
        );
        let r = Ruleset::parse(
            "*filter\n-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment \"kube-system/kube-dns:dns has no endpoints\" -m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n",
        );
        assert!(
            r.no_endpoints_rule("10.96.0.10:53".parse().unwrap(), "udp")
                .is_some()
        );
    }
}
