//! Defaulting and validation of the workload kinds beside Deployment: ReplicaSet, StatefulSet,
//! DaemonSet, Job and CronJob, as Kubernetes' `pkg/apis/{apps,batch}/v1` defaults,
//! the Job registry strategy (generated selector and labels) and
//! `pkg/apis/{apps,batch}/validation` do for the fields their controllers read.

use super::admission::{default_pod_spec, default_str, default_val, obj_mut, validate_pod_spec};
use super::errors::{FieldCause, invalid_value, not_supported, required};
use super::resources::{ResIdx, idx};
use super::selectors::Selector;
use crate::cron;
use serde_json::{Value, json};

/// The label the Job controller's pods and the generated selector carry (`batch/v1`'s
/// `ControllerUidLabel`), and its legacy twin.
pub const JOB_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Defaults and validates one workload object (`res` is one of the kinds above).
pub fn admit(res: ResIdx, obj: &mut Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    if res == idx::replicasets() {
        default_val(obj_mut(obj, "spec"), "replicas", json!(1));
        default_template(obj, "/spec/template");
        replicas_valid(obj, causes);
        selector_valid(obj, "spec", causes);
        selector_immutable(obj, old, causes);
        validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            causes,
        );
    } else if res == idx::statefulsets() {
        let spec = obj_mut(obj, "spec");
        default_val(spec, "replicas", json!(1));
        default_str(spec, "podManagementPolicy", "OrderedReady");
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_val(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        );
        default_val(
            spec,
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        default_template(obj, "/spec/template");
        replicas_valid(obj, causes);
        selector_valid(obj, "spec", causes);
        let policy = obj
            .pointer("/spec/podManagementPolicy")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !["OrderedReady", "Parallel"].contains(&policy) {
            causes.push(not_supported(
                "spec.podManagementPolicy",
                policy,
                &["OrderedReady", "Parallel"],
            ));
        }
        if let Some(old) = old {
            // Only these may change (apps validation's `ValidateStatefulSetUpdate`).
            let strip = |v: &Value| {
                let mut s = v.get("spec").cloned().unwrap_or(json!({}));
                if let Some(m) = s.as_object_mut() {
                    for k in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(k);
                    }
                }
                s
            };
            if strip(old) != strip(obj) {
                causes.push(FieldCause {
                    reason: "FieldValueForbidden",
                    field: "spec".into(),
                    message: "Forbidden: updates to statefulset spec for fields other than \
                              'replicas', 'ordinals', 'template', 'updateStrategy', \
                              'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' \
                              and 'minReadySeconds' are forbidden"
                        .into(),
                });
            }
        }
        validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            causes,
        );
    } else if res == idx::daemonsets() {
        let spec = obj_mut(obj, "spec");
        default_val(spec, "revisionHistoryLimit", json!(10));
        default_val(
            spec,
            "updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
        default_template(obj, "/spec/template");
        selector_valid(obj, "spec", causes);
        selector_immutable(obj, old, causes);
        restart_policy_in(
            obj,
            "/spec/template/spec",
            "spec.template.spec",
            &["Always"],
            causes,
        );
        validate_pod_spec(
            obj.pointer("/spec/template/spec"),
            "spec.template.spec",
            causes,
        );
    } else if res == idx::jobs() {
        job(obj, old, causes);
    } else if res == idx::cronjobs() {
        let spec = obj_mut(obj, "spec");
        default_str(spec, "concurrencyPolicy", "Allow");
        default_val(spec, "suspend", json!(false));
        default_val(spec, "successfulJobsHistoryLimit", json!(3));
        default_val(spec, "failedJobsHistoryLimit", json!(1));
        let schedule = obj
            .pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if schedule.is_empty() {
            causes.push(required("spec.schedule"));
        } else if schedule.contains("TZ") {
            causes.push(invalid_value(
                "spec.schedule",
                &schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        } else if let Err(e) = cron::Schedule::parse(&schedule) {
            causes.push(invalid_value("spec.schedule", &schedule, &e));
        }
        let tz = obj.pointer("/spec/timeZone").and_then(Value::as_str);
        if let Err(e) = cron::time_zone(tz) {
            causes.push(invalid_value("spec.timeZone", tz.unwrap_or_default(), &e));
        }
        let policy = obj
            .pointer("/spec/concurrencyPolicy")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !["Allow", "Forbid", "Replace"].contains(&policy) {
            causes.push(not_supported(
                "spec.concurrencyPolicy",
                policy,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        job_template_defaults(obj, "/spec/jobTemplate/spec");
        restart_policy_in(
            obj,
            "/spec/jobTemplate/spec/template/spec",
            "spec.jobTemplate.spec.template.spec",
            &["OnFailure", "Never"],
            causes,
        );
        validate_pod_spec(
            obj.pointer("/spec/jobTemplate/spec/template/spec"),
            "spec.jobTemplate.spec.template.spec",
            causes,
        );
    }
}

fn default_template(obj: &mut Value, at: &str) {
    if obj.pointer(at).is_none() {
        return;
    }
    let t = obj.pointer_mut(at).expect("checked above");
    if let Some(spec) = t
        .as_object_mut()
        .map(|t| t.entry("spec").or_insert(json!({})))
        .and_then(Value::as_object_mut)
    {
        default_pod_spec(spec);
    }
}

fn replicas_valid(obj: &Value, causes: &mut Vec<FieldCause>) {
    match obj.pointer("/spec/replicas") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => {}
        Some(Value::Number(n)) => causes.push(invalid_value(
            "spec.replicas",
            &n.to_string(),
            "must be greater than or equal to 0",
        )),
        other => causes.push(invalid_value(
            "spec.replicas",
            &other.map(Value::to_string).unwrap_or_default(),
            "must be an integer",
        )),
    }
}

/// `<at>.selector` present, non-empty, and matching the template's labels.
fn selector_valid(obj: &Value, at: &str, causes: &mut Vec<FieldCause>) {
    let sel = obj
        .pointer(&format!("/{}/selector", at.replace('.', "/")))
        .filter(|v| !v.is_null());
    let Some(sel) = sel else {
        causes.push(required(format!("{at}.selector")));
        return;
    };
    match Selector::from_label_selector(Some(sel)) {
        Err(e) => causes.push(invalid_value(
            format!("{at}.selector"),
            &sel.to_string(),
            &e.message,
        )),
        Ok(s) if s.is_empty() => causes.push(invalid_value(
            format!("{at}.selector"),
            &sel.to_string(),
            "empty selector is invalid for deployment",
        )),
        Ok(s) => {
            let labels = obj.pointer(&format!(
                "/{}/template/metadata/labels",
                at.replace('.', "/")
            ));
            if !s.matches_labels(labels) {
                causes.push(invalid_value(
                    format!("{at}.template.metadata.labels"),
                    &labels.map(Value::to_string).unwrap_or_default(),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

fn selector_immutable(obj: &Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    if let Some(old) = old
        && old.pointer("/spec/selector") != obj.pointer("/spec/selector")
    {
        causes.push(invalid_value(
            "spec.selector",
            &obj.pointer("/spec/selector")
                .map(Value::to_string)
                .unwrap_or_default(),
            "field is immutable",
        ));
    }
}

fn restart_policy_in(
    obj: &Value,
    pointer: &str,
    at: &str,
    allowed: &[&str],
    causes: &mut Vec<FieldCause>,
) {
    let rp = obj
        .pointer(&format!("{pointer}/restartPolicy"))
        .and_then(Value::as_str)
        .unwrap_or("Always");
    if !allowed.contains(&rp) {
        causes.push(not_supported(format!("{at}.restartPolicy"), rp, allowed));
    }
}

/// The Job defaults (`batch/v1` `SetDefaults_Job`) on a Job spec at `at`.
fn job_template_defaults(obj: &mut Value, at: &str) {
    let Some(spec) = obj.pointer_mut(at).and_then(Value::as_object_mut) else {
        return;
    };
    let completions_set = spec.get("completions").is_some_and(|v| !v.is_null());
    default_val(spec, "parallelism", json!(1));
    if !completions_set && spec.get("parallelism") == Some(&json!(1)) {
        spec.insert("completions".into(), json!(1));
    }
    default_val(spec, "backoffLimit", json!(6));
    default_str(spec, "completionMode", "NonIndexed");
    default_val(spec, "suspend", json!(false));
    default_str(spec, "podReplacementPolicy", "TerminatingOrFailed");
    let at_template = format!("{at}/template");
    default_template(obj, &at_template);
}

fn job(obj: &mut Value, old: Option<&Value>, causes: &mut Vec<FieldCause>) {
    job_template_defaults(obj, "/spec");
    let uid = obj
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let manual = obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true);
    if old.is_none() && !manual {
        // The Job strategy's generated selector and labels (`generateSelector`): the pods are
        // found by the Job's uid, so a re-created Job with the same name never adopts them.
        let spec = obj_mut(obj, "spec");
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {JOB_UID_LABEL: uid}}),
        );
        if let Some(t) = obj
            .pointer_mut("/spec/template")
            .and_then(Value::as_object_mut)
        {
            let m = t
                .entry("metadata")
                .or_insert(json!({}))
                .as_object_mut()
                .expect("metadata is an object")
                .entry("labels")
                .or_insert(json!({}));
            if let Some(l) = m.as_object_mut() {
                l.insert(JOB_UID_LABEL.into(), json!(uid));
                l.insert("controller-uid".into(), json!(uid));
                l.insert(JOB_NAME_LABEL.into(), json!(name));
                l.insert("job-name".into(), json!(name));
            }
        }
    }
    selector_valid(obj, "spec", causes);
    for k in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = obj.pointer(&format!("/spec/{k}")).and_then(Value::as_i64)
            && n < 0
        {
            causes.push(invalid_value(
                format!("spec.{k}"),
                &n.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    if obj
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        == Some(0)
    {
        causes.push(invalid_value(
            "spec.activeDeadlineSeconds",
            "0",
            "must be greater than 0",
        ));
    }
    restart_policy_in(
        obj,
        "/spec/template/spec",
        "spec.template.spec",
        &["OnFailure", "Never"],
        causes,
    );
    validate_pod_spec(
        obj.pointer("/spec/template/spec"),
        "spec.template.spec",
        causes,
    );
    if let Some(old) = old {
        for (k, at) in [
            ("/spec/template", "spec.template"),
            ("/spec/selector", "spec.selector"),
            ("/spec/completions", "spec.completions"),
        ] {
            if old.pointer(k) != obj.pointer(k) {
                causes.push(invalid_value(
                    at,
                    &obj.pointer(k).map(Value::to_string).unwrap_or_default(),
                    "field is immutable",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes_of(res: ResIdx, mut v: Value, old: Option<&Value>) -> (Value, Vec<String>) {
        let mut causes = Vec::new();
        admit(res, &mut v, old, &mut causes);
        (
            v,
            causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
        )
    }

    fn template(restart: &str) -> Value {
        json!({"spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "i"}]}})
    }

    #[test]
    fn jobs_get_the_generated_selector_and_defaults() {
        let job = json!({"metadata": {"name": "hello", "uid": "u-1"}, "spec": {"template": template("Never")}});
        let (v, causes) = causes_of(idx::jobs(), job, None);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(v["spec"]["selector"]["matchLabels"][JOB_UID_LABEL], "u-1");
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"][JOB_NAME_LABEL],
            "hello"
        );
        assert_eq!(
            v["spec"]["template"]["metadata"]["labels"]["job-name"],
            "hello"
        );
        assert_eq!(v["spec"]["completions"], 1);
        assert_eq!(v["spec"]["parallelism"], 1);
        assert_eq!(v["spec"]["backoffLimit"], 6);
        // The template may not change afterwards, and Always is not a Job's restart policy.
        let mut changed = v.clone();
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        let (_, causes) = causes_of(idx::jobs(), changed, Some(&v));
        assert!(
            causes
                .iter()
                .any(|c| c.starts_with("spec.template: ") && c.contains("immutable")),
            "{causes:?}"
        );
        let always = json!({"metadata": {"name": "x", "uid": "u"}, "spec": {"template": template("Always")}});
        let (_, causes) = causes_of(idx::jobs(), always, None);
        assert!(
            causes
                .iter()
                .any(|c| c.starts_with("spec.template.spec.restartPolicy")),
            "{causes:?}"
        );
    }

    #[test]
    fn cronjob_schedules_and_policies_are_checked() {
        let cj = |schedule: &str, policy: &str| {
            json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule, "concurrencyPolicy": policy,
                "jobTemplate": {"spec": {"template": template("OnFailure")}}}})
        };
        let (v, causes) = causes_of(idx::cronjobs(), cj("*/5 * * * *", "Forbid"), None);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(v["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(v["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(v["spec"]["jobTemplate"]["spec"]["backoffLimit"], 6);
        let (_, causes) = causes_of(idx::cronjobs(), cj("61 * * * *", "Allow"), None);
        assert!(
            causes.iter().any(|c| c.starts_with("spec.schedule")),
            "{causes:?}"
        );
        let (_, causes) = causes_of(idx::cronjobs(), cj("CRON_TZ=UTC 0 * * * *", "Allow"), None);
        assert!(
            causes.iter().any(|c| c.contains("timeZone field")),
            "{causes:?}"
        );
        let (_, causes) = causes_of(idx::cronjobs(), cj("@hourly", "Sometimes"), None);
        assert!(
            causes
                .iter()
                .any(|c| c.starts_with("spec.concurrencyPolicy")),
            "{causes:?}"
        );
    }

    #[test]
    fn statefulsets_allow_only_their_mutable_fields_to_change() {
        let sts = json!({"metadata": {"name": "web"}, "spec": {"serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template("Always")["spec"].clone()}}});
        let (v, causes) = causes_of(idx::statefulsets(), sts, None);
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(v["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        let mut scaled = v.clone();
        scaled["spec"]["replicas"] = json!(5);
        assert!(
            causes_of(idx::statefulsets(), scaled, Some(&v))
                .1
                .is_empty()
        );
        let mut renamed = v.clone();
        renamed["spec"]["serviceName"] = json!("other");
        let (_, causes) = causes_of(idx::statefulsets(), renamed, Some(&v));
        assert!(
            causes
                .iter()
                .any(|c| c.contains("Forbidden: updates to statefulset spec")),
            "{causes:?}"
        );
    }
}
