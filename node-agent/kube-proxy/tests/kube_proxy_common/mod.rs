//! Shared helpers for the kube-proxy tests: each test moves its thread into a private network
//! namespace of its own (nextest runs every test in its own process), starts an in-process API
//! server on that namespace's loopback and runs `run_kube_proxy` against the real iptables
//! there. The host's rules are never touched; the namespace and its rules vanish with the test
//! process, also when it fails.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use minikind_control_plane::{ControlPlaneConfig, RunningControlPlane, start};
use minikind_iptables::Commands;
use minikind_kube_proxy::service_rules::{self, Endpoint, Protocol};
use minikind_kube_proxy::{KubeProxyConfig, run_kube_proxy};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Why a test did not run, or None when it can.
pub fn unavailable(commands: &Commands) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces, iptables)".into());
    }
    for c in [&commands.iptables, &commands.save, &commands.restore] {
        if !c.exists() {
            return Some(format!("{} is missing", c.display()));
        }
    }
    None
}

pub fn nft() -> Commands {
    Commands {
        iptables: "/usr/sbin/iptables-nft".into(),
        save: "/usr/sbin/iptables-nft-save".into(),
        restore: "/usr/sbin/iptables-nft-restore".into(),
    }
}

pub fn legacy() -> Commands {
    Commands {
        iptables: "/usr/sbin/iptables-legacy".into(),
        save: "/usr/sbin/iptables-legacy-save".into(),
        restore: "/usr/sbin/iptables-legacy-restore".into(),
    }
}

/// Runs `test` in a private network namespace, on a runtime whose threads share it. A
/// machine that cannot run it (not root, no iptables) fails the test saying why: the suite's
/// prerequisites are the README's, and a test that checked nothing must not pass.
pub fn isolated<F: Future<Output = ()>>(commands: &Commands, test: impl FnOnce() -> F) {
    if let Some(why) = unavailable(commands) {
        panic!("cannot run: {why}");
    }
    minikind_test_support::netns::enter_private_network(nix::sched::CloneFlags::empty());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(test());
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// Runs a command in the current namespace; panics with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Feeds `text` to an iptables-restore (`extra` = e.g. `--noflush`).
pub fn restore(program: &Path, extra: &[&str], text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writing rules");
    let out = child.wait_with_output().expect("waiting for restore");
    assert!(
        out.status.success(),
        "{} rejected:\n{text}\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rules of the namespace as `iptables-save -t <table>` prints them.
pub fn dump(commands: &Commands, table: &str) -> String {
    let program = commands.save.to_string_lossy().into_owned();
    run(&program, &["-t", table])
}

/// Polls `check` (on a blocking thread: it runs iptables) until it returns Some, for at most
/// `secs` seconds; panics with the last state otherwise.
pub async fn eventually<T: Send + 'static>(
    secs: u64,
    what: &str,
    check: impl Fn() -> Result<T, String> + Send + Sync + 'static,
) -> T {
    let check = std::sync::Arc::new(check);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let c = check.clone();
        let last = tokio::task::spawn_blocking(move || c())
            .await
            .expect("check task");
        match last {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("{what}: not true after {secs} s; last state:\n{state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The API server and a running kube-proxy.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub cp: RunningControlPlane,
    pub client: kube::Client,
    pub cfg: KubeProxyConfig,
    proxy: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

impl Lab {
    /// Starts the API server and kube-proxy with `commands` and the given full-sync period
    /// (periodic syncs run at least as often).
    pub async fn start(commands: Commands, full_sync_period: Duration) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = start(ControlPlaneConfig::loopback(dir.path().join("api")))
            .await
            .expect("API server starts on loopback");
        let client = cp.client().await.expect("client");
        let mut cfg = KubeProxyConfig::for_node("10.244.0.0/16".parse().unwrap());
        cfg.commands = commands;
        cfg.sync_period = full_sync_period.min(cfg.sync_period);
        cfg.full_sync_period = full_sync_period;
        let mut lab = Lab {
            dir,
            cp,
            client,
            cfg,
            proxy: None,
        };
        lab.start_proxy();
        lab
    }

    pub fn start_proxy(&mut self) {
        assert!(self.proxy.is_none(), "kube-proxy already running");
        let token = CancellationToken::new();
        let join = tokio::spawn(run_kube_proxy(
            self.cfg.clone(),
            self.client.clone(),
            token.clone(),
        ));
        self.proxy = Some((token, join));
    }

    /// Stops kube-proxy and checks that it returned Ok.
    pub async fn stop_proxy(&mut self) {
        let (token, join) = self.proxy.take().expect("kube-proxy running");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), join)
            .await
            .expect("kube-proxy stops within 10 s")
            .expect("kube-proxy task")
            .expect("kube-proxy returns Ok");
    }

    pub async fn shutdown(mut self) {
        if self.proxy.is_some() {
            self.stop_proxy().await;
        }
        self.cp.shutdown().await.expect("API server shutdown");
    }

    pub fn services(&self, ns: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn slices(&self, ns: &str) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates a selector-less ClusterIP service with `ports` (name, protocol, port).
    pub async fn service(&self, ns: &str, name: &str, ip: &str, ports: &[(&str, &str, u16)]) {
        let ports: Vec<serde_json::Value> = ports
            .iter()
            .map(|(n, proto, p)| json!({"name": n, "protocol": proto, "port": p}))
            .collect();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap();
        self.services(ns)
            .create(&PostParams::default(), &svc)
            .await
            .unwrap_or_else(|e| panic!("creating service {ns}/{name}: {e}"));
    }

    /// Creates or replaces the slice `<svc>-kp` of a service: `ready` addresses and
    /// `not_ready` ones, all with `ports` (name, protocol, port).
    pub async fn slice(
        &self,
        ns: &str,
        svc: &str,
        ready: &[&str],
        not_ready: &[&str],
        ports: &[(&str, &str, u16)],
    ) {
        let mut endpoints: Vec<serde_json::Value> = ready
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
            .collect();
        endpoints.extend(not_ready.iter().map(
            |ip| json!({"addresses": [ip], "conditions": {"ready": false, "serving": false}}),
        ));
        let ports: Vec<serde_json::Value> = ports
            .iter()
            .map(|(n, proto, p)| json!({"name": n, "protocol": proto, "port": p}))
            .collect();
        let name = format!("{svc}-kp");
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        }))
        .unwrap();
        let api = self.slices(ns);
        match api.get_opt(&name).await.expect("reading the slice") {
            Some(old) => {
                let mut new = slice;
                new.metadata.resource_version = old.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &new)
                    .await
                    .unwrap_or_else(|e| panic!("replacing slice {ns}/{name}: {e}"));
            }
            None => {
                api.create(&PostParams::default(), &slice)
                    .await
                    .unwrap_or_else(|e| panic!("creating slice {ns}/{name}: {e}"));
            }
        }
    }

    pub async fn delete_service(&self, ns: &str, name: &str) {
        self.services(ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("deleting service {ns}/{name}: {e}"));
        let _ = self
            .slices(ns)
            .delete(&format!("{name}-kp"), &DeleteParams::default())
            .await;
    }
}

/// The renderer's view of one service port, for its chain names.
pub fn port(
    ns: &str,
    name: &str,
    port_name: &str,
    protocol: Protocol,
) -> service_rules::ServicePort {
    service_rules::ServicePort {
        namespace: ns.into(),
        name: name.into(),
        port_name: port_name.into(),
        protocol,
        cluster_ip: "0.0.0.0".parse().unwrap(),
        port: 0,
        node_port: None,
        endpoints: vec![],
    }
}

pub fn ep(ip: &str, port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port,
    }
}

/// The `-A <chain> …` lines of a save, in order.
pub fn rules_of<'a>(save: &'a str, chain: &str) -> Vec<&'a str> {
    let prefix = format!("-A {chain} ");
    save.lines().filter(|l| l.starts_with(&prefix)).collect()
}

/// Whether the save declares `chain`.
pub fn has_chain(save: &str, chain: &str) -> bool {
    let prefix = format!(":{chain} ");
    save.lines().any(|l| l.starts_with(&prefix))
}

/// The service chains (`KUBE-SVC-…`, `KUBE-SEP-…`) a save declares.
pub fn service_chains(save: &str) -> Vec<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| c.starts_with("KUBE-SVC-") || c.starts_with("KUBE-SEP-"))
        .map(str::to_string)
        .collect()
}
