//! Parsing and writing resolv.conf files.
//!
//! The model keeps every line in order (comments, blank lines and keywords it does not know
//! included) so that a file read, edited and written again differs only where it was edited:
//! the network magic rewrites Docker's file in place and must not lose Docker's comments.
//! The accessors apply the glibc reading rules (last `search`/`domain` wins, `options` merge,
//! defaults `ndots:1`, `timeout:5`, `attempts:2`), which is what the node tools and pods need.
//!
//! A crate of its own because three components read and write these files: the kubelet
//! (pods' files), the network magic (the node's file) and the pod tools (their resolver
//! configuration). It owns the file format only; it must not decide what a file should say.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;

/// glibc's caps on the `options` values (resolv/res_init.c: `RES_MAXNDOTS`, `RES_MAXRETRANS`,
/// `RES_MAXRETRY`).
const MAX_NDOTS: u8 = 15;
const MAX_TIMEOUT: u32 = 30;
const MAX_ATTEMPTS: u32 = 5;

/// One line of a resolv.conf file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `nameserver ADDR`; the address is kept as written (it may carry an IPv6 `%scope`).
    Nameserver(String),
    /// `search a b c`.
    Search(Vec<String>),
    /// `domain d` (an older single-entry form of `search`).
    Domain(String),
    /// `options a b:1 …`, each option as written.
    Options(Vec<String>),
    /// Anything else, kept verbatim: comments, blank lines, `sortlist`, unknown keywords.
    Other(String),
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Line::Nameserver(addr) => write!(f, "nameserver {addr}"),
            Line::Search(domains) => write!(f, "search {}", domains.join(" ")),
            Line::Domain(domain) => write!(f, "domain {domain}"),
            Line::Options(options) => write!(f, "options {}", options.join(" ")),
            Line::Other(text) => f.write_str(text),
        }
    }
}

/// A resolv.conf file as a list of lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub lines: Vec<Line>,
}

impl ResolvConf {
    /// Parses resolv.conf text. Never fails: like glibc, lines it cannot use are kept as
    /// [`Line::Other`] and ignored by the accessors.
    pub fn parse(text: &str) -> Self {
        let lines = text.lines().map(parse_line).collect();
        Self { lines }
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading resolver configuration {}", path.display()))?;
        Ok(Self::parse(&text))
    }

    /// A file made of the three parts the container runtime writes for a pod, in its order:
    /// `search`, then `nameserver` lines, then `options` (empty parts are left out).
    pub fn from_parts(nameservers: &[String], search: &[String], options: &[String]) -> Self {
        let mut lines = Vec::new();
        if !search.is_empty() {
            lines.push(Line::Search(search.to_vec()));
        }
        lines.extend(nameservers.iter().cloned().map(Line::Nameserver));
        if !options.is_empty() {
            lines.push(Line::Options(options.to_vec()));
        }
        Self { lines }
    }

    /// The nameserver lines as written, in order.
    pub fn nameserver_texts(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Nameserver(a) => Some(a.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The nameserver addresses that parse (an IPv6 `%scope` suffix is dropped), in order.
    pub fn nameservers(&self) -> Vec<IpAddr> {
        self.nameserver_texts()
            .into_iter()
            .filter_map(|a| a.split('%').next()?.parse().ok())
            .collect()
    }

    /// The search list: the last `search` or `domain` line wins, as in glibc.
    pub fn search(&self) -> Vec<String> {
        self.lines
            .iter()
            .rev()
            .find_map(|l| match l {
                Line::Search(d) => Some(d.clone()),
                Line::Domain(d) => Some(vec![d.clone()]),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Every option from every `options` line, in order.
    pub fn options(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| match l {
                Line::Options(o) => Some(o.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// The value of the last `name:value` option that parses as a number.
    pub fn numeric_option(&self, name: &str) -> Option<u32> {
        self.options()
            .into_iter()
            .rev()
            .filter_map(|o| o.strip_prefix(name)?.strip_prefix(':'))
            .find_map(|v| v.parse().ok())
    }

    /// `options ndots:N` (default 1, at most 15).
    pub fn ndots(&self) -> u8 {
        self.numeric_option("ndots")
            .map_or(1, |n| n.min(u32::from(MAX_NDOTS)) as u8)
    }

    /// `options timeout:N` in seconds (default 5, at most 30, at least 1).
    pub fn timeout_secs(&self) -> u32 {
        self.numeric_option("timeout")
            .map_or(5, |n| n.clamp(1, MAX_TIMEOUT))
    }

    /// `options attempts:N` (default 2, at most 5, at least 1).
    pub fn attempts(&self) -> u32 {
        self.numeric_option("attempts")
            .map_or(2, |n| n.clamp(1, MAX_ATTEMPTS))
    }

    /// Whether a flag option (`use-vc`, `rotate`, `edns0`, …) is set.
    pub fn has_option(&self, name: &str) -> bool {
        self.options().contains(&name)
    }

    /// The file text, one line per entry, ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(&line.to_string());
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for ResolvConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

fn parse_line(raw: &str) -> Line {
    let trimmed = raw.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return Line::Other(raw.to_string());
    }
    let mut words = trimmed.split_whitespace();
    let keyword = words.next().unwrap_or("");
    // glibc stops a value at a comment character too.
    let values: Vec<String> = words
        .take_while(|w| !w.starts_with('#') && !w.starts_with(';'))
        .map(str::to_string)
        .collect();
    match (keyword, values.as_slice()) {
        ("nameserver", [addr, ..]) => Line::Nameserver(addr.clone()),
        ("search", [_, ..]) => Line::Search(values),
        ("domain", [domain, ..]) => Line::Domain(domain.clone()),
        ("options", [_, ..]) => Line::Options(values),
        _ => Line::Other(raw.to_string()),
    }
}

/// Writes `text` into an existing file in place (open, truncate, write) instead of replacing
/// it: Docker bind-mounts the container's resolv.conf, and a rename over a mount point fails
/// with EBUSY (this is why KIND cannot use `sed -i`). Creates the file when it is missing.
pub fn write_in_place(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("opening {} for writing", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = "# Generated by Docker Engine.\n\
        # This file can be edited; Docker Engine will not make further changes once it\n\
        # has been modified.\n\
        \n\
        nameserver 127.0.0.11\n\
        search corp.example lab.example\n\
        options edns0 trust-ad ndots:0\n\
        \n\
        # Based on host file: '/etc/resolv.conf' (internal resolver)\n\
        # ExtServers: [host(192.0.2.53)]\n\
        # Overrides: []\n\
        # Option ndots from: internal\n";

    #[test]
    fn round_trip_keeps_every_line() {
        let conf = ResolvConf::parse(DOCKER);
        assert_eq!(conf.render(), DOCKER);
    }

    #[test]
    fn accessors_read_docker_file() {
        let conf = ResolvConf::parse(DOCKER);
        assert_eq!(
            conf.nameservers(),
            vec!["127.0.0.11".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.search(), vec!["corp.example", "lab.example"]);
        assert_eq!(conf.ndots(), 0);
        assert!(conf.has_option("edns0"));
        assert_eq!(conf.timeout_secs(), 5);
        assert_eq!(conf.attempts(), 2);
    }

    #[test]
    fn last_search_or_domain_wins_and_limits_apply() {
        let conf = ResolvConf::parse(
            "search a.example\ndomain b.example\noptions ndots:40 timeout:0\noptions attempts:9\n",
        );
        assert_eq!(conf.search(), vec!["b.example"]);
        assert_eq!(conf.ndots(), 15);
        assert_eq!(conf.timeout_secs(), 1);
        assert_eq!(conf.attempts(), 5);
    }

    #[test]
    fn bad_lines_are_kept_but_ignored() {
        let conf = ResolvConf::parse("nameserver\nnameserver not-an-ip\nnameserver fe80::1%eth0\n");
        assert_eq!(conf.nameserver_texts(), vec!["not-an-ip", "fe80::1%eth0"]);
        assert_eq!(
            conf.nameservers(),
            vec!["fe80::1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(conf.lines[0], Line::Other("nameserver".into()));
    }

    #[test]
    fn pod_layout_from_parts() {
        let conf = ResolvConf::from_parts(
            &["10.96.0.10".into()],
            &[
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            &["ndots:5".into()],
        );
        assert_eq!(
            conf.render(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn write_in_place_keeps_the_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.11\noptions ndots:0\n").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        write_in_place(&path, "nameserver 172.18.0.1\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 172.18.0.1\n"
        );
    }
}
