//! ClusterIP and NodePort allocation, done synchronously when a Service is written (as the real
//! API server's REST storage does), so that a duplicate explicit IP is refused with 422.
//!
//! Random allocations come from the upper part of the range; the lower band (first
//! `min(max(16, size/16), 256)` addresses) is left for explicit assignments such as the
//! `kubernetes` service at the first address and `kube-dns` at the tenth.

use ipnet::Ipv4Net;
use rand::Rng;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    #[error("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}")]
    OutOfRange { ip: Ipv4Addr, range: Ipv4Net },
    #[error("provided IP is already allocated")]
    AlreadyAllocated,
    #[error("range is full")]
    Full,
    #[error("provided port is already allocated")]
    PortAllocated,
    #[error("provided port is not in the valid range. The range of valid ports is 30000-32767")]
    PortOutOfRange,
}

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

#[derive(Debug)]
pub struct ServiceAllocator {
    cidr: Ipv4Net,
    ips: Mutex<HashSet<Ipv4Addr>>,
    ports: Mutex<HashSet<u16>>,
}

impl ServiceAllocator {
    pub fn new(cidr: Ipv4Net) -> Self {
        ServiceAllocator {
            cidr: cidr.trunc(),
            ips: Mutex::new(HashSet::new()),
            ports: Mutex::new(HashSet::new()),
        }
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The n-th address of the range (1 = `kubernetes`, 10 = `kube-dns`).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()) + n)
    }

    fn size(&self) -> u32 {
        let host_bits = 32 - u32::from(self.cidr.prefix_len());
        if host_bits >= 32 {
            u32::MAX
        } else {
            1u32 << host_bits
        }
    }

    /// Claims a specific address.
    pub fn claim(&self, ip: Ipv4Addr) -> Result<(), AllocError> {
        let off = u32::from(ip).wrapping_sub(u32::from(self.cidr.network()));
        if !self.cidr.contains(&ip) || off == 0 || off >= self.size() - 1 {
            return Err(AllocError::OutOfRange {
                ip,
                range: self.cidr,
            });
        }
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        if !ips.insert(ip) {
            return Err(AllocError::AlreadyAllocated);
        }
        Ok(())
    }

    /// Allocates a free address at random from the dynamic (upper) band, then the lower band.
    pub fn allocate(&self) -> Result<Ipv4Addr, AllocError> {
        let size = self.size();
        if size < 4 {
            return Err(AllocError::Full);
        }
        let usable = size - 2;
        let low_band = (size / 16).clamp(16, 256).min(usable);
        let mut ips = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        let base = u32::from(self.cidr.network());
        let mut rng = rand::rng();
        for (lo, hi) in [(low_band + 1, size - 1), (1, low_band + 1)] {
            if lo >= hi {
                continue;
            }
            let span = hi - lo;
            let start = rng.random_range(0..span);
            // Walk from a random start so allocation stays O(1) on average and still finds the
            // last free address when the band is nearly full.
            for i in 0..span {
                let ip = Ipv4Addr::from(base + lo + (start + i) % span);
                if ips.insert(ip) {
                    return Ok(ip);
                }
            }
        }
        Err(AllocError::Full)
    }

    pub fn release(&self, ip: Ipv4Addr) {
        self.ips
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    pub fn claim_port(&self, port: u16) -> Result<(), AllocError> {
        if !NODE_PORT_RANGE.contains(&port) {
            return Err(AllocError::PortOutOfRange);
        }
        if !self
            .ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(port)
        {
            return Err(AllocError::PortAllocated);
        }
        Ok(())
    }

    pub fn allocate_port(&self) -> Result<u16, AllocError> {
        let mut ports = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        let lo = *NODE_PORT_RANGE.start();
        let span = u32::from(NODE_PORT_RANGE.end() - lo) + 1;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let p = lo + ((start + i) % span) as u16;
            if ports.insert(p) {
                return Ok(p);
            }
        }
        Err(AllocError::Full)
    }

    pub fn release_port(&self, port: u16) {
        self.ports
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
    }

    /// Records the addresses and ports of an existing Service (at start-up, from the store).
    pub fn record_existing(&self, svc: &serde_json::Value) {
        for ip in cluster_ips(svc) {
            self.ips
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(ip);
        }
        for p in node_ports(svc) {
            self.ports
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(p);
        }
    }

    /// Releases everything a deleted Service held.
    pub fn release_service(&self, svc: &serde_json::Value) {
        for ip in cluster_ips(svc) {
            self.release(ip);
        }
        for p in node_ports(svc) {
            self.release_port(p);
        }
    }
}

/// The IPv4 cluster IPs a Service holds (none for headless and ExternalName services).
pub fn cluster_ips(svc: &serde_json::Value) -> Vec<Ipv4Addr> {
    let spec = svc.get("spec");
    let mut out: Vec<Ipv4Addr> = spec
        .and_then(|s| s.get("clusterIPs"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if out.is_empty()
        && let Some(ip) = spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
    {
        out.push(ip);
    }
    out
}

pub fn node_ports(svc: &serde_json::Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|p| p.get("nodePort")?.as_u64())
                .filter_map(|p| u16::try_from(p).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_random_duplicate_and_release() {
        let a = ServiceAllocator::new("10.96.0.0/16".parse().unwrap());
        assert_eq!(a.nth(10), Ipv4Addr::new(10, 96, 0, 10));
        a.claim(a.nth(10)).unwrap();
        assert_eq!(a.claim(a.nth(10)), Err(AllocError::AlreadyAllocated));
        assert!(matches!(
            a.claim(Ipv4Addr::new(10, 97, 0, 1)),
            Err(AllocError::OutOfRange { .. })
        ));
        let ip = a.allocate().unwrap();
        // Random allocations stay out of the low band reserved for explicit addresses.
        assert!(u32::from(ip) - u32::from(Ipv4Addr::new(10, 96, 0, 0)) > 256);
        a.release(a.nth(10));
        a.claim(a.nth(10)).unwrap();
    }

    #[test]
    fn small_range_fills_up() {
        let a = ServiceAllocator::new("10.0.0.0/29".parse().unwrap());
        let mut got = HashSet::new();
        for _ in 0..6 {
            assert!(got.insert(a.allocate().unwrap()));
        }
        assert_eq!(a.allocate(), Err(AllocError::Full));
    }
}
