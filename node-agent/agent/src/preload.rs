//! The node image's own images, put into the node's store at boot (while the kubelet starts;
//! its containers of these images wait for the import, see the kubelet's `image_imports`):
//! minikind's tools image and the CoreDNS add-on's image under kubeadm's name, built from the
//! node's own files (`minikind_images::preloaded`) — as a KIND node image carries its images
//! in containerd's store, so a cluster starts with no registry and no host images.
//!
//! A tag some image already holds is left alone: an image a user loaded under one of these
//! names (their own `coredns/coredns` build, say) keeps it across node restarts, as it would in
//! containerd. Images whose ID the store has only get their missing tags; the rest are imported
//! through the store's ordinary import path, streamed (the layer is not written twice).

use std::path::Path;

use anyhow::{Context, Result};
use minikind_image_store::{Store, normalize_reference};
use minikind_images::preloaded::{self, Preloaded, PreloadedImage, Sources};

/// What a boot's pre-load did, for the agent's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PreloadReport {
    /// Images imported (with the tags they got).
    pub imported: Vec<String>,
    /// Tags added to an image the store had.
    pub tagged: Vec<String>,
    /// Tags left to the image that holds them.
    pub kept: Vec<String>,
}

impl std::fmt::Display for PreloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "pre-loaded images: imported {}; tagged {}; tags held by other images {}",
            list(&self.imported),
            list(&self.tagged),
            list(&self.kept)
        )
    }
}

/// The store's names of the images [`preload`] puts in (what the kubelet waits for while it
/// runs).
pub fn references(coredns_image: &str) -> Result<Vec<String>> {
    preloaded::image_tags(coredns_image)
        .iter()
        .flatten()
        .map(|t| normalize_reference(t).with_context(|| format!("the pre-loaded image {t:?}")))
        .collect()
}

/// Pre-loads the node's images into the store at `store_dir` (`coredns_image`: kubeadm's name
/// for the DNS add-on's image).
pub fn preload(store_dir: &Path, sources: &Sources, coredns_image: &str) -> Result<PreloadReport> {
    let built = preloaded::build(sources, coredns_image).context("building the node's images")?;
    let store = Store::open(store_dir)
        .with_context(|| format!("opening the image store {}", store_dir.display()))?;
    let mut report = PreloadReport::default();
    let mut missing = Vec::new();
    for image in &built.images {
        let id = image.id();
        let mut free = Vec::new();
        for tag in &image.tags {
            match store.find(tag)? {
                Some(holder) if holder.id == id => {}
                Some(_) => report.kept.push(tag.clone()),
                None => free.push(tag.clone()),
            }
        }
        if store.find(&id)?.is_some() {
            if !free.is_empty() {
                store
                    .tag(&id, &free)
                    .with_context(|| format!("tagging {id} as {}", free.join(", ")))?;
                report.tagged.extend(free);
            }
        } else {
            report.imported.push(format!("{id} ({})", free.join(", ")));
            missing.push(PreloadedImage {
                config: image.config.clone(),
                tags: free,
            });
        }
    }
    if !missing.is_empty() {
        import(
            &store,
            &Preloaded {
                layer: built.layer,
                images: missing,
            },
        )?;
    }
    Ok(report)
}

/// Streams the archive of `p` into the store's import through a pipe.
fn import(store: &Store, p: &Preloaded) -> Result<()> {
    let (reader, writer) = std::io::pipe().context("making a pipe for the import")?;
    std::thread::scope(|s| {
        let writing = s.spawn(move || preloaded::write_archive(p, writer));
        // The reader is dropped when the import returns, so a writer whose reader gave up
        // ends with a broken pipe instead of blocking.
        let imported = store.import(reader);
        let written = writing
            .join()
            .map_err(|_| anyhow::anyhow!("the archive writer panicked"))?;
        imported.context("importing the node's images into its store")?;
        written.context("writing the node's images")?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COREDNS: &str = "registry.k8s.io/coredns/coredns:v1.12.0";

    fn host_sources() -> Sources {
        assert!(
            Path::new("/bin/busybox").is_file(),
            "/bin/busybox is missing: `apt-get install busybox-static` (`.ci/run` installs it)"
        );
        Sources {
            minikind: std::env::current_exe().unwrap(),
            busybox: Some("/bin/busybox".into()),
        }
    }

    #[test]
    fn a_boot_imports_once_and_a_users_image_keeps_its_tag() {
        let dir = tempfile::tempdir().unwrap();
        let first = preload(dir.path(), &host_sources(), COREDNS).unwrap();
        assert_eq!(first.imported.len(), 2, "{first}");
        let store = Store::open(dir.path()).unwrap();
        let tools = store.find(minikind_contract::TOOLS_IMAGE).unwrap().unwrap();
        let coredns = store.find(COREDNS).unwrap().unwrap();
        assert_ne!(tools.id, coredns.id);
        assert!(
            tools
                .repo_tags
                .contains(&"docker.io/minikind/tools:latest".to_string())
        );
        // What the kubelet is told to wait for is what the store now holds.
        for r in references(COREDNS).unwrap() {
            assert!(store.find(&r).unwrap().is_some(), "{r} not in the store");
        }
        // A restart: nothing to do.
        let again = preload(dir.path(), &host_sources(), COREDNS).unwrap();
        assert_eq!(again, PreloadReport::default(), "{again}");
        // A user's image takes the CoreDNS name (as `minikind load` would), and the add-on's
        // own image loses its only tag; the next boot leaves the user's image its name.
        store
            .tag(&tools.id, &[COREDNS.to_string()])
            .expect("re-tagging");
        let after = preload(dir.path(), &host_sources(), COREDNS).unwrap();
        assert_eq!(after.kept, vec![COREDNS.to_string()], "{after}");
        assert_eq!(store.find(COREDNS).unwrap().unwrap().id, tools.id);
    }
}
