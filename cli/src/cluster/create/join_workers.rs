//! Joining the workers: each gets its kubelet serving certificate, issued on the control-plane
//! node (which holds the cluster CA's key) for the worker's name and address, then the node
//! kubeconfig its kubelet waits for (KIND's `actions/kubeadmjoin/join.go`, "Joining worker
//! nodes 🚜"; kubeadm's workers get theirs through TLS bootstrap and CSRs instead, which
//! minikind's API server does not serve).

use anyhow::{Context as _, Result, bail};
use futures::future::try_join_all;
use minikind_contract::{
    KUBELET_CERT_PROGRAM, KUBELET_SERVING_PEM, MINIKIND_PATH, NODE_KUBECONFIG,
};

use super::context::Context;
use crate::config::NodeRole;
use crate::provider::docker::exec::exec_in;
use crate::provider::docker::{files, nodes};

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
    let cp = ctx
        .nodes
        .iter()
        .find(|(_, r)| *r == NodeRole::ControlPlane)
        .map(|(n, _)| n.as_str())
        .context("the config has no control-plane node")?;
    let network = &nodes::network_name(ctx.name);
    let admin = ctx.api()?.admin.as_str();
    let step = ctx.status.step("Joining worker nodes 🚜");
    try_join_all(workers.iter().map(|w| async move {
        let ip = nodes::container_ip(docker, w, network).await?;
        let argv = [
            MINIKIND_PATH,
            KUBELET_CERT_PROGRAM,
            "--node-name",
            w.as_str(),
            "--node-ip",
            ip.as_str(),
        ];
        let out = exec_in(docker, cp, &argv).await?;
        if !out.ok() || !out.stdout.contains("PRIVATE KEY") {
            bail!(
                "issuing the kubelet serving certificate of {w} on {cp} (exit {}): {}",
                out.exit_code,
                out.stderr.trim()
            );
        }
        files::write_node_file(docker, w, KUBELET_SERVING_PEM, &out.stdout, 0o600).await?;
        files::write_node_file(docker, w, NODE_KUBECONFIG, admin, 0o600).await
    }))
    .await?;
    step.done();
    Ok(())
}
