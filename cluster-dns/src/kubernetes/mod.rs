//! The `kubernetes` plugin: answers the cluster zone from Services, EndpointSlices, Namespaces
//! (and Pods in `verified` mode) kept up to date by API watchers.

pub mod config;
pub mod model;
pub mod records;
pub mod watch;

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

pub use config::{ApiSource, KubeOptions, PodMode};
pub use model::{Change, Store};
pub use records::Outcome;
use watch::SyncState;

use crate::dnsmsg::{Request, in_zone};

pub struct Kubernetes {
    pub opts: KubeOptions,
    pub store: Arc<RwLock<Store>>,
    pub sync: Arc<SyncState>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        if let Ok(t) = self.tasks.lock() {
            for h in t.iter() {
                h.abort();
            }
        }
    }
}

impl Kubernetes {
    /// A plugin with an empty store and no watchers (fed through [`Kubernetes::apply`]).
    pub fn new(opts: KubeOptions) -> Self {
        let mut store = Store::new();
        store.keep = model::Keep {
            labels: opts.labels.is_some(),
            pod_names: opts.endpoint_pod_names,
        };
        Kubernetes {
            opts,
            store: Arc::new(RwLock::new(store)),
            sync: Arc::new(SyncState::default()),
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Connects to the API and starts the watchers.
    pub async fn start(&self) -> anyhow::Result<()> {
        let client = watch::make_client(&self.opts.source).await?;
        let handles = watch::start(client, &self.opts, self.store.clone(), self.sync.clone());
        if let Ok(mut t) = self.tasks.lock() {
            t.extend(handles);
        }
        Ok(())
    }

    /// Feeds one change into the store (what the watchers do).
    pub fn apply(&self, change: Change) {
        if let Ok(mut s) = self.store.write() {
            s.apply(change);
        }
    }

    /// Marks every watcher as synced (for a store fed by hand).
    pub fn mark_synced(&self) {
        for f in [
            &self.sync.services,
            &self.sync.slices,
            &self.sync.namespaces,
            &self.sync.pods,
        ] {
            f.store(true, Ordering::Release);
        }
    }

    pub fn synced(&self) -> bool {
        [
            &self.sync.services,
            &self.sync.slices,
            &self.sync.namespaces,
            &self.sync.pods,
        ]
        .iter()
        .all(|f| f.load(Ordering::Acquire))
    }

    /// The longest plugin zone holding the name.
    pub fn zone_for(&self, qname_lc: &str) -> Option<&str> {
        self.opts
            .zones
            .iter()
            .filter(|z| in_zone(qname_lc, z))
            .max_by_key(|z| z.len())
            .map(String::as_str)
    }

    pub fn serve(&self, req: &Request) -> Outcome {
        let Some(zone) = self.zone_for(&req.qname_lc) else {
            return Outcome::Next;
        };
        let synced = self.synced();
        let Ok(store) = self.store.read() else {
            return Outcome::Reply(req.reply_rcode(hickory_proto::op::ResponseCode::ServFail));
        };
        records::Lookup {
            opts: &self.opts,
            store: &store,
            synced,
        }
        .answer(req, zone)
    }
}
