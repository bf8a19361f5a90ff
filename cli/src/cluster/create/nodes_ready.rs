//! Waiting for every node to be Ready (KIND's `actions/waitforready/waitforready.go`, which
//! waits for the control plane's nodes; here every node, bounded by `--wait`).

use std::time::Duration;

use anyhow::{Context as _, Result};

use super::context::Context;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let wait = ctx.wait;
    let step = ctx.status.step("Waiting for nodes Ready ⏳");
    let node_names = ctx.node_names();
    tokio::time::timeout(wait, wait_nodes_ready(&ctx.api()?.client, &node_names))
        .await
        .with_context(|| {
            format!(
                "nodes not Ready within {}",
                humantime::format_duration(wait)
            )
        })??;
    step.done();
    Ok(())
}

/// Polls the Node objects until every node is registered with condition Ready=True.
async fn wait_nodes_ready(client: &kube::Client, names: &[String]) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let api: kube::Api<Node> = kube::Api::all(client.clone());
    loop {
        let nodes = api
            .list(&Default::default())
            .await
            .context("listing nodes")?;
        let ready = |n: &Node| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let all = names.iter().all(|want| {
            nodes
                .items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(want.as_str()) && ready(n))
        });
        if all {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
