//! The `kubernetes` plugin: answers the cluster zone from Services, EndpointSlices, Namespaces
//! (and Pods in `verified` mode) kept up to date by API watchers (coredns plugin/kubernetes/):
//! its Corefile options ([`config`]), the watchers ([`watch`]), the store ([`model`]), the
//! answers ([`records`]) and the answers kept on the wire ([`memo`]).

pub mod config;
pub mod memo;
pub mod model;
pub mod records;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RecordType};

pub use config::{ApiSource, KubeOptions, PodMode};
pub use model::{Change, Store};
pub use records::{ExtraLookup, Outcome};
use watch::SyncState;

use crate::dnsmsg::{Request, in_zone};
use crate::pkg::wire::WireEntry;
use crate::util::log;

pub struct Kubernetes {
    pub opts: KubeOptions,
    pub store: Arc<RwLock<Store>>,
    pub sync: Arc<SyncState>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The store's change counter (shared with it, read without its lock).
    generation: Arc<AtomicU64>,
    memo: memo::Memo,
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
            generation: store.generation.clone(),
            store: Arc::new(RwLock::new(store)),
            sync: Arc::new(SyncState::default()),
            tasks: std::sync::Mutex::new(Vec::new()),
            memo: memo::Memo::default(),
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

    /// Waits up to the startup timeout for the first sync, saying every half second that it
    /// waits; warns when it has not come (the start-up hook of coredns plugin/kubernetes/
    /// kubernetes.go's `InitKubeCache`, with its `startupTimeout`).
    pub async fn wait_synced(&self) {
        const SAY_EVERY: Duration = Duration::from_millis(500);
        let until = Instant::now() + self.opts.startup_timeout;
        let mut say_at = Instant::now() + SAY_EVERY;
        while !self.synced() && Instant::now() < until {
            if Instant::now() >= say_at {
                log(
                    "INFO",
                    "kubernetes",
                    "waiting for Kubernetes API before starting server",
                );
                say_at += SAY_EVERY;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !self.synced() {
            log(
                "WARNING",
                "kubernetes",
                "starting server with unsynced Kubernetes API",
            );
        }
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

    /// The last failure of a watcher (with its causes), if any happened.
    pub fn last_error(&self) -> Option<String> {
        self.sync.last_error.lock().ok()?.clone()
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
        self.serve_encoded(req).0
    }

    /// [`Kubernetes::serve`], with the reply on the wire when it is one the plugin keeps.
    pub fn serve_encoded(&self, req: &Request) -> (Outcome, Option<Arc<WireEntry>>) {
        let Some(zone) = self.zone_for(&req.qname_lc) else {
            return (Outcome::Next, None);
        };
        let synced = self.synced();
        let Ok(store) = self.store.read() else {
            return (
                Outcome::Reply(req.reply_rcode(ResponseCode::ServFail)),
                None,
            );
        };
        // Read under the lock: no change can land between this and the answer.
        let generation = self.generation.load(Ordering::Acquire);
        let out = records::Lookup {
            opts: &self.opts,
            store: &store,
            synced,
        }
        .answer(req, zone);
        drop(store);
        let mut encoded = None;
        if let Outcome::Reply(m) = &out
            && synced
            && memoizable(req, m)
        {
            let mut qname = Vec::with_capacity(req.qname_lc.len() + 1);
            crate::pkg::wire::name_wire(&req.qname, &mut qname);
            let key = self.memo.key(&qname, u16::from(req.qtype));
            encoded = self.memo.get(key, generation);
            if encoded.is_none() {
                // As the cache stores replies: the request's question, no OPT.
                if let Some(w) = m.to_vec().ok().and_then(WireEntry::new) {
                    let w = Arc::new(w);
                    self.memo.put(key, generation, w.clone());
                    encoded = Some(w);
                }
            }
        }
        (out, encoded)
    }

    /// A reply worked out earlier for this name and type, if the data has not changed since.
    /// Only what [`Kubernetes::serve`] answered by itself is kept (never a fallthrough, a
    /// CNAME to chase, or a not-yet-synced SERVFAIL).
    /// `qname_wire` is the question name as asked (its spelling is part of the answer).
    pub fn memoized(&self, qname_wire: &[u8], qtype: u16) -> Option<Arc<WireEntry>> {
        let key = self.memo.key(qname_wire, qtype);
        self.memo.get(key, self.generation.load(Ordering::Acquire))
    }
}

/// Whether a reply depends on nothing but the name, the type and the data: the `ns.dns` records
/// (and the apex NS) carry the address the query arrived on.
fn memoizable(req: &Request, m: &hickory_proto::op::Message) -> bool {
    req.qclass == DNSClass::IN
        && req.qtype != RecordType::NS
        && !req.qname_lc.starts_with("ns.dns.")
        && m.metadata.response_code != ResponseCode::ServFail
        && m.edns.is_none()
        && m.queries.len() == 1
}
