//! A container's root filesystem: where it comes from ([`RootProvider`]) and how paths are
//! found inside it ([`resolve_in_root`]).
//!
//! The kubelet asks its provider for a fresh root on every start of a container (so a restart
//! starts from a clean copy, as a new containerd container gets a new snapshot) and gives it
//! back when the run ended. A provider backed by the node's image store hands out an overlay
//! mount of the image's layers plus the image's OCI configuration: that is
//! [`super::image_roots::StoreRoots`], what a node's kubelet uses. [`NodeToolsRoots`] is the
//! default of `KubeletConfig::new`, for the kubelet's own tests (which run without an image
//! store): a root showing the test machine's `/usr`, `/bin`, `/sbin`, `/lib*` read-only, an
//! `/etc` with its user and name-service files, everything else empty, for every image name.
//! A node never uses it: its tools are a real image in its store.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::image::ImageConfiguration;

use super::spawn::BindMount;

/// A prepared root filesystem for one run of a container.
#[derive(Debug, Clone)]
pub struct ContainerRoot {
    /// A directory (typically an overlay mount) the container pivots into.
    pub rootfs: PathBuf,
    /// The image's configuration (Entrypoint, Cmd, Env, WorkingDir, User).
    pub config: ImageConfiguration,
    /// Directories of the node bind-mounted read-only into the root, in the container's mount
    /// namespace only (targets are paths inside the root). Empty for image roots.
    pub node_binds: Vec<BindMount>,
    /// The image as the runtime names it (`docker.io/library/busybox:latest`): the
    /// container status's `image`.
    pub image_ref: String,
    /// The image's ID (`sha256:` and its configuration's digest): the status's `imageID`.
    pub image_id: String,
    /// The image's size in bytes where the provider knows it (the `Pulled` event names it).
    pub image_size: Option<u64>,
}

/// Which container a root is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRequest<'a> {
    pub pod_uid: &'a str,
    /// The pod's directory on the node (`<kubelet root>/pods/<uid>`).
    pub pod_dir: &'a Path,
    pub container: &'a str,
    pub image: &'a str,
    /// The restart count of this run.
    pub run: i32,
}

/// Gives containers their roots.
pub trait RootProvider: std::fmt::Debug + Send + Sync {
    /// A fresh root for one run of a container.
    fn prepare(&self, req: &RootRequest<'_>) -> Result<ContainerRoot>;
    /// Called once the run's processes are gone.
    fn release(&self, req: &RootRequest<'_>, root: &ContainerRoot) -> Result<()>;
    /// The import of `image` (as the pod names it) while one is under way: the container
    /// waits for it as for a pull. None for an image that is not being imported.
    fn importing(&self, _image: &str) -> Option<super::image_imports::Pending> {
        None
    }
}

/// The node's directories a tools root shows read-only.
const NODE_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// The node's files a tools root copies into its `/etc` (users, groups, name service).
const NODE_ETC_FILES: &[&str] = &[
    "passwd",
    "group",
    "nsswitch.conf",
    "services",
    "protocols",
    "host.conf",
    "gai.conf",
];

/// The roots of minikind's own tools image (see the module comment).
#[derive(Debug, Clone)]
pub struct NodeToolsRoots {
    /// The node's root directory (`/`; a test may point elsewhere).
    pub node_root: PathBuf,
}

impl Default for NodeToolsRoots {
    fn default() -> Self {
        NodeToolsRoots {
            node_root: PathBuf::from("/"),
        }
    }
}

/// Where a run's root lives under the pod's directory.
pub fn run_root_dir(req: &RootRequest<'_>) -> PathBuf {
    req.pod_dir
        .join("roots")
        .join(format!("{}-{}", req.container, req.run))
}

impl NodeToolsRoots {
    /// The tools image's configuration: no entrypoint (a pod names the program), except that
    /// CoreDNS images start `cluster-dns`, as their `/coredns` entrypoint would.
    pub fn config_for(image: &str) -> Result<ImageConfiguration> {
        let entrypoint = if super::env::image_is_coredns(image) {
            serde_json::json!(["cluster-dns"])
        } else {
            serde_json::Value::Null
        };
        serde_json::from_value(serde_json::json!({
            "architecture": std::env::consts::ARCH,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {
                "Env": [format!("PATH={}", super::spawn::DEFAULT_PATH)],
                "Entrypoint": entrypoint,
            }
        }))
        .context("building the tools image configuration")
    }
}

impl RootProvider for NodeToolsRoots {
    fn prepare(&self, req: &RootRequest<'_>) -> Result<ContainerRoot> {
        let root = run_root_dir(req);
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing the old root {}", root.display()))?;
        }
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))
        };
        for d in [
            "etc", "tmp", "var/tmp", "root", "home", "run", "proc", "dev", "sys",
        ] {
            mk(&root.join(d))?;
        }
        use std::os::unix::fs::PermissionsExt;
        for t in ["tmp", "var/tmp"] {
            std::fs::set_permissions(root.join(t), std::fs::Permissions::from_mode(0o1777))
                .with_context(|| format!("making {t} world-writable"))?;
        }
        let mut node_binds = Vec::new();
        for d in NODE_DIRS {
            let node = self.node_root.join(d);
            let target = root.join(d);
            // Merged /usr: /bin is a symlink to usr/bin; the root gets the same link.
            if let Ok(link) = std::fs::read_link(&node) {
                std::os::unix::fs::symlink(&link, &target)
                    .with_context(|| format!("linking {}", target.display()))?;
            } else if node.is_dir() {
                mk(&target)?;
                node_binds.push(BindMount {
                    source: node,
                    target: PathBuf::from("/").join(d),
                    read_only: true,
                });
            }
        }
        for f in NODE_ETC_FILES {
            let node = self.node_root.join("etc").join(f);
            if node.is_file() {
                std::fs::copy(&node, root.join("etc").join(f))
                    .with_context(|| format!("copying {}", node.display()))?;
            }
        }
        let config = Self::config_for(req.image)?;
        Ok(ContainerRoot {
            rootfs: root,
            image_id: super::image_roots::config_digest(&config)?,
            config,
            node_binds,
            image_ref: minikind_image_store::normalize_reference(req.image)?,
            image_size: None,
        })
    }

    fn release(&self, _req: &RootRequest<'_>, root: &ContainerRoot) -> Result<()> {
        if root.rootfs.exists() {
            std::fs::remove_dir_all(&root.rootfs)
                .with_context(|| format!("removing {}", root.rootfs.display()))?;
        }
        Ok(())
    }
}

/// The path on the node of `path` inside the container root `root`, following symlinks as
/// the container would see them (an absolute link target is inside the root). A path that a
/// symlink leads out of the root is refused; `..` never goes above the root. A missing
/// component ends the walk (the rest is taken as written, to be created).
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            if resolved.pop().is_none() {
                bail!("{} leads out of the container's root", path.display());
            }
            continue;
        }
        let here: PathBuf = std::iter::once(root.as_os_str().to_os_string())
            .chain(resolved.iter().cloned())
            .chain(std::iter::once(c.clone()))
            .collect();
        match std::fs::read_link(&here) {
            Ok(target) => {
                links += 1;
                if links > 40 {
                    bail!("too many symlinks resolving {}", path.display());
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                let before = pending.len();
                for part in target.components().rev() {
                    match part {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
                // A relative link climbing above the root escapes it.
                let mut depth = resolved.len() as i64;
                for p in pending[before..].iter().rev() {
                    depth += if p == ".." { -1 } else { 1 };
                    if depth < 0 {
                        bail!(
                            "{}: the symlink {} leads out of the container's root",
                            path.display(),
                            here.display()
                        );
                    }
                }
            }
            Err(_) => resolved.push(c),
        }
    }
    Ok(std::iter::once(root.as_os_str().to_os_string())
        .chain(resolved)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn paths_resolve_inside_the_root_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/share")).unwrap();
        symlink("/usr/share", root.join("abs")).unwrap();
        symlink("usr", root.join("rel")).unwrap();
        symlink("../../..", root.join("usr/up")).unwrap();
        assert_eq!(
            resolve_in_root(root, Path::new("/abs/x")).unwrap(),
            root.join("usr/share/x")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/rel/share")).unwrap(),
            root.join("usr/share")
        );
        assert_eq!(
            resolve_in_root(root, Path::new("/new/dir")).unwrap(),
            root.join("new/dir")
        );
        let e = resolve_in_root(root, Path::new("/usr/up/etc")).unwrap_err();
        assert!(e.to_string().contains("leads out"), "{e}");
        let e = resolve_in_root(root, Path::new("/../etc")).unwrap_err();
        assert!(e.to_string().contains("leads out"), "{e}");
    }

    #[test]
    fn a_tools_root_shows_the_node_directories_and_starts_clean() {
        let node = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(node.path().join("usr/bin")).unwrap();
        symlink("usr/bin", node.path().join("bin")).unwrap();
        std::fs::create_dir_all(node.path().join("etc")).unwrap();
        std::fs::write(
            node.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\n",
        )
        .unwrap();
        let pods = tempfile::tempdir().unwrap();
        let provider = NodeToolsRoots {
            node_root: node.path().to_path_buf(),
        };
        let req = RootRequest {
            pod_uid: "u",
            pod_dir: pods.path(),
            container: "c",
            image: "registry.k8s.io/coredns/coredns:v1.12.0",
            run: 0,
        };
        let root = provider.prepare(&req).unwrap();
        assert_eq!(
            std::fs::read_link(root.rootfs.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(root.node_binds.len(), 1);
        assert_eq!(root.node_binds[0].target, Path::new("/usr"));
        assert!(root.rootfs.join("etc/passwd").is_file());
        let ep = root.config.config().as_ref().unwrap().entrypoint().clone();
        assert_eq!(ep, Some(vec!["cluster-dns".to_string()]));
        std::fs::write(root.rootfs.join("tmp/left"), "x").unwrap();
        let again = provider.prepare(&req).unwrap();
        assert!(!again.rootfs.join("tmp/left").exists());
        provider.release(&req, &again).unwrap();
        assert!(!again.rootfs.exists());
    }
}
