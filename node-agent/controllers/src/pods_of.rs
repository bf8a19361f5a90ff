//! What the workload controllers share about the objects they own: controller references,
//! pods made from a template, the order in which surplus pods go (kube-controller-manager's
//! `ActivePods` ranking), availability, and status writes that leave an unchanged object alone.

use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::{self, str_at};
use minikind_apiserver::resources::{self, ResIdx, idx};
use minikind_apiserver::selectors::Selector;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

pub use super::endpointslices::pod_ready;

/// The owner reference a controller puts on what it makes.
pub fn controller_ref(owner: &Value, res: ResIdx) -> Value {
    let r = resources::get(res);
    json!({
        "apiVersion": r.api_version(), "kind": r.kind,
        "name": str_at(owner, "/metadata/name").unwrap_or_default(),
        "uid": str_at(owner, "/metadata/uid").unwrap_or_default(),
        "controller": true, "blockOwnerDeletion": true,
    })
}

/// The owner reference marked `controller: true`, if any.
pub fn controller_of(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
}

/// Whether `uid` is `v`'s controller.
pub fn controlled_by(v: &Value, uid: &str) -> bool {
    controller_of(v).and_then(|o| o.get("uid")?.as_str()) == Some(uid)
}

/// The (namespace, name) key of `v`'s controller when it is of `kind`.
pub fn controller_key(v: &Value, kind: &str) -> Option<super::Key> {
    let o = controller_of(v)?;
    if o.get("kind")?.as_str()? != kind {
        return None;
    }
    Some((
        str_at(v, "/metadata/namespace")
            .unwrap_or_default()
            .to_string(),
        o.get("name")?.as_str()?.to_string(),
    ))
}

pub fn terminating(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null())
}

pub fn phase(p: &Value) -> &str {
    str_at(p, "/status/phase").unwrap_or("Pending")
}

/// Not being deleted and not finished (`controller.IsPodActive`).
pub fn active(p: &Value) -> bool {
    !terminating(p) && !matches!(phase(p), "Succeeded" | "Failed")
}

/// Ready for at least `min_ready` seconds (`podutil.IsPodAvailable`).
pub fn available(p: &Value, min_ready: i64) -> bool {
    if !pod_ready(p) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = p
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .and_then(|c| c.get("lastTransitionTime")?.as_str())
        .and_then(meta::parse_time);
    since.is_some_and(|t| jiff::Timestamp::now().as_second() - t.as_second() >= min_ready)
}

/// The sort key of `controller.ActivePods`: pods that are cheaper to lose sort first
/// (unscheduled, then pending, then not ready, then ready for less time, more restarts,
/// newer).
pub fn deletion_rank(p: &Value) -> impl Ord + use<> {
    let scheduled = str_at(p, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let phase_rank = match phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    };
    let restarts: i64 = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("restartCount")?.as_i64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let created = str_at(p, "/metadata/creationTimestamp")
        .unwrap_or_default()
        .to_string();
    (
        scheduled,
        phase_rank,
        pod_ready(p),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

/// The pods of namespace `ns` that `owner_uid` controls.
pub fn owned_pods(st: &ApiState, ns: &str, owner_uid: &str) -> Vec<Value> {
    let needle = format!("\"uid\":\"{owner_uid}\"");
    let (pods, _, _) = st.store.list(idx::pods(), Some(ns), None, 0, |o| {
        o.json_contains(needle.as_bytes())
    });
    pods.iter()
        .map(|p| p.value())
        .filter(|p| controlled_by(p, owner_uid))
        .collect()
}

/// Adopts the orphans in `res` of namespace `ns` that `selector` matches (objects without a
/// controller, not being deleted), as the controllers' `ClaimPods`/`ClaimReplicaSets` do; returns
/// the adopted objects.
pub async fn adopt_orphans(
    st: &ApiState,
    res: ResIdx,
    ns: &str,
    selector: &Selector,
    owner: &Value,
    owner_res: ResIdx,
    manager: &str,
) -> Result<Vec<Value>, ApiError> {
    let (objs, _, _) = st
        .store
        .list(res, Some(ns), None, 0, |o| o.labels_match(selector));
    let mut adopted = Vec::new();
    for o in objs {
        let v = o.value();
        if controller_of(&v).is_some() || terminating(&v) || selector.is_empty() {
            continue;
        }
        let r = controller_ref(owner, owner_res);
        let out = objects::update_internal(st, res, &o.namespace, &o.name, manager, false, |v| {
            if controller_of(v).is_some() {
                return false;
            }
            let m = meta::metadata_mut(v);
            let refs = m.entry("ownerReferences").or_insert(json!([]));
            match refs.as_array_mut() {
                Some(a) => {
                    a.push(r);
                    true
                }
                None => false,
            }
        })
        .await?;
        if let Some(o) = out {
            adopted.push(o.value());
        }
    }
    Ok(adopted)
}

/// A pod from a template (`controller.GetPodFromTemplate`): the template's labels, annotations
/// and spec, the owner's controller reference, and either `name` or `generateName`.
pub fn pod_from_template(template: &Value, ns: &str, name: PodName<'_>, owner_ref: Value) -> Value {
    let mut m = json!({"namespace": ns, "ownerReferences": [owner_ref]});
    for k in ["labels", "annotations", "finalizers"] {
        if let Some(x) = template.pointer(&format!("/metadata/{k}")) {
            m[k] = x.clone();
        }
    }
    match name {
        PodName::Exact(n) => m["name"] = json!(n),
        PodName::Generate(prefix) => m["generateName"] = json!(prefix),
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": m,
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    })
}

pub enum PodName<'a> {
    Exact(&'a str),
    /// The prefix, ending in `-`.
    Generate(&'a str),
}

/// Deletes a pod (its grace period applies); a pod already gone is not an error.
pub async fn delete_pod(st: &Arc<ApiState>, ns: &str, name: &str) {
    if let Err(e) = objects::delete_one(st, idx::pods(), ns, name, None, None, None).await
        && e.code != 404
    {
        tracing::warn!(pod = %name, "deleting: {e}");
    }
}

/// Writes `status` through the status subresource unless only condition timestamps would
/// change, or the object changed since `read` (the version the status was computed from):
/// that change brings another pass, which computes it again (as a controller's update
/// conflicts upstream), so a status never overwrites a newer write.
pub async fn write_status(
    st: &ApiState,
    res: ResIdx,
    read: &Value,
    manager: &str,
    status: Value,
) -> Result<(), ApiError> {
    let ns = str_at(read, "/metadata/namespace").unwrap_or_default();
    let name = str_at(read, "/metadata/name").unwrap_or_default();
    let rv = str_at(read, "/metadata/resourceVersion");
    objects::update_internal(st, res, ns, name, manager, true, |o| {
        if str_at(o, "/metadata/resourceVersion") != rv {
            return false;
        }
        if o.get("status")
            .is_some_and(|s| same_ignoring_times(s, &status))
        {
            return false;
        }
        o["status"] = status;
        true
    })
    .await?;
    Ok(())
}

fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("lastUpdateTime");
                c.remove("lastTransitionTime");
                c.remove("lastProbeTime");
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// A condition, keeping `lastTransitionTime` from `old` when the status did not change.
pub fn condition(
    old: Option<&Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> Value {
    let prev = old
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        });
    let now = meta::now_rfc3339();
    let transition = prev
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or(json!(now));
    json!({"type": ty, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": transition})
}

/// `spec.replicas` (1 when absent, as the defaults make it).
pub fn replicas(v: &Value) -> i64 {
    v.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0)
}

pub fn min_ready_seconds(v: &Value) -> i64 {
    v.pointer("/spec/minReadySeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub fn generation(v: &Value) -> Value {
    v.pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, node: &str, phase: &str, ready: bool, created: &str) -> Value {
        json!({"metadata": {"name": name, "creationTimestamp": created},
               "spec": {"nodeName": node},
               "status": {"phase": phase, "conditions": [
                   {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn surplus_pods_go_cheapest_first() {
        let mut ps = [
            pod("ready-old", "n1", "Running", true, "2026-01-01T00:00:00Z"),
            pod("ready-new", "n1", "Running", true, "2026-01-02T00:00:00Z"),
            pod("not-ready", "n1", "Running", false, "2026-01-01T00:00:00Z"),
            pod("pending", "n1", "Pending", false, "2026-01-01T00:00:00Z"),
            pod("unscheduled", "", "Pending", false, "2026-01-01T00:00:00Z"),
        ];
        ps.sort_by_key(deletion_rank);
        let order: Vec<&str> = ps
            .iter()
            .map(|p| str_at(p, "/metadata/name").unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "unscheduled",
                "pending",
                "not-ready",
                "ready-new",
                "ready-old"
            ]
        );
    }

    #[test]
    fn pods_from_a_template_carry_its_labels_and_the_controller() {
        let owner = json!({"metadata": {"name": "web-abc", "uid": "u1"}});
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}});
        let p = pod_from_template(
            &t,
            "ns1",
            PodName::Generate("web-abc-"),
            controller_ref(&owner, idx::replicasets()),
        );
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["namespace"], "ns1");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        let o = controller_of(&p).unwrap();
        assert_eq!(o["kind"], "ReplicaSet");
        assert_eq!(o["apiVersion"], "apps/v1");
        assert_eq!(o["blockOwnerDeletion"], true);
        assert!(controlled_by(&p, "u1"));
        assert_eq!(
            controller_key(&p, "ReplicaSet"),
            Some(("ns1".into(), "web-abc".into()))
        );
        assert_eq!(controller_key(&p, "Job"), None);
    }
}
