//! KIND's "network magic": the iptables-save transform and the resolv.conf rewrite.
//!
//! Docker's embedded resolver listens on 127.0.0.11 inside the node's network namespace and is
//! reached through nat rules (`OUTPUT → DOCKER_OUTPUT → DNAT 127.0.0.11:<random port>`). A pod
//! has its own namespace, where 127.0.0.11 is its own loopback, so the node's resolv.conf is a
//! black hole for it. The magic (kind's node entrypoint,
//! images/base/files/usr/local/bin/entrypoint, `enable_network_magic`) swaps 127.0.0.11 for an
//! address pods can reach (the host IP), copies the OUTPUT jump to PREROUTING so traffic arriving from pods is
//! redirected too, and rewrites the node's resolv.conf to match. The DNAT target stays
//! 127.0.0.11, which works because `route_localnet=1`.
//!
//! [`transform`] is the pure rule rewrite and [`inverse_transform`] its inverse; [`boot`] is
//! what the agent runs at boot (the sysctls, then [`apply`], the magic itself); [`switch()`] turns the magic on or off on a running node (the
//! `minikind network-magic` program, [`cli_main`]); [`status`] inspects a node and says whether
//! the magic is in place.
//!
//! This crate owns Docker's DNS rules as the magic sees them (rewritten or restored) and the
//! node's own `/etc/resolv.conf`. It runs iptables only through `minikind-iptables`, and must
//! not touch the chains kube-proxy or the kubelet own, nor any pod's files.

mod cli;
mod inverse;
mod switch;

pub use cli::cli_main;
pub use inverse::{docker_rules_restore, inverse_transform};
pub use switch::{LIVE_STATE_PATH, SwitchReport, live_state, record_live_state, switch};

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use minikind_iptables::{Commands, Flavour, dump};
use minikind_pod_tools::{ToolEnv, getent};
use minikind_resolv_conf::{self as resolv_conf, Line, ResolvConf};

/// The address of Docker's embedded resolver inside every container on a user-defined network.
pub const DOCKER_EMBEDDED_DNS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// The chain Docker jumps to from nat OUTPUT for embedded-DNS traffic.
const DOCKER_OUTPUT_CHAIN: &str = "DOCKER_OUTPUT";

/// The name KIND resolves first to find the host (Docker Desktop defines it; on Linux it
/// usually does not exist and the default gateway is used).
pub const HOST_NAME: &str = "host.docker.internal";

/// How long the host-name lookup may take (KIND runs `timeout 5 getent ahostsv4 …`).
const HOST_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Rewrites an `iptables-save` dump the way KIND's entrypoint does:
///
/// - (a) `-d 127.0.0.11` → `-d <host_ip>` (the prefix length, e.g. `/32`, is kept);
/// - (b) every `-A OUTPUT … -j DOCKER_OUTPUT` rule is followed by the same rule in PREROUTING,
///   unless that PREROUTING rule is already in the table (so a second run adds nothing);
/// - (c) `--to-source :53` → `--to-source <host_ip>:53`;
/// - (d) DNAT rules to 127.0.0.11 that name a protocol but lost their `--dport` (iptables-nft
///   1.8.8 reading rules written by 1.8.7, kind#3054) get `--dport 53` back.
///
/// Everything else (comments, tables, chain declarations, other rules, line endings) passes
/// through unchanged. The result is a fixed point: `transform(transform(x)) == transform(x)`.
pub fn transform(save: &str, host_ip: Ipv4Addr) -> String {
    // First pass: rewrite each rule line on its own (a, c, d).
    let rewritten: Vec<String> = save
        .split_inclusive('\n')
        .map(|line| {
            let (body, ending) = split_line_ending(line);
            if body.starts_with("-A ") {
                format!("{}{ending}", rewrite_rule(body, host_ip))
            } else {
                line.to_string()
            }
        })
        .collect();

    // PREROUTING rules already present per table, so (b) never duplicates one.
    let mut existing: HashSet<(usize, String)> = HashSet::new();
    let mut table = 0usize;
    for line in &rewritten {
        let (body, _) = split_line_ending(line);
        if body.starts_with('*') {
            table += 1;
        } else if body.starts_with("-A PREROUTING ") {
            existing.insert((table, body.to_string()));
        }
    }

    // Second pass: add the PREROUTING copies right after their OUTPUT rule (b).
    let mut out = String::with_capacity(save.len() + 128);
    let mut table = 0usize;
    for line in &rewritten {
        let (body, ending) = split_line_ending(line);
        if body.starts_with('*') {
            table += 1;
        }
        out.push_str(line);
        if let Some(rest) = body.strip_prefix("-A OUTPUT ")
            && jumps_to(body, DOCKER_OUTPUT_CHAIN)
        {
            let copy = format!("-A PREROUTING {rest}");
            if existing.insert((table, copy.clone())) {
                // A line without its own newline was the last of the dump: end it first.
                if ending.is_empty() {
                    out.push('\n');
                }
                out.push_str(&copy);
                out.push_str(if ending.is_empty() { "" } else { ending });
            }
        }
    }
    out
}

/// Splits a line into its text and its line ending (`"\n"`, `"\r\n"` or `""`).
fn split_line_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// Whether a rule's target is `-j <chain>`.
fn jumps_to(rule: &str, chain: &str) -> bool {
    let words: Vec<&str> = rule.split(' ').collect();
    words.windows(2).any(|w| w == ["-j", chain])
}

/// Is `word` the embedded resolver's address, with or without a prefix length?
fn is_embedded_addr(word: &str) -> bool {
    let addr = word.split('/').next().unwrap_or(word);
    addr.parse::<Ipv4Addr>() == Ok(DOCKER_EMBEDDED_DNS)
}

/// Rewrites one `-A …` rule (steps a, c and d of [`transform`]).
fn rewrite_rule(rule: &str, host_ip: Ipv4Addr) -> String {
    // iptables-save separates words with single spaces and quotes comments containing
    // spaces; the quoted words are never one of the words looked at here, so a plain split
    // and join round-trips the line exactly.
    let mut words: Vec<String> = rule.split(' ').map(str::to_string).collect();
    for i in 1..words.len() {
        let previous = words[i - 1].as_str();
        if previous == "-d" && is_embedded_addr(&words[i]) {
            // (a) keep the prefix length as written
            let suffix = words[i]
                .find('/')
                .map_or("", |p| &words[i][p..])
                .to_string();
            words[i] = format!("{host_ip}{suffix}");
        } else if previous == "--to-source" && words[i] == ":53" {
            // (c)
            words[i] = format!("{host_ip}:53");
        }
    }
    // (d) a DNAT to the embedded resolver with a protocol but no destination port
    let dnat_to_embedded = words.windows(2).any(|w| {
        w[0] == "--to-destination" && is_embedded_addr(w[1].split(':').next().unwrap_or(""))
    });
    let has_proto = words.iter().any(|w| w == "-p");
    let has_dport = words.iter().any(|w| w == "--dport");
    if dnat_to_embedded
        && has_proto
        && !has_dport
        && let Some(jump) = words.windows(2).position(|w| w == ["-j", "DNAT"])
    {
        words.splice(jump..jump, ["--dport".to_string(), "53".to_string()]);
    }
    words.join(" ")
}

/// The resolv.conf rewrite of the magic (pure): nameserver lines naming `from` name `to`
/// instead, then the `dnsSearch` semantics of KIND's `KIND_DNS_SEARCH`:
/// `None` keeps the search lines; `Some([])` drops them; `Some(list)` writes `search <list>`
/// first and drops the old ones. `domain` lines count as search lines here, because glibc
/// lets the last of `search`/`domain` win and a stale `domain` would undo the new list.
pub fn rewrite_resolv_conf(
    text: &str,
    from: IpAddr,
    to: Ipv4Addr,
    dns_search: Option<&[String]>,
) -> String {
    let mut conf = ResolvConf::parse(text);
    for line in &mut conf.lines {
        if let Line::Nameserver(addr) = line
            && addr.parse::<IpAddr>() == Ok(from)
        {
            *addr = to.to_string();
        }
    }
    if let Some(search) = dns_search {
        conf.lines
            .retain(|l| !matches!(l, Line::Search(_) | Line::Domain(_)));
        if !search.is_empty() {
            conf.lines.insert(0, Line::Search(search.to_vec()));
        }
    }
    conf.render()
}

/// What [`apply`] and [`status`] work on. [`Default`] gives the real node's paths.
#[derive(Debug, Clone)]
pub struct MagicOptions {
    /// `networkMagic`; `false`: [`apply`] touches nothing at all ([`boot`] still sets the
    /// sysctls).
    pub enabled: bool,
    /// `networking.dnsSearch`: `None` = keep, `Some([])` = drop, `Some(list)` = replace.
    pub dns_search: Option<Vec<String>>,
    /// The node's resolv.conf (its copy goes next to it with `.original` appended).
    pub resolv_conf_path: PathBuf,
    /// A host IP to use as is, skipping detection.
    pub host_ip: Option<Ipv4Addr>,
    /// The name to look up first, as `getent ahostsv4` does (the hosts file, then DNS through
    /// the node's resolv.conf); `None` goes straight to the default gateway.
    pub host_name: Option<String>,
    /// The hosts file for that lookup (Docker writes `host.docker.internal` there when the
    /// container is created with `--add-host host.docker.internal:host-gateway`).
    pub hosts_path: PathBuf,
    /// The kernel's IPv4 routing table (for the default gateway).
    pub route_table: PathBuf,
    /// Where the sysctls live.
    pub proc_sys: PathBuf,
    /// The `iptables-save` and `iptables-restore` to run (the flavour chosen at boot).
    pub iptables: Commands,
}

impl Default for MagicOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            dns_search: None,
            resolv_conf_path: PathBuf::from("/etc/resolv.conf"),
            host_ip: None,
            host_name: Some(HOST_NAME.to_string()),
            hosts_path: PathBuf::from("/etc/hosts"),
            route_table: PathBuf::from("/proc/net/route"),
            proc_sys: PathBuf::from("/proc/sys"),
            iptables: Commands::default(),
        }
    }
}

impl MagicOptions {
    /// `<resolv.conf>.original`.
    pub fn original_path(&self) -> PathBuf {
        let mut name = self.resolv_conf_path.clone().into_os_string();
        name.push(".original");
        PathBuf::from(name)
    }
}

/// Where the host IP came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostIpSource {
    /// Given in the options.
    Fixed,
    /// The system resolver answered for this name.
    Name(String),
    /// The default route's gateway.
    DefaultGateway,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicReport {
    /// `false` when the magic was disabled and nothing was touched.
    pub enabled: bool,
    pub host_ip: Option<Ipv4Addr>,
    pub host_ip_source: Option<HostIpSource>,
    /// The flavour `iptables-save` reported in its header line.
    pub flavour: Option<Flavour>,
    /// Whether the transformed rules were restored (false when they were already in place).
    pub rules_changed: bool,
    /// Rule lines (`-A …`) before and after.
    pub rules_before: usize,
    pub rules_after: usize,
    /// Whether resolv.conf was rewritten.
    pub resolv_conf_changed: bool,
    /// Whether `<resolv.conf>.original` was written by this run.
    pub original_saved: bool,
}

impl fmt::Display for MagicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            return f.write_str(
                "network magic disabled: rules and resolv.conf left as Docker made them",
            );
        }
        let ip = self.host_ip.map_or("?".to_string(), |ip| ip.to_string());
        let source = match &self.host_ip_source {
            Some(HostIpSource::Fixed) => "given".to_string(),
            Some(HostIpSource::Name(n)) => format!("from {n}"),
            Some(HostIpSource::DefaultGateway) => "default gateway".to_string(),
            None => "unknown".to_string(),
        };
        let flavour = self.flavour.map_or("unknown", Flavour::as_str);
        write!(
            f,
            "network magic: host IP {ip} ({source}); iptables ({flavour}) {}, {} → {} rules; resolv.conf {}{}",
            if self.rules_changed {
                "rewritten"
            } else {
                "already in place"
            },
            self.rules_before,
            self.rules_after,
            if self.resolv_conf_changed {
                "rewritten"
            } else {
                "unchanged"
            },
            if self.original_saved {
                ", original saved"
            } else {
                ""
            },
        )
    }
}

/// The sysctls every node sets at boot, whether the magic is on or not (DESIGN.md, "Inside a
/// node" 1), as `(path under /proc/sys, value)`:
///
/// - `ip_forward`: pods are namespaces behind the node, which must route their traffic at all;
/// - `route_localnet`: lets a packet that arrived from another namespace be DNATed to a
///   127.0.0.0/8 address. The magic's DNAT to 127.0.0.11 needs it, and kube-proxy sets it on
///   every KIND node anyway, so a node with the magic off differs from one with it on only in
///   the rules and resolv.conf — which is the failure the switch exists to show — and
///   `dns magic on` later finds it already set.
pub const BOOT_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/conf/all/route_localnet", "1"),
];

/// What the agent runs at every boot: the [`BOOT_SYSCTLS`] under `opts.proc_sys`, then
/// [`apply`] (which does nothing when the magic is disabled).
pub fn boot(opts: &MagicOptions) -> anyhow::Result<MagicReport> {
    for (key, value) in BOOT_SYSCTLS {
        write_sysctl(&opts.proc_sys, key, value)?;
    }
    apply(opts)
}

/// Applies the magic on this node: host IP, rules, resolv.conf. Safe to run at every boot: a
/// second run finds everything in place and changes nothing. It relies on `route_localnet`,
/// which [`boot`] sets first; disabled, it touches nothing at all.
pub fn apply(opts: &MagicOptions) -> anyhow::Result<MagicReport> {
    let mut report = MagicReport {
        enabled: opts.enabled,
        host_ip: None,
        host_ip_source: None,
        flavour: None,
        rules_changed: false,
        rules_before: 0,
        rules_after: 0,
        resolv_conf_changed: false,
        original_saved: false,
    };
    if !opts.enabled {
        return Ok(report);
    }

    let (host_ip, source) = detect_host_ip(opts)?;
    report.host_ip = Some(host_ip);
    report.host_ip_source = Some(source);

    let save = minikind_iptables::save(&opts.iptables.save, &[])?;
    report.flavour = Flavour::from_save_header(&save);
    let transformed = transform(&save, host_ip);
    report.rules_before = dump::count_appended(&save);
    report.rules_after = dump::count_appended(&transformed);
    if transformed != save {
        restore_transformed(&opts.iptables.restore, &[], &transformed)?;
        report.rules_changed = true;
    }

    let (changed, saved) = patch_resolv_conf(opts, host_ip)?;
    report.resolv_conf_changed = changed;
    report.original_saved = saved;
    Ok(report)
}

/// Keeps `<resolv.conf>.original` (first run only) and rewrites resolv.conf in place.
/// The source is the current file while it still names 127.0.0.11 (Docker wrote it, perhaps
/// again after a restart); once rewritten, it is the kept original, so a host IP that changed
/// between boots is picked up and an unchanged one gives the same text (nothing written).
fn patch_resolv_conf(opts: &MagicOptions, host_ip: Ipv4Addr) -> anyhow::Result<(bool, bool)> {
    let path = &opts.resolv_conf_path;
    let original_path = opts.original_path();
    let current = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the node's resolver configuration {}",
            path.display()
        )
    })?;
    let embedded = IpAddr::V4(DOCKER_EMBEDDED_DNS);
    let names_embedded = ResolvConf::parse(&current)
        .nameservers()
        .contains(&embedded);

    let mut original_saved = false;
    if !original_path.exists() {
        std::fs::write(&original_path, &current)
            .with_context(|| format!("keeping a copy in {}", original_path.display()))?;
        original_saved = true;
    }
    let source = if names_embedded {
        current.clone()
    } else {
        std::fs::read_to_string(&original_path)
            .with_context(|| format!("reading {}", original_path.display()))?
    };
    let wanted = rewrite_resolv_conf(&source, embedded, host_ip, opts.dns_search.as_deref());
    let changed = wanted != current;
    if changed {
        resolv_conf::write_in_place(path, &wanted)?;
    }
    Ok((changed, original_saved))
}

fn write_sysctl(proc_sys: &Path, key: &str, value: &str) -> anyhow::Result<()> {
    let path = proc_sys.join(key);
    std::fs::write(&path, value).with_context(|| {
        format!(
            "setting sysctl {} = {value} (writing {})",
            key.replace('/', "."),
            path.display()
        )
    })
}

/// The host IP as KIND picks it: the first IPv4 address of `host.docker.internal` unless
/// there is none or it is a loopback address, else the default gateway.
fn detect_host_ip(opts: &MagicOptions) -> anyhow::Result<(Ipv4Addr, HostIpSource)> {
    if let Some(ip) = opts.host_ip {
        return Ok((ip, HostIpSource::Fixed));
    }
    if let Some(name) = &opts.host_name
        && let Some(ip) = lookup_ipv4(opts, name, HOST_LOOKUP_TIMEOUT)
        && !ip.is_loopback()
    {
        return Ok((ip, HostIpSource::Name(name.clone())));
    }
    let table = std::fs::read_to_string(&opts.route_table)
        .with_context(|| format!("reading the routing table {}", opts.route_table.display()))?;
    match default_gateway(&table) {
        Some(ip) => Ok((ip, HostIpSource::DefaultGateway)),
        None => bail!(
            "no host IP for the network magic: {} has no default route with a gateway{}",
            opts.route_table.display(),
            opts.host_name.as_ref().map_or(String::new(), |n| format!(
                " and {n} has no usable IPv4 address"
            ))
        ),
    }
}

/// The first IPv4 address `getent ahostsv4 NAME` would print, with minikind's own resolver
/// (no libc NSS in the node image), waiting at most `timeout`; a lookup still running then is
/// left to finish in its thread.
fn lookup_ipv4(opts: &MagicOptions, name: &str, timeout: Duration) -> Option<Ipv4Addr> {
    let env = ToolEnv {
        resolv_conf: opts.resolv_conf_path.clone(),
        hosts: opts.hosts_path.clone(),
        dns_port: 53,
    };
    let (tx, rx) = mpsc::channel();
    let name = name.to_string();
    std::thread::spawn(move || {
        let first = getent::ahosts_v4(&env, &name)
            .into_iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            });
        let _ = tx.send(first);
    });
    rx.recv_timeout(timeout).ok().flatten()
}

/// The gateway of the default route in `/proc/net/route` text.
pub fn default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u32 = 0x1;
    const RTF_GATEWAY: u32 = 0x2;
    route_table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [
            _iface,
            dest,
            gateway,
            flags,
            _refcnt,
            _use,
            _metric,
            mask,
            ..,
        ] = fields.as_slice()
        else {
            return None;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let flags = hex(flags)?;
        if hex(dest)? != 0
            || hex(mask)? != 0
            || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY
        {
            return None;
        }
        // The kernel prints the network-order address as a native integer.
        Some(Ipv4Addr::from(hex(gateway)?.to_ne_bytes()))
    })
}

/// Feeds rules the magic produced (transformed, or Docker's restored) to `iptables-restore`.
fn restore_transformed(program: &Path, args: &[&str], rules: &str) -> anyhow::Result<()> {
    Ok(minikind_iptables::restore(
        program,
        args,
        rules,
        "the transformed rules",
    )?)
}

/// Whether the magic is in place on a node, for `minikind dns magic status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MagicStatus {
    pub flavour: Option<Flavour>,
    /// Rules that still match on `-d 127.0.0.11` (Docker's, untransformed).
    pub rules_to_embedded_ip: usize,
    /// The `-d` addresses of the `PREROUTING … -j DOCKER_OUTPUT` jumps.
    pub prerouting_jumps: Vec<String>,
    /// Whether Docker's `DOCKER_OUTPUT` chain exists at all.
    pub docker_chain: bool,
    pub resolv_conf_nameservers: Vec<String>,
    pub original_kept: bool,
    /// `net.ipv4.conf.all.route_localnet`, when readable.
    pub route_localnet: Option<bool>,
}

impl MagicStatus {
    /// The magic is in place: Docker's rules point at a reachable IP, pods are redirected,
    /// and resolv.conf no longer names 127.0.0.11.
    pub fn in_place(&self) -> bool {
        self.docker_chain
            && self.rules_to_embedded_ip == 0
            && self.prerouting_jumps.len() == 1
            && self.route_localnet != Some(false)
            && !self
                .resolv_conf_nameservers
                .iter()
                .any(|n| n.parse::<IpAddr>() == Ok(IpAddr::V4(DOCKER_EMBEDDED_DNS)))
    }
}

impl fmt::Display for MagicStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "network magic: {}",
            if self.in_place() {
                "in place"
            } else {
                "NOT in place"
            }
        )?;
        writeln!(
            f,
            "  iptables flavour: {}",
            self.flavour.map_or("unknown", Flavour::as_str)
        )?;
        writeln!(
            f,
            "  DOCKER_OUTPUT chain: {}",
            if self.docker_chain {
                "present"
            } else {
                "missing"
            }
        )?;
        writeln!(
            f,
            "  rules still matching -d {DOCKER_EMBEDDED_DNS}: {}",
            self.rules_to_embedded_ip
        )?;
        writeln!(
            f,
            "  PREROUTING jumps to DOCKER_OUTPUT: {}",
            if self.prerouting_jumps.is_empty() {
                "none".to_string()
            } else {
                self.prerouting_jumps.join(", ")
            }
        )?;
        writeln!(
            f,
            "  resolv.conf nameservers: {}",
            self.resolv_conf_nameservers.join(", ")
        )?;
        writeln!(
            f,
            "  resolv.conf.original kept: {}",
            if self.original_kept { "yes" } else { "no" }
        )?;
        write!(
            f,
            "  route_localnet: {}",
            match self.route_localnet {
                Some(true) => "1",
                Some(false) => "0",
                None => "unknown",
            }
        )
    }
}

/// The rule part of [`MagicStatus`] from an `iptables-save` dump (pure).
pub fn inspect_rules(save: &str) -> (usize, Vec<String>, bool) {
    let mut to_embedded = 0;
    let mut jumps = Vec::new();
    let mut chain = false;
    for line in save.lines() {
        if line.starts_with(&format!(":{DOCKER_OUTPUT_CHAIN} ")) {
            chain = true;
        }
        if !line.starts_with("-A ") {
            continue;
        }
        let words: Vec<&str> = line.split(' ').collect();
        if words
            .windows(2)
            .any(|w| w[0] == "-d" && is_embedded_addr(w[1]))
        {
            to_embedded += 1;
        }
        if words.get(1) == Some(&"PREROUTING") && jumps_to(line, DOCKER_OUTPUT_CHAIN) {
            let dest = words
                .windows(2)
                .find(|w| w[0] == "-d")
                .map_or("any".to_string(), |w| w[1].to_string());
            jumps.push(dest);
        }
    }
    (to_embedded, jumps, chain)
}

/// Inspects the node's rules and resolv.conf.
pub fn status(opts: &MagicOptions) -> anyhow::Result<MagicStatus> {
    let save = minikind_iptables::save(&opts.iptables.save, &[])?;
    let (rules_to_embedded_ip, prerouting_jumps, docker_chain) = inspect_rules(&save);
    let conf = ResolvConf::read(&opts.resolv_conf_path)?;
    let route_localnet =
        std::fs::read_to_string(opts.proc_sys.join("net/ipv4/conf/all/route_localnet"))
            .ok()
            .map(|v| v.trim() == "1");
    Ok(MagicStatus {
        flavour: Flavour::from_save_header(&save),
        rules_to_embedded_ip,
        prerouting_jumps,
        docker_chain,
        resolv_conf_nameservers: conf
            .nameserver_texts()
            .into_iter()
            .map(str::to_string)
            .collect(),
        original_kept: opts.original_path().exists(),
        route_localnet,
    })
}

/// Where Docker's DNAT rules send port 53 (`--to-destination` of the `DOCKER_OUTPUT` rules):
/// the resolver that really answers, e.g. `127.0.0.11:41553`.
pub fn dnat_targets(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| l.starts_with(&format!("-A {DOCKER_OUTPUT_CHAIN} ")))
        .filter_map(|l| {
            let words: Vec<&str> = l.split(' ').collect();
            words
                .windows(2)
                .find(|w| w[0] == "--to-destination")
                .map(|w| w[1].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

    #[test]
    fn rule_rewrite_keeps_prefix_and_other_addresses() {
        assert_eq!(
            rewrite_rule("-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT", HOST),
            "-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT"
        );
        // 127.0.0.110 is another address; KIND's sed would have mangled it.
        assert_eq!(
            rewrite_rule("-A OUTPUT -d 127.0.0.110/32 -j ACCEPT", HOST),
            "-A OUTPUT -d 127.0.0.110/32 -j ACCEPT"
        );
        assert_eq!(
            rewrite_rule(
                "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 41553 -j SNAT --to-source :53",
                HOST
            ),
            "-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 41553 -j SNAT --to-source 172.18.0.1:53"
        );
    }

    #[test]
    fn dport_is_added_only_to_dnat_to_the_embedded_resolver() {
        assert_eq!(
            rewrite_rule(
                "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -j DNAT --to-destination 127.0.0.11:41553",
                HOST
            ),
            "-A DOCKER_OUTPUT -d 172.18.0.1/32 -p udp --dport 53 -j DNAT --to-destination 127.0.0.11:41553"
        );
        assert_eq!(
            rewrite_rule(
                "-A KUBE-SEP-X -p udp -j DNAT --to-destination 10.244.0.3:53",
                HOST
            ),
            "-A KUBE-SEP-X -p udp -j DNAT --to-destination 10.244.0.3:53"
        );
    }

    #[test]
    fn resolv_conf_search_semantics() {
        let text = "nameserver 127.0.0.11\nsearch a.example\noptions ndots:0\n";
        let embedded = IpAddr::V4(DOCKER_EMBEDDED_DNS);
        assert_eq!(
            rewrite_resolv_conf(text, embedded, HOST, None),
            "nameserver 172.18.0.1\nsearch a.example\noptions ndots:0\n"
        );
        assert_eq!(
            rewrite_resolv_conf(text, embedded, HOST, Some(&[])),
            "nameserver 172.18.0.1\noptions ndots:0\n"
        );
        let list = vec!["x.example".to_string(), "y.example".to_string()];
        let once = rewrite_resolv_conf(text, embedded, HOST, Some(&list));
        assert_eq!(
            once,
            "search x.example y.example\nnameserver 172.18.0.1\noptions ndots:0\n"
        );
        assert_eq!(
            rewrite_resolv_conf(&once, embedded, HOST, Some(&list)),
            once
        );
    }

    #[test]
    fn default_gateway_from_proc_net_route() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(default_gateway(table), Some(HOST));
        }
        assert_eq!(default_gateway("Iface\tDestination\n"), None);
        assert_eq!(default_gateway("header\neth0 garbage\n"), None);
    }

    #[test]
    fn status_reads_rules() {
        let save = "*nat\n:DOCKER_OUTPUT - [0:0]\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:1\nCOMMIT\n";
        assert_eq!(inspect_rules(save), (2, vec![], true));
        let done = transform(save, HOST);
        assert_eq!(
            inspect_rules(&done),
            (0, vec!["172.18.0.1/32".to_string()], true)
        );
        assert_eq!(dnat_targets(&done), vec!["127.0.0.11:1".to_string()]);
        assert_eq!(dnat_targets("*nat\nCOMMIT\n"), Vec::<String>::new());
    }
}
