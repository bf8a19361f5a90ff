//! The handles the pod worker, the container runners and the probe workers share: a pod's and
//! its containers' state as exec, logs and probes see it, the process template exec and probes
//! start from, and the kill requests probes send to a container's runner. A module of its own so
//! that those three depend on it rather than on each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{Notify, mpsc, watch};

use super::env::Env;
use super::sandbox::Sandbox;
use super::spawn::{PodContext, ProcessSpec};
use super::status::{self, ContainerRuntime, PodRuntime, RunState};

/// What the logs endpoint needs to know of a container's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunInfo {
    /// The restart count of the current (or last) run; its log is `<restart>.log`.
    pub restart: i32,
    pub running: bool,
    /// The current run's first process, as the node sees it: the namespaces and root that
    /// exec and probes enter.
    pub pid: Option<i32>,
}

/// A container of a running pod, as exec and logs see it.
pub struct ContainerHandle {
    pub name: String,
    pub log_dir: PathBuf,
    pub run: watch::Sender<RunInfo>,
    /// The grace period for stops the kubelet decides on (liveness failures).
    pub grace: Duration,
    template: Mutex<ProcessTemplate>,
}

impl ContainerHandle {
    pub fn new(
        name: &str,
        log_dir: PathBuf,
        run: RunInfo,
        grace: Duration,
        template: ProcessTemplate,
    ) -> ContainerHandle {
        ContainerHandle {
            name: name.to_string(),
            log_dir,
            run: watch::Sender::new(run),
            grace,
            template: Mutex::new(template),
        }
    }

    pub fn template(&self) -> ProcessTemplate {
        self.template
            .lock()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Records the process of the run that starts now (exec and probes reuse it).
    pub fn set_process(&self, process: Option<ProcessSpec>) {
        let mut t = self.template.lock().unwrap_or_else(|p| p.into_inner());
        t.process = process;
    }
}

/// A pod the kubelet runs.
pub struct PodHandle {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    runtime: Mutex<PodRuntime>,
    pub(crate) changed: Notify,
    events: mpsc::UnboundedSender<PodEvent>,
    events_rx: Mutex<Option<mpsc::UnboundedReceiver<PodEvent>>>,
    pub sandbox: RwLock<Option<Arc<Sandbox>>>,
    pub containers: RwLock<BTreeMap<String, Arc<ContainerHandle>>>,
    pub log_root: PathBuf,
    /// The manual triggers of the readiness probe workers, by app container index.
    pub(crate) readiness_triggers: Mutex<Vec<(usize, Arc<Notify>)>>,
}

/// An event about the pod (or one of its containers) for `kubectl describe`.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
    /// The container it is about (`spec.containers{name}`).
    pub container: Option<String>,
}

impl PodHandle {
    /// Records an event; it is posted to the API in the background.
    pub fn event(
        &self,
        warning: bool,
        reason: &'static str,
        message: String,
        container: Option<&str>,
    ) {
        let _ = self.events.send(PodEvent {
            warning,
            reason,
            message,
            container: container.map(str::to_string),
        });
    }

    /// Changes the pod's runtime state and wakes the status writer.
    pub fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        {
            let mut rt = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut rt);
        }
        self.changed.notify_one();
    }

    /// The receiving end of the pod's events (once: the event recorder takes it).
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<PodEvent>> {
        self.events_rx.lock().ok().and_then(|mut r| r.take())
    }

    pub fn runtime(&self) -> PodRuntime {
        self.runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn container(&self, name: &str) -> Option<Arc<ContainerHandle>> {
        self.containers
            .read()
            .ok()
            .and_then(|c| c.get(name).cloned())
    }

    /// The container exec goes to when none is named: the first one.
    pub fn default_container(&self) -> Option<String> {
        self.runtime().containers.first().map(|c| c.name.clone())
    }
}

/// What a container's runs start from, and what exec and probes reuse of the current run.
#[derive(Debug, Clone, Default)]
pub struct ProcessTemplate {
    /// The pod's namespaces and the container's mounts.
    pub ctx: PodContext,
    /// The kubelet's environment of the container (a run adds the image's under it).
    pub kubelet_env: Env,
    /// Why the container cannot be set up (a missing volume or ConfigMap, …), if so.
    pub error: Option<String>,
    /// The current (or last) run's process: command line, whole environment, directory,
    /// user and privileges.
    pub process: Option<ProcessSpec>,
}

impl ProcessTemplate {
    /// A template that only says why the container cannot run.
    pub fn failed(error: String) -> ProcessTemplate {
        ProcessTemplate {
            error: Some(error),
            ..Default::default()
        }
    }
}

/// A request from a liveness or startup worker to kill one container run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    /// The run it is about; a stale request (the run already ended) is ignored.
    pub container_id: String,
    pub message: String,
}

/// The handle of `pod` on a node with the kubelet files under `root` and address `host_ip`.
pub fn handle_for(
    pod: &Pod,
    root: &std::path::Path,
    host_ip: std::net::Ipv4Addr,
) -> Arc<PodHandle> {
    let spec = pod.spec.clone().unwrap_or_default();
    // What the API holds from before a kubelet or node restart. A container it shows running
    // was stopped by that restart and is started again: one more restart, the last state
    // `Terminated`/`Unknown`/255, as the kubelet reports a container its runtime lost. One it
    // shows terminated (the old kubelet stopped it on its way out) restarts too, its
    // termination the last state.
    let now = jiff::Timestamp::now();
    // A finished pod's containers are not run again: nothing to count.
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let prior: BTreeMap<String, (i32, Option<RunState>)> = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| {
            let state = c.state.as_ref();
            let id = c.container_id.clone().unwrap_or_default();
            let carried = match (
                state.and_then(|st| st.running.as_ref()),
                state.and_then(|st| st.terminated.as_ref()),
            ) {
                (Some(r), _) if !finished => (
                    c.restart_count + 1,
                    Some(RunState::Terminated {
                        exit_code: 255,
                        signal: None,
                        reason: "Unknown".into(),
                        message: None,
                        started_at: r.started_at.as_ref().map(|t| t.0),
                        finished_at: now,
                        container_id: id,
                    }),
                ),
                // Stopped by the old kubelet on its way out: this start is a restart too.
                (None, Some(t)) if !finished && !id.is_empty() => (
                    c.restart_count + 1,
                    Some(RunState::Terminated {
                        exit_code: t.exit_code,
                        signal: t.signal,
                        reason: t.reason.clone().unwrap_or_else(|| "Error".into()),
                        message: t.message.clone(),
                        started_at: t.started_at.as_ref().map(|t| t.0),
                        finished_at: t.finished_at.as_ref().map_or(now, |t| t.0),
                        container_id: id,
                    }),
                ),
                _ => (c.restart_count, None),
            };
            (c.name.clone(), carried)
        })
        .collect();
    let runtime = |c: &Container| {
        let (restart_count, last_state) = prior.get(&c.name).cloned().unwrap_or_default();
        ContainerRuntime {
            restart_count,
            last_state,
            ..ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or(""))
        }
    };
    let containers = spec.containers.iter().map(runtime).collect();
    let init_containers = spec.init_containers.iter().flatten().map(runtime).collect();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .unwrap_or_else(jiff::Timestamp::now);
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let uid = uid_of(pod);
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    Arc::new(PodHandle {
        log_root: root.join("logs").join(format!("{ns}_{name}_{uid}")),
        uid,
        namespace: ns,
        name,
        runtime: Mutex::new(PodRuntime {
            restart_policy: spec
                .restart_policy
                .clone()
                .unwrap_or_else(|| "Always".into()),
            sandbox_ready: false,
            pod_ip: None,
            host_ip,
            start_time,
            containers,
            init_containers,
            qos_class: status::qos_class(&spec),
            blocked: None,
        }),
        changed: Notify::new(),
        events: events_tx,
        events_rx: Mutex::new(Some(events_rx)),
        sandbox: RwLock::new(None),
        containers: RwLock::new(BTreeMap::new()),
        readiness_triggers: Mutex::new(Vec::new()),
    })
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}
