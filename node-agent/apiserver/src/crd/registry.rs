//! The custom resources being served: one entry per (group, version, plural) that a stored
//! CustomResourceDefinition declares, indexed behind the built-in table
//! ([`crate::resources::RESOURCES`]) so a custom resource is a [`ResIdx`] like any other.
//!
//! The registry follows the stored CRDs: the store calls [`register`] for every CRD it writes
//! or loads and [`unregister`] when one is removed, under its lock, so what is served never
//! differs from what is stored. Entries are never removed, only marked not served: a
//! [`ResIdx`] held by a watch or a controller stays valid, and a CRD made again under the same
//! name gets its old indices back. It is process-wide, as there is one API server per process.

use crate::resources::{RESOURCES, ResIdx, Resource};
use serde_json::Value;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One version of a custom resource.
#[derive(Clone, Debug)]
pub struct Version {
    /// Names, scope and subresources as discovery shows them (leaked once per change of these:
    /// the resource table hands out `&'static` entries).
    pub res: &'static Resource,
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// The index every version of this resource is stored under (the first version seen).
    pub slot: ResIdx,
    pub served: bool,
    /// Whether this is the CRD's storage version.
    pub storage: bool,
    /// `schema.openAPIV3Schema` of this version.
    pub schema: Option<Arc<Value>>,
    /// `additionalPrinterColumns` of this version.
    pub columns: Arc<Vec<Value>>,
    /// `subresources.scale` of this version, if enabled.
    pub scale: Option<Arc<Value>>,
}

static REGISTRY: RwLock<Vec<Version>> = RwLock::new(Vec::new());

fn read() -> RwLockReadGuard<'static, Vec<Version>> {
    // Every change is a whole-entry replacement, so a poisoned lock holds consistent entries.
    REGISTRY.read().unwrap_or_else(|p| p.into_inner())
}

fn write() -> RwLockWriteGuard<'static, Vec<Version>> {
    REGISTRY.write().unwrap_or_else(|p| p.into_inner())
}

fn base() -> usize {
    RESOURCES.len()
}

fn leak_str(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_strs(v: &[String]) -> &'static [&'static str] {
    Box::leak(
        v.iter()
            .map(|s| leak_str(s))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    )
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The resource of a custom index. Panics on an index never handed out, as indexing the
/// built-in table would.
pub fn resource(idx: ResIdx) -> &'static Resource {
    let reg = read();
    match idx.checked_sub(base()).and_then(|i| reg.get(i)) {
        Some(v) => v.res,
        None => panic!("resource index {idx} was never registered"),
    }
}

/// The whole entry of a custom index (None for built-in kinds).
pub fn version(idx: ResIdx) -> Option<Version> {
    let i = idx.checked_sub(base())?;
    read().get(i).cloned()
}

pub fn slot_of(idx: ResIdx) -> ResIdx {
    version(idx).map_or(idx, |v| v.slot)
}

/// The served version that is the storage version of `idx`'s resource (itself when it is).
pub fn storage_version(idx: ResIdx) -> Option<ResIdx> {
    let v = version(idx)?;
    let reg = read();
    reg.iter()
        .position(|e| e.slot == v.slot && e.storage && e.served)
        .or_else(|| reg.iter().position(|e| e.slot == v.slot && e.storage))
        .map(|i| i + base())
}

pub fn by_path(group: &str, version: &str, plural: &str) -> Option<ResIdx> {
    read()
        .iter()
        .position(|v| {
            v.served && v.res.group == group && v.res.version == version && v.res.plural == plural
        })
        .map(|i| i + base())
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<ResIdx> {
    read()
        .iter()
        .position(|v| v.served && v.res.kind == kind && v.res.api_version() == api_version)
        .map(|i| i + base())
}

/// The storage slot of a custom resource by its storage identifier (`<group>/<plural>`).
pub fn by_id(id: &str) -> Option<ResIdx> {
    read().iter().find(|v| v.res.id() == id).map(|v| v.slot)
}

/// Every storage slot ever registered.
pub fn slots() -> Vec<ResIdx> {
    read()
        .iter()
        .enumerate()
        .filter(|(i, v)| v.slot == i + base())
        .map(|(_, v)| v.slot)
        .collect()
}

/// The served custom versions of one group version.
pub fn served_in(group: &str, version: &str) -> Vec<ResIdx> {
    read()
        .iter()
        .enumerate()
        .filter(|(_, v)| v.served && v.res.group == group && v.res.version == version)
        .map(|(i, _)| i + base())
        .collect()
}

/// The groups with served custom resources, each with its versions in preference order.
pub fn groups() -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for v in read().iter().filter(|v| v.served) {
        let (g, ver) = (v.res.group.to_string(), v.res.version.to_string());
        match out.iter_mut().find(|(x, _)| *x == g) {
            Some((_, vs)) if !vs.contains(&ver) => vs.push(ver),
            Some(_) => {}
            None => out.push((g, vec![ver])),
        }
    }
    for (_, vs) in &mut out {
        vs.sort_by(|a, b| super::version_priority(a, b));
    }
    out
}

/// The custom versions a CRD (by name) currently serves.
pub fn of_crd(crd: &str) -> Vec<ResIdx> {
    read()
        .iter()
        .enumerate()
        .filter(|(_, v)| v.crd == crd)
        .map(|(i, _)| i + base())
        .collect()
}

/// Makes the registry serve what `crd` (a stored, admitted CustomResourceDefinition) declares:
/// each served version becomes (or stays) an entry, versions it no longer lists stop being
/// served.
pub fn register(crd: &Value) {
    let name = crate::meta::name_of(crd).to_string();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let names = spec.get("names").cloned().unwrap_or(Value::Null);
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let group = s(&spec, "group");
    let plural = s(&names, "plural");
    let kind = s(&names, "kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return;
    }
    let singular = match s(&names, "singular") {
        x if x.is_empty() => kind.to_lowercase(),
        x => x,
    };
    let namespaced = s(&spec, "scope") != "Cluster";
    let short_names = strings(names.get("shortNames"));
    let categories = strings(names.get("categories"));
    let versions: Vec<Value> = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut reg = write();
    let mut slot = reg
        .iter()
        .position(|v| v.res.group == group && v.res.plural == plural)
        .map(|i| i + base());
    let mut seen = Vec::new();
    for ver in &versions {
        let vname = s(ver, "name");
        if vname.is_empty() {
            continue;
        }
        let subs = ver.get("subresources");
        let mut subresources = Vec::new();
        if subs.and_then(|x| x.get("status")).is_some() {
            subresources.push("status".to_string());
        }
        let scale = subs.and_then(|x| x.get("scale")).cloned();
        if scale.is_some() {
            subresources.push("scale".to_string());
        }
        let selectable: Vec<String> = ver
            .get("selectableFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
            .map(|p| p.trim_start_matches('.').to_string())
            .collect();
        let pos = reg
            .iter()
            .position(|v| v.res.group == group && v.res.version == vname && v.res.plural == plural);
        let fits = |r: &Resource| {
            r.group == group
                && r.version == vname
                && r.plural == plural
                && r.singular == singular
                && r.kind == kind
                && r.namespaced == namespaced
                && r.short_names
                    .iter()
                    .copied()
                    .eq(short_names.iter().map(String::as_str))
                && r.categories
                    .iter()
                    .copied()
                    .eq(categories.iter().map(String::as_str))
                && r.subresources
                    .iter()
                    .copied()
                    .eq(subresources.iter().map(String::as_str))
                && r.selectable_fields
                    .iter()
                    .copied()
                    .eq(selectable.iter().map(String::as_str))
        };
        let res: &'static Resource = match pos.map(|i| reg[i].res) {
            Some(r) if fits(r) => r,
            _ => Box::leak(Box::new(Resource {
                group: leak_str(&group),
                version: leak_str(&vname),
                plural: leak_str(&plural),
                singular: leak_str(&singular),
                kind: leak_str(&kind),
                namespaced,
                short_names: leak_strs(&short_names),
                categories: leak_strs(&categories),
                subresources: leak_strs(&subresources),
                selectable_fields: leak_strs(&selectable),
            })),
        };
        let entry = Version {
            res,
            crd: name.clone(),
            slot: 0,
            served: ver.get("served").and_then(Value::as_bool).unwrap_or(false),
            storage: ver.get("storage").and_then(Value::as_bool).unwrap_or(false),
            schema: ver
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .map(Arc::new),
            columns: Arc::new(
                ver.get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            scale: scale.map(Arc::new),
        };
        let i = match pos {
            Some(i) => {
                reg[i] = Version {
                    slot: reg[i].slot,
                    ..entry
                };
                i
            }
            None => {
                let i = reg.len();
                let first = *slot.get_or_insert(i + base());
                reg.push(Version {
                    slot: first,
                    ..entry
                });
                i
            }
        };
        seen.push(i);
    }
    for (i, v) in reg.iter_mut().enumerate() {
        if v.crd == name && !seen.contains(&i) {
            v.served = false;
            v.storage = false;
        }
    }
}

/// Stops serving every version of the CRD `name` (it was removed).
pub fn unregister(name: &str) {
    for v in write().iter_mut().filter(|v| v.crd == name) {
        v.served = false;
        v.storage = false;
    }
}

/// The served custom versions in `group`.
pub fn served_in_group(group: &str) -> Vec<ResIdx> {
    read()
        .iter()
        .enumerate()
        .filter(|(_, v)| v.served && v.res.group == group)
        .map(|(i, _)| i + base())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(versions: &[(&str, bool, bool)]) -> Value {
        json!({"metadata": {"name": "things.reg.minikind.dev"}, "spec": {
            "group": "reg.minikind.dev", "scope": "Cluster",
            "names": {"plural": "things", "kind": "Thing", "shortNames": ["th"]},
            "versions": versions.iter().map(|(n, served, storage)| json!({
                "name": n, "served": served, "storage": storage,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object"}},
            })).collect::<Vec<_>>(),
        }})
    }

    #[test]
    fn versions_share_one_slot_and_keep_their_indices() {
        register(&crd(&[("v1beta1", true, false), ("v1", true, true)]));
        let beta = by_path("reg.minikind.dev", "v1beta1", "things").unwrap();
        let ga = by_path("reg.minikind.dev", "v1", "things").unwrap();
        assert_ne!(beta, ga);
        assert_eq!(slot_of(beta), slot_of(ga));
        assert_eq!(storage_version(beta), Some(ga));
        assert_eq!(by_id("reg.minikind.dev/things"), Some(slot_of(ga)));
        let r = resource(ga);
        assert_eq!(
            (r.kind, r.singular, r.namespaced),
            ("Thing", "thing", false)
        );
        assert_eq!(
            (r.short_names, r.subresources),
            (&["th"][..], &["status"][..])
        );
        assert_eq!(
            groups(),
            [(
                "reg.minikind.dev".to_string(),
                vec!["v1".to_string(), "v1beta1".to_string()]
            )]
        );
        // A version no longer served disappears from routing, the other stays.
        register(&crd(&[("v1beta1", false, false), ("v1", true, true)]));
        assert_eq!(by_path("reg.minikind.dev", "v1beta1", "things"), None);
        assert_eq!(by_path("reg.minikind.dev", "v1", "things"), Some(ga));
        // Removed, then made again: the same indices come back.
        unregister("things.reg.minikind.dev");
        assert_eq!(by_path("reg.minikind.dev", "v1", "things"), None);
        assert!(groups().is_empty());
        register(&crd(&[("v1beta1", true, false), ("v1", true, true)]));
        assert_eq!(by_path("reg.minikind.dev", "v1beta1", "things"), Some(beta));
        assert_eq!(by_path("reg.minikind.dev", "v1", "things"), Some(ga));
    }
}
