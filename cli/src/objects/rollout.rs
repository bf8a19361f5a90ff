//! `rollout restart` and `rollout status` for Deployments, with kubectl's behaviour: a restart
//! stamps the pod template with `kubectl.kubernetes.io/restartedAt`, so the template hash changes
//! and the deployment controller replaces the pods; status waits on the Deployment's status
//! fields and prints kubectl's progress lines, each only when it changes.

use super::api::api_error;
use super::select::one_deployment;
use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(clap::Subcommand, Debug)]
pub enum RolloutAction {
    /// Replace every pod of a Deployment with a fresh one (stamps the pod template)
    Restart {
        /// `deployment NAME` or `deployment/NAME`
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Wait until a Deployment's pods all run its current template and are ready
    Status {
        /// `deployment NAME` or `deployment/NAME`
        target: String,
        name: Option<String>,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Give up after this long (e.g. 90s, 2m)
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

/// The annotation `kubectl rollout restart` sets on the pod template.
const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

pub async fn run(
    client: &kube::Client,
    action: RolloutAction,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match action {
        RolloutAction::Restart {
            target,
            name,
            namespace,
        } => {
            let (name, ns) = one_deployment(client, "rollout restart", &target, name, namespace)?;
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            // Go's time.RFC3339 in UTC, as kubectl stamps it (`2026-11-22T10:04:05Z`).
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            let patch =
                json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .map_err(api_error)
                .with_context(|| format!("restarting deployment {name} in {ns}"))?;
            writeln!(out, "deployment.apps/{name} restarted")?;
            Ok(())
        }
        RolloutAction::Status {
            target,
            name,
            namespace,
            timeout,
        } => {
            let (name, ns) = one_deployment(client, "rollout status", &target, name, namespace)?;
            let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
            let start = Instant::now();
            let mut last = String::new();
            loop {
                let d = api
                    .get(&name)
                    .await
                    .map_err(api_error)
                    .with_context(|| format!("reading deployment {name} in {ns}"))?;
                let (done, message) = progress(&name, &d);
                if message != last {
                    out.write_all(message.as_bytes())?;
                    out.flush()?;
                    last = message;
                }
                if done {
                    return Ok(());
                }
                if start.elapsed() >= timeout {
                    bail!("timed out waiting for the condition (deployment {name} in {ns})");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// kubectl's deployment status viewer: whether the rollout is complete, and the line to print.
fn progress(name: &str, d: &Deployment) -> (bool, String) {
    let generation = d.metadata.generation.unwrap_or(0);
    let status = d.status.clone().unwrap_or_default();
    if status.observed_generation.unwrap_or(0) < generation {
        return (
            false,
            "Waiting for deployment spec update to be observed...\n".into(),
        );
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < want {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated...\n"
            ),
        );
    }
    if total > updated {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...\n",
                total - updated
            ),
        );
    }
    if available < updated {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available...\n"
            ),
        );
    }
    (
        true,
        format!("deployment {name:?} successfully rolled out\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn progress_follows_kubectls_order_of_checks() {
        let cases = [
            (
                deployment(2, json!({"observedGeneration": 1})),
                "Waiting for deployment spec update to be observed...\n",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}),
                ),
                "Waiting for deployment \"web\" rollout to finish: 1 out of 2 new replicas have been updated...\n",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2}),
                ),
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n",
            ),
            (
                deployment(
                    2,
                    json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
                ),
                "Waiting for deployment \"web\" rollout to finish: 1 of 2 updated replicas are available...\n",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(progress("web", &d), (false, want.to_string()));
        }
        let done = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(
            progress("web", &done),
            (true, "deployment \"web\" successfully rolled out\n".into())
        );
    }
}
