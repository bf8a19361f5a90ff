//! Network namespaces wired to the node the way pods are: a veth pair from the namespace's
//! `eth0` to a node bridge whose address is the namespace's gateway, plus an optional
//! resolv.conf that `exec` mounts over `/etc/resolv.conf` (as `ip netns exec` does).
//!
//! The kubelet role builds pods on this; on its own it is `minikind netns`, a pod stand-in for
//! demos and tests ("what does DNS look like from a namespace that is not the node's?").

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ipnet::Ipv4Net;

/// The node bridge pods hang off (KIND's kindnet uses plain veths; a bridge keeps the
/// gateway on one address for every pod of the node).
pub const DEFAULT_BRIDGE: &str = "mkbr0";

const NETNS_DIR: &str = "/run/netns";
const NETNS_ETC: &str = "/etc/netns";

/// Runs iproute2's `ip` (the node's one way to make links, addresses, routes and
/// namespaces) and returns its standard output; a failure names the command and its message.
pub fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Makes sure the node bridge exists, is up and carries `gateway` (idempotent).
pub fn ensure_bridge(bridge: &str, gateway: Ipv4Net) -> Result<()> {
    if !link_exists(bridge) {
        ip(&["link", "add", bridge, "type", "bridge"])?;
    }
    let addrs = ip(&["-4", "-o", "addr", "show", "dev", bridge])?;
    if !addrs.contains(&format!(" {gateway} ")) {
        ip(&["addr", "add", &gateway.to_string(), "dev", bridge])?;
    }
    ip(&["link", "set", bridge, "up"]).map(drop)
}

/// The host-side veth name: at most 15 characters, stable for a namespace name.
pub fn host_veth_name(netns: &str) -> String {
    format!("veth{:08x}", fnv64(netns.as_bytes()) as u32)
}

/// What `add` needs to wire one namespace.
#[derive(Debug, Clone)]
pub struct NetnsSpec {
    pub name: String,
    /// The namespace's address with the bridge subnet's prefix, e.g. 10.244.0.5/24.
    pub address: Ipv4Net,
    /// The bridge address, also the namespace's default route.
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub resolv_conf: Option<String>,
}

pub fn add(spec: &NetnsSpec) -> Result<()> {
    validate_name(&spec.name)?;
    if !spec.address.contains(&spec.gateway) {
        bail!(
            "gateway {} is not inside {} of namespace {}",
            spec.gateway,
            spec.address,
            spec.name
        );
    }
    let gw_net = Ipv4Net::new(spec.gateway, spec.address.prefix_len()).context("gateway prefix")?;
    ensure_bridge(&spec.bridge, gw_net)?;
    if Path::new(NETNS_DIR).join(&spec.name).exists() {
        bail!("network namespace {} already exists", spec.name);
    }
    let result = wire(spec);
    if result.is_err() {
        // Leave nothing half-made behind.
        let _ = delete(&spec.name);
    }
    result
}

fn wire(spec: &NetnsSpec) -> Result<()> {
    let ns = spec.name.as_str();
    let veth = host_veth_name(ns);
    ip(&["netns", "add", ns])?;
    if let Some(text) = &spec.resolv_conf {
        let dir = Path::new(NETNS_ETC).join(ns);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("resolv.conf"), text)
            .context("writing the namespace's resolv.conf")?;
    }
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])?;
    ip(&["link", "set", &veth, "master", &spec.bridge, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        ns,
        "addr",
        "add",
        &spec.address.to_string(),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &spec.gateway.to_string(),
    ])?;
    Ok(())
}

/// Whether a pinned namespace of that name exists.
pub fn exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// The IPv4 address (with prefix) of the namespace's `eth0`, if it has one.
pub fn address_of(name: &str) -> Result<Option<Ipv4Net>> {
    validate_name(name)?;
    let out = Command::new("ip")
        .args(["-n", name, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .context("running ip addr show")?;
    if !out.status.success() {
        return Ok(None);
    }
    // `2: eth0    inet 10.244.0.5/24 scope global eth0 ...`
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.parse().ok()))
}

/// The pinned namespaces whose names start with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Removes the namespace (its veth pair goes with it) and its `/etc/netns` files.
pub fn delete(name: &str) -> Result<()> {
    validate_name(name)?;
    let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(name));
    if Path::new(NETNS_DIR).join(name).exists() {
        ip(&["netns", "delete", name])?;
    }
    Ok(())
}

/// Replaces this process with `argv` inside the namespace, with the namespace's
/// `/etc/netns/<name>/*` files mounted over `/etc` in a private mount namespace.
pub fn exec(name: &str, argv: &[OsString]) -> Result<std::convert::Infallible> {
    use nix::mount::{MsFlags, mount};
    use nix::sched::{CloneFlags, setns, unshare};
    use std::os::unix::process::CommandExt;

    validate_name(name)?;
    let path: PathBuf = Path::new(NETNS_DIR).join(name);
    let fd = std::fs::File::open(&path)
        .with_context(|| format!("network namespace {name} does not exist"))?;
    setns(&fd, CloneFlags::CLONE_NEWNET).context("entering the network namespace")?;
    unshare(CloneFlags::CLONE_NEWNS).context("making a private mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("making / a slave mount")?;
    let etc = Path::new(NETNS_ETC).join(name);
    if let Ok(entries) = std::fs::read_dir(&etc) {
        for e in entries.flatten() {
            let target = Path::new("/etc").join(e.file_name());
            mount(
                Some(&e.path()),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| {
                format!("mounting {} over {}", e.path().display(), target.display())
            })?;
        }
    }
    let Some((prog, rest)) = argv.split_first() else {
        bail!("no command to run in namespace {name}");
    };
    let err = Command::new(prog).args(rest).exec();
    Err(err).with_context(|| format!("running {}", prog.to_string_lossy()))
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if !ok {
        bail!("invalid namespace name {name:?}: use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// FNV-1a: enough to spread link names and VXLAN ids; not a security boundary.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

#[derive(Debug, Parser)]
#[command(
    name = "netns",
    about = "Network namespaces wired to this node like pods"
)]
struct NetnsCli {
    #[command(subcommand)]
    command: NetnsCommand,
}

#[derive(Debug, Subcommand)]
enum NetnsCommand {
    /// Create a namespace with eth0 on the node bridge.
    Add {
        name: String,
        /// Address with prefix, e.g. 10.244.0.5/24.
        #[arg(long)]
        address: Ipv4Net,
        /// Bridge address and default route, e.g. 10.244.0.1.
        #[arg(long)]
        gateway: Ipv4Addr,
        #[arg(long, default_value = DEFAULT_BRIDGE)]
        bridge: String,
        /// A resolv.conf for the namespace (`node` = a copy of the node's).
        #[arg(long)]
        resolv_conf: Option<String>,
    },
    /// Run a command inside a namespace.
    Exec {
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<OsString>,
    },
    /// Delete a namespace and its veth pair.
    Delete { name: String },
}

/// `minikind netns …`
pub fn netns_cli_main(args: Vec<OsString>) -> i32 {
    let cli = match NetnsCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = match cli.command {
        NetnsCommand::Add {
            name,
            address,
            gateway,
            bridge,
            resolv_conf,
        } => (|| {
            let resolv_conf = match resolv_conf.as_deref() {
                None => None,
                Some("node") => Some(
                    std::fs::read_to_string("/etc/resolv.conf")
                        .context("reading the node's /etc/resolv.conf")?,
                ),
                Some(path) => {
                    Some(std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?)
                }
            };
            add(&NetnsSpec {
                name,
                address,
                gateway,
                bridge,
                resolv_conf,
            })
        })(),
        NetnsCommand::Exec { name, command } => exec(&name, &command).map(|_| ()),
        NetnsCommand::Delete { name } => delete(&name),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("netns: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernel_limit_and_are_stable() {
        let a = host_veth_name("a-very-long-namespace-name-indeed");
        assert!(a.len() <= 15, "{a}");
        assert_eq!(a, host_veth_name("a-very-long-namespace-name-indeed"));
        assert_ne!(a, host_veth_name("another"));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("pod-1").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gateway_outside_the_subnet_is_refused_before_anything_is_made() {
        let e = add(&NetnsSpec {
            name: "t".into(),
            address: "10.244.0.5/24".parse().unwrap(),
            gateway: "10.9.9.1".parse().unwrap(),
            bridge: "mkbr-test".into(),
            resolv_conf: None,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("not inside"), "{e}");
    }
}
