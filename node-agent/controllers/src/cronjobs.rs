//! The CronJob controller (kube-controller-manager's `pkg/controller/cronjob`): at each time
//! the schedule (in `spec.timeZone`, UTC by default) names, makes a Job from `jobTemplate`
//! named `<cronjob>-<scheduled time in minutes since the epoch>`, unless suspended or too late
//! (`startingDeadlineSeconds`). Of several missed times only the latest runs. While a Job of
//! it is active, `concurrencyPolicy` decides: `Allow` runs another, `Forbid` skips this time,
//! `Replace` deletes the active ones first. Finished Jobs beyond
//! `successfulJobsHistoryLimit`/`failedJobsHistoryLimit` are deleted, oldest first.

use super::jobs;
use super::pods_of;
use super::{Key, Reconciler};
use minikind_apiserver::cron::{Schedule, time_zone};
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::meta::{self, str_at};
use minikind_apiserver::resources::idx;
use minikind_apiserver::store::Event;
use minikind_apiserver::{ApiState, objects};
use serde_json::{Value, json};
use std::sync::Arc;

const MANAGER: &str = "cronjob-controller";
const SCHEDULED_AT: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub struct CronJobs;

impl Reconciler for CronJobs {
    fn keys_for(&mut self, _st: &ApiState, ev: &Event) -> Vec<Key> {
        let o = &ev.obj;
        if o.res == idx::cronjobs() {
            vec![(o.namespace.to_string(), o.name.to_string())]
        } else if o.res == idx::jobs() {
            pods_of::controller_key(&o.value(), "CronJob")
                .into_iter()
                .collect()
        } else {
            vec![]
        }
    }

    fn all_keys(&mut self, st: &ApiState) -> Vec<Key> {
        crate::keys_of(st, idx::cronjobs())
    }

    async fn reconcile(&mut self, st: &Arc<ApiState>, key: Key) {
        crate::log_failure("cronjob", &key, reconcile(st, &key.0, &key.1).await);
    }
}

/// The latest scheduled time in (`since`, `now`], if any, and how many were missed before it.
pub fn latest_due(
    schedule: &Schedule,
    tz: &jiff::tz::TimeZone,
    since: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Option<(jiff::Timestamp, u32)> {
    let mut t = schedule.next_after(since, tz)?;
    if t > now {
        return None;
    }
    let mut missed = 0;
    while let Some(n) = schedule.next_after(t, tz) {
        if n > now {
            break;
        }
        t = n;
        missed += 1;
        if missed > 100_000 {
            break;
        }
    }
    Some((t, missed))
}

fn ref_of(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "name": str_at(job, "/metadata/name"),
        "namespace": str_at(job, "/metadata/namespace"),
        "uid": str_at(job, "/metadata/uid"),
        "resourceVersion": str_at(job, "/metadata/resourceVersion"),
    })
}

async fn reconcile(st: &Arc<ApiState>, ns: &str, name: &str) -> Result<(), ApiError> {
    let Some(cj) = st.store.get(idx::cronjobs(), ns, name) else {
        return Ok(());
    };
    let cj = cj.value();
    if pods_of::terminating(&cj) {
        return Ok(());
    }
    let uid = str_at(&cj, "/metadata/uid").unwrap_or_default().to_string();
    let (all, _, _) = st.store.list(idx::jobs(), Some(ns), None, 0, |_| true);
    let mut mine: Vec<Value> = all
        .iter()
        .map(|j| j.value())
        .filter(|j| pods_of::controlled_by(j, &uid) && !pods_of::terminating(j))
        .collect();
    let mut status = cj.get("status").cloned().unwrap_or(json!({}));
    let mut last_success = status.get("lastSuccessfulTime").cloned();
    for j in mine.iter().filter(|j| jobs::is_finished(j)) {
        if let Some(t) = str_at(j, "/status/completionTime") {
            let newer = last_success
                .as_ref()
                .and_then(Value::as_str)
                .is_none_or(|l| meta::parse_time(l) < meta::parse_time(t));
            if newer {
                last_success = Some(json!(t));
            }
        }
    }

    // History limits: finished Jobs, oldest first.
    for (failed, limit) in [
        (
            false,
            cj.pointer("/spec/successfulJobsHistoryLimit")
                .and_then(Value::as_i64),
        ),
        (
            true,
            cj.pointer("/spec/failedJobsHistoryLimit")
                .and_then(Value::as_i64),
        ),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Value> = mine
            .iter()
            .filter(|j| {
                jobs::is_finished(j) && (jobs::finished_at(j).is_some() && is_failed(j) == failed)
            })
            .collect();
        // Oldest first by start time, equal ones by name (upstream's `byJobStartTime`).
        done.sort_by_key(|j| {
            (
                str_at(j, "/status/startTime")
                    .or_else(|| str_at(j, "/metadata/creationTimestamp"))
                    .and_then(meta::parse_time),
                str_at(j, "/metadata/name").unwrap_or_default().to_string(),
            )
        });
        let excess = done.len() as i64 - limit.max(0);
        for j in done.into_iter().take(excess.max(0) as usize) {
            delete_job(st, ns, j).await?;
        }
    }
    mine.retain(|j| {
        let n = str_at(j, "/metadata/name").unwrap_or_default();
        st.store.get(idx::jobs(), ns, n).is_some()
    });
    let mut active: Vec<&Value> = mine.iter().filter(|j| !jobs::is_finished(j)).collect();

    let suspended = cj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let spec = str_at(&cj, "/spec/schedule").unwrap_or_default();
    let schedule = Schedule::parse(spec).map_err(|e| {
        ApiError::bad_request(format!("cronjob {ns}/{name}: spec.schedule {spec:?}: {e}"))
    })?;
    let tz = time_zone(str_at(&cj, "/spec/timeZone"))
        .map_err(|e| ApiError::bad_request(format!("cronjob {ns}/{name}: spec.timeZone: {e}")))?;
    let since = str_at(&status, "/lastScheduleTime")
        .or_else(|| str_at(&cj, "/metadata/creationTimestamp"))
        .and_then(meta::parse_time)
        .unwrap_or_else(jiff::Timestamp::now);
    let now = jiff::Timestamp::now();
    let mut created: Option<Value> = None;
    if !suspended && let Some((t, missed)) = latest_due(&schedule, &tz, since, now) {
        if missed > 100 {
            tracing::warn!(cronjob = %format!("{ns}/{name}"), "too many missed start times ({missed}); running the latest");
        }
        let too_late = cj
            .pointer("/spec/startingDeadlineSeconds")
            .and_then(Value::as_i64)
            .is_some_and(|d| now.as_second() - t.as_second() > d);
        let policy = str_at(&cj, "/spec/concurrencyPolicy").unwrap_or("Allow");
        let job_name = format!("{name}-{}", t.as_second() / 60);
        let exists = st.store.get(idx::jobs(), ns, &job_name).is_some();
        if too_late || exists {
            // Missed for good, or already made: only the schedule time moves on.
            status["lastScheduleTime"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        } else if policy == "Forbid" && !active.is_empty() {
            // Skipped; tried again on the next pass while the time is still due.
        } else {
            if policy == "Replace" {
                for j in active.drain(..) {
                    delete_job(st, ns, j).await?;
                }
            }
            let tmpl = cj
                .pointer("/spec/jobTemplate")
                .cloned()
                .unwrap_or(json!({}));
            let mut m = json!({"name": job_name, "namespace": ns,
                               "ownerReferences": [pods_of::controller_ref(&cj, idx::cronjobs())]});
            for k in ["labels", "annotations"] {
                if let Some(x) = tmpl.pointer(&format!("/metadata/{k}")) {
                    m[k] = x.clone();
                }
            }
            m["annotations"][SCHEDULED_AT] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            let job = json!({
                "apiVersion": "batch/v1", "kind": "Job", "metadata": m,
                "spec": tmpl.get("spec").cloned().unwrap_or(json!({})),
            });
            let made = objects::create_internal(st, idx::jobs(), job, MANAGER).await?;
            created = Some(made.value());
            status["lastScheduleTime"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
    }
    let mut refs: Vec<Value> = active.iter().map(|j| ref_of(j)).collect();
    refs.extend(created.iter().map(ref_of));
    if refs.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("active");
        }
    } else {
        status["active"] = json!(refs);
    }
    if let Some(t) = last_success {
        status["lastSuccessfulTime"] = t;
    }
    pods_of::write_status(st, idx::cronjobs(), &cj, MANAGER, status).await
}

fn is_failed(job: &Value) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Failed")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Deletes a Job in the background (its pods follow by garbage collection).
async fn delete_job(st: &Arc<ApiState>, ns: &str, job: &Value) -> Result<(), ApiError> {
    let n = str_at(job, "/metadata/name").unwrap_or_default();
    match objects::delete_one(st, idx::jobs(), ns, n, None, None, None).await {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_missed_time_runs() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        let since: jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let now: jiff::Timestamp = "2026-01-01T10:17:00Z".parse().unwrap();
        let (t, missed) = latest_due(&s, &utc, since, now).unwrap();
        assert_eq!(t.to_string(), "2026-01-01T10:15:00Z");
        assert_eq!(missed, 2);
        let early: jiff::Timestamp = "2026-01-01T10:04:59Z".parse().unwrap();
        assert_eq!(latest_due(&s, &utc, since, early), None);
    }
}
