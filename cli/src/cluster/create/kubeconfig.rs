//! Exporting the kubeconfig: the cluster's entries merged into the user's kubeconfig as
//! `minikind-<cluster>`, its context made current (KIND's `pkg/cluster/internal/create/
//! create.go`: `kubeconfig.Export` after the actions, then "Set kubectl context to …").

use anyhow::Result;

use super::context::Context;
use crate::cluster::kubeconfig;

pub async fn execute(ctx: &mut Context<'_>) -> Result<()> {
    let name = ctx.name;
    let api = ctx.api()?;
    let path = kubeconfig::export(name, &api.admin, &api.server)?;
    tracing::info!(
        path = %path.display(),
        context = %minikind_apiserver::kubeconfig::entry_name(name),
        server = %api.server,
        "kubeconfig written"
    );
    ctx.status.line(&format!(
        "Set kubectl context to \"{}\" (in {})",
        minikind_apiserver::kubeconfig::entry_name(name),
        path.display()
    ));
    Ok(())
}
