//! Removes node images nobody needs any more, so rebuilds and test runs do not pile them up.
//!
//! Every rebuilt `minikind` executable makes a node image of its own (the tag is the content
//! hash), and a forced rebuild leaves the image it replaced untagged. Only images carrying
//! [`NODE_IMAGE_LABEL`] are ever looked at — the ones [`crate::ensure_node_image`] imported —
//! and an image any container uses (running or stopped) is kept: the engine refuses to remove
//! it without `force`, which is never asked for. So is an image a create or build of any
//! minikind on this host used within the hour ([`crate::lock::recent`]): two executables
//! side by side (a debug and a release build) do not remove each other's image mid-create.
//! Pruning holds [`crate::lock`], so it never sees another minikind's import between
//! "imported" and "tagged".

use std::collections::HashSet;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveImageOptionsBuilder,
};

use crate::import::{ImageError, NODE_IMAGE_LABEL, NODE_IMAGE_REPO};

/// Which unused node images to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune<'a> {
    /// Every one not tagged with this reference (the current executable's image): at create
    /// and build. By tag, not ID: a concurrent rebuild moves the tag to a new image, which
    /// must be kept while the old one goes.
    AllBut(&'a str),
    /// Only the untagged ones (a tag moved away by a rebuild): safe without knowing which image
    /// is current, so `delete cluster` does it.
    Untagged,
}

/// Removes the node images that `which` selects and no container uses; returns their IDs.
pub async fn remove_unused_node_images(
    docker: &Docker,
    which: Prune<'_>,
) -> Result<Vec<String>, ImageError> {
    let _locked = crate::lock::lock().await;
    let label_filter = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("{NODE_IMAGE_LABEL}=node")],
    )]);
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::default()
                .all(false)
                .filters(&label_filter)
                .build(),
        ))
        .await
        .map_err(ImageError::List)?;
    let in_use: HashSet<String> = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default().all(true).build(),
        ))
        .await
        .map_err(ImageError::List)?
        .into_iter()
        .filter_map(|c| c.image_id)
        .collect();
    let mut removed = Vec::new();
    for image in images {
        let tagged = image.repo_tags.iter().any(|t| t != "<none>:<none>");
        let selected = match which {
            Prune::AllBut(current) => !image.repo_tags.iter().any(|t| t == current),
            Prune::Untagged => !tagged,
        };
        if !selected {
            continue;
        }
        let used_lately = image.repo_tags.iter().any(|t| {
            t.strip_prefix(NODE_IMAGE_REPO)
                .and_then(|t| t.strip_prefix(':'))
                .is_some_and(crate::lock::recent::used_lately)
        });
        if used_lately {
            tracing::debug!(id = %image.id, tags = ?image.repo_tags, "node image: kept (a create used it within the hour)");
            continue;
        }
        if in_use.contains(&image.id) {
            tracing::debug!(id = %image.id, tags = ?image.repo_tags, "node image: kept (a container uses it)");
            continue;
        }
        let options = RemoveImageOptionsBuilder::default()
            .force(false)
            .noprune(false)
            .build();
        // A container made since the listing keeps its image: the engine says 409 then.
        match docker.remove_image(&image.id, Some(options), None).await {
            Ok(_) => {
                tracing::debug!(id = %image.id, tags = ?image.repo_tags, "node image: removed (unused)");
                removed.push(image.id);
            }
            Err(e) => {
                tracing::debug!(id = %image.id, error = %e, "node image: kept (the engine refused)")
            }
        }
    }
    Ok(removed)
}
