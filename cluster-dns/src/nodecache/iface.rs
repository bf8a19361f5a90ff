//! The interface that holds the cache's addresses (k8s-dns-node-cache pkg/netif:
//! `EnsureDummyDevice`, `RemoveDummyDevice`), made with iproute2's `ip`.
//!
//! node-cache makes a `dummy` link. The kernels minikind runs on may lack that link type (and
//! cannot load modules), so the interface is a **bridge with no ports**: of the link types such
//! a kernel has (veth, bridge, vxlan), it is the one that, like a dummy, is a single device
//! needing no peer (a veth pair would leave a second end behind) and no remote or VNI (vxlan),
//! holds addresses as host-local ones (the kernel adds the `local` route at address time, up or
//! down, as for a dummy), and takes its addresses with it when deleted. Like node-cache, it is
//! left down: nothing is ever sent out of it.

use std::net::IpAddr;
use std::process::Command;

/// The link type the interface is made as (see the module comment for why not `dummy`).
pub const LINK_KIND: &str = "bridge";

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether the link exists.
pub fn exists(name: &str) -> Result<bool, String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "dev", name])
        .output()
        .map_err(|e| format!("running ip link show {name}: {e}"))?;
    Ok(out.status.success())
}

/// The addresses the link holds now.
pub fn addresses(name: &str) -> Result<Vec<IpAddr>, String> {
    let out = ip(&["-o", "addr", "show", "dev", name])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|t| *t == "inet" || *t == "inet6")?;
            w.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

/// Makes sure the link exists and holds every address (each a host address, /32 or /128).
/// Returns whether the link had to be created.
pub fn ensure(name: &str, ips: &[IpAddr]) -> Result<bool, String> {
    let created = if exists(name)? {
        false
    } else {
        ip(&["link", "add", name, "type", LINK_KIND])?;
        true
    };
    let have = addresses(name)?;
    for a in ips.iter().filter(|a| !have.contains(a)) {
        let bits = if a.is_ipv4() { 32 } else { 128 };
        ip(&["addr", "add", &format!("{a}/{bits}"), "dev", name])?;
    }
    Ok(created)
}

/// Deletes the link (and so its addresses); a link already gone is not an error.
pub fn remove(name: &str) -> Result<(), String> {
    if exists(name)? {
        ip(&["link", "del", name])?;
    }
    Ok(())
}
