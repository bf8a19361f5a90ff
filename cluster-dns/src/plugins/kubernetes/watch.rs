//! Feeds the [`Store`] from the Kubernetes API with kube-rs watchers (list, then watch, relist on
//! expiry), one per kind. The plugin counts as synced once every watcher finished its first list.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config};

use super::config::{ApiSource, KubeOptions, PodMode};
use super::model::{Change, Item, Kind, Store};
use crate::util::log;

/// Builds a kube client for the configured source.
pub async fn make_client(source: &ApiSource) -> anyhow::Result<Client> {
    use anyhow::Context;
    // kube's errors repeat their causes in their own text: keep each cause once.
    let plain = |e: &dyn std::error::Error| anyhow::anyhow!(error_chain(e));
    let config = match source {
        ApiSource::Endpoint(url) => {
            let uri: http::Uri = url
                .parse()
                .with_context(|| format!("invalid endpoint URL '{url}'"))?;
            let mut c = Config::new(uri);
            c.accept_invalid_certs = url.starts_with("https://");
            c
        }
        ApiSource::Kubeconfig(path, context) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| plain(&e))
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let opts = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            let config = Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| plain(&e))
                .with_context(|| format!("using kubeconfig {}", path.display()))?;
            // Client certificate files are read when the client is built.
            return Client::try_from(config)
                .map_err(|e| plain(&e))
                .with_context(|| format!("using kubeconfig {}", path.display()));
        }
        ApiSource::InCluster => match Config::incluster() {
            Ok(c) => c,
            Err(_) => Config::infer().await.context(
                "no in-cluster service account (KUBERNETES_SERVICE_HOST) and no usable kubeconfig",
            )?,
        },
    };
    Client::try_from(config)
        .map_err(|e| plain(&e))
        .context("building the Kubernetes client")
}

/// Which watchers have listed once, and the last failure.
#[derive(Debug, Default)]
pub struct SyncState {
    pub services: AtomicBool,
    pub slices: AtomicBool,
    pub namespaces: AtomicBool,
    pub pods: AtomicBool,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl SyncState {
    fn flag(&self, kind: Kind) -> &AtomicBool {
        match kind {
            Kind::Service => &self.services,
            Kind::EndpointSlice => &self.slices,
            Kind::Namespace => &self.namespaces,
            Kind::Pod => &self.pods,
        }
    }
}

/// Starts the watchers; they run until the returned handles are aborted.
pub fn start(
    client: Client,
    opts: &KubeOptions,
    store: Arc<RwLock<Store>>,
    sync: Arc<SyncState>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    handles.push(spawn_kind::<Service>(
        Api::all(client.clone()),
        Kind::Service,
        store.clone(),
        sync.clone(),
        Change::Service,
        Change::ServiceDeleted,
    ));
    if opts.noendpoints {
        sync.slices.store(true, Ordering::Release);
    } else {
        handles.push(spawn_kind::<EndpointSlice>(
            Api::all(client.clone()),
            Kind::EndpointSlice,
            store.clone(),
            sync.clone(),
            Change::Slice,
            Change::SliceDeleted,
        ));
    }
    handles.push(spawn_kind::<Namespace>(
        Api::all(client.clone()),
        Kind::Namespace,
        store.clone(),
        sync.clone(),
        Change::Namespace,
        Change::NamespaceDeleted,
    ));
    if opts.pods == PodMode::Verified {
        handles.push(spawn_kind::<Pod>(
            Api::all(client),
            Kind::Pod,
            store,
            sync.clone(),
            Change::Pod,
            Change::PodDeleted,
        ));
    } else {
        sync.pods.store(true, Ordering::Release);
    }
    handles
}

fn spawn_kind<K>(
    api: Api<K>,
    kind: Kind,
    store: Arc<RwLock<Store>>,
    sync: Arc<SyncState>,
    apply: fn(K) -> Change,
    delete: fn(K) -> Change,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        // Reduced at once: a relist of 60 000 objects must not hold the full API objects.
        let mut pending: Vec<Item> = Vec::new();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(Event::Init) => pending.clear(),
                Ok(Event::InitApply(o)) => {
                    let item = store.read().ok().and_then(|s| s.reduce(&apply(o)));
                    pending.extend(item);
                }
                Ok(Event::InitDone) => {
                    let items = std::mem::take(&mut pending);
                    if let Ok(mut s) = store.write() {
                        s.replace_all(kind, items);
                    }
                    pending.shrink_to_fit();
                    release_freed_memory();
                    sync.flag(kind).store(true, Ordering::Release);
                }
                Ok(Event::Apply(o)) => {
                    if let Ok(mut s) = store.write() {
                        s.apply(apply(o));
                    }
                }
                Ok(Event::Delete(o)) => {
                    if let Ok(mut s) = store.write() {
                        s.apply(delete(o));
                    }
                }
                Err(e) => {
                    // The whole chain: the outer errors alone ("client error (Connect)") do
                    // not say that a certificate was refused or a file is missing.
                    let msg = format!("watch of {kind:?} failed: {}", error_chain(&e));
                    log("ERROR", "kubernetes", &msg);
                    if let Ok(mut last) = sync.last_error.lock() {
                        *last = Some(msg);
                    }
                }
            }
        }
    })
}

/// Hands memory freed after a big relist back to the system (glibc keeps it otherwise, and
/// the decoded list pages are many times the size of what the store keeps).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// An error with its sources, outermost first, each told once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}
