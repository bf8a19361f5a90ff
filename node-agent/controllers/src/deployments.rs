//! The Deployment controller. minikind has no ReplicaSet resource: a Deployment owns its pods
//! directly, named `<deploy>-<pod-template-hash>-<suffix>` and labelled `pod-template-hash`
//! as the ReplicaSet would have made them. Scaling adds or removes pods; a changed template
//! gets a new hash and its pods replace the old ones as they become ready (old pods are also
//! removed up to `maxUnavailable` at once).

use super::endpointslices::pod_ready;
use super::{Key, Reconciler};
use futures::future::BoxFuture;
use minikind_apiserver::meta::{self, str_at};
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

const MANAGER: &str = "deployment-controller";

pub struct Deployments;

/// The pod-template hash: stable for a given template, 10 characters from the safe alphabet.
pub fn template_hash(template: &Value) -> String {
    let s = template.to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|_| {
            let c = ALPHA[(h % ALPHA.len() as u64) as usize] as char;
            h /= ALPHA.len() as u64;
            c
        })
        .collect()
}

fn owned_by(p: &Value, uid: &str) -> bool {
    p.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
        })
}

fn terminating(p: &Value) -> bool {
    p.pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null())
}

/// `25%` of n, rounded down (maxUnavailable) or up (maxSurge); integers as they are.
fn scaled(v: Option<&Value>, n: i64, up: bool) -> i64 {
    match v {
        Some(Value::Number(x)) => x.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            if up {
                (n * pct + 99) / 100
            } else {
                n * pct / 100
            }
        }
        _ => {
            if up {
                (n * 25 + 99) / 100
            } else {
                n * 25 / 100
            }
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down) of a RollingUpdate, 25% each by
/// default; both 0 is not allowed, and the API would have refused it — treat it as
/// maxUnavailable 1 as the controller does.
fn rolling_bounds(d: &Value, want: i64) -> (i64, i64) {
    let surge = scaled(
        d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
        want,
        true,
    );
    let unavailable = scaled(
        d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
        want,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

impl Reconciler for Deployments {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::deployments() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::pods() {
            o.value()
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some("Deployment"))
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .map(|n| (o.namespace.to_string(), n.to_string()))
                .collect()
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        let (ds, _, _) = st.store.list(idx::deployments(), None, None, 0, |_| true);
        ds.iter()
            .map(|d| (d.namespace.to_string(), d.name.to_string()))
            .collect()
    }

    fn concurrency(&self) -> usize {
        8
    }

    fn reconcile_owned(&mut self, st: &Arc<ApiState>, key: Key) -> Option<BoxFuture<'static, ()>> {
        let st = st.clone();
        Some(Box::pin(async move {
            if let Err(e) = reconcile(&st, &key.0, &key.1).await {
                tracing::warn!(deployment = %format!("{}/{}", key.0, key.1), "{e}");
            }
        }))
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        if let Err(e) = reconcile(st, &key.0, &key.1).await {
            tracing::warn!(deployment = %format!("{}/{}", key.0, key.1), "{e}");
        }
    }
}

async fn reconcile(
    st: &Arc<ApiState>,
    ns: &str,
    name: &str,
) -> Result<(), minikind_apiserver::errors::ApiError> {
    let Some(d) = st.store.get(idx::deployments(), ns, name) else {
        return Ok(());
    };
    let d = d.value();
    if terminating(&d) {
        return Ok(());
    }
    let uid = str_at(&d, "/metadata/uid").unwrap_or_default().to_string();
    let want = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0);
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let hash = template_hash(&template);
    let (pods, _, _) = st.store.list(idx::pods(), Some(ns), None, 0, |_| true);
    let pods: Vec<Value> = pods
        .iter()
        .map(|p| p.value())
        .filter(|p| owned_by(p, &uid))
        .collect();
    let is_current =
        |p: &Value| str_at(p, "/metadata/labels/pod-template-hash") == Some(hash.as_str());
    let live: Vec<&Value> = pods.iter().filter(|p| !terminating(p)).collect();
    let current: Vec<&Value> = live.iter().copied().filter(|p| is_current(p)).collect();
    let old: Vec<&Value> = live.iter().copied().filter(|p| !is_current(p)).collect();
    let ready_current = current.iter().filter(|p| pod_ready(p)).count() as i64;
    let ready_old = old.iter().filter(|p| pod_ready(p)).count() as i64;

    let recreate = str_at(&d, "/spec/strategy/type") == Some("Recreate");
    let (max_surge, max_unavailable) = rolling_bounds(&d, want);
    // How many pods of the current template may exist now. Without old pods: `want`. During a
    // rolling update the new pods may only fill what maxSurge leaves above `want` next to the
    // old ones; with Recreate, new pods wait until every old pod is gone (terminating too).
    let old_terminating = pods.iter().any(|p| terminating(p) && !is_current(p));
    let new_target = if recreate {
        if old.is_empty() && !old_terminating {
            want
        } else {
            0
        }
    } else if old.is_empty() {
        want
    } else {
        want.min(want + max_surge - old.len() as i64).max(0)
    };
    if (current.len() as i64) < new_target {
        for _ in current.len() as i64..new_target {
            let mut pod_meta = template.get("metadata").cloned().unwrap_or(json!({}));
            let labels = pod_meta
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert(json!({})));
            if let Some(Value::Object(l)) = labels {
                l.insert("pod-template-hash".into(), json!(hash));
            }
            pod_meta["generateName"] = json!(format!("{name}-{hash}-"));
            pod_meta["namespace"] = json!(ns);
            pod_meta["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }]);
            if let Some(m) = pod_meta.as_object_mut() {
                m.remove("name");
                m.remove("creationTimestamp");
            }
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": pod_meta,
                "spec": template.get("spec").cloned().unwrap_or(json!({})),
            });
            objects::create_internal(st, idx::pods(), pod, MANAGER).await?;
        }
    } else if old.is_empty() && current.len() as i64 > want {
        // Remove the excess, not-ready and newest first.
        let mut excess: Vec<&Value> = current.clone();
        excess.sort_by_key(|p| {
            (
                pod_ready(p),
                std::cmp::Reverse(
                    str_at(p, "/metadata/creationTimestamp")
                        .unwrap_or_default()
                        .to_string(),
                ),
            )
        });
        for p in excess.iter().take((current.len() as i64 - want) as usize) {
            delete_pod(st, ns, p).await;
        }
    }
    // Replace old pods as the deployment controller scales old ReplicaSets down: never below
    // `want - maxUnavailable` available pods, counting new pods that are not ready yet against
    // it; not-ready old pods go first.
    if !old.is_empty() {
        let mut old_sorted = old.clone();
        old_sorted.sort_by_key(|p| pod_ready(p));
        let removable = if recreate {
            old.len() as i64
        } else {
            let min_available = want - max_unavailable;
            let new_unavailable = current.len() as i64 - ready_current;
            let all = (current.len() + old.len()) as i64;
            let unhealthy_old = old.len() as i64 - ready_old;
            let cleanup = unhealthy_old
                .min(all - min_available - new_unavailable)
                .max(0);
            let available = ready_current + ready_old;
            cleanup + (available - min_available - new_unavailable).max(0)
        };
        for p in old_sorted.into_iter().take(removable.max(0) as usize) {
            delete_pod(st, ns, p).await;
        }
    }
    // Status.
    let (pods, _, _) = st.store.list(idx::pods(), Some(ns), None, 0, |_| true);
    let pods: Vec<Value> = pods
        .iter()
        .map(|p| p.value())
        .filter(|p| owned_by(p, &uid) && !terminating(p))
        .collect();
    let total = pods.len() as i64;
    let updated = pods.iter().filter(|p| is_current(p)).count() as i64;
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let generation = d
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    let available_cond = if ready
        >= want
            - scaled(
                d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
                want,
                false,
            ) {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    objects::update_internal(st, idx::deployments(), ns, name, MANAGER, true, |d| {
        let old_conds = d.pointer("/status/conditions").cloned();
        let now = meta::now_rfc3339();
        let keep_time = |ty: &str, status: &str| -> String {
            old_conds
                .as_ref()
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(ty)))
                .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
                .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
                .map(String::from)
                .unwrap_or_else(|| now.clone())
        };
        let mut status = json!({
            "observedGeneration": generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": available_cond.0, "reason": available_cond.1,
                 "message": available_cond.2,
                 "lastUpdateTime": keep_time("Available", available_cond.0),
                 "lastTransitionTime": keep_time("Available", available_cond.0)},
                {"type": "Progressing", "status": "True",
                 "reason": if updated == want && total == want { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                 "message": format!("ReplicaSet \"{name}-{hash}\" is progressing."),
                 "lastUpdateTime": keep_time("Progressing", "True"),
                 "lastTransitionTime": keep_time("Progressing", "True")},
            ],
        });
        if total - ready > 0 {
            status["unavailableReplicas"] = json!(total - ready);
        }
        // Leave the object alone when nothing but timestamps would change.
        let same = d.get("status").is_some_and(|s| {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
                    for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                        c.remove("lastUpdateTime");
                        c.remove("lastTransitionTime");
                    }
                }
                v
            };
            strip(s) == strip(&status)
        });
        if same {
            return false;
        }
        d["status"] = status;
        true
    })
    .await?;
    Ok(())
}

async fn delete_pod(st: &Arc<ApiState>, ns: &str, p: &Value) {
    let name = str_at(p, "/metadata/name").unwrap_or_default();
    if let Err(e) = objects::delete_one(st, idx::pods(), ns, name, None, None, None).await
        && e.code != 404
    {
        tracing::warn!(pod = %name, "deleting: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_changes_with_template() {
        let a = json!({"spec":{"containers":[{"name":"a","image":"x:1"}]}});
        let b = json!({"spec":{"containers":[{"name":"a","image":"x:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
        assert_eq!(scaled(Some(&json!("25%")), 4, false), 1);
        assert_eq!(scaled(Some(&json!("25%")), 1, true), 1);
        assert_eq!(scaled(Some(&json!(2)), 4, false), 2);
    }
}
