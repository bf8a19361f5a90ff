//! The StatefulSet controller (kube-controller-manager's `pkg/controller/statefulset`): pods
//! with stable names `<set>-<ordinal>` (from `spec.ordinals.start`, 0 by default), each with
//! `hostname` = its name and `subdomain` = `serviceName`, so a headless Service of that name
//! gives `<set>-0.<service>.<ns>.svc.<zone>` DNS records through the EndpointSlices.
//!
//! - `OrderedReady`: a pod is created only when every lower ordinal is Running and Ready, and
//!   scaling down removes the highest ordinal first, one at a time, while the others are
//!   healthy. `Parallel` creates and deletes them all at once.
//! - Failed pods are deleted and re-created under the same name.
//! - RollingUpdate replaces pods (ordinal ≥ `partition`) whose revision is not the current
//!   template's, highest ordinal first, one at a time, once the others are Running and Ready;
//!   OnDelete waits for the user. `status.currentRevision` becomes the update revision when
//!   every pod has it, which is what `kubectl rollout status` waits for.
//! - Template history is kept in ControllerRevisions (`rollout history/undo`).

use super::pods_of::{self, PodName};
use super::revisions;
use super::{Key, Reconciler};
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const MANAGER: &str = "statefulset-controller";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub struct StatefulSets;

impl Reconciler for StatefulSets {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::statefulsets() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::pods() {
            pods_of::controller_key(&o.value(), "StatefulSet")
                .into_iter()
                .collect()
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::statefulsets())
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("statefulset", &key, reconcile(st, &key.0, &key.1).await);
    }
}

/// The ordinal a pod name carries after `<set>-`.
fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(p: &Value) -> bool {
    pods_of::phase(p) == "Running" && pods_of::pod_ready(p)
}

/// The pod for one ordinal at the given revision (`newVersionedStatefulSetPod`).
fn new_pod(set: &Value, ns: &str, ord: i64, rev: &str) -> Value {
    let set_name = str_at(set, "/metadata/name").unwrap_or_default();
    let name = format!("{set_name}-{ord}");
    let mut template = set.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let labels = &mut template["metadata"]["labels"];
    labels[revisions::HASH_LABEL] = json!(rev);
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ord.to_string());
    let mut pod = pods_of::pod_from_template(
        &template,
        ns,
        PodName::Exact(&name),
        pods_of::controller_ref(set, idx::statefulsets()),
    );
    pod["spec"]["hostname"] = json!(name);
    if let Some(svc) = str_at(set, "/spec/serviceName").filter(|s| !s.is_empty()) {
        pod["spec"]["subdomain"] = json!(svc);
    }
    pod
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(set) = st.store.get(idx::statefulsets(), ns, name) else {
        return Ok(());
    };
    let set = set.value();
    if pods_of::terminating(&set) {
        return Ok(());
    }
    let uid = str_at(&set, "/metadata/uid")
        .unwrap_or_default()
        .to_string();
    let want = pods_of::replicas(&set);
    let start = set
        .pointer("/spec/ordinals/start")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let parallel = str_at(&set, "/spec/podManagementPolicy") == Some("Parallel");
    let pods: BTreeMap<i64, Value> = pods_of::owned_pods(st, ns, &uid)
        .into_iter()
        .filter_map(|p| Some((ordinal(name, str_at(&p, "/metadata/name")?)?, p)))
        .collect();
    let in_use: Vec<String> = pods
        .values()
        .filter_map(|p| {
            str_at(p, &format!("/metadata/labels/{}", revisions::HASH_LABEL)).map(String::from)
        })
        .collect();
    let update = revisions::sync(st, &set, idx::statefulsets(), MANAGER, &in_use).await?;
    let rev_of = |p: &Value| {
        str_at(p, &format!("/metadata/labels/{}", revisions::HASH_LABEL))
            .unwrap_or_default()
            .to_string()
    };
    let old_current = str_at(&set, "/status/currentRevision")
        .map(String::from)
        .unwrap_or_else(|| update.name.clone());
    let range = start..start + want;

    // Failed pods go (and come back below, on a later pass).
    for (_, p) in pods
        .iter()
        .filter(|(_, p)| pods_of::phase(p) == "Failed" && !pods_of::terminating(p))
    {
        pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
    }
    let healthy = |o: i64| {
        pods.get(&o)
            .is_some_and(|p| !pods_of::terminating(p) && running_and_ready(p))
    };
    let mut blocked = false;
    // Create missing pods, in ordinal order. While an update is under way, pods below the
    // partition are made at the revision they had (the current one).
    let partition = set
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let rolling =
        str_at(&set, "/spec/updateStrategy/type").unwrap_or("RollingUpdate") == "RollingUpdate";
    for o in range.clone() {
        match pods.get(&o) {
            None => {
                let rev = if rolling && o - start >= partition {
                    update.name.clone()
                } else {
                    old_current.clone()
                };
                let pod = new_pod(&set, ns, o, &rev);
                match objects::create_internal(st, idx::pods(), pod, MANAGER).await {
                    Ok(_) => {}
                    Err(e) if e.code == 409 => {}
                    Err(e) => return Err(e),
                }
                if !parallel {
                    blocked = true;
                    break;
                }
            }
            Some(p) if !parallel && !(healthy(o)) => {
                // OrderedReady: the next ordinal waits for this one.
                let _ = p;
                blocked = true;
                break;
            }
            Some(_) => {}
        }
    }
    // Scale down: the highest ordinals beyond the range, one at a time unless Parallel.
    let beyond: Vec<(&i64, &Value)> = pods
        .iter()
        .rev()
        .filter(|(o, _)| !range.contains(o))
        .collect();
    if !beyond.is_empty() && (parallel || range.clone().all(healthy)) {
        let terminating = beyond.iter().any(|(_, p)| pods_of::terminating(p));
        for (_, p) in beyond.iter().filter(|(_, p)| !pods_of::terminating(p)) {
            if !parallel && terminating {
                break;
            }
            pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
            if !parallel {
                break;
            }
        }
        blocked = true;
    }
    // Rolling update: the highest outdated ordinal at or above the partition, when every
    // pod in range is healthy.
    if rolling && !blocked && range.clone().all(healthy) {
        let outdated = range
            .clone()
            .rev()
            .filter(|o| o - start >= partition)
            .find(|o| pods.get(o).is_some_and(|p| rev_of(p) != update.name));
        if let Some(o) = outdated {
            let p = &pods[&o];
            pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
        }
    }

    // Status.
    let now: Vec<Value> = pods_of::owned_pods(st, ns, &uid);
    let live: Vec<&Value> = now.iter().filter(|p| !pods_of::terminating(p)).collect();
    let min_ready = pods_of::min_ready_seconds(&set);
    let ready = live.iter().filter(|p| pods_of::pod_ready(p)).count();
    let available = live
        .iter()
        .filter(|p| pods_of::available(p, min_ready))
        .count();
    let updated = live.iter().filter(|p| rev_of(p) == update.name).count() as i64;
    let current_count = live.iter().filter(|p| rev_of(p) == old_current).count() as i64;
    // The update is complete when every wanted pod runs the update revision and is ready.
    let done = updated == want && ready as i64 == want && live.len() as i64 == want;
    let current_rev = if done {
        update.name.clone()
    } else {
        old_current
    };
    let current_replicas = if done { updated } else { current_count };
    let mut status = json!({
        "observedGeneration": pods_of::generation(&set),
        "replicas": live.len(),
        "readyReplicas": ready,
        "currentReplicas": current_replicas,
        "updatedReplicas": updated,
        "availableReplicas": available,
        "currentRevision": current_rev,
        "updateRevision": update.name,
        "collisionCount": 0,
    });
    if let Some(m) = status.as_object_mut() {
        m.retain(|k, v| {
            v.as_i64() != Some(0)
                || matches!(
                    k.as_str(),
                    "replicas" | "availableReplicas" | "collisionCount"
                )
        });
    }
    pods_of::write_status(st, idx::statefulsets(), &set, MANAGER, status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_stable_names_hostname_and_subdomain() {
        let set = json!({"metadata": {"name": "web", "uid": "u1"},
            "spec": {"serviceName": "nginx",
                     "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": []}}}});
        let p = new_pod(&set, "default", 2, "web-abc");
        assert_eq!(p["metadata"]["name"], "web-2");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(p["metadata"]["labels"]["app"], "nginx");
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(p["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(p["metadata"]["labels"][revisions::HASH_LABEL], "web-abc");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-a"), None);
    }
}
