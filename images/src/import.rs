//! Ensures the node image is in the Docker engine: build the rootfs, import it, tag it by hash.

use std::path::PathBuf;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use crate::node_rootfs::{NodeRootfsError, build_node_rootfs};
use minikind_contract::MINIKIND_PATH;

/// Repository of every node image; the tag is the first 12 hex digits of the rootfs hash.
pub const NODE_IMAGE_REPO: &str = "minikind/node";
/// The label every node image carries (value `node`): what pruning selects by, so it never
/// touches an image minikind did not make.
pub const NODE_IMAGE_LABEL: &str = "dev.minikind.image";

/// A node image present in the engine.
#[derive(Debug, Clone)]
pub struct NodeImage {
    pub reference: String,
    /// The engine's image ID (`sha256:…`): the same after a reuse, a new one after each import.
    pub id: String,
    /// The full SHA-256 of the rootfs tar (the tag is its first 12 hex digits).
    pub rootfs_sha256: String,
    /// True when this call imported it, false when an identical one was already there.
    pub built: bool,
    pub rootfs_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("finding the running minikind executable: {0}")]
    SelfExe(std::io::Error),
    #[error(transparent)]
    Rootfs(#[from] NodeRootfsError),
    #[error("importing the node image into Docker: {0}")]
    Import(bollard::errors::Error),
    #[error("asking Docker about image {reference}: {source}")]
    Inspect {
        reference: String,
        source: bollard::errors::Error,
    },
    #[error(
        "the engine has no image {reference} right after importing it (removed meanwhile by \
         someone else?): run the command again"
    )]
    MissingAfterImport { reference: String },
    #[error("listing images or containers in the engine: {0}")]
    List(bollard::errors::Error),
    #[error("building the rootfs was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Builds the node image from the running executable unless an identical one exists;
/// `rebuild` forces a fresh import even then.
pub async fn ensure_node_image(docker: &Docker, rebuild: bool) -> Result<NodeImage, ImageError> {
    let exe = self_exe()?;
    let started = Instant::now();
    tracing::debug!(executable = %exe.display(), "node image: building the rootfs");
    let tar = tokio::task::spawn_blocking(move || build_node_rootfs(&exe)).await??;
    let reference = format!("{NODE_IMAGE_REPO}:{}", &tar.sha256[..12]);
    let rootfs_bytes = tar.bytes.len() as u64;
    let rootfs_sha256 = tar.sha256.clone();
    tracing::debug!(
        image = %reference,
        bytes = rootfs_bytes,
        sha256 = %rootfs_sha256,
        took_ms = started.elapsed().as_millis() as u64,
        "node image: rootfs built; its hash is the tag"
    );

    // Held from the look-up to the tagged image: see [`crate::lock`].
    let locked = crate::lock::lock().await;
    crate::lock::recent::touch(&tar.sha256[..12]);
    if !rebuild {
        match image_id(docker, &reference).await? {
            Some(id) => {
                tracing::debug!(
                    image = %reference,
                    %id,
                    "node image: reusing the one already in the engine (same content hash)"
                );
                drop(locked);
                prune_all_but(docker, &reference).await;
                return Ok(NodeImage {
                    reference,
                    id,
                    rootfs_sha256,
                    built: false,
                    rootfs_bytes,
                });
            }
            None => tracing::debug!(image = %reference, "node image: not in the engine yet"),
        }
    }
    if rebuild {
        tracing::debug!(image = %reference, "node image: rebuild asked for; importing again");
    }

    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(NODE_IMAGE_REPO)
        .tag(&tar.sha256[..12])
        .changes(vec![
            format!(r#"ENTRYPOINT ["{MINIKIND_PATH}", "node-agent"]"#),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("LABEL {NODE_IMAGE_LABEL}=node"),
        ])
        .build();
    let body = bollard::body_full(tar.bytes.into());
    let import_started = Instant::now();
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        item.map_err(ImageError::Import)?;
    }
    let id = image_id(docker, &reference)
        .await?
        .ok_or_else(|| ImageError::MissingAfterImport {
            reference: reference.clone(),
        })?;
    tracing::debug!(
        image = %reference,
        %id,
        bytes = rootfs_bytes,
        took_ms = import_started.elapsed().as_millis() as u64,
        "node image: imported into the engine"
    );
    drop(locked);
    prune_all_but(docker, &reference).await;
    Ok(NodeImage {
        reference,
        id,
        rootfs_sha256,
        built: true,
        rootfs_bytes,
    })
}

/// Removes the node images of other executables and those a rebuild left untagged, when no
/// container uses them. Best effort: a failure to list is logged, never fails the create.
async fn prune_all_but(docker: &Docker, reference: &str) {
    match crate::prune::remove_unused_node_images(docker, crate::prune::Prune::AllBut(reference))
        .await
    {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(count = removed.len(), ids = ?removed, "node images no container uses removed")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "node image: could not look for unused node images"),
    }
}

/// The engine's ID for an image reference, or `None` when it has no such image.
async fn image_id(docker: &Docker, reference: &str) -> Result<Option<String>, ImageError> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(Some(image.id.unwrap_or_default())),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(source) => Err(ImageError::Inspect {
            reference: reference.to_string(),
            source,
        }),
    }
}

/// The executable to put into the image: the very one running, so CLI and agent always match.
fn self_exe() -> Result<PathBuf, ImageError> {
    std::env::current_exe().map_err(ImageError::SelfExe)
}
