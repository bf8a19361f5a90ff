//! The Job controller (kube-controller-manager's `pkg/controller/job`, NonIndexed completion
//! mode): runs up to `parallelism` pods at once until `completions` of them succeeded (or, with
//! no `completions`, until one succeeded and the rest finished), counting failed pods — and,
//! with `restartPolicy: OnFailure`, container restarts — against `backoffLimit`.
//! `activeDeadlineSeconds` bounds the run. A finished Job gets `SuccessCriteriaMet`/`Complete`
//! or `FailureTarget`/`Failed` once its remaining pods are stopped, and is deleted
//! `ttlSecondsAfterFinished` after it finished (its pods follow by garbage collection).
//! `suspend` stops the pods and sets `Suspended`.
//!
//! Finished pods are counted from what is stored (upstream tracks them with a finalizer so a
//! deleted pod still counts; here the counts never go down, so deleting a finished pod loses
//! nothing already counted, but one deleted before the controller saw it is not counted).
//! Upstream delays re-creating failed pods with an exponential back-off; here a failed pod is
//! replaced on the next pass.

use super::pods_of::{self, PodName, condition};
use super::{Key, Reconciler};
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::{self, str_at};
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

const MANAGER: &str = "job-controller";

pub struct Jobs;

impl Reconciler for Jobs {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::jobs() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::pods() {
            pods_of::controller_key(&o.value(), "Job")
                .into_iter()
                .collect()
        } else {
            vec![]
        }
    }

    /// Every Job not finished, and finished ones with a TTL (their deadline and TTL are
    /// checked on each resync).
    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::jobs())
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("job", &key, reconcile(st, &key.0, &key.1).await);
    }
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ty)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// When a Job finished (its `Complete` or `Failed` condition's time), if it did.
pub fn finished_at(job: &Value) -> Option<jiff::Timestamp> {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| {
            matches!(
                c.get("type").and_then(Value::as_str),
                Some("Complete" | "Failed")
            ) && c.get("status").and_then(Value::as_str) == Some("True")
        })
        .and_then(|c| c.get("lastTransitionTime")?.as_str())
        .and_then(meta::parse_time)
}

pub fn is_finished(job: &Value) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

fn int(v: &Value, p: &str) -> Option<i64> {
    v.pointer(p).and_then(Value::as_i64)
}

/// What a pass decides, before it is written.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    /// Pods to start now.
    pub create: i64,
    /// Active pods to stop (all of them when the Job ended or is suspended).
    pub stop_all: bool,
    /// Surplus active pods to stop (parallelism lowered).
    pub stop: i64,
    /// Why the Job fails, if it does: (reason, message).
    pub failure: Option<(&'static str, &'static str)>,
    pub success: bool,
}

/// What a Job asks for.
#[derive(Clone, Copy)]
pub struct Wanted {
    pub completions: Option<i64>,
    pub parallelism: i64,
    pub backoff_limit: i64,
    pub suspended: bool,
}

/// What its pods did so far.
#[derive(Clone, Copy)]
pub struct Seen {
    pub active: i64,
    pub succeeded: i64,
    /// Failed pods, plus container restarts under `restartPolicy: OnFailure`.
    pub failures: i64,
    pub past_deadline: bool,
}

/// The Job's rules on counts alone (`syncJob`'s decisions for NonIndexed Jobs).
pub fn decide(want: &Wanted, seen: &Seen) -> Decision {
    let Wanted {
        completions,
        parallelism,
        backoff_limit,
        suspended,
    } = *want;
    let Seen {
        active,
        succeeded,
        failures,
        past_deadline,
    } = *seen;
    let mut d = Decision {
        create: 0,
        stop_all: false,
        stop: 0,
        failure: None,
        success: false,
    };
    if failures > backoff_limit {
        d.failure = Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ));
    } else if past_deadline {
        d.failure = Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ));
    }
    if d.failure.is_some() {
        d.stop_all = true;
        return d;
    }
    match completions {
        Some(c) if succeeded >= c => d.success = true,
        // Work queue: one success means done once the others finish.
        None if succeeded > 0 => d.success = true,
        _ => {}
    }
    if d.success {
        d.stop_all = completions.is_some();
        return d;
    }
    if suspended {
        d.stop_all = true;
        return d;
    }
    let want_active = match completions {
        Some(c) => parallelism.min(c - succeeded),
        None => parallelism,
    }
    .max(0);
    if active < want_active {
        d.create = want_active - active;
    } else {
        d.stop = active - want_active;
    }
    d
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(job) = st.store.get(idx::jobs(), ns, name) else {
        return Ok(());
    };
    let job = job.value();
    if pods_of::terminating(&job) {
        return Ok(());
    }
    if is_finished(&job) {
        return ttl(st, ns, name, &job).await;
    }
    let uid = str_at(&job, "/metadata/uid")
        .unwrap_or_default()
        .to_string();
    let pods = pods_of::owned_pods(st, ns, &uid);
    let mut active: Vec<&Value> = pods.iter().filter(|p| pods_of::active(p)).collect();
    let status = job.get("status").cloned().unwrap_or(json!({}));
    let succeeded = (pods
        .iter()
        .filter(|p| pods_of::phase(p) == "Succeeded")
        .count() as i64)
        .max(int(&status, "/succeeded").unwrap_or(0));
    let failed = (pods
        .iter()
        .filter(|p| pods_of::phase(p) == "Failed")
        .count() as i64)
        .max(int(&status, "/failed").unwrap_or(0));
    let on_failure = str_at(&job, "/spec/template/spec/restartPolicy") == Some("OnFailure");
    let restarts: i64 = if on_failure {
        active
            .iter()
            .filter_map(|p| p.pointer("/status/containerStatuses")?.as_array().cloned())
            .flatten()
            .filter_map(|c| c.get("restartCount")?.as_i64())
            .sum()
    } else {
        0
    };
    let suspended = job.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let now = jiff::Timestamp::now();
    let start = str_at(&status, "/startTime").and_then(meta::parse_time);
    let past_deadline = match (int(&job, "/spec/activeDeadlineSeconds"), start) {
        (Some(limit), Some(t)) => now.as_second() - t.as_second() >= limit,
        _ => false,
    };
    let d = decide(
        &Wanted {
            completions: int(&job, "/spec/completions"),
            parallelism: int(&job, "/spec/parallelism").unwrap_or(1),
            backoff_limit: int(&job, "/spec/backoffLimit").unwrap_or(6),
            suspended,
        },
        &Seen {
            active: active.len() as i64,
            succeeded,
            failures: failed + restarts,
            past_deadline,
        },
    );
    if d.stop_all || d.stop > 0 {
        // Surplus pods: the least valuable first.
        active.sort_by_key(|p| pods_of::deletion_rank(p));
        let n = if d.stop_all {
            active.len()
        } else {
            d.stop as usize
        };
        for p in active.drain(..n) {
            pods_of::delete_pod(st, ns, str_at(p, "/metadata/name").unwrap_or_default()).await;
        }
    }
    let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let owner = pods_of::controller_ref(&job, idx::jobs());
    let prefix = format!("{name}-");
    for _ in 0..d.create {
        let pod =
            pods_of::pod_from_template(&template, ns, PodName::Generate(&prefix), owner.clone());
        objects::create_internal(st, idx::pods(), pod, MANAGER).await?;
    }
    // Status. The terminal conditions wait until no pod of the Job is still running.
    let pods = pods_of::owned_pods(st, ns, &uid);
    let still_running = pods
        .iter()
        .any(|p| !matches!(pods_of::phase(p), "Succeeded" | "Failed"));
    let active_n = pods.iter().filter(|p| pods_of::active(p)).count();
    let ready = pods
        .iter()
        .filter(|p| pods_of::active(p) && pods_of::pod_ready(p))
        .count();
    let terminating = pods.iter().filter(|p| pods_of::terminating(p)).count();
    let now_s = meta::now_rfc3339();
    let mut conditions: Vec<Value> = Vec::new();
    let mut completion_time = None;
    if suspended && d.failure.is_none() && !d.success {
        conditions.push(condition(
            Some(&status),
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
        ));
    } else if has_condition(&job, "Suspended") {
        conditions.push(condition(
            Some(&status),
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
        ));
    }
    if let Some((reason, message)) = d.failure {
        conditions.push(condition(
            Some(&status),
            "FailureTarget",
            "True",
            reason,
            message,
        ));
        if !still_running {
            conditions.push(condition(Some(&status), "Failed", "True", reason, message));
        }
    } else if d.success {
        let (reason, message) = (
            "CompletionsReached",
            "Reached expected number of succeeded pods",
        );
        conditions.push(condition(
            Some(&status),
            "SuccessCriteriaMet",
            "True",
            reason,
            message,
        ));
        if !still_running {
            conditions.push(condition(
                Some(&status),
                "Complete",
                "True",
                reason,
                message,
            ));
            completion_time = Some(now_s.clone());
        }
    }
    let start_time = match (str_at(&status, "/startTime"), suspended) {
        (Some(t), _) => Some(t.to_string()),
        (None, false) => Some(now_s.clone()),
        (None, true) => None,
    };
    let mut s = json!({
        "active": active_n,
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        "terminating": terminating,
        "uncountedTerminatedPods": {},
    });
    if let Some(t) = start_time {
        s["startTime"] = json!(t);
    }
    if let Some(t) =
        completion_time.or_else(|| str_at(&status, "/completionTime").map(String::from))
    {
        s["completionTime"] = json!(t);
    }
    if !conditions.is_empty() {
        s["conditions"] = json!(conditions);
    }
    if let Some(m) = s.as_object_mut() {
        m.retain(|k, v| v.as_i64() != Some(0) || k == "ready" || k == "terminating");
    }
    pods_of::write_status(st, idx::jobs(), &job, MANAGER, s).await
}

/// Deletes a finished Job `ttlSecondsAfterFinished` after it finished (the TTL-after-finished
/// controller), in the background: the garbage collector removes its pods.
async fn ttl(st: &Arc<ApiState>, ns: &str, name: &str, job: &Value) -> Result<(), ApiError> {
    let (Some(ttl), Some(done)) = (int(job, "/spec/ttlSecondsAfterFinished"), finished_at(job))
    else {
        return Ok(());
    };
    if jiff::Timestamp::now().as_second() - done.as_second() < ttl {
        return Ok(());
    }
    match objects::delete_one(st, idx::jobs(), ns, name, None, None, None).await {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `decide` with its inputs in a row: completions, parallelism, backoffLimit, active,
    /// succeeded, failures, past the deadline, suspended.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        completions: Option<i64>,
        parallelism: i64,
        backoff_limit: i64,
        active: i64,
        succeeded: i64,
        failures: i64,
        past_deadline: bool,
        suspended: bool,
    ) -> Decision {
        super::decide(
            &Wanted {
                completions,
                parallelism,
                backoff_limit,
                suspended,
            },
            &Seen {
                active,
                succeeded,
                failures,
                past_deadline,
            },
        )
    }

    #[test]
    fn parallelism_is_bounded_by_the_completions_left() {
        let d = decide(Some(5), 2, 6, 0, 0, 0, false, false);
        assert_eq!(d.create, 2);
        let d = decide(Some(5), 2, 6, 1, 4, 0, false, false);
        assert_eq!((d.create, d.stop), (0, 0));
        let d = decide(Some(5), 3, 6, 0, 4, 0, false, false);
        assert_eq!(d.create, 1);
        let d = decide(Some(5), 1, 6, 3, 0, 0, false, false);
        assert_eq!(d.stop, 2, "parallelism lowered");
    }

    #[test]
    fn success_failure_deadline_and_suspend() {
        let d = decide(Some(2), 2, 6, 0, 2, 0, false, false);
        assert!(d.success);
        assert_eq!(d.create, 0);
        let d = decide(Some(2), 2, 1, 1, 0, 2, false, false);
        assert_eq!(d.failure.unwrap().0, "BackoffLimitExceeded");
        assert!(d.stop_all);
        let d = decide(Some(2), 2, 6, 0, 0, 1, false, false);
        assert_eq!(d.failure, None, "one failure within a limit of 6");
        assert_eq!(d.create, 2);
        let d = decide(Some(2), 2, 6, 2, 0, 0, true, false);
        assert_eq!(d.failure.unwrap().0, "DeadlineExceeded");
        let d = decide(Some(2), 2, 6, 2, 0, 0, false, true);
        assert!(d.stop_all && d.failure.is_none() && !d.success);
        // Work queue: the first success ends it, the others finish by themselves.
        let d = decide(None, 3, 6, 2, 1, 0, false, false);
        assert!(d.success && !d.stop_all && d.create == 0);
    }
}
