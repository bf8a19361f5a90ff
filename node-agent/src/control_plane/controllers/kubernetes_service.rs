//! Bootstrap objects: the four initial namespaces and the `default/kubernetes` Service at the
//! first service IP, with the EndpointSlice and Endpoints pointing at the API server.

use crate::control_plane::apiserver::{ApiState, objects};
use crate::control_plane::errors::ApiError;
use crate::control_plane::resources::idx;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn ensure(st: &ApiState, res: usize, v: Value) -> Result<(), ApiError> {
    match objects::create_internal(st, res, v, "kube-apiserver").await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates what a fresh cluster has; existing objects are left as they are.
pub async fn bootstrap(st: &ApiState, advertise: Ipv4Addr, port: u16) -> Result<(), ApiError> {
    for ns in INITIAL_NAMESPACES {
        ensure(
            st,
            idx::namespaces(),
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":ns}}),
        )
        .await?;
    }
    let ip = st.admission.services.nth(1).to_string();
    ensure(
        st,
        idx::services(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        }),
    )
    .await?;
    let addr = advertise.to_string();
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes",
                                "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    ensure(st, idx::endpointslices(), slice).await?;
    // Keep the address current when the node's IP changed across a restart.
    objects::update_internal(
        st,
        idx::endpointslices(),
        "default",
        "kubernetes",
        "kube-apiserver",
        false,
        |s| {
            let eps = json!([{"addresses": [addr], "conditions": {"ready": true}}]);
            if s["endpoints"] == eps {
                return false;
            }
            s["endpoints"] = eps;
            true
        },
    )
    .await?;
    let ep = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": advertise.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    ensure(st, idx::endpoints(), ep).await?;
    Ok(())
}
