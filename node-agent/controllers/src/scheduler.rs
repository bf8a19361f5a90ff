//! The scheduler: binds each pending pod (no `spec.nodeName`, `schedulerName:
//! default-scheduler`) to the ready, schedulable node running the fewest pods, honouring a
//! `nodeSelector`, so pods spread over the nodes.

use super::{Key, Reconciler};
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::{Event, Obj};
use minikind_apiserver::{ApiState, objects};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Scheduler;

fn pending(p: &Obj) -> bool {
    let v = p.value();
    str_at(&v, "/spec/nodeName").is_none_or(str::is_empty)
        && str_at(&v, "/spec/schedulerName").unwrap_or("default-scheduler") == "default-scheduler"
        && v.pointer("/metadata/deletionTimestamp")
            .is_none_or(Value::is_null)
}

pub fn node_is_ready(n: &Value) -> bool {
    n.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn tolerates_taints(pod: &Value, node: &Value) -> bool {
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tols = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    taints.iter().all(|t| {
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or_default();
        if effect == "PreferNoSchedule" {
            return true;
        }
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        let val = t.get("value").and_then(Value::as_str).unwrap_or_default();
        tols.iter().any(|tol| {
            let tk = tol.get("key").and_then(Value::as_str).unwrap_or_default();
            let op = tol
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("Equal");
            let te = tol
                .get("effect")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key_ok = tk.is_empty() && op == "Exists" || tk == key;
            let val_ok = op == "Exists"
                || tol.get("value").and_then(Value::as_str).unwrap_or_default() == val;
            key_ok && val_ok && (te.is_empty() || te == effect)
        })
    })
}

impl Reconciler for Scheduler {
    fn keys_for(&mut self, st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.obj.res == idx::pods() && pending(&ev.obj) {
            vec![(ev.obj.namespace.to_string(), ev.obj.name.to_string())]
        } else if ev.obj.res == idx::nodes() {
            self.all_keys(st)
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        // Unbound pods only: the selector runs on the extracted fields, no parsing.
        let unbound = minikind_apiserver::selectors::Selector::parse_fields("spec.nodeName=")
            .unwrap_or_default();
        let (pods, _, _) = st
            .store
            .list(idx::pods(), None, None, 0, |p| p.fields_match(&unbound));
        pods.iter()
            .filter(|p| pending(p))
            .map(|p| (p.namespace.to_string(), p.name.to_string()))
            .collect()
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        let Some(pod) = st.store.get(idx::pods(), &key.0, &key.1) else {
            return;
        };
        if !pending(&pod) {
            return;
        }
        let pod = pod.value();
        let (nodes, _, _) = st.store.list(idx::nodes(), None, None, 0, |_| true);
        let (pods, _, _) = st.store.list(idx::pods(), None, None, 0, |_| true);
        let mut load: HashMap<String, usize> = HashMap::new();
        for p in &pods {
            if let Some(n) = str_at(&p.value(), "/spec/nodeName").filter(|n| !n.is_empty()) {
                *load.entry(n.to_string()).or_default() += 1;
            }
        }
        let selector = pod.pointer("/spec/nodeSelector").and_then(Value::as_object);
        let best = nodes
            .iter()
            .map(|n| n.value())
            .filter(node_is_ready)
            .filter(|n| n.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true))
            .filter(|n| tolerates_taints(&pod, n))
            .filter(|n| {
                selector.is_none_or(|sel| {
                    sel.iter().all(|(k, v)| {
                        n.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v)
                    })
                })
            })
            .map(|n| str_at(&n, "/metadata/name").unwrap_or_default().to_string())
            .min_by_key(|n| (load.get(n).copied().unwrap_or(0), n.clone()));
        let Some(node) = best else {
            return;
        };
        if let Err(e) = objects::bind_pod(st, &key.0, &key.1, &node).await {
            tracing::debug!(pod = %key.1, "binding to {node}: {e}");
        }
    }
}
