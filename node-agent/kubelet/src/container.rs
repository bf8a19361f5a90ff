//! One container's life: start the process in the pod, copy its output to the log, kill it
//! when its liveness or startup probe worker says so, and when it exits restart it per
//! `restartPolicy` with the kubelet's back-off (showing `CrashLoopBackOff` while it waits),
//! until the pod is stopped.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};

use super::backoff::{Backoff, BackoffConfig};
use super::handles::{ContainerHandle, Kill, PodHandle, RunInfo};
use super::image_config;
use super::image_roots::{ImageNotPresent, InvalidImageName};
use super::logs::LogWriter;
use super::rootfs::{ContainerRoot, RootProvider, RootRequest};
use super::spawn::{self, ProcessSpec, RootOptions, Spawned};
use super::status::{RunState, Slot};

/// Everything one container runner needs.
pub struct ContainerCtx {
    pub pod: Arc<PodHandle>,
    /// Which of the pod's containers (init or app) this is.
    pub slot: Slot,
    pub spec: Container,
    pub handle: Arc<ContainerHandle>,
    pub restart_policy: String,
    pub backoff: BackoffConfig,
    pub pod_ip: std::net::IpAddr,
    /// The restart count to continue from (the API's, after a kubelet restart).
    pub restart_count: i32,
    /// Kill requests from the container's liveness and startup probe workers.
    pub kills: mpsc::UnboundedReceiver<Kill>,
    /// The pod as the API holds it (its security context, its name in messages).
    pub pod_object: Arc<Pod>,
    /// The pod's directory on the node.
    pub pod_dir: std::path::PathBuf,
    /// Where each run's root filesystem comes from.
    pub roots: Arc<dyn RootProvider>,
}

/// Go's `time.Duration` text (`10s`, `1m20s`, `5m0s`), as the kubelet's messages show it.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 {
        return format!("{millis}ms");
    }
    let frac = if millis > 0 {
        format!(".{:03}", millis).trim_end_matches('0').to_string()
    } else {
        String::new()
    };
    match (secs / 3600, (secs % 3600) / 60, secs % 60) {
        (0, 0, s) => format!("{s}{frac}s"),
        (0, m, s) => format!("{m}m{s}{frac}s"),
        (h, m, s) => format!("{h}h{m}m{s}{frac}s"),
    }
}

/// Signals the container's process group: SIGTERM, up to `grace` for it to go, then SIGKILL.
async fn stop_process(
    child: &mut tokio::process::Child,
    pgid: Option<i32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r,
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            child.wait().await
        }
    }
}

fn new_container_id() -> String {
    use rand::Rng;
    let bytes: [u8; 32] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("minikind://{hex}")
}

/// Why a run ended.
enum Ended {
    Exited(std::process::ExitStatus),
    /// The liveness (or startup) probe failed and the container was killed.
    Unhealthy(String, Option<std::process::ExitStatus>),
    /// The pod is being stopped.
    Stopped(Option<std::process::ExitStatus>),
    StartFailed(String),
    /// The container could not be made (`CreateContainerConfigError`,
    /// `CreateContainerError`): it stays waiting with that reason, and is tried again.
    NotCreated(&'static str, String),
    /// The image is not on the node (no registry: it cannot be pulled).
    ImageMissing(ImageNotPresent),
}

/// The pull policy of a container: its own, or the API server's default (`Always` for a
/// `:latest` or untagged image without a digest, `IfNotPresent` otherwise).
fn pull_policy(spec: &Container) -> String {
    if let Some(p) = &spec.image_pull_policy {
        return p.clone();
    }
    let image = spec.image.as_deref().unwrap_or_default();
    let last = image.rsplit('/').next().unwrap_or_default();
    if image.contains('@') {
        "IfNotPresent".into()
    } else {
        match last.rsplit_once(':') {
            Some((_, "latest")) | None => "Always".into(),
            Some(_) => "IfNotPresent".into(),
        }
    }
}

/// Reports an image the node does not have, as the kubelet reports a failed pull (or an image
/// it may not pull), and waits before the next try: `ErrImageNeverPull` for pull policy
/// `Never`; else `ErrImagePull`, then `ImagePullBackOff` for the image back-off.
/// False: the pod is being stopped.
async fn image_missing(
    ctx: &ContainerCtx,
    missing: &ImageNotPresent,
    backoff: &mut Backoff,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> bool {
    let name = ctx.spec.name.as_str();
    let image = &missing.image;
    let set = |reason: &str, message: String| {
        ctx.pod.update(|rt| {
            rt.slot_mut(ctx.slot).state = RunState::Waiting {
                reason: reason.into(),
                message: Some(message),
            };
        });
    };
    if pull_policy(&ctx.spec) == "Never" {
        let msg = format!(
            "Container image \"{image}\" is not present with pull policy of Never: {}",
            missing.hint()
        );
        ctx.pod
            .event(true, "ErrImageNeverPull", msg.clone(), Some(name));
        set("ErrImageNeverPull", msg);
        return tokio::select! {
            _ = tokio::time::sleep(ctx.backoff.initial) => true,
            _ = stop.wait_for(Option::is_some) => false,
        };
    }
    ctx.pod.event(
        false,
        "Pulling",
        format!("Pulling image \"{image}\""),
        Some(name),
    );
    let msg = format!("Failed to pull image \"{image}\": {}", missing.hint());
    ctx.pod.event(true, "Failed", msg.clone(), Some(name));
    ctx.pod
        .event(true, "Failed", "Error: ErrImagePull".into(), Some(name));
    set("ErrImagePull", msg);
    let failed = Instant::now();
    backoff.restarted(failed, failed);
    let delay = backoff.delay(failed);
    // The pod worker's next sync finds the image in back-off.
    let resync = Duration::from_secs(1).min(delay);
    tokio::select! {
        _ = tokio::time::sleep(resync) => {}
        _ = stop.wait_for(Option::is_some) => return false,
    }
    let msg = format!("Back-off pulling image \"{image}\"");
    ctx.pod.event(false, "BackOff", msg.clone(), Some(name));
    ctx.pod
        .event(true, "Failed", "Error: ImagePullBackOff".into(), Some(name));
    set("ImagePullBackOff", format!("{msg}: {}", missing.hint()));
    tokio::select! {
        _ = tokio::time::sleep(delay.saturating_sub(resync)) => true,
        _ = stop.wait_for(Option::is_some) => false,
    }
}

/// Waits for the import of the container's image while one runs (the node's pre-load), as the
/// kubelet waits for a pull: the container stays `Waiting`/`ContainerCreating` with a
/// `Pulling` event, and no `ErrImagePull`. Returns how long it waited (`Some(None)`: no import
/// was running); None when the pod is being stopped.
async fn wait_for_import(
    ctx: &ContainerCtx,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> Option<Option<Duration>> {
    let image = ctx.spec.image.as_deref().unwrap_or_default();
    let Some(pending) = ctx.roots.importing(image) else {
        return Some(None);
    };
    let name = ctx.spec.name.as_str();
    ctx.pod.event(
        false,
        "Pulling",
        format!("Pulling image \"{image}\""),
        Some(name),
    );
    let started = Instant::now();
    tokio::select! {
        _ = pending.done() => Some(Some(started.elapsed())),
        _ = stop.wait_for(Option::is_some) => None,
    }
}

/// Runs the container until `stop` carries a grace period. `stop` also interrupts a
/// back-off wait.
pub async fn run(mut ctx: ContainerCtx, mut stop: watch::Receiver<Option<Duration>>) {
    let mut backoff = Backoff::new(ctx.backoff);
    // Failed pulls have a back-off of their own (the kubelet's image back-off: same steps).
    let mut pull_backoff = Backoff::new(ctx.backoff);
    let mut restart = ctx.restart_count;
    let name = ctx.spec.name.clone();
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let Some(pulled) = wait_for_import(&ctx, &mut stop).await else {
            return;
        };
        let started_wall = jiff::Timestamp::now();
        let (ended, container_id) = run_once(&mut ctx, restart, pulled, &mut stop).await;
        if let Ended::ImageMissing(missing) = &ended {
            if image_missing(&ctx, missing, &mut pull_backoff, &mut stop).await {
                continue;
            }
            return;
        }
        if let Ended::NotCreated(reason, message) = ended {
            ctx.pod
                .event(true, "Failed", format!("Error: {message}"), Some(&name));
            ctx.pod.update(|rt| {
                rt.slot_mut(ctx.slot).state = RunState::Waiting {
                    reason: reason.into(),
                    message: Some(message),
                };
            });
            // Tried again at the next sync, as the kubelet does (no crash-loop back-off: the
            // container never ran).
            tokio::select! {
                _ = tokio::time::sleep(ctx.backoff.initial) => continue,
                _ = stop.wait_for(Option::is_some) => return,
            }
        }
        let finished = Instant::now();
        let finished_wall = jiff::Timestamp::now();
        let (code, signal, reason, message, stopped) = match &ended {
            Ended::Exited(st) => exit_fields(st, None, false),
            Ended::Unhealthy(msg, st) => {
                let (c, s, r, _, _) = st
                    .as_ref()
                    .map_or((137, Some(9), "Error".to_string(), None, false), |st| {
                        exit_fields(st, None, false)
                    });
                (c, s, r, Some(msg.clone()), false)
            }
            Ended::Stopped(st) => st
                .as_ref()
                .map_or((137, Some(9), "Error".into(), None, true), |st| {
                    exit_fields(st, None, true)
                }),
            Ended::StartFailed(msg) => (128, None, "StartError".into(), Some(msg.clone()), false),
            Ended::NotCreated(..) | Ended::ImageMissing(_) => unreachable!("handled above"),
        };
        let terminated = RunState::Terminated {
            exit_code: code,
            signal,
            reason,
            message,
            started_at: (!matches!(ended, Ended::StartFailed(_))).then_some(started_wall),
            finished_at: finished_wall,
            container_id: container_id.clone().unwrap_or_default(),
        };
        let wants_restart = !stopped
            && match ctx.restart_policy.as_str() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
        ctx.pod.update(|rt| {
            let c = rt.slot_mut(ctx.slot);
            // A completed init container counts as ready, as the kubelet reports it.
            c.ready = ctx.slot.init && code == 0;
            c.started = false;
            c.state = terminated.clone();
        });
        ctx.handle.run.send_modify(|r| r.running = false);
        if !wants_restart {
            return;
        }
        let delay = backoff.delay(finished);
        if !delay.is_zero() {
            let msg = format!(
                "back-off {} restarting failed container={name} pod={}_{}({})",
                go_duration(delay),
                ctx.pod.name,
                ctx.pod.namespace,
                ctx.pod.uid
            );
            ctx.pod.event(
                true,
                "BackOff",
                format!(
                    "Back-off restarting failed container {name} in pod {}_{}({})",
                    ctx.pod.name, ctx.pod.namespace, ctx.pod.uid
                ),
                Some(&name),
            );
            ctx.pod.update(|rt| {
                let c = rt.slot_mut(ctx.slot);
                c.last_state = Some(terminated.clone());
                c.state = RunState::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(msg),
                };
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.wait_for(Option::is_some) => return,
            }
        }
        backoff.restarted(finished, Instant::now());
        restart += 1;
        ctx.pod.update(|rt| {
            let c = rt.slot_mut(ctx.slot);
            c.last_state = Some(terminated.clone());
            c.restart_count = restart;
        });
    }
}

/// Exit code (128 + signal for a killed process), signal, reason, message, stopped-by-us.
fn exit_fields(
    st: &std::process::ExitStatus,
    message: Option<String>,
    stopped: bool,
) -> (i32, Option<i32>, String, Option<String>, bool) {
    let (code, signal) = match (st.code(), st.signal()) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (-1, None),
    };
    let reason = if code == 0 { "Completed" } else { "Error" };
    (code, signal, reason.to_string(), message, stopped)
}

fn start_failed(ctx: &ContainerCtx, msg: String) -> (Ended, Option<String>) {
    ctx.pod.event(
        true,
        "Failed",
        format!("Error: {msg}"),
        Some(&ctx.spec.name),
    );
    (Ended::StartFailed(msg), None)
}

/// The process of one run: the image's configuration and the pod's spec combined
/// (`image_config`). Err is the waiting reason and message.
fn process_for(
    ctx: &ContainerCtx,
    root: &ContainerRoot,
    kubelet_env: &super::env::Env,
) -> Result<(ProcessSpec, RootOptions), (&'static str, String)> {
    let pod_sc = ctx
        .pod_object
        .spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref());
    let sc = image_config::effective_security(pod_sc, &ctx.spec);
    image_config::verify_run_as_non_root(&ctx.pod_object, &ctx.spec, &sc, &root.config)
        .map_err(|m| ("CreateContainerConfigError", m))?;
    let fail = |e: anyhow::Error| ("CreateContainerError", format!("{e:#}"));
    let argv = image_config::command_line(&ctx.spec, &root.config, kubelet_env).map_err(fail)?;
    let identity = image_config::identity(&sc, pod_sc, &root.config, &root.rootfs).map_err(fail)?;
    let capabilities = image_config::capabilities(Some(&sc)).map_err(fail)?;
    let process = ProcessSpec {
        argv,
        env: image_config::environment(&root.config, kubelet_env).into_vec(),
        working_dir: image_config::working_dir(&ctx.spec, &root.config),
        identity,
        capabilities,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
    };
    let opts = RootOptions {
        read_only: sc.read_only_root_filesystem == Some(true),
    };
    Ok((process, opts))
}

/// Starts one run in a fresh root and waits for its end; the root is given back after.
/// Returns how it ended and its container ID.
async fn run_once(
    ctx: &mut ContainerCtx,
    restart: i32,
    pulled: Option<Duration>,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> (Ended, Option<String>) {
    let tmpl = ctx.handle.template();
    if let Some(e) = &tmpl.error {
        return start_failed(ctx, e.clone());
    }
    let image = ctx.spec.image.clone().unwrap_or_default();
    let (uid, name, pod_dir, roots) = (
        ctx.pod.uid.clone(),
        ctx.spec.name.clone(),
        ctx.pod_dir.clone(),
        ctx.roots.clone(),
    );
    let req = RootRequest {
        pod_uid: &uid,
        pod_dir: &pod_dir,
        container: &name,
        image: &image,
        run: restart,
    };
    let root = match roots.prepare(&req) {
        Ok(r) => r,
        Err(e) if e.downcast_ref::<InvalidImageName>().is_some() => {
            return (
                Ended::NotCreated("InvalidImageName", format!("{e:#}")),
                None,
            );
        }
        Err(e) => {
            let e = match e.downcast::<ImageNotPresent>() {
                Ok(missing) => return (Ended::ImageMissing(missing), None),
                Err(e) => e,
            };
            return (
                Ended::NotCreated("CreateContainerError", format!("root filesystem: {e:#}")),
                None,
            );
        }
    };
    ctx.pod.update(|rt| {
        let c = rt.slot_mut(ctx.slot);
        c.image = root.image_ref.clone();
        c.image_id = root.image_id.clone();
    });
    let result = run_in_root(ctx, &tmpl, &root, restart, pulled, stop).await;
    if let Err(e) = roots.release(&req, &root) {
        tracing::warn!(container = %name, "giving back the root filesystem: {e:#}");
    }
    result
}

async fn run_in_root(
    ctx: &mut ContainerCtx,
    tmpl: &super::handles::ProcessTemplate,
    root: &ContainerRoot,
    restart: i32,
    pulled: Option<Duration>,
    stop: &mut watch::Receiver<Option<Duration>>,
) -> (Ended, Option<String>) {
    let (spec, opts) = match process_for(ctx, root, &tmpl.kubelet_env) {
        Ok(p) => p,
        Err((reason, msg)) => return (Ended::NotCreated(reason, msg), None),
    };
    ctx.handle.set_process(Some(spec.clone()));
    let log = match LogWriter::create(&ctx.handle.log_dir, restart).await {
        Ok(l) => l,
        Err(e) => return start_failed(ctx, format!("{e:#}")),
    };
    let mut prepared = match spawn::container_command(&tmpl.ctx, root, opts, &spec) {
        Ok(c) => c,
        Err(e) => return start_failed(ctx, format!("{e:#}")),
    };
    prepared.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let Spawned { mut child, pid } = match prepared.spawn() {
        Ok(s) => s,
        Err(e) => return start_failed(ctx, format!("{e:#}")),
    };
    let pgid = child.id().map(|p| p as i32);
    let id = new_container_id();
    let name = ctx.spec.name.as_str();
    let image = ctx.spec.image.as_deref().unwrap_or_default();
    let pulled_msg = match pulled {
        // The kubelet's words after a pull (the time, and the time including the wait for
        // the pull to start: one and the same here).
        Some(took) => {
            let took = go_duration(took);
            let size = root
                .image_size
                .map(|s| format!(" Image size: {s} bytes."))
                .unwrap_or_default();
            format!(
                "Successfully pulled image \"{image}\" in {took} ({took} including waiting).{size}"
            )
        }
        None => format!("Container image \"{image}\" already present on machine"),
    };
    ctx.pod.event(false, "Pulled", pulled_msg, Some(name));
    ctx.pod.event(
        false,
        "Created",
        format!("Created container: {name}"),
        Some(name),
    );
    ctx.pod.event(
        false,
        "Started",
        format!("Started container {name}"),
        Some(name),
    );
    let copiers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(log.clone().copy("stdout", s))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(log.clone().copy("stderr", s))),
    ];
    let has_startup = ctx.spec.startup_probe.is_some();
    let has_readiness = ctx.spec.readiness_probe.is_some();
    ctx.handle.run.send_replace(RunInfo {
        restart,
        running: true,
        pid: Some(pid),
    });
    ctx.pod.update(|rt| {
        let c = rt.slot_mut(ctx.slot);
        c.state = RunState::Running {
            started_at: jiff::Timestamp::now(),
        };
        c.container_id = Some(id.clone());
        c.started = !has_startup;
        c.ready = !has_startup && !has_readiness;
    });

    let grace_default = ctx.handle.grace;
    enum Wake {
        Exited(std::io::Result<std::process::ExitStatus>),
        Unhealthy(String),
        Stop(Duration),
    }
    let wake = loop {
        tokio::select! {
            st = child.wait() => break Wake::Exited(st),
            Some(k) = ctx.kills.recv() => {
                // A request about an earlier run is stale.
                if k.container_id == id {
                    break Wake::Unhealthy(k.message);
                }
            }
            grace = stop.wait_for(Option::is_some) => {
                break Wake::Stop(grace.ok().and_then(|g| *g).unwrap_or(grace_default));
            }
        }
    };
    let ended = match wake {
        Wake::Exited(Ok(st)) => Ended::Exited(st),
        Wake::Exited(Err(e)) => Ended::StartFailed(format!("waiting for the container: {e}")),
        Wake::Unhealthy(msg) => {
            ctx.pod.event(false, "Killing", msg.clone(), Some(name));
            Ended::Unhealthy(
                msg,
                stop_process(&mut child, pgid, grace_default).await.ok(),
            )
        }
        Wake::Stop(grace) => {
            ctx.pod.event(
                false,
                "Killing",
                format!("Stopping container {name}"),
                Some(name),
            );
            Ended::Stopped(stop_process(&mut child, pgid, grace).await.ok())
        }
    };
    // A container ends with its main process: whatever it left running goes too.
    if let Some(pgid) = pgid {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
    for c in copiers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
    }
    (ended, Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults_as_the_api_server_sets_them() {
        let policy = |image: &str, set: Option<&str>| {
            pull_policy(&Container {
                image: Some(image.into()),
                image_pull_policy: set.map(Into::into),
                ..Default::default()
            })
        };
        assert_eq!(policy("busybox", None), "Always");
        assert_eq!(policy("busybox:latest", None), "Always");
        assert_eq!(policy("localhost:5000/app", None), "Always");
        assert_eq!(policy("localhost:5000/app:v1", None), "IfNotPresent");
        assert_eq!(policy("busybox@sha256:abcd", None), "IfNotPresent");
        assert_eq!(policy("busybox", Some("Never")), "Never");
    }

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
