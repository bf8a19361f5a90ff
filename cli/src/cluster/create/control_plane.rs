//! Starting the control plane: its agent says the API server is up, and the host reads the
//! admin kubeconfig and asks the API server for its version (KIND's
//! `actions/kubeadminit/init.go`, "Starting control-plane 🕹️").

use anyhow::{Context as _, Result};
use minikind_contract::{ADMIN_KUBECONFIG, CONTROL_PLANE_READY};

use super::context::{ApiAccess, Context};
use crate::cluster::access;
use crate::config::NodeRole;
use crate::provider::docker::{files, nodes, wait};

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let (docker, status, wait) = (ctx.docker, ctx.status, ctx.wait);
    let cp = ctx
        .nodes
        .iter()
        .find(|(_, r)| *r == NodeRole::ControlPlane)
        .map(|(n, _)| n.clone())
        .context("the config has no control-plane node")?;
    let step = status.step("Starting control-plane 🕹️");
    wait::log_line(docker, &cp, CONTROL_PLANE_READY, ctx.started_at, wait).await?;
    let admin = files::read_node_file(docker, &cp, ADMIN_KUBECONFIG).await?;
    let server = nodes::api_server_url(docker, ctx.name, &cp).await?;
    let client = access::client_for(&admin, &server).await?;
    let version = tokio::time::timeout(wait, client.apiserver_version())
        .await
        .context("the API server did not answer in time")?
        .with_context(|| format!("asking the API server at {server} for its version"))?;
    step.done();
    tracing::debug!(%server, version = %version.git_version, "API server answers");
    status.line(&format!("   API server {server} ({})", version.git_version));
    ctx.api = Some(ApiAccess {
        admin,
        server,
        client,
    });
    Ok(())
}
