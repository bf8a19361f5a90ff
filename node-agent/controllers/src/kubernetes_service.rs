//! Bootstrap objects: the four initial namespaces with their `default` ServiceAccounts, the
//! default RBAC policy (kube-apiserver's `rbac/bootstrap-roles` hook), and the
//! `default/kubernetes` Service at the first service IP, with the EndpointSlice and Endpoints pointing at the API server (kept
//! current across restarts on another port or address).

use minikind_apiserver::errors::ApiError;
use minikind_apiserver::resources::idx;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::net::Ipv4Addr;

pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The field manager of the objects this module writes.
const MANAGER: &str = "kube-apiserver";

async fn ensure(st: &ApiState, res: usize, v: Value) -> Result<(), ApiError> {
    match objects::create_internal(st, res, v, MANAGER).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets `v[key]` to `want`; false when it already was (no write, no new resourceVersion).
fn set_field(v: &mut Value, key: &str, want: &Value) -> bool {
    if v.get(key) == Some(want) {
        return false;
    }
    v[key] = want.clone();
    true
}

/// Creates what a fresh cluster has, then brings `default/kubernetes` (Service, EndpointSlice,
/// Endpoints) to this server's address and port, the way kube-apiserver's reconciler does at
/// every start: objects kept from an earlier run may name another port (the server restarted on
/// a different one) or another address (the node's IP changed). Other objects are left as they
/// are, and nothing is written when all three already agree.
pub async fn bootstrap(st: &ApiState, advertise: Ipv4Addr, port: u16) -> Result<(), ApiError> {
    for ns in INITIAL_NAMESPACES {
        ensure(
            st,
            idx::namespaces(),
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":ns}}),
        )
        .await?;
        // Before anything serves, so the first pods in these namespaces find their account.
        crate::serviceaccounts::ensure_default(st, ns).await?;
    }
    // Made when missing, left as they are otherwise (kube-apiserver reconciles only roles
    // annotated for auto-update; a user's edit of a default role is kept here).
    for (res, obj) in minikind_apiserver::auth::policy::bootstrap_objects() {
        ensure(st, res, obj).await?;
    }
    let ip = st.admission.services.nth(1).to_string();
    let svc_ports = json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]);
    ensure(
        st,
        idx::services(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": svc_ports},
        }),
    )
    .await?;
    // The cluster IP stays (clients and kube-proxy rules know it); only the ports follow.
    objects::update_internal(
        st,
        idx::services(),
        "default",
        "kubernetes",
        MANAGER,
        false,
        |s| set_field(&mut s["spec"], "ports", &svc_ports),
    )
    .await?;

    let addr = advertise.to_string();
    let slice_endpoints = json!([{"addresses": [addr], "conditions": {"ready": true}}]);
    let slice_ports = json!([{"name": "https", "port": port, "protocol": "TCP"}]);
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": slice_endpoints,
        "ports": slice_ports,
    });
    ensure(st, idx::endpointslices(), slice).await?;
    objects::update_internal(
        st,
        idx::endpointslices(),
        "default",
        "kubernetes",
        MANAGER,
        false,
        |s| {
            // Both, not `||`: the second must run even when the first changed something.
            let a = set_field(s, "endpoints", &slice_endpoints);
            let b = set_field(s, "ports", &slice_ports);
            a | b
        },
    )
    .await?;

    let subsets = json!([{"addresses": [{"ip": addr}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]);
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    });
    ensure(st, idx::endpoints(), ep).await?;
    objects::update_internal(
        st,
        idx::endpoints(),
        "default",
        "kubernetes",
        MANAGER,
        false,
        |e| set_field(e, "subsets", &subsets),
    )
    .await?;
    Ok(())
}
