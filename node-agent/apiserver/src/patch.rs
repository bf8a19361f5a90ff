//! PATCH bodies: JSON patch, JSON merge patch, strategic merge patch (with the `$patch`,
//! `$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives kubectl's
//! client-side apply sends) and server-side apply with field managers.

use crate::errors::{ApiError, ApiResult};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The patch flavours, by request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies a non-apply patch to `doc`.
pub fn apply_patch(kind: PatchKind, doc: &mut Value, body: &[u8]) -> ApiResult<()> {
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(doc, &p.0).map_err(|e| {
                ApiError::invalid_patch(format!("the JSON patch could not be applied: {e}"))
            })
        }
        PatchKind::Merge => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON merge patch: {e}")))?;
            json_patch::merge(doc, &p);
            Ok(())
        }
        PatchKind::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::bad_request(format!("invalid strategic merge patch: {e}"))
            })?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            strategic_merge(doc, &p);
            Ok(())
        }
        PatchKind::Apply => Err(ApiError::internal("apply patches go through `apply`")),
    }
}

impl ApiError {
    /// A patch that parses but cannot be applied (e.g. a `test` op failing) is a 422.
    pub fn invalid_patch(msg: String) -> Self {
        let mut e = ApiError::bad_request(msg);
        e.code = 422;
        e.reason = "Invalid";
        e
    }
}

/// The key identifying elements of a list field, as the Go types' `patchMergeKey` tags say.
fn merge_key(field: &str, sample: Option<&Value>) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "readinessGates"
        | "resourceClaims" => Some("name"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "topologySpreadConstraints" => Some("topologyKey"),
        "ports" => {
            if sample.is_some_and(|s| s.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Primitive lists whose strategy is "merge" (union) rather than replace.
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

/// How strategic merge treats a list field (for the OpenAPI documents): the merge key of
/// object lists that merge, and the strategy (`merge`), or None for lists that are replaced.
pub fn list_strategy(
    field: &str,
    sample: Option<&Value>,
) -> Option<(Option<&'static str>, &'static str)> {
    if let Some(k) = merge_key(field, sample) {
        return Some((Some(k), "merge"));
    }
    merges_primitives(field).then_some((None, "merge"))
}

/// Strategic merge of `patch` into `doc`.
pub fn strategic_merge(doc: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut m = p.clone();
        m.remove("$patch");
        *doc = Value::Object(m);
        return;
    }
    if !doc.is_object() {
        *doc = json!({});
    }
    let d = doc.as_object_mut().expect("made an object");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: BTreeSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        d.retain(|k, _| keep.contains(k.as_str()));
    }
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) =
                (d.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            d.remove(k);
            continue;
        }
        match (d.get_mut(k), v) {
            (Some(cur @ Value::Object(_)), Value::Object(pm)) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    d.remove(k);
                } else {
                    strategic_merge(cur, v);
                }
            }
            (Some(Value::Array(cur)), Value::Array(items)) => {
                merge_list(k, cur, items);
            }
            _ => {
                let mut v = v.clone();
                strip_directives(&mut v);
                d.insert(k.clone(), v);
            }
        }
    }
}

fn merge_list(field: &str, cur: &mut Vec<Value>, items: &[Value]) {
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *cur = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect();
        return;
    }
    let sample = items.first().or(cur.first());
    if let Some(key) = merge_key(field, sample).filter(|_| sample.is_some_and(Value::is_object)) {
        for item in items {
            let id = item.get(key);
            let pos = cur.iter().position(|c| c.get(key) == id && id.is_some());
            let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
            match (pos, delete) {
                (Some(i), true) => {
                    cur.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => strategic_merge(&mut cur[i], item),
                (None, false) => {
                    let mut v = item.clone();
                    strip_directives(&mut v);
                    cur.push(v);
                }
            }
        }
    } else if merges_primitives(field) {
        for item in items {
            if !cur.contains(item) {
                cur.push(item.clone());
            }
        }
    } else {
        *cur = items.to_vec();
        for v in cur.iter_mut() {
            strip_directives(v);
        }
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for x in m.values_mut() {
                strip_directives(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Field ownership (managedFields) and server-side apply.

/// A set of leaf field paths, each a list of fieldsV1 keys (`f:spec`, `k:{"name":"web"}`, `v:"x"`).
pub type FieldSet = BTreeSet<Vec<String>>;

/// The leaf paths of an object (metadata bookkeeping fields excluded).
pub fn field_set(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(v, &mut Vec::new(), None, &mut out);
    out.retain(|p| {
        !matches!(
            p.get(1).map(String::as_str),
            Some(
                "f:resourceVersion"
                    | "f:uid"
                    | "f:creationTimestamp"
                    | "f:managedFields"
                    | "f:generation"
                    | "f:selfLink"
            )
        ) || p.first().map(String::as_str) != Some("f:metadata")
    });
    out.retain(|p| {
        !matches!(
            p.first().map(String::as_str),
            Some("f:apiVersion" | "f:kind")
        )
    });
    out
}

fn collect(v: &Value, path: &mut Vec<String>, field: Option<&str>, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(format!("f:{k}"));
                collect(x, path, Some(k), out);
                path.pop();
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let key = field.and_then(|f| merge_key(f, a.first()));
            match key {
                Some(key) if a.iter().all(|e| e.get(key).is_some()) => {
                    for e in a {
                        let mut id = Map::new();
                        id.insert(key.to_string(), e[key].clone());
                        path.push(format!("k:{}", Value::Object(id)));
                        // The element itself is owned, then its fields.
                        path.push(".".into());
                        out.insert(path.clone());
                        path.pop();
                        collect(e, path, None, out);
                        path.pop();
                    }
                }
                _ if field.is_some_and(merges_primitives) => {
                    for e in a {
                        path.push(format!("v:{e}"));
                        out.insert(path.clone());
                        path.pop();
                    }
                }
                _ => {
                    out.insert(path.clone());
                }
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Renders a field set in the `FieldsV1` tree form stored in `managedFields`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = cur
                .entry(seg.clone())
                .or_insert(json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// Parses a `FieldsV1` tree back into leaf paths.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, x) in m {
                    path.push(k.clone());
                    walk(x, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a leaf path, if present.
fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    let mut field: Option<&str> = None;
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get(f)?;
            field = Some(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let id: Map<String, Value> = serde_json::from_str(k).ok()?;
            let arr = cur.as_array()?;
            cur = arr
                .iter()
                .find(|e| id.iter().all(|(ik, iv)| e.get(ik) == Some(iv)))?;
            field = None;
        } else if let Some(x) = seg.strip_prefix("v:") {
            let want: Value = serde_json::from_str(x).ok()?;
            let arr = cur.as_array()?;
            cur = arr.iter().find(|e| **e == want)?;
        } else if seg == "." {
            return Some(cur);
        }
    }
    let _ = field;
    Some(cur)
}

/// Removes the value at a leaf path (list elements by key or value), pruning nothing else.
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if last == "." {
        // Removing ownership of a list element itself removes the element.
        if let Some((elem, list_path)) = parent.split_last()
            && let (Some(k), Some(Value::Array(arr))) =
                (elem.strip_prefix("k:"), value_at_mut(v, list_path))
            && let Ok(id) = serde_json::from_str::<Map<String, Value>>(k)
        {
            arr.retain(|e| !id.iter().all(|(ik, iv)| e.get(ik) == Some(iv)));
        }
        return;
    }
    match value_at_mut(v, parent) {
        Some(Value::Object(m)) => {
            if let Some(f) = last.strip_prefix("f:") {
                m.remove(f);
            }
        }
        Some(Value::Array(a)) => {
            if let Some(x) = last.strip_prefix("v:")
                && let Ok(want) = serde_json::from_str::<Value>(x)
            {
                a.retain(|e| *e != want);
            }
        }
        _ => {}
    }
}

fn value_at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            cur = cur.get_mut(f)?;
        } else if let Some(k) = seg.strip_prefix("k:") {
            let id: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array_mut()?
                .iter_mut()
                .find(|e| id.iter().all(|(ik, iv)| e.get(ik) == Some(iv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// One `managedFields` entry, parsed.
#[derive(Debug, Clone)]
struct Manager {
    entry: Map<String, Value>,
    fields: FieldSet,
}

fn managers(obj: &Value) -> Vec<Manager> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_object())
                .map(|e| Manager {
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                    entry: e.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn store_managers(obj: &mut Value, list: Vec<Manager>) {
    let entries: Vec<Value> = list
        .into_iter()
        .filter(|m| !m.fields.is_empty())
        .map(|mut m| {
            m.entry.insert("fieldsV1".into(), to_fields_v1(&m.fields));
            m.entry.insert("fieldsType".into(), json!("FieldsV1"));
            Value::Object(m.entry)
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn is_entry(m: &Manager, manager: &str, operation: &str, subresource: &str) -> bool {
    m.entry.get("manager").and_then(Value::as_str) == Some(manager)
        && m.entry.get("operation").and_then(Value::as_str) == Some(operation)
        && m.entry
            .get("subresource")
            .and_then(Value::as_str)
            .unwrap_or("")
            == subresource
}

fn entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    subresource: &str,
) -> Map<String, Value> {
    let mut e = Map::new();
    e.insert("manager".into(), json!(manager));
    e.insert("operation".into(), json!(operation));
    e.insert("apiVersion".into(), json!(api_version));
    e.insert("time".into(), json!(crate::meta::now_rfc3339()));
    if !subresource.is_empty() {
        e.insert("subresource".into(), json!(subresource));
    }
    e
}

/// Records an ordinary write (create, update, non-apply patch) by `manager`: it takes ownership
/// of every leaf it added or changed; other managers lose those leaves.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: &str,
) {
    let old_fields = old.map(field_set).unwrap_or_default();
    let new_fields = field_set(new);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| {
            !old_fields.contains(*p) || old.and_then(|o| value_at(o, p)) != value_at(new, p)
        })
        .cloned()
        .collect();
    let mut list = old.map(managers).unwrap_or_default();
    for m in &mut list {
        m.fields
            .retain(|p| new_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|m| is_entry(m, manager, "Update", subresource))
        {
            Some(m) => {
                m.fields.extend(changed);
                m.entry = entry(manager, "Update", api_version, subresource);
            }
            None => list.push(Manager {
                entry: entry(manager, "Update", api_version, subresource),
                fields: changed,
            }),
        }
    }
    store_managers(new, list);
}

/// Server-side apply of `applied` (a partial object) by `manager` onto `current` (None when
/// the object does not exist yet). Returns the new object, or a 409 Conflict listing the fields
/// other managers own with different values, unless `force`.
pub fn server_side_apply(
    current: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    subresource: &str,
) -> ApiResult<Value> {
    let mut applied_clean = applied.clone();
    if let Some(meta) = applied_clean
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    let applied_fields = field_set(&applied_clean);
    let Some(current) = current else {
        let mut obj = applied_clean;
        store_managers(
            &mut obj,
            vec![Manager {
                entry: entry(manager, "Apply", api_version, subresource),
                fields: applied_fields,
            }],
        );
        return Ok(obj);
    };
    let mut list = managers(current);
    // Conflicts: leaves another manager owns whose value this apply would change.
    let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &list {
        if is_entry(m, manager, "Apply", subresource) {
            continue;
        }
        let who = m
            .entry
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        for p in m.fields.intersection(&applied_fields) {
            if p.last().map(String::as_str) == Some(".") {
                continue;
            }
            if value_at(current, p) != value_at(&applied_clean, p) {
                conflicts
                    .entry(who.clone())
                    .or_default()
                    .push(display_path(p));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let n: usize = conflicts.values().map(Vec::len).sum();
        let mut lines = Vec::new();
        for (who, paths) in &conflicts {
            for p in paths {
                lines.push(format!("conflict with \"{who}\": {p}"));
            }
        }
        let msg = if n == 1 {
            format!("Apply failed with 1 conflict: {}", lines[0])
        } else {
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let mut e = ApiError::conflict_msg("", "", "", "");
        e.message = msg;
        e.details = Some(
            json!({"causes": conflicts.iter().flat_map(|(who, ps)| ps.iter().map(move |p| json!({
            "reason": "FieldManagerConflict",
            "message": format!("conflict with \"{who}\""),
            "field": p,
        }))).collect::<Vec<_>>()}),
        );
        return Err(e);
    }
    // Fields this manager applied before but no longer does, and nobody else owns, go away.
    let previous = list
        .iter()
        .find(|m| is_entry(m, manager, "Apply", subresource))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = list
        .iter()
        .filter(|m| !is_entry(m, manager, "Apply", subresource))
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut obj = current.clone();
    for p in previous.difference(&applied_fields) {
        if !others.contains(p) {
            remove_at(&mut obj, p);
        }
    }
    strategic_merge(&mut obj, &applied_clean);
    // Ownership moves to the applier for everything it applied.
    for m in &mut list {
        if !is_entry(m, manager, "Apply", subresource) {
            m.fields.retain(|p| !applied_fields.contains(p));
        }
    }
    match list
        .iter_mut()
        .find(|m| is_entry(m, manager, "Apply", subresource))
    {
        Some(m) => {
            m.fields = applied_fields;
            m.entry = entry(manager, "Apply", api_version, subresource);
        }
        None => list.push(Manager {
            entry: entry(manager, "Apply", api_version, subresource),
            fields: applied_fields,
        }),
    }
    store_managers(&mut obj, list);
    Ok(obj)
}

/// `.spec.template.spec.containers[name="web"].image`, as the real conflict messages print.
fn display_path(p: &[String]) -> String {
    let mut s = String::new();
    for seg in p {
        if let Some(f) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            if let Ok(id) = serde_json::from_str::<Map<String, Value>>(k) {
                let parts: Vec<String> = id.iter().map(|(a, b)| format!("{a}={b}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
        } else if let Some(v) = seg.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut doc =
            json!({"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}});
        let patch = json!({"spec":{"containers":[{"name":"b","image":"z"},{"name":"c","image":"w"}],
            "$setElementOrder/containers":[{"name":"a"},{"name":"b"},{"name":"c"}]}});
        strategic_merge(&mut doc, &patch);
        assert_eq!(
            doc,
            json!({"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"z"},{"name":"c","image":"w"}]}})
        );
        let del = json!({"spec":{"containers":[{"name":"a","$patch":"delete"}]}});
        strategic_merge(&mut doc, &del);
        assert_eq!(doc["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn strategic_null_deletes_and_retain_keys() {
        let mut doc = json!({"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
        let patch = json!({"metadata":{"labels":{"a":null}},"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
        strategic_merge(&mut doc, &patch);
        assert_eq!(
            doc,
            json!({"metadata":{"labels":{"b":"2"}},"spec":{"strategy":{"type":"Recreate"}}})
        );
    }

    #[test]
    fn delete_from_primitive_list() {
        let mut doc = json!({"metadata":{"finalizers":["a","b"]}});
        strategic_merge(
            &mut doc,
            &json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
        );
        assert_eq!(doc, json!({"metadata":{"finalizers":["b"]}}));
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({"metadata":{"labels":{"a":"1"}},"spec":{"containers":[{"name":"c","image":"i"}]}});
        let set = field_set(&v);
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        assert!(set.contains(&vec![
            "f:spec".to_string(),
            "f:containers".into(),
            r#"k:{"name":"c"}"#.into(),
            "f:image".into()
        ]));
    }

    #[test]
    fn apply_conflicts_force_and_removal() {
        let base = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1","b":"2"}});
        let obj = server_side_apply(None, &base, "m1", false, "v1", "").unwrap();
        // Another manager changing a field m1 owns conflicts.
        let other =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"9"}});
        let e = server_side_apply(Some(&obj), &other, "m2", false, "v1", "").unwrap_err();
        assert_eq!(e.reason, "Conflict");
        assert!(
            e.message.contains("conflict with \"m1\": .data.a"),
            "{}",
            e.message
        );
        let forced = server_side_apply(Some(&obj), &other, "m2", true, "v1", "").unwrap();
        assert_eq!(forced["data"]["a"], "9");
        // m1 applies again without b: b is removed; a now belongs to m2 and stays.
        let again = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{}});
        let out = server_side_apply(Some(&forced), &again, "m1", false, "v1", "").unwrap();
        assert_eq!(out["data"], json!({"a":"9"}));
    }
}
