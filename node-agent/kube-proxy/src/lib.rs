//! The kube-proxy role (iptables mode) of every node: Services and EndpointSlices are watched
//! through the API with kube-rs reflectors, turned into kube-proxy's model (`model`), rendered
//! by `service_rules` and applied with `iptables-restore --noflush` (`syncer`), so rules that
//! others own — Docker's `DOCKER_OUTPUT`/`DOCKER_POSTROUTING`, the network magic's
//! `PREROUTING` copy — are never flushed.
//!
//! Timing follows kube-proxy's `BoundedFrequencyRunner`: a change triggers a sync at once,
//! unless the previous one started less than `min_sync_period` ago (then bursts coalesce into
//! one sync at the end of that period); a periodic sync runs every `sync_period`, a full one
//! every `full_sync_period` and after a failure; other syncs write only the service chains
//! that changed (`partial_sync`), as kube-proxy's do since `MinimizeIPTablesRestore`.
//!
//! In kube-proxy's nftables mode ([`KubeProxyConfig::nftables`]) the same model is written by
//! `nftables` instead: the `ip kube-proxy` table, one `nft -f -` transaction per sync.
//!
//! This crate owns the service rules end to end: the model, the rendering (`service_rules`,
//! kube-proxy's chain names and rule order) and their sync. It runs iptables only through
//! `minikind-iptables`, and must not write chains it does not own: Docker's, the network
//! magic's and the kubelet's masquerade chain are left as they are.

pub mod jumps;
pub mod model;
pub mod nftables;
pub mod partial_sync;
pub mod service_rules;
pub mod syncer;

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use model::Model;
pub use syncer::{SyncReport, Syncer};

use crate::service_rules::ProxyConfig;
use minikind_iptables::Commands;

/// kube-proxy's informers skip objects of other proxies and headless services' slices.
pub const PROXY_LABEL_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// How long to wait before retrying after a failed sync.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Everything `run_kube_proxy` needs.
#[derive(Debug, Clone)]
pub struct KubeProxyConfig {
    /// The iptables commands of the node's flavour.
    pub commands: Commands,
    /// Settings that shape the rules (cluster CIDR for the masquerade rule, mark bit, …).
    pub rules: ProxyConfig,
    /// Minimum time between the starts of two syncs (kube-proxy's `--iptables-min-sync-period`).
    pub min_sync_period: Duration,
    /// Periodic sync interval, also without changes (kube-proxy's `--iptables-sync-period`).
    pub sync_period: Duration,
    /// Interval of full syncs: every chain rewritten and the jump rules checked (kube-proxy's
    /// `FullSyncPeriod`, one hour). Syncs after a failure are full too.
    pub full_sync_period: Duration,
    /// kube-proxy's nftables mode instead of iptables: the `nft` program and the table's
    /// settings (`networking.kubeProxyMode: nftables`).
    pub nftables: Option<(std::path::PathBuf, nftables::NftConfig)>,
}

impl Default for KubeProxyConfig {
    fn default() -> Self {
        KubeProxyConfig {
            commands: Commands::default(),
            rules: ProxyConfig::default(),
            min_sync_period: Duration::from_millis(100),
            sync_period: Duration::from_secs(30),
            full_sync_period: Duration::from_secs(3600),
            nftables: None,
        }
    }
}

impl KubeProxyConfig {
    /// A node's configuration: the default commands in `/usr/sbin`, the cluster's pod subnet
    /// as the local-traffic CIDR (traffic from outside it to a cluster IP is masqueraded).
    pub fn for_node(pod_subnet: ipnet::IpNet) -> Self {
        KubeProxyConfig {
            rules: ProxyConfig {
                cluster_cidr: Some(pod_subnet),
                ..ProxyConfig::default()
            },
            ..KubeProxyConfig::default()
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.min_sync_period.is_zero() {
            bail!("kube-proxy: min_sync_period must be positive");
        }
        for (name, period) in [
            ("sync_period", self.sync_period),
            ("full_sync_period", self.full_sync_period),
        ] {
            if period < self.min_sync_period {
                bail!(
                    "kube-proxy: {name} ({period:?}) is shorter than min_sync_period ({:?})",
                    self.min_sync_period
                );
            }
        }
        let programs = match &self.nftables {
            Some((nft, _)) => vec![nft],
            None => vec![
                &self.commands.iptables,
                &self.commands.save,
                &self.commands.restore,
            ],
        };
        for cmd in programs {
            if !cmd.exists() {
                bail!("kube-proxy: {} does not exist", cmd.display());
            }
        }
        Ok(())
    }
}

/// Runs the kube-proxy role until `shutdown` is cancelled (the rules stay in place, as
/// kube-proxy leaves them). Returns an error when the configuration is unusable or the
/// watches end unexpectedly; failed syncs are logged and retried.
pub async fn run_kube_proxy(
    cfg: KubeProxyConfig,
    client: kube::Client,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let wc = watcher::Config::default().labels(PROXY_LABEL_SELECTOR);
    let svc_events = reflector::reflector(
        svc_writer,
        watcher(Api::<Service>::all(client.clone()), wc.clone()),
    )
    .default_backoff();
    let slice_events =
        reflector::reflector(slice_writer, watcher(Api::<EndpointSlice>::all(client), wc))
            .default_backoff();
    let (changed_tx, mut changed) = watch::channel(0u64);
    let pump = tokio::spawn(pump_changes(
        svc_events,
        slice_events,
        changed_tx,
        shutdown.clone(),
    ));
    let result = sync_loop(&cfg, &services, &slices, &mut changed, &shutdown).await;
    pump.abort();
    result
}

/// Drives both reflectors and counts their events into `changed`.
async fn pump_changes<S1, S2>(
    svc_events: S1,
    slice_events: S2,
    changed: watch::Sender<u64>,
    shutdown: CancellationToken,
) where
    S1: futures::Stream<Item = Result<watcher::Event<Service>, watcher::Error>>,
    S2: futures::Stream<Item = Result<watcher::Event<EndpointSlice>, watcher::Error>>,
{
    futures::pin_mut!(svc_events, slice_events);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            ev = svc_events.next() => ev.map(|r| r.map(|_| ()).context("watching services")),
            ev = slice_events.next() => ev.map(|r| r.map(|_| ()).context("watching endpointslices")),
        };
        match result {
            Some(Ok(())) => {
                changed.send_modify(|n| *n = n.wrapping_add(1));
            }
            // The watcher retries with back-off; the error is only worth a line.
            Some(Err(e)) => tracing::warn!("kube-proxy: {e:#}"),
            None => return,
        }
    }
}

async fn sync_loop(
    cfg: &KubeProxyConfig,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    changed: &mut watch::Receiver<u64>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    // Like kube-proxy, never sync half a picture: wait for both initial lists.
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        ready = async {
            services.wait_until_ready().await?;
            slices.wait_until_ready().await
        } => ready.context("kube-proxy: a reflector stopped before its first list")?,
    }
    let mut syncer = Some(Syncer::new(cfg.commands.clone(), cfg.rules.clone()));
    let mut last_full: Option<Instant> = None;
    let mut reported: HashSet<String> = HashSet::new();
    loop {
        changed.borrow_and_update();
        let started = Instant::now();
        let full = last_full.is_none_or(|t| started.duration_since(t) >= cfg.full_sync_period);
        let (svc_objects, slice_objects) = (services.state(), slices.state());
        let mut s = syncer.take().context("kube-proxy: syncer lost")?;
        let nft = cfg.nftables.clone();
        let (s, model, outcome) = tokio::task::spawn_blocking(move || {
            let model = model::build(&svc_objects, &slice_objects);
            let outcome = match &nft {
                // The whole table in one transaction at every sync (no partial syncs yet).
                Some((program, table)) => {
                    nftables::sync(program, table, &model.ports).map(|()| SyncReport {
                        full: true,
                        restored: true,
                        service_ports: model.ports.len(),
                        endpoints: model.ports.iter().map(|p| p.endpoints.len()).sum(),
                        ..SyncReport::default()
                    })
                }
                None => s.sync(&model.ports, full),
            };
            (s, model, outcome)
        })
        .await
        .context("kube-proxy: the sync task panicked")?;
        // Malformed objects are reported once, not at every sync.
        let problems: HashSet<String> = model.problems.into_iter().collect();
        for problem in problems.difference(&reported) {
            tracing::warn!("kube-proxy: skipped {problem}");
        }
        reported = problems;
        syncer = Some(s);
        let next_wake = match outcome {
            Ok(report) => {
                if full {
                    last_full = Some(started);
                }
                if report.restored || full {
                    tracing::info!("kube-proxy: {} services, {report}", model.services);
                } else {
                    tracing::debug!("kube-proxy: {} services, {report}", model.services);
                }
                (started + cfg.sync_period).min(last_full.unwrap_or(started) + cfg.full_sync_period)
            }
            Err(e) => {
                tracing::warn!("kube-proxy: sync failed (retrying in {RETRY_AFTER:?}): {e:#}");
                last_full = None;
                Instant::now() + RETRY_AFTER
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ok(()),
            r = changed.changed() => {
                if r.is_err() && !shutdown.is_cancelled() {
                    bail!("kube-proxy: the watches of services and endpointslices ended");
                }
            }
            _ = tokio::time::sleep_until(next_wake) => {}
        }
        // Coalesce bursts: at most one sync per min_sync_period.
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(started + cfg.min_sync_period) => {}
        }
    }
}
