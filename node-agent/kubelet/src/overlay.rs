//! Pod-to-pod traffic between nodes on an `--internal` Docker network.
//!
//! KIND (kindnet) routes each peer's pod CIDR via the peer's node IP. On a Docker `--internal`
//! network that cannot work: Docker's isolation rules on the host drop every bridged packet
//! whose source or destination lies outside the network's subnet, and pod addresses do. So on
//! such a network each pair of nodes gets a point-to-point VXLAN link (the one tunnel type this
//! kernel offers) and the peer's pod CIDR is routed through it, to the peer's bridge address;
//! the packets on the wire are node-to-node UDP, which the network allows. Everything stays
//! on the machine.
//!
//! The kernel's VXLAN receive path does not check the outer source against a link's `remote`:
//! any container on the Docker network could send a datagram to port 4789 with a made-up inner
//! packet and have it delivered to a pod. So each node admits VXLAN only from its peers'
//! addresses, in a filter chain of its own ([`FILTER_CHAIN`]) that INPUT sends UDP 4789 to —
//! as Calico's Felix admits VXLAN only from the host addresses in its `all-vxlan-net` set and
//! drops the rest.

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use crate::ipam::gateway_of;
use crate::pod_network::{fnv64, ip};

/// VXLAN's IANA port.
pub const VXLAN_PORT: &str = "4789";
const PREFIX: &str = "mkvx";

fn fnv(bytes: &[u8]) -> u32 {
    fnv64(bytes) as u32
}

/// The link's name on this node for a peer (≤ 15 characters).
pub fn device_name(peer: Ipv4Addr) -> String {
    format!("{PREFIX}{:08x}", fnv(&peer.octets()))
}

/// One VXLAN id per node pair, the same on both ends: several links share the UDP port and
/// the kernel tells them apart by id.
/// The MAC of this node's tunnel devices: `0a:58` and the node's IPv4 address, as the
/// kubenet/CNI bridge plugins derive a pod's MAC from its IP. A random one (the kernel's
/// default) changes when a restarted node makes its links again, and its peers keep sending
/// to the old MAC from their neighbour cache for tens of seconds; this one is the same on
/// every start, so cross-node traffic comes back as soon as the links do. Each link is its
/// own two-ended segment, so the links of one node may share it.
pub fn device_mac(node: Ipv4Addr) -> String {
    let [a, b, c, d] = node.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

pub fn vni(a: Ipv4Addr, b: Ipv4Addr) -> u32 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut key = lo.octets().to_vec();
    key.extend(hi.octets());
    fnv(&key) % 0x00ff_fffe + 1
}

/// What a node needs for its tunnels: its own address and its iptables command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnels {
    pub node_ip: Ipv4Addr,
    pub iptables: String,
}

impl Tunnels {
    /// The filter for the peers of `want`, then the links ([`sync`]). The filter comes first,
    /// so a new peer is admitted by the time its link exists; when it cannot be written the
    /// links are left as they are (the caller retries), never made unguarded.
    pub fn sync(
        &self,
        want: &BTreeMap<Ipv4Net, Ipv4Addr>,
        own_gateway: Option<Ipv4Addr>,
        proto: &str,
    ) -> Result<()> {
        let peers = want.values().copied().collect();
        ensure_filter(&self.iptables, &peers).context("admitting VXLAN from the peers")?;
        sync(want, self.node_ip, own_gateway, proto)
    }
}

/// The filter chain that admits VXLAN from the peers and drops it from anyone else.
pub const FILTER_CHAIN: &str = "MINIKIND-OVERLAY";

/// The chain in `iptables-restore --noflush` form: declaring it flushes only it, so the whole
/// peer set is replaced in one transaction, never duplicated, and nothing else is touched.
pub fn filter_rules(peers: &BTreeSet<Ipv4Addr>) -> String {
    let mut out = format!("*filter\n:{FILTER_CHAIN} - [0:0]\n");
    for peer in peers {
        out.push_str(&format!(
            "-A {FILTER_CHAIN} -s {peer}/32 -m comment --comment \"minikind: VXLAN from node {peer}\" -j ACCEPT\n"
        ));
    }
    out.push_str(&format!(
        "-A {FILTER_CHAIN} -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP\n\
         COMMIT\n"
    ));
    out
}

/// The INPUT rule that sends VXLAN to [`FILTER_CHAIN`] (arguments after the chain name, as
/// `iptables-save` prints them, so `-C` finds the rule a previous run inserted).
pub fn jump_rule() -> [&'static str; 12] {
    [
        "-p",
        "udp",
        "-m",
        "udp",
        "--dport",
        VXLAN_PORT,
        "-m",
        "comment",
        "--comment",
        "minikind: VXLAN only from the cluster nodes",
        "-j",
        FILTER_CHAIN,
    ]
}

/// The `-A` lines of a dump or of rules to restore.
fn rule_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("-A ")).collect()
}

/// Makes [`FILTER_CHAIN`] admit exactly `peers` and ensures INPUT jumps to it, once: the
/// jump is checked (`-C`) before it is inserted, so a restarted agent adds nothing. It is
/// inserted at the top of INPUT, so no ACCEPT appended there comes before it (kube-proxy also
/// inserts its jumps at the top, but its chains accept no VXLAN).
///
/// The chain is rewritten (atomically) only when what it holds differs from the wanted rules:
/// the periodic re-sync then repairs a changed chain without resetting the counters of one
/// that is right.
pub fn ensure_filter(iptables: &str, peers: &BTreeSet<Ipv4Addr>) -> Result<()> {
    let want = filter_rules(peers);
    // A missing chain lists as an error: it is written below like a stale one.
    let have = minikind_iptables::list(
        Path::new(iptables),
        &["-w", "-t", "filter", "-S", FILTER_CHAIN],
    )
    .unwrap_or_default();
    if rule_lines(&have) != rule_lines(&want) {
        let restore = format!("{iptables}-restore");
        minikind_iptables::restore(
            Path::new(&restore),
            &["-w", "--noflush"],
            &want,
            "the VXLAN filter",
        )?;
    }
    let rule = jump_rule();
    let present = Command::new(iptables)
        .args(["-w", "-t", "filter", "-C", "INPUT"])
        .args(rule)
        .output()
        .with_context(|| format!("running {iptables} -C"))?
        .status
        .success();
    if !present {
        let out = Command::new(iptables)
            .args(["-w", "-t", "filter", "-I", "INPUT", "1"])
            .args(rule)
            .output()
            .with_context(|| format!("running {iptables} -I"))?;
        if !out.status.success() {
            bail!(
                "{iptables} -t filter -I INPUT: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Makes the tunnels and routes exactly `want` (peer pod CIDR → peer node IP): a link per
/// peer, `<cidr> via <peer bridge address> dev <link> onlink`, stale links removed.
///
/// Each link also carries this node's own bridge address (`own_gateway`, /32), as flannel's
/// VTEP does: a packet the node itself sends into a tunnel — a probe, a `dig` from the node,
/// traffic kube-proxy masquerades — then leaves with a pod-subnet source, and the peer's reply
/// comes back through the tunnel. With no address on the link the kernel would pick eth0's,
/// the peer would answer over the Docker network with a pod source, and Docker's isolation
/// rules would drop the answer.
pub fn sync(
    want: &BTreeMap<Ipv4Net, Ipv4Addr>,
    me: Ipv4Addr,
    own_gateway: Option<Ipv4Addr>,
    proto: &str,
) -> Result<()> {
    let links = ip(&["-o", "link", "show", "type", "vxlan"])?;
    let have: BTreeSet<String> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .filter(|n| n.starts_with(PREFIX))
        .collect();
    let mut keep = BTreeSet::new();
    let mut errors = Vec::new();
    for (cidr, peer) in want {
        let dev = device_name(*peer);
        keep.insert(dev.clone());
        let r = (|| -> Result<()> {
            if !have.contains(&dev) {
                ip(&[
                    "link",
                    "add",
                    &dev,
                    // Link options come before the type's own.
                    "address",
                    &device_mac(me),
                    "type",
                    "vxlan",
                    "id",
                    &vni(me, *peer).to_string(),
                    "remote",
                    &peer.to_string(),
                    "local",
                    &me.to_string(),
                    "dev",
                    "eth0",
                    "dstport",
                    VXLAN_PORT,
                ])?;
            }
            if let Some(gw) = own_gateway {
                ip(&["addr", "replace", &format!("{gw}/32"), "dev", &dev])?;
            }
            ip(&["link", "set", &dev, "up"])?;
            ip(&[
                "route",
                "replace",
                &cidr.to_string(),
                "via",
                &gateway_of(*cidr).to_string(),
                "dev",
                &dev,
                "onlink",
                "proto",
                proto,
            ])?;
            Ok(())
        })();
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    for dev in have.difference(&keep) {
        // Its routes go with it.
        if let Err(e) = ip(&["link", "delete", dev]) {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(ips: &[[u8; 4]]) -> BTreeSet<Ipv4Addr> {
        ips.iter().map(|o| Ipv4Addr::from(*o)).collect()
    }

    #[test]
    fn the_filter_admits_each_peer_and_drops_the_rest() {
        assert_eq!(
            filter_rules(&peers(&[[172, 18, 0, 4], [172, 18, 0, 3]])),
            "*filter\n\
             :MINIKIND-OVERLAY - [0:0]\n\
             -A MINIKIND-OVERLAY -s 172.18.0.3/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.3\" -j ACCEPT\n\
             -A MINIKIND-OVERLAY -s 172.18.0.4/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.4\" -j ACCEPT\n\
             -A MINIKIND-OVERLAY -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP\n\
             COMMIT\n"
        );
        // No peer yet (a single node, or before the first Node list): nobody is admitted.
        assert_eq!(
            filter_rules(&BTreeSet::new()),
            "*filter\n\
             :MINIKIND-OVERLAY - [0:0]\n\
             -A MINIKIND-OVERLAY -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP\n\
             COMMIT\n"
        );
        assert_eq!(
            jump_rule().join(" "),
            "-p udp -m udp --dport 4789 -m comment --comment minikind: VXLAN only from the \
             cluster nodes -j MINIKIND-OVERLAY"
        );
    }

    fn filter_dump() -> Vec<String> {
        let out = Command::new("iptables-save")
            .args(["-t", "filter"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(str::to_string)
            .collect()
    }

    /// In a network namespace of its own: the chain follows the peer set, replaced whole, and
    /// INPUT jumps to it once however often it is applied (an agent restart applies it again).
    #[test]
    fn the_filter_follows_the_peers_with_one_jump() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let jump = "-A INPUT -p udp -m udp --dport 4789 -m comment --comment \
                        \"minikind: VXLAN only from the cluster nodes\" -j MINIKIND-OVERLAY";
            ensure_filter("iptables", &peers(&[[172, 18, 0, 3], [172, 18, 0, 4]])).unwrap();
            // A stranger's datagram to the VXLAN port (here from loopback) is dropped and
            // counted; applying the same peers again keeps the chain, and so its counters.
            let out = Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.send_to(b"not from a node", "127.0.0.1:4789").unwrap();
            ensure_filter("iptables", &peers(&[[172, 18, 0, 3], [172, 18, 0, 4]])).unwrap();
            let out = Command::new("iptables-save")
                .args(["-c", "-t", "filter"])
                .output()
                .unwrap();
            let counted = String::from_utf8_lossy(&out.stdout);
            assert!(
                counted.lines().any(|l| l.starts_with("[1:") && l.ends_with("-j DROP")),
                "{counted}"
            );
            let rules = filter_dump();
            assert_eq!(
                rules,
                [
                    jump,
                    "-A MINIKIND-OVERLAY -s 172.18.0.3/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.3\" -j ACCEPT",
                    "-A MINIKIND-OVERLAY -s 172.18.0.4/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.4\" -j ACCEPT",
                    "-A MINIKIND-OVERLAY -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP",
                ],
                "{rules:#?}"
            );
            // A peer leaves, another joins; someone else's INPUT rule stays where it is.
            let out = Command::new("iptables")
                .args(["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            ensure_filter("iptables", &peers(&[[172, 18, 0, 5], [172, 18, 0, 4]])).unwrap();
            let rules = filter_dump();
            assert_eq!(
                rules,
                [
                    jump,
                    "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
                    "-A MINIKIND-OVERLAY -s 172.18.0.4/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.4\" -j ACCEPT",
                    "-A MINIKIND-OVERLAY -s 172.18.0.5/32 -m comment --comment \"minikind: VXLAN from node 172.18.0.5\" -j ACCEPT",
                    "-A MINIKIND-OVERLAY -m comment --comment \"minikind: VXLAN from anyone but a node\" -j DROP",
                ],
                "{rules:#?}"
            );
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn the_tunnel_mac_is_the_nodes_own_on_every_start() {
        let ip: Ipv4Addr = "172.18.0.3".parse().unwrap();
        assert_eq!(device_mac(ip), "0a:58:ac:12:00:03");
        assert_eq!(device_mac(ip), device_mac("172.18.0.3".parse().unwrap()));
        assert_ne!(device_mac(ip), device_mac("172.18.0.4".parse().unwrap()));
    }

    #[test]
    fn both_ends_agree_on_the_id_and_names_fit() {
        let (a, b) = (Ipv4Addr::new(172, 18, 0, 2), Ipv4Addr::new(172, 18, 0, 3));
        assert_eq!(vni(a, b), vni(b, a));
        assert!((1..0x00ff_ffff).contains(&vni(a, b)));
        assert_ne!(vni(a, b), vni(a, Ipv4Addr::new(172, 18, 0, 4)));
        assert!(device_name(b).len() <= 15);
        assert_ne!(device_name(a), device_name(b));
    }
}
