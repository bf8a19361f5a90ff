//! Preparing the nodes: every node container made and started at once, as KIND's docker
//! provider does in `Provision` (`pkg/cluster/internal/providers/docker/provider.go`, with
//! `create.go`'s `planCreation`), under its "Preparing nodes 📦" status.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::context::Context;
use crate::cluster::embedded_dns;
use crate::config::EmbeddedDns;
use crate::provider::docker::nodes;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let (docker, cfg) = (ctx.docker, ctx.config);
    let embedded_servers = if cfg.dns.embedded == EmbeddedDns::Builtin {
        embedded_dns::external_servers(cfg, ctx.upstream_ip.as_deref(), |p| {
            std::fs::read_to_string(p).ok()
        })
    } else {
        Vec::new()
    };
    let image = ctx.image()?;
    let boxes = "📦 ".repeat(ctx.nodes.len());
    let step = ctx
        .status
        .step(format!("Preparing nodes {}", boxes.trim_end()));
    let started_at = unix_now();
    let privileges = nodes::start_nodes(
        docker,
        ctx.name,
        &ctx.nodes,
        image,
        cfg,
        ctx.upstream_ip.as_deref(),
        &embedded_servers,
    )
    .await?;
    step.done();
    ctx.embedded_servers = embedded_servers;
    ctx.started_at = started_at;
    ctx.privileges = Some(privileges);
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
