//! ControllerRevisions, the template history of DaemonSets and StatefulSets
//! (`pkg/controller/history`): one per distinct pod template, named `<owner>-<hash>`, labelled
//! `controller-revision-hash`, holding the template as the strategic-merge patch
//! (`{"spec":{"template":{…,"$patch":"replace"}}}`) that `kubectl rollout undo` applies, and
//! numbered so that the current template has the highest revision.

use super::deployments::{normalized, template_hash};
use super::pods_of;
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::str_at;
use minikind_apiserver::resources::{ResIdx, idx};
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

pub const HASH_LABEL: &str = "controller-revision-hash";

/// The revision of the owner's current template.
pub struct Current {
    pub name: String,
    pub hash: String,
    pub revision: i64,
}

fn revision_of(r: &Value) -> i64 {
    r.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

/// Makes sure the owner's current template has a ControllerRevision with the highest number,
/// and deletes the oldest ones beyond `spec.revisionHistoryLimit` that no pod uses
/// (`in_use` holds the hashes pods carry).
pub async fn sync(
    st: &Arc<ApiState>,
    owner: &Value,
    owner_res: ResIdx,
    manager: &str,
    in_use: &[String],
) -> Result<Current, ApiError> {
    let ns = str_at(owner, "/metadata/namespace").unwrap_or_default();
    let owner_name = str_at(owner, "/metadata/name").unwrap_or_default();
    let uid = str_at(owner, "/metadata/uid").unwrap_or_default();
    let template = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    let hash = template_hash(&normalized(&template));
    let (all, _, _) = st
        .store
        .list(idx::controllerrevisions(), Some(ns), None, 0, |_| true);
    let mut mine: Vec<Value> = all
        .iter()
        .map(|r| r.value())
        .filter(|r| pods_of::controlled_by(r, uid))
        .collect();
    mine.sort_by_key(revision_of);
    let max = mine.last().map(revision_of).unwrap_or(0);
    let name = format!("{owner_name}-{hash}");
    let found = mine
        .iter()
        .find(|r| {
            r.pointer(&format!("/metadata/labels/{HASH_LABEL}"))
                .and_then(Value::as_str)
                == Some(hash.as_str())
        })
        .cloned();
    let (name, revision) = match found {
        Some(r) if revision_of(&r) == max => (
            str_at(&r, "/metadata/name").unwrap_or_default().to_string(),
            max,
        ),
        Some(r) => {
            // An older template came back (a rollback): it becomes the newest revision.
            let n = str_at(&r, "/metadata/name").unwrap_or_default().to_string();
            objects::update_internal(
                st,
                idx::controllerrevisions(),
                ns,
                &n,
                manager,
                false,
                |v| {
                    v["revision"] = json!(max + 1);
                    true
                },
            )
            .await?;
            (n, max + 1)
        }
        None => {
            let mut labels = template
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels[HASH_LABEL] = json!(hash);
            let mut patch_template = template.clone();
            patch_template["$patch"] = json!("replace");
            let cr = json!({
                "apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {
                    "name": name, "namespace": ns, "labels": labels,
                    "ownerReferences": [pods_of::controller_ref(owner, owner_res)],
                },
                "data": {"spec": {"template": patch_template}},
                "revision": max + 1,
            });
            objects::create_internal(st, idx::controllerrevisions(), cr, manager).await?;
            (name, max + 1)
        }
    };
    // History beyond the limit, oldest first, never one in use.
    let limit = owner
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
        .unwrap_or(10)
        .max(0) as usize;
    let old: Vec<&Value> = mine
        .iter()
        .filter(|r| {
            let h = r
                .pointer(&format!("/metadata/labels/{HASH_LABEL}"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let n = str_at(r, "/metadata/name").unwrap_or_default();
            h != hash && !in_use.iter().any(|u| u == h || u == n)
        })
        .collect();
    if old.len() > limit {
        for r in old.iter().take(old.len() - limit) {
            let n = str_at(r, "/metadata/name").unwrap_or_default();
            if let Err(e) =
                objects::delete_one(st, idx::controllerrevisions(), ns, n, None, None, None).await
                && e.code != 404
            {
                tracing::warn!(revision = %n, "cleaning up: {e}");
            }
        }
    }
    Ok(Current {
        name,
        hash,
        revision,
    })
}
