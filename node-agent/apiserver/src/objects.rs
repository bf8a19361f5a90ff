//! The object verbs: get, list, create, update, patch, delete, deletecollection (watch is in
//! `watch.rs`), with the real server's bookkeeping: uid, creationTimestamp, generation,
//! resourceVersion checks, managedFields, graceful pod deletion and finalizers.

use super::patch::{self, PatchKind};
use super::tables::{self, IncludeObject};
use super::{ApiState, Ctx, json_response, raw_json_response};
use crate::errors::{ApiError, ApiResult};
use crate::meta::{self, metadata_mut, name_of, namespace_of};
use crate::resources::{self, ResIdx, idx};
use crate::selectors::Selector;
use crate::store::{Change, Obj, Outcome};
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;

/// Decodes a request body as JSON, YAML, or Kubernetes protobuf (built-in kinds, as
/// kubectl's typed clients send them).
pub fn decode_body(ctx: &Ctx) -> ApiResult<Value> {
    let ct = ctx
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    if ctx.body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let v: Value = match ct {
        "" | "application/json" | "*/*" => serde_json::from_slice(&ctx.body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml::from_slice(&ctx.body).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?
        }
        "application/vnd.kubernetes.protobuf" => super::protobuf::decode(&ctx.body)?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

fn field_manager(ctx: &Ctx, default: &str) -> String {
    ctx.query
        .get("fieldManager")
        .cloned()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            // The real server defaults to the user agent's program name.
            ctx.user_agent
                .split('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_string()
        })
}

fn dry_run(ctx: &Ctx) -> bool {
    ctx.query.get("dryRun").is_some_and(|v| v == "All")
}

/// Checks `kind`/`apiVersion` of a body against the URL's resource, filling them if absent.
fn check_type(res: ResIdx, v: &mut Value) -> ApiResult<()> {
    let r = resources::get(res);
    let av = r.api_version();
    match v.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => v["apiVersion"] = json!(av),
        Some(x) if x == av => {}
        Some(x) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({x}) does not match the expected API version ({av})"
            )));
        }
    }
    match v.get("kind").and_then(Value::as_str) {
        None | Some("") => v["kind"] = json!(r.kind),
        Some(x) if x == r.kind => {}
        Some(x) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({x}) does not match the expected kind ({})",
                r.kind
            )));
        }
    }
    Ok(())
}

/// Namespace of the URL vs the body's.
fn check_namespace(res: ResIdx, ctx: &Ctx, v: &mut Value) -> ApiResult<String> {
    let r = resources::get(res);
    if !r.namespaced {
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("namespace");
        }
        return Ok(String::new());
    }
    let url_ns = ctx.namespace.clone().unwrap_or_default();
    let body_ns = namespace_of(v).to_string();
    if !body_ns.is_empty() && body_ns != url_ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    metadata_mut(v).insert("namespace".into(), json!(url_ns));
    Ok(url_ns)
}

fn namespace_exists(st: &ApiState, ns: &str) -> ApiResult<()> {
    if st.store.get(idx::namespaces(), "", ns).is_none() {
        return Err(ApiError::not_found("", "namespaces", ns));
    }
    Ok(())
}

/// New objects may not go into a namespace that is being deleted.
fn namespace_accepts_new(st: &ApiState, ns: &str, res: ResIdx, name: &str) -> ApiResult<()> {
    let Some(n) = st.store.get(idx::namespaces(), "", ns) else {
        return Err(ApiError::not_found("", "namespaces", ns));
    };
    if n.json_contains(b"\"deletionTimestamp\"")
        && n.value()
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|x| !x.is_null())
    {
        let r = resources::get(res);
        return Err(ApiError::forbidden(
            r.group,
            r.plural,
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(())
}

fn item_response(code: u16, ctx: &Ctx, res: ResIdx, obj: &Obj) -> Response {
    if tables::wants_table(&ctx.accept) {
        let mut v = obj.value();
        crate::crd::set_version(res, &mut v);
        let t = tables::table(
            res,
            std::slice::from_ref(&v),
            obj.rv,
            None,
            IncludeObject::parse(ctx.query.get("includeObject").map(String::as_str)),
        );
        return json_response(code, &t);
    }
    raw_json_response(code, crate::crd::served_json(res, obj))
}

fn value_response(code: u16, v: &Value) -> Response {
    json_response(code, v)
}

pub fn get(st: &ApiState, ctx: &Ctx, res: ResIdx, name: &str) -> ApiResult<Response> {
    let ns = ctx.namespace.as_deref().unwrap_or("");
    let r = resources::get(res);
    let obj = st
        .store
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
    if ctx.sub.as_deref() == Some("scale") {
        return Ok(value_response(200, &scale_of(res, &obj.value())));
    }
    Ok(item_response(200, ctx, res, &obj))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    ns: String,
    name: String,
    rv: u64,
}

pub struct ListQuery {
    pub labels: Selector,
    pub fields: Selector,
}

pub fn parse_selectors(res: ResIdx, ctx: &Ctx) -> ApiResult<ListQuery> {
    let labels = match ctx.query.get("labelSelector") {
        Some(s) => Selector::parse_labels(s)?,
        None => Selector::everything(),
    };
    let fields = match ctx.query.get("fieldSelector") {
        Some(s) => Selector::parse_fields(s)?,
        None => Selector::everything(),
    };
    let r = resources::get(res);
    for k in fields.keys() {
        if k != "metadata.name" && k != "metadata.namespace" && !r.selectable_fields.contains(&k) {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {k}"
            )));
        }
    }
    Ok(ListQuery { labels, fields })
}

pub fn list(st: &ApiState, ctx: &Ctx, res: ResIdx) -> ApiResult<Response> {
    let q = parse_selectors(res, ctx)?;
    let limit: usize = match ctx.query.get("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let cont = match ctx.query.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(c)
                .map_err(|_| ApiError::bad_request("continue key is not valid base64"))?;
            let t: ContinueToken = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            Some(t)
        }
        None => None,
    };
    let ns = ctx.namespace.as_deref();
    let (objs, rv, more) = st.store.list(
        res,
        ns,
        cont.as_ref().map(|c| (c.ns.as_str(), c.name.as_str())),
        limit,
        |o| o.labels_match(&q.labels) && o.fields_match(&q.fields),
    );
    let rv = cont.as_ref().map_or(rv, |c| c.rv);
    let next = if more {
        objs.last().map(|o| {
            let t = ContinueToken {
                ns: o.namespace.to_string(),
                name: o.name.to_string(),
                rv,
            };
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&t).unwrap_or_default())
        })
    } else {
        None
    };
    let r = resources::get(res);
    if tables::wants_table(&ctx.accept) {
        let t = tables::table_bytes(
            res,
            &objs,
            rv,
            next.as_deref(),
            IncludeObject::parse(ctx.query.get("includeObject").map(String::as_str)),
        );
        return Ok(raw_json_response(200, t.into()));
    }
    // The list body is spliced from the stored bytes: no parse, no re-serialization.
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(n) = &next {
        meta["continue"] = json!(n);
    }
    let head = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
        r.list_kind(),
        r.api_version(),
        meta
    );
    let total: usize = objs.iter().map(|o| o.json.len() + 1).sum();
    let mut body = Vec::with_capacity(head.len() + total + 2);
    body.extend_from_slice(head.as_bytes());
    for (i, o) in objs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&crate::crd::served_json(res, o));
    }
    body.extend_from_slice(b"]}");
    Ok(raw_json_response(200, body.into()))
}

/// Fills server-set metadata on a new object, and drops a client-sent status where the real
/// server's create strategy does (pods, services, the workload kinds; nodes keep theirs, as the
/// kubelet registers with one).
fn init_metadata(res: ResIdx, v: &mut Value) {
    // Custom objects with a status subresource, and CRDs, as their strategies'
    // PrepareForCreate do.
    let custom = res >= resources::RESOURCES.len();
    if (res == idx::pods()
        || res == idx::services()
        || res == idx::deployments()
        || res == idx::crds()
        || (custom && resources::get(res).has_status())
        || resources::is_workload(res))
        && let Some(m) = v.as_object_mut()
    {
        m.remove("status");
    }
    let m = metadata_mut(v);
    m.insert("uid".into(), json!(meta::new_uid()));
    m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
    m.remove("deletionTimestamp");
    m.remove("deletionGracePeriodSeconds");
    m.remove("selfLink");
    if res == idx::deployments()
        || res == idx::pods()
        || res == idx::crds()
        || custom
        || resources::is_workload(res)
    {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
}

pub async fn create(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx) -> ApiResult<Response> {
    let mut v = decode_body(ctx)?;
    check_type(res, &mut v)?;
    if super::strict::wanted(&ctx.query) {
        super::strict::check(res, &v)?;
    }
    let ns = check_namespace(res, ctx, &mut v)?;
    let r = resources::get(res);
    crate::crd::check_create_allowed(&st.store, res)?;
    if r.namespaced {
        namespace_accepts_new(st, &ns, res, name_of(&v))?;
    }
    if meta::str_at(&v, "/metadata/resourceVersion").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if name_of(&v).is_empty()
        && let Some(g) = meta::str_at(&v, "/metadata/generateName").filter(|g| !g.is_empty())
    {
        let n = meta::generate_name(g);
        metadata_mut(&mut v).insert("name".into(), json!(n));
    }
    let name = name_of(&v).to_string();
    if res == idx::pods() {
        crate::admission::service_account(&st.store, &ns, &mut v)?;
    }
    init_metadata(res, &mut v);
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let manager = field_manager(ctx, "unknown");
    patch::record_update(None, &mut v, &manager, &r.api_version(), "");
    let dry = dry_run(ctx);
    let st2 = st.clone();
    let mut preview = None;
    let out = st
        .store
        .mutate(res, &ns, &name, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(r.group, r.plural, &name));
            }
            st2.admission.admit(res, &mut v, None)?;
            if dry {
                st2.admission.on_deleted(res, &v);
                preview = Some(v);
                return Ok(Change::Keep);
            }
            Ok(Change::Put(v))
        })
        .await?;
    if let Some(p) = preview {
        return Ok(value_response(201, &p));
    }
    match out.object() {
        Some(o) => Ok(item_response(201, ctx, res, o)),
        None => Err(ApiError::internal("create stored nothing")),
    }
}

/// Carries over what a client may not change and decides how the write finishes (finalizers
/// gone on a deleted object = removal).
fn finish_update(
    st: &ApiState,
    res: ResIdx,
    sub: Option<&str>,
    old: &Value,
    mut new: Value,
    manager: &str,
    record: bool,
) -> ApiResult<Change> {
    let r = resources::get(res);
    check_type(res, &mut new)?;
    // Immutable metadata.
    {
        let om = old.get("metadata").cloned().unwrap_or(json!({}));
        let m = metadata_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match om.get(k) {
                Some(x) => {
                    m.insert(k.into(), x.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
    }
    match sub {
        Some("status") => {
            // Only status changes through the status subresource.
            let status = new.get("status").cloned();
            let mut merged = old.clone();
            match status {
                Some(s) => merged["status"] = s,
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = new.pointer("/metadata/managedFields").cloned() {
                metadata_mut(&mut merged).insert("managedFields".into(), mf);
            }
            new = merged;
        }
        _ if r.has_status() => {
            // The main resource ignores status changes.
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        _ => {}
    }
    if old.get("spec") != new.get("spec")
        && let Some(g) = old.pointer("/metadata/generation").and_then(Value::as_i64)
    {
        metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    if record {
        patch::record_update(
            Some(old),
            &mut new,
            manager,
            &r.api_version(),
            sub.unwrap_or(""),
        );
    }
    st.admission.admit(res, &mut new, Some(old))?;
    // A deleted object whose last finalizer went away is removed now.
    let deleting = new
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|x| !x.is_null());
    let finalizers_left = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if deleting && !finalizers_left && res != idx::pods() && res != idx::namespaces() {
        st.admission.on_deleted(res, &new);
        return Ok(Change::Delete(new));
    }
    Ok(Change::Put(new))
}

pub async fn update(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx, name: &str) -> ApiResult<Response> {
    let mut v = decode_body(ctx)?;
    check_type(res, &mut v)?;
    let ns = check_namespace(res, ctx, &mut v)?;
    let r = resources::get(res);
    let body_name = name_of(&v).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    metadata_mut(&mut v).insert("name".into(), json!(name));
    if ctx.sub.as_deref() != Some("scale") && super::strict::wanted(&ctx.query) {
        super::strict::check(res, &v)?;
    }
    let sub = ctx.sub.clone();
    if sub.as_deref() == Some("scale") {
        let replicas = v
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::bad_request("spec.replicas is required in a Scale"))?;
        return scale(st, ctx, res, &ns, name, replicas).await;
    }
    let manager = field_manager(ctx, "unknown");
    let want_rv = meta::str_at(&v, "/metadata/resourceVersion")
        .filter(|s| !s.is_empty())
        .map(String::from);
    let st2 = st.clone();
    let dry = dry_run(ctx);
    let mut preview = None;
    let out = st
        .store
        .mutate(res, &ns, name, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            if let Some(want) = &want_rv
                && meta::str_at(&old, "/metadata/resourceVersion") != Some(want.as_str())
            {
                return Err(ApiError::conflict(r.group, r.plural, name));
            }
            let change = finish_update(&st2, res, sub.as_deref(), &old, v, &manager, true)?;
            if dry {
                if let Change::Put(p) | Change::Delete(p) = change {
                    preview = Some(p);
                }
                return Ok(Change::Keep);
            }
            Ok(change)
        })
        .await?;
    if let Some(p) = preview {
        return Ok(value_response(200, &p));
    }
    written_response(ctx, res, out)
}

fn written_response(ctx: &Ctx, res: ResIdx, out: Outcome) -> ApiResult<Response> {
    match out.object() {
        Some(o) => Ok(item_response(200, ctx, res, o)),
        None => Err(ApiError::internal("write returned no object")),
    }
}

pub async fn patch(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx, name: &str) -> ApiResult<Response> {
    let kind = PatchKind::from_content_type(&ctx.content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&ctx.content_type))?;
    if kind == PatchKind::Strategic && res >= resources::RESOURCES.len() {
        // Custom resources have no Go types to take patch strategies from; the real server
        // offers them the other three patch types only.
        return Err(ApiError::unsupported_patch(&[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]));
    }
    let r = resources::get(res);
    let ns = if r.namespaced {
        ctx.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    if r.namespaced {
        namespace_exists(st, &ns)?;
    }
    let sub = ctx.sub.clone();
    let dry = dry_run(ctx);
    let strict = super::strict::wanted(&ctx.query);
    let st2 = st.clone();
    let body = ctx.body.clone();
    let mut preview = None;
    let out = if kind == PatchKind::Apply {
        let manager = ctx
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
                )
            })?;
        let force = ctx.query.get("force").is_some_and(|f| f == "true");
        let mut applied: Value = serde_yaml::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("the apply patch is not valid YAML or JSON: {e}"))
        })?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("the apply patch must be an object"));
        }
        check_type(res, &mut applied)?;
        if super::strict::wanted(&ctx.query) {
            super::strict::check(res, &applied)?;
        }
        let body_name = name_of(&applied).to_string();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if r.namespaced {
            let bns = namespace_of(&applied).to_string();
            if !bns.is_empty() && bns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            metadata_mut(&mut applied).insert("namespace".into(), json!(ns));
        }
        st.store
            .mutate(res, &ns, name, |cur| {
                let av = r.api_version();
                let change = match cur {
                    None => {
                        let mut v = patch::server_side_apply(
                            None,
                            &applied,
                            &manager,
                            force,
                            &av,
                            sub.as_deref().unwrap_or(""),
                        )?;
                        init_metadata(res, &mut v);
                        st2.admission.admit(res, &mut v, None)?;
                        if dry {
                            st2.admission.on_deleted(res, &v);
                        }
                        Change::Put(v)
                    }
                    Some(old) => {
                        let new = patch::server_side_apply(
                            Some(&old),
                            &applied,
                            &manager,
                            force,
                            &av,
                            sub.as_deref().unwrap_or(""),
                        )
                        .map_err(|mut e| {
                            if e.reason == "Conflict" {
                                e.details = e.details.map(|mut d| {
                                    d["name"] = json!(name);
                                    d["kind"] = json!(r.plural);
                                    d
                                });
                            }
                            e
                        })?;
                        finish_update(&st2, res, sub.as_deref(), &old, new, &manager, false)?
                    }
                };
                if dry {
                    if let Change::Put(p) | Change::Delete(p) = change {
                        preview = Some(p);
                    }
                    return Ok(Change::Keep);
                }
                Ok(change)
            })
            .await?
    } else {
        let manager = field_manager(ctx, "unknown");
        st.store
            .mutate(res, &ns, name, |cur| {
                let Some(old) = cur else {
                    return Err(ApiError::not_found(r.group, r.plural, name));
                };
                let mut new = old.clone();
                if sub.as_deref() == Some("scale") {
                    let mut sc = scale_of(res, &old);
                    patch::apply_patch(kind, &mut sc, &body)?;
                    let n = sc
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?;
                    set_replicas(res, &mut new, n);
                } else {
                    patch::apply_patch(kind, &mut new, &body)?;
                    if strict {
                        super::strict::check(res, &new)?;
                    }
                }
                // A resourceVersion in the patch is a precondition.
                if let Some(want) = meta::str_at(&new, "/metadata/resourceVersion")
                    && meta::str_at(&old, "/metadata/resourceVersion") != Some(want)
                {
                    return Err(ApiError::conflict(r.group, r.plural, name));
                }
                let sub_eff = if sub.as_deref() == Some("scale") {
                    None
                } else {
                    sub.as_deref()
                };
                let change = finish_update(&st2, res, sub_eff, &old, new, &manager, true)?;
                if dry {
                    if let Change::Put(p) | Change::Delete(p) = change {
                        preview = Some(p);
                    }
                    return Ok(Change::Keep);
                }
                Ok(change)
            })
            .await?
    };
    if let Some(p) = preview {
        return Ok(value_response(200, &p));
    }
    if sub.as_deref() == Some("scale")
        && let Some(o) = out.object()
    {
        return Ok(value_response(200, &scale_of(res, &o.value())));
    }
    let created = matches!(&out, Outcome::Written(e) if e.ty == crate::store::EventType::Added);
    match out.object() {
        Some(o) => Ok(item_response(if created { 201 } else { 200 }, ctx, res, o)),
        None => Err(ApiError::internal("patch returned no object")),
    }
}

/// Where an object's replicas live: `/spec/replicas` and `/status/replicas` for the built-in
/// kinds, the CRD's `subresources.scale` paths for a custom resource.
fn replica_paths(res: ResIdx) -> (String, String, Option<String>) {
    match crate::crd::scale_paths(res) {
        Some(p) => p,
        None => ("/spec/replicas".into(), "/status/replicas".into(), None),
    }
}

fn set_replicas(res: ResIdx, v: &mut Value, n: i64) {
    let (spec, _, _) = replica_paths(res);
    let mut cur = v;
    let parts: Vec<&str> = spec.split('/').skip(1).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("just made an object");
        if i + 1 == parts.len() {
            m.insert((*part).to_string(), json!(n));
            return;
        }
        cur = m.entry(*part).or_insert(json!({}));
    }
}

/// The `autoscaling/v1` Scale view of a Deployment, ReplicaSet, StatefulSet or custom object.
fn scale_of(res: ResIdx, v: &Value) -> Value {
    let (spec, status, selector) = replica_paths(res);
    let selector = match selector {
        Some(p) => meta::str_at(v, &p).unwrap_or_default().to_string(),
        None => v
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": name_of(v),
            "namespace": namespace_of(v),
            "uid": meta::str_at(v, "/metadata/uid"),
            "resourceVersion": meta::str_at(v, "/metadata/resourceVersion"),
            "creationTimestamp": meta::str_at(v, "/metadata/creationTimestamp"),
        },
        "spec": {"replicas": v.pointer(&spec).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": v.pointer(&status).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

async fn scale(
    st: &Arc<ApiState>,
    _ctx: &Ctx,
    res: ResIdx,
    ns: &str,
    name: &str,
    replicas: i64,
) -> ApiResult<Response> {
    let r = resources::get(res);
    let st2 = st.clone();
    let out = st
        .store
        .mutate(res, ns, name, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            let mut new = old.clone();
            set_replicas(res, &mut new, replicas);
            finish_update(&st2, res, None, &old, new, "kube-controller-manager", true)
        })
        .await?;
    let v = out.object().map(|o| o.value()).unwrap_or(Value::Null);
    Ok(value_response(200, &scale_of(res, &v)))
}

/// `DeleteOptions` as sent in the body or the query.
struct DeleteOpts {
    grace: Option<i64>,
    rv: Option<String>,
    uid: Option<String>,
    /// `propagationPolicy: Orphan` (kubectl `--cascade=orphan`): dependents are kept.
    orphan: bool,
    /// `propagationPolicy: Foreground` (kubectl `--cascade=foreground`): the object stays,
    /// marked deleted with the `foregroundDeletion` finalizer, until the garbage collector has
    /// removed its blocking dependents.
    foreground: bool,
    /// `dryRun: ["All"]` in the body (kubectl) or the query.
    dry: bool,
}

fn delete_opts(ctx: &Ctx) -> ApiResult<DeleteOpts> {
    let body: Value = if ctx.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))?
    };
    let grace = body
        .get("gracePeriodSeconds")
        .and_then(Value::as_i64)
        .or_else(|| {
            ctx.query
                .get("gracePeriodSeconds")
                .and_then(|g| g.parse().ok())
        });
    let policy = meta::str_at(&body, "/propagationPolicy")
        .map(String::from)
        .or_else(|| ctx.query.get("propagationPolicy").cloned());
    let orphan = match policy.as_deref() {
        None | Some("Background") | Some("Foreground") => false,
        Some("Orphan") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Orphan, Background, Foreground"
            )));
        }
    } || body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let foreground = !orphan && policy.as_deref() == Some("Foreground");
    Ok(DeleteOpts {
        foreground,
        grace,
        rv: meta::str_at(&body, "/preconditions/resourceVersion").map(String::from),
        uid: meta::str_at(&body, "/preconditions/uid").map(String::from),
        orphan,
        dry: dry_run(ctx)
            || body
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|x| x == "All")),
    })
}

fn node_ready(st: &ApiState, node: &str) -> bool {
    st.store.get(idx::nodes(), "", node).is_some_and(|n| {
        n.value()
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
    })
}

/// Deletes one object; returns the response body object and the HTTP code.
pub async fn delete_one(
    st: &Arc<ApiState>,
    res: ResIdx,
    ns: &str,
    name: &str,
    grace: Option<i64>,
    pre_rv: Option<String>,
    pre_uid: Option<String>,
) -> ApiResult<Value> {
    let r = resources::get(res);
    let st2 = st.clone();
    // Looked up before taking the store lock (the store is not re-entrant).
    let on_ready_node = res == idx::pods()
        && st
            .store
            .get(res, ns, name)
            .and_then(|p| meta::str_at(&p.value(), "/spec/nodeName").map(String::from))
            .is_some_and(|n| !n.is_empty() && node_ready(st, &n));
    let out = st
        .store
        .mutate(res, ns, name, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            if let Some(want) = &pre_rv
                && meta::str_at(&old, "/metadata/resourceVersion") != Some(want.as_str()) {
                    return Err(ApiError::conflict_msg(
                        r.group,
                        r.plural,
                        name,
                        &format!(
                            "the ResourceVersion in the precondition ({want}) does not match the ResourceVersion in record ({}). The object might have been modified",
                            meta::str_at(&old, "/metadata/resourceVersion").unwrap_or_default()
                        ),
                    ));
                }
            if let Some(want) = &pre_uid
                && meta::str_at(&old, "/metadata/uid") != Some(want.as_str()) {
                    return Err(ApiError::conflict_msg(
                        r.group,
                        r.plural,
                        name,
                        &format!(
                            "the UID in the precondition ({want}) does not match the UID in record ({}). The object might have been modified",
                            meta::str_at(&old, "/metadata/uid").unwrap_or_default()
                        ),
                    ));
                }
            let already = old
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|x| !x.is_null());
            let finalizers = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if res == idx::namespaces() {
                if already {
                    return Ok(Change::Keep);
                }
                // The namespace controller empties it and then removes it.
                let mut new = old.clone();
                metadata_mut(&mut new).insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                new["status"]["phase"] = json!("Terminating");
                return Ok(Change::Put(new));
            }
            if res == idx::pods() {
                let node = meta::str_at(&old, "/spec/nodeName").unwrap_or_default().to_string();
                let default_grace = old
                    .pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30);
                let grace = grace.unwrap_or(default_grace).max(0);
                // A pod on a live node is stopped by its kubelet first, which then deletes it
                // with grace 0; unscheduled pods and pods on dead nodes go at once.
                if grace > 0 && !node.is_empty() && on_ready_node {
                    let cur_grace = old
                        .pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(Value::as_i64);
                    if already && cur_grace.is_some_and(|g| g <= grace) {
                        return Ok(Change::Keep);
                    }
                    let mut new = old.clone();
                    let when = jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_secs(grace))
                        .unwrap_or(jiff::Timestamp::now());
                    let m = metadata_mut(&mut new);
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(when.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    return Ok(Change::Put(new));
                }
            }
            if finalizers {
                if already {
                    return Ok(Change::Keep);
                }
                let mut new = old.clone();
                let m = metadata_mut(&mut new);
                m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                return Ok(Change::Put(new));
            }
            st2.admission.on_deleted(res, &old);
            Ok(Change::Delete(old))
        })
        .await?;
    Ok(out.object().map(|o| o.value()).unwrap_or(Value::Null))
}

pub async fn delete(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx, name: &str) -> ApiResult<Response> {
    let o = delete_opts(ctx)?;
    let ns = ctx.namespace.clone().unwrap_or_default();
    if o.dry {
        let r = resources::get(res);
        let obj = st
            .store
            .get(res, &ns, name)
            .ok_or_else(|| ApiError::not_found(r.group, r.plural, name))?;
        return Ok(item_response(200, ctx, res, &obj));
    }
    if o.orphan && res != idx::namespaces() && res != idx::pods() {
        // As with the `orphan` finalizer: marked deleted first, so that no controller adopts
        // back what is being orphaned, then its dependents let go, then removed.
        let marked = mark_deleting(st, res, &ns, name, ORPHAN_FINALIZER, o.rv, o.uid).await?;
        let uid = meta::str_at(&marked, "/metadata/uid")
            .unwrap_or_default()
            .to_string();
        orphan_dependents(st, &ns, &uid).await?;
        let out = update_internal(st, res, &ns, name, "garbage-collector", false, |v| {
            meta::remove_finalizer(v, ORPHAN_FINALIZER)
        })
        .await?;
        let v = out.map(|o| o.value()).unwrap_or(marked);
        return Ok(value_response(200, &v));
    }
    if o.orphan
        && let Some(owner) = st.store.get(res, &ns, name)
    {
        let uid = meta::str_at(&owner.value(), "/metadata/uid")
            .unwrap_or_default()
            .to_string();
        orphan_dependents(st, &ns, &uid).await?;
    }
    if o.foreground && res != idx::namespaces() && res != idx::pods() {
        let v = delete_foreground(st, res, &ns, name, o.rv, o.uid).await?;
        return Ok(value_response(200, &v));
    }
    let v = delete_one(st, res, &ns, name, o.grace, o.rv, o.uid).await?;
    Ok(value_response(200, &v))
}

/// The finalizer of a foreground cascading deletion (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN_FINALIZER: &str = "orphan";

/// Marks an object deleted with the `foregroundDeletion` finalizer, as the API server's
/// `deletionFinalizersForGarbageCollection` does; the garbage collector deletes its dependents
/// and then removes the finalizer, which removes the object.
pub async fn delete_foreground(
    st: &Arc<ApiState>,
    res: ResIdx,
    ns: &str,
    name: &str,
    pre_rv: Option<String>,
    pre_uid: Option<String>,
) -> ApiResult<Value> {
    mark_deleting(st, res, ns, name, FOREGROUND_FINALIZER, pre_rv, pre_uid).await
}

/// Sets the deletion timestamp and adds `finalizer`, checking the preconditions.
async fn mark_deleting(
    st: &Arc<ApiState>,
    res: ResIdx,
    ns: &str,
    name: &str,
    finalizer: &str,
    pre_rv: Option<String>,
    pre_uid: Option<String>,
) -> ApiResult<Value> {
    let r = resources::get(res);
    let out = st
        .store
        .mutate(res, ns, name, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            for (want, at, what) in [
                (&pre_rv, "/metadata/resourceVersion", "ResourceVersion"),
                (&pre_uid, "/metadata/uid", "UID"),
            ] {
                if let Some(want) = want
                    && meta::str_at(&old, at) != Some(want.as_str())
                {
                    return Err(ApiError::conflict_msg(
                        r.group,
                        r.plural,
                        name,
                        &format!(
                            "the {what} in the precondition ({want}) does not match the {what} in record ({}). The object might have been modified",
                            meta::str_at(&old, at).unwrap_or_default()
                        ),
                    ));
                }
            }
            let mut new = old.clone();
            let m = metadata_mut(&mut new);
            let fins = m.entry("finalizers").or_insert(json!([]));
            let mut changed = false;
            if let Some(a) = fins.as_array_mut()
                && !a.iter().any(|f| f == finalizer)
            {
                a.push(json!(finalizer));
                changed = true;
            }
            if m.get("deletionTimestamp").is_none_or(Value::is_null) {
                m.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                changed = true;
            }
            Ok(if changed { Change::Put(new) } else { Change::Keep })
        })
        .await?;
    Ok(match out.object() {
        Some(o) => o.value(),
        None => st
            .store
            .get(res, ns, name)
            .map(|o| o.value())
            .unwrap_or(Value::Null),
    })
}

/// Removes the owner references to `uid` from the objects in `ns` (all namespaces when the
/// owner is cluster-scoped), before the owner goes, so the garbage collector keeps them.
async fn orphan_dependents(st: &Arc<ApiState>, ns: &str, uid: &str) -> ApiResult<()> {
    if uid.is_empty() {
        return Ok(());
    }
    let needle = format!("\"uid\":\"{uid}\"");
    for i in resources::all() {
        if !resources::get(i).namespaced {
            continue;
        }
        let scope = (!ns.is_empty()).then_some(ns);
        let (objs, _, _) = st
            .store
            .list(i, scope, None, 0, |o| o.json_contains(needle.as_bytes()));
        for o in objs {
            let uid = uid.to_string();
            update_internal(
                st,
                i,
                &o.namespace,
                &o.name,
                "garbage-collector",
                false,
                move |v| {
                    let Some(refs) = v
                        .pointer_mut("/metadata/ownerReferences")
                        .and_then(Value::as_array_mut)
                    else {
                        return false;
                    };
                    let before = refs.len();
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                    let changed = refs.len() != before;
                    if refs.is_empty()
                        && let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut)
                    {
                        m.remove("ownerReferences");
                    }
                    changed
                },
            )
            .await?;
        }
    }
    Ok(())
}

pub async fn delete_collection(st: &Arc<ApiState>, ctx: &Ctx, res: ResIdx) -> ApiResult<Response> {
    let q = parse_selectors(res, ctx)?;
    let o = delete_opts(ctx)?;
    let (objs, _, _) = st.store.list(res, ctx.namespace.as_deref(), None, 0, |x| {
        x.labels_match(&q.labels) && x.fields_match(&q.fields)
    });
    let mut items = Vec::new();
    for obj in objs {
        match delete_one(st, res, &obj.namespace, &obj.name, o.grace, None, None).await {
            Ok(v) => items.push(v),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let r = resources::get(res);
    Ok(value_response(
        200,
        &json!({
            "kind": r.list_kind(),
            "apiVersion": r.api_version(),
            "metadata": {"resourceVersion": st.store.current_rv().to_string()},
            "items": items,
        }),
    ))
}

/// `POST pods/<name>/binding`: the scheduler's (or a client's) assignment to a node.
pub async fn bind(st: &Arc<ApiState>, ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let v = decode_body(ctx)?;
    let node = meta::str_at(&v, "/target/name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                "",
                "Binding",
                name,
                vec![crate::errors::required("target.name")],
            )
        })?
        .to_string();
    let ns = ctx.namespace.clone().unwrap_or_default();
    bind_pod(st, &ns, name, &node).await?;
    Ok(value_response(
        201,
        &json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","code":201}),
    ))
}

pub async fn bind_pod(st: &ApiState, ns: &str, name: &str, node: &str) -> ApiResult<()> {
    st.store
        .mutate(idx::pods(), ns, name, |cur| {
            let Some(mut pod) = cur else {
                return Err(ApiError::not_found("", "pods", name));
            };
            if meta::str_at(&pod, "/spec/nodeName").is_some_and(|n| !n.is_empty()) {
                return Err(ApiError::conflict_msg(
                    "",
                    "pods",
                    name,
                    &format!(
                        "pod {name} is already assigned to node {:?}",
                        meta::str_at(&pod, "/spec/nodeName").unwrap_or_default()
                    ),
                ));
            }
            pod["spec"]["nodeName"] = json!(node);
            let cond = json!({"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":meta::now_rfc3339()});
            let conds = pod["status"]
                .as_object_mut()
                .map(|s| s.entry("conditions").or_insert(json!([])));
            if let Some(Value::Array(cs)) = conds {
                cs.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                cs.push(cond);
            }
            Ok(Change::Put(pod))
        })
        .await?;
    Ok(())
}

// --- Writes made by the controllers (same defaulting and bookkeeping as client writes) -------

/// Creates an object as a controller; AlreadyExists is returned as an error.
pub async fn create_internal(
    st: &ApiState,
    res: ResIdx,
    mut v: Value,
    manager: &str,
) -> ApiResult<Arc<Obj>> {
    let r = resources::get(res);
    check_type(res, &mut v)?;
    if name_of(&v).is_empty()
        && let Some(g) = meta::str_at(&v, "/metadata/generateName").filter(|g| !g.is_empty())
    {
        let n = meta::generate_name(g);
        metadata_mut(&mut v).insert("name".into(), json!(n));
    }
    let name = name_of(&v).to_string();
    let ns = if r.namespaced {
        namespace_of(&v).to_string()
    } else {
        String::new()
    };
    if r.namespaced {
        namespace_accepts_new(st, &ns, res, &name)?;
    }
    if res == idx::pods() {
        crate::admission::service_account(&st.store, &ns, &mut v)?;
    }
    init_metadata(res, &mut v);
    patch::record_update(None, &mut v, manager, &r.api_version(), "");
    let out = st
        .store
        .mutate(res, &ns, &name, |cur| {
            if cur.is_some() {
                return Err(ApiError::already_exists(r.group, r.plural, &name));
            }
            st.admission.admit(res, &mut v, None)?;
            Ok(Change::Put(v))
        })
        .await?;
    out.object()
        .cloned()
        .ok_or_else(|| ApiError::internal("create stored nothing"))
}

/// Changes an object as a controller: `change` edits a copy and returns whether to write.
/// `status` = true writes through the status subresource rules.
pub async fn update_internal(
    st: &ApiState,
    res: ResIdx,
    ns: &str,
    name: &str,
    manager: &str,
    status: bool,
    change: impl FnOnce(&mut Value) -> bool,
) -> ApiResult<Option<Arc<Obj>>> {
    let r = resources::get(res);
    let out = st
        .store
        .mutate(res, ns, name, |cur| {
            let Some(old) = cur else {
                return Err(ApiError::not_found(r.group, r.plural, name));
            };
            let mut new = old.clone();
            if !change(&mut new) {
                return Ok(Change::Keep);
            }
            finish_update(
                st,
                res,
                status.then_some("status"),
                &old,
                new,
                manager,
                true,
            )
        })
        .await?;
    Ok(out.object().cloned())
}
