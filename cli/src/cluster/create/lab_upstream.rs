//! Starting the lab upstream (`dns.upstream: lab`): an authoritative server for the hermetic
//! `example.test` zone, whose address becomes every node's `--dns`. KIND has no such step.

use anyhow::Result;

use super::context::Context;
use crate::provider::docker::nodes;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let name = ctx.name;
    let image = ctx.image()?.to_string();
    let step = ctx.status.step("Starting lab upstream 🧪");
    let ip = nodes::start_upstream(ctx.docker, name, &image).await?;
    step.done();
    tracing::info!(
        container = %nodes::upstream_name(name),
        %ip,
        "lab upstream started: the nodes' --dns"
    );
    ctx.upstream_ip = Some(ip);
    Ok(())
}
