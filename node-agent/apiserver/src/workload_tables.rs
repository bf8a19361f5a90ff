//! `kubectl get` columns of the workload kinds beside Deployment, as the real server's printers
//! (`pkg/printers/internalversion`) make them.

use crate::meta::{age, human_duration, parse_time, str_at};
use crate::tables::{Col, arr, c, label_selector_string, or_none, s};
use serde_json::{Value, json};

const KINDS: &[&str] = &[
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "ControllerRevision",
    "Job",
    "CronJob",
];

pub fn serves(kind: &str) -> bool {
    KINDS.contains(&kind)
}

fn template_cols(selector: bool) -> Vec<Col> {
    let mut v = vec![
        c(
            "Containers",
            "string",
            1,
            "Names of each container in the template.",
        ),
        c(
            "Images",
            "string",
            1,
            "Images referenced by each container in the template.",
        ),
    ];
    if selector {
        v.push(c("Selector", "string", 1, "Label selector for pods."));
    }
    v
}

pub fn columns(kind: &str, name: Col, age_col: Col) -> Vec<Col> {
    let mut v = vec![name];
    match kind {
        "ReplicaSet" => {
            v.extend([
                c("Desired", "integer", 0, "Number of desired pods."),
                c("Current", "integer", 0, "Number of actually running pods."),
                c("Ready", "integer", 0, "Number of ready pods."),
                age_col,
            ]);
            v.extend(template_cols(true));
        }
        "StatefulSet" => {
            v.extend([
                c("Ready", "string", 0, "Number of the pod with ready state."),
                age_col,
            ]);
            v.extend(template_cols(false));
        }
        "DaemonSet" => {
            v.extend([
                c(
                    "Desired",
                    "integer",
                    0,
                    "The number of nodes that should be running the daemon pod.",
                ),
                c(
                    "Current",
                    "integer",
                    0,
                    "The number of nodes running at least one daemon pod.",
                ),
                c(
                    "Ready",
                    "integer",
                    0,
                    "The number of nodes running the daemon pod ready.",
                ),
                c(
                    "Up-to-date",
                    "integer",
                    0,
                    "The number of nodes running the updated daemon pod.",
                ),
                c(
                    "Available",
                    "integer",
                    0,
                    "The number of nodes running the daemon pod available.",
                ),
                c(
                    "Node Selector",
                    "string",
                    0,
                    "The node selector of the daemon pods.",
                ),
                age_col,
            ]);
            v.extend(template_cols(true));
        }
        "ControllerRevision" => v.extend([
            c(
                "Controller",
                "string",
                0,
                "The controller that owns this revision.",
            ),
            c("Revision", "integer", 0, "The revision number."),
            age_col,
        ]),
        "Job" => {
            v.extend([
                c("Status", "string", 0, "Status of the job."),
                c(
                    "Completions",
                    "string",
                    0,
                    "The number of successfully completed pods of the desired number.",
                ),
                c(
                    "Duration",
                    "string",
                    0,
                    "Time the job took (or has taken so far) to complete.",
                ),
                age_col,
            ]);
            v.extend(template_cols(true));
        }
        "CronJob" => {
            v.extend([
                c("Schedule", "string", 0, "The schedule in Cron format."),
                c("Timezone", "string", 0, "The time zone the schedule is in."),
                c(
                    "Suspend",
                    "boolean",
                    0,
                    "Whether the controller suspends subsequent executions.",
                ),
                c("Active", "integer", 0, "The number of running jobs."),
                c(
                    "Last Schedule",
                    "string",
                    0,
                    "When a job was last scheduled.",
                ),
                age_col,
            ]);
            v.extend(template_cols(true));
        }
        _ => v.push(age_col),
    }
    v
}

fn int(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn since(v: &Value, p: &str) -> Option<i64> {
    let t = parse_time(str_at(v, p)?)?;
    Some(jiff::Timestamp::now().as_second() - t.as_second())
}

/// Containers, Images (and Selector) of the pod template at `tmpl`.
fn template_cells(v: &Value, tmpl: &str, selector: Option<&str>) -> Vec<Value> {
    let cs = arr(v, &format!("{tmpl}/spec/containers"));
    let names: Vec<&str> = cs.iter().filter_map(|c| c.get("name")?.as_str()).collect();
    let images: Vec<&str> = cs.iter().filter_map(|c| c.get("image")?.as_str()).collect();
    let mut out = vec![json!(names.join(",")), json!(images.join(","))];
    if let Some(sel) = selector {
        out.push(json!(or_none(label_selector_string(v.pointer(sel)))));
    }
    out
}

fn has_condition(v: &Value, ty: &str) -> bool {
    arr(v, "/status/conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(ty)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

pub fn cells(kind: &str, v: &Value, name: String) -> Vec<Value> {
    let mut out = vec![json!(name)];
    match kind {
        "ReplicaSet" => {
            out.extend([
                json!(int(v, "/spec/replicas")),
                json!(int(v, "/status/replicas")),
                json!(int(v, "/status/readyReplicas")),
                json!(age(v)),
            ]);
            out.extend(template_cells(v, "/spec/template", Some("/spec/selector")));
        }
        "StatefulSet" => {
            out.extend([
                json!(format!(
                    "{}/{}",
                    int(v, "/status/readyReplicas"),
                    int(v, "/spec/replicas")
                )),
                json!(age(v)),
            ]);
            out.extend(template_cells(v, "/spec/template", None));
        }
        "DaemonSet" => {
            let selector: Vec<String> = v
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            out.extend([
                json!(int(v, "/status/desiredNumberScheduled")),
                json!(int(v, "/status/currentNumberScheduled")),
                json!(int(v, "/status/numberReady")),
                json!(int(v, "/status/updatedNumberScheduled")),
                json!(int(v, "/status/numberAvailable")),
                json!(or_none(selector.join(","))),
                json!(age(v)),
            ]);
            out.extend(template_cells(v, "/spec/template", Some("/spec/selector")));
        }
        "ControllerRevision" => {
            let controller = arr(v, "/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|o| format!("{}/{}", s(o, "/kind").to_lowercase(), s(o, "/name")));
            out.extend([
                json!(controller.unwrap_or_else(|| "<none>".into())),
                json!(int(v, "/revision")),
                json!(age(v)),
            ]);
        }
        "Job" => {
            let status = if has_condition(v, "Complete") {
                "Complete"
            } else if has_condition(v, "Failed") {
                "Failed"
            } else if v
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|x| !x.is_null())
            {
                "Terminating"
            } else if has_condition(v, "SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else if has_condition(v, "FailureTarget") {
                "FailureTarget"
            } else if has_condition(v, "Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let succeeded = int(v, "/status/succeeded");
            let completions = match v.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(n) => format!("{succeeded}/{n}"),
                None => match int(v, "/spec/parallelism") {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            let duration = match (
                str_at(v, "/status/startTime").and_then(parse_time),
                str_at(v, "/status/completionTime").and_then(parse_time),
            ) {
                (None, _) => String::new(),
                (Some(_), None) => human_duration(since(v, "/status/startTime").unwrap_or(0)),
                (Some(a), Some(b)) => human_duration(b.as_second() - a.as_second()),
            };
            out.extend([
                json!(status),
                json!(completions),
                json!(duration),
                json!(age(v)),
            ]);
            out.extend(template_cells(v, "/spec/template", Some("/spec/selector")));
        }
        "CronJob" => {
            let suspend = match v.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let last = since(v, "/status/lastScheduleTime")
                .map(human_duration)
                .unwrap_or_else(|| "<none>".into());
            out.extend([
                json!(s(v, "/spec/schedule")),
                json!(or_none(s(v, "/spec/timeZone"))),
                json!(suspend),
                json!(arr(v, "/status/active").len()),
                json!(last),
                json!(age(v)),
            ]);
            out.extend(template_cells(
                v,
                "/spec/jobTemplate/spec/template",
                Some("/spec/jobTemplate/spec/selector"),
            ));
        }
        _ => out.push(json!(age(v))),
    }
    out
}
