//! The create's last step: a real pod on every node resolves `kubernetes.default`, as a user's
//! first pod will — through the namespace its kubelet made, that node's service rules, the
//! tunnels to wherever CoreDNS runs, and cluster-dns answering from the API. A pod on a worker
//! goes through that worker's rules and tunnels, which a check on the control plane alone does
//! not prove, so every node gets its own.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use serde_json::json;

pub use minikind_contract::TOOLS_IMAGE;
use minikind_control_plane::dns_addon::{APP_LABEL, NAMESPACE, SERVICE};

/// The name every check asks for, as in kubeadm's and KIND's own smoke tests.
const NAME: &str = "kubernetes.default";

/// The longest one try may take: the pod starts, and its lookup walks the search list at 1 s
/// per query (`timeout:1 attempts:1`, so one try made while the path is still black-holed
/// cannot use up the whole wait).
const TRY_LIMIT: Duration = Duration::from_secs(15);

/// Label on the check pods, so a reader of `get pods -A` during a create sees what they are.
const LABEL: (&str, &str) = ("app.kubernetes.io/name", "minikind-dns-check");

/// Waits until a pod on each of `nodes` has resolved [`NAME`], trying again with a new pod
/// after each failed one; when `wait` runs out, the error names the node, what its last pod
/// showed and the CoreDNS pods' state. The check pods are deleted again.
pub async fn wait_every_node(
    client: &kube::Client,
    nodes: &[String],
    wait: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + wait;
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    try_join_all(
        nodes
            .iter()
            .map(|n| wait_node(&api, &slices, n, deadline, wait)),
    )
    .await?;
    Ok(())
}

async fn wait_node(
    api: &Api<Pod>,
    slices: &Api<EndpointSlice>,
    node: &str,
    deadline: tokio::time::Instant,
    wait: Duration,
) -> Result<()> {
    let mut last = String::from("no pod finished");
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            let pods = coredns_pod_states(api).await;
            anyhow::bail!(
                "{NAME} did not resolve from a pod on {node} within {} (last try: {last}; \
                 CoreDNS pods: {pods})",
                humantime::format_duration(wait)
            );
        }
        // A pod only helps once kube-dns has a ready endpoint: until then every lookup is
        // refused, and a new pod each time would only churn the node's namespaces.
        if !kube_dns_has_ready_endpoint(slices).await {
            last = "kube-dns has no ready endpoint yet".into();
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let pod = api
            .create(&PostParams::default(), &check_pod(node))
            .await
            .with_context(|| format!("creating a DNS check pod on {node}"))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let outcome = tokio::time::timeout(remaining.min(TRY_LIMIT), finished(api, &name)).await;
        let resolved = match outcome {
            Ok(Ok(phase)) if phase == "Succeeded" => true,
            Ok(Ok(phase)) => {
                let log = api
                    .logs(&name, &LogParams::default())
                    .await
                    .unwrap_or_default();
                last = format!("pod {name} {phase}: {}", one_line(&log));
                false
            }
            Ok(Err(e)) => {
                last = format!("pod {name}: {e:#}");
                false
            }
            Err(_) => {
                last = format!("pod {name} still running after {TRY_LIMIT:?}");
                false
            }
        };
        if !resolved {
            tracing::debug!(%node, try_ = %last, "cluster DNS check: not yet");
        }
        remove(api, &name).await;
        if resolved {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether any EndpointSlice of the kube-dns Service lists a ready endpoint (an error reading
/// them counts as "not yet": the wait's deadline still bounds it).
async fn kube_dns_has_ready_endpoint(slices: &Api<EndpointSlice>) -> bool {
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={SERVICE}"));
    let Ok(list) = slices.list(&params).await else {
        return false;
    };
    list.items
        .iter()
        .flat_map(|s| &s.endpoints)
        .any(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
}

/// A ClusterFirst pod pinned to `node` (tolerating its taints, as a DaemonSet's pods do) that
/// looks the name up once and exits with getent's status.
fn check_pod(node: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": format!("{node}-dns-check-"),
            "labels": {LABEL.0: LABEL.1, "app.kubernetes.io/managed-by": "minikind"},
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "dnsPolicy": "ClusterFirst",
            "dnsConfig": {"options": [{"name": "timeout", "value": "1"}, {"name": "attempts", "value": "1"}]},
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "lookup",
                "image": TOOLS_IMAGE,
                "command": ["getent", "hosts", NAME],
            }],
        },
    }))
    .expect("the check pod is a valid Pod")
}

/// Polls the pod until it has run to an end; returns its phase.
async fn finished(api: &Api<Pod>, name: &str) -> Result<String> {
    loop {
        let pod = api
            .get(name)
            .await
            .with_context(|| format!("reading pod {name}"))?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return Ok(phase);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes a check pod at once and waits (briefly) until it is gone, so that right after the
/// create `get pods -A` shows only the cluster's own pods. A pod left behind is harmless, so
/// failures here are not errors.
async fn remove(api: &Api<Pod>, name: &str) {
    if api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .is_err()
    {
        return;
    }
    for _ in 0..50 {
        match api.get_opt(name).await {
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => return,
        }
    }
}

fn one_line(log: &str) -> String {
    let line = log.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "no output".into()
    } else {
        line
    }
}

/// `name (node, phase, ready|not ready)` for each CoreDNS pod, for the wait's error.
async fn coredns_pod_states(api: &Api<Pod>) -> String {
    let list = match api
        .list(&ListParams::default().labels(&format!("{}={}", APP_LABEL.0, APP_LABEL.1)))
        .await
    {
        Ok(l) => l,
        Err(e) => return format!("could not list them: {e}"),
    };
    if list.items.is_empty() {
        return "none".into();
    }
    list.items
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            format!(
                "{} ({}, {}, {})",
                p.metadata.name.as_deref().unwrap_or("?"),
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .unwrap_or("unscheduled"),
                status.phase.as_deref().unwrap_or("Unknown"),
                if ready { "ready" } else { "not ready" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_pod_is_a_pinned_cluster_first_pod_that_gives_up_fast() {
        let p = check_pod("demo-worker2");
        let spec = p.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("demo-worker2"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let opts: Vec<(String, Option<String>)> = spec
            .dns_config
            .unwrap()
            .options
            .unwrap()
            .into_iter()
            .map(|o| (o.name.unwrap(), o.value))
            .collect();
        assert_eq!(
            opts,
            [
                ("timeout".to_string(), Some("1".to_string())),
                ("attempts".to_string(), Some("1".to_string()))
            ]
        );
        assert_eq!(
            spec.containers[0].command.as_deref(),
            Some(&["getent".to_string(), "hosts".into(), NAME.into()][..])
        );
        assert_eq!(
            p.metadata.generate_name.as_deref(),
            Some("demo-worker2-dns-check-")
        );
    }
}
