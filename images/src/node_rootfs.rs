//! What goes into the node image, gathered from the host.

use std::path::{Path, PathBuf};

use crate::elf_deps::{self, ElfDepsError};
use crate::rootfs::{Rootfs, RootfsError, RootfsTar};
// Where the minikind executable lives inside every node; the tools are symlinks to it and it
// dispatches on the name it was started as.
use minikind_contract::MINIKIND_PATH;

/// Names under which the node and its pods can call minikind's built-in tools.
pub const TOOL_LINKS: &[&str] = &[
    "cluster-dns",
    "dig",
    "nslookup",
    "getent",
    "netns",
    "lab-upstream",
    "dns-embedded",
    "cat",
    "sleep",
];

const IPTABLES_FLAVOURS: &[&str] = &["legacy", "nft"];

#[derive(Debug, thiserror::Error)]
pub enum NodeRootfsError {
    #[error(
        "the host has no {binary} (looked in {searched}); the node image needs the host's \
         iptables suite: install it, e.g. `apt-get install iptables`"
    )]
    MissingIptables { binary: String, searched: String },
    #[error(
        "the host has no {binary} (looked in {searched}); the node image needs it: install it, \
         e.g. `apt-get install {package}`"
    )]
    MissingHostProgram {
        binary: String,
        package: &'static str,
        searched: String,
    },
    #[error("finding the shared libraries of the node's programs: {0}")]
    Elf(#[from] ElfDepsError),
    #[error("assembling the node rootfs: {0}")]
    Rootfs(#[from] RootfsError),
}

/// Host directories searched for programs, as root's PATH would.
pub(crate) const HOST_BIN_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

fn find_program_in(dirs: &[&str], name: &str) -> Option<PathBuf> {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Adds iptables (both back ends, with KIND's names), iproute2's `ip` and everything they load
/// — shared libraries of `elf_roots` and of themselves, the dlopen()ed xtables extensions — to
/// `fs`, from the programs found in `bin_dirs`. The node image holds them, and so does the tools
/// image a node builds from its own files (node-cache's pods set up their rules with them, as
/// k8s-dns-node-cache's image carries iptables).
pub(crate) fn add_network_tools(
    fs: &mut Rootfs,
    bin_dirs: &[&str],
    mut elf_roots: Vec<PathBuf>,
) -> Result<(), NodeRootfsError> {
    // iptables: both back ends, with KIND's names. The plain `iptables*` names are left to the
    // node agent, which points them at whichever flavour Docker used (as KIND's entrypoint does).
    for flavour in IPTABLES_FLAVOURS {
        let multi = format!("xtables-{flavour}-multi");
        let host =
            find_program_in(bin_dirs, &multi).ok_or_else(|| NodeRootfsError::MissingIptables {
                binary: multi.clone(),
                searched: bin_dirs.join(", "),
            })?;
        fs.copy_host_file_to(&host, Path::new("/usr/sbin").join(&multi))?;
        tracing::debug!(binary = %host.display(), %flavour, "iptables");
        elf_roots.push(host);
        for family in ["iptables", "ip6tables"] {
            for suffix in ["", "-save", "-restore"] {
                fs.symlink(
                    format!("/usr/sbin/{family}-{flavour}{suffix}"),
                    multi.as_str(),
                )?;
            }
        }
    }
    // iproute2's `ip`: the agent wires pod namespaces with it, and people poking around a
    // node expect it as on a KIND node.
    let ip =
        find_program_in(bin_dirs, "ip").ok_or_else(|| NodeRootfsError::MissingHostProgram {
            binary: "ip".into(),
            package: "iproute2",
            searched: bin_dirs.join(", "),
        })?;
    fs.copy_host_file_to(&ip, "/usr/sbin/ip")?;
    elf_roots.push(ip);
    // nftables' `nft`, where the host has it (Debian's `nftables`): kube-proxy's nftables mode
    // writes its table with it. Without it only that mode is unavailable.
    if let Some(nft) = find_program_in(bin_dirs, "nft") {
        fs.copy_host_file_to(&nft, "/usr/sbin/nft")?;
        elf_roots.push(nft);
    }
    if Path::new("/etc/iproute2").is_dir() {
        for e in std::fs::read_dir("/etc/iproute2")
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().is_file() {
                fs.copy_host_path(e.path())?;
            }
        }
    }

    // xtables extensions (`-m statistic`, `-j DNAT`, …) are dlopen()ed, not DT_NEEDED: take
    // the whole directory that sits beside libxtables.
    let lib_dirs = elf_deps::host_library_dirs();
    let all_libs = elf_deps::closure(&elf_roots, &lib_dirs)?;
    let mut ext_files = Vec::new();
    for lib in &all_libs {
        if lib
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libxtables.so"))
        {
            let real = std::fs::canonicalize(lib).unwrap_or(lib.clone());
            if let Some(dir) = real.parent().map(|d| d.join("xtables"))
                && let Ok(rd) = std::fs::read_dir(&dir)
            {
                ext_files.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    ext_files.sort();
    let ext_libs = elf_deps::closure(&ext_files, &lib_dirs)?;
    tracing::debug!(
        libraries = all_libs.len(),
        xtables_extensions = ext_files.len(),
        extension_libraries = ext_libs.len(),
        "iptables and ip: shared libraries from the ELF dependencies"
    );
    for path in all_libs
        .iter()
        .chain(ext_files.iter())
        .chain(ext_libs.iter())
    {
        fs.copy_host_path(path)?;
    }
    Ok(())
}

/// Builds the node rootfs around the given minikind executable.
pub fn build_node_rootfs(minikind_exe: &Path) -> Result<RootfsTar, NodeRootfsError> {
    build_node_rootfs_from(minikind_exe, HOST_BIN_DIRS)
}

/// [`build_node_rootfs`] with the host's program directories given (tests use an empty one to
/// see the missing-iptables error).
fn build_node_rootfs_from(
    minikind_exe: &Path,
    bin_dirs: &[&str],
) -> Result<RootfsTar, NodeRootfsError> {
    let find_host_program = |name: &str| find_program_in(bin_dirs, name);
    let lib_dirs = elf_deps::host_library_dirs();
    let mut fs = Rootfs::new();
    let mut elf_roots = Vec::new();

    for dir in [
        "/proc",
        "/sys",
        "/dev",
        "/run",
        "/var/lib/minikind",
        "/etc/kubernetes",
        // The kubelet's serving certificate (`KUBELET_SERVING_PEM`), written by the CLI.
        "/var/lib/kubelet/pki",
        "/root",
        "/var/log",
    ] {
        fs.dir(dir, 0o755)?;
    }
    fs.dir("/tmp", 0o1777)?;

    fs.copy_host_file_to(minikind_exe, MINIKIND_PATH)?;
    elf_roots.push(minikind_exe.to_owned());
    for tool in TOOL_LINKS {
        fs.symlink(Path::new("/usr/local/bin").join(tool), "minikind")?;
    }

    add_network_tools(&mut fs, bin_dirs, elf_roots)?;

    // busybox is a bonus for people poking around a node by hand; minikind has its own tools.
    let busybox = find_host_program("busybox");
    match &busybox {
        Some(bb) => tracing::debug!(busybox = %bb.display(), "node image: busybox included"),
        None => tracing::debug!("node image: the host has no busybox; leaving it out"),
    }
    if let Some(bb) = busybox {
        fs.copy_host_file_to(&bb, "/bin/busybox")?;
        let deps = elf_deps::closure(&[bb], &lib_dirs)?;
        for path in deps {
            fs.copy_host_path(path)?;
        }
        for applet in ["sh", "ls", "ps", "ip", "cat", "ping", "wget", "vi"] {
            let link = Path::new("/bin").join(applet);
            if !fs.contains(&link) {
                fs.symlink(link, "busybox")?;
            }
        }
    }

    // Data files iptables and libc read at run time.
    for file in ["/etc/protocols", "/etc/services", "/etc/ethertypes"] {
        if Path::new(file).is_file() {
            fs.copy_host_path(file)?;
        }
    }
    fs.file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    fs.file("/etc/group", "root:x:0:\n", 0o644)?;
    fs.file(
        "/etc/nsswitch.conf",
        "hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
        0o644,
    )?;
    // Docker bind-mounts its own hosts, hostname and resolv.conf over these.
    fs.file("/etc/hosts", "127.0.0.1 localhost\n", 0o644)?;
    fs.file("/etc/hostname", "", 0o644)?;
    fs.file("/etc/resolv.conf", "", 0o644)?;
    fs.file(
        "/etc/os-release",
        "NAME=\"minikind node\"\nID=minikind\nPRETTY_NAME=\"minikind node image\"\n",
        0o644,
    )?;

    let files = fs.len();
    let tar = fs.to_tar()?;
    tracing::debug!(
        files,
        bytes = tar.bytes.len(),
        sha256 = %tar.sha256,
        "node image: rootfs assembled"
    );
    Ok(tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_iptables_gets_an_error_saying_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let dir = empty.path().to_str().unwrap();
        let me = std::env::current_exe().unwrap();
        let err = build_node_rootfs_from(&me, &[dir]).unwrap_err().to_string();
        assert!(
            err.contains("xtables-legacy-multi") && err.contains("apt-get install iptables"),
            "{err}"
        );
        assert!(err.contains(dir), "{err}");
    }

    #[test]
    fn the_node_rootfs_has_the_binary_iptables_and_their_libraries() {
        // A prerequisite of the suite (README): a missing suite fails here, never skips.
        assert!(
            find_program_in(HOST_BIN_DIRS, "xtables-nft-multi").is_some(),
            "this host has no iptables suite: apt-get install iptables"
        );
        let me = std::env::current_exe().unwrap();
        let tar = build_node_rootfs(&me).unwrap();
        let mut a = tar::Archive::new(tar.bytes.as_slice());
        let names: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for want in [
            "usr/local/bin/minikind",
            "usr/local/bin/dig",
            "usr/sbin/xtables-nft-multi",
            "usr/sbin/xtables-legacy-multi",
            "usr/sbin/iptables-nft-save",
            "usr/sbin/iptables-legacy-restore",
            "etc/nsswitch.conf",
            "usr/sbin/ip",
            // The suite's prerequisites include nftables (README): kubeProxyMode nftables.
            "usr/sbin/nft",
        ] {
            assert!(names.iter().any(|n| n == want), "missing {want}");
        }
        assert!(
            names.iter().any(|n| n.contains("libnftables.so")),
            "nft's library is missing"
        );
        // Every tool pods call is minikind's own, whatever busybox the host may add: each
        // name is a link to the minikind executable.
        let mut a = tar::Archive::new(tar.bytes.as_slice());
        let links: Vec<(String, String)> = a
            .entries()
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let target = e.link_name().unwrap()?.display().to_string();
                Some((e.path().unwrap().display().to_string(), target))
            })
            .collect();
        for tool in [
            "dig",
            "nslookup",
            "getent",
            "cat",
            "sleep",
            "cluster-dns",
            "netns",
        ] {
            let path = format!("usr/local/bin/{tool}");
            let target = links.iter().find(|(p, _)| *p == path).map(|(_, t)| t);
            assert!(
                target.is_some_and(|t| t == "minikind" || t == MINIKIND_PATH),
                "{path} is not a link to minikind: {target:?}"
            );
        }
        assert!(names.iter().any(|n| n.contains("libxtables.so")));
        assert!(names.iter().any(|n| n.contains("libnftnl.so")));
        assert!(
            names
                .iter()
                .any(|n| n.ends_with("xtables/libxt_statistic.so"))
        );
        assert!(names.iter().any(|n| n.contains("ld-linux")));
        assert_eq!(tar.sha256.len(), 64);
    }
}
