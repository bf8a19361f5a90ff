//! Pod IP allocation from the node's pod CIDR, persisted under the kubelet's root so that a
//! restarted kubelet neither forgets which pod holds which address nor hands one out twice
//! (the job CNI's `host-local` IPAM does for a real kubelet).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub uid: String,
    /// `<namespace>/<name>`, for people reading the file.
    pub pod: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The range the allocations belong to, as text (`10.244.1.0/24`).
    cidr: Option<String>,
    /// The last address handed out; the next search starts after it, so a just-released
    /// address is not reused at once (a late packet for the old pod must not reach a new one).
    last: Option<Ipv4Addr>,
    allocations: BTreeMap<Ipv4Addr, Holder>,
}

/// The allocator; every change is written to disk before it is returned.
#[derive(Debug)]
pub struct PodIpam {
    path: PathBuf,
    cidr: Ipv4Net,
    gateway: Ipv4Addr,
    state: State,
}

impl PodIpam {
    /// Opens (or starts) the allocation file `<root>/ipam.json` for `cidr`. The first address
    /// of the range is the bridge's and never handed out. A file written for another CIDR (the
    /// node was given a new range) starts over empty.
    pub fn open(root: &Path, cidr: Ipv4Net) -> Result<PodIpam> {
        let cidr = cidr.trunc();
        if cidr.prefix_len() > 30 {
            bail!("pod CIDR {cidr} is too small for a gateway and pods");
        }
        let path = root.join("ipam.json");
        let mut state: State = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the pod IP allocations in {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", path.display()));
            }
        };
        let cidr_text = cidr.to_string();
        if state.cidr.as_deref() != Some(cidr_text.as_str()) {
            if state.cidr.is_some() && !state.allocations.is_empty() {
                tracing::warn!(
                    "pod CIDR changed from {:?} to {cidr}: forgetting {} allocations",
                    state.cidr,
                    state.allocations.len()
                );
            }
            state = State {
                cidr: Some(cidr_text),
                ..State::default()
            };
        }
        let gateway = gateway_of(cidr);
        let ipam = PodIpam {
            path,
            cidr,
            gateway,
            state,
        };
        ipam.save()?;
        Ok(ipam)
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The bridge's address (the pods' default route).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The address held by `uid`, if any.
    pub fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.state
            .allocations
            .iter()
            .find(|(_, h)| h.uid == uid)
            .map(|(ip, _)| *ip)
    }

    /// The address of `uid`: the one it already holds, else the next free one.
    pub fn allocate(&mut self, uid: &str, pod: &str) -> Result<Ipv4Addr> {
        if let Some(ip) = self.get(uid) {
            return Ok(ip);
        }
        let first = u32::from(self.gateway) + 1;
        let last = u32::from(self.cidr.broadcast()) - 1;
        let start = self
            .state
            .last
            .map(u32::from)
            .filter(|l| (first..=last).contains(l))
            .map_or(first, |l| if l >= last { first } else { l + 1 });
        let span = last - first + 1;
        let free = (0..span)
            .map(|i| first + (start - first + i) % span)
            .map(Ipv4Addr::from)
            .find(|ip| !self.state.allocations.contains_key(ip));
        let Some(ip) = free else {
            bail!(
                "no free pod IP left in {} ({} addresses in use)",
                self.cidr,
                self.state.allocations.len()
            );
        };
        self.state.allocations.insert(
            ip,
            Holder {
                uid: uid.to_string(),
                pod: pod.to_string(),
            },
        );
        self.state.last = Some(ip);
        self.save()?;
        Ok(ip)
    }

    /// Frees the address of `uid`; returns it if there was one.
    pub fn release(&mut self, uid: &str) -> Result<Option<Ipv4Addr>> {
        let Some(ip) = self.get(uid) else {
            return Ok(None);
        };
        self.state.allocations.remove(&ip);
        self.save()?;
        Ok(Some(ip))
    }

    /// Frees every address whose holder `keep` rejects; returns what was freed.
    pub fn retain(&mut self, keep: impl Fn(&Holder) -> bool) -> Result<Vec<(Ipv4Addr, Holder)>> {
        let gone: Vec<(Ipv4Addr, Holder)> = self
            .state
            .allocations
            .iter()
            .filter(|(_, h)| !keep(h))
            .map(|(ip, h)| (*ip, h.clone()))
            .collect();
        if !gone.is_empty() {
            for (ip, _) in &gone {
                self.state.allocations.remove(ip);
            }
            self.save()?;
        }
        Ok(gone)
    }

    /// Every allocation, by address.
    pub fn allocations(&self) -> impl Iterator<Item = (Ipv4Addr, &Holder)> {
        self.state.allocations.iter().map(|(ip, h)| (*ip, h))
    }

    /// Writes the state to a temporary file and renames it over the old one, so a crash
    /// leaves either the old or the new allocations, never half a file.
    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(&self.state).context("encoding pod IP allocations")?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))
    }
}

/// The bridge address of a pod range: its first host address (10.244.1.0/24 → 10.244.1.1).
pub fn gateway_of(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_after_the_gateway_and_keeps_a_pods_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = PodIpam::open(dir.path(), cidr("10.244.1.0/24")).unwrap();
        assert_eq!(ipam.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        let a = ipam.allocate("uid-a", "default/a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(ipam.allocate("uid-a", "default/a").unwrap(), a);
        let b = ipam.allocate("uid-b", "default/b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
    }

    #[test]
    fn survives_a_restart_and_does_not_reuse_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let range = cidr("10.244.2.0/24");
        let a;
        {
            let mut ipam = PodIpam::open(dir.path(), range).unwrap();
            a = ipam.allocate("uid-a", "default/a").unwrap();
            ipam.allocate("uid-b", "default/b").unwrap();
            assert_eq!(
                ipam.release("uid-b").unwrap(),
                Some(Ipv4Addr::new(10, 244, 2, 3))
            );
        }
        let mut ipam = PodIpam::open(dir.path(), range).unwrap();
        assert_eq!(ipam.get("uid-a"), Some(a));
        // .3 was released last: the next pod gets .4, not .3 and never .2.
        assert_eq!(
            ipam.allocate("uid-c", "default/c").unwrap(),
            Ipv4Addr::new(10, 244, 2, 4)
        );
    }

    #[test]
    fn a_full_range_is_an_error_naming_it_and_wraps_around() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = PodIpam::open(dir.path(), cidr("10.244.3.0/29")).unwrap();
        // .0 network, .1 gateway, .7 broadcast: .2 to .6 are for pods.
        for i in 0..5 {
            ipam.allocate(&format!("u{i}"), "ns/p").unwrap();
        }
        let e = ipam.allocate("u5", "ns/p").unwrap_err().to_string();
        assert!(e.contains("10.244.3.0/29"), "{e}");
        ipam.release("u1").unwrap();
        assert_eq!(
            ipam.allocate("u6", "ns/p").unwrap(),
            Ipv4Addr::new(10, 244, 3, 3)
        );
    }

    #[test]
    fn a_new_range_forgets_and_retain_frees() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = PodIpam::open(dir.path(), cidr("10.244.4.0/24")).unwrap();
        ipam.allocate("keep", "ns/keep").unwrap();
        ipam.allocate("drop", "ns/drop").unwrap();
        let gone = ipam.retain(|h| h.uid == "keep").unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].1.uid, "drop");
        let ipam = PodIpam::open(dir.path(), cidr("10.244.5.0/24")).unwrap();
        assert_eq!(ipam.allocations().count(), 0);
    }

    #[test]
    fn a_corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ipam.json"), "{not json").unwrap();
        let e = format!(
            "{:#}",
            PodIpam::open(dir.path(), cidr("10.244.1.0/24")).unwrap_err()
        );
        assert!(e.contains("ipam.json"), "{e}");
    }
}
