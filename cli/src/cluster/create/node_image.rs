//! Ensuring the node image: built from this executable and imported, or reused when the engine
//! already has its content. KIND's docker provider pulls its node image at this point
//! (`pkg/cluster/internal/providers/docker/images.go`: `ensureNodeImages`).

use anyhow::Result;

use super::context::Context;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let step = ctx.status.step("Ensuring node image");
    let image = minikind_images::ensure_node_image(ctx.docker, false).await?;
    step.done();
    tracing::info!(
        image = %image.reference,
        id = %image.id,
        rootfs_sha256 = %image.rootfs_sha256,
        rootfs_bytes = image.rootfs_bytes,
        "node image {}",
        if image.built {
            "built and imported"
        } else {
            "reused: the engine already has this content hash"
        }
    );
    ctx.status.line(&format!(
        "   {} ({}, {:.0} MB)",
        image.reference,
        if image.built { "built" } else { "reused" },
        image.rootfs_bytes as f64 / 1e6
    ));
    ctx.image = Some(image.reference);
    Ok(())
}
