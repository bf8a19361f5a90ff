//! The Node object: registration with labels, addresses and the Ready condition, the status
//! heartbeat, and waiting for the pod CIDR the node IPAM controller assigns.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::KubeletConfig;
use super::status::api_time;

/// The version the kubelet reports (the API version minikind serves, plus who it is).
pub const KUBELET_VERSION: &str = "v1.34.0-minikind";

fn labels(cfg: &KubeletConfig) -> Value {
    let mut l = serde_json::Map::new();
    l.insert("kubernetes.io/hostname".into(), json!(cfg.node_name));
    l.insert("kubernetes.io/os".into(), json!("linux"));
    l.insert("kubernetes.io/arch".into(), json!(go_arch()));
    l.insert("beta.kubernetes.io/os".into(), json!("linux"));
    l.insert("beta.kubernetes.io/arch".into(), json!(go_arch()));
    for (k, v) in &cfg.node_labels {
        l.insert(k.clone(), json!(v));
    }
    Value::Object(l)
}

/// A taint the Node registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

impl Taint {
    /// `key[=value]:Effect`, as the kubelet's `--register-with-taints` takes it.
    pub fn parse(s: &str) -> Result<Taint> {
        let (kv, effect) = s
            .rsplit_once(':')
            .with_context(|| format!("taint {s:?} has no :Effect"))?;
        if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            bail!(
                "taint {s:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            );
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            bail!("taint {s:?} has no key");
        }
        Ok(Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        })
    }

    fn to_json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if !self.value.is_empty() {
            t["value"] = json!(self.value);
        }
        t
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The node's `status` as the kubelet posts it.
pub fn node_status(cfg: &KubeletConfig, kubelet_port: u16, since: &str) -> Value {
    let now = api_time(jiff::Timestamp::now());
    json!({
        "conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": since},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": since},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": since},
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": since},
        ],
        "addresses": [
            {"type": "InternalIP", "address": cfg.node_ip.to_string()},
            {"type": "Hostname", "address": cfg.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": kernel_version(),
            "osImage": "minikind node",
            "containerRuntimeVersion": concat!("minikind://", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": go_arch(),
        },
        "capacity": {"cpu": cpus(), "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": cpus(), "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
    })
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn cpus() -> String {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .to_string()
}

/// Creates the Node (with its registration taints), or updates the labels of the one a
/// previous kubelet registered (its taints are the cluster's business by then, as with the
/// kubelet's `--register-with-taints`), then posts its status.
pub async fn register(client: &kube::Client, cfg: &KubeletConfig, kubelet_port: u16) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let since = api_time(jiff::Timestamp::now());
    let existing = api
        .get_opt(&cfg.node_name)
        .await
        .with_context(|| format!("reading node {}", cfg.node_name))?;
    match existing {
        None => {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": cfg.node_name, "labels": labels(cfg)},
                "spec": if cfg.register_taints.is_empty() {
                    json!({})
                } else {
                    json!({"taints": cfg.register_taints.iter().map(Taint::to_json).collect::<Vec<_>>()})
                },
            }))
            .context("building the Node object")?;
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => bail!("registering node {}: {e}", cfg.node_name),
            }
        }
        Some(_) => {
            let patch = json!({"metadata": {"labels": labels(cfg)}});
            api.patch(
                &cfg.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .with_context(|| format!("updating node {}", cfg.node_name))?;
        }
    }
    post_status(client, cfg, kubelet_port, &since).await
}

async fn post_status(
    client: &kube::Client,
    cfg: &KubeletConfig,
    kubelet_port: u16,
    since: &str,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": node_status(cfg, kubelet_port, since)});
    api.patch_status(
        &cfg.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .with_context(|| format!("posting the status of node {}", cfg.node_name))?;
    Ok(())
}

/// Posts the status every `cfg.heartbeat` until `shutdown`; a node that went missing (deleted
/// by someone) is registered again.
pub async fn heartbeat(
    client: kube::Client,
    cfg: KubeletConfig,
    kubelet_port: u16,
    shutdown: CancellationToken,
) {
    let since = api_time(jiff::Timestamp::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(cfg.heartbeat) => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(e) = post_status(&client, &cfg, kubelet_port, &since).await {
            tracing::warn!("node heartbeat: {e:#}");
            if let Err(e) = register(&client, &cfg, kubelet_port).await {
                tracing::warn!("registering the node again: {e:#}");
            }
        }
    }
}

/// Waits until the node has `spec.podCIDR`.
pub async fn wait_pod_cidr(
    client: &kube::Client,
    node: &str,
    shutdown: &CancellationToken,
) -> Result<Ipv4Net> {
    let api: Api<Node> = Api::all(client.clone());
    loop {
        // A failed read (the API restarting) is retried like a missing CIDR.
        let found = match api.get_opt(node).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("reading node {node}: {e}");
                None
            }
        };
        if let Some(c) = found
            .and_then(|n| n.spec)
            .and_then(|s| s.pod_cidr)
            .filter(|c| !c.is_empty())
        {
            return c
                .parse()
                .with_context(|| format!("node {node} has podCIDR {c:?}, not an IPv4 CIDR"));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.cancelled() => bail!("stopped while waiting for the pod CIDR of node {node}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_as_register_with_taints_takes_them() {
        let t = Taint::parse("node-role.kubernetes.io/control-plane:NoSchedule").unwrap();
        assert_eq!(
            t.to_json(),
            json!({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
        );
        let t = Taint::parse("dedicated=gpu:NoExecute").unwrap();
        assert_eq!(
            t.to_json(),
            json!({"key": "dedicated", "value": "gpu", "effect": "NoExecute"})
        );
        assert!(Taint::parse("x").is_err());
        assert!(Taint::parse("x:Sometimes").is_err());
        assert!(Taint::parse(":NoSchedule").is_err());
    }

    #[test]
    fn status_names_the_address_port_and_ready() {
        let cfg = KubeletConfig::new("kind-worker", "172.18.0.3".parse().unwrap());
        let s = node_status(&cfg, 10250, "2026-01-01T00:00:00Z");
        assert_eq!(
            s["addresses"][0],
            json!({"type": "InternalIP", "address": "172.18.0.3"})
        );
        assert_eq!(
            s["addresses"][1],
            json!({"type": "Hostname", "address": "kind-worker"})
        );
        assert_eq!(s["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        let ready = &s["conditions"][3];
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        assert_eq!(labels(&cfg)["kubernetes.io/hostname"], "kind-worker");
        // The typed client must accept what we post.
        let _: k8s_openapi::api::core::v1::NodeStatus = serde_json::from_value(s).unwrap();
    }
}
