//! Preparing the cluster's network (KIND's docker provider: `network.go`, `ensureNetwork`).

use anyhow::Result;

use super::context::Context;
use crate::provider::docker::{network, nodes};

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let (docker, name) = (ctx.docker, ctx.name);
    let internal = ctx.config.networking.internal;
    let step = ctx.status.step(format!(
        "Preparing network {}{}",
        nodes::network_name(name),
        if internal { " (internal)" } else { "" }
    ));
    let network_id = network::create(docker, name, internal).await?;
    step.done();
    if tracing::enabled!(tracing::Level::INFO) {
        network::log_network(docker, &nodes::network_name(name), &network_id).await;
    }
    Ok(())
}
