//! `getent hosts|ahostsv4|ahostsv6 KEY…`: glibc's getent output, with glibc's order of
//! sources (`hosts: files dns`): `/etc/hosts` first, then DNS with the search list and `ndots`.
//!
//! - `hosts NAME` asks IPv6 first and IPv4 when there is none (glibc's `gethostbyname2`
//!   order in getent), printing `%-15s name aliases…` per address; an address as KEY is
//!   looked up by PTR.
//! - `ahostsv4`/`ahostsv6 NAME` print what `getaddrinfo` returns: each address three times
//!   (STREAM, DGRAM, RAW), the canonical name on the first line only.
//!
//! Exit codes as glibc's: 0 found, 1 bad arguments or unknown database, 2 a key not found.

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;

use hickory_proto::rr::{RData, RecordType};

use super::client::{self, Outcome, ResolverConfig};
use super::hosts::{self, HostEntry};
use super::{ToolEnv, string_args};
use minikind_resolv_conf::ResolvConf;

/// What one source found for a name: canonical name, aliases, addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostResult {
    pub name: String,
    pub aliases: Vec<String>,
    pub addrs: Vec<IpAddr>,
}

/// The resolver a getent run uses: the hosts file and the DNS configuration.
struct Sources {
    entries: Vec<HostEntry>,
    dns: Option<ResolverConfig>,
}

impl Sources {
    fn load(env: &ToolEnv) -> Self {
        // Missing files are not errors for glibc either: the source just finds nothing.
        let entries = std::fs::read_to_string(&env.hosts)
            .map(|t| hosts::parse(&t))
            .unwrap_or_default();
        let dns = ResolvConf::read(&env.resolv_conf)
            .ok()
            .map(|conf| ResolverConfig::from_resolv_conf(&conf, env.dns_port))
            .filter(|c| !c.servers.is_empty());
        Self { entries, dns }
    }

    /// `files` then `dns` for one address family.
    fn by_name(&self, name: &str, v6: bool, all_file_entries: bool) -> Option<HostResult> {
        let matches = hosts::by_name(&self.entries, name, Some(v6));
        if let Some(first) = matches.first() {
            let addrs = if all_file_entries {
                matches.iter().map(|e| e.addr).collect()
            } else {
                vec![first.addr]
            };
            return Some(HostResult {
                name: first.name.clone(),
                aliases: first.aliases.clone(),
                addrs,
            });
        }
        let dns = self.dns.as_ref()?;
        let rtype = if v6 { RecordType::AAAA } else { RecordType::A };
        let lookup = client::lookup(dns, name, rtype).ok()?;
        let Outcome::Answer(reply) = lookup.outcome else {
            return None;
        };
        let mut addrs = Vec::new();
        let mut canonical = None;
        let mut aliases = Vec::new();
        for record in &reply.response.answers {
            let owner = record.name.to_string().trim_end_matches('.').to_string();
            match &record.data {
                RData::A(a) if !v6 => {
                    addrs.push(IpAddr::V4(a.0));
                    canonical.get_or_insert(owner);
                }
                RData::AAAA(a) if v6 => {
                    addrs.push(IpAddr::V6(a.0));
                    canonical.get_or_insert(owner);
                }
                // The names a CNAME chain passed through are the aliases.
                RData::CNAME(_) if !aliases.contains(&owner) => aliases.push(owner),
                _ => {}
            }
        }
        Some(HostResult {
            name: canonical?,
            aliases,
            addrs,
        })
    }

    /// `files` then `dns` (PTR) for an address.
    fn by_addr(&self, addr: IpAddr) -> Option<HostResult> {
        if let Some(entry) = hosts::by_addr(&self.entries, addr) {
            return Some(HostResult {
                name: entry.name.clone(),
                aliases: entry.aliases.clone(),
                addrs: vec![addr],
            });
        }
        let mut dns = self.dns.clone()?;
        dns.search.clear();
        let lookup = client::lookup(&dns, &client::reverse_name(addr), RecordType::PTR).ok()?;
        let Outcome::Answer(reply) = lookup.outcome else {
            return None;
        };
        let mut names = reply.response.answers.iter().filter_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_string().trim_end_matches('.').to_string()),
            _ => None,
        });
        let name = names.next()?;
        Some(HostResult {
            name,
            aliases: names.collect(),
            addrs: vec![addr],
        })
    }
}

/// Runs getent with `args` (no program name), printing to `out` and `err`.
pub fn run(args: &[String], env: &ToolEnv, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let Some((database, keys)) = args.split_first() else {
        let _ = writeln!(
            err,
            "Usage: getent DATABASE KEY...   (databases: hosts, ahostsv4, ahostsv6)"
        );
        return 1;
    };
    let family = match database.as_str() {
        "hosts" => None,
        "ahostsv4" => Some(false),
        "ahostsv6" => Some(true),
        other => {
            let _ = writeln!(err, "Unknown database: {other}");
            return 1;
        }
    };
    if keys.is_empty() {
        // glibc would enumerate the database; only the hosts file can be listed.
        if family.is_none() {
            let sources = Sources::load(env);
            for entry in &sources.entries {
                print_hosts_line(out, &entry.addr, &entry.name, &entry.aliases);
            }
            return 0;
        }
        let _ = writeln!(err, "Enumeration not supported on {database}");
        return 1;
    }
    let sources = Sources::load(env);
    for key in keys {
        let found = match family {
            None => hosts_key(&sources, key, out),
            Some(v6) => ahosts_key(&sources, key, v6, out),
        };
        if !found {
            return 2;
        }
    }
    0
}

fn print_hosts_line(out: &mut dyn Write, addr: &IpAddr, name: &str, aliases: &[String]) {
    let mut line = format!("{:<15} {name}", addr.to_string());
    for alias in aliases {
        line.push(' ');
        line.push_str(alias);
    }
    let _ = writeln!(out, "{line}");
}

fn hosts_key(sources: &Sources, key: &str, out: &mut dyn Write) -> bool {
    let result = match key.parse::<IpAddr>() {
        Ok(addr) => sources.by_addr(addr),
        Err(_) => sources
            .by_name(key, true, false)
            .or_else(|| sources.by_name(key, false, false)),
    };
    let Some(result) = result else {
        return false;
    };
    for addr in &result.addrs {
        print_hosts_line(out, addr, &result.name, &result.aliases);
    }
    true
}

fn ahosts_key(sources: &Sources, key: &str, v6: bool, out: &mut dyn Write) -> bool {
    let result = match key.parse::<IpAddr>() {
        // getaddrinfo returns a numeric host as is, with itself as the canonical name.
        Ok(addr) if addr.is_ipv6() == v6 => Some(HostResult {
            name: key.to_string(),
            aliases: vec![],
            addrs: vec![addr],
        }),
        Ok(_) => None,
        Err(_) => sources.by_name(key, v6, true),
    };
    let Some(result) = result else {
        return false;
    };
    let mut canonical = Some(result.name.as_str());
    for addr in &result.addrs {
        for socktype in ["STREAM", "DGRAM", "RAW"] {
            let _ = writeln!(
                out,
                "{:<15} {socktype:<6} {}",
                addr.to_string(),
                canonical.take().unwrap_or("")
            );
        }
    }
    true
}

/// Entry point for `minikind getent …` (args[0] is the program name).
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match string_args(args) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("getent: {message}");
            return 1;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    run(&args, &ToolEnv::system(), &mut stdout, &mut stderr)
}

/// The addresses `getent ahostsv4 NAME` prints, in order (empty when not found): for callers
/// inside minikind that must resolve like glibc without using it.
pub fn ahosts_v4(env: &ToolEnv, name: &str) -> Vec<IpAddr> {
    match name.parse::<IpAddr>() {
        Ok(addr) if addr.is_ipv4() => vec![addr],
        Ok(_) => vec![],
        Err(_) => Sources::load(env)
            .by_name(name, false, true)
            .map(|r| r.addrs)
            .unwrap_or_default(),
    }
}
