//! Writing the builtin embedded resolvers' names (`dns.embedded: builtin` only): every
//! container has its address now, so each node's resolver is told who is who. KIND has no such
//! step (Docker's own resolver knows the names).

use anyhow::Result;

use super::context::Context;
use crate::provider::docker::{embedded_names, nodes};

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let name = ctx.name;
    let step = ctx.status.step("Writing the embedded resolvers' names 📇");
    let node_list = ctx.node_names();
    let table =
        embedded_names::write_names(ctx.docker, name, &nodes::network_name(name), &node_list)
            .await?;
    step.done();
    ctx.status.line(&format!(
        "   builtin resolver: {} name(s), forwarding to [{}]",
        table
            .networks
            .iter()
            .map(|n| n.containers.len())
            .sum::<usize>(),
        ctx.embedded_servers.join(", ")
    ));
    Ok(())
}
