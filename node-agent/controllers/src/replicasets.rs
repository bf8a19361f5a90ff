//! The ReplicaSet controller (kube-controller-manager's `pkg/controller/replicaset`): keeps
//! `spec.replicas` active pods of the template, named `<replicaset>-<5 random>`, adopting
//! orphans its selector matches; surplus pods go in the `ActivePods` order (unscheduled,
//! pending, not ready, newest first); status counts replicas, fully labelled, ready and
//! available pods.

use super::pods_of::{self, PodName};
use super::{Key, Reconciler};
use futures::future::BoxFuture;
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::selectors::Selector;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

const MANAGER: &str = "replicaset-controller";

pub struct ReplicaSets;

impl Reconciler for ReplicaSets {
    fn keys_for(&mut self, st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::replicasets() {
            return vec![(o.namespace.to_string(), o.name.to_string())];
        }
        if o.res != idx::pods() {
            return vec![];
        }
        let v = o.value();
        match pods_of::controller_of(&v) {
            Some(_) => pods_of::controller_key(&v, "ReplicaSet")
                .into_iter()
                .collect(),
            // An orphan: any ReplicaSet of its namespace may adopt it.
            None => {
                let (rs, _, _) =
                    st.store
                        .list(idx::replicasets(), Some(&o.namespace), None, 0, |_| true);
                rs.iter()
                    .map(|r| (r.namespace.to_string(), r.name.to_string()))
                    .collect()
            }
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::replicasets())
    }

    fn concurrency(&self) -> usize {
        8
    }

    fn reconcile_owned(&mut self, st: &Arc<ApiState>, key: Key) -> Option<BoxFuture<'static, ()>> {
        let st = st.clone();
        Some(Box::pin(async move {
            crate::log_failure("replicaset", &key, reconcile(&st, &key.0, &key.1).await);
        }))
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("replicaset", &key, reconcile(st, &key.0, &key.1).await);
    }
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(rs) = st.store.get(idx::replicasets(), ns, name) else {
        return Ok(());
    };
    let rs = rs.value();
    let uid = str_at(&rs, "/metadata/uid").unwrap_or_default().to_string();
    let selector = Selector::from_label_selector(rs.pointer("/spec/selector"))?;
    let mut pods = pods_of::owned_pods(st, ns, &uid);
    if !pods_of::terminating(&rs) {
        pods.extend(
            pods_of::adopt_orphans(
                st,
                idx::pods(),
                ns,
                &selector,
                &rs,
                idx::replicasets(),
                MANAGER,
            )
            .await?,
        );
    }
    let mut active: Vec<Value> = pods.into_iter().filter(pods_of::active).collect();
    let want = pods_of::replicas(&rs);
    // A ReplicaSet being deleted makes nothing (the garbage collector removes its pods).
    if !pods_of::terminating(&rs) {
        let diff = active.len() as i64 - want;
        if diff < 0 {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            let owner = pods_of::controller_ref(&rs, idx::replicasets());
            let prefix = format!("{name}-");
            for _ in 0..-diff {
                let pod = pods_of::pod_from_template(
                    &template,
                    ns,
                    PodName::Generate(&prefix),
                    owner.clone(),
                );
                let made = objects::create_internal(st, idx::pods(), pod, MANAGER).await?;
                active.push(made.value());
            }
        } else if diff > 0 {
            active.sort_by_key(pods_of::deletion_rank);
            for p in active.drain(..diff as usize) {
                pods_of::delete_pod(st, ns, str_at(&p, "/metadata/name").unwrap_or_default()).await;
            }
        }
    }
    let template_labels = rs.pointer("/spec/template/metadata/labels");
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels
                .and_then(Value::as_object)
                .is_none_or(|want| {
                    want.iter().all(|(k, v)| {
                        p.pointer("/metadata/labels").and_then(|l| l.get(k)) == Some(v)
                    })
                })
        })
        .count();
    let min_ready = pods_of::min_ready_seconds(&rs);
    let ready = active.iter().filter(|p| pods_of::pod_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| pods_of::available(p, min_ready))
        .count();
    let mut status = json!({
        "replicas": active.len(),
        "fullyLabeledReplicas": fully_labeled,
        "readyReplicas": ready,
        "availableReplicas": available,
        "observedGeneration": pods_of::generation(&rs),
    });
    if let Some(m) = status.as_object_mut() {
        // As the API's omitempty: zero counts are absent.
        m.retain(|k, v| k == "replicas" || v.as_i64() != Some(0));
    }
    pods_of::write_status(st, idx::replicasets(), &rs, MANAGER, status).await
}
