//! API server benchmark (prints numbers, asserts nothing): creates per second, watch fan-out
//! to 10 watchers, list latency with 10 000 services (raw and through kube-rs), and the
//! server's RSS with 10 000 services and 50 000 endpoints.
//!
//! The server runs as a separate process (this binary re-executed with
//! `MINIKIND_BENCH_SERVE=<dir>`) on 127.0.0.1 with TLS and a token, so its RSS is its own.
//!
//! Run: `cargo bench -p minikind-control-plane --bench apiserver`
//! (`APISERVER_BENCH_SCALE=0.1` for a quick run with a tenth of the objects).

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONCURRENCY: usize = 64;

fn main() {
    if let Ok(dir) = std::env::var("MINIKIND_BENCH_SERVE") {
        let args = ["apiserver", "--listen", "127.0.0.1:0", "--data", &dir];
        std::process::exit(minikind_control_plane::apiserver_cli_main(
            args.iter().map(Into::into).collect(),
        ));
    }
    let scale: f64 = std::env::var("APISERVER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |x: usize| ((x as f64 * scale).round() as usize).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut server = Server::start(dir.path());
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = rt.block_on(run(&server, dir.path(), n));
    server.stop();
    if let Err(e) = result {
        eprintln!("benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

struct Server {
    child: Child,
}

impl Server {
    fn start(dir: &std::path::Path) -> Server {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new(exe)
            .env("MINIKIND_BENCH_SERVE", dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server process starts");
        let out = child.stdout.take().expect("stdout piped");
        let mut lines = std::io::BufReader::new(out).lines();
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => panic!("the server exited before listening"),
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        // SIGTERM to the process this benchmark started, then reap it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(dir: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = std::fs::read_to_string(dir.join("admin.conf"))?;
    let kc = kube::config::Kubeconfig::from_yaml(&kc)?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(cfg)?)
}

async fn namespace(c: &kube::Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(c.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}}))?,
    )
    .await?;
    Ok(())
}

/// Runs `count` creations with CONCURRENCY in flight; returns the elapsed time.
async fn create_many<F, Fut>(count: usize, make: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let t = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(make)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(t.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(
    server: &Server,
    dir: &std::path::Path,
    n: impl Fn(usize) -> usize,
) -> anyhow::Result<()> {
    let c = client(dir).await?;
    println!(
        "minikind API server benchmark (TLS + token, kube-rs client, {CONCURRENCY} requests in flight)"
    );
    println!("idle RSS: {} MiB", server.rss_kib() / 1024);

    // 1. Creates per second.
    namespace(&c, "bench-create").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "bench-create");
    let count = n(5000);
    let el = create_many(count, |i| {
        let cms = cms.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": "v"}}),
            )?;
            cms.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "create: {count} ConfigMaps in {:.0} ms = {:.0} creates/s",
        ms(el),
        count as f64 / el.as_secs_f64()
    );

    // 2. Watch fan-out to 10 watchers.
    namespace(&c, "bench-watch").await?;
    let wcms: Api<ConfigMap> = Api::namespaced(c.clone(), "bench-watch");
    let rv = wcms
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let count = n(2000);
    let mut watchers = Vec::new();
    for _ in 0..10 {
        let mut s = wcms
            .watch(&WatchParams::default().timeout(290), &rv)
            .await?
            .boxed();
        watchers.push(tokio::spawn(async move {
            let mut seen = 0usize;
            while let Some(ev) = s.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    seen += 1;
                    if seen == count {
                        return Instant::now();
                    }
                }
            }
            Instant::now()
        }));
    }
    let t0 = Instant::now();
    create_many(count, |i| {
        let wcms = wcms.clone();
        async move {
            let cm: ConfigMap = serde_json::from_value(
                json!({"metadata": {"name": format!("w-{i}")}, "data": {"k": "v"}}),
            )?;
            wcms.create(&PostParams::default(), &cm).await?;
            Ok(())
        }
    })
    .await?;
    let mut last = t0;
    for w in watchers {
        last = last.max(w.await?);
    }
    let el = last - t0;
    println!(
        "watch fan-out: {count} objects to 10 watchers in {:.0} ms = {:.0} objects/s, {:.0} events/s delivered",
        ms(el),
        count as f64 / el.as_secs_f64(),
        (count * 10) as f64 / el.as_secs_f64()
    );

    // 3. 10 000 services: create, then list latency.
    namespace(&c, "bench-svc").await?;
    let svcs: Api<Service> = Api::namespaced(c.clone(), "bench-svc");
    let count = n(10_000);
    let el = create_many(count, |i| {
        let svcs = svcs.clone();
        async move {
            let s: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}"), "labels": {"app": format!("a{}", i % 10)}},
                // No selector: the endpoints are the slices created below, not the controller's.
                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            }))?;
            svcs.create(&PostParams::default(), &s).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "create: {count} Services (cluster IP allocated) in {:.0} ms = {:.0} creates/s",
        ms(el),
        count as f64 / el.as_secs_f64()
    );
    let rss_svc = server.rss_kib();
    let path = "/api/v1/namespaces/bench-svc/services";
    let mut raw = Vec::new();
    let mut bytes = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let req = http::Request::get(path).body(Vec::new())?;
        let body = c.request_text(req).await?;
        raw.push(t.elapsed());
        bytes = body.len();
    }
    println!(
        "list {count} services (raw GET, body {:.1} MiB): median {:.1} ms, min {:.1} ms",
        bytes as f64 / 1048576.0,
        ms(median(raw.clone())),
        ms(*raw.iter().min().unwrap_or(&Duration::ZERO))
    );
    let mut typed = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let l = svcs.list(&ListParams::default()).await?;
        typed.push(t.elapsed());
        assert_eq!(l.items.len(), count);
    }
    println!(
        "list {count} services (kube-rs Api<Service>::list, typed): median {:.1} ms, min {:.1} ms",
        ms(median(typed.clone())),
        ms(*typed.iter().min().unwrap_or(&Duration::ZERO))
    );
    let mut table = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let req = http::Request::get(path)
            .header(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )
            .body(Vec::new())?;
        c.request_text(req).await?;
        table.push(t.elapsed());
    }
    println!(
        "list {count} services as a Table (kubectl get): median {:.1} ms",
        ms(median(table))
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    println!(
        "RSS after the lists (and one allocator trim): {} MiB",
        server.rss_kib() / 1024
    );

    // 4. 50 000 endpoints in 10 000 slices.
    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "bench-svc");
    let el = create_many(count, |i| {
        let slices = slices.clone();
        async move {
            let eps: Vec<_> = (0..5)
                .map(|j| json!({"addresses": [format!("10.{}.{}.{}", 100 + (i / 65536) % 100, (i / 256) % 256, (i % 256 + j) % 256)],
                                "conditions": {"ready": true}, "nodeName": "n1",
                                "targetRef": {"kind": "Pod", "namespace": "bench-svc", "name": format!("p-{i}-{j}")}}))
                .collect();
            let s: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i}-x"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }))?;
            slices.create(&PostParams::default(), &s).await?;
            Ok(())
        }
    })
    .await?;
    println!(
        "create: {count} EndpointSlices ({} endpoints) in {:.0} ms",
        count * 5,
        ms(el)
    );
    tokio::time::sleep(Duration::from_secs(11)).await;
    println!(
        "RSS: {:.0} MiB with {count} services; {:.0} MiB with {count} services + {} endpoints (+ {} ConfigMaps)",
        rss_svc as f64 / 1024.0,
        server.rss_kib() as f64 / 1024.0,
        count * 5,
        n(5000) + n(2000)
    );
    Ok(())
}
