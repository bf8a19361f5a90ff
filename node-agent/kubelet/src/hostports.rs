//! Pods' `hostPort`s, programmed as the CNI `portmap` plugin programs them on a KIND node
//! (kindnet's CNI config chains `portmap` after the bridge; containernetworking/plugins,
//! `plugins/meta/portmap/portmap.go`): all in the nat table,
//!
//! - `PREROUTING` and `OUTPUT` jump to `CNI-HOSTPORT-DNAT` for traffic to a local address;
//! - `CNI-HOSTPORT-DNAT` holds one multiport rule per pod and protocol, jumping to the pod's
//!   own chain `CNI-DN-<hash>`;
//! - the pod's chain marks hairpin traffic (from the pod itself) and traffic from `127.0.0.1`
//!   through `CNI-HOSTPORT-SETMARK`, then DNATs each host port to the pod's port;
//! - `POSTROUTING` starts with `CNI-HOSTPORT-MASQ`, which masquerades the marked packets.
//!
//! The kubelet owns these chains (they are the pod network's, not a Service's); the per-pod
//! chain is made with the pod's sandbox and removed with it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha512};

/// The summary chain `PREROUTING`/`OUTPUT` jump to (portmap's `TopLevelDNATChainName`).
pub const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// The chain that sets the masquerade mark (portmap's `SetMarkChainName`).
pub const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
/// The chain that masquerades marked packets (portmap's `MarkMasqChainName`).
pub const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// The name of the pod network in the rules' comments (portmap writes the CNI network's name;
/// KIND's is `kindnet`, minikind's pod network is its own).
pub const NETWORK_NAME: &str = "minikind";
/// portmap's default `markMasqBit` (13): the mark `0x2000/0x2000`.
const MASQ_MARK: &str = "0x2000/0x2000";
/// iptables' limit on a chain name, as portmap's `utils.MaxChainLength` keeps it.
const MAX_CHAIN_LENGTH: usize = 28;
/// `-m multiport` takes at most 15 ports in one rule.
const MULTIPORT_MAX: usize = 15;

/// One `ports[].hostPort` of a pod's containers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp`, as iptables spells them.
    pub protocol: &'static str,
    pub host_port: u16,
    pub container_port: u16,
    /// `hostIP`, when it names one address (an unspecified one matches every address).
    pub host_ip: Option<Ipv4Addr>,
}

fn port(value: i32, what: &str) -> Result<u16> {
    u16::try_from(value)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| anyhow!("{what} {value} is not a port (1-65535)"))
}

/// The pod's host ports (containers and init containers, as the kubelet's
/// `kubecontainer.MakePortMappings` collects them); empty for a `hostNetwork` pod, whose ports
/// are the node's already.
pub fn from_pod(pod: &Pod) -> Result<Vec<PortMapping>> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(vec![]);
    };
    if spec.host_network == Some(true) {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in containers {
        for p in c.ports.iter().flatten() {
            let Some(host_port) = p.host_port.filter(|p| *p != 0) else {
                continue;
            };
            let at = format!("container {:?}", c.name);
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => "tcp",
                "UDP" => "udp",
                "SCTP" => "sctp",
                other => bail!("{at}: port protocol {other:?} is not TCP, UDP or SCTP"),
            };
            let host_ip = match p.host_ip.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some(s) => {
                    let ip: std::net::IpAddr = s
                        .parse()
                        .map_err(|_| anyhow!("{at}: hostIP {s:?} is not an IP address"))?;
                    match ip {
                        ip if ip.is_unspecified() => None,
                        std::net::IpAddr::V4(v4) => Some(v4),
                        // portmap skips an entry whose family differs from the pod's address.
                        std::net::IpAddr::V6(_) => continue,
                    }
                }
            };
            out.push(PortMapping {
                protocol,
                host_port: port(host_port, &format!("{at}: hostPort"))?,
                container_port: port(p.container_port, &format!("{at}: containerPort"))?,
                host_ip,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The pod's own chain: `CNI-DN-` and the hex SHA-512 of network name and sandbox ID, cut to
/// iptables' 28 characters (portmap's `MustFormatChainNameWithPrefix`).
pub fn pod_chain(sandbox_id: &str) -> String {
    let digest = Sha512::digest(format!("{NETWORK_NAME}{sandbox_id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("CNI-DN-{hex}");
    name.truncate(MAX_CHAIN_LENGTH);
    name
}

/// The entry rules' comment, as portmap writes it.
fn comment(sandbox_id: &str) -> String {
    format!("dnat name: \"{NETWORK_NAME}\" id: \"{sandbox_id}\"")
}

/// The pod's chain and the shared mark/masquerade chains in `iptables-restore --noflush`
/// form: declaring a chain flushes only it, so applying again replaces the pod's rules.
pub fn pod_rules(sandbox_id: &str, pod_net: Ipv4Net, ports: &[PortMapping]) -> String {
    let chain = pod_chain(sandbox_id);
    let mut s = format!(
        "*nat\n:{SETMARK_CHAIN} - [0:0]\n:{MASQ_CHAIN} - [0:0]\n:{chain} - [0:0]\n\
         -A {SETMARK_CHAIN} -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark {MASQ_MARK}\n\
         -A {MASQ_CHAIN} -m mark --mark {MASQ_MARK} -j MASQUERADE\n"
    );
    let pod_ip = pod_net.addr();
    let pod_net = pod_net.trunc();
    for p in ports {
        let base = match p.host_ip {
            Some(ip) => format!(
                "-A {chain} -p {} -m {} --dport {} -d {ip}/32",
                p.protocol, p.protocol, p.host_port
            ),
            None => format!(
                "-A {chain} -p {} -m {} --dport {}",
                p.protocol, p.protocol, p.host_port
            ),
        };
        s += &format!("{base} -s {pod_net} -j {SETMARK_CHAIN}\n");
        s += &format!("{base} -s 127.0.0.1/32 -j {SETMARK_CHAIN}\n");
        s += &format!(
            "{base} -j DNAT --to-destination {pod_ip}:{}\n",
            p.container_port
        );
    }
    s + "COMMIT\n"
}

/// The rules in `CNI-HOSTPORT-DNAT` that send the pod's host ports to its chain: one per
/// protocol and up to 15 ports (multiport's limit), protocols in name order, as `iptables`
/// arguments after `-A CNI-HOSTPORT-DNAT`.
pub fn entry_rules(sandbox_id: &str, ports: &[PortMapping]) -> Vec<Vec<String>> {
    let chain = pod_chain(sandbox_id);
    let comment = comment(sandbox_id);
    let mut by_proto: std::collections::BTreeMap<&str, Vec<u16>> = Default::default();
    for p in ports {
        let list = by_proto.entry(p.protocol).or_default();
        if !list.contains(&p.host_port) {
            list.push(p.host_port);
        }
    }
    let mut out = Vec::new();
    for (proto, list) in by_proto {
        for group in list.chunks(MULTIPORT_MAX) {
            let ports: Vec<String> = group.iter().map(u16::to_string).collect();
            out.push(
                [
                    "-p",
                    proto,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-m",
                    "multiport",
                    "--dports",
                    &ports.join(","),
                    "-j",
                    &chain,
                ]
                .map(str::to_string)
                .to_vec(),
            );
        }
    }
    out
}

/// Serializes the kubelet's changes to the shared chains (pods start and stop concurrently;
/// entry rules are removed by their number).
static LOCK: Mutex<()> = Mutex::new(());

fn run(iptables: &str, args: &[&str]) -> Result<std::process::Output> {
    Command::new(iptables)
        .args(args)
        .output()
        .with_context(|| format!("running {iptables} {}", args.join(" ")))
}

fn run_ok(iptables: &str, args: &[&str]) -> Result<()> {
    let out = run(iptables, args)?;
    if !out.status.success() {
        bail!(
            "{iptables} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Appends (or with `first`, inserts) `rule` to `chain` unless it is there.
fn ensure_rule(iptables: &str, chain: &str, rule: &[&str], first: bool) -> Result<()> {
    let check: Vec<&str> = ["-t", "nat", "-C", chain]
        .iter()
        .chain(rule)
        .copied()
        .collect();
    if run(iptables, &check)?.status.success() {
        return Ok(());
    }
    let verb = if first { "-I" } else { "-A" };
    let add: Vec<&str> = ["-t", "nat", verb, chain]
        .iter()
        .chain(rule)
        .copied()
        .collect();
    run_ok(iptables, &add)
}

/// Removes the rules of `CNI-HOSTPORT-DNAT` that jump to `chain`, by number, last first.
fn remove_entry_rules(iptables: &str, chain: &str) -> Result<()> {
    let Ok(listing) =
        minikind_iptables::list(Path::new(iptables), &["-t", "nat", "-S", DNAT_CHAIN])
    else {
        return Ok(()); // no summary chain yet: nothing jumps anywhere
    };
    let target = format!(" -j {chain}");
    let numbers: Vec<usize> = listing
        .lines()
        .filter(|l| l.starts_with("-A "))
        .enumerate()
        .filter(|(_, l)| l.ends_with(&target))
        .map(|(i, _)| i + 1)
        .collect();
    for n in numbers.into_iter().rev() {
        run_ok(iptables, &["-t", "nat", "-D", DNAT_CHAIN, &n.to_string()])?;
    }
    Ok(())
}

/// Programs the pod's host ports (idempotent: a second call replaces the pod's rules), with
/// `route_localnet` on the pod bridge so connections to `127.0.0.1:<hostPort>` reach the pod,
/// as portmap sets it on the interface that routes to the pod.
pub fn forward(
    iptables: &str,
    bridge: &str,
    sandbox_id: &str,
    pod_net: Ipv4Net,
    ports: &[PortMapping],
) -> Result<()> {
    let _guard = LOCK
        .lock()
        .map_err(|_| anyhow!("the hostPort lock is poisoned"))?;
    let restore = format!("{iptables}-restore");
    minikind_iptables::restore(
        Path::new(&restore),
        &["--noflush"],
        &pod_rules(sandbox_id, pod_net, ports),
        "the pod's hostPort chain",
    )?;
    if run(iptables, &["-t", "nat", "-S", DNAT_CHAIN])?
        .status
        .success()
    {
        remove_entry_rules(iptables, &pod_chain(sandbox_id))?;
    } else {
        run_ok(iptables, &["-t", "nat", "-N", DNAT_CHAIN])?;
    }
    for entry in ["PREROUTING", "OUTPUT"] {
        let rule = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT_CHAIN];
        ensure_rule(iptables, entry, &rule, false)?;
    }
    // First in POSTROUTING, as portmap prepends it: the bridge's own masquerade must not
    // take the packet before the mark is looked at.
    let masq = [
        "-m",
        "comment",
        "--comment",
        "CNI portfwd requiring masquerade",
        "-j",
        MASQ_CHAIN,
    ];
    ensure_rule(iptables, "POSTROUTING", &masq, true)?;
    for rule in entry_rules(sandbox_id, ports) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        ensure_rule(iptables, DNAT_CHAIN, &rule, false)?;
    }
    let sysctl = format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet");
    std::fs::write(&sysctl, "1").with_context(|| format!("writing 1 to {sysctl}"))?;
    Ok(())
}

/// Removes the pod's chain and the rules that jump to it (nothing to do when it never had
/// host ports).
pub fn unforward(iptables: &str, sandbox_id: &str) -> Result<()> {
    let _guard = LOCK
        .lock()
        .map_err(|_| anyhow!("the hostPort lock is poisoned"))?;
    let chain = pod_chain(sandbox_id);
    remove_entry_rules(iptables, &chain)?;
    if run(iptables, &["-t", "nat", "-S", &chain])?
        .status
        .success()
    {
        run_ok(iptables, &["-t", "nat", "-F", &chain])?;
        run_ok(iptables, &["-t", "nat", "-X", &chain])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Pod {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn host_ports_are_collected_from_every_container() {
        let p = pod("
metadata: {name: web}
spec:
  initContainers:
  - name: init
    ports: [{containerPort: 9000, hostPort: 9000, protocol: UDP}]
  containers:
  - name: app
    ports:
    - {containerPort: 80, hostPort: 8080}
    - {containerPort: 443, hostPort: 8443, hostIP: 127.0.0.1}
    - {containerPort: 8081}
    - {containerPort: 53, hostPort: 5353, hostIP: '0.0.0.0', protocol: SCTP}
");
        assert_eq!(
            from_pod(&p).unwrap(),
            [
                PortMapping {
                    protocol: "sctp",
                    host_port: 5353,
                    container_port: 53,
                    host_ip: None
                },
                PortMapping {
                    protocol: "tcp",
                    host_port: 8080,
                    container_port: 80,
                    host_ip: None
                },
                PortMapping {
                    protocol: "tcp",
                    host_port: 8443,
                    container_port: 443,
                    host_ip: Some(Ipv4Addr::LOCALHOST)
                },
                PortMapping {
                    protocol: "udp",
                    host_port: 9000,
                    container_port: 9000,
                    host_ip: None
                },
            ]
        );
        let host = pod("
metadata: {name: web}
spec:
  hostNetwork: true
  containers:
  - name: app
    ports: [{containerPort: 80, hostPort: 80}]
");
        assert_eq!(from_pod(&host).unwrap(), []);
    }

    #[test]
    fn bad_ports_are_one_error_naming_the_container() {
        let p = pod("
metadata: {name: web}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80, hostPort: 70000}]
");
        let e = from_pod(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            "container \"app\": hostPort 70000 is not a port (1-65535)"
        );
        let p = pod("
metadata: {name: web}
spec:
  containers:
  - name: app
    ports: [{containerPort: 80, hostPort: 80, hostIP: nowhere}]
");
        let e = from_pod(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            "container \"app\": hostIP \"nowhere\" is not an IP address"
        );
    }

    #[test]
    fn the_chain_name_is_portmaps_hash_cut_to_28() {
        let name = pod_chain("abc");
        assert_eq!(name.len(), 28);
        // The SHA-512 of "minikindabc", in hex, after the prefix.
        let hex: String = Sha512::digest(b"minikindabc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(name, format!("CNI-DN-{}", &hex[..21]));
        assert_ne!(pod_chain("abd"), name);
    }

    #[test]
    fn rules_are_portmaps_three_per_port() {
        let ports = [
            PortMapping {
                protocol: "tcp",
                host_port: 80,
                container_port: 8080,
                host_ip: None,
            },
            PortMapping {
                protocol: "tcp",
                host_port: 443,
                container_port: 8443,
                host_ip: Some(Ipv4Addr::new(172, 18, 0, 2)),
            },
        ];
        let c = pod_chain("uid-1");
        let net: Ipv4Net = "10.244.0.5/24".parse().unwrap();
        assert_eq!(
            pod_rules("uid-1", net, &ports),
            format!(
                "*nat\n:CNI-HOSTPORT-SETMARK - [0:0]\n:CNI-HOSTPORT-MASQ - [0:0]\n:{c} - [0:0]\n\
                 -A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n\
                 -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE\n\
                 -A {c} -p tcp -m tcp --dport 80 -s 10.244.0.0/24 -j CNI-HOSTPORT-SETMARK\n\
                 -A {c} -p tcp -m tcp --dport 80 -s 127.0.0.1/32 -j CNI-HOSTPORT-SETMARK\n\
                 -A {c} -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.5:8080\n\
                 -A {c} -p tcp -m tcp --dport 443 -d 172.18.0.2/32 -s 10.244.0.0/24 -j CNI-HOSTPORT-SETMARK\n\
                 -A {c} -p tcp -m tcp --dport 443 -d 172.18.0.2/32 -s 127.0.0.1/32 -j CNI-HOSTPORT-SETMARK\n\
                 -A {c} -p tcp -m tcp --dport 443 -d 172.18.0.2/32 -j DNAT --to-destination 10.244.0.5:8443\n\
                 COMMIT\n"
            )
        );
        let many: Vec<PortMapping> = (1..=16)
            .map(|p| PortMapping {
                protocol: "udp",
                host_port: p,
                container_port: p,
                host_ip: None,
            })
            .chain(ports.iter().cloned())
            .collect();
        let entries: Vec<String> = entry_rules("uid-1", &many)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        let head =
            "-m comment --comment dnat name: \"minikind\" id: \"uid-1\" -m multiport --dports";
        assert_eq!(
            entries,
            [
                format!("-p tcp {head} 80,443 -j {c}"),
                format!("-p udp {head} 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j {c}"),
                format!("-p udp {head} 16 -j {c}"),
            ]
        );
    }

    fn sh(args: &[&str]) -> String {
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn nat_rules() -> Vec<String> {
        sh(&["iptables-save", "-t", "nat"])
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect()
    }

    /// In a network namespace of its own: a connection to a local address's host port reaches
    /// the "pod" address's port through the DNAT; applying twice keeps one set of rules; a
    /// second pod's rules stay when the first goes; nothing of the first is left.
    #[test]
    fn host_ports_forward_and_go_with_the_pod() {
        use std::io::{Read, Write};
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            sh(&["ip", "link", "set", "lo", "up"]);
            sh(&["ip", "link", "add", "mk-br", "type", "bridge"]);
            sh(&["ip", "link", "set", "mk-br", "up"]);
            sh(&["ip", "addr", "add", "10.244.0.1/24", "dev", "mk-br"]);
            sh(&["ip", "addr", "add", "10.244.0.5/24", "dev", "mk-br"]);
            sh(&["ip", "addr", "add", "172.18.0.2/16", "dev", "mk-br"]);
            let server = std::net::TcpListener::bind("10.244.0.5:8080").unwrap();
            let net: Ipv4Net = "10.244.0.5/24".parse().unwrap();
            let web = [PortMapping {
                protocol: "tcp",
                host_port: 80,
                container_port: 8080,
                host_ip: None,
            }];
            forward("iptables", "mk-br", "pod-a", net, &web).unwrap();
            forward("iptables", "mk-br", "pod-a", net, &web).unwrap();
            let other = [PortMapping {
                protocol: "udp",
                host_port: 53,
                container_port: 53,
                host_ip: None,
            }];
            forward(
                "iptables",
                "mk-br",
                "pod-b",
                "10.244.0.6/24".parse().unwrap(),
                &other,
            )
            .unwrap();
            let rules = nat_rules();
            let a = pod_chain("pod-a");
            let count = |needle: &str| rules.iter().filter(|r| r.contains(needle)).count();
            assert_eq!(count(&format!("-j {a}")), 1, "{rules:#?}");
            assert_eq!(
                count("-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
                1
            );
            assert_eq!(
                count("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"),
                1
            );
            assert_eq!(count("-j CNI-HOSTPORT-MASQ"), 1, "{rules:#?}");
            assert_eq!(count(&format!("-A {a} ")), 3, "{rules:#?}");
            assert_eq!(
                std::fs::read_to_string("/proc/sys/net/ipv4/conf/mk-br/route_localnet").unwrap(),
                "1\n"
            );

            let mut c = std::net::TcpStream::connect("172.18.0.2:80").unwrap();
            let (mut s, from) = server.accept().unwrap();
            c.write_all(b"ping").unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"ping", "from {from}");
            drop((c, s));

            unforward("iptables", "pod-a").unwrap();
            unforward("iptables", "pod-a").unwrap();
            let rules = nat_rules();
            assert!(!rules.iter().any(|r| r.contains(&a)), "{rules:#?}");
            let b = pod_chain("pod-b");
            assert_eq!(
                rules
                    .iter()
                    .filter(|r| r.ends_with(&format!("-j {b}")))
                    .count(),
                1
            );
            assert!(
                std::net::TcpStream::connect_timeout(
                    &"172.18.0.2:80".parse().unwrap(),
                    std::time::Duration::from_millis(300)
                )
                .is_err()
            );
        })
        .join()
        .expect("the test thread");
    }
}
