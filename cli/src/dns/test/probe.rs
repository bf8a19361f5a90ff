//! The fresh probe pods `dns test` asks from: one per distinct spec (namespace, image,
//! dnsPolicy, dnsConfig, node), made before the checks and deleted after them — also after a
//! failure or a signal. Each run labels its pods with its own id and the cleanup deletes by
//! that label in every namespace it made pods in, so a pod whose create was under way when a
//! signal cut the run short is found too.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::checks::ProbeSpec;

/// Label on the probe pods, so `get pods` shows what they are.
pub const LABEL: (&str, &str) = ("app.kubernetes.io/name", "minikind-dns-test");

/// How long a probe pod may take to run.
const START_LIMIT: Duration = Duration::from_secs(90);

/// The label with a run's own id.
pub const RUN_LABEL: &str = "dns-test.minikind.dev/run";

/// One run's probe pods: its id and the namespaces it made pods in.
pub struct Probes {
    run: String,
    namespaces: Mutex<BTreeSet<String>>,
}

impl Default for Probes {
    fn default() -> Probes {
        Probes::new()
    }
}

impl Probes {
    pub fn new() -> Probes {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Probes {
            run: format!("{}-{nanos}", std::process::id()),
            namespaces: Mutex::new(BTreeSet::new()),
        }
    }

    fn namespaces(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.namespaces
            .lock()
            .expect("the namespace set is never poisoned: nothing panics holding it")
    }
}

/// A pod that idles (sleeps `lifetime`, so one left behind by a killed run ends by itself)
/// with the spec's DNS settings, pinned to its node if it names one (tolerating the node's
/// taints, as the create's check pods do).
pub fn pod(spec: &ProbeSpec, run: &str, lifetime: Duration) -> Result<Pod> {
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
            "labels": {LABEL.0: LABEL.1, RUN_LABEL: run, "app.kubernetes.io/managed-by": "minikind"},
        },
        "spec": pod_spec,
    }))
    .context("building the probe pod")
}

/// Makes the probe pod for `spec` and waits until it runs; returns its name. Its namespace
/// is noted for the cleanup before the create is sent.
pub async fn start(
    client: &kube::Client,
    spec: &ProbeSpec,
    lifetime: Duration,
    probes: &Probes,
) -> Result<String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &spec.namespace);
    let pod = pod(spec, &probes.run, lifetime)?;
    probes.namespaces().insert(spec.namespace.clone());
    let created = api
        .create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating a probe pod in namespace {}", spec.namespace))?;
    let name = created.metadata.name.unwrap_or_default();
    wait_running(&api, &spec.namespace, &name, &spec.image).await?;
    Ok(name)
}

/// Waits until pod `namespace/name` runs (at most [`START_LIMIT`]) and gives it back; an error
/// says what it waits for (`what`: its image, for the message) or how it ended.
pub async fn wait_running(api: &Api<Pod>, namespace: &str, name: &str, what: &str) -> Result<Pod> {
    let deadline = tokio::time::Instant::now() + START_LIMIT;
    loop {
        let pod = api
            .get(name)
            .await
            .with_context(|| format!("reading pod {namespace}/{name}"))?;
        let status = pod.status.clone().unwrap_or_default();
        match status.phase.as_deref() {
            Some("Running") => return Ok(pod),
            Some(phase @ ("Succeeded" | "Failed")) => bail!(
                "pod {namespace}/{name} ({what}) ended {phase} before the checks ran: {}",
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
                "pod {namespace}/{name} ({what}) is not running after {}s ({}{waiting})",
                START_LIMIT.as_secs(),
                status.phase.as_deref().unwrap_or("Pending"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes every pod of this run (at once, no grace); a failure is reported, not fatal.
pub async fn remove_all(client: &kube::Client, probes: &Probes) {
    let namespaces: Vec<String> = probes.namespaces().iter().cloned().collect();
    let selector = ListParams::default().labels(&format!("{RUN_LABEL}={}", probes.run));
    for ns in namespaces {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let pods = match api.list(&selector).await {
            Ok(list) => list.items,
            Err(e) => {
                eprintln!(
                    "WARNING: could not list the probe pods in {ns} to delete them \
                     (label {RUN_LABEL}={}): {e}",
                    probes.run
                );
                continue;
            }
        };
        for p in pods {
            let name = p.metadata.name.unwrap_or_default();
            if let Err(e) = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
            {
                eprintln!("WARNING: could not delete probe pod {ns}/{name}: {e}");
            }
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
        let p = pod(&spec, "run-1", Duration::from_secs(120)).unwrap();
        assert_eq!(p.metadata.namespace.as_deref(), Some("team"));
        let labels = p.metadata.labels.unwrap();
        assert_eq!(labels[LABEL.0], LABEL.1);
        assert_eq!(labels[RUN_LABEL], "run-1");
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
            "run-1",
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
