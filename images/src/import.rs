//! Ensures the node image is in the Docker engine: build the rootfs, import it, tag it by hash.

use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures::StreamExt;

use crate::node_rootfs::{MINIKIND_PATH, NodeRootfsError, build_node_rootfs};

/// Repository of every node image; the tag is the first 12 hex digits of the rootfs hash.
pub const NODE_IMAGE_REPO: &str = "minikind/node";

/// A node image present in the engine.
#[derive(Debug, Clone)]
pub struct NodeImage {
    pub reference: String,
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
    #[error("building the rootfs was interrupted: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Builds the node image from the running executable unless an identical one exists;
/// `rebuild` forces a fresh import even then.
pub async fn ensure_node_image(docker: &Docker, rebuild: bool) -> Result<NodeImage, ImageError> {
    let exe = self_exe()?;
    let tar = tokio::task::spawn_blocking(move || build_node_rootfs(&exe)).await??;
    let reference = format!("{NODE_IMAGE_REPO}:{}", &tar.sha256[..12]);
    let rootfs_bytes = tar.bytes.len() as u64;

    if !rebuild {
        match docker.inspect_image(&reference).await {
            Ok(_) => {
                return Ok(NodeImage {
                    reference,
                    built: false,
                    rootfs_bytes,
                });
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(source) => return Err(ImageError::Inspect { reference, source }),
        }
    }

    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(NODE_IMAGE_REPO)
        .tag(&tar.sha256[..12])
        .changes(vec![
            format!(r#"ENTRYPOINT ["{MINIKIND_PATH}", "node-agent"]"#),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "LABEL dev.minikind.image=node".to_string(),
        ])
        .build();
    let body = bollard::body_full(tar.bytes.into());
    let mut progress = docker.create_image(Some(options), Some(body), None);
    while let Some(item) = progress.next().await {
        item.map_err(ImageError::Import)?;
    }
    Ok(NodeImage {
        reference,
        built: true,
        rootfs_bytes,
    })
}

/// The executable to put into the image: the very one running, so CLI and agent always match.
fn self_exe() -> Result<PathBuf, ImageError> {
    std::env::current_exe().map_err(ImageError::SelfExe)
}
