//! API discovery: legacy (`APIVersions`, `APIGroupList`, `APIResourceList`) and aggregated
//! (`apidiscovery.k8s.io/v2`, chosen only when the client asks for it), plus `/version`.
//! The OpenAPI documents are in [`crate::openapi`].

use crate::resources::{self, Resource, named_groups};
use minikind_contract::kubernetes;
use serde_json::{Value, json};

pub const AGGREGATED_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1_CT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the Accept header prefers, if any (the first listed).
pub fn aggregated_version(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
        if p.starts_with("application/json") && !p.contains("as=") {
            return None;
        }
    }
    None
}

pub fn version() -> Value {
    json!({
        "major": kubernetes::MAJOR,
        "minor": kubernetes::MINOR,
        "emulationMajor": kubernetes::MAJOR,
        "emulationMinor": kubernetes::MINOR,
        "minCompatibilityMajor": kubernetes::MAJOR,
        "minCompatibilityMinor": kubernetes::MIN_COMPATIBILITY_MINOR,
        "gitVersion": kubernetes::GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    })
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// One group with its versions, the first being the preferred one.
fn group_json(group: &str, versions: &[String]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(|v| gv(v)).unwrap_or(Value::Null),
    })
}

pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": named_groups().iter().map(|(g, vs)| group_json(g, vs)).collect::<Vec<_>>(),
    })
}

pub fn api_group(group: &str) -> Option<Value> {
    named_groups()
        .into_iter()
        .find(|(g, _)| g == group)
        .map(|(g, vs)| {
            let mut j = group_json(&g, &vs);
            j["kind"] = json!("APIGroup");
            j["apiVersion"] = json!("v1");
            j
        })
}

fn in_gv(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    resources::in_group_version(group, version)
        .into_iter()
        .map(resources::get)
}

fn sub_verbs(sub: &str) -> Value {
    match sub {
        "log" => json!(["get"]),
        "exec" | "portforward" => json!(["create", "get"]),
        "binding" | "token" => json!(["create"]),
        "proxy" => json!(["create", "delete", "get", "patch", "update"]),
        _ => json!(["get", "patch", "update"]),
    }
}

fn sub_kind(r: &Resource, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "exec" => ("", "v1", "PodExecOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        "log" => ("", "v1", "Pod"),
        "proxy" if r.kind == "Pod" => ("", "v1", "PodProxyOptions"),
        "proxy" if r.kind == "Node" => ("", "v1", "NodeProxyOptions"),
        "proxy" => ("", "v1", "ServiceProxyOptions"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        _ => (r.group, r.version, r.kind),
    }
}

/// Legacy `APIResourceList` for one group version, or None if not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in in_gv(group, version) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        for sub in r.subresources {
            let (g, v, k) = sub_kind(r, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": k,
                "verbs": sub_verbs(sub),
            });
            if g != r.group || v != r.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}

fn aggregated_version_of(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = in_gv(group, version)
        .map(|r| {
            json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs(),
                "shortNames": r.short_names,
                "categories": r.categories,
                "subresources": r.subresources.iter().map(|sub| {
                    let (g, v, k) = sub_kind(r, sub);
                    json!({
                        "subresource": sub,
                        "responseKind": {"group": g, "version": v, "kind": k},
                        "verbs": sub_verbs(sub),
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

fn aggregated_group(group: &str, versions: &[String]) -> Value {
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": versions.iter().map(|v| aggregated_version_of(group, v)).collect::<Vec<_>>(),
    })
}

/// Aggregated discovery for `/api` (legacy = true) or `/apis`.
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if legacy {
        vec![aggregated_group("", &["v1".to_string()])]
    } else {
        named_groups()
            .iter()
            .map(|(g, vs)| aggregated_group(g, vs))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}
