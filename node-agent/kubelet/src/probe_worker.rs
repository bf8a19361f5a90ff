//! The kubelet's probe workers: one per container and probe kind (startup, readiness,
//! liveness), living as long as the pod, as the real kubelet's prober manager runs them.
//!
//! A worker probes on a ticker of `periodSeconds`, and also at once when "triggered": the
//! kubelet triggers a readiness worker every time it computes the pod's status while a
//! running, started container has no successful readiness result yet, so a new container is
//! probed as soon as the kubelet sees it running instead of a period later — which is not at
//! its very start: the kubelet only sees a container at the next relist of its runtime (every
//! second), so no probe runs before that relist. A worker of a pod the kubelet found at its
//! start, started within one period of the kubelet's own start, first sleeps a random part of
//! the period, so that a restarted kubelet does not probe everything at once.
//!
//! That jitter is the real kubelet's (`prober/worker.go`: `run`) with one difference: the real
//! one applies it to every worker made while the kubelet is young, also for pods bound to the
//! node after it started. A minikind kubelet is always young when the cluster's first pods
//! arrive — CoreDNS is scheduled seconds after the node registers — so that rule put each new
//! CoreDNS's first readiness probe at a random point of its first 10 s (median 5 s), which was
//! most of a 3-node create's wait for cluster DNS. Pods that arrive after the kubelet's first
//! listing are not the restart herd the jitter exists for, so they are probed at once. Results follow the kubelet's
//! rules: a new container starts from the kind's initial value (readiness: failure, liveness:
//! success, startup: unknown), a result only counts once the success or failure threshold is
//! reached, and a liveness or startup failure kills the container and holds the worker until
//! the next container.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::handles::{ContainerHandle, Kill, PodHandle};
use super::probes::{self, ProbeTarget, Streak, Timing};
use super::status::{self, ContainerRuntime, RunState, Slot};

/// Which probe a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    /// The probe of this kind a container declares, if any.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
        }
    }

    /// The word the kubelet's events use (`Readiness probe failed: …`).
    fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }

    /// What a container's result is before its first counted probe.
    fn initial(self) -> Outcome {
        match self {
            ProbeKind::Startup => Outcome::Unknown,
            ProbeKind::Readiness => Outcome::Failure,
            ProbeKind::Liveness => Outcome::Success,
        }
    }
}

/// A probe result as the kubelet's results cache holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

/// Everything one worker needs.
pub struct WorkerCtx {
    pub kind: ProbeKind,
    pub probe: Probe,
    pub pod: Arc<PodHandle>,
    /// An app container (the kubelet does not probe ordinary init containers).
    pub slot: Slot,
    pub spec: Container,
    pub handle: Arc<ContainerHandle>,
    pub pod_ip: std::net::IpAddr,
    pub restart_policy: String,
    /// The pod as the API has it (for its deletionTimestamp).
    pub pod_rx: watch::Receiver<Option<Pod>>,
    /// When the kubelet started (for the start-up jitter).
    pub kubelet_started: Instant,
    /// The pod was in the kubelet's first listing (only such pods get the start-up jitter).
    pub found_at_start: bool,
    /// The manual trigger; a trigger while the worker is busy is kept for its next wait.
    pub trigger: Arc<Notify>,
    pub kill: mpsc::UnboundedSender<Kill>,
    pub stop: CancellationToken,
}

/// What a worker remembers between probes.
#[derive(Debug, Default)]
struct WorkerState {
    container_id: Option<String>,
    /// The result last set for `container_id` (what the results cache holds).
    result: Option<Outcome>,
    /// Waiting for a new container after killing this one.
    on_hold: bool,
    streak: Streak,
}

/// The start-up jitter: a random part of the period when the kubelet started less than a
/// period ago, nothing otherwise.
pub fn startup_jitter(period: Duration, since_kubelet_start: Duration, unit: f64) -> Duration {
    if period > since_kubelet_start {
        period.mul_f64(unit.clamp(0.0, 1.0))
    } else {
        Duration::ZERO
    }
}

/// How often the kubelet's generic PLEG relists the containers of its runtime.
const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// How long until the kubelet first sees a container that started `started_ago` ago: its
/// status (and so the probe manager) only learns of a container at the first relist after the
/// start, and relists run every [`RELIST_PERIOD`] from the kubelet's own start,
/// `kubelet_age` ago. Zero once a relist has seen it.
pub fn until_relist_sees(started_ago: Duration, kubelet_age: Duration) -> Duration {
    // The container's start, counted from the kubelet's start.
    let Some(start) = kubelet_age.checked_sub(started_ago) else {
        // Started before this kubelet: its first relist saw it.
        return Duration::ZERO;
    };
    let relists = start.as_nanos().div_ceil(RELIST_PERIOD.as_nanos());
    let seen = RELIST_PERIOD.saturating_mul(u32::try_from(relists).unwrap_or(u32::MAX));
    seen.saturating_sub(kubelet_age)
}

/// Runs one worker until `stop` or until it has nothing more to probe.
pub async fn run(w: WorkerCtx) {
    let period = Timing::of(&w.probe).period;
    let jitter = if w.found_at_start {
        startup_jitter(period, w.kubelet_started.elapsed(), rand::random::<f64>())
    } else {
        Duration::ZERO
    };
    if !jitter.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(jitter) => {}
            _ = w.stop.cancelled() => return,
        }
    }
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Like Go's ticker: a tick missed during a slow probe fires once, then the rhythm resumes.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut st = WorkerState::default();
    while do_probe(&w, &mut st).await {
        tokio::select! {
            _ = w.stop.cancelled() => return,
            _ = ticker.tick() => {}
            _ = w.trigger.notified() => {}
        }
    }
}

fn deleting(rx: &watch::Receiver<Option<Pod>>) -> bool {
    rx.borrow()
        .as_ref()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

/// One round: look at the container, probe it if it is due, record the result. Returns
/// whether the worker goes on.
async fn do_probe(w: &WorkerCtx, st: &mut WorkerState) -> bool {
    let rt = w.pod.runtime();
    if matches!(status::phase(&rt), "Succeeded" | "Failed") {
        return false;
    }
    let Some(c) = rt.containers.get(w.slot.index) else {
        return false;
    };
    let Some(id) = c.container_id.clone() else {
        // Not created yet.
        return true;
    };
    if st.container_id.as_deref() != Some(id.as_str()) {
        st.container_id = Some(id.clone());
        st.result = None;
        st.on_hold = false;
        set_result(w, st, w.kind.initial());
    }
    if st.on_hold {
        return true;
    }
    let started_at = match &c.state {
        RunState::Running { started_at } => *started_at,
        other => {
            set_result(w, st, Outcome::Failure);
            // A container that ended and will not be restarted needs no more probes.
            return !matches!(other, RunState::Terminated { .. }) || w.restart_policy != "Never";
        }
    };
    if w.kind != ProbeKind::Readiness && deleting(&w.pod_rx) {
        // The pod is going: a quiet shutdown, no kill from a failing probe now.
        set_result(w, st, Outcome::Success);
        return false;
    }
    let timing = Timing::of(&w.probe);
    let running_for = jiff::Timestamp::now().duration_since(started_at);
    let mut running_for = Duration::try_from(running_for).unwrap_or(Duration::ZERO);
    // A container the kubelet has not relisted yet has no status, so no probe runs: the real
    // first probe comes with the status update after that relist (up to a second after the
    // start), by which time most servers have bound their port. Probing at the very start
    // instead fails and leaves a new CoreDNS unready for a whole period.
    let unseen = until_relist_sees(running_for, w.kubelet_started.elapsed());
    if !unseen.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(unseen) => {}
            _ = w.stop.cancelled() => return false,
        }
        running_for += unseen;
        let now = w.pod.runtime();
        if now
            .containers
            .get(w.slot.index)
            .and_then(|c| c.container_id.as_deref())
            != Some(id.as_str())
        {
            // It ended while we waited: the next round looks at its successor.
            return true;
        }
    }
    if running_for.as_secs() < timing.initial_delay.as_secs() {
        return true;
    }
    // Startup probes run until the container started, the others only after.
    if c.started == (w.kind == ProbeKind::Startup) {
        return true;
    }
    let target = target(w);
    let result = tokio::select! {
        r = probes::run_once(&w.probe, &target) => r,
        _ = w.stop.cancelled() => return false,
    };
    let outcome = match &result {
        Ok(()) => Outcome::Success,
        Err(msg) => {
            w.pod.event(
                true,
                "Unhealthy",
                format!("{} probe failed: {msg}", w.kind.title()),
                Some(&w.spec.name),
            );
            Outcome::Failure
        }
    };
    if st
        .streak
        .record(outcome == Outcome::Success, &timing)
        .is_none()
    {
        return true;
    }
    set_result(w, st, outcome);
    if w.kind != ProbeKind::Readiness && outcome == Outcome::Failure {
        let what = if w.kind == ProbeKind::Startup {
            "startup"
        } else {
            "liveness"
        };
        let mut message = format!(
            "Container {} failed {what} probe, will be restarted",
            w.spec.name
        );
        if w.kind == ProbeKind::Startup
            && let Err(e) = &result
        {
            message.push_str(&format!(": {e}"));
        }
        let _ = w.kill.send(Kill {
            container_id: id,
            message,
        });
        st.on_hold = true;
        st.streak.restart();
    }
    true
}

fn target(w: &WorkerCtx) -> ProbeTarget {
    ProbeTarget {
        pod_ip: w.pod_ip,
        container: w.spec.clone(),
        process: w.handle.template().process,
        pid: w.handle.run.borrow().pid,
    }
}

/// Records a result for the worker's current container, and when it changed applies it to
/// what the kubelet reports (readiness, started), which recomputes the pod's status.
fn set_result(w: &WorkerCtx, st: &mut WorkerState, outcome: Outcome) {
    if st.result == Some(outcome) {
        return;
    }
    st.result = Some(outcome);
    let Some(id) = st.container_id.clone() else {
        return;
    };
    let has_readiness = w.spec.readiness_probe.is_some();
    let (kind, slot) = (w.kind, w.slot);
    w.pod.update(|rt| {
        let c = rt.slot_mut(slot);
        if c.container_id.as_deref() != Some(id.as_str()) {
            return;
        }
        let running = matches!(c.state, RunState::Running { .. });
        match kind {
            ProbeKind::Readiness => c.ready = running && c.started && outcome == Outcome::Success,
            ProbeKind::Startup => {
                c.started = running && outcome == Outcome::Success;
                if !has_readiness {
                    c.ready = c.started;
                }
            }
            // Liveness results act through the kill request only.
            ProbeKind::Liveness => {}
        }
    });
}

/// The manual triggers the kubelet fires when it computes a pod's status: the readiness
/// worker of every running, started container that is not ready yet.
pub fn trigger_unready(containers: &[ContainerRuntime], triggers: &[(usize, Arc<Notify>)]) {
    for (index, t) in triggers {
        if let Some(c) = containers.get(*index)
            && matches!(c.state, RunState::Running { .. })
            && c.started
            && !c.ready
        {
            t.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::{ProcessTemplate, RunInfo, handle_for};
    use serde_json::json;

    /// A pod whose one container runs (as the kubelet saw it start), and a worker for its
    /// `kind` probe on a kubelet that started two hours ago (no start-up jitter).
    fn worker_for(
        kind: ProbeKind,
        probe: serde_json::Value,
        dir: &std::path::Path,
    ) -> (WorkerCtx, mpsc::UnboundedReceiver<Kill>) {
        let field = match kind {
            ProbeKind::Startup => "startupProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Liveness => "livenessProbe",
        };
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "img", field: probe}]},
        }))
        .unwrap();
        let spec = pod.spec.clone().unwrap().containers[0].clone();
        let handle = handle_for(&pod, dir, std::net::Ipv4Addr::LOCALHOST);
        handle.update(|rt| {
            let c = &mut rt.containers[0];
            c.state = RunState::Running {
                started_at: jiff::Timestamp::now(),
            };
            c.container_id = Some("minikind://a".into());
            c.started = true;
        });
        let ch = Arc::new(ContainerHandle::new(
            "c",
            dir.join("c"),
            RunInfo {
                restart: 0,
                running: true,
                pid: None,
            },
            Duration::from_secs(1),
            ProcessTemplate::failed("not run in this test".into()),
        ));
        let (kill, kills) = mpsc::unbounded_channel();
        let w = WorkerCtx {
            kind,
            probe: kind.of(&spec).unwrap().clone(),
            pod: handle,
            slot: Slot {
                init: false,
                index: 0,
            },
            spec,
            handle: ch,
            pod_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            restart_policy: "Always".into(),
            pod_rx: watch::channel(Some(pod)).1,
            kubelet_started: Instant::now()
                .checked_sub(Duration::from_secs(7200))
                .unwrap(),
            found_at_start: false,
            trigger: Arc::new(Notify::new()),
            kill,
            stop: CancellationToken::new(),
        };
        (w, kills)
    }

    /// A loopback port nothing listens on (for now).
    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn a_manual_trigger_probes_readiness_without_waiting_a_period() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (w, _kills) = worker_for(
            ProbeKind::Readiness,
            json!({"tcpSocket": {"port": port}, "periodSeconds": 3600}),
            dir.path(),
        );
        let (pod, trigger, stop) = (w.pod.clone(), w.trigger.clone(), w.stop.clone());
        let mut events = pod.take_events().unwrap();
        let task = tokio::spawn(run(w));
        // The first round probes at once and fails: nothing listens yet.
        let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a probe event")
            .unwrap();
        assert_eq!(ev.reason, "Unhealthy");
        assert!(
            ev.message.starts_with(&format!(
                "Readiness probe failed: dial tcp 127.0.0.1:{port}"
            )),
            "{}",
            ev.message
        );
        let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        // Without a trigger the next probe is an hour away.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!pod.runtime().containers[0].ready);
        // The kubelet computes the pod's status: the unready container's worker runs now.
        trigger_unready(&pod.runtime().containers, &[(0, trigger)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pod.runtime().containers[0].ready {
            assert!(Instant::now() < deadline, "not ready after the trigger");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_first_probe_waits_for_the_relist_that_sees_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (mut w, _kills) = worker_for(
            ProbeKind::Readiness,
            json!({"tcpSocket": {"port": port}, "periodSeconds": 3600}),
            dir.path(),
        );
        // The container started 10 ms after a relist: the next one sees it 990 ms later.
        w.kubelet_started = Instant::now()
            .checked_sub(Duration::from_millis(7_200_010))
            .unwrap();
        let (pod, stop) = (w.pod.clone(), w.stop.clone());
        let mut events = pod.take_events().unwrap();
        let task = tokio::spawn(run(w));
        // The server binds its port 300 ms into its life, before the kubelet saw it run.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pod.runtime().containers[0].ready {
            assert!(
                Instant::now() < deadline,
                "not ready after the first relist"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(events.try_recv().is_err(), "the first probe failed");
        stop.cancel();
        task.await.unwrap();
    }

    /// A readiness worker (period 100 h) on a kubelet that started 2 s ago, for a container
    /// whose server listens from the start; whether it turned ready within `within`.
    async fn ready_on_young_kubelet(found_at_start: bool, within: Duration) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut w, _kills) = worker_for(
            ProbeKind::Readiness,
            json!({"tcpSocket": {"port": port}, "periodSeconds": 360_000}),
            dir.path(),
        );
        // Two seconds old, as the kubelets are when a create schedules CoreDNS on them.
        w.kubelet_started = Instant::now().checked_sub(Duration::from_secs(2)).unwrap();
        w.found_at_start = found_at_start;
        let (pod, stop) = (w.pod.clone(), w.stop.clone());
        let task = tokio::spawn(run(w));
        let deadline = Instant::now() + within;
        while !pod.runtime().containers[0].ready && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = pod.runtime().containers[0].ready;
        stop.cancel();
        task.await.unwrap();
        ready
    }

    #[tokio::test]
    async fn a_young_kubelet_probes_a_newly_bound_pod_at_its_first_relist() {
        // Bound after the kubelet's first listing: probed at the relist that sees it (< 1 s),
        // not at a random point of its first period.
        assert!(ready_on_young_kubelet(false, Duration::from_secs(3)).await);
    }

    #[tokio::test]
    async fn a_young_kubelet_spreads_the_first_probe_of_the_pods_it_found_at_start() {
        // The restart herd: the first probe waits a random part of the period (100 h here, so
        // it lands within the 1.5 s looked at once in 240 000 runs).
        assert!(!ready_on_young_kubelet(true, Duration::from_millis(1500)).await);
    }

    #[tokio::test]
    async fn a_liveness_failure_kills_that_container_once() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (w, mut kills) = worker_for(
            ProbeKind::Liveness,
            json!({"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 2}),
            dir.path(),
        );
        let stop = w.stop.clone();
        let task = tokio::spawn(run(w));
        let k = tokio::time::timeout(Duration::from_secs(10), kills.recv())
            .await
            .expect("a kill request")
            .unwrap();
        assert_eq!(
            k,
            Kill {
                container_id: "minikind://a".into(),
                message: "Container c failed liveness probe, will be restarted".into(),
            }
        );
        // On hold until another container runs: no second request for the same one.
        assert!(
            tokio::time::timeout(Duration::from_millis(2500), kills.recv())
                .await
                .is_err()
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn a_container_is_seen_at_the_first_relist_after_its_start() {
        let ms = Duration::from_millis;
        // Kubelet 10.3 s old, container started 0.1 s ago (at 10.2 s): the relist at 11 s.
        assert_eq!(until_relist_sees(ms(100), ms(10_300)), ms(700));
        // Started at 10.0 s exactly: that relist saw it.
        assert_eq!(until_relist_sees(ms(300), ms(10_300)), Duration::ZERO);
        // Started 0.5 s ago at 9.8 s: the relist at 10 s already saw it.
        assert_eq!(until_relist_sees(ms(500), ms(10_300)), Duration::ZERO);
        // Started before this kubelet (a kubelet restart): seen by its first relist.
        assert_eq!(until_relist_sees(ms(20_000), ms(5_000)), Duration::ZERO);
        // Just started on a kubelet that is just starting.
        assert_eq!(until_relist_sees(ms(0), ms(1)), ms(999));
    }

    #[test]
    fn jitter_only_while_the_kubelet_is_young() {
        let p = Duration::from_secs(10);
        assert_eq!(
            startup_jitter(p, Duration::from_secs(3), 0.5),
            Duration::from_secs(5)
        );
        assert_eq!(
            startup_jitter(p, Duration::from_secs(10), 0.5),
            Duration::ZERO
        );
        assert_eq!(
            startup_jitter(p, Duration::from_secs(60), 0.99),
            Duration::ZERO
        );
        assert!(startup_jitter(p, Duration::ZERO, 0.999) < p);
    }

    fn running(name: &str, started: bool, ready: bool) -> ContainerRuntime {
        ContainerRuntime {
            state: RunState::Running {
                started_at: jiff::Timestamp::now(),
            },
            started,
            ready,
            container_id: Some("minikind://1".into()),
            ..ContainerRuntime::new(name, "img")
        }
    }

    #[tokio::test]
    async fn only_running_started_unready_containers_are_triggered() {
        let containers = vec![
            running("unready", true, false),
            running("ready", true, true),
            running("not-started", false, false),
            ContainerRuntime::new("waiting", "img"),
        ];
        let triggers: Vec<(usize, Arc<Notify>)> =
            (0..4).map(|i| (i, Arc::new(Notify::new()))).collect();
        trigger_unready(&containers, &triggers);
        let fired: Vec<bool> = triggers
            .iter()
            .map(|(_, t)| {
                // A stored permit completes `notified()` at once.
                let n = t.notified();
                futures::FutureExt::now_or_never(n).is_some()
            })
            .collect();
        assert_eq!(fired, [true, false, false, false]);
    }
}
