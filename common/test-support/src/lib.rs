//! What every crate's tests share: the pinned kubectl ([`kubectl`]), waiting for state
//! ([`wait`]), private network namespaces ([`netns`]), DNS asked from a pod's namespace
//! ([`dnsload`]), and the fixtures of the end-to-end tests that drive real clusters on the local
//! Docker engine (the `minikind` binary, scratch kubeconfigs, [`Cluster`]).
//!
//! Every test makes clusters with unique names and owns them through [`Cluster`], whose `Drop`
//! deletes them with minikind's own delete — also when the test fails half-way.

pub mod dnsload;
pub mod images;
pub mod kubectl;
pub mod netns;
pub mod wait;

pub use kubectl::{KUBECTL_VERSION, kubectl, target_dir};
pub use wait::{eventually, eventually_async};

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The `minikind` binary cargo built next to this test binary (`target/<profile>/minikind`).
pub fn minikind_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/minikind
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = dir.join("minikind");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p minikind`; `cargo test --workspace` and \
         `cargo nextest run --workspace` do it)",
        bin.display()
    );
    bin
}

/// A name no other test (or concurrent run) uses.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Output of a finished command, with the text decoded.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            ok: o.status.success(),
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The kubeconfig every minikind the tests run merges into: a scratch file per test process,
/// never the user's own.
pub fn test_kubeconfig() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("minikind-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scratch kubeconfig directory");
    dir.join("config")
}

/// `minikind` as the tests run it: with [`test_kubeconfig`].
pub fn minikind_command() -> Command {
    let mut c = Command::new(minikind_bin());
    c.env("KUBECONFIG", test_kubeconfig());
    c
}

pub fn minikind(args: &[&str]) -> Run {
    minikind_command()
        .args(args)
        .output()
        .expect("running minikind")
        .into()
}

pub fn minikind_stdin(args: &[&str], stdin: &str) -> Run {
    let mut cmd = minikind_command();
    cmd.args(args);
    run_with_stdin(cmd, Some(stdin))
}

/// Runs `cmd` to the end with `stdin` written to it (an empty input when None).
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", cmd.get_program()));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("writing stdin");
    }
    drop(input);
    child
        .wait_with_output()
        .expect("waiting for the command")
        .into()
}

/// The names `kubectl get nodes -o name` prints through `kubeconfig` (the pinned kubectl),
/// or kubectl's error.
pub fn nodes_through(kubeconfig: &std::path::Path) -> Result<String, String> {
    let out = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["get", "nodes", "-o", "name"])
        .output()
        .map_err(|e| format!("running kubectl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn docker(args: &[&str]) -> Run {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
        .into()
}

/// Every Docker object (containers, networks, volumes) that carries the cluster's label.
pub fn labelled_objects(cluster: &str) -> Vec<String> {
    let filter = format!("label={}={cluster}", minikind_contract::CLUSTER_LABEL);
    let mut out = Vec::new();
    for (kind, args) in [
        (
            "container",
            vec!["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"],
        ),
        (
            "network",
            vec![
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ],
        ),
        (
            "volume",
            vec!["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"],
        ),
    ] {
        let r = docker(&args);
        assert!(r.ok, "docker {args:?}: {}", r.stderr);
        out.extend(
            r.stdout
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| format!("{kind} {l}")),
        );
    }
    out
}

/// kube-proxy's chain for the kube-dns Service's `dns` (UDP) port (a hash of
/// `kube-system/kube-dns:dns` and the protocol, the same in every cluster).
pub const KUBE_DNS_UDP_CHAIN: &str = "KUBE-SVC-TCOU7JCQXEZGVUNU";

/// A cluster this test created; deleted when dropped.
pub struct Cluster {
    pub name: String,
}

impl Cluster {
    /// Creates a cluster from a minikind config (the `name:` is set here) and panics with
    /// minikind's output if that fails.
    pub fn create(prefix: &str, config_body: &str) -> Cluster {
        Cluster::create_with(prefix, config_body, &[]).0
    }

    /// [`Cluster::create`] with more arguments for `minikind` (put before the command, e.g.
    /// `-v`); also returns what the create printed.
    pub fn create_with(prefix: &str, config_body: &str, global_args: &[&str]) -> (Cluster, Run) {
        let name = unique_name(prefix);
        let cluster = Cluster { name: name.clone() };
        let cfg = format!(
            "kind: Cluster\napiVersion: minikind.dev/v1alpha1\nname: {name}\n{config_body}"
        );
        let mut args = global_args.to_vec();
        args.extend(["create", "cluster", "--config", "-", "--wait", "90s"]);
        let r = minikind_stdin(&args, &cfg);
        assert!(
            r.ok,
            "create cluster {name} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        (cluster, r)
    }

    /// Creates a cluster from a KIND (`kind.x-k8s.io/v1alpha4`) config as a user has it,
    /// unchanged (the name comes from `--name`), and panics with minikind's output if that
    /// fails.
    pub fn create_kind(prefix: &str, kind_config: &str) -> Cluster {
        let name = unique_name(prefix);
        let cluster = Cluster { name: name.clone() };
        let args = [
            "create", "cluster", "--name", &name, "--config", "-", "--wait", "90s",
        ];
        let r = minikind_stdin(&args, kind_config);
        assert!(
            r.ok,
            "create cluster {name} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        cluster
    }

    /// `minikind <args…> --name <this cluster>`.
    pub fn minikind(&self, args: &[&str]) -> Run {
        let mut full = args.to_vec();
        full.extend(["--name", self.name.as_str()]);
        minikind(&full)
    }

    /// Like [`Cluster::minikind`] but panics with the output unless it succeeds.
    pub fn minikind_ok(&self, args: &[&str]) -> String {
        let r = self.minikind(args);
        assert!(
            r.ok,
            "minikind {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r.stdout
    }

    /// The pinned kubectl on this cluster's context (`minikind-<name>`) in the tests'
    /// kubeconfig, with `stdin` fed to it.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(kubectl());
        cmd.arg("--kubeconfig")
            .arg(test_kubeconfig())
            .args(["--context", &format!("minikind-{}", self.name)])
            .args(args);
        run_with_stdin(cmd, stdin)
    }

    /// Like [`Cluster::kubectl`] without input, but panics with the output unless it succeeds.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let r = self.kubectl(args, None);
        assert!(r.ok, "kubectl {args:?} failed:\n{}\n{}", r.stdout, r.stderr);
        r.stdout
    }

    /// `minikind exec <pod> -- <command…>` in namespace `default`.
    pub fn pod_exec(&self, pod: &str, command: &[&str]) -> Run {
        let mut full = vec!["exec", "--name", self.name.as_str(), pod, "--"];
        full.extend_from_slice(command);
        minikind(&full)
    }

    /// A pod's object as JSON (`minikind get pod NAME -o json`), if it exists.
    pub fn pod_json(&self, namespace: &str, pod: &str) -> Option<serde_json::Value> {
        let r = self.minikind(&["get", "pods", pod, "-n", namespace, "-o", "json"]);
        if !r.ok {
            return None;
        }
        serde_json::from_str(&r.stdout).ok()
    }

    /// Waits until a pod is Running with every container ready; returns its JSON.
    pub fn wait_pod_ready(&self, namespace: &str, pod: &str) -> serde_json::Value {
        eventually(
            &format!("pod {namespace}/{pod} ready"),
            Duration::from_secs(60),
            || {
                let p = self.pod_json(namespace, pod)?;
                let ready = p["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                ready.then_some(p)
            },
        )
    }

    /// The pods matching a label selector in a namespace, as JSON objects (none when the
    /// listing fails, so that callers can poll).
    pub fn pods(&self, namespace: &str, selector: &str) -> Vec<serde_json::Value> {
        let r = self.minikind(&["get", "pods", "-n", namespace, "-l", selector, "-o", "json"]);
        serde_json::from_str::<serde_json::Value>(&r.stdout)
            .ok()
            .and_then(|l| l["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The CoreDNS pods (`k8s-app=kube-dns` in kube-system).
    pub fn coredns_pods(&self) -> Vec<serde_json::Value> {
        self.pods("kube-system", "k8s-app=kube-dns")
    }

    /// Waits (90 s at most) until CoreDNS's Deployment has rolled out; returns what
    /// `rollout status` printed.
    pub fn wait_coredns_rolled_out(&self) -> String {
        self.minikind_ok(&[
            "rollout",
            "status",
            "deployment/coredns",
            "-n",
            "kube-system",
            "--timeout",
            "90s",
        ])
    }

    /// Waits (90 s at most) until `minikind dns nodelocal status` shows a node-local cache on
    /// each of `nodes` (full node names) holding all of node-cache's 12 rules for its address.
    pub fn wait_node_local_caches(&self, nodes: &[&str]) {
        eventually(
            "a ready node-local cache on each node",
            Duration::from_secs(90),
            || {
                let s = self.minikind_ok(&["dns", "nodelocal", "status"]);
                nodes
                    .iter()
                    .all(|n| s.lines().any(|l| l.starts_with(n) && l.contains("12/12")))
                    .then_some(())
            },
        );
    }

    /// `rollout restart` of CoreDNS (so new replicas read an edited Corefile), then waits for it.
    pub fn restart_coredns(&self) {
        let out = self.minikind_ok(&[
            "rollout",
            "restart",
            "deployment/coredns",
            "-n",
            "kube-system",
        ]);
        assert_eq!(out, "deployment.apps/coredns restarted\n");
        self.wait_coredns_rolled_out();
    }

    /// Applies `corefile_manifest` (a CoreDNS ConfigMap, e.g. one with `log`), scales CoreDNS to
    /// one replica and restarts it, and waits until that replica is the only one and the
    /// kube-dns rules of every node in `nodes` (suffixes, as [`Cluster::node`]) DNAT to it;
    /// returns its pod.
    pub fn one_coredns_replica(
        &self,
        corefile_manifest: &str,
        nodes: &[&str],
    ) -> serde_json::Value {
        self.minikind_ok(&["apply", "-f", corefile_manifest]);
        self.minikind_ok(&[
            "scale",
            "deployment",
            "coredns",
            "--replicas",
            "1",
            "-n",
            "kube-system",
        ]);
        self.restart_coredns();
        eventually("one CoreDNS replica left", Duration::from_secs(60), || {
            let pods = self.coredns_pods();
            let [p] = pods.as_slice() else {
                return None;
            };
            let ip = p["status"]["podIP"].as_str()?;
            let dnat_to_it = nodes.iter().all(|n| {
                let rules = self.kube_dns_endpoint_rules(&self.node(n));
                rules.len() == 1 && rules[0].contains(&format!("{ip}:53"))
            });
            dnat_to_it.then(|| p.clone())
        })
    }

    /// The `-A KUBE-SVC-… -j KUBE-SEP-…` rules of the kube-dns UDP port on a node: one per
    /// ready CoreDNS endpoint.
    pub fn kube_dns_endpoint_rules(&self, node: &str) -> Vec<String> {
        let save = self.exec_ok(node, &["iptables-save", "-t", "nat"]);
        rule_lines(&save)
            .into_iter()
            .filter(|r| {
                r.starts_with(&format!("-A {KUBE_DNS_UDP_CHAIN} ")) && r.contains("KUBE-SEP-")
            })
            .collect()
    }

    pub fn node(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// `docker exec <node> <args…>`.
    pub fn exec(&self, node: &str, args: &[&str]) -> Run {
        let mut full = vec!["exec", node];
        full.extend_from_slice(args);
        docker(&full)
    }

    /// Like [`Cluster::exec`] but panics with the output unless it succeeds.
    pub fn exec_ok(&self, node: &str, args: &[&str]) -> String {
        let r = self.exec(node, args);
        assert!(
            r.ok,
            "docker exec {node} {args:?} failed:\n{}\n{}",
            r.stdout, r.stderr
        );
        r.stdout
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let r = minikind(&["delete", "cluster", "--name", &self.name]);
        if !r.ok {
            eprintln!("cleanup of {} failed: {}", self.name, r.stderr);
        }
    }
}

/// `-A` rule lines in an `iptables-save` table dump.
pub fn rule_lines(save: &str) -> Vec<String> {
    save.lines()
        .filter(|l| l.starts_with("-A "))
        .map(str::to_string)
        .collect()
}

/// The path of a file under `examples/`.
pub fn example(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(rel)
        .display()
        .to_string()
}

/// The body of an example cluster config, without the lines `Cluster::create` writes itself.
pub fn cluster_body(rel: &str) -> String {
    std::fs::read_to_string(example(rel))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("kind:") && !l.starts_with("apiVersion:") && !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The non-empty lines of a command's output, trimmed and sorted (answers come shuffled).
pub fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// A pod's IP from its JSON object; panics when it has none yet.
pub fn pod_ip(p: &serde_json::Value) -> String {
    p["status"]["podIP"]
        .as_str()
        .expect("pod has an IP")
        .to_string()
}
