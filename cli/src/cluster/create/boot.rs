//! Booting the nodes: each node's agent does what KIND's node entrypoint does before it starts
//! systemd (`images/base/files/usr/local/bin/entrypoint`, the network magic being its
//! `enable_network_magic`), then logs that it booted; this step follows the nodes' logs for
//! that line.

use anyhow::Result;
use futures::future::try_join_all;
use minikind_contract::BOOT_COMPLETE;

use super::context::Context;
use crate::provider::docker::nodes::Privileges;
use crate::provider::docker::wait;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let (docker, status, wait) = (ctx.docker, ctx.status, ctx.wait);
    // The nodes step's note, said where create has always said it: once the nodes (and, with
    // the builtin resolver, their names) are in place, before they boot.
    if ctx.privileges == Some(Privileges::Capabilities) {
        status.line(&format!(
            "   the engine refuses --privileged: nodes run with {} instead",
            Privileges::NARROW_CAPS.join(", ")
        ));
    }

    let step = status.step(if ctx.config.dns.network_magic {
        "Booting nodes (network magic) 🪄"
    } else {
        "Booting nodes (network magic off)"
    });
    let started_at = ctx.started_at;
    let boot_wait = std::time::Instant::now();
    try_join_all(ctx.nodes.iter().map(|(node, _)| async move {
        wait::log_line(docker, node, BOOT_COMPLETE, started_at, wait).await?;
        tracing::debug!(
            node = %node,
            took_ms = boot_wait.elapsed().as_millis() as u64,
            "node agent booted"
        );
        anyhow::Ok(())
    }))
    .await?;
    step.done();
    Ok(())
}
