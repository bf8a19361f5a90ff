//! Object lifecycle controllers: namespace deletion (empty it, then remove it), garbage
//! collection of dependents by owner reference, and pod GC (pods bound to nodes that no
//! longer exist, and terminating pods no kubelet will finish).

use super::{Key, Reconciler};
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::{self, idx};
use minikind_apiserver::store::{Change, Event, EventType};
use minikind_apiserver::{ApiState, objects};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Namespaces;

impl Reconciler for Namespaces {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.obj.res == idx::namespaces() && ev.ty != EventType::Deleted {
            vec![(String::new(), ev.obj.name.to_string())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        let (ns, _, _) = st.store.list(idx::namespaces(), None, None, 0, |_| true);
        ns.iter()
            .map(|n| (String::new(), n.name.to_string()))
            .collect()
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        let Some(ns) = st.store.get(idx::namespaces(), "", &key.1) else {
            return;
        };
        if ns
            .value()
            .pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
        {
            return;
        }
        // Remove everything in it, pods without grace (their kubelets stop them anyway).
        for i in resources::all() {
            if !resources::get(i).namespaced {
                continue;
            }
            let (objs, _, _) = st.store.list(i, Some(&key.1), None, 0, |_| true);
            for o in objs {
                let _ = objects::delete_one(st, i, &key.1, &o.name, Some(0), None, None).await;
                if i == idx::pods() {
                    force_delete(st, i, &key.1, &o.name).await;
                }
            }
        }
        let left = resources::all().into_iter().any(|i| {
            resources::get(i).namespaced
                && !st
                    .store
                    .list(i, Some(&key.1), None, 1, |_| true)
                    .0
                    .is_empty()
        });
        if !left {
            let name = key.1.clone();
            let r = st
                .store
                .mutate(idx::namespaces(), "", &name, |cur| {
                    Ok(cur.map_or(Change::Keep, Change::Delete))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(namespace = %name, "removing: {e}");
            }
        }
    }
}

/// Removes an object outright (no grace, finalizers ignored).
pub async fn force_delete(st: &ApiState, res: usize, ns: &str, name: &str) {
    let r = st
        .store
        .mutate(res, ns, name, |cur| {
            Ok(match cur {
                Some(v) => {
                    st.admission.on_deleted(res, &v);
                    Change::Delete(v)
                }
                None => Change::Keep,
            })
        })
        .await;
    if let Err(e) = r {
        tracing::warn!("force-deleting {ns}/{name}: {e}");
    }
}

/// The garbage collector (kube-controller-manager's `pkg/controller/garbagecollector`, by
/// scanning instead of a dependency graph): deletes objects whose owners are all gone
/// (background cascading deletion), and finishes foreground deletions — an owner marked
/// deleted with the `foregroundDeletion` finalizer has its dependents deleted (those that own
/// others in the foreground too) and loses the finalizer, and with it its existence, once no
/// dependent with `blockOwnerDeletion` is left. Orphan deletion is done by the API server
/// before the owner goes. A deletion, or a write to an object in foreground deletion, marks its
/// namespace for a look; the resync sweeps everything.
#[derive(Default)]
pub struct GarbageCollector;

fn owner_alive(st: &ApiState, ns: &str, owner: &Value) -> bool {
    let (Some(av), Some(kind), Some(name)) = (
        owner.get("apiVersion").and_then(Value::as_str),
        owner.get("kind").and_then(Value::as_str),
        owner.get("name").and_then(Value::as_str),
    ) else {
        return false;
    };
    let Some(res) = resources::by_kind(av, kind) else {
        // Owners of kinds minikind does not serve are not ours to judge.
        return true;
    };
    let ons = if resources::get(res).namespaced {
        ns
    } else {
        ""
    };
    st.store.get(res, ons, name).is_some_and(|o| {
        owner
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(|u| str_at(&o.value(), "/metadata/uid") == Some(u))
    })
}

impl Reconciler for GarbageCollector {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.ty == EventType::Deleted || ev.obj.json_contains(FOREGROUND_NEEDLE.as_bytes()) {
            vec![(ev.obj.namespace.to_string(), String::new())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, _st: &ApiState) -> Vec<Key> {
        vec![(String::new(), "*".into())]
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        self.collect_orphans(st, &key).await;
        // Owners in foreground deletion: in the event's namespace (everywhere on a resync),
        // and the cluster-scoped ones, which own namespaced objects too.
        let ns = (key.1 != "*" && !key.0.is_empty()).then_some(key.0.as_str());
        for i in resources::all() {
            let scope = if resources::get(i).namespaced {
                ns
            } else {
                None
            };
            let (owners, _, _) = st.store.list(i, scope, None, 0, |o| {
                o.json_contains(FOREGROUND_NEEDLE.as_bytes())
            });
            for o in owners {
                foreground_step(st, i, &o.namespace, &o.value()).await;
            }
        }
    }
}

const FOREGROUND_NEEDLE: &str = "\"foregroundDeletion\"";

fn has_finalizer(v: &Value, f: &str) -> bool {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(f)))
}

fn deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null())
}

/// One pass over an owner in foreground deletion.
async fn foreground_step(st: &Arc<ApiState>, res: usize, ns: &str, owner: &Value) {
    if !deleting(owner) || !has_finalizer(owner, objects::FOREGROUND_FINALIZER) {
        return;
    }
    let Some(uid) = str_at(owner, "/metadata/uid").map(String::from) else {
        return;
    };
    let name = str_at(owner, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let scope = resources::get(res).namespaced.then_some(ns);
    let needle = format!("\"uid\":\"{uid}\"");
    let mut blocked = false;
    for j in resources::all() {
        if !resources::get(j).namespaced {
            continue;
        }
        let (deps, _, _) = st
            .store
            .list(j, scope, None, 0, |o| o.json_contains(needle.as_bytes()));
        for d in deps {
            let dv = d.value();
            let Some(oref) = dv
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|o| o.get("uid").and_then(Value::as_str) == Some(uid.as_str()))
                })
            else {
                continue;
            };
            if oref.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                blocked = true;
            }
            if deleting(&dv) {
                continue;
            }
            // Pods own nothing here; everything else may, so it goes in the foreground too.
            let r = if j == idx::pods() {
                objects::delete_one(st, j, &d.namespace, &d.name, None, None, None).await
            } else {
                objects::delete_foreground(st, j, &d.namespace, &d.name, None, None).await
            };
            if let Err(e) = r
                && e.code != 404
            {
                tracing::warn!(
                    "deleting dependent {}/{} of {name}: {e}",
                    d.namespace,
                    d.name
                );
            }
        }
    }
    if blocked {
        return;
    }
    let r = objects::update_internal(st, res, ns, &name, "garbage-collector", false, |v| {
        minikind_apiserver::meta::remove_finalizer(v, objects::FOREGROUND_FINALIZER)
    })
    .await;
    if let Err(e) = r
        && e.code != 404
    {
        tracing::warn!("finishing the foreground deletion of {name}: {e}");
    }
}

impl GarbageCollector {
    async fn collect_orphans(&mut self, st: &Arc<ApiState>, key: &Key) {
        // A cluster-scoped owner that went away (empty namespace) means a look everywhere.
        let ns = (key.1 != "*" && !key.0.is_empty()).then_some(key.0.as_str());
        for i in resources::all() {
            if !resources::get(i).namespaced {
                continue;
            }
            let (objs, _, _) = st
                .store
                .list(i, ns, None, 0, |o| o.json_contains(b"\"ownerReferences\""));
            for o in objs {
                let v = o.value();
                let owners: Vec<Value> = v
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if owners.is_empty() || owners.iter().any(|w| owner_alive(st, &o.namespace, w)) {
                    continue;
                }
                let _ = objects::delete_one(st, i, &o.namespace, &o.name, None, None, None).await;
            }
        }
    }
}

/// Finishes pod deletions nobody else finishes, as kube-controller-manager's podgc does: pods
/// bound to nodes that no longer exist (orphans), terminating pods that were never scheduled,
/// and terminating pods on a node that is not Ready and carries the
/// `node.kubernetes.io/out-of-service` taint. A terminating pod on any other node is left
/// alone however long past its deletionTimestamp: its kubelet stops the containers and then
/// removes the pod itself, and a node that merely stopped answering may come back.
pub struct PodGc;

/// What podgc needs to know about the node a pod is bound to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NodeState {
    Gone,
    /// Not Ready and tainted out-of-service by an operator.
    OutOfService,
    Present,
}

const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

fn node_state(st: &ApiState, name: &str) -> NodeState {
    let Some(n) = st.store.get(idx::nodes(), "", name) else {
        return NodeState::Gone;
    };
    let v = n.value();
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        });
    let out_of_service = v
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(OUT_OF_SERVICE_TAINT))
        });
    if !ready && out_of_service {
        NodeState::OutOfService
    } else {
        NodeState::Present
    }
}

/// Whether podgc deletes this pod (with grace 0, as podgc's "force delete" is).
fn collectable(node: Option<NodeState>, deleting: bool) -> bool {
    match node {
        // Never scheduled: nobody else will finish its deletion.
        None => deleting,
        Some(NodeState::Gone) => true,
        Some(NodeState::OutOfService) => deleting,
        Some(NodeState::Present) => false,
    }
}

impl Reconciler for PodGc {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.obj.res == idx::nodes() && ev.ty == EventType::Deleted {
            vec![(String::new(), "*".into())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, _st: &ApiState) -> Vec<Key> {
        vec![(String::new(), "*".into())]
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, _key: Key) {
        let (pods, _, _) = st.store.list(idx::pods(), None, None, 0, |_| true);
        let mut nodes: HashMap<String, NodeState> = HashMap::new();
        for p in pods {
            let node = p.field("spec.nodeName").unwrap_or_default();
            let node = (!node.is_empty()).then(|| {
                *nodes
                    .entry(node.to_string())
                    .or_insert_with(|| node_state(st, node))
            });
            // Only pods being deleted need their JSON parsed.
            let deleting = p.json_contains(b"\"deletionTimestamp\"")
                && p.value()
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|x| !x.is_null());
            if collectable(node, deleting) {
                // Grace 0 through the normal path: finalizers still hold the pod, as with
                // podgc's DELETE.
                let _ = objects::delete_one(
                    st,
                    idx::pods(),
                    &p.namespace,
                    &p.name,
                    Some(0),
                    None,
                    None,
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NodeState, collectable};

    #[test]
    fn podgc_leaves_terminating_pods_on_present_nodes_to_their_kubelet() {
        assert!(!collectable(Some(NodeState::Present), true));
        assert!(!collectable(Some(NodeState::Present), false));
    }

    #[test]
    fn podgc_collects_orphans_unscheduled_terminating_and_out_of_service() {
        assert!(collectable(Some(NodeState::Gone), false));
        assert!(collectable(Some(NodeState::Gone), true));
        assert!(collectable(None, true));
        assert!(!collectable(None, false));
        assert!(collectable(Some(NodeState::OutOfService), true));
        assert!(!collectable(Some(NodeState::OutOfService), false));
    }
}
