//! What the kubelet reports in `pods/status`: the pod phase (the kubelet's `getPhase`), the
//! conditions, and one status per container, computed from what the kubelet knows of its
//! processes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// A point in time as the API writes it (seconds, UTC).
pub fn api_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One state of a container, as `containerStatuses[].state` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: jiff::Timestamp,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: Option<String>,
        started_at: Option<jiff::Timestamp>,
        finished_at: jiff::Timestamp,
        container_id: String,
    },
}

impl RunState {
    pub fn to_json(&self) -> Value {
        match self {
            RunState::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            RunState::Running { started_at } => {
                json!({ "running": { "startedAt": api_time(*started_at) } })
            }
            RunState::Terminated {
                exit_code,
                signal,
                reason,
                message,
                started_at,
                finished_at,
                container_id,
            } => {
                let mut t = json!({
                    "exitCode": exit_code,
                    "reason": reason,
                    "finishedAt": api_time(*finished_at),
                    "containerID": container_id,
                });
                if let Some(s) = started_at {
                    t["startedAt"] = json!(api_time(*s));
                }
                if let Some(s) = signal {
                    t["signal"] = json!(s);
                }
                if let Some(m) = message {
                    t["message"] = json!(m);
                }
                json!({ "terminated": t })
            }
        }
    }
}

/// What the kubelet knows of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    /// The image's ID once a root was made from it (empty before, as the kubelet shows it).
    pub image_id: String,
    pub state: RunState,
    pub last_state: Option<RunState>,
    pub restart_count: i32,
    pub ready: bool,
    /// The startup probe passed (or there is none) and the process runs.
    pub started: bool,
    pub container_id: Option<String>,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRuntime {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            state: RunState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            container_id: None,
        }
    }

    fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "state": self.state.to_json(),
            "lastState": self.last_state.as_ref().map_or(json!({}), RunState::to_json),
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
        });
        if let Some(id) = &self.container_id {
            v["containerID"] = json!(id);
        }
        v
    }
}

/// Which container of a pod: an init container or an app container, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub init: bool,
    pub index: usize,
}

/// What the kubelet knows of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRuntime {
    /// `Always` (the default), `OnFailure` or `Never`.
    pub restart_policy: String,
    pub sandbox_ready: bool,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Ipv4Addr,
    pub start_time: jiff::Timestamp,
    pub containers: Vec<ContainerRuntime>,
    /// Run one after the other, each to success, before the app containers start.
    pub init_containers: Vec<ContainerRuntime>,
    /// `Guaranteed`, `Burstable` or `BestEffort` (see [`qos_class`]).
    pub qos_class: &'static str,
    /// Why the pod cannot start yet (a missing ConfigMap, no free IP …), shown as the
    /// containers' waiting message.
    pub blocked: Option<String>,
}

impl PodRuntime {
    pub fn slot_mut(&mut self, slot: Slot) -> &mut ContainerRuntime {
        if slot.init {
            &mut self.init_containers[slot.index]
        } else {
            &mut self.containers[slot.index]
        }
    }

    /// Every init container ran to success.
    pub fn initialized(&self) -> bool {
        self.init_containers
            .iter()
            .all(|c| matches!(c.state, RunState::Terminated { exit_code: 0, .. }))
    }

    /// An init container failed for good (restartPolicy Never).
    fn init_failed(&self) -> bool {
        self.restart_policy == "Never"
            && self.init_containers.iter().any(
                |c| matches!(c.state, RunState::Terminated { exit_code, .. } if exit_code != 0),
            )
    }
}

/// The pod's QoS class from its containers' resources, as the API computes it: no requests
/// or limits anywhere is `BestEffort`; cpu and memory limits on every container, equal to the
/// requests where those are given (compared as written, `1` ≠ `1000m`), is `Guaranteed`;
/// anything else `Burstable`.
pub fn qos_class(spec: &k8s_openapi::api::core::v1::PodSpec) -> &'static str {
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        let res = c.resources.clone().unwrap_or_default();
        let limits = res.limits.unwrap_or_default();
        let requests = res.requests.unwrap_or_default();
        any |= !limits.is_empty() || !requests.is_empty();
        for r in ["cpu", "memory"] {
            let Some(limit) = limits.get(r) else {
                guaranteed = false;
                continue;
            };
            if requests.get(r).is_some_and(|q| q != limit) {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The pod phase from the container states, as the kubelet's `getPhase` decides it.
pub fn phase(rt: &PodRuntime) -> &'static str {
    if rt.init_failed() {
        return "Failed";
    }
    if !rt.initialized() {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for c in &rt.containers {
        match &c.state {
            RunState::Running { .. } => running += 1,
            RunState::Terminated { exit_code, .. } => {
                stopped += 1;
                if *exit_code == 0 {
                    succeeded += 1;
                }
            }
            RunState::Waiting { .. } => {
                if c.last_state.is_some() {
                    stopped += 1;
                } else {
                    waiting += 1;
                }
            }
        }
    }
    if !rt.sandbox_ready || waiting > 0 || rt.containers.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match rt.restart_policy.as_str() {
            "Never" if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            "OnFailure" if stopped == succeeded => "Succeeded",
            _ => "Running",
        };
    }
    "Pending"
}

/// The conditions; `previous` are the ones the API holds, whose transition times are kept
/// when a condition's status did not change (and whose PodScheduled is carried over).
pub fn conditions(rt: &PodRuntime, previous: &[Value], now: jiff::Timestamp) -> Vec<Value> {
    let prev: BTreeMap<&str, &Value> = previous
        .iter()
        .filter_map(|c| Some((c.get("type")?.as_str()?, c)))
        .collect();
    let unready: Vec<&str> = rt
        .containers
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let terminal = matches!(phase(rt), "Succeeded" | "Failed");
    let containers_ready = unready.is_empty() && !terminal;
    let not_ready = (!containers_ready).then(|| {
        if terminal {
            ("PodCompleted".to_string(), String::new())
        } else {
            (
                "ContainersNotReady".to_string(),
                format!("containers with unready status: [{}]", unready.join(" ")),
            )
        }
    });
    let mut out = Vec::new();
    let mut push = |ty: &str, status: bool, why: Option<(String, String)>| {
        let s = if status { "True" } else { "False" };
        let since = prev
            .get(ty)
            .filter(|p| p.get("status").and_then(Value::as_str) == Some(s))
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(api_time(now)));
        let mut c = json!({
            "type": ty,
            "status": s,
            "lastProbeTime": null,
            "lastTransitionTime": since,
        });
        if let Some((reason, message)) = why {
            c["reason"] = json!(reason);
            if !message.is_empty() {
                c["message"] = json!(message);
            }
        }
        out.push(c);
    };
    push("PodReadyToStartContainers", rt.sandbox_ready, None);
    let initialized = rt.initialized();
    let pending_init: Vec<&str> = rt
        .init_containers
        .iter()
        .filter(|c| !matches!(c.state, RunState::Terminated { exit_code: 0, .. }))
        .map(|c| c.name.as_str())
        .collect();
    push(
        "Initialized",
        initialized,
        (!initialized).then(|| {
            (
                "ContainersNotInitialized".to_string(),
                format!(
                    "containers with incomplete status: [{}]",
                    pending_init.join(" ")
                ),
            )
        }),
    );
    push("Ready", containers_ready, not_ready.clone());
    push("ContainersReady", containers_ready, not_ready);
    if let Some(p) = prev.get("PodScheduled") {
        out.push((*p).clone());
    } else {
        push("PodScheduled", true, None);
    }
    out
}

/// The whole `status` object for a merge patch of `pods/status`.
pub fn pod_status(rt: &PodRuntime, previous_conditions: &[Value], now: jiff::Timestamp) -> Value {
    let mut status = json!({
        "phase": phase(rt),
        "conditions": conditions(rt, previous_conditions, now),
        "hostIP": rt.host_ip.to_string(),
        "hostIPs": [{ "ip": rt.host_ip.to_string() }],
        "startTime": api_time(rt.start_time),
        "qosClass": rt.qos_class,
        "containerStatuses": rt.containers.iter().map(ContainerRuntime::to_json).collect::<Vec<_>>(),
    });
    if !rt.init_containers.is_empty() {
        status["initContainerStatuses"] = json!(
            rt.init_containers
                .iter()
                .map(ContainerRuntime::to_json)
                .collect::<Vec<_>>()
        );
    }
    if let Some(ip) = rt.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{ "ip": ip.to_string() }]);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn pod(policy: &str, states: Vec<(RunState, Option<RunState>, bool)>) -> PodRuntime {
        PodRuntime {
            restart_policy: policy.into(),
            sandbox_ready: true,
            pod_ip: Some(Ipv4Addr::new(10, 244, 0, 2)),
            host_ip: Ipv4Addr::new(172, 18, 0, 2),
            start_time: ts("2026-01-01T00:00:00Z"),
            containers: states
                .into_iter()
                .enumerate()
                .map(|(i, (state, last, ready))| ContainerRuntime {
                    state,
                    last_state: last,
                    ready,
                    ..ContainerRuntime::new(&format!("c{i}"), "busybox")
                })
                .collect(),
            blocked: None,
            init_containers: vec![],
            qos_class: "BestEffort",
        }
    }

    fn running() -> RunState {
        RunState::Running {
            started_at: ts("2026-01-01T00:00:01Z"),
        }
    }

    fn exited(code: i32) -> RunState {
        RunState::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Some(ts("2026-01-01T00:00:01Z")),
            finished_at: ts("2026-01-01T00:00:02Z"),
            container_id: "minikind://abc".into(),
        }
    }

    fn crash_loop() -> RunState {
        RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: Some("back-off 10s restarting failed container".into()),
        }
    }

    #[test]
    fn phases_like_get_phase() {
        assert_eq!(
            phase(&pod("Always", vec![(running(), None, true)])),
            "Running"
        );
        assert_eq!(
            phase(&pod(
                "Always",
                vec![(ContainerRuntime::new("x", "y").state, None, false)]
            )),
            "Pending"
        );
        // A crash-looping container counts as stopped, so the pod stays Running.
        assert_eq!(
            phase(&pod("Always", vec![(crash_loop(), Some(exited(1)), false)])),
            "Running"
        );
        assert_eq!(
            phase(&pod("Never", vec![(exited(0), None, false)])),
            "Succeeded"
        );
        assert_eq!(
            phase(&pod(
                "Never",
                vec![(exited(0), None, false), (exited(2), None, false)]
            )),
            "Failed"
        );
        assert_eq!(
            phase(&pod("OnFailure", vec![(exited(2), None, false)])),
            "Running"
        );
        let mut no_sandbox = pod("Always", vec![(running(), None, true)]);
        no_sandbox.sandbox_ready = false;
        assert_eq!(phase(&no_sandbox), "Pending");
    }

    #[test]
    fn qos_classes() {
        let spec = |v: serde_json::Value| -> k8s_openapi::api::core::v1::PodSpec {
            serde_json::from_value(json!({"containers": [v]})).unwrap()
        };
        assert_eq!(qos_class(&spec(json!({"name": "a"}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(
                json!({"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(
                json!({"name": "a", "resources": {"requests": {"memory": "70Mi"}, "limits": {"memory": "170Mi"}}})
            )),
            "Burstable"
        );
    }

    #[test]
    fn init_containers_hold_the_pod_pending_and_fail_it_with_never() {
        let mut rt = pod(
            "Always",
            vec![(ContainerRuntime::new("x", "y").state, None, false)],
        );
        rt.init_containers = vec![ContainerRuntime {
            state: running(),
            ..ContainerRuntime::new("init", "busybox")
        }];
        assert_eq!(phase(&rt), "Pending");
        let cs = conditions(&rt, &[], ts("2026-01-01T00:00:00Z"));
        let init = cs.iter().find(|c| c["type"] == "Initialized").unwrap();
        assert_eq!(init["status"], "False");
        assert_eq!(init["message"], "containers with incomplete status: [init]");
        rt.init_containers[0].state = exited(0);
        rt.containers[0].state = running();
        assert_eq!(phase(&rt), "Running");
        assert!(pod_status(&rt, &[], ts("2026-01-01T00:00:00Z"))["initContainerStatuses"][0]["state"]["terminated"].is_object());
        rt.restart_policy = "Never".into();
        rt.init_containers[0].state = exited(1);
        assert_eq!(phase(&rt), "Failed");
    }

    #[test]
    fn conditions_name_unready_containers_and_keep_transition_times() {
        let now = ts("2026-01-01T00:01:00Z");
        let rt = pod(
            "Always",
            vec![(running(), None, true), (running(), None, false)],
        );
        let previous = vec![
            json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-12-31T23:59:59Z"}),
            json!({"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
        ];
        let cs = conditions(&rt, &previous, now);
        let get = |t: &str| cs.iter().find(|c| c["type"] == t).unwrap().clone();
        assert_eq!(get("Ready")["status"], "False");
        assert_eq!(get("Ready")["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(
            get("Ready")["message"],
            "containers with unready status: [c1]"
        );
        assert_eq!(
            get("ContainersReady")["lastTransitionTime"],
            "2026-01-01T00:01:00Z"
        );
        assert_eq!(
            get("PodScheduled")["lastTransitionTime"],
            "2025-12-31T23:59:59Z"
        );
        let ready = pod("Always", vec![(running(), None, true)]);
        let cs = conditions(&ready, &previous, now);
        let r = cs.iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(
            (r["status"].as_str(), r.get("reason")),
            (Some("True"), None)
        );
    }

    #[test]
    fn status_object_carries_ips_and_container_states() {
        let rt = pod("Always", vec![(crash_loop(), Some(exited(1)), false)]);
        let s = pod_status(&rt, &[], ts("2026-01-01T00:01:00Z"));
        assert_eq!(s["podIP"], "10.244.0.2");
        assert_eq!(s["podIPs"][0]["ip"], "10.244.0.2");
        assert_eq!(s["hostIP"], "172.18.0.2");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(
            c["lastState"]["terminated"]["startedAt"],
            "2026-01-01T00:00:01Z"
        );
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
    }
}
