//! Pod-to-pod traffic between nodes on an `--internal` Docker network.
//!
//! KIND (kindnet) routes each peer's pod CIDR via the peer's node IP. On a Docker `--internal`
//! network that cannot work: Docker's isolation rules on the host drop every bridged packet
//! whose source or destination lies outside the network's subnet, and pod addresses do. So on
//! such a network each pair of nodes gets a point-to-point VXLAN link (the one tunnel type this
//! kernel offers) and the peer's pod CIDR is routed through it, to the peer's bridge address;
//! the packets on the wire are node-to-node UDP, which the network allows. Everything stays
//! on the machine.

use anyhow::{Result, bail};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

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
pub fn vni(a: Ipv4Addr, b: Ipv4Addr) -> u32 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut key = lo.octets().to_vec();
    key.extend(hi.octets());
    fnv(&key) % 0x00ff_fffe + 1
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
