//! kube-proxy role benchmarks (prints numbers, asserts nothing about speed):
//!
//! 1. 1 000 and 10 000 ClusterIP services × 5 endpoints: time to build the model, render, and
//!    apply with `iptables-restore --noflush` (a full sync: jumps, `iptables-save -t nat`,
//!    restore), the rule counts, then a second full sync over the loaded rules and partial
//!    syncs for one changed and one new service. Target: 10 000 services synced in ≤ 2 s.
//! 2. Creating a Service whose endpoints exist → its DNAT rule present in the kernel, through
//!    the in-process API server, its watch and `run_kube_proxy`, with 0, 1 000 and 10 000
//!    services already synced. Target: well inside 1 s.
//!
//! 3. The same services in kube-proxy's nftables mode (`nftables`): one `nft -f -` transaction
//!    replacing the table, then the same sync again over the loaded table. Target: ≤ 1 s.
//!
//! Every scenario runs as root in a fresh private network namespace (nothing on the host is
//! touched): `cargo bench -p minikind-kube-proxy --bench kube_proxy`. Optional arguments:
//! `nft`, `legacy` or `nftables` (default: all three for part 1, nft for part 2), `sync` or
//! `latency` (only parts 1 and 3, or part 2).

#[path = "../tests/kube_proxy_common/mod.rs"]
mod kube_proxy_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::PostParams;
use kube_proxy_common::*;
use minikind_iptables::Commands;
use minikind_kube_proxy::service_rules::{Protocol, ProxyConfig};
use minikind_kube_proxy::{Syncer, model, nftables};
use serde_json::json;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Service `i` of a synthetic cluster: `ns-<i/100>/svc-<i>` at a unique cluster IP, one TCP
/// port, and its slice with `eps` ready endpoints.
fn objects(n: usize, eps: usize) -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let (ns, name) = (format!("ns-{}", i / 100), format!("svc-{i}"));
        let ip = format!("10.96.{}.{}", 1 + i / 250, 1 + i % 250);
        services.push(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": name},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            }))
            .expect("service"),
        ));
        let endpoints: Vec<serde_json::Value> = (0..eps)
            .map(|e| {
                let k = i * eps + e;
                json!({"addresses": [format!("10.{}.{}.{}", 128 + k / 62500, (k / 250) % 250, 1 + k % 250)],
                       "conditions": {"ready": true}})
            })
            .collect();
        slices.push(Arc::new(
            serde_json::from_value(json!({
                "metadata": {"namespace": ns, "name": format!("{name}-abcde"),
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .expect("slice"),
        ));
    }
    (services, slices)
}

/// Runs `f` on a thread of its own in a fresh network namespace.
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        f()
    })
    .join()
    .expect("scenario thread")
}

fn scale(flavour: &'static str, commands: Commands, n: usize) {
    in_fresh_netns(move || {
        let (mut services, mut slices) = objects(n, 5);
        let t = Instant::now();
        let m = model::build(&services, &slices);
        let build = t.elapsed();
        let mut syncer = Syncer::new(commands.clone(), ProxyConfig::default());
        let t = Instant::now();
        let first = syncer.sync(&m.ports, true).expect("first full sync");
        let first_total = t.elapsed();
        println!(
            "[{flavour}] {n} services × 5 endpoints: {} filter + {} nat rules, {} nat chains, {:.1} MB restore input",
            first.filter_rules,
            first.nat_rules,
            first.nat_chains,
            first.bytes_written as f64 / 1e6
        );
        println!(
            "[{flavour}]   first full sync {} (model {}, iptables-save + jump check {}, render {}, plan {}, iptables-restore {})",
            ms(first_total + build),
            ms(build),
            ms(first.setup_time),
            ms(first.render_time),
            ms(first.plan_time),
            ms(first.apply_time)
        );
        let t = Instant::now();
        let again = syncer.sync(&m.ports, true).expect("second full sync");
        println!(
            "[{flavour}]   full resync over loaded rules {} (jump check {}, render {}, plan {}, iptables-restore {})",
            ms(t.elapsed()),
            ms(again.setup_time),
            ms(again.render_time),
            ms(again.plan_time),
            ms(again.apply_time)
        );

        // One service gains an endpoint.
        let mut changed: EndpointSlice = (*slices[n / 2]).clone();
        changed.endpoints.push(
            serde_json::from_value(
                json!({"addresses": ["10.250.0.1"], "conditions": {"ready": true}}),
            )
            .unwrap(),
        );
        slices[n / 2] = Arc::new(changed);
        let t = Instant::now();
        let m = model::build(&services, &slices);
        let r = syncer.sync(&m.ports, false).expect("partial sync");
        println!(
            "[{flavour}]   partial sync, one service scaled: {} ({} rules written, {} chains written, {} unchanged; render {}, plan {}, iptables-restore {})",
            ms(t.elapsed()),
            r.rules_written,
            r.chains_written,
            r.chains_skipped,
            ms(r.render_time),
            ms(r.plan_time),
            ms(r.apply_time)
        );

        // One new service.
        let (extra_svc, extra_slice) = objects(n + 1, 5);
        services.push(extra_svc[n].clone());
        slices.push(extra_slice[n].clone());
        let t = Instant::now();
        let m = model::build(&services, &slices);
        let r = syncer.sync(&m.ports, false).expect("partial sync");
        println!(
            "[{flavour}]   partial sync, one new service: {} ({} rules written, {} chains written; render {}, plan {}, iptables-restore {})",
            ms(t.elapsed()),
            r.rules_written,
            r.chains_written,
            ms(r.render_time),
            ms(r.plan_time),
            ms(r.apply_time)
        );

        // Nothing changed: no restore at all.
        let t = Instant::now();
        let m = model::build(&services, &slices);
        let r = syncer.sync(&m.ports, false).expect("no-op sync");
        assert!(!r.restored);
        println!(
            "[{flavour}]   sync with nothing changed: {}",
            ms(t.elapsed())
        );
    });
}

/// Part 3: the same services as kube-proxy's nftables table, with the host's `nft`.
fn scale_nftables(n: usize) {
    in_fresh_netns(move || {
        let (services, slices) = objects(n, 5);
        let cfg = nftables::NftConfig {
            cluster_cidr: ProxyConfig::default().cluster_cidr,
            masquerade_all: false,
            service_cidrs: vec![
                minikind_contract::DEFAULT_SERVICE_SUBNET
                    .parse()
                    .expect("CIDR"),
            ],
            node_ips: vec!["172.18.0.2".parse().expect("IP")],
        };
        let nft = std::path::Path::new("nft");
        let t = Instant::now();
        let m = model::build(&services, &slices);
        let build = t.elapsed();
        let t = Instant::now();
        let text = nftables::transaction(&cfg, &m.ports);
        let render = t.elapsed();
        let t = Instant::now();
        nftables::apply(nft, &text).expect("first nftables sync");
        let apply = t.elapsed();
        println!(
            "[nftables] {n} services × 5 endpoints: {} lines, {:.1} MB transaction",
            text.lines().count(),
            text.len() as f64 / 1e6
        );
        println!(
            "[nftables]   first full sync {} (model {}, render {}, nft -f {})",
            ms(build + render + apply),
            ms(build),
            ms(render),
            ms(apply)
        );
        let t = Instant::now();
        nftables::sync(nft, &cfg, &m.ports).expect("second nftables sync");
        println!(
            "[nftables]   full resync over the loaded table {}",
            ms(t.elapsed())
        );
    });
}

/// Service creation → DNAT in the kernel, through the API server and `run_kube_proxy`.
fn create_to_rule(commands: Commands, background: usize, rounds: usize) {
    in_fresh_netns(move || {
        run("ip", &["link", "set", "lo", "up"]);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let lab = Lab::start(commands.clone(), Duration::from_secs(3600)).await;
            let (services, slices) = objects(background, 5);
            let t = Instant::now();
            for (svc, slice) in services.iter().zip(&slices) {
                let ns = svc.metadata.namespace.as_deref().unwrap();
                ensure_namespace(&lab, ns).await;
                lab.slices(ns).create(&PostParams::default(), slice).await.expect("slice");
                lab.services(ns).create(&PostParams::default(), svc).await.expect("service");
            }
            if background > 0 {
                let last = port(
                    services[background - 1].metadata.namespace.as_deref().unwrap(),
                    services[background - 1].metadata.name.as_deref().unwrap(),
                    "http",
                    Protocol::Tcp,
                )
                .svc_chain();
                let c = commands.clone();
                eventually(120, "the background services synced", move || {
                    let s = dump(&c, "nat");
                    has_chain(&s, &last).then_some(()).ok_or_else(|| "not yet".to_string())
                })
                .await;
                println!(
                    "  {background} background services created through the API and synced in {}",
                    ms(t.elapsed())
                );
            }
            let mut times = Vec::new();
            for r in 0..rounds {
                let name = format!("probe-{r}");
                let ip = format!("10.96.240.{}", r + 1);
                let target = format!("10.251.0.{}:8080", r + 1);
                lab.slice("default", &name, &[&format!("10.251.0.{}", r + 1)], &[], &[("http", "TCP", 8080)])
                    .await;
                let started = Instant::now();
                lab.service("default", &name, &ip, &[("http", "TCP", 80)]).await;
                // Listing just the endpoint's chain keeps each poll cheap (a full `-S` of a
                // large table takes longer than the sync being measured).
                let sep = port("default", &name, "http", Protocol::Tcp)
                    .sep_chain(&ep(&format!("10.251.0.{}", r + 1), 8080));
                let program = commands.iptables.clone();
                let needle = format!("--to-destination {target}");
                eventually(10, "the probe's DNAT", move || {
                    let out = std::process::Command::new(&program)
                        .args(["-w", "-t", "nat", "-S", &sep])
                        .output()
                        .map_err(|e| e.to_string())?;
                    let text = String::from_utf8_lossy(&out.stdout);
                    (out.status.success() && text.contains(&needle))
                        .then_some(())
                        .ok_or_else(|| "not yet".to_string())
                })
                .await;
                times.push(started.elapsed());
            }
            times.sort();
            println!(
                "  service created → DNAT in the kernel ({background} services present), n={}: min {}, median {}, max {} (polling `iptables -t nat -S <its KUBE-SEP chain>`)",
                times.len(),
                ms(times[0]),
                ms(times[times.len() / 2]),
                ms(*times.last().unwrap())
            );
            lab.shutdown().await;
        });
        rt.shutdown_timeout(Duration::from_secs(5));
    });
}

async fn ensure_namespace(lab: &Lab, ns: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(lab.client.clone());
    if api.get_opt(ns).await.expect("namespace get").is_none() {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = api.create(&PostParams::default(), &obj).await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the flavour filter is any other argument.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    // Words pick flavours (`nft`, `legacy`) and parts (`sync`, `latency`); none = all.
    let picked = |set: &[&str], w: &str| {
        !args.iter().any(|a| set.contains(&a.as_str())) || args.iter().any(|a| a == w)
    };
    let want = |f: &str| picked(&["nft", "legacy", "nftables"], f);
    let (want_sync, want_latency) = (
        picked(&["sync", "latency"], "sync"),
        picked(&["sync", "latency"], "latency"),
    );
    let flavours: [(&'static str, Commands); 2] = [("nft", nft()), ("legacy", legacy())];
    for (name, commands) in &flavours {
        if !want(name) || !want_sync {
            continue;
        }
        if let Some(why) = unavailable(commands) {
            println!("[{name}] skipped: {why}");
            continue;
        }
        for n in [1_000, 10_000] {
            scale(name, commands.clone(), n);
        }
    }
    if want("nftables") && want_sync {
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            for n in [1_000, 10_000] {
                scale_nftables(n);
            }
        } else {
            println!("[nftables] skipped: no nft (Debian's nftables package)");
        }
    }
    if !want_latency {
        return;
    }
    let (name, commands) = if want("nft") {
        &flavours[0]
    } else {
        &flavours[1]
    };
    if let Some(why) = unavailable(commands) {
        println!("create → rule: skipped: {why}");
        return;
    }
    println!("[{name}] create → rule latency:");
    create_to_rule(commands.clone(), 0, 10);
    create_to_rule(commands.clone(), 1_000, 10);
    create_to_rule(commands.clone(), 10_000, 5);
}
