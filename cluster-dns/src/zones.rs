//! Which server block serves a name on one listening address: the zone table (longest zone
//! wins; a reverse zone written as a CIDR also needs the address inside the network), and its
//! swappable handle that a reload replaces without closing sockets.

use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::chain::Block;
use crate::corefile::address::address_from_reverse;
use crate::dnsmsg::in_zone;

/// The blocks reachable on one listening address, longest zone first.
pub struct ZoneTable {
    pub entries: Vec<(String, Option<IpNet>, Arc<Block>)>,
    /// Shown as the "to" side of the loop message and in logs (`:53` for a wildcard bind).
    pub display: String,
}

impl ZoneTable {
    pub fn new(mut entries: Vec<(String, Option<IpNet>, Arc<Block>)>, display: String) -> Self {
        entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        ZoneTable { entries, display }
    }

    /// The block serving a name: the longest zone containing it (reverse zones written as a
    /// CIDR also require the address to be inside the network).
    pub fn select(&self, qname_lc: &str) -> Option<(&str, &Arc<Block>)> {
        for (zone, net, block) in &self.entries {
            if !in_zone(qname_lc, zone) {
                continue;
            }
            if let Some(net) = net {
                match address_from_reverse(qname_lc) {
                    Some(ip) if net.contains(&ip) => {}
                    _ => continue,
                }
            }
            return Some((zone.as_str(), block));
        }
        None
    }
}

/// A swappable zone table (reload replaces it without closing sockets).
pub type SharedTable = Arc<RwLock<Arc<ZoneTable>>>;
