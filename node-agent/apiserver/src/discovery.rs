//! API discovery: legacy (`APIVersions`, `APIGroupList`, `APIResourceList`) and aggregated
//! (`apidiscovery.k8s.io/v2`, chosen only when the client asks for it), plus `/version` and
//! the `/openapi/v3` documents kubectl fetches before create/apply to learn that the server
//! validates fields itself (`fieldValidation` on every PATCH operation).

use crate::resources::{RESOURCES, Resource, named_groups};
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

fn group_json(group: &str, version: &str) -> Value {
    let gv = format!("{group}/{version}");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": version}],
        "preferredVersion": {"groupVersion": gv, "version": version},
    })
}

pub fn api_group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": named_groups().iter().map(|(g, v)| group_json(g, v)).collect::<Vec<_>>(),
    })
}

pub fn api_group(group: &str) -> Option<Value> {
    named_groups()
        .into_iter()
        .find(|(g, _)| *g == group)
        .map(|(g, v)| {
            let mut j = group_json(g, v);
            j["kind"] = json!("APIGroup");
            j["apiVersion"] = json!("v1");
            j
        })
}

fn in_gv<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
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

fn aggregated_group(group: &str, version: &str) -> Value {
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
    json!({
        "metadata": {"name": group, "creationTimestamp": null},
        "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
    })
}

/// Aggregated discovery for `/api` (legacy = true) or `/apis`.
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = if legacy {
        vec![aggregated_group("", "v1")]
    } else {
        named_groups()
            .iter()
            .map(|(g, v)| aggregated_group(g, v))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

// --- OpenAPI v3 ------------------------------------------------------------------------------

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// All served group versions.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out = vec![("", "v1")];
    out.extend(named_groups());
    out
}

fn hash(s: &str) -> String {
    // FNV-1a: the hash only has to change when the document does (clients cache by it).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions() {
        let p = gv_path(g, v);
        let doc = openapi_gv(g, v).map(|d| d.to_string()).unwrap_or_default();
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
        );
    }
    json!({ "paths": paths })
}

fn schema_name(r: &Resource) -> String {
    let g = if r.group.is_empty() {
        "core".to_string()
    } else {
        r.group.split('.').next().unwrap_or(r.group).to_string()
    };
    format!("io.k8s.api.{g}.{}.{}", r.version, r.kind)
}

/// The OpenAPI v3 document of one group version: paths with their operations (each tagged
/// with `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter) and an
/// open object schema per kind (unknown fields are kept, not rejected).
pub fn openapi_gv(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut any = false;
    for r in in_gv(group, version) {
        any = true;
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let schema_ref = json!({"$ref": format!("#/components/schemas/{}", schema_name(r))});
        let body = json!({"content": {"application/json": {"schema": schema_ref}}});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let op = |action: &str, with_body: bool| {
            let mut o = json!({
                "operationId": format!("{action}{}", r.kind),
                "parameters": params,
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            });
            if with_body {
                o["requestBody"] = body.clone();
            }
            o
        };
        let (coll, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        paths.insert(
            coll,
            json!({"get": op("list", false), "post": op("post", true)}),
        );
        paths.insert(
            item,
            json!({
                "get": op("get", false),
                "put": op("put", true),
                "patch": op("patch", true),
                "delete": op("delete", false),
            }),
        );
        schemas.insert(
            schema_name(r),
            json!({
                "type": "object",
                "description": format!("{} ({}), served by minikind.", r.kind, r.api_version()),
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
                "x-kubernetes-preserve-unknown-fields": true,
                "x-kubernetes-group-version-kind": [gvk],
            }),
        );
    }
    if !any {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": kubernetes::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
