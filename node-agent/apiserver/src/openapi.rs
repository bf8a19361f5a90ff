//! The OpenAPI documents: v3 (`/openapi/v3` index, `/openapi/v3/api/v1`,
//! `/openapi/v3/apis/<group>/<version>`) and v2 (`/openapi/v2`, JSON), for every served kind.
//!
//! Built-in kinds' schemas are generated from the k8s-openapi types the server decodes and
//! checks objects with ([`crate::typed`]), with their descriptions; each kind's schema carries
//! `x-kubernetes-group-version-kind`, and list fields the patch merge keys and strategies that
//! strategic merge uses ([`crate::patch::list_strategy`]), as kube-openapi's builder adds them.
//! A custom resource's schema is its CRD version's `openAPIV3Schema` with `apiVersion`, `kind`
//! and `metadata` added, named in reverse-DNS form (`dev.minikind.crd.v1.Widget`), as
//! apiextensions-apiserver's builder names it. Every operation lists the `fieldValidation`
//! parameter, from which kubectl learns that the server validates fields itself.

use crate::resources::{self, ResIdx, Resource};
use crate::typed::{Visit, with_type};
use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use minikind_contract::kubernetes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const V3_PREFIX: &str = "#/components/schemas/";

struct SchemaOf<'a>(&'a mut SchemaGenerator);

impl Visit for SchemaOf<'_> {
    type Out = String;
    fn visit<T: DeserializeOwned + Serialize + JsonSchema>(self) -> String {
        self.0.subschema_for::<T>();
        T::schema_name().into_owned()
    }
}

fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3().into_generator()
}

/// The definition name of a custom resource version (`<reversed group>.<version>.<kind>`).
fn custom_name(r: &Resource) -> String {
    let mut parts: Vec<&str> = r.group.split('.').collect();
    parts.reverse();
    format!("{}.{}.{}", parts.join("."), r.version, r.kind)
}

/// The schema of a custom resource version: its CRD schema plus the object envelope.
fn custom_schema(res: ResIdx, meta_ref: &str) -> Value {
    let r = resources::get(res);
    let mut s = crate::crd::registry::version(res)
        .and_then(|v| v.schema)
        .map(|s| (*s).clone())
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let props = crate::admission::obj_mut(&mut s, "properties");
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}),
    );
    props.insert(
        "metadata".into(),
        json!({"$ref": meta_ref, "description": "Standard object's metadata."}),
    );
    let _ = r;
    s
}

/// Adds the patch metadata of list fields, walking every definition.
fn annotate_lists(v: &mut Value, defs: &Map<String, Value>) {
    let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, p) in props.iter_mut() {
        if p.get("type").and_then(Value::as_str) == Some("array") {
            let item = p.get("items").cloned().unwrap_or(Value::Null);
            let item = match item.get("$ref").and_then(Value::as_str) {
                Some(r) => defs
                    .get(r.trim_start_matches(V3_PREFIX))
                    .cloned()
                    .unwrap_or(item),
                None => item,
            };
            let sample = item
                .get("properties")
                .and_then(Value::as_object)
                .map(|ps| Value::Object(ps.keys().map(|k| (k.clone(), Value::Null)).collect()));
            if let Some((key, strategy)) = crate::patch::list_strategy(field, sample.as_ref())
                && let Some(m) = p.as_object_mut()
            {
                if let Some(k) = key {
                    m.insert("x-kubernetes-patch-merge-key".into(), json!(k));
                }
                m.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            }
        }
    }
}

/// The definitions and the kinds' definition names of one group version.
fn definitions(group: &str, version: &str) -> (Map<String, Value>, Vec<(ResIdx, String)>) {
    let mut g = generator();
    let meta_name = {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        g.subschema_for::<ObjectMeta>();
        ObjectMeta::schema_name().into_owned()
    };
    let mut kinds = Vec::new();
    let mut customs = Vec::new();
    for res in resources::in_group_version(group, version) {
        let r = resources::get(res);
        match with_type(r, SchemaOf(&mut g)) {
            Some(name) => kinds.push((res, name)),
            None => {
                let name = custom_name(r);
                customs.push((
                    name.clone(),
                    custom_schema(res, &format!("{V3_PREFIX}{meta_name}")),
                ));
                kinds.push((res, name));
            }
        }
    }
    let mut defs = g.take_definitions(true);
    for (name, s) in customs {
        defs.insert(name, s);
    }
    let snapshot = defs.clone();
    for d in defs.values_mut() {
        annotate_lists(d, &snapshot);
    }
    for (res, name) in &kinds {
        let r = resources::get(*res);
        if let Some(m) = defs.get_mut(name).and_then(Value::as_object_mut) {
            m.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": r.group, "version": r.version, "kind": r.kind}]),
            );
        }
    }
    (defs, kinds)
}

fn operations(paths: &mut Map<String, Value>, res: ResIdx, schema_ref: &str) {
    let r = resources::get(res);
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let sref = json!({"$ref": schema_ref});
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
    ]);
    let op = |action: &str, verb: &str, with_body: bool| {
        let mut o = json!({
            "operationId": format!("{verb}{}", r.kind),
            "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": sref}}}},
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        if with_body {
            o["requestBody"] = json!({"content": {"application/json": {"schema": sref}}});
        }
        if verb == "patch" {
            // The patch types the resource takes, which kubectl reads to choose a strategic
            // merge patch built from these schemas (custom resources take none).
            let body = json!({"schema": {"type": "object"}});
            let mut types = vec![
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ];
            if res < resources::RESOURCES.len() {
                types.insert(2, "application/strategic-merge-patch+json");
            }
            o["requestBody"] = json!({"content": types.iter().map(|t| (t.to_string(), body.clone())).collect::<Map<_, _>>()});
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
    if r.is_review() {
        paths.insert(coll, json!({"post": op("post", "create", true)}));
        return;
    }
    paths.insert(
        coll,
        json!({"get": op("list", "list", false), "post": op("post", "create", true)}),
    );
    paths.insert(
        item,
        json!({
            "get": op("get", "read", false),
            "put": op("put", "replace", true),
            "patch": op("patch", "patch", true),
            "delete": op("delete", "delete", false),
        }),
    );
}

fn build_v3(group: &str, version: &str) -> Option<Value> {
    let (defs, kinds) = definitions(group, version);
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for (res, name) in &kinds {
        operations(&mut paths, *res, &format!("{V3_PREFIX}{name}"));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": kubernetes::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": defs},
    }))
}

/// A document and its hash, by (group, version).
type Documents = HashMap<(String, String), (Value, String)>;

/// Built-in group versions never change: their documents are made once (with their hash).
fn builtin_cache() -> &'static Mutex<Documents> {
    static CACHE: OnceLock<Mutex<Documents>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The v3 document of one group version and its hash, or None if not served.
pub fn v3_document(group: &str, version: &str) -> Option<(Value, String)> {
    let custom = !crate::crd::registry::served_in(group, version).is_empty();
    let key = (group.to_string(), version.to_string());
    if !custom
        && let Some(hit) = builtin_cache()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
    {
        return Some(hit.clone());
    }
    let doc = build_v3(group, version)?;
    let h = hash(&doc.to_string());
    if !custom {
        builtin_cache()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (doc.clone(), h.clone()));
    }
    Some((doc, h))
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

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(String, String)> {
    let mut out = vec![(String::new(), "v1".to_string())];
    for (g, vs) in resources::named_groups() {
        out.extend(vs.into_iter().map(|v| (g.clone(), v)));
    }
    out
}

/// The `/openapi/v3` index: every group version's document with its hash.
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        if let Some((_, h)) = v3_document(&g, &v) {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={h}")}),
            );
        }
    }
    json!({ "paths": paths })
}

fn v2_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "$ref"
                    && let Value::String(s) = x
                    && let Some(rest) = s.strip_prefix(V3_PREFIX)
                {
                    *s = format!("#/definitions/{rest}");
                } else {
                    v2_refs(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(v2_refs),
        _ => {}
    }
}

/// The Swagger 2.0 document (`/openapi/v2`): every group version's definitions and paths.
pub fn v2() -> Value {
    let mut definitions = Map::new();
    let mut paths = Map::new();
    for (g, v) in group_versions() {
        let Some((doc, _)) = v3_document(&g, &v) else {
            continue;
        };
        if let Some(d) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            definitions.extend(d.clone());
        }
        if let Some(p) = doc.get("paths").and_then(Value::as_object) {
            for (k, ops) in p {
                let mut ops = ops.clone();
                // Swagger 2.0 bodies are parameters.
                if let Some(m) = ops.as_object_mut() {
                    for op in m.values_mut().filter_map(Value::as_object_mut) {
                        if let Some(body) = op.remove("requestBody") {
                            let consumes: Vec<String> = body
                                .get("content")
                                .and_then(Value::as_object)
                                .map(|c| c.keys().cloned().collect())
                                .unwrap_or_default();
                            op.insert("consumes".into(), json!(consumes));
                            let schema = body
                                .pointer("/content/application~1json/schema")
                                .cloned()
                                .unwrap_or(json!({"type": "object"}));
                            if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut)
                            {
                                ps.push(json!({"name": "body", "in": "body", "required": true, "schema": schema}));
                            }
                        }
                        if let Some(ps) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                            for p in ps.iter_mut().filter(|p| p["in"] == "query") {
                                if let Some(m) = p.as_object_mut() {
                                    m.remove("schema");
                                    m.insert("type".into(), json!("string"));
                                    m.insert("uniqueItems".into(), json!(true));
                                }
                            }
                        }
                        if let Some(r) = op.get_mut("responses").and_then(|r| r.get_mut("200")) {
                            let schema = r.pointer("/content/application~1json/schema").cloned();
                            *r = json!({"description": "OK", "schema": schema});
                        }
                    }
                }
                paths.insert(k.clone(), ops);
            }
        }
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": kubernetes::GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    });
    v2_refs(&mut doc);
    doc
}

/// Whether an `/openapi/v2` request accepts JSON (kubectl's typed clients ask for the
/// protobuf form only; minikind serves JSON, so they are told 406 Not Acceptable).
pub fn v2_accepts_json(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|p| {
            let t = p.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t == "*/*" || t == "application/*"
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_schema_is_generated_with_gvk_descriptions_and_patch_keys() {
        let (doc, _) = v3_document("", "v1").unwrap();
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let spec = &schemas["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        let container = &schemas["io.k8s.api.core.v1.Container"];
        assert_eq!(
            container["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        let svc_spec = &schemas["io.k8s.api.core.v1.ServiceSpec"];
        assert_eq!(
            svc_spec["properties"]["ports"]["x-kubernetes-patch-merge-key"],
            "port"
        );
        let probe = &schemas["io.k8s.api.core.v1.Probe"];
        assert!(
            probe["properties"]["periodSeconds"]["description"]
                .as_str()
                .unwrap()
                .contains("Default to 10 seconds")
        );
        // Every operation offers server-side field validation.
        let op = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }

    #[test]
    fn v2_uses_definitions_refs() {
        let doc = v2();
        assert_eq!(doc["swagger"], "2.0");
        assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
        assert!(!doc.to_string().contains("#/components/schemas/"));
    }
}
