//! The node's heartbeat Lease (`kube-node-lease/<node>`, coordination.k8s.io/v1), as the
//! kubelet's node lease controller keeps it (`pkg/kubelet/nodelease`, the shared
//! `component-helpers/apimachinery/lease` controller): held by the node, 40 s long, renewed
//! every quarter of that (10 s), owned by the Node so that deleting the Node deletes it.
//! Failures are retried sooner, from 200 ms doubling up to the renew interval.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// The kubelet's `nodeLeaseDurationSeconds` default.
pub const DURATION_SECS: i64 = 40;
/// `renewIntervalFraction` (0.25) of the duration.
pub const RENEW_INTERVAL: Duration = Duration::from_secs(DURATION_SECS as u64 / 4);

/// The Lease for `node` (uid `node_uid`) renewed at `now`.
pub fn lease(node: &str, node_uid: &str, now: jiff::Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                                 "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": DURATION_SECS,
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
        },
    })
}

/// Creates the Lease or renews it (an update on the read version, so a concurrent writer
/// makes this attempt fail and retry rather than be overwritten).
pub async fn renew(client: &kube::Client, node: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let uid = nodes
        .get(node)
        .await
        .with_context(|| format!("reading node {node}"))?
        .metadata
        .uid
        .unwrap_or_default();
    let api: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let fresh: Lease = serde_json::from_value(lease(node, &uid, jiff::Timestamp::now()))
        .context("building the node lease")?;
    match api
        .get_opt(node)
        .await
        .with_context(|| format!("reading lease {NAMESPACE}/{node}"))?
    {
        None => {
            api.create(&PostParams::default(), &fresh)
                .await
                .with_context(|| format!("creating lease {NAMESPACE}/{node}"))?;
        }
        Some(mut current) => {
            current.spec = fresh.spec;
            current.metadata.owner_references = fresh.metadata.owner_references;
            api.replace(node, &PostParams::default(), &current)
                .await
                .with_context(|| format!("renewing lease {NAMESPACE}/{node}"))?;
        }
    }
    Ok(())
}

/// Keeps the node's Lease renewed until `shutdown`.
pub async fn run(client: kube::Client, node: String, shutdown: CancellationToken) {
    let mut retry = Duration::from_millis(200);
    loop {
        let wait = match renew(&client, &node).await {
            Ok(()) => {
                retry = Duration::from_millis(200);
                RENEW_INTERVAL
            }
            Err(e) => {
                tracing::warn!("node lease: {e:#}");
                let w = retry;
                retry = (retry * 2).min(RENEW_INTERVAL);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_held_by_and_owned_by_the_node() {
        let now = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let l = lease("kind-worker", "u-1", now);
        assert_eq!(l["spec"]["holderIdentity"], json!("kind-worker"));
        assert_eq!(l["spec"]["leaseDurationSeconds"], json!(40));
        assert_eq!(l["spec"]["renewTime"], json!("2023-11-14T22:13:20.000000Z"));
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], json!("u-1"));
        assert_eq!(RENEW_INTERVAL, Duration::from_secs(10));
        let typed: Lease = serde_json::from_value(l).unwrap();
        assert_eq!(typed.metadata.namespace.as_deref(), Some(NAMESPACE));
    }
}
