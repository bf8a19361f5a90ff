//! Objects through the API server: a dynamic API for a kind, and the server's own message when
//! it refuses a request.

use kube::api::{Api, DynamicObject};

use super::kinds;

/// The API of `kind`'s objects: in `ns` when the kind is namespaced and one is given, else
/// across the cluster.
pub fn dyn_api(client: &kube::Client, kind: &kinds::Kind, ns: Option<&str>) -> Api<DynamicObject> {
    let ar = kind.api_resource();
    match ns {
        Some(ns) if kind.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// The server's message for API errors (it names the field for 422s), without kube-rs's debug
/// dump of the whole Status.
pub fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) => anyhow::anyhow!("{} ({}): {}", s.reason, s.code, s.message),
        other => anyhow::Error::new(other),
    }
}
