//! The controllers, run inside the API server process against the store: node IPAM,
//! scheduler, EndpointSlices (and legacy Endpoints), the workload controllers (Deployments
//! owning ReplicaSets, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs), the
//! `default/kubernetes` service, the `default` ServiceAccount of each namespace, namespace
//! deletion, the CRD finalizer (custom objects removed before their definition), owner-reference garbage collection (background, foreground, orphan) and pod GC.
//!
//! This crate owns the reconcile loops and nothing they reconcile against: objects, the store
//! and admission belong to `minikind-apiserver` (ClusterIP allocation too: it is synchronous
//! with the write, so it lives with admission there). Controllers must change objects only
//! through the API server's object verbs, never the store directly, so admission and watch
//! events stay the same as for a client's write.
//!
//! Each controller reacts to store events for the keys they touch and also resyncs
//! everything periodically, so a missed event (a lagging receiver) only delays convergence.

pub mod crd_cleanup;
pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod endpointslices;
pub mod jobs;
pub mod kubernetes_service;
pub mod lifecycle;
pub mod node_ipam;
pub mod pods_of;
pub mod replicasets;
pub mod revisions;
pub mod scheduler;
pub mod serviceaccounts;
pub mod statefulsets;

use futures::StreamExt;
use futures::future::BoxFuture;
use minikind_apiserver::ApiState;
use minikind_apiserver::errors::ApiError;
use minikind_apiserver::resources::ResIdx;
use minikind_apiserver::store::Event;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;

/// A key a controller reconciles: (namespace, name).
pub type Key = (String, String);

/// The key of every stored object of resource `res`: the resync of a controller whose keys
/// are its own objects.
pub fn keys_of(st: &ApiState, res: ResIdx) -> Vec<Key> {
    let (objs, _, _) = st.store.list(res, None, None, 0, |_| true);
    objs.iter()
        .map(|o| (o.namespace.to_string(), o.name.to_string()))
        .collect()
}

/// Logs a failed reconcile of `key` under the controller's `kind`; the key is retried by the
/// next event or resync, as kube-controller-manager's work queues requeue it.
pub fn log_failure(kind: &str, key: &Key, result: Result<(), ApiError>) {
    if let Err(e) = result {
        tracing::warn!(kind, object = %format!("{}/{}", key.0, key.1), "{e}");
    }
}

/// What a controller must implement to run in [`run_loop`].
pub trait Reconciler: Send {
    /// Keys affected by one event.
    fn keys_for(&mut self, st: &ApiState, ev: &Event) -> Vec<Key>;
    /// Every key (periodic resync, lagged receiver).
    fn all_keys(&mut self, st: &ApiState) -> Vec<Key>;
    /// How many keys may be reconciled at once; above 1, [`Reconciler::reconcile_owned`] is
    /// used (controllers whose keys are independent, so bulk changes converge faster than one
    /// store commit at a time).
    fn concurrency(&self) -> usize {
        1
    }
    /// A reconcile that owns what it needs, for concurrent use.
    fn reconcile_owned(
        &mut self,
        _st: &Arc<ApiState>,
        _key: Key,
    ) -> Option<BoxFuture<'static, ()>> {
        None
    }
    /// Brings one key to its desired state.
    fn reconcile(
        &mut self,
        st: &Arc<ApiState>,
        key: Key,
    ) -> impl std::future::Future<Output = ()> + Send;
}

pub async fn run_loop<R: Reconciler>(
    st: Arc<ApiState>,
    mut r: R,
    resync: Duration,
    cancel: CancellationToken,
) {
    let mut rx = st.store.subscribe_all();
    let mut tick = tokio::time::interval(resync);
    loop {
        let mut dirty: BTreeSet<Key> = BTreeSet::new();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => dirty.extend(r.all_keys(&st)),
            ev = rx.recv() => match ev {
                Ok(e) => dirty.extend(r.keys_for(&st, &e)),
                Err(RecvError::Lagged(_)) => dirty.extend(r.all_keys(&st)),
                Err(RecvError::Closed) => return,
            },
        }
        // Coalesce whatever else is already queued.
        loop {
            match rx.try_recv() {
                Ok(e) => dirty.extend(r.keys_for(&st, &e)),
                Err(TryRecvError::Lagged(_)) => dirty.extend(r.all_keys(&st)),
                Err(_) => break,
            }
        }
        if r.concurrency() > 1 {
            let mut owned = Vec::with_capacity(dirty.len());
            for k in dirty {
                if let Some(f) = r.reconcile_owned(&st, k) {
                    owned.push(f);
                }
            }
            let all = futures::stream::iter(owned)
                .buffer_unordered(r.concurrency())
                .collect::<()>();
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = all => {}
            }
            continue;
        }
        for k in dirty {
            if cancel.is_cancelled() {
                return;
            }
            r.reconcile(&st, k).await;
        }
    }
}

/// Starts every controller; they stop when `cancel` fires.
pub fn spawn_all(st: Arc<ApiState>, cfg: &ControllerConfig, cancel: CancellationToken) {
    let s = Duration::from_secs(30);
    tokio::spawn(run_loop(
        st.clone(),
        node_ipam::NodeIpam::new(cfg.pod_cidr, cfg.node_cidr_prefix),
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        scheduler::Scheduler,
        Duration::from_secs(2),
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        endpointslices::EndpointSlices::default(),
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        serviceaccounts::ServiceAccounts,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        deployments::Deployments,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        replicasets::ReplicaSets,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        statefulsets::StatefulSets,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        daemonsets::DaemonSets,
        s,
        cancel.clone(),
    ));
    // Deadlines, TTLs and schedules are times, not events: these look every second.
    tokio::spawn(run_loop(
        st.clone(),
        jobs::Jobs,
        Duration::from_secs(1),
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        cronjobs::CronJobs,
        Duration::from_secs(1),
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        lifecycle::Namespaces,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        crd_cleanup::CrdCleanup,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st.clone(),
        lifecycle::GarbageCollector,
        s,
        cancel.clone(),
    ));
    tokio::spawn(run_loop(
        st,
        lifecycle::PodGc,
        Duration::from_secs(1),
        cancel,
    ));
}

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub pod_cidr: ipnet::Ipv4Net,
    /// Size of each node's pod range (24 as kube-controller-manager's default for IPv4).
    pub node_cidr_prefix: u8,
}
