//! The images every node pre-loads into its image store, built from the node image's own files —
//! as a KIND node image ships CoreDNS, kindnet and its other images in containerd's store, so a
//! cluster needs no registry and no host images to start.
//!
//! Two images share one layer (a store unpacks a shared layer once):
//!
//! - the tools image ([`minikind_contract::TOOLS_IMAGE`], also `minikind/tools:latest`): the
//!   minikind executable with its tool names (`dig`, `nslookup`, `getent`, `cat`, `sleep`, …),
//!   busybox with every applet it lists (`sh`, `env`, `hostname`, `rm`, `tar`, `wget`, …) where
//!   the node has busybox, the shared libraries they load (read from their ELF dependencies, as
//!   the node image is made) and the `/etc` files a libc reads (users, groups, name service);
//! - the CoreDNS image under kubeadm's name (the caller passes it): the same files, with
//!   `cluster-dns` as its entrypoint where CoreDNS's image has `/coredns`.
//!
//! [`write_archive`] writes them as a legacy `docker save` archive, which the node's store
//! imports like any other (`minikind load` uses the same path).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use minikind_contract::{MINIKIND_PATH, TOOLS_IMAGE};
use sha2::{Digest, Sha256};

use crate::elf_deps::{self, ElfDepsError};
use crate::node_rootfs::{self, TOOL_LINKS};
use crate::rootfs::{Rootfs, RootfsError, RootfsTar};

/// The second tag of the tools image, for manifests that should not change with each release.
pub const TOOLS_IMAGE_LATEST: &str = "minikind/tools:latest";

/// The node's `/etc` files a libc (and busybox's applets) read, copied where the node has them.
const ETC_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/host.conf",
    "/etc/gai.conf",
];

#[derive(Debug, thiserror::Error)]
pub enum PreloadError {
    #[error("the node has no {0}: the tools image is built from it")]
    Missing(PathBuf),
    #[error("listing the applets of {path}: {message}")]
    Applets { path: PathBuf, message: String },
    #[error("finding the shared libraries of the tools image: {0}")]
    Elf(#[from] ElfDepsError),
    #[error("assembling the tools image: {0}")]
    Rootfs(#[from] RootfsError),
    #[error("adding iptables and ip to the tools image: {0}")]
    NetworkTools(#[from] node_rootfs::NodeRootfsError),
    #[error("serialising an image configuration: {0}")]
    Json(#[from] serde_json::Error),
}

/// One image of the archive: its configuration (the image ID is its digest) and its tags.
#[derive(Debug, Clone)]
pub struct PreloadedImage {
    pub config: Vec<u8>,
    pub tags: Vec<String>,
}

impl PreloadedImage {
    /// The image ID, `sha256:` and the configuration's digest.
    pub fn id(&self) -> String {
        format!("sha256:{:x}", Sha256::digest(&self.config))
    }
}

/// The node's pre-loaded images and their one layer.
#[derive(Debug)]
pub struct Preloaded {
    pub layer: RootfsTar,
    pub images: Vec<PreloadedImage>,
}

/// Where the files come from: on a node, its own root (`/usr/local/bin/minikind`,
/// `/bin/busybox`); tests point at the host's.
#[derive(Debug, Clone)]
pub struct Sources {
    pub minikind: PathBuf,
    /// None when the node image has no busybox (the host that built it had none).
    pub busybox: Option<PathBuf>,
}

impl Sources {
    /// A node's own files.
    pub fn node() -> Sources {
        let busybox = Path::new("/bin/busybox");
        Sources {
            minikind: PathBuf::from(MINIKIND_PATH),
            busybox: busybox.is_file().then(|| busybox.to_path_buf()),
        }
    }
}

/// Builds the tools layer and the two images' configurations (`coredns_image`: the CoreDNS
/// add-on's image name, kubeadm's).
pub fn build(sources: &Sources, coredns_image: &str) -> Result<Preloaded, PreloadError> {
    let layer = tools_layer(sources)?;
    let diff_id = format!("sha256:{}", layer.sha256);
    let tools_cmd = sources.busybox.as_ref().map(|_| vec!["sh".to_string()]);
    let tools = config(&diff_id, None, tools_cmd)?;
    let coredns = config(
        &diff_id,
        Some(vec!["/usr/local/bin/cluster-dns".to_string()]),
        None,
    )?;
    let [tools_tags, coredns_tags] = image_tags(coredns_image);
    Ok(Preloaded {
        layer,
        images: vec![
            PreloadedImage {
                config: tools,
                tags: tools_tags,
            },
            PreloadedImage {
                config: coredns,
                tags: coredns_tags,
            },
        ],
    })
}

/// The tags of the tools image and of the CoreDNS image (`coredns_image`: kubeadm's name),
/// known before anything is built (the node agent tells its kubelet which images are coming).
pub fn image_tags(coredns_image: &str) -> [Vec<String>; 2] {
    [
        vec![TOOLS_IMAGE.to_string(), TOOLS_IMAGE_LATEST.to_string()],
        vec![coredns_image.to_string()],
    ]
}

/// The OCI architecture name of this machine (Go's `GOARCH` spelling).
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn config(
    diff_id: &str,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
) -> Result<Vec<u8>, PreloadError> {
    // No `created` time: the same files give the same ID, so a node restart re-imports nothing.
    let v = serde_json::json!({
        "architecture": oci_arch(),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        // No `Env`: the runtime's default `PATH` covers every directory of the layer.
        "config": {
            "Entrypoint": entrypoint,
            "Cmd": cmd,
            "WorkingDir": "/",
        },
    });
    Ok(serde_json::to_vec(&v)?)
}

/// The names `busybox --list` prints (the applets this build has).
fn applets(busybox: &Path) -> Result<Vec<String>, PreloadError> {
    let out = std::process::Command::new(busybox)
        .arg("--list")
        .output()
        .map_err(|e| PreloadError::Applets {
            path: busybox.to_path_buf(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(PreloadError::Applets {
            path: busybox.to_path_buf(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        // An applet name is one path component (never `..` or a path).
        .filter(|a| !a.is_empty() && !a.contains('/') && *a != "." && *a != "..")
        .map(str::to_string)
        .collect())
}

/// The tools layer: see the module comment.
pub fn tools_layer(sources: &Sources) -> Result<RootfsTar, PreloadError> {
    if !sources.minikind.is_file() {
        return Err(PreloadError::Missing(sources.minikind.clone()));
    }
    let mut fs = Rootfs::new();
    for d in ["/proc", "/sys", "/dev", "/run", "/root", "/home", "/etc"] {
        fs.dir(d, 0o755)?;
    }
    fs.dir("/tmp", 0o1777)?;
    fs.dir("/var/tmp", 0o1777)?;
    fs.copy_host_file_to(&sources.minikind, MINIKIND_PATH)?;
    let mut roots = vec![sources.minikind.clone()];
    for tool in TOOL_LINKS {
        fs.symlink(Path::new("/usr/local/bin").join(tool), "minikind")?;
    }
    if let Some(bb) = &sources.busybox {
        fs.copy_host_file_to(bb, "/bin/busybox")?;
        roots.push(bb.clone());
        for applet in applets(bb)? {
            // minikind's own tools answer to their names; busybox gets the rest.
            if applet == "busybox" || TOOL_LINKS.contains(&applet.as_str()) {
                continue;
            }
            let link = Path::new("/bin").join(&applet);
            if !fs.contains(&link) {
                fs.symlink(link, "busybox")?;
            }
        }
    }
    for lib in elf_deps::closure(&roots, &elf_deps::host_library_dirs())? {
        fs.copy_host_path(lib)?;
    }
    // iptables and `ip`, from the node's own programs: the NodeLocal DNSCache pods run
    // `cluster-dns node-cache` from this image and set up their interface and rules with them.
    node_rootfs::add_network_tools(&mut fs, node_rootfs::HOST_BIN_DIRS, Vec::new())?;
    for f in ETC_FILES {
        if Path::new(f).is_file() {
            fs.copy_host_path(f)?;
        }
    }
    if !fs.contains("/etc/passwd") {
        fs.file("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    }
    if !fs.contains("/etc/group") {
        fs.file("/etc/group", "root:x:0:\n", 0o644)?;
    }
    Ok(fs.to_tar()?)
}

/// Writes `p` as a legacy `docker save` archive: `<layer hex>/layer.tar`, one `<id hex>.json`
/// per image and `manifest.json`.
pub fn write_archive(p: &Preloaded, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.mode(tar::HeaderMode::Deterministic);
    let layer_name = format!("{}/layer.tar", p.layer.sha256);
    append(&mut b, &layer_name, &p.layer.bytes)?;
    let mut manifest = Vec::new();
    for image in &p.images {
        let id = image.id();
        let name = format!("{}.json", id.trim_start_matches("sha256:"));
        append(&mut b, &name, &image.config)?;
        manifest.push(serde_json::json!({
            "Config": name,
            "RepoTags": image.tags,
            "Layers": [layer_name],
        }));
    }
    let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    append(&mut b, "manifest.json", &manifest)?;
    b.into_inner()?.flush()
}

fn append<W: Write>(b: &mut tar::Builder<W>, name: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, name, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_sources() -> Sources {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.is_file(),
            "/bin/busybox is missing: `apt-get install busybox-static` (`.ci/run` installs it)"
        );
        Sources {
            minikind: std::env::current_exe().unwrap(),
            busybox: Some(busybox.to_path_buf()),
        }
    }

    fn entries(bytes: &[u8]) -> Vec<(String, Option<String>)> {
        tar::Archive::new(bytes)
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                (e.path().unwrap().display().to_string(), link)
            })
            .collect()
    }

    #[test]
    fn the_tools_layer_holds_minikinds_tools_busybox_applets_and_libraries() {
        let p = build(&host_sources(), "registry.k8s.io/coredns/coredns:v1.12.0").unwrap();
        let names = entries(&p.layer.bytes);
        let link = |path: &str| {
            names
                .iter()
                .find(|(n, _)| n == path)
                .unwrap_or_else(|| panic!("no {path} in the layer"))
                .1
                .clone()
        };
        assert_eq!(link("usr/local/bin/dig").as_deref(), Some("minikind"));
        assert_eq!(link("usr/local/bin/getent").as_deref(), Some("minikind"));
        assert_eq!(link("bin/sh").as_deref(), Some("busybox"));
        assert_eq!(link("bin/env").as_deref(), Some("busybox"));
        assert_eq!(link("bin/wget").as_deref(), Some("busybox"));
        // minikind's own tools keep their names: busybox's applet of the same name is left out.
        assert!(names.iter().all(|(n, _)| n != "bin/nslookup"));
        assert!(names.iter().any(|(n, _)| n.contains("ld-linux")));
        assert!(names.iter().any(|(n, _)| n == "etc/passwd"));
        assert!(names.iter().any(|(n, _)| n == "tmp"));
        // The same files give the same layer and IDs (a node restart re-imports nothing).
        let again = build(&host_sources(), "registry.k8s.io/coredns/coredns:v1.12.0").unwrap();
        assert_eq!(p.layer.sha256, again.layer.sha256);
        assert_eq!(p.images[0].id(), again.images[0].id());
        assert_ne!(p.images[0].id(), p.images[1].id());
    }

    #[test]
    fn the_archive_is_a_docker_save_archive_naming_both_images() {
        let p = build(&host_sources(), "registry.k8s.io/coredns/coredns:v1.12.0").unwrap();
        let mut out = Vec::new();
        write_archive(&p, &mut out).unwrap();
        let mut a = tar::Archive::new(out.as_slice());
        let mut manifest = None;
        let mut configs = Vec::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut body = Vec::new();
            io::Read::read_to_end(&mut e, &mut body).unwrap();
            if name == "manifest.json" {
                manifest = Some(serde_json::from_slice::<serde_json::Value>(&body).unwrap());
            } else if name.ends_with(".json") {
                configs.push((name, body));
            } else {
                assert_eq!(name, format!("{}/layer.tar", p.layer.sha256));
                assert_eq!(format!("{:x}", Sha256::digest(&body)), p.layer.sha256);
            }
        }
        let manifest = manifest.expect("manifest.json");
        assert_eq!(manifest[0]["RepoTags"][0], TOOLS_IMAGE);
        assert_eq!(manifest[0]["RepoTags"][1], TOOLS_IMAGE_LATEST);
        assert_eq!(
            manifest[1]["RepoTags"][0],
            "registry.k8s.io/coredns/coredns:v1.12.0"
        );
        for (name, body) in configs {
            assert_eq!(format!("{:x}.json", Sha256::digest(&body)), name);
        }
        let coredns: serde_json::Value = serde_json::from_slice(&p.images[1].config).unwrap();
        assert_eq!(
            coredns["config"]["Entrypoint"][0],
            "/usr/local/bin/cluster-dns"
        );
    }

    #[test]
    fn a_node_without_the_minikind_executable_is_an_error_naming_it() {
        let e = build(
            &Sources {
                minikind: PathBuf::from("/nonexistent/minikind"),
                busybox: None,
            },
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/minikind"), "{e}");
    }
}
