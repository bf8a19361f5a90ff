//! Joining the workers: each gets the node kubeconfig its kubelet waits for (KIND's
//! `actions/kubeadmjoin/join.go`, "Joining worker nodes 🚜").

use anyhow::Result;
use futures::future::try_join_all;
use minikind_contract::NODE_KUBECONFIG;

use super::context::Context;
use crate::config::NodeRole;
use crate::provider::docker::files;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let docker = ctx.docker;
    let workers: Vec<&String> = ctx
        .nodes
        .iter()
        .filter(|(_, r)| *r == NodeRole::Worker)
        .map(|(n, _)| n)
        .collect();
    if workers.is_empty() {
        return Ok(());
    }
    let admin = ctx.api()?.admin.as_str();
    let step = ctx.status.step("Joining worker nodes 🚜");
    try_join_all(
        workers
            .iter()
            .map(|w| files::write_node_file(docker, w, NODE_KUBECONFIG, admin, 0o600)),
    )
    .await?;
    step.done();
    Ok(())
}
