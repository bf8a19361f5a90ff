//! The Deployment controller (kube-controller-manager's `pkg/controller/deployment`): a
//! Deployment owns ReplicaSets, one per pod template, named `<deployment>-<pod-template-hash>`
//! and carrying the `pod-template-hash` label in its selector and template. The ReplicaSet
//! whose template is the Deployment's is the new one; the others are old.
//!
//! - RollingUpdate scales the new ReplicaSet up within `replicas + maxSurge` and the old ones
//!   down while `replicas - maxUnavailable` pods stay available (unhealthy old pods first).
//! - Recreate scales every old ReplicaSet to 0, waits until their pods are gone, then scales
//!   the new one up.
//! - A paused Deployment is only scaled; no new ReplicaSet is made.
//! - Revisions: the new ReplicaSet gets `deployment.kubernetes.io/revision` one above the
//!   highest old one (a rollback makes an old template the newest revision again), the
//!   Deployment carries the same annotation, and old ReplicaSets scaled to 0 beyond
//!   `revisionHistoryLimit` are deleted, lowest revision first. `kubectl rollout
//!   history/undo/pause/resume/status` read and write exactly these fields.
//! - Scaling a Deployment mid-rollout moves the difference to the newest ReplicaSet when
//!   growing and takes it from the oldest first when shrinking (upstream spreads it
//!   proportionally to each ReplicaSet's size; the end state is the same).

use super::pods_of::{self, condition};
use super::{Key, Reconciler};
use futures::future::BoxFuture;
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::{self, str_at};
use minikind_apiserver::resources::idx;
use minikind_apiserver::selectors::Selector;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Map, Value, json};
use std::sync::Arc;

const MANAGER: &str = "deployment-controller";
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations never copied to its ReplicaSets (`annotationsToSkip`).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub struct Deployments;

/// The pod-template hash: stable for a given template, 10 characters from the safe alphabet
/// (the role of upstream's `ComputeHash` + `SafeEncodeString`).
pub fn template_hash(template: &Value) -> String {
    let s = template.to_string();
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|_| {
            let c = ALPHA[(h % ALPHA.len() as u64) as usize] as char;
            h /= ALPHA.len() as u64;
            c
        })
        .collect()
}

/// `25%` of n, rounded down (maxUnavailable) or up (maxSurge); integers as they are.
fn scaled(v: Option<&Value>, n: i64, up: bool) -> i64 {
    match v {
        Some(Value::Number(x)) => x.as_i64().unwrap_or(0),
        Some(Value::String(s)) if s.ends_with('%') => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(25);
            if up {
                (n * pct + 99) / 100
            } else {
                n * pct / 100
            }
        }
        _ => {
            if up {
                (n * 25 + 99) / 100
            } else {
                n * 25 / 100
            }
        }
    }
}

/// maxSurge (rounded up) and maxUnavailable (rounded down); Recreate has neither. Both 0 is
/// refused by validation; the controller then uses maxUnavailable 1, as `ResolveFenceposts`.
fn rolling_bounds(d: &Value, want: i64) -> (i64, i64) {
    if str_at(d, "/spec/strategy/type") == Some("Recreate") {
        return (0, 0);
    }
    let surge = scaled(
        d.pointer("/spec/strategy/rollingUpdate/maxSurge"),
        want,
        true,
    );
    let unavailable = scaled(
        d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
        want,
        false,
    );
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// A template as a typed client sees it: without nulls, empty strings, empty lists and empty
/// objects. A template read back from a ReplicaSet and sent again (`kubectl rollout undo`)
/// loses its empty fields, and must still be recognised as the same template (upstream
/// compares Go structs, where absent and empty are the same).
pub fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (k.clone(), normalized(x)))
                .filter(|(_, x)| !is_empty(x))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        x => x.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// A template without the `pod-template-hash` label (`EqualIgnoreHash`).
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
        if l.is_empty()
            && let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut)
        {
            m.remove("labels");
        }
    }
    t
}

pub fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn spec_replicas(rs: &Value) -> i64 {
    rs.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn status_int(v: &Value, k: &str) -> i64 {
    v.pointer(&format!("/status/{k}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn name_of(v: &Value) -> String {
    str_at(v, "/metadata/name").unwrap_or_default().to_string()
}

impl Reconciler for Deployments {
    fn keys_for(&mut self, st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::deployments() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::replicasets() {
            pods_of::controller_key(&o.value(), "Deployment")
                .into_iter()
                .collect()
        } else if o.res == idx::pods() && ev.ty == minikind_apiserver::store::EventType::Deleted {
            // Recreate waits for the old pods to be gone.
            let v = o.value();
            pods_of::controller_key(&v, "ReplicaSet")
                .and_then(|(ns, rs)| {
                    let rs = st.store.get(idx::replicasets(), &ns, &rs)?;
                    pods_of::controller_key(&rs.value(), "Deployment")
                })
                .into_iter()
                .collect()
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::deployments())
    }

    fn concurrency(&self) -> usize {
        8
    }

    fn reconcile_owned(&mut self, st: &Arc<ApiState>, key: Key) -> Option<BoxFuture<'static, ()>> {
        let st = st.clone();
        Some(Box::pin(async move {
            crate::log_failure("deployment", &key, reconcile(&st, &key.0, &key.1).await);
        }))
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("deployment", &key, reconcile(st, &key.0, &key.1).await);
    }
}

/// Sets a ReplicaSet's replicas (and the annotations that record for which Deployment size).
async fn scale_rs(
    st: &ApiState,
    ns: &str,
    rs: &Value,
    to: i64,
    d: &Value,
) -> Result<Value, ApiError> {
    let want = pods_of::replicas(d);
    let (surge, _) = rolling_bounds(d, want);
    let out = objects::update_internal(
        st,
        idx::replicasets(),
        ns,
        &name_of(rs),
        MANAGER,
        false,
        |r| {
            let a = meta::metadata_mut(r)
                .entry("annotations")
                .or_insert(json!({}));
            let mut changed = false;
            if let Some(a) = a.as_object_mut() {
                for (k, v) in [(DESIRED_REPLICAS, want), (MAX_REPLICAS, want + surge)] {
                    if a.get(k).and_then(Value::as_str) != Some(v.to_string().as_str()) {
                        a.insert(k.into(), json!(v.to_string()));
                        changed = true;
                    }
                }
            }
            if spec_replicas(r) != to {
                r["spec"]["replicas"] = json!(to);
                changed = true;
            }
            changed
        },
    )
    .await?;
    Ok(out.map(|o| o.value()).unwrap_or_else(|| rs.clone()))
}

/// The annotations a new ReplicaSet carries: the Deployment's (minus the skipped ones), its
/// revision, and the sizes.
fn rs_annotations(d: &Value, rev: i64, want: i64, surge: i64) -> Map<String, Value> {
    let mut a: Map<String, Value> = d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    a.retain(|k, _| !NOT_COPIED.contains(&k.as_str()));
    a.insert(REVISION.into(), json!(rev.to_string()));
    a.insert(DESIRED_REPLICAS.into(), json!(want.to_string()));
    a.insert(MAX_REPLICAS.into(), json!((want + surge).to_string()));
    a
}

async fn create_new_rs(
    st: &ApiState,
    ns: &str,
    d: &Value,
    hash: &str,
    rev: i64,
    replicas: i64,
) -> Result<Value, ApiError> {
    let want = pods_of::replicas(d);
    let (surge, _) = rolling_bounds(d, want);
    let mut template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    meta::metadata_mut(&mut template)
        .entry("labels")
        .or_insert(json!({}))[HASH_LABEL] = json!(hash);
    let mut selector = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
    if let Some(s) = selector.as_object_mut() {
        s.entry("matchLabels").or_insert(json!({}))[HASH_LABEL] = json!(hash);
    }
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", name_of(d)),
            "namespace": ns,
            "labels": template.pointer("/metadata/labels").cloned().unwrap_or(json!({})),
            "annotations": rs_annotations(d, rev, want, surge),
            "ownerReferences": [pods_of::controller_ref(d, idx::deployments())],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": pods_of::min_ready_seconds(d),
            "selector": selector,
            "template": template,
        },
    });
    Ok(
        objects::create_internal(st, idx::replicasets(), rs, MANAGER)
            .await?
            .value(),
    )
}

/// Brings an existing new ReplicaSet's annotations up to date: the Deployment's annotations
/// and, when an older template came back, the next revision (the one it had goes to
/// `revision-history`).
async fn refresh_new_rs(
    st: &ApiState,
    ns: &str,
    d: &Value,
    rs: &Value,
    rev: i64,
) -> Result<Value, ApiError> {
    let want = pods_of::replicas(d);
    let (surge, _) = rolling_bounds(d, want);
    let old_rev = revision(rs);
    let mut wanted = rs_annotations(d, rev.max(old_rev), want, surge);
    // Sizes follow the scaling, not the template: keep them.
    for k in [DESIRED_REPLICAS, MAX_REPLICAS] {
        match rs.pointer("/metadata/annotations").and_then(|a| a.get(k)) {
            Some(v) => {
                wanted.insert(k.into(), v.clone());
            }
            None => {
                wanted.remove(k);
            }
        }
    }
    let old_history = rs
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_HISTORY))
        .and_then(Value::as_str)
        .map(String::from);
    if rev > old_rev && old_rev > 0 {
        let h = match &old_history {
            Some(h) if !h.is_empty() => format!("{h},{old_rev}"),
            _ => old_rev.to_string(),
        };
        wanted.insert(REVISION_HISTORY.into(), json!(h));
    } else if let Some(h) = old_history {
        wanted.insert(REVISION_HISTORY.into(), json!(h));
    }
    let out = objects::update_internal(
        st,
        idx::replicasets(),
        ns,
        &name_of(rs),
        MANAGER,
        false,
        |r| {
            let m = meta::metadata_mut(r);
            let cur = m
                .get("annotations")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut merged = cur.clone();
            // Annotations a user removed from the Deployment stay on the ReplicaSet (upstream only
            // adds and overwrites).
            for (k, v) in &wanted {
                merged.insert(k.clone(), v.clone());
            }
            if merged == cur {
                return false;
            }
            m.insert("annotations".into(), Value::Object(merged));
            true
        },
    )
    .await?;
    Ok(out.map(|o| o.value()).unwrap_or_else(|| rs.clone()))
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(d) = st.store.get(idx::deployments(), ns, name) else {
        return Ok(());
    };
    let d = d.value();
    if pods_of::terminating(&d) {
        return Ok(());
    }
    let uid = str_at(&d, "/metadata/uid").unwrap_or_default().to_string();
    let want = pods_of::replicas(&d);
    let selector = Selector::from_label_selector(d.pointer("/spec/selector"))?;
    let (all, _, _) = st
        .store
        .list(idx::replicasets(), Some(ns), None, 0, |_| true);
    let mut rss: Vec<Value> = all
        .iter()
        .map(|r| r.value())
        .filter(|r| pods_of::controlled_by(r, &uid))
        .collect();
    rss.extend(
        pods_of::adopt_orphans(
            st,
            idx::replicasets(),
            ns,
            &selector,
            &d,
            idx::deployments(),
            MANAGER,
        )
        .await?,
    );
    rss.sort_by_key(|r| {
        (
            str_at(r, "/metadata/creationTimestamp")
                .unwrap_or_default()
                .to_string(),
            name_of(r),
        )
    });
    let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let wanted = normalized(&template);
    let new_pos = rss.iter().position(|r| {
        r.pointer("/spec/template")
            .map(|t| normalized(&without_hash(t)))
            .as_ref()
            == Some(&wanted)
    });
    let mut new_rs = new_pos.map(|i| rss.remove(i));
    let mut old = rss;
    let max_old_rev = old.iter().map(revision).max().unwrap_or(0);
    let paused = d.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    let recreate = str_at(&d, "/spec/strategy/type") == Some("Recreate");
    let (surge, max_unavailable) = rolling_bounds(&d, want);
    let mut created_new = false;

    if let Some(rs) = &new_rs {
        new_rs = Some(refresh_new_rs(st, ns, &d, rs, max_old_rev + 1).await?);
    } else if !(paused || recreate && old_pods_remain(st, ns, &old)) {
        // Rolling: as many as the surge allows now; Recreate: all of them (the old are gone).
        let start = if recreate {
            want
        } else {
            let current: i64 = old.iter().map(spec_replicas).sum();
            (want + surge - current).clamp(0, want)
        };
        let hash = template_hash(&wanted);
        new_rs = Some(create_new_rs(st, ns, &d, &hash, max_old_rev + 1, start).await?);
        created_new = true;
    }
    let new_rev = new_rs.as_ref().map(revision).unwrap_or(max_old_rev);
    // The Deployment carries its newest revision.
    if new_rev > 0
        && d.pointer("/metadata/annotations")
            .and_then(|a| a.get(REVISION))
            .and_then(Value::as_str)
            != Some(new_rev.to_string().as_str())
    {
        objects::update_internal(st, idx::deployments(), ns, name, MANAGER, false, |d| {
            meta::metadata_mut(d)
                .entry("annotations")
                .or_insert(json!({}))[REVISION] = json!(new_rev.to_string());
            true
        })
        .await?;
    }

    if paused || is_scaling_event(&d, new_rs.as_ref(), &old) {
        scale(st, ns, &d, &mut new_rs, &mut old, surge).await?;
    } else if recreate {
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|r| spec_replicas(r) > 0) {
            *rs = scale_rs(st, ns, rs, 0, &d).await?;
            scaled_down = true;
        }
        if !scaled_down
            && !old_pods_remain(st, ns, &old)
            && let Some(rs) = new_rs.as_mut()
            && spec_replicas(rs) != want
        {
            *rs = scale_rs(st, ns, rs, want, &d).await?;
        }
    } else {
        rolling(st, ns, &d, &mut new_rs, &mut old, surge, max_unavailable).await?;
    }
    let complete = new_rs
        .as_ref()
        .is_some_and(|rs| spec_replicas(rs) == want && status_int(rs, "availableReplicas") == want)
        && old
            .iter()
            .all(|r| spec_replicas(r) == 0 && status_int(r, "replicas") == 0);
    if complete || paused {
        cleanup(st, ns, &d, &old).await;
    }
    status(
        st,
        &d,
        new_rs.as_ref(),
        &old,
        max_unavailable,
        paused,
        created_new,
    )
    .await
}

/// Whether a pod of an old ReplicaSet is still there (Recreate's `oldPodsRunning`; finished
/// pods do not count).
fn old_pods_remain(st: &ApiState, ns: &str, old: &[Value]) -> bool {
    old.iter().any(|rs| {
        status_int(rs, "replicas") > 0
            || pods_of::owned_pods(st, ns, str_at(rs, "/metadata/uid").unwrap_or_default())
                .iter()
                .any(|p| !matches!(pods_of::phase(p), "Succeeded" | "Failed"))
    })
}

/// A changed `spec.replicas`: some active ReplicaSet was sized for another Deployment size.
fn is_scaling_event(d: &Value, new_rs: Option<&Value>, old: &[Value]) -> bool {
    let want = pods_of::replicas(d).to_string();
    new_rs
        .into_iter()
        .chain(old.iter())
        .filter(|r| spec_replicas(r) > 0)
        .any(|r| {
            r.pointer("/metadata/annotations")
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .and_then(Value::as_str)
                .is_some_and(|x| x != want)
        })
}

/// `scale`: the Deployment's size changed (or it is paused).
async fn scale(
    st: &ApiState,
    ns: &str,
    d: &Value,
    new_rs: &mut Option<Value>,
    old: &mut [Value],
    surge: i64,
) -> Result<(), ApiError> {
    let want = pods_of::replicas(d);
    let active: Vec<usize> = old
        .iter()
        .enumerate()
        .filter(|(_, r)| spec_replicas(r) > 0)
        .map(|(i, _)| i)
        .collect();
    let new_active = new_rs.as_ref().is_some_and(|r| spec_replicas(r) > 0);
    // One active ReplicaSet (or none: the newest) takes the whole size.
    if active.len() + usize::from(new_active) <= 1 {
        if let Some(i) = active.first() {
            old[*i] = scale_rs(st, ns, &old[*i], want, d).await?;
        } else if let Some(rs) = new_rs.as_mut() {
            *rs = scale_rs(st, ns, rs, want, d).await?;
        } else if let Some(last) = old.last_mut() {
            *last = scale_rs(st, ns, last, want, d).await?;
        }
        return Ok(());
    }
    // Saturated new ReplicaSet: the old ones go.
    if let Some(rs) = new_rs.as_ref()
        && spec_replicas(rs) == want
        && status_int(rs, "availableReplicas") == want
    {
        for rs in old.iter_mut().filter(|r| spec_replicas(r) > 0) {
            *rs = scale_rs(st, ns, rs, 0, d).await?;
        }
        return Ok(());
    }
    // Several active: grow the newest, shrink the oldest first, within replicas + maxSurge.
    let allowed = want + surge;
    let total: i64 = old.iter().chain(new_rs.iter()).map(spec_replicas).sum();
    let mut diff = allowed - total;
    if diff > 0 {
        if let Some(rs) = new_rs.as_mut() {
            let to = spec_replicas(rs) + diff;
            *rs = scale_rs(st, ns, rs, to, d).await?;
        }
    } else {
        for rs in old.iter_mut().chain(new_rs.iter_mut()) {
            if diff == 0 {
                break;
            }
            let take = (-diff).min(spec_replicas(rs));
            let to = spec_replicas(rs) - take;
            *rs = scale_rs(st, ns, rs, to, d).await?;
            diff += take;
        }
    }
    // Record the new size on every active ReplicaSet so the next pass rolls instead.
    for rs in old.iter_mut().chain(new_rs.iter_mut()) {
        if spec_replicas(rs) > 0 {
            let to = spec_replicas(rs);
            *rs = scale_rs(st, ns, rs, to, d).await?;
        }
    }
    Ok(())
}

/// `rolloutRolling`: one step up (new) or down (old) per pass; each ReplicaSet change brings
/// the next pass.
async fn rolling(
    st: &ApiState,
    ns: &str,
    d: &Value,
    new_rs: &mut Option<Value>,
    old: &mut [Value],
    surge: i64,
    max_unavailable: i64,
) -> Result<(), ApiError> {
    let want = pods_of::replicas(d);
    let Some(new) = new_rs.as_mut() else {
        return Ok(());
    };
    // reconcileNewReplicaSet.
    let cur_new = spec_replicas(new);
    let all_total: i64 = old.iter().map(spec_replicas).sum::<i64>() + cur_new;
    let target = if cur_new >= want {
        want
    } else {
        let max_total = want + surge;
        if all_total >= max_total {
            cur_new
        } else {
            cur_new + (max_total - all_total).min(want - cur_new)
        }
    };
    if target != cur_new {
        *new = scale_rs(st, ns, new, target, d).await?;
        return Ok(());
    }
    // reconcileOldReplicaSets.
    let old_total: i64 = old.iter().map(spec_replicas).sum();
    if old_total == 0 {
        return Ok(());
    }
    let min_available = want - max_unavailable;
    let new_unavailable = spec_replicas(new) - status_int(new, "availableReplicas");
    let max_scaled_down = all_total - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(());
    }
    // Unhealthy old replicas first, oldest ReplicaSet first.
    let mut cleaned = 0;
    for rs in old.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = spec_replicas(rs) - status_int(rs, "availableReplicas");
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(max_scaled_down - cleaned);
        let to = spec_replicas(rs) - down;
        *rs = scale_rs(st, ns, rs, to, d).await?;
        cleaned += down;
    }
    // Then available ones, while enough stay available.
    let available: i64 = old
        .iter()
        .chain(std::iter::once(&*new))
        .map(|r| status_int(r, "availableReplicas"))
        .sum();
    let mut budget = (available - min_available).min(max_scaled_down - cleaned);
    for rs in old.iter_mut() {
        if budget <= 0 {
            break;
        }
        let down = spec_replicas(rs).min(budget);
        if down == 0 {
            continue;
        }
        let to = spec_replicas(rs) - down;
        *rs = scale_rs(st, ns, rs, to, d).await?;
        budget -= down;
    }
    Ok(())
}

/// Deletes old ReplicaSets beyond `revisionHistoryLimit` (only empty ones whose status is
/// current), lowest revision first.
async fn cleanup(st: &Arc<ApiState>, ns: &str, d: &Value, old: &[Value]) {
    let Some(limit) = d
        .pointer("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
    else {
        return;
    };
    let mut cleanable: Vec<&Value> = old
        .iter()
        .filter(|r| {
            spec_replicas(r) == 0
                && status_int(r, "replicas") == 0
                && !pods_of::terminating(r)
                && r.pointer("/status/observedGeneration")
                    .and_then(Value::as_i64)
                    >= r.pointer("/metadata/generation").and_then(Value::as_i64)
        })
        .collect();
    let excess = cleanable.len() as i64 - limit.max(0);
    if excess <= 0 {
        return;
    }
    cleanable.sort_by_key(|r| revision(r));
    for rs in cleanable.into_iter().take(excess as usize) {
        let n = name_of(rs);
        if let Err(e) = objects::delete_one(st, idx::replicasets(), ns, &n, None, None, None).await
            && e.code != 404
        {
            tracing::warn!(replicaset = %n, "cleaning up: {e}");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn status(
    st: &ApiState,
    d: &Value,
    new_rs: Option<&Value>,
    old: &[Value],
    max_unavailable: i64,
    paused: bool,
    created_new: bool,
) -> Result<(), ApiError> {
    let want = pods_of::replicas(d);
    let all: Vec<&Value> = old.iter().chain(new_rs).collect();
    let sum = |k: &str| all.iter().map(|r| status_int(r, k)).sum::<i64>();
    let replicas = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let updated = new_rs.map(|r| status_int(r, "replicas")).unwrap_or(0);
    let spec_total: i64 = all.iter().map(|r| spec_replicas(r)).sum();
    let old_status = d.get("status");
    let rs_name = new_rs.map(name_of).unwrap_or_default();
    let available_cond = if available >= want - max_unavailable {
        condition(
            old_status,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        condition(
            old_status,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let complete = updated == want && replicas == want && available == want && new_rs.is_some();
    let old_prog = old_status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"))
        })
        .cloned();
    let old_reason = old_prog
        .as_ref()
        .and_then(|c| c.get("reason")?.as_str())
        .unwrap_or_default()
        .to_string();
    // Progress: more updated, ready or available replicas, or fewer old ones.
    let progressed = old_status.is_none_or(|s| {
        updated > status_int(&json!({"status": s}), "updatedReplicas")
            || ready > status_int(&json!({"status": s}), "readyReplicas")
            || available > status_int(&json!({"status": s}), "availableReplicas")
            || replicas - updated
                < status_int(&json!({"status": s}), "replicas")
                    - status_int(&json!({"status": s}), "updatedReplicas")
    });
    let deadline = d
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64);
    let (status_s, reason, message) = if paused {
        (
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".to_string(),
        )
    } else if complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else if created_new {
        (
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{rs_name}\""),
        )
    } else if old_reason == "DeploymentPaused" {
        (
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed".to_string(),
        )
    } else if !progressed
        && let Some(limit) = deadline
        && old_prog
            .as_ref()
            .and_then(|c| c.get("lastUpdateTime")?.as_str())
            .and_then(meta::parse_time)
            .is_some_and(|t| jiff::Timestamp::now().as_second() - t.as_second() > limit)
    {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else if old_reason == "ProgressDeadlineExceeded" && !progressed {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    let mut prog = condition(old_status, "Progressing", status_s, reason, &message);
    // lastUpdateTime moves when something happens; the deadline counts from it.
    let same = old_prog.as_ref().is_some_and(|c| {
        c.get("reason").and_then(Value::as_str) == Some(reason)
            && c.get("status").and_then(Value::as_str) == Some(status_s)
    });
    prog["lastUpdateTime"] = match (&old_prog, same && !progressed) {
        (Some(c), true) => c
            .get("lastUpdateTime")
            .cloned()
            .unwrap_or(json!(meta::now_rfc3339())),
        _ => json!(meta::now_rfc3339()),
    };
    let mut available_cond = available_cond;
    available_cond["lastUpdateTime"] = available_cond["lastTransitionTime"].clone();
    let mut s = json!({
        "observedGeneration": pods_of::generation(d),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": [available_cond, prog],
    });
    if spec_total - available > 0 {
        s["unavailableReplicas"] = json!(spec_total - available);
    }
    if let Some(m) = s.as_object_mut() {
        m.retain(|k, v| v.as_i64() != Some(0) || k == "observedGeneration");
    }
    // `write_status` ignores timestamps; a Progressing update with only a new
    // lastUpdateTime need not be written (the deadline counts from the last real change).
    pods_of::write_status(st, idx::deployments(), d, MANAGER, s).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_changes_with_template() {
        let a = json!({"spec":{"containers":[{"name":"a","image":"x:1"}]}});
        let b = json!({"spec":{"containers":[{"name":"a","image":"x:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }

    #[test]
    fn surge_rounds_up_and_unavailable_down() {
        assert_eq!(scaled(Some(&json!("25%")), 4, false), 1);
        assert_eq!(scaled(Some(&json!("25%")), 1, true), 1);
        assert_eq!(scaled(Some(&json!("25%")), 1, false), 0);
        assert_eq!(scaled(Some(&json!(2)), 4, false), 2);
        let d = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}});
        assert_eq!(rolling_bounds(&d, 3), (0, 1));
        let r = json!({"spec": {"strategy": {"type": "Recreate"}}});
        assert_eq!(rolling_bounds(&r, 3), (0, 0));
    }

    #[test]
    fn the_new_replicaset_is_found_ignoring_its_hash_label() {
        let t = json!({"metadata": {"labels": {"app": "web"}}, "spec": {}});
        let rs_t = json!({"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": {}});
        assert_eq!(without_hash(&rs_t), t);
        let bare = json!({"metadata": {"labels": {HASH_LABEL: "abc"}}, "spec": {}});
        assert_eq!(without_hash(&bare), json!({"metadata": {}, "spec": {}}));
        let sent_again = json!({"metadata": {"labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {"containers": [{"name": "a", "workingDir": "", "resources": {}}]}});
        let stored = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(normalized(&sent_again), normalized(&stored));
    }

    #[test]
    fn copied_annotations_skip_the_controllers_own() {
        let d = json!({"metadata": {"annotations": {
            "kubernetes.io/change-cause": "kubectl set image",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            REVISION: "4"}}});
        let a = rs_annotations(&d, 5, 3, 1);
        assert_eq!(a["kubernetes.io/change-cause"], "kubectl set image");
        assert_eq!(a[REVISION], "5");
        assert_eq!(a[DESIRED_REPLICAS], "3");
        assert_eq!(a[MAX_REPLICAS], "4");
        assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    }
}
