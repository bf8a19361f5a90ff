//! Shared helpers for the kubelet tests: every test runs in private network, mount and UTS
//! namespaces of its own (fresh `/run` for `ip netns`, fresh `/sys` so the bridge and veths it
//! makes are the ones it sees), with an in-process API server and kubelet on loopback. When
//! the test process ends, its namespaces, links, rules and processes end with it.
#![allow(dead_code)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::PostParams;
use minikind_control_plane::{ControlPlaneConfig, RunningControlPlane, pki, start};
use minikind_kubelet::{self as kubelet, ApiCredentials, BackoffConfig, KubeletConfig, KubeletTls};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// Moves this thread into new network, mount and UTS namespaces and prepares them.
fn isolate() {
    use nix::mount::{MsFlags, mount};
    use nix::sched::CloneFlags;
    minikind_test_support::netns::enter_private_network(
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS,
    );
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("making / private");
    mount(
        Some("tmpfs"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=755"),
    )
    .expect("mounting a private /run");
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting a /sys of this network namespace");
    nix::unistd::sethostname("kubelet-test-node").expect("setting the node hostname");
}

/// Set in the process [`isolated`] starts for one test.
const ISOLATED_CHILD: &str = "MINIKIND_KUBELET_TEST_ISOLATED";

/// Runs `test` isolated, on a runtime whose threads share the namespaces. Whatever the test
/// started is killed afterwards, also when it failed: the test process is a subreaper, so
/// even orphaned grandchildren of pod processes are still its descendants.
///
/// That clean-up kills every descendant of the process, and the mount namespace and subreaper
/// role belong to the process too: so each test needs a process of its own. `cargo test` runs
/// a binary's tests as threads of one process, so the test re-runs itself in a child process
/// (this test binary, `--exact <this test>`) and reports what it printed; nextest's process per
/// test simply gets one more.
pub fn isolated<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    if std::env::var_os(ISOLATED_CHILD).is_none() {
        return run_in_own_process();
    }
    nix::sys::prctl::set_child_subreaper(true).expect("becoming a subreaper");
    isolate();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(test())));
    rt.shutdown_timeout(Duration::from_secs(5));
    kill_descendants();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Runs the current test (libtest names each test's thread after it) in a child process of
/// its own and fails when it fails.
fn run_in_own_process() {
    let current = std::thread::current();
    let name = current
        .name()
        .filter(|n| *n != "main")
        .expect("libtest runs each test on a thread named after it");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary path"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(ISOLATED_CHILD, "1")
        .output()
        .expect("running the test in a process of its own");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Printed here, so the harness shows them with this test (captured unless --nocapture).
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "test {name} failed in its own process"
    );
    assert!(
        stdout.contains("1 passed"),
        "test {name} did not run in its child process (filter matched nothing?)"
    );
}

/// SIGKILLs every descendant of this process.
fn kill_descendants() {
    let me = std::process::id() as i32;
    let parents: Vec<(i32, i32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces, so parse after the last ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut ours = vec![me];
    let mut i = 0;
    while i < ours.len() {
        let parent = ours[i];
        for (pid, ppid) in &parents {
            if *ppid == parent && !ours.contains(pid) {
                ours.push(*pid);
            }
        }
        i += 1;
    }
    for pid in ours.into_iter().skip(1) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// An API server, and a kubelet for node `node-a` that can be stopped and started again.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub cp: RunningControlPlane,
    pub client: kube::Client,
    pub cfg: KubeletConfig,
    kubelet: Option<(
        CancellationToken,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

pub const NODE: &str = "node-a";
pub const NODE_RESOLV_CONF: &str =
    "# the node's file\nnameserver 172.18.0.1\nsearch corp.example\noptions edns0 ndots:0\n";

impl Lab {
    pub async fn start() -> Lab {
        Lab::start_with(|_| {}).await
    }

    /// [`Lab::start`] with the kubelet's settings changed by `configure` first.
    pub async fn start_with(configure: impl FnOnce(&mut KubeletConfig)) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let cp = start(ControlPlaneConfig::loopback(dir.path().join("api")))
            .await
            .expect("API server starts on loopback");
        let client = cp.client().await.expect("client");
        let resolv = dir.path().join("node-resolv.conf");
        std::fs::write(&resolv, NODE_RESOLV_CONF).unwrap();
        let mut cfg = KubeletConfig::new(NODE, Ipv4Addr::LOCALHOST);
        cfg.root = dir.path().join("kubelet");
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        cfg.node_resolv_conf = resolv;
        let credentials = ApiCredentials::from_kubeconfig(&cp.kubeconfig).expect("credentials");
        // As on a node: a serving certificate from the cluster CA for the node's name and IP,
        // callers checked against that CA; the helpers below call as the API server does.
        let api_data = dir.path().join("api");
        let serving = pki::issue_kubelet_serving(&api_data, NODE, Ipv4Addr::LOCALHOST.into())
            .expect("kubelet serving certificate");
        cfg.tls = Some(KubeletTls {
            serving_pem: serving.combined_pem(),
            client_ca_pem: credentials.ca_crt.clone(),
        });
        cfg.credentials = Some(credentials);
        set_caller(Some(api_server_tls(&api_data)));
        cfg.heartbeat = Duration::from_secs(1);
        cfg.backoff = BackoffConfig {
            initial: Duration::from_millis(400),
            max: Duration::from_secs(2),
        };
        cfg.volume_refresh = Duration::from_secs(1);
        configure(&mut cfg);
        let mut lab = Lab {
            dir,
            cp,
            client,
            cfg,
            kubelet: None,
        };
        lab.start_kubelet().await;
        lab
    }

    pub async fn start_kubelet(&mut self) {
        assert!(self.kubelet.is_none(), "kubelet already running");
        let token = CancellationToken::new();
        let join = tokio::spawn(kubelet::run_kubelet(
            self.cfg.clone(),
            self.client.clone(),
            token.clone(),
        ));
        self.kubelet = Some((token, join));
        // Ready once the bridge exists (the pod CIDR arrived) and the endpoint the Node
        // names answers (after a restart the Node first still names the old port).
        let bridge = PathBuf::from("/sys/class/net").join(&self.cfg.bridge);
        eventually(10, "the kubelet's bridge", || async {
            bridge.exists().then_some(())
        })
        .await;
        let nodes: Api<Node> = Api::all(self.client.clone());
        eventually(10, "the kubelet endpoint", || {
            let nodes = nodes.clone();
            async move {
                let n = nodes.get(NODE).await.ok()?;
                let port = n.status?.daemon_endpoints?.kubelet_endpoint?.port;
                let addr = SocketAddr::from(([127, 0, 0, 1], port as u16));
                tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
            }
        })
        .await;
    }

    /// Stops the kubelet and waits until it returned.
    pub async fn stop_kubelet(&mut self) {
        let (token, join) = self.kubelet.take().expect("kubelet running");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(15), join)
            .await
            .expect("kubelet stops within 15 s")
            .expect("kubelet task")
            .expect("kubelet returns Ok");
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// The kubelet endpoint, from the Node object (as the API server finds it).
    pub async fn endpoint(&self) -> SocketAddr {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let n = nodes.get(NODE).await.expect("node registered");
        let port = n
            .status
            .unwrap()
            .daemon_endpoints
            .unwrap()
            .kubelet_endpoint
            .unwrap()
            .port;
        SocketAddr::from(([127, 0, 0, 1], port as u16))
    }

    pub async fn create(&self, pod: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(pod).expect("pod JSON");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("creating the pod")
    }

    /// Waits until the pod satisfies `check`; returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        check: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let api = self.pods();
        eventually(secs, what, || {
            let api = api.clone();
            let check = &check;
            async move { api.get_opt(name).await.ok().flatten().filter(|p| check(p)) }
        })
        .await
    }

    pub async fn wait_running(&self, name: &str) -> Pod {
        self.wait_pod(name, 20, &format!("pod {name} Running"), |p| {
            phase(p) == "Running"
        })
        .await
    }

    pub async fn wait_gone(&self, name: &str, secs: u64) {
        let api = self.pods();
        eventually(secs, &format!("pod {name} removed"), || {
            let api = api.clone();
            async move {
                api.get_opt(name)
                    .await
                    .ok()
                    .and_then(|p| p.is_none().then_some(()))
            }
        })
        .await
    }

    pub async fn shutdown(mut self) {
        if self.kubelet.is_some() {
            self.stop_kubelet().await;
        }
        self.cp.shutdown().await.expect("API server stops");
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }
}

pub fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

pub fn pod_ip(p: &Pod) -> Option<Ipv4Addr> {
    p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()
}

pub fn condition(p: &Pod, ty: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| c.status.clone())
}

/// A pod running `command` on node-a (bound directly, as the scheduler would).
pub fn pod(name: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox:1.36", "command": command}],
        }
    })
}

/// The shared wait, under the name these tests use.
pub use minikind_test_support::eventually_async as eventually;

/// What an exec returned.
#[derive(Debug, Default)]
pub struct ExecOutput {
    pub protocol: String,
    pub stdout: String,
    pub stderr: String,
    pub status: serde_json::Value,
}

/// Runs `command` in a pod's container through the kubelet's websocket endpoint, sending
/// `stdin` (then closing it, v5) when given.
pub async fn exec(
    endpoint: SocketAddr,
    pod: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
    protocol: &str,
) -> ExecOutput {
    exec_with(endpoint, pod, command, stdin, protocol, false).await
}

/// [`exec`], optionally asking for a terminal (`tty=true`, as `kubectl exec -t`).
pub async fn exec_with(
    endpoint: SocketAddr,
    pod: &str,
    command: &[&str],
    stdin: Option<&[u8]>,
    protocol: &str,
    tty: bool,
) -> ExecOutput {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for c in command {
        q.append_pair("command", c);
    }
    q.append_pair("stdout", "true")
        .append_pair("stderr", "true");
    if stdin.is_some() {
        q.append_pair("stdin", "true");
    }
    if tty {
        q.append_pair("tty", "true");
    }
    let url = format!("wss://{endpoint}/exec/default/{pod}/main?{}", q.finish());
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let stream = tls_connect(endpoint, caller())
        .await
        .expect("TLS to the kubelet");
    let (ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("websocket upgrade");
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let (mut tx, mut rx) = ws.split();
    if let Some(data) = stdin {
        let mut m = vec![0u8];
        m.extend_from_slice(data);
        tx.send(Message::Binary(m.into())).await.unwrap();
        tx.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .unwrap();
    }
    let mut out = ExecOutput {
        protocol: chosen,
        ..Default::default()
    };
    let read = async {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(b) = msg else { continue };
            if b.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&b[1..]).into_owned();
            match b[0] {
                1 => out.stdout.push_str(&text),
                2 => out.stderr.push_str(&text),
                3 => out.status = serde_json::from_str(&text).expect("status JSON"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("exec finishes");
    out
}

/// How the helpers call the kubelet endpoint: the TLS client of the lab's API server (its
/// kubelet client certificate, the cluster CA as the only trust). One lab per test process.
static CALLER: std::sync::Mutex<Option<std::sync::Arc<rustls::ClientConfig>>> =
    std::sync::Mutex::new(None);

pub fn set_caller(cfg: Option<std::sync::Arc<rustls::ClientConfig>>) {
    *CALLER.lock().unwrap() = cfg;
}

fn caller() -> std::sync::Arc<rustls::ClientConfig> {
    CALLER
        .lock()
        .unwrap()
        .clone()
        .expect("a lab set the caller")
}

fn read_pki(api_data: &Path, file: &str) -> String {
    std::fs::read_to_string(api_data.join("pki").join(file)).expect("PKI file")
}

/// The API server's kubelet client TLS (its `apiserver-kubelet-client` pair) for the API
/// server whose data directory is `api_data`.
pub fn api_server_tls(api_data: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    pki::client_config(
        &read_pki(api_data, "ca.crt"),
        &read_pki(api_data, "apiserver-kubelet-client.crt"),
        &read_pki(api_data, "apiserver-kubelet-client.key"),
    )
    .expect("client TLS")
}

/// A TLS client trusting the CA of `api_data` that presents `identity` (certificate, key) or
/// no certificate at all.
pub fn tls_as(
    api_data: &Path,
    identity: Option<&pki::Issued>,
) -> std::sync::Arc<rustls::ClientConfig> {
    let ca = read_pki(api_data, "ca.crt");
    match identity {
        Some(i) => pki::client_config(&ca, &i.cert_pem, &i.key_pem).expect("client TLS"),
        None => {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            std::sync::Arc::new(cfg)
        }
    }
}

/// A TLS connection to the endpoint with `cfg`, the serving certificate checked for the
/// endpoint's IP.
pub async fn tls_connect(
    endpoint: SocketAddr,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(endpoint).await?;
    let name = rustls::pki_types::ServerName::IpAddress(endpoint.ip().into());
    tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
}

/// `GET` on the kubelet endpoint as the API server: (status code, body).
pub async fn http_get(endpoint: SocketAddr, path: &str) -> (u16, String) {
    http_get_with(endpoint, path, caller())
        .await
        .expect("a response from the kubelet")
}

/// `GET` on the kubelet endpoint with a given TLS client: (status code, body), or the error
/// of a refused handshake.
pub async fn http_get_with(
    endpoint: SocketAddr,
    path: &str,
    cfg: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tls_connect(endpoint, cfg).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {endpoint}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("response within 20 s")?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&cmd).contains(marker)
        {
            out.push(pid);
        }
    }
    out
}

/// Debian's `busybox-static`: the tests' stand-in for an image's files.
pub const BUSYBOX: &str = "/bin/busybox";

/// Makes a directory holding `/bin/busybox`, a symlink per applet, `/etc/passwd` and
/// `/etc/group`, and an empty world-writable `/tmp`.
pub fn busybox_root(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(BUSYBOX, bin.join("busybox")).context("copying busybox")?;
    let list = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .context("busybox --list")?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
    }
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n",
    )?;
    std::fs::create_dir_all(dir.join("tmp"))?;
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    Ok(())
}
