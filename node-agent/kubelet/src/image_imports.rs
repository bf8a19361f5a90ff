//! Images on their way into the node's store ([`Imports`]): a container whose image is among
//! them waits for the import as a kubelet's container waits for its image's pull — `Waiting`
//! with reason `ContainerCreating`, a `Pulling` event, then `Pulled` once it is there — instead
//! of failing with `ErrImagePull` because the store does not hold it yet.
//!
//! The node agent registers its pre-loaded images here before it starts the import, and starts
//! the kubelet at once (`minikind_agent`'s `serve`): the import then runs beside the node's
//! registration instead of before it, as a KIND node's kubelet starts while containerd still
//! unpacks an image. References are the store's normalised ones
//! (`minikind_image_store::normalize_reference`).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

/// The references being imported, shared by whoever imports and the kubelet.
#[derive(Debug, Clone)]
pub struct Imports {
    pending: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Default for Imports {
    fn default() -> Self {
        Imports {
            pending: Arc::new(watch::Sender::new(BTreeSet::new())),
        }
    }
}

/// One image being imported: [`Pending::done`] ends when the import did (or gave up).
#[derive(Debug)]
pub struct Pending {
    reference: String,
    rx: watch::Receiver<BTreeSet<String>>,
}

impl Pending {
    /// Waits until the import of this image ended, whatever its outcome (the store then has
    /// the image, or the container fails as for any missing image).
    pub async fn done(mut self) {
        let reference = self.reference;
        // An error means the sender is gone, and with it every import.
        let _ = self.rx.wait_for(|p| !p.contains(&reference)).await;
    }
}

impl Imports {
    /// Marks `references` as being imported until the returned guard is dropped (the store
    /// then has them, or the import failed: either way nobody should wait any longer — also
    /// when the importing task panicked).
    #[must_use = "the import ends when the guard is dropped"]
    pub fn begin(&self, references: Vec<String>) -> Importing {
        self.pending
            .send_modify(|p| p.extend(references.iter().cloned()));
        Importing {
            imports: self.clone(),
            references,
        }
    }

    /// The import of `reference` (normalised), while it runs.
    pub fn pending(&self, reference: &str) -> Option<Pending> {
        let rx = self.pending.subscribe();
        if !rx.borrow().contains(reference) {
            return None;
        }
        Some(Pending {
            reference: reference.to_string(),
            rx,
        })
    }
}

/// An import under way; dropping it ends it.
#[derive(Debug)]
pub struct Importing {
    imports: Imports,
    references: Vec<String>,
}

impl Drop for Importing {
    fn drop(&mut self) {
        self.imports.pending.send_modify(|p| {
            for r in &self.references {
                p.remove(r);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_pending_image_is_done_when_its_import_ends() {
        let imports = Imports::default();
        assert!(imports.pending("docker.io/minikind/tools:latest").is_none());
        let tools = imports.begin(vec!["docker.io/minikind/tools:latest".to_string()]);
        let coredns = imports.begin(vec!["registry.k8s.io/coredns/coredns:v1.12.0".to_string()]);
        let waiter = tokio::spawn(
            imports
                .pending("docker.io/minikind/tools:latest")
                .unwrap()
                .done(),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "done before the import ended");
        // Another image's end does not end this one's wait.
        drop(coredns);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        // Ended by a panicking importer too (the guard drops while unwinding).
        let _ = std::thread::spawn(move || {
            let _tools = tools;
            panic!("the importer panicked");
        })
        .join();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended with the import")
            .unwrap();
        assert!(imports.pending("docker.io/minikind/tools:latest").is_none());
    }
}
