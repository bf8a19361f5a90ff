//! The fresh probe pods `dns test` asks from: one per distinct spec (namespace, image,
//! dnsPolicy, dnsConfig, node), made before the checks and deleted after them — also after a
//! failure or a signal, from the names recorded as each pod is made.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use super::checks::ProbeSpec;

/// Label on the probe pods, so `get pods` shows what they are.
pub const LABEL: (&str, &str) = ("app.kubernetes.io/name", "minikind-dns-test");

/// How long a probe pod may take to run.
const START_LIMIT: Duration = Duration::from_secs(90);

/// The pods made so far, `(namespace, name)`: what the cleanup deletes.
pub type Made = Arc<Mutex<Vec<(String, String)>>>;

/// A pod that idles (sleeps `lifetime`, so one left behind by a killed run ends by itself)
/// with the spec's DNS settings, pinned to its node if it names one (tolerating the node's
/// taints, as the create's check pods do).
pub fn pod(spec: &ProbeSpec, lifetime: Duration) -> Result<Pod> {
    let mut pod_spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "containers": [{
            "name": "probe",
            "image": spec.image,
            "command": ["sleep", lifetime.as_secs().max(1).to_string()],
        }],
    });
    if let Some(policy) = spec.dns_policy {
        pod_spec["dnsPolicy"] = json!(policy.as_str());
    }
    if let Some(conf) = &spec.dns_config {
        pod_spec["dnsConfig"] = json!({
            "nameservers": conf.nameservers,
            "searches": conf.searches,
            "options": conf.options.iter().map(|o| json!({"name": o.name, "value": o.value})).collect::<Vec<_>>(),
        });
    }
    if let Some(node) = &spec.node_name {
        pod_spec["nodeName"] = json!(node);
        pod_spec["tolerations"] = json!([{"operator": "Exists"}]);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "dns-test-",
            "namespace": spec.namespace,
            "labels": {LABEL.0: LABEL.1, "app.kubernetes.io/managed-by": "minikind"},
        },
        "spec": pod_spec,
    }))
    .context("building the probe pod")
}

/// Makes the probe pod for `spec` and waits until it runs; returns its name. The name is
/// recorded in `made` as soon as the API server gives it.
pub async fn start(
    client: &kube::Client,
    spec: &ProbeSpec,
    lifetime: Duration,
    made: &Made,
) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let created = api
        .create(&PostParams::default(), &pod(spec, lifetime)?)
        .await
        .with_context(|| format!("creating a probe pod in namespace {}", spec.namespace))?;
    let name = created.metadata.name.unwrap_or_default();
    made.lock()
        .expect("the probe list is never poisoned: nothing panics holding it")
        .push((spec.namespace.clone(), name.clone()));
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let pod = api
            .get(&name)
            .await
            .with_context(|| format!("reading probe pod {}/{name}", spec.namespace))?;
        let status = pod.status.unwrap_or_default();
        match status.phase.as_deref() {
            Some("Running") => return Ok(name),
            Some(phase @ ("Succeeded" | "Failed")) => bail!(
                "probe pod {}/{name} ({}) ended {phase} before the checks ran: {}",
                spec.namespace,
                spec.image,
                status.message.unwrap_or_default()
            ),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let waiting = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .map(|w| {
                    format!(
                        "{}: {}",
                        w.reason.as_deref().unwrap_or("waiting"),
                        w.message.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            bail!(
                "probe pod {}/{name} ({}) is not running after {}s ({}{waiting})",
                spec.namespace,
                spec.image,
                START_LIMIT.as_secs(),
                status.phase.as_deref().unwrap_or("Pending"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes every probe pod made (at once, no grace); a failure is reported, not fatal.
pub async fn remove_all(client: &kube::Client, made: &Made) {
    let pods: Vec<(String, String)> = std::mem::take(
        &mut *made
            .lock()
            .expect("the probe list is never poisoned: nothing panics holding it"),
    );
    for (ns, name) in pods {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            eprintln!("WARNING: could not delete probe pod {ns}/{name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::checks::{DnsConfig, DnsOption, DnsPolicy};
    use super::*;

    #[test]
    fn the_probe_pod_carries_the_specs_dns_settings() {
        let spec = ProbeSpec {
            namespace: "team".into(),
            image: "tools".into(),
            dns_policy: Some(DnsPolicy::None),
            dns_config: Some(DnsConfig {
                nameservers: vec!["10.96.0.10".into()],
                searches: vec!["a.test".into()],
                options: vec![DnsOption {
                    name: "ndots".into(),
                    value: Some("1".into()),
                }],
            }),
            node_name: Some("lab-worker".into()),
        };
        let p = pod(&spec, Duration::from_secs(120)).unwrap();
        assert_eq!(p.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(p.metadata.labels.unwrap()[LABEL.0], LABEL.1);
        let s = p.spec.unwrap();
        assert_eq!(s.dns_policy.as_deref(), Some("None"));
        assert_eq!(s.node_name.as_deref(), Some("lab-worker"));
        let conf = s.dns_config.unwrap();
        assert_eq!(conf.nameservers.unwrap(), ["10.96.0.10"]);
        assert_eq!(conf.options.unwrap()[0].value.as_deref(), Some("1"));
        let c = &s.containers[0];
        assert_eq!(c.image.as_deref(), Some("tools"));
        assert_eq!(c.command.as_deref().unwrap(), ["sleep", "120"]);
        // The defaults leave the pod's DNS to the cluster.
        let plain = pod(
            &ProbeSpec {
                namespace: "default".into(),
                image: "tools".into(),
                dns_policy: None,
                dns_config: None,
                node_name: None,
            },
            Duration::from_secs(1),
        )
        .unwrap()
        .spec
        .unwrap();
        assert_eq!(
            (plain.dns_policy, plain.dns_config, plain.node_name),
            (None, None, None)
        );
    }
}
