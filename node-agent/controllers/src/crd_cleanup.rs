//! The CRD finalizer (apiextensions-apiserver's `finalizer` controller): a
//! CustomResourceDefinition marked deleted gets the `Terminating` condition, every object of
//! its resource is deleted, and once none is left its `customresourcecleanup` finalizer is
//! removed, which removes the CRD and stops its resources being served.

use super::{Key, Reconciler};
use minikind_apiserver::crd::{self, CLEANUP_FINALIZER, registry};
use minikind_apiserver::resources::{self, idx};
use minikind_apiserver::store::{Event, EventType};
use minikind_apiserver::{ApiState, meta, objects};
use serde_json::Value;
use std::sync::Arc;

pub struct CrdCleanup;

impl Reconciler for CrdCleanup {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        if ev.obj.res == idx::crds() && ev.ty != EventType::Deleted {
            vec![(String::new(), ev.obj.name.to_string())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        super::keys_of(st, idx::crds())
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        let result = cleanup(st, &key.1).await;
        super::log_failure("CustomResourceDefinition", &key, result);
    }
}

async fn cleanup(
    st: &Arc<ApiState>,
    name: &str,
) -> Result<(), minikind_apiserver::errors::ApiError> {
    let Some(c) = st.store.get(idx::crds(), "", name) else {
        return Ok(());
    };
    let v = c.value();
    let deleting = v
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null());
    let has_finalizer = v
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|f| f == CLEANUP_FINALIZER));
    if !deleting || !has_finalizer {
        return Ok(());
    }
    objects::update_internal(
        st,
        idx::crds(),
        "",
        name,
        "apiextensions-apiserver",
        true,
        crd::mark_terminating,
    )
    .await?;
    // Every version shares one storage slot; deleting through it removes them all.
    let mut left = 0;
    for slot in registry::of_crd(name)
        .into_iter()
        .map(resources::storage_of)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (objs, _, _) = st.store.list(slot, None, None, 0, |_| true);
        for o in objs {
            match objects::delete_one(st, slot, &o.namespace, &o.name, Some(0), None, None).await {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        left += st.store.list(slot, None, None, 1, |_| true).0.len();
    }
    if left > 0 {
        // Objects with finalizers of their own: the next event or resync looks again.
        return Ok(());
    }
    objects::update_internal(
        st,
        idx::crds(),
        "",
        name,
        "apiextensions-apiserver",
        false,
        |v| meta::remove_finalizer(v, CLEANUP_FINALIZER),
    )
    .await?;
    Ok(())
}
