//! A running server: the blocks built from a Corefile, their listeners, and the lifecycle the
//! plugins hook into: their HTTP endpoints (health, ready, prometheus), the loop probes, the
//! reload loop and the lameduck wait, whose behaviour lives in each plugin's folder. A reload
//! builds the new configuration completely before swapping it in; a bad one leaves the running
//! one untouched.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::task::JoinHandle;

use crate::chain::{Block, FatalHook};
use crate::corefile::{self, Corefile};
use crate::plugins::{health, prometheus, ready, reload};
use crate::server::{Listener, display_addr};
use crate::util::log;
use crate::zones::{SharedTable, ZoneTable};

/// How the server is started.
#[derive(Clone)]
pub struct Options {
    /// Port for blocks whose keys give none (`-dns.port`, default 53).
    pub dns_port: u16,
    /// Called on a fatal plugin error (loop detected); the binary logs and exits.
    pub fatal: FatalHook,
    /// UDP sockets per address (SO_REUSEPORT), usually the number of cores.
    pub udp_workers: usize,
    /// Print the start banner.
    pub banner: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dns_port: 53,
            fatal: Arc::new(|msg: &str| {
                log("FATAL", "loop", msg);
                std::process::exit(1);
            }),
            udp_workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            banner: true,
        }
    }
}

/// A built configuration: the blocks, and which addresses serve which zones.
pub struct Config {
    pub blocks: Vec<Arc<Block>>,
    pub tables: BTreeMap<SocketAddr, Arc<ZoneTable>>,
    pub text: String,
}

impl Config {
    /// Builds every block (no network yet). Errors carry the Corefile position.
    pub fn build(cf: &Corefile, text: String, opts: &Options) -> anyhow::Result<Config> {
        let mut blocks = Vec::new();
        for sb in &cf.blocks {
            blocks.push(Arc::new(Block::build(
                sb,
                opts.dns_port,
                opts.fatal.clone(),
            )?));
        }
        type Entries = Vec<(String, Option<ipnet::IpNet>, Arc<Block>)>;
        let mut by_addr: BTreeMap<SocketAddr, (Entries, String)> = BTreeMap::new();
        for b in &blocks {
            for key in &b.keys {
                let binds: Vec<Option<IpAddr>> = if b.bind.is_empty() {
                    vec![None]
                } else {
                    b.bind.iter().copied().map(Some).collect()
                };
                for ip in binds {
                    let sock_ip = ip.unwrap_or(IpAddr::from([0u16; 8]));
                    let addr = SocketAddr::new(sock_ip, key.port);
                    let entry = by_addr
                        .entry(addr)
                        .or_insert_with(|| (Vec::new(), display_addr(ip, key.port)));
                    if entry
                        .0
                        .iter()
                        .any(|(z, n, _)| *z == key.zone && *n == key.net)
                    {
                        return Err(anyhow!(
                            "cannot serve {}{} - it is already defined",
                            key.zone,
                            display_addr(ip, key.port)
                        ));
                    }
                    entry.0.push((key.zone.clone(), key.net, b.clone()));
                }
            }
        }
        let tables = by_addr
            .into_iter()
            .map(|(a, (e, d))| (a, Arc::new(ZoneTable::new(e, d))))
            .collect();
        Ok(Config {
            blocks,
            tables,
            text,
        })
    }

    /// Connects the kubernetes plugins and waits (up to their startup timeout) for the first sync.
    pub async fn start(&self) -> anyhow::Result<()> {
        for b in &self.blocks {
            if let Some(k) = &b.kubernetes {
                k.start().await.context("plugin/kubernetes")?;
            }
        }
        for b in &self.blocks {
            if let Some(k) = &b.kubernetes {
                k.wait_synced().await;
            }
        }
        Ok(())
    }

    fn http_routes(&self) -> BTreeMap<String, Vec<&'static str>> {
        let mut m: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for b in &self.blocks {
            if let Some(h) = &b.health {
                push_route(&mut m, &h.addr, health::PATH);
            }
            if let Some(r) = &b.ready {
                push_route(&mut m, r, ready::PATH);
            }
            if let Some(p) = &b.prometheus {
                push_route(&mut m, p, prometheus::PATH);
            }
        }
        m
    }

    fn lameduck(&self) -> Duration {
        self.blocks
            .iter()
            .filter_map(|b| b.health.as_ref().map(|h| h.lameduck))
            .max()
            .unwrap_or_default()
    }

    fn reload(&self) -> Option<reload::Reload> {
        self.blocks.iter().find_map(|b| b.reload)
    }
}

fn push_route(m: &mut BTreeMap<String, Vec<&'static str>>, addr: &str, path: &'static str) {
    let v = m.entry(addr.to_string()).or_default();
    if !v.contains(&path) {
        v.push(path);
    }
}

/// HTTP address → the paths served there.
type HttpRoutes = BTreeMap<String, Vec<&'static str>>;

struct Shared {
    current: RwLock<Arc<Config>>,
    shutting_down: AtomicBool,
}

/// The running server.
pub struct Instance {
    shared: Arc<Shared>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    http: Mutex<(HttpRoutes, Vec<JoinHandle<()>>)>,
    background: Mutex<Vec<JoinHandle<()>>>,
    path: Option<PathBuf>,
    opts: Options,
    /// Last Corefile text a reload attempted (so a bad file is reported once).
    attempted: Mutex<String>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(h) = self.http.lock() {
            for t in &h.1 {
                t.abort();
            }
        }
        if let Ok(b) = self.background.lock() {
            for t in b.iter() {
                t.abort();
            }
        }
    }
}

impl Instance {
    /// Parses, builds and starts a Corefile read from `path`.
    pub async fn start_file(path: PathBuf, opts: Options) -> anyhow::Result<Arc<Instance>> {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let cf = corefile::parse_str(&text, &path.display().to_string(), path.parent(), &|n| {
            std::env::var(n).ok()
        })?;
        Self::start_parsed(cf, text, Some(path), opts).await
    }

    /// Starts from Corefile text (imports of files are resolved against the current folder).
    pub async fn start_text(text: &str, opts: Options) -> anyhow::Result<Arc<Instance>> {
        let cf = corefile::parse_str(text, "Corefile", Some(std::path::Path::new(".")), &|n| {
            std::env::var(n).ok()
        })?;
        Self::start_parsed(cf, text.to_string(), None, opts).await
    }

    async fn start_parsed(
        cf: Corefile,
        text: String,
        path: Option<PathBuf>,
        opts: Options,
    ) -> anyhow::Result<Arc<Instance>> {
        let config = Arc::new(Config::build(&cf, text.clone(), &opts)?);
        let inst = Arc::new(Instance {
            shared: Arc::new(Shared {
                current: RwLock::new(config.clone()),
                shutting_down: AtomicBool::new(false),
            }),
            listeners: Mutex::new(HashMap::new()),
            http: Mutex::new((BTreeMap::new(), Vec::new())),
            background: Mutex::new(Vec::new()),
            path,
            opts,
            attempted: Mutex::new(text),
        });
        // As in CoreDNS, whose `ready`, `health` and `prometheus` plugins start listening
        // before the `kubernetes` plugin waits for its first sync (they come before it in its
        // plugin.cfg, and caddy runs the start-up hooks in that order): meanwhile `/ready`
        // answers 503 naming the plugin, `/health` 200. DNS is served once the sync is done
        // (or its startup timeout passed).
        inst.restart_http(&config).await?;
        config.start().await?;
        inst.apply(config).await?;
        if let Some(r) = inst.current().reload() {
            let weak = Arc::downgrade(&inst);
            let h = r.spawn(move || {
                let inst = weak.upgrade()?;
                Some(async move { inst.check_reload().await })
            });
            if let Ok(mut b) = inst.background.lock() {
                b.push(h);
            }
        }
        Ok(inst)
    }

    pub fn current(&self) -> Arc<Config> {
        self.shared
            .current
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The addresses DNS is served on.
    pub fn dns_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .lock()
            .map(|l| l.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Binds what is new, swaps tables on kept addresses, closes what is gone, then starts the
    /// loop probes and (re)starts the HTTP endpoints if their addresses changed.
    async fn apply(&self, config: Arc<Config>) -> anyhow::Result<()> {
        {
            let mut listeners = self
                .listeners
                .lock()
                .map_err(|_| anyhow!("listener table poisoned"))?;
            let mut new_listeners = Vec::new();
            for (addr, table) in &config.tables {
                if !listeners.contains_key(addr) {
                    let shared: SharedTable = Arc::new(RwLock::new(table.clone()));
                    let l = match Listener::bind(*addr, shared.clone(), self.opts.udp_workers) {
                        Ok(l) => l,
                        // No IPv6 on this host: fall back to the IPv4 wildcard.
                        Err(_) if addr.ip() == IpAddr::from([0u16; 8]) => Listener::bind(
                            SocketAddr::new(IpAddr::from([0, 0, 0, 0]), addr.port()),
                            shared,
                            self.opts.udp_workers,
                        )
                        .with_context(|| format!("listen on {addr}"))?,
                        Err(e) => return Err(anyhow!("listen tcp/udp {addr}: {e}")),
                    };
                    new_listeners.push((*addr, l));
                }
            }
            for (addr, table) in &config.tables {
                if let Some(l) = listeners.get(addr)
                    && let Ok(mut t) = l.table.write()
                {
                    *t = table.clone();
                }
            }
            listeners.retain(|a, _| config.tables.contains_key(a));
            listeners.extend(new_listeners);
        }
        if let Ok(mut cur) = self.shared.current.write() {
            *cur = config.clone();
        }
        self.restart_http(&config).await?;
        if self.opts.banner {
            for b in &config.blocks {
                for k in &b.keys {
                    println!(
                        "{}",
                        if k.zone == "." {
                            format!(".:{}", k.port)
                        } else {
                            format!("{}:{}", k.zone, k.port)
                        }
                    );
                }
            }
            println!("cluster-dns-{}", env!("CARGO_PKG_VERSION"));
        }
        self.start_loop_probes(&config);
        Ok(())
    }

    async fn restart_http(&self, config: &Config) -> anyhow::Result<()> {
        let routes = config.http_routes();
        {
            let mut guard = self
                .http
                .lock()
                .map_err(|_| anyhow!("http table poisoned"))?;
            if guard.0 == routes && !guard.1.is_empty() {
                return Ok(());
            }
            for t in guard.1.drain(..) {
                t.abort();
            }
        }
        // Let aborted servers release their ports.
        tokio::task::yield_now().await;
        let mut handles = Vec::new();
        for (addr, paths) in &routes {
            let sock = crate::http::http_addr(addr)?;
            let listener = crate::http::bind_retry(sock)
                .await
                .with_context(|| format!("listen on {addr}"))?;
            let router = crate::http::router(paths, self.shared_state());
            handles.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
        }
        let mut guard = self
            .http
            .lock()
            .map_err(|_| anyhow!("http table poisoned"))?;
        *guard = (routes, handles);
        Ok(())
    }

    fn shared_state(&self) -> crate::http::State {
        let shared = self.shared.clone();
        let ready_shared = self.shared.clone();
        crate::http::State {
            not_ready: Arc::new(move || {
                let mut v: Vec<&'static str> = Vec::new();
                if ready_shared.shutting_down.load(Ordering::Acquire) {
                    v.push("shutdown");
                }
                if let Ok(c) = ready_shared.current.read() {
                    for b in &c.blocks {
                        for n in b.not_ready() {
                            if !v.contains(&n) {
                                v.push(n);
                            }
                        }
                    }
                }
                v
            }),
            before_metrics: Arc::new(move || {
                if let Ok(c) = shared.current.read() {
                    for b in &c.blocks {
                        if let Some(cache) = &b.cache {
                            cache.report_entries();
                        }
                    }
                }
            }),
        }
    }

    /// Sends each block's loop probe to its own listener until something answers (30 s at
    /// most), then disables the check.
    fn start_loop_probes(&self, config: &Config) {
        for b in &config.blocks {
            if b.r#loop.is_none() {
                continue;
            }
            let Some(key) = b.keys.first() else { continue };
            let ip = b
                .bind
                .first()
                .copied()
                .filter(|i| !i.is_unspecified())
                .unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let target = SocketAddr::new(ip, key.port);
            let block = b.clone();
            let h = tokio::spawn(async move {
                if let Some(lp) = &block.r#loop {
                    lp.probe_until_answered(target).await;
                }
            });
            if let Ok(mut bg) = self.background.lock() {
                bg.push(h);
            }
        }
    }

    /// Re-reads the Corefile; swaps in a changed, valid one.
    pub async fn check_reload(&self) {
        let Some(path) = &self.path else { return };
        let running = self.current().text.clone();
        let Some(text) = reload::changed(path, &running, &self.attempted) else {
            return;
        };
        reload::report(&text, self.reload_text(&text).await);
    }

    async fn reload_text(&self, text: &str) -> anyhow::Result<()> {
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("Corefile"));
        let cf = corefile::parse_str(text, &path.display().to_string(), path.parent(), &|n| {
            std::env::var(n).ok()
        })?;
        let config = Config::build(&cf, text.to_string(), &self.opts)?;
        config.start().await?;
        self.apply(Arc::new(config)).await
    }

    /// Marks the server as stopping: `/ready` turns 503, then waits the lameduck period.
    pub async fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        health::lameduck(self.current().lameduck()).await;
    }
}
