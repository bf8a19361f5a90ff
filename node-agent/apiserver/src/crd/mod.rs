//! CustomResourceDefinitions (`apiextensions.k8s.io/v1`) and the custom resources they define.
//!
//! - [`registry`]: which custom resources are served, kept in step with the stored CRDs.
//! - [`schema`]: a version's structural schema applied to a custom object (pruning,
//!   defaulting, validation).
//! - here: the CRD's own admission (defaults, validation, accepted names and the
//!   `NamesAccepted`/`Established` conditions, which kube-apiserver's naming and establishing
//!   controllers set moments after the write and minikind sets with it), a custom object's
//!   admission, and the version an object is served at (conversion strategy `None`: only
//!   `apiVersion` changes between versions).
//!
//! Removing the custom objects of a deleted CRD (the `customresourcecleanup` finalizer) is a
//! controller's work, in `minikind-controllers`.

pub mod columns;
pub mod registry;
pub mod schema;

use crate::errors::{ApiError, ApiResult, FieldCause, invalid_value, not_supported, required};
use crate::meta::{self, check_dns_subdomain, check_dns1035_label};
use crate::resources::{self, RESOURCES, ResIdx};
use bytes::Bytes;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// The finalizer under which the CRD's custom objects are removed before the CRD goes
/// (`apiextensions.CustomResourceCleanupFinalizer`).
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Kubernetes' version order (apimachinery's `CompareKubeAwareVersionStrings`): GA before
/// beta before alpha, higher numbers first, then anything else alphabetically. `Less` = `a`
/// is preferred.
pub fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        let (level, minor_s) = if tail.is_empty() {
            (2, "")
        } else if let Some(m) = tail.strip_prefix("beta") {
            (1, m)
        } else if let Some(m) = tail.strip_prefix("alpha") {
            (0, m)
        } else {
            return None;
        };
        if level < 2 && (minor_s.is_empty() || !minor_s.chars().all(|c| c.is_ascii_digit())) {
            return None;
        }
        Some((major, level, minor_s.parse().unwrap_or(0)))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    meta::str_at(v, pointer).unwrap_or_default()
}

/// Defaults of `SetDefaults_CustomResourceDefinition(Spec)`.
fn default_definition(crd: &mut Value) {
    let kind = s(crd, "/spec/names/kind").to_string();
    let spec = crate::admission::obj_mut(crd, "spec");
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut)
        && !kind.is_empty()
    {
        crate::admission::default_str(names, "singular", &kind.to_lowercase());
        crate::admission::default_str(names, "listKind", &format!("{kind}List"));
    }
}

/// Validation of `ValidateCustomResourceDefinition(Update)` for the fields minikind serves by.
fn validate_definition(crd: &Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let name = meta::name_of(crd);
    if name != format!("{plural}.{group}") {
        causes.push(invalid_value(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        causes.push(required("spec.group"));
    } else if let Err(why) = check_dns_subdomain(group) {
        causes.push(invalid_value("spec.group", group, &why));
    } else if !group.contains('.') {
        causes.push(invalid_value(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    match s(crd, "/spec/scope") {
        "" => causes.push(required("spec.scope")),
        "Cluster" | "Namespaced" => {}
        other => causes.push(not_supported(
            "spec.scope",
            other,
            &["Cluster", "Namespaced"],
        )),
    }
    for (field, value) in [
        ("spec.names.plural", plural),
        ("spec.names.singular", s(crd, "/spec/names/singular")),
    ] {
        if value.is_empty() {
            causes.push(required(field));
        } else if let Err(why) = check_dns1035_label(value) {
            causes.push(invalid_value(field, value, &why));
        }
    }
    let kind = s(crd, "/spec/names/kind");
    if kind.is_empty() {
        causes.push(required("spec.names.kind"));
    }
    match s(crd, "/spec/conversion/strategy") {
        "None" => {}
        "Webhook" => causes.push(invalid_value(
            "spec.conversion.strategy",
            "Webhook",
            "conversion webhooks are not served by minikind; use None",
        )),
        other => causes.push(not_supported(
            "spec.conversion.strategy",
            other,
            &["None", "Webhook"],
        )),
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(required("spec.versions"));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: "spec.versions".into(),
                message: format!(
                    "Invalid value: {}: must have exactly one version marked as storage version",
                    serde_json::to_string(&versions).unwrap_or_default()
                ),
            });
        }
        if !versions
            .iter()
            .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        {
            causes.push(FieldCause {
                reason: "FieldValueInvalid",
                field: "spec.versions".into(),
                message: "Invalid value: \"\": must have at least one version marked as served"
                    .into(),
            });
        }
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let at = format!("spec.versions[{i}]");
        let vname = s(v, "/name");
        if vname.is_empty() {
            causes.push(required(format!("{at}.name")));
        } else if let Err(why) = check_dns1035_label(vname) {
            causes.push(invalid_value(format!("{at}.name"), vname, &why));
        } else if seen.contains(&vname) {
            causes.push(crate::errors::duplicate(format!("{at}.name"), vname));
        }
        seen.push(vname);
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => causes.push(FieldCause {
                reason: "FieldValueRequired",
                field: format!("{at}.schema.openAPIV3Schema"),
                message: "Required value: schemas are required".into(),
            }),
            Some(sch) => {
                schema::check_structural(sch, &format!("{at}.schema.openAPIV3Schema"), true, causes)
            }
        }
    }
    if let Some(old) = old {
        let (was, now) = (s(old, "/spec/scope"), s(crd, "/spec/scope"));
        if was != now {
            causes.push(invalid_value("spec.scope", now, "field is immutable"));
        }
        if s(old, "/spec/group") != group {
            causes.push(invalid_value("spec.group", group, "field is immutable"));
        }
    }
}

/// A name this CRD wants that another served kind in the same group already has.
fn name_conflict(crd: &Value) -> Option<(&'static str, String)> {
    let group = s(crd, "/spec/group");
    let name = meta::name_of(crd);
    let kind = s(crd, "/spec/names/kind");
    let short: Vec<&str> = crd
        .pointer("/spec/names/shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let others = RESOURCES
        .iter()
        .filter(|r| r.group == group)
        .map(|r| (String::new(), r))
        .chain(registry::served_in_group(group).into_iter().map(|i| {
            (
                registry::version(i).map(|v| v.crd).unwrap_or_default(),
                resources::get(i),
            )
        }));
    for (owner, r) in others {
        if owner == name {
            continue;
        }
        if r.kind == kind {
            return Some(("KindConflict", format!("{kind:?} is already in use")));
        }
        if let Some(x) = short
            .iter()
            .find(|x| r.short_names.contains(x) || r.plural == **x)
        {
            return Some(("ShortNamesConflict", format!("{x:?} is already in use")));
        }
    }
    None
}

/// Sets a condition, keeping its transition time when its status is unchanged.
fn set_condition(
    status: &mut serde_json::Map<String, Value>,
    ty: &str,
    st: &str,
    reason: &str,
    message: &str,
) {
    let conds = status.entry("conditions").or_insert(json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("just made an array");
    let old = list
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some(ty));
    let since = old
        .and_then(|i| {
            list[i]
                .get("status")
                .and_then(Value::as_str)
                .filter(|x| *x == st)
                .and(list[i].get("lastTransitionTime").cloned())
        })
        .unwrap_or_else(|| json!(meta::now_rfc3339()));
    let c = json!({"type": ty, "status": st, "lastTransitionTime": since, "reason": reason, "message": message});
    match old {
        Some(i) => list[i] = c,
        None => list.push(c),
    }
}

/// Sets `Terminating` on a CRD being deleted (the cleanup controller, before it removes the
/// custom objects).
pub fn mark_terminating(crd: &mut Value) -> bool {
    let before = crd.get("status").cloned();
    let status = crate::admission::obj_mut(crd, "status");
    set_condition(
        status,
        "Terminating",
        "True",
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
    );
    crd.get("status") != before.as_ref()
}

/// Admission of a CustomResourceDefinition write: defaults, validation, then the status the
/// naming and establishing controllers would give it.
pub fn admit_definition(crd: &mut Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    default_definition(crd);
    validate_definition(crd, old, causes);
    if !causes.is_empty() {
        return;
    }
    if old.is_none() {
        let m = meta::metadata_mut(crd);
        let fins = m.entry("finalizers").or_insert(json!([]));
        if let Some(a) = fins.as_array_mut()
            && !a.iter().any(|f| f == CLEANUP_FINALIZER)
        {
            a.push(json!(CLEANUP_FINALIZER));
        }
    }
    let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").cloned());
    let conflict = name_conflict(crd);
    let status = crate::admission::obj_mut(crd, "status");
    match &conflict {
        None => {
            status.insert("acceptedNames".into(), names);
            set_condition(
                status,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                status,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
        Some((reason, message)) => {
            status
                .entry("acceptedNames")
                .or_insert(json!({"plural": "", "kind": ""}));
            set_condition(status, "NamesAccepted", "False", reason, message);
            set_condition(
                status,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
    }
    let stored = status.entry("storedVersions").or_insert(json!([]));
    if let (Some(a), Some(v)) = (stored.as_array_mut(), storage)
        && !a.contains(&v)
    {
        a.push(v);
    }
}

/// Whether a stored CRD is established (its names accepted): only then are its resources served.
pub fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| s(c, "/type") == "Established" && s(c, "/status") == "True")
}

/// Keeps the registry in step with one stored CRD (called by the store for every write and
/// load of a CRD, under its lock).
pub fn on_stored(crd: &Value, removed: bool) {
    let name = meta::name_of(crd);
    if removed || !established(crd) {
        registry::unregister(name);
    } else {
        registry::register(crd);
    }
}

/// The schema of a custom resource version, if `res` is one.
fn schema_of(res: ResIdx) -> Option<std::sync::Arc<Value>> {
    registry::version(res).and_then(|v| v.schema)
}

/// Unknown fields of a custom object (for `fieldValidation=Strict`), without changing it.
pub fn unknown_fields(res: ResIdx, obj: &Value) -> Vec<String> {
    match schema_of(res) {
        Some(sch) => schema::prune(&sch, &mut obj.clone()),
        None => Vec::new(),
    }
}

/// Admission of a custom object: pruned, defaulted and validated by its version's schema.
pub fn admit_custom(res: ResIdx, obj: &mut Value, causes: &mut Vec<FieldCause>) {
    let Some(sch) = schema_of(res) else {
        return;
    };
    schema::prune(&sch, obj);
    schema::default(&sch, obj);
    schema::validate(&sch, obj, "", causes);
    // Converted to the storage version, the object is pruned by that version's schema too,
    // as the storage codec's schema coercion does, and gets its defaults (kube-apiserver
    // fills those when reading from storage; clients see the same object).
    let stored = storage_version(res);
    if stored != res
        && let Some(storage_schema) = schema_of(stored)
    {
        schema::prune(&storage_schema, obj);
        schema::default(&storage_schema, obj);
    }
}

/// Refuses a new custom object while its CRD is being deleted, as the real handler does.
pub fn check_create_allowed(st: &crate::store::Store, res: ResIdx) -> ApiResult<()> {
    let Some(v) = registry::version(res) else {
        return Ok(());
    };
    let terminating = st.get(resources::idx::crds(), "", &v.crd).is_some_and(|c| {
        c.value()
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|x| !x.is_null())
    });
    if terminating {
        return Err(ApiError::method_not_allowed(
            "create not allowed while custom resource definition is terminating",
        ));
    }
    Ok(())
}

/// Sets `apiVersion` to the one `res` serves (custom objects are stored at one version and
/// served at each; conversion `None` changes nothing else).
pub fn set_version(res: ResIdx, v: &mut Value) {
    if res >= RESOURCES.len()
        && let Some(m) = v.as_object_mut()
    {
        m.insert(
            "apiVersion".into(),
            json!(resources::get(res).api_version()),
        );
    }
}

/// The stored bytes of an object as served at `res`'s version.
pub fn served_json(res: ResIdx, obj: &crate::store::Obj) -> Bytes {
    if res < RESOURCES.len() {
        return obj.json.clone();
    }
    let want = format!("\"apiVersion\":\"{}\"", resources::get(res).api_version());
    if obj.json_contains(want.as_bytes()) {
        return obj.json.clone();
    }
    let mut v = obj.value();
    set_version(res, &mut v);
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

/// A custom resource's `subresources.scale` paths as JSON pointers: (spec replicas, status
/// replicas, label selector).
pub fn scale_paths(res: ResIdx) -> Option<(String, String, Option<String>)> {
    let scale = registry::version(res)?.scale?;
    let pointer = |k: &str| {
        scale
            .get(k)
            .and_then(Value::as_str)
            .map(|p| p.trim_start_matches('.').replace('.', "/"))
            .map(|p| format!("/{p}"))
    };
    Some((
        pointer("specReplicasPath")?,
        pointer("statusReplicasPath")?,
        pointer("labelSelectorPath"),
    ))
}

/// The version objects of `res` are written at: its resource's storage version.
pub fn storage_version(res: ResIdx) -> ResIdx {
    if res < RESOURCES.len() {
        return res;
    }
    registry::storage_version(res).unwrap_or(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_as_kubernetes_prefers_them() {
        let mut v = vec![
            "v1alpha1", "foo", "v2beta1", "v1", "v1beta2", "v2", "v1beta1", "bar",
        ];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(
            v,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "bar", "foo"
            ]
        );
    }
}
