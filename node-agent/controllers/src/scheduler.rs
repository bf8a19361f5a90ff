//! The scheduler: binds each pending pod (no `spec.nodeName`, `schedulerName:
//! default-scheduler`) to a ready, schedulable node whose taints it tolerates and whose labels
//! (and name) match its `nodeSelector` and required node affinity. Among those it prefers, first, the node where its preferred pod
//! anti-affinity terms (kube-scheduler's InterPodAffinity score: each term's weight for each
//! matching pod in the node's topology domain) cost least — kubeadm's CoreDNS asks for that
//! so its replicas land on different nodes — then the node running the fewest pods.

use super::{Key, Reconciler};
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::selectors::Selector;
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

pub fn tolerates_taints(pod: &Value, node: &Value) -> bool {
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

/// Whether the pod's `nodeSelector` and required node affinity
/// (`requiredDuringSchedulingIgnoredDuringExecution`: any term whose `matchExpressions` on
/// labels and `matchFields` on `metadata.name` all hold) admit the node. The DaemonSet
/// controller pins its pods to their node with such a `matchFields` term.
pub fn node_matches(pod: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels");
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
    if !selector_ok {
        return false;
    }
    let Some(terms) = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    let name = str_at(node, "/metadata/name").unwrap_or_default();
    terms.iter().any(|t| {
        let exprs = t.get("matchExpressions").and_then(Value::as_array);
        let fields = t.get("matchFields").and_then(Value::as_array);
        if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
            return false;
        }
        let holds = |e: &Value, value: Option<&str>| {
            let op = e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match op {
                "In" => value.is_some_and(|v| vals.contains(&v)),
                "NotIn" => value.is_none_or(|v| !vals.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                "Gt" | "Lt" => {
                    let (Some(v), Some(bound)) = (
                        value.and_then(|v| v.parse::<i64>().ok()),
                        vals.first().and_then(|b| b.parse::<i64>().ok()),
                    ) else {
                        return false;
                    };
                    if op == "Gt" { v > bound } else { v < bound }
                }
                _ => false,
            }
        };
        exprs.into_iter().flatten().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            holds(e, labels.and_then(|l| l.get(key)).and_then(Value::as_str))
        }) && fields.into_iter().flatten().all(|e| {
            e.get("key").and_then(Value::as_str) == Some("metadata.name") && holds(e, Some(name))
        })
    })
}

/// Whether the pod may go to a node marked unschedulable: only when it tolerates the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint (kube-scheduler's NodeUnschedulable).
fn unschedulable_ok(pod: &Value, node: &Value) -> bool {
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true) {
        return true;
    }
    let taint = serde_json::json!({"spec": {"taints": [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}});
    tolerates_taints(pod, &taint)
}

/// The pod's `preferredDuringSchedulingIgnoredDuringExecution` anti-affinity terms as
/// (weight, label selector, topology key); a term whose selector does not parse is skipped.
fn anti_affinity_terms(pod: &Value) -> Vec<(i64, Selector, String)> {
    pod.pointer("/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let weight = t.get("weight").and_then(Value::as_i64)?;
            let term = t.get("podAffinityTerm")?;
            let selector = Selector::from_label_selector(term.get("labelSelector")).ok()?;
            let key = term.get("topologyKey").and_then(Value::as_str)?.to_string();
            Some((weight, selector, key))
        })
        .collect()
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
        let unbound = Selector::parse_fields("spec.nodeName=").unwrap_or_default();
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
        // Each anti-affinity term's weight times the matching pods per topology domain,
        // counted once for all candidate nodes (nothing to count for a pod without terms).
        let anti = anti_affinity_terms(&pod);
        let ns = str_at(&pod, "/metadata/namespace").unwrap_or("default");
        let domain_of = |node: &Value, key: &str| {
            node.pointer("/metadata/labels")
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let node_values: HashMap<String, Value> = if anti.is_empty() {
            HashMap::new()
        } else {
            nodes
                .iter()
                .map(|n| n.value())
                .map(|v| {
                    (
                        str_at(&v, "/metadata/name").unwrap_or_default().to_string(),
                        v,
                    )
                })
                .collect()
        };
        let weighed: Vec<(i64, &String, HashMap<String, i64>)> = anti
            .iter()
            .map(|(weight, selector, key)| {
                let mut per_domain: HashMap<String, i64> = HashMap::new();
                for p in &pods {
                    let p = p.value();
                    if str_at(&p, "/metadata/namespace") != Some(ns)
                        || !selector.matches_labels(p.pointer("/metadata/labels"))
                    {
                        continue;
                    }
                    let domain = str_at(&p, "/spec/nodeName")
                        .and_then(|n| node_values.get(n))
                        .and_then(|n| domain_of(n, key));
                    if let Some(d) = domain {
                        *per_domain.entry(d).or_default() += 1;
                    }
                }
                (*weight, key, per_domain)
            })
            .collect();
        let penalty = |node: &Value| -> i64 {
            weighed
                .iter()
                .filter_map(|(weight, key, per_domain)| {
                    Some(weight * per_domain.get(&domain_of(node, key)?)?)
                })
                .sum()
        };
        let best = nodes
            .iter()
            .map(|n| n.value())
            .filter(node_is_ready)
            .filter(|n| unschedulable_ok(&pod, n))
            .filter(|n| tolerates_taints(&pod, n))
            .filter(|n| node_matches(&pod, n))
            .map(|n| {
                let name = str_at(&n, "/metadata/name").unwrap_or_default().to_string();
                (penalty(&n), load.get(&name).copied().unwrap_or(0), name)
            })
            .min()
            .map(|(_, _, name)| name);
        let Some(node) = best else {
            return;
        };
        if let Err(e) = objects::bind_pod(st, &key.0, &key.1, &node).await {
            tracing::debug!(pod = %key.1, "binding to {node}: {e}");
        }
    }
}
