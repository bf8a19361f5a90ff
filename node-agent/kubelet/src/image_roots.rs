//! Container roots from the node's image store ([`StoreRoots`]), with no registry behind it.
//!
//! A pod's image reference is normalised as containerd names images
//! (`busybox` → `docker.io/library/busybox:latest`, `repo@sha256:…` kept by digest) and looked
//! up in the store (`minikind_image_store`, filled by `minikind load`). An image the store does
//! not hold is answered with [`ImageNotPresent`]: the container runner turns it into
//! `ErrImageNeverPull` or `ErrImagePull`/`ImagePullBackOff`, as the kubelet does when a pull
//! fails — nothing can be pulled into a minikind node.
//!
//! The node image's own images (minikind's tools, CoreDNS under kubeadm's name) are in the
//! store like any other: the node agent pre-loads them at boot (its `preload` module), as a
//! KIND node image ships its images in containerd's store. No name is treated specially here;
//! while an import the agent registered ([`StoreRoots::with_imports`]) runs, a container of
//! that image waits for it as for a pull (`image_imports`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use minikind_image_store::{Store, normalize_reference};
use sha2::{Digest, Sha256};

use super::image_imports::{Imports, Pending};
use super::rootfs::{ContainerRoot, RootProvider, RootRequest};

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

/// Roots from the node's image store.
pub struct StoreRoots {
    store: Arc<Store>,
    cluster: String,
    /// Images on their way into the store (the node's pre-load), which containers wait for.
    imports: Imports,
}

impl std::fmt::Debug for StoreRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreRoots")
            .field("store", &self.store.root())
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl StoreRoots {
    /// The store at `dir` (`minikind_contract::IMAGES_DIR` on a node) of cluster `cluster`.
    pub fn open(dir: &Path, cluster: &str) -> Result<StoreRoots> {
        let store = Store::open(dir)
            .with_context(|| format!("opening the image store {}", dir.display()))?;
        Ok(StoreRoots {
            store: Arc::new(store),
            cluster: cluster.to_string(),
            imports: Imports::default(),
        })
    }

    /// Containers whose image is among `imports` wait for its import instead of failing.
    pub fn with_imports(mut self, imports: Imports) -> StoreRoots {
        self.imports = imports;
        self
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
        if let Some(image) = self.store.find(&normalized)? {
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
                image_size: Some(image.size),
            });
        }
        Err(ImageNotPresent {
            image: req.image.to_string(),
            cluster: self.cluster.clone(),
        }
        .into())
    }

    fn release(&self, req: &RootRequest<'_>, _root: &ContainerRoot) -> Result<()> {
        self.store.release(&Self::container_id(req))
    }

    fn importing(&self, image: &str) -> Option<Pending> {
        // A reference that does not parse is not being imported; `prepare` reports it.
        let normalized = normalize_reference(image).ok()?;
        self.imports.pending(&normalized)
    }
}

/// The ID of an image: the digest of its configuration, as `sha256:<hex>`.
pub fn config_digest(config: &oci_spec::image::ImageConfiguration) -> Result<String> {
    let bytes = serde_json::to_vec(config).context("serialising an image configuration")?;
    Ok(format!("sha256:{:x}", Sha256::digest(&bytes)))
}
