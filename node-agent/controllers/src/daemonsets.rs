//! The DaemonSet controller (kube-controller-manager's `pkg/controller/daemon`): one pod per
//! node that the pod template's `nodeSelector`, required node affinity and tolerations (plus
//! the tolerations every daemon pod gets) admit. Each pod is pinned to its node with a
//! `matchFields metadata.name` node-affinity term and left to the scheduler to bind, as
//! upstream does. Failed pods are replaced; pods on nodes that no longer fit are removed.
//!
//! RollingUpdate replaces pods whose `controller-revision-hash` is not the current
//! template's: with `maxSurge` 0, at most `maxUnavailable` nodes are without an available
//! pod at a time (old pods are deleted, then recreated); with `maxSurge`, the new pod starts
//! beside the old one, which goes once the new one is available. OnDelete waits for the user
//! to delete pods. Template history lives in ControllerRevisions (`rollout history/undo`).

use super::pods_of::{self, PodName};
use super::revisions;
use super::scheduler::{node_matches, tolerates_taints};
use super::{Key, Reconciler};
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const MANAGER: &str = "daemon-set-controller";

/// The tolerations the DaemonSet controller adds to every daemon pod
/// (`util.AddOrUpdateDaemonPodTolerations`): they keep running through node conditions.
fn default_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

/// The template with the daemon tolerations added (those it does not have yet).
fn daemon_template(ds: &Value) -> Value {
    let mut t = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let host_network = t.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
    if !t.get("spec").is_some_and(Value::is_object) {
        t["spec"] = json!({});
    }
    let tols = t["spec"]
        .as_object_mut()
        .expect("made an object above")
        .entry("tolerations")
        .or_insert(json!([]));
    if let Some(a) = tols.as_array_mut() {
        for d in default_tolerations(host_network) {
            if !a
                .iter()
                .any(|x| x.get("key") == d.get("key") && x.get("effect") == d.get("effect"))
            {
                a.push(d);
            }
        }
    }
    t
}

/// The node a daemon pod is for: its binding, else its `matchFields` pin.
fn node_of(p: &Value) -> Option<String> {
    if let Some(n) = str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")?
        .as_array()?
        .iter()
        .flat_map(|t| t.get("matchFields").and_then(Value::as_array).into_iter().flatten())
        .find(|f| f.get("key").and_then(Value::as_str) == Some("metadata.name"))?
        .get("values")?
        .as_array()?
        .first()?
        .as_str()
        .map(String::from)
}

/// Pins a pod (template) to one node: a required node-affinity term matching the node's name
/// replaces any `matchFields` the template had (`util.ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn pin_to(pod: &mut Value, node: &str) {
    let spec = &mut pod["spec"];
    let term =
        json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    let existing = spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let terms: Vec<Value> = if existing.is_empty() {
        vec![term]
    } else {
        // Keep the label expressions of each term, with the node pin added.
        existing
            .into_iter()
            .map(|mut t| {
                t["matchFields"] = term["matchFields"].clone();
                t
            })
            .collect()
    };
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
        json!({"nodeSelectorTerms": terms});
}

pub struct DaemonSets;

impl Reconciler for DaemonSets {
    fn keys_for(&mut self, st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::daemonsets() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::pods() {
            pods_of::controller_key(&o.value(), "DaemonSet")
                .into_iter()
                .collect()
        } else if o.res == idx::nodes() {
            self.all_keys(st)
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::daemonsets())
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("daemonset", &key, reconcile(st, &key.0, &key.1).await);
    }
}

fn int_or_percent(v: Option<&Value>, n: i64, default: i64, up: bool) -> i64 {
    match v {
        Some(Value::Number(x)) => x.as_i64().unwrap_or(default),
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if up {
                (n * pct + 99) / 100
            } else {
                n * pct / 100
            }
        }
        _ => default,
    }
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(ds) = st.store.get(idx::daemonsets(), ns, name) else {
        return Ok(());
    };
    let ds = ds.value();
    if pods_of::terminating(&ds) {
        return Ok(());
    }
    let uid = str_at(&ds, "/metadata/uid").unwrap_or_default().to_string();
    let pods = pods_of::owned_pods(st, ns, &uid);
    let in_use: Vec<String> = pods
        .iter()
        .filter_map(|p| {
            str_at(p, &format!("/metadata/labels/{}", revisions::HASH_LABEL)).map(String::from)
        })
        .collect();
    let current = revisions::sync(st, &ds, idx::daemonsets(), MANAGER, &in_use).await?;
    let mut template = daemon_template(&ds);
    template["metadata"]["labels"][revisions::HASH_LABEL] = json!(current.hash);
    template["metadata"]["labels"]["pod-template-generation"] =
        json!(pods_of::generation(&ds).to_string());
    let min_ready = pods_of::min_ready_seconds(&ds);
    let is_current = |p: &Value| {
        str_at(p, &format!("/metadata/labels/{}", revisions::HASH_LABEL))
            == Some(current.hash.as_str())
    };

    let (nodes, _, _) = st.store.list(idx::nodes(), None, None, 0, |_| true);
    let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in pods {
        // Failed daemon pods are deleted and replaced (`syncNodes` with failed pods).
        if pods_of::phase(&p) == "Failed" && !pods_of::terminating(&p) {
            pods_of::delete_pod(st, ns, str_at(&p, "/metadata/name").unwrap_or_default()).await;
            continue;
        }
        if let Some(n) = node_of(&p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let owner = pods_of::controller_ref(&ds, idx::daemonsets());
    let prefix = format!("{name}-");
    let rolling =
        str_at(&ds, "/spec/updateStrategy/type").unwrap_or("RollingUpdate") == "RollingUpdate";
    let mut should: Vec<String> = Vec::new();
    let (mut desired, mut scheduled, mut misscheduled) = (0i64, 0i64, 0i64);
    for n in nodes.iter().map(|n| n.value()) {
        let node = str_at(&n, "/metadata/name").unwrap_or_default().to_string();
        let fits = node_matches(&template, &n) && tolerates_taints(&template, &n);
        let here: Vec<Value> = by_node.remove(&node).unwrap_or_default();
        let live: Vec<&Value> = here.iter().filter(|p| !pods_of::terminating(p)).collect();
        if fits {
            desired += 1;
            should.push(node.clone());
            if !live.is_empty() {
                scheduled += 1;
            }
            if live.is_empty() {
                let mut pod = pods_of::pod_from_template(
                    &template,
                    ns,
                    PodName::Generate(&prefix),
                    owner.clone(),
                );
                pin_to(&mut pod, &node);
                objects::create_internal(st, idx::pods(), pod, MANAGER).await?;
            } else if live.len() > 1
                && !(rolling
                    && live.iter().any(|p| is_current(p))
                    && live.iter().any(|p| !is_current(p)))
            {
                // Duplicates: keep the oldest.
                let mut extra = live.clone();
                extra.sort_by_key(|p| {
                    str_at(p, "/metadata/creationTimestamp")
                        .unwrap_or_default()
                        .to_string()
                });
                for p in extra.iter().skip(1) {
                    pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default())
                        .await;
                }
            }
        } else if !live.is_empty() {
            misscheduled += 1;
            for p in live {
                pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
            }
        }
    }
    // Pods for nodes that are gone.
    for p in by_node
        .values()
        .flatten()
        .filter(|p| !pods_of::terminating(p))
    {
        pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
    }

    // Rolling update over the nodes that should run a pod.
    let pods = pods_of::owned_pods(st, ns, &uid);
    let on = |node: &str| -> Vec<&Value> {
        pods.iter()
            .filter(|p| !pods_of::terminating(p) && node_of(p).as_deref() == Some(node))
            .collect()
    };
    if rolling {
        let max_surge = int_or_percent(
            ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"),
            desired,
            0,
            true,
        );
        let max_unavailable = int_or_percent(
            ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
            desired,
            1,
            false,
        )
        .max(if max_surge == 0 { 1 } else { 0 });
        let unavailable = should
            .iter()
            .filter(|n| !on(n).iter().any(|p| pods_of::available(p, min_ready)))
            .count() as i64;
        let mut budget = max_unavailable - unavailable;
        let mut surged = 0;
        for node in &should {
            let here = on(node);
            let old: Vec<&&Value> = here.iter().filter(|p| !is_current(p)).collect();
            if old.is_empty() {
                continue;
            }
            let new: Vec<&&Value> = here.iter().filter(|p| is_current(p)).collect();
            if max_surge > 0 {
                if new.iter().any(|p| pods_of::available(p, min_ready)) {
                    for p in old {
                        pods_of::delete_pod(
                            st,
                            ns,
                            str_at(p, "/metadata/name").unwrap_or_default(),
                        )
                        .await;
                    }
                } else if new.is_empty() && surged < max_surge {
                    let mut pod = pods_of::pod_from_template(
                        &template,
                        ns,
                        PodName::Generate(&prefix),
                        owner.clone(),
                    );
                    pin_to(&mut pod, node);
                    objects::create_internal(st, idx::pods(), pod, MANAGER).await?;
                    surged += 1;
                }
                continue;
            }
            // Unavailable old pods go at once; available ones within the budget.
            let available = old.iter().any(|p| pods_of::available(p, min_ready));
            if available {
                if budget <= 0 {
                    continue;
                }
                budget -= 1;
            }
            for p in old {
                pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
            }
        }
    }

    // Status.
    let pods = pods_of::owned_pods(st, ns, &uid);
    let (mut ready, mut available, mut updated) = (0i64, 0i64, 0i64);
    for node in &should {
        let here: Vec<&Value> = pods
            .iter()
            .filter(|p| !pods_of::terminating(p) && node_of(p).as_deref() == Some(node))
            .collect();
        if here.iter().any(|p| pods_of::pod_ready(p)) {
            ready += 1;
        }
        if here.iter().any(|p| pods_of::available(p, min_ready)) {
            available += 1;
        }
        if here.iter().any(|p| is_current(p)) {
            updated += 1;
        }
    }
    let mut status = json!({
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "desiredNumberScheduled": desired,
        "numberReady": ready,
        "observedGeneration": pods_of::generation(&ds),
        "updatedNumberScheduled": updated,
        "numberAvailable": available,
        "numberUnavailable": desired - available,
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            v.as_i64() != Some(0)
                || matches!(
                    k.as_str(),
                    "currentNumberScheduled"
                        | "numberMisscheduled"
                        | "desiredNumberScheduled"
                        | "numberReady"
                )
        });
    }
    pods_of::write_status(st, idx::daemonsets(), &ds, MANAGER, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_pods_tolerate_node_conditions_and_are_pinned() {
        let ds = json!({"spec": {"template": {"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}}});
        let t = daemon_template(&ds);
        let tols = t.pointer("/spec/tolerations").unwrap().as_array().unwrap();
        assert_eq!(tols.len(), 6, "no duplicate of the one it had: {tols:?}");
        let mut pod = json!({"spec": t["spec"].clone()});
        pin_to(&mut pod, "w1");
        assert_eq!(node_of(&pod).as_deref(), Some("w1"));
        let node = |name: &str| json!({"metadata": {"name": name, "labels": {}}});
        assert!(node_matches(&pod, &node("w1")));
        assert!(!node_matches(&pod, &node("w2")));
        let cp_taint = json!({"metadata": {"name": "cp"}, "spec": {"taints": [
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}});
        assert!(
            !tolerates_taints(&pod, &cp_taint),
            "the control plane's taint is not tolerated by default"
        );
    }

    #[test]
    fn a_pinned_template_keeps_its_label_expressions() {
        let mut pod = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}});
        pin_to(&mut pod, "w1");
        let ssd = json!({"metadata": {"name": "w1", "labels": {"disk": "ssd"}}});
        let hdd = json!({"metadata": {"name": "w1", "labels": {"disk": "hdd"}}});
        assert!(node_matches(&pod, &ssd));
        assert!(!node_matches(&pod, &hdd));
    }
}
