//! node-cache's command line (kubernetes/dns cmd/node-cache/main.go, `parseAndValidateFlags`),
//! which shares one flag set with CoreDNS's (`-conf`, `-dns.port`, `-pidfile`, `-quiet`).
//! Go's flag syntax: one or two dashes, `-flag value` or `-flag=value`, booleans as `-flag`
//! or `-flag=false`. node-cache flags minikind does not implement are refused by name.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCacheFlags {
    /// `-localip`: the addresses to bind, hold and protect (one family).
    pub local_ips: Vec<IpAddr>,
    pub setup_interface: bool,
    pub interface_name: String,
    /// `-syncinterval`: how often the rules and the interface are re-checked.
    pub sync_interval: Duration,
    pub setup_iptables: bool,
    pub base_corefile: PathBuf,
    /// `-conf` (CoreDNS's flag): the filled Corefile the server reads.
    pub conf: PathBuf,
    pub upstream_svc: String,
    pub health_port: u16,
    pub skip_teardown: bool,
    pub dns_port: u16,
    pub pidfile: Option<PathBuf>,
    pub quiet: bool,
}

impl Default for NodeCacheFlags {
    /// node-cache's defaults.
    fn default() -> Self {
        NodeCacheFlags {
            local_ips: Vec::new(),
            setup_interface: true,
            interface_name: "nodelocaldns".into(),
            sync_interval: Duration::from_secs(60),
            setup_iptables: true,
            base_corefile: PathBuf::from("/etc/coredns/Corefile.base"),
            conf: PathBuf::from("/etc/Corefile"),
            upstream_svc: "kube-dns".into(),
            health_port: 8080,
            skip_teardown: false,
            dns_port: 53,
            pidfile: None,
            quiet: false,
        }
    }
}

pub const USAGE: &str = "Usage of cluster-dns node-cache:
  -localip string          comma-separated string of ip addresses to bind dnscache to
  -setupinterface          indicates whether network interface should be setup (default true)
  -interfacename string    name of the interface to be created (default \"nodelocaldns\")
  -syncinterval value      interval (seconds, or a duration such as 30s) to check for iptables rules (default 60)
  -setupiptables           indicates whether iptables rules should be setup (default true)
  -basecorefile string     Path to the template Corefile for node-cache (default \"/etc/coredns/Corefile.base\")
  -conf string             Path to the Corefile to be used by node-cache (default \"/etc/Corefile\")
  -upstreamsvc string      Service name whose cluster IP is upstream for node-cache (default \"kube-dns\")
  -health-port string      port used by health plugin (default \"8080\")
  -skipteardown            indicates whether iptables rules should be torn down on exit
  -dns.port string         Default port (default \"53\")
  -pidfile string          Path to write pid file
  -quiet                   Quiet mode (no initialization output)";

fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") | Some("True") => {
            Ok(true)
        }
        Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") | Some("False") => {
            Ok(false)
        }
        Some(other) => Err(format!("invalid boolean value \"{other}\" for -{name}")),
    }
}

/// A number of seconds (node-cache multiplies its value by a second) or a duration.
fn parse_interval(v: &str) -> Result<Duration, String> {
    let d = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => crate::util::parse_duration(v)
            .map_err(|e| format!("invalid value \"{v}\" for flag -syncinterval: {e}"))?,
    };
    if d.is_zero() {
        return Err("-syncinterval must be positive".into());
    }
    Ok(d)
}

pub fn parse(args: &[String]) -> Result<NodeCacheFlags, String> {
    let mut f = NodeCacheFlags::default();
    let mut local = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            return Err(format!("unexpected argument '{a}'"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = inline {
                return Ok(v.to_string());
            }
            i += 1;
            args.get(i)
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: -{name}"))
        };
        let port = |v: String, flag: &str| {
            v.parse::<u16>()
                .map_err(|_| format!("invalid port specified for -{flag} - \"{v}\""))
        };
        match name {
            "localip" => local = Some(value()?),
            "setupinterface" => f.setup_interface = parse_bool(name, inline)?,
            "interfacename" => f.interface_name = value()?,
            "syncinterval" => f.sync_interval = parse_interval(&value()?)?,
            "setupiptables" => f.setup_iptables = parse_bool(name, inline)?,
            "basecorefile" => f.base_corefile = PathBuf::from(value()?),
            "conf" => f.conf = PathBuf::from(value()?),
            "upstreamsvc" => f.upstream_svc = value()?,
            "health-port" => f.health_port = port(value()?, name)?,
            "skipteardown" => f.skip_teardown = parse_bool(name, inline)?,
            "dns.port" => f.dns_port = port(value()?, name)?,
            "pidfile" => f.pidfile = Some(PathBuf::from(value()?)),
            "quiet" => f.quiet = parse_bool(name, inline)?,
            "metrics-listen-address" | "kubednscm" | "reloadwithsignal" => {
                return Err(format!(
                    "node-cache flag -{name} is not supported by cluster-dns's node-cache mode"
                ));
            }
            "h" | "help" => return Err(String::new()),
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
        i += 1;
    }
    let local = local.ok_or("-localip is required (comma-separated addresses)")?;
    for s in local.split(',') {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| format!("invalid localip specified - \"{s}\""))?;
        if ip.is_ipv6() {
            return Err(format!(
                "localip {ip}: IPv6 addresses are not supported by cluster-dns's node-cache mode"
            ));
        }
        f.local_ips.push(ip);
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_add_on_manifests_arguments() {
        let f = parse(&s(&[
            "-localip",
            "169.254.20.10,10.96.0.10",
            "-conf",
            "/etc/Corefile",
            "-upstreamsvc",
            "kube-dns-upstream",
            "-pidfile",
            "/tmp/node-cache.pid",
        ]))
        .unwrap();
        assert_eq!(f.local_ips.len(), 2);
        assert_eq!(f.upstream_svc, "kube-dns-upstream");
        assert_eq!(f.sync_interval, Duration::from_secs(60));
        assert!(f.setup_interface && f.setup_iptables && !f.skip_teardown);
        assert_eq!(f.interface_name, "nodelocaldns");

        let f = parse(&s(&[
            "-localip=127.0.0.9",
            "-setupinterface=false",
            "-syncinterval",
            "2s",
            "-skipteardown",
        ]))
        .unwrap();
        assert!(!f.setup_interface && f.skip_teardown);
        assert_eq!(f.sync_interval, Duration::from_secs(2));
    }

    #[test]
    fn bad_input_is_named() {
        assert!(parse(&s(&[])).unwrap_err().contains("-localip is required"));
        assert!(
            parse(&s(&["-localip", "nope"]))
                .unwrap_err()
                .contains("\"nope\"")
        );
        assert!(
            parse(&s(&["-localip", "fd00::1"]))
                .unwrap_err()
                .contains("IPv6")
        );
        assert!(
            parse(&s(&["-localip", "1.2.3.4", "-health-port", "x"]))
                .unwrap_err()
                .contains("-health-port")
        );
        assert!(
            parse(&s(&["-localip", "1.2.3.4", "-kubednscm", "/x"]))
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            parse(&s(&["-localip", "1.2.3.4", "-setupiptables=maybe"]))
                .unwrap_err()
                .contains("maybe")
        );
        assert!(
            parse(&s(&["-localip", "1.2.3.4", "-syncinterval", "0"]))
                .unwrap_err()
                .contains("positive")
        );
    }
}
