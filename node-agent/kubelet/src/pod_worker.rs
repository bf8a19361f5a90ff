//! One pod's worker: makes the sandbox, runs the containers, reports the status to
//! `pods/status`, and when the pod is deleted stops the containers (SIGTERM, the grace
//! period, SIGKILL), removes everything of the pod and then the object itself.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow};
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::Kubelet;
use super::container::{self, ContainerCtx};
use super::env::{self, EnvSources};
use super::events;
use super::handles::{ContainerHandle, PodEvent, PodHandle, ProcessTemplate, RunInfo, handle_for};
use super::probe_worker::{self, ProbeKind, WorkerCtx};
use super::sandbox::{self, Sandbox};
use super::status::{self, RunState, Slot};

/// How the worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The pod was deleted and everything of it removed.
    Removed,
    /// The kubelet stopped; the sandbox stays for the next kubelet.
    Shutdown,
}

fn terminating(pod: &Option<Pod>) -> bool {
    pod.as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

/// The grace period of a deletion: the one the API recorded, else the pod's.
fn grace_of(pod: &Option<Pod>, last: &Pod) -> Duration {
    let p = pod.as_ref().unwrap_or(last);
    let secs = p
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(secs as u64)
}

/// Makes the handle for a pod the kubelet starts working on.
pub fn new_handle(k: &Kubelet, pod: &Pod) -> Arc<PodHandle> {
    handle_for(pod, &k.cfg.root, k.cfg.node_ip)
}

/// Patches `pods/status` whenever the runtime state changes, until `done`.
async fn write_status(
    k: Arc<Kubelet>,
    handle: Arc<PodHandle>,
    pod_rx: watch::Receiver<Option<Pod>>,
    done: tokio_util::sync::CancellationToken,
) {
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &handle.namespace);
    let mut last: Option<Value> = None;
    loop {
        let rt = handle.runtime();
        let previous: Vec<Value> = pod_rx
            .borrow()
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| serde_json::to_value(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut st = status::pod_status(&rt, &previous, jiff::Timestamp::now());
        // As the kubelet's prober manager does whenever the pod's status is computed: a
        // running container without a successful readiness result yet is probed now.
        {
            let triggers = handle
                .readiness_triggers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            probe_worker::trigger_unready(&rt.containers, &triggers);
        }
        if let Some(msg) = &rt.blocked {
            for c in st["containerStatuses"].as_array_mut().into_iter().flatten() {
                if c.pointer("/state/waiting/reason").and_then(Value::as_str)
                    == Some("ContainerCreating")
                {
                    c["state"]["waiting"]["message"] = json!(msg);
                }
            }
        }
        // Transition times are "now" for changed conditions: compare without them.
        let comparable = strip_times(&st);
        if last.as_ref() != Some(&comparable) {
            let patch = json!({ "status": st });
            match api
                .patch_status(&handle.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => last = Some(comparable),
                Err(kube::Error::Api(e)) if e.code == 404 => return,
                Err(e) => {
                    tracing::warn!(pod = %handle.name, "patching the pod status: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        // The kubelet also recomputes every pod's status on its periodic resync (a minute,
        // jittered up to half of it).
        let resync = RESYNC.mul_f64(1.0 + rand::random::<f64>() / 2.0);
        tokio::select! {
            _ = handle.changed.notified() => {}
            _ = tokio::time::sleep(resync) => {}
            _ = done.cancelled() => return,
        }
    }
}

/// The kubelet's pod resync period (`syncFrequency`).
const RESYNC: Duration = Duration::from_secs(60);

fn strip_times(st: &Value) -> Value {
    let mut v = st.clone();
    for c in v["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(o) = c.as_object_mut() {
            o.remove("lastTransitionTime");
        }
    }
    v
}

/// The default/kubernetes service as pods reach it, if it exists.
async fn master_service(k: &Kubelet) -> Option<env::MasterService> {
    let api: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(k.client.clone(), "default");
    let svc = api.get_opt("kubernetes").await.ok()??;
    let spec = svc.spec?;
    let ip = spec.cluster_ip?.parse().ok()?;
    let port = spec
        .ports?
        .iter()
        .find(|p| p.name.as_deref() == Some("https"))
        .or(None)
        .map(|p| p.port)
        .unwrap_or(443);
    Some(env::MasterService {
        ip,
        port: u16::try_from(port).ok()?,
    })
}

/// The ConfigMaps and Secrets the containers' environments use.
async fn env_sources(k: &Kubelet, pod: &Pod) -> Result<EnvSources> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = EnvSources::default();
    let mut cm_names = Vec::new();
    let mut secret_names = Vec::new();
    if let Some(s) = &pod.spec {
        for c in s
            .init_containers
            .iter()
            .flatten()
            .chain(s.containers.iter())
        {
            cm_names.extend(env::referenced_config_maps(c));
            secret_names.extend(env::referenced_secrets(c));
        }
    }
    for name in cm_names {
        if out.config_maps.contains_key(&name) {
            continue;
        }
        if let Some(data) = sandbox::fetch_config_map(k, ns, &name).await? {
            out.config_maps.insert(name, data);
        }
    }
    for name in secret_names {
        if out.secrets.contains_key(&name) {
            continue;
        }
        if let Some(data) = sandbox::fetch_secret(k, ns, &name).await? {
            out.secrets.insert(name, data);
        }
    }
    Ok(out)
}

/// Builds a container's template (namespaces, mounts, the kubelet's environment); each run
/// adds its root and the image's configuration.
fn template_for(
    pod: &Pod,
    c: &Container,
    sb: &Sandbox,
    k: &Kubelet,
    master: Option<env::MasterService>,
    cms: &EnvSources,
) -> Result<ProcessTemplate> {
    let ctx = sb.context(c)?;
    let hostname = sb
        .hostname
        .clone()
        .unwrap_or_else(|| k.cfg.node_name.clone());
    let pod_ip = Some(sb.ip);
    let kubelet_env = env::container_env(pod, c, &hostname, pod_ip, k.cfg.node_ip, master, cms)?;
    Ok(ProcessTemplate {
        ctx,
        kubelet_env,
        error: None,
        process: None,
    })
}

/// Records warning events (`DNSConfigForming`, `FailedMount`, …) on the pod, best effort.
pub async fn warn_event(k: &Kubelet, handle: &PodHandle, reason: &str, message: &str) {
    let who = (
        handle.namespace.clone(),
        handle.name.clone(),
        handle.uid.clone(),
    );
    let ev = PodEvent {
        warning: true,
        reason: "",
        message: message.to_string(),
        container: None,
    };
    post_event(k, &who, reason, &ev).await;
}

/// Records one event about the pod through the kubelet's correlator (see [`events`]).
async fn post_event(k: &Kubelet, who: &(String, String, String), reason: &str, ev: &PodEvent) {
    let (ns, name, uid) = who;
    let new = events::NewEvent {
        object: events::ObjectRef {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: ns.clone(),
            name: name.clone(),
            uid: uid.clone(),
            field_path: ev
                .container
                .as_ref()
                .map(|c| format!("spec.containers{{{c}}}")),
        },
        warning: ev.warning,
        reason: reason.to_string(),
        message: ev.message.clone(),
        component: "kubelet".into(),
        host: k.cfg.node_name.clone(),
    };
    let record = k
        .events
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .correlate(&new, jiff::Timestamp::now());
    let Some(record) = record else {
        tracing::debug!("event {reason} about {ns}/{name} dropped by the spam filter");
        return;
    };
    if let Err(e) = events::send(&k.client, ns, record).await {
        tracing::debug!("recording event {reason}: {e:#}");
    }
}

/// Posts the pod's events until its handle is gone.
async fn record_events(
    k: Arc<Kubelet>,
    who: (String, String, String),
    mut rx: mpsc::UnboundedReceiver<PodEvent>,
) {
    while let Some(ev) = rx.recv().await {
        post_event(&k, &who, ev.reason, &ev).await;
    }
}

/// Runs one pod until it is deleted (and removed) or the kubelet stops. `found_at_start`: the
/// pod was bound to this node when the kubelet started (its first listing), so its probe
/// workers spread their first probe (see [`probe_worker`]).
pub async fn run(
    k: Arc<Kubelet>,
    handle: Arc<PodHandle>,
    mut pod_rx: watch::Receiver<Option<Pod>>,
    found_at_start: bool,
) -> Outcome {
    let Some(mut last_pod) = pod_rx.borrow().clone() else {
        return Outcome::Removed;
    };
    if let Some(rx) = handle.take_events() {
        let who = (
            handle.namespace.clone(),
            handle.name.clone(),
            handle.uid.clone(),
        );
        tokio::spawn(record_events(k.clone(), who, rx));
    }
    if is_terminal(&last_pod) {
        // A pod that already ran to its end (seen again after a kubelet restart) is not run
        // again; its status stays as reported until it is deleted.
        return finish_terminal(&k, &handle, pod_rx).await;
    }
    let status_done = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn(write_status(
        k.clone(),
        handle.clone(),
        pod_rx.clone(),
        status_done.clone(),
    ));

    // 1. The sandbox, retried until it can be made or the pod goes.
    let mut failures = 0u32;
    let sandbox = loop {
        if terminating(&pod_rx.borrow()) {
            break None;
        }
        match sandbox::prepare(&k, &last_pod).await {
            Ok(sb) => break Some(Arc::new(sb)),
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(pod = %handle.name, "preparing the sandbox: {msg}");
                if failures == 0 {
                    warn_event(&k, &handle, "FailedMount", &msg).await;
                }
                failures += 1;
                handle.update(|rt| rt.blocked = Some(msg));
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = pod_rx.changed() => {}
                    _ = k.shutdown.cancelled() => {
                        status_done.cancel();
                        let _ = writer.await;
                        return Outcome::Shutdown;
                    }
                }
                if let Some(p) = pod_rx.borrow().clone() {
                    last_pod = p;
                }
            }
        }
    };

    // One stop signal for every container of the pod, carrying the grace period.
    let (stop_tx, stop_rx) = watch::channel::<Option<Duration>>(None);
    // The probe workers live until the containers are stopped.
    let probes_stop = tokio_util::sync::CancellationToken::new();
    let _probes_stop_guard = probes_stop.clone().drop_guard();
    let mut starter = None;
    if let Some(sb) = &sandbox {
        for w in &sb.dns_warnings {
            warn_event(&k, &handle, w.reason, &w.message).await;
        }
        *handle.sandbox.write().unwrap_or_else(|p| p.into_inner()) = Some(sb.clone());
        handle.update(|rt| {
            rt.blocked = None;
            rt.sandbox_ready = true;
            rt.pod_ip = Some(sb.ip);
        });
        // 2. The containers: init containers one after the other, each to success, then
        // the app containers together.
        let master = master_service(&k).await;
        let cms = match env_sources(&k, &last_pod).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pod = %handle.name, "reading configmaps and secrets for the environment: {e:#}");
                EnvSources::default()
            }
        };
        let spec = last_pod.spec.clone().unwrap_or_default();
        let grace =
            Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
        let restart_policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        // Init containers are retried until they succeed unless the pod never restarts.
        let init_policy = if restart_policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let initial = handle.runtime();
        let pod_object = Arc::new(last_pod.clone());
        let mut inits = Vec::new();
        let mut apps = Vec::new();
        let all = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                (
                    Slot {
                        init: true,
                        index: i,
                    },
                    c,
                )
            })
            .chain(spec.containers.iter().enumerate().map(|(i, c)| {
                (
                    Slot {
                        init: false,
                        index: i,
                    },
                    c,
                )
            }));
        for (slot, c) in all {
            let template = template_for(&last_pod, c, sb, &k, master, &cms)
                .unwrap_or_else(|e| ProcessTemplate::failed(format!("{e:#}")));
            let known = if slot.init {
                &initial.init_containers
            } else {
                &initial.containers
            };
            let restart_count = known.get(slot.index).map_or(0, |c| c.restart_count);
            let ch = Arc::new(ContainerHandle::new(
                &c.name,
                handle.log_root.join(&c.name),
                RunInfo {
                    restart: restart_count,
                    running: false,
                    pid: None,
                },
                grace,
                template,
            ));
            handle
                .containers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(c.name.clone(), ch.clone());
            let (kill_tx, kills) = mpsc::unbounded_channel();
            // Probe workers for app containers (the kubelet does not probe init containers
            // that run to completion).
            if !slot.init {
                for kind in [
                    ProbeKind::Startup,
                    ProbeKind::Readiness,
                    ProbeKind::Liveness,
                ] {
                    let Some(probe) = kind.of(c) else { continue };
                    let trigger = Arc::new(Notify::new());
                    if kind == ProbeKind::Readiness {
                        handle
                            .readiness_triggers
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((slot.index, trigger.clone()));
                    }
                    tokio::spawn(probe_worker::run(WorkerCtx {
                        kind,
                        probe: probe.clone(),
                        pod: handle.clone(),
                        slot,
                        spec: c.clone(),
                        handle: ch.clone(),
                        pod_ip: IpAddr::V4(sb.ip),
                        restart_policy: restart_policy.clone(),
                        pod_rx: pod_rx.clone(),
                        kubelet_started: k.started,
                        found_at_start,
                        trigger,
                        kill: kill_tx.clone(),
                        stop: probes_stop.clone(),
                    }));
                }
            }
            let ctx = ContainerCtx {
                pod: handle.clone(),
                slot,
                spec: c.clone(),
                handle: ch,
                restart_policy: if slot.init {
                    init_policy.to_string()
                } else {
                    restart_policy.clone()
                },
                backoff: k.cfg.backoff,
                pod_ip: IpAddr::V4(sb.ip),
                restart_count,
                kills,
                pod_object: pod_object.clone(),
                pod_dir: sb.dir.clone(),
                roots: k.cfg.roots.clone(),
            };
            if slot.init {
                inits.push(ctx);
            } else {
                apps.push(ctx);
            }
        }
        let (pod, stop) = (handle.clone(), stop_rx.clone());
        starter = Some(tokio::spawn(async move {
            for ctx in inits {
                let index = ctx.slot.index;
                container::run(ctx, stop.clone()).await;
                let succeeded = matches!(
                    pod.runtime().init_containers[index].state,
                    RunState::Terminated { exit_code: 0, .. }
                );
                if stop.borrow().is_some() || !succeeded {
                    return;
                }
            }
            let runners: Vec<_> = apps
                .into_iter()
                .map(|ctx| tokio::spawn(container::run(ctx, stop.clone())))
                .collect();
            for r in runners {
                let _ = r.await;
            }
        }));
    }

    // 3. Wait for the deletion (or the kubelet's stop), refreshing volumes now and then.
    let mut refresh = tokio::time::interval(k.cfg.volume_refresh);
    refresh.tick().await;
    let shutdown = loop {
        if terminating(&pod_rx.borrow()) {
            break false;
        }
        tokio::select! {
            r = pod_rx.changed() => {
                if r.is_err() {
                    break false;
                }
                if let Some(p) = pod_rx.borrow().clone() {
                    last_pod = p;
                }
            }
            _ = refresh.tick(), if sandbox.is_some() => {
                if let Some(sb) = &sandbox
                    && let Err(e) = sandbox::sync_volumes(&k, &last_pod, &sb.dir).await
                {
                    tracing::debug!(pod = %handle.name, "refreshing volumes: {e:#}");
                }
                // The token is renewed here before it expires (token manager).
                if let Some(sa) = sandbox.as_ref().and_then(|sb| sb.service_account.as_ref())
                    && let Err(e) = sandbox::refresh_service_account_token(&k, &last_pod, sa).await
                {
                    tracing::warn!(pod = %handle.name, "refreshing the service-account token: {e:#}");
                }
            }
            _ = k.shutdown.cancelled() => break true,
        }
    };

    // 4. Stop the containers.
    let grace = if shutdown {
        grace_of(&pod_rx.borrow(), &last_pod).min(k.cfg.shutdown_grace)
    } else {
        grace_of(&pod_rx.borrow(), &last_pod)
    };
    let _ = stop_tx.send(Some(grace));
    if let Some(s) = starter {
        let _ = s.await;
    }
    probes_stop.cancel();
    if shutdown {
        // A stopping kubelet leaves the reported status as it was; the next one reports anew.
        status_done.cancel();
        let _ = writer.await;
        return Outcome::Shutdown;
    }
    status_done.cancel();
    let _ = writer.await;

    // 5. Remove everything, then the object.
    if let Err(e) = sandbox::teardown(&k, &handle.uid, Some(handle.log_root.clone())).await {
        tracing::warn!(pod = %handle.name, "tearing down the sandbox: {e:#}");
    }
    let still_there = pod_rx.borrow().is_some();
    if still_there && let Err(e) = delete_object(&k, &handle).await {
        tracing::warn!(pod = %handle.name, "deleting the pod object: {e:#}");
    }
    Outcome::Removed
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Waits for a finished pod's deletion, then removes what is left of it and the object.
async fn finish_terminal(
    k: &Arc<Kubelet>,
    handle: &Arc<PodHandle>,
    mut pod_rx: watch::Receiver<Option<Pod>>,
) -> Outcome {
    // The finished containers' logs stay readable.
    let runtime = handle.runtime();
    for c in runtime.init_containers.iter().chain(&runtime.containers) {
        let ch = Arc::new(ContainerHandle::new(
            &c.name,
            handle.log_root.join(&c.name),
            RunInfo {
                restart: c.restart_count,
                running: false,
                pid: None,
            },
            Duration::ZERO,
            ProcessTemplate::failed("the pod has finished".into()),
        ));
        handle
            .containers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(c.name.clone(), ch);
    }
    loop {
        if terminating(&pod_rx.borrow()) {
            break;
        }
        tokio::select! {
            r = pod_rx.changed() => if r.is_err() { break },
            _ = k.shutdown.cancelled() => return Outcome::Shutdown,
        }
    }
    if let Err(e) = sandbox::teardown(k, &handle.uid, Some(handle.log_root.clone())).await {
        tracing::warn!(pod = %handle.name, "tearing down the sandbox: {e:#}");
    }
    let still_there = pod_rx.borrow().is_some();
    if still_there && let Err(e) = delete_object(k, handle).await {
        tracing::warn!(pod = %handle.name, "deleting the pod object: {e:#}");
    }
    Outcome::Removed
}

/// Deletes the pod with grace 0, only if it is still the pod with our uid.
async fn delete_object(k: &Kubelet, handle: &PodHandle) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &handle.namespace);
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(handle.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&handle.name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(anyhow!(
            "deleting pod {}/{}: {e}",
            handle.namespace,
            handle.name
        )),
    }
}
