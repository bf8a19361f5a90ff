//! The `default` ServiceAccount of every namespace, as kube-controller-manager's
//! serviceaccounts controller keeps it: made when a namespace appears and made again when
//! deleted, never in a namespace being deleted.

use super::{Key, Reconciler};
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::{Event, EventType};
use minikind_apiserver::{ApiState, objects};
use serde_json::json;
use std::sync::Arc;

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = "default";
const MANAGER: &str = "service-account-controller";

pub struct ServiceAccounts;

/// Creates `ns/default` unless it exists or the namespace is gone or terminating.
pub async fn ensure_default(st: &ApiState, ns: &str) -> Result<(), ApiError> {
    let Some(n) = st.store.get(idx::namespaces(), "", ns) else {
        return Ok(());
    };
    if str_at(&n.value(), "/status/phase") == Some("Terminating")
        || st.store.get(idx::serviceaccounts(), ns, DEFAULT).is_some()
    {
        return Ok(());
    }
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": DEFAULT, "namespace": ns}});
    match objects::create_internal(st, idx::serviceaccounts(), sa, MANAGER).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

impl Reconciler for ServiceAccounts {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::namespaces() && ev.ty != EventType::Deleted {
            vec![(o.name.to_string(), String::new())]
        } else if o.res == idx::serviceaccounts()
            && ev.ty == EventType::Deleted
            && &*o.name == DEFAULT
        {
            vec![(o.namespace.to_string(), String::new())]
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        let (nss, _, _) = st.store.list(idx::namespaces(), None, None, 0, |_| true);
        nss.iter()
            .map(|n| (n.name.to_string(), String::new()))
            .collect()
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        if let Err(e) = ensure_default(st, &key.0).await {
            tracing::warn!(namespace = %key.0, "creating the default service account: {}", e.message);
        }
    }
}
