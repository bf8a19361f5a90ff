//! Container roots from the node's image store ([`StoreRoots`]), with no registry behind it.
//!
//! A pod's image reference is normalised as containerd names images
//! (`busybox` → `docker.io/library/busybox:latest`, `repo@sha256:…` kept by digest) and looked
//! up in the store (`minikind_image_store`, filled by `minikind load`). An image the store does
//! not hold is answered with [`ImageNotPresent`]: the container runner turns it into
//! `ErrImageNeverPull` or `ErrImagePull`/`ImagePullBackOff`, as the kubelet does when a pull
//! fails — nothing can be pulled into a minikind node.
//!
//! **The node image's pre-loaded images.** A KIND node image ships the images its cluster needs
//! (CoreDNS under kubeadm's name, kindnet, …) in containerd's store. minikind's node image
//! ships their equivalent as one image: its own tools ([`NodeToolsRoots`]). It answers to
//! exactly the names of [`PRELOADED`] and to no other name; an image `minikind load`ed under
//! one of these names replaces it, as loading an image replaces a tag in containerd.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use minikind_image_store::{Store, normalize_reference};
use sha2::{Digest, Sha256};

use super::rootfs::{ContainerRoot, NodeToolsRoots, RootProvider, RootRequest};

/// The names under which the node image ships its tools image, normalised. A name ending in
/// `:` stands for every tag of that repository.
pub const PRELOADED: &[&str] = &[
    // minikind's own tools image.
    "docker.io/minikind/tools:",
    // The image the examples, tests and `create cluster`'s DNS check name for the tools.
    "docker.io/library/busybox:latest",
    // The CoreDNS add-on's image under kubeadm's name (its entrypoint is `cluster-dns`).
    "registry.k8s.io/coredns/coredns:",
];

/// Whether a normalised reference is one of [`PRELOADED`].
pub fn is_preloaded(normalized: &str) -> bool {
    PRELOADED.iter().any(|p| match p.strip_suffix(':') {
        Some(repo) => normalized
            .strip_prefix(repo)
            .is_some_and(|rest| rest.starts_with(':') && !rest.contains('@')),
        None => normalized == *p,
    })
}

/// The image is not in the node's store (and nothing can be pulled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNotPresent {
    /// The image as the pod names it.
    pub image: String,
    /// The cluster's name, for the message's `minikind load` command.
    pub cluster: String,
}

impl ImageNotPresent {
    /// How to fix it, in the words of the command that does.
    pub fn hint(&self) -> String {
        format!(
            "image {:?} is not present on this node and minikind nodes pull from no registry: \
             load it with `minikind load docker-image {} --name {}`",
            self.image, self.image, self.cluster
        )
    }
}

impl std::fmt::Display for ImageNotPresent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hint())
    }
}

impl std::error::Error for ImageNotPresent {}

/// The pod's image reference is not a reference (`InvalidImageName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidImageName(pub String);

impl std::fmt::Display for InvalidImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidImageName {}

/// Roots from the node's image store; the pre-loaded names from the node's tools.
pub struct StoreRoots {
    store: Arc<Store>,
    tools: NodeToolsRoots,
    cluster: String,
}

impl std::fmt::Debug for StoreRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRoots")
            .field("store", &self.store.root())
            .field("tools", &self.tools)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl StoreRoots {
    /// The store at `dir` (`minikind_contract::IMAGES_DIR` on a node) of cluster `cluster`.
    pub fn open(dir: &Path, tools: NodeToolsRoots, cluster: &str) -> Result<StoreRoots> {
        let store = Store::open(dir)
            .with_context(|| format!("opening the image store {}", dir.display()))?;
        Ok(StoreRoots {
            store: Arc::new(store),
            tools,
            cluster: cluster.to_string(),
        })
    }

    /// The store's name for this run's container root.
    fn container_id(req: &RootRequest<'_>) -> String {
        format!("{}-{}-{}", req.pod_uid, req.container, req.run)
    }
}

impl RootProvider for StoreRoots {
    fn prepare(&self, req: &RootRequest<'_>) -> Result<ContainerRoot> {
        let normalized = normalize_reference(req.image)
            .map_err(|e| anyhow::Error::new(InvalidImageName(format!("{e:#}"))))?;
        if self.store.find(&normalized)?.is_some() {
            let id = Self::container_id(req);
            // A root left by a kubelet that died mid-run is not in use any more.
            self.store.release(&id)?;
            let p = self.store.prepare(&id, &normalized)?;
            return Ok(ContainerRoot {
                rootfs: p.rootfs,
                config: p.config,
                node_binds: Vec::new(),
                image_ref: normalized,
                image_id: p.image_id,
            });
        }
        if is_preloaded(&normalized) {
            let mut root = self.tools.prepare(req)?;
            root.image_ref = normalized;
            return Ok(root);
        }
        Err(ImageNotPresent {
            image: req.image.to_string(),
            cluster: self.cluster.clone(),
        }
        .into())
    }

    fn release(&self, req: &RootRequest<'_>, root: &ContainerRoot) -> Result<()> {
        if root.node_binds.is_empty() && root.rootfs.starts_with(self.store.root()) {
            self.store.release(&Self::container_id(req))
        } else {
            self.tools.release(req, root)
        }
    }
}

/// The ID of an image: the digest of its configuration, as `sha256:<hex>`.
pub fn config_digest(config: &oci_spec::image::ImageConfiguration) -> Result<String> {
    let bytes = serde_json::to_vec(config).context("serialising an image configuration")?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_names_are_preloaded() {
        let n = |s: &str| normalize_reference(s).unwrap();
        assert!(is_preloaded(&n("busybox")));
        assert!(is_preloaded(&n("busybox:latest")));
        assert!(is_preloaded(&n("minikind/tools:0.1.0")));
        assert!(is_preloaded(&n("registry.k8s.io/coredns/coredns:v1.12.0")));
        assert!(!is_preloaded(&n("busybox:1.36")));
        assert!(!is_preloaded(&n("nginx")));
        assert!(!is_preloaded(&n(
            "registry.k8s.io/coredns/coredns-extra:v1"
        )));
        assert!(!is_preloaded(&n(
            "busybox@sha256:0000000000000000000000000000000000000000000000000000000000000000"
        )));
    }
}
