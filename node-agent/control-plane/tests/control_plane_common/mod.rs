//! Shared helpers for the control-plane tests: an in-process API server on loopback.
#![allow(dead_code)]

use minikind_control_plane::{ControlPlaneConfig, RunningControlPlane, start};
/// The kubectl the compatibility tests run (one finder for every test crate).
#[allow(unused_imports)]
pub use minikind_test_support::kubectl;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub async fn server(dir: &std::path::Path) -> RunningControlPlane {
    start(ControlPlaneConfig::loopback(dir.to_path_buf()))
        .await
        .expect("API server starts on loopback")
}

/// The shared wait, under the name these tests use.
#[allow(unused_imports)]
pub use minikind_test_support::eventually_async as eventually;

/// A kubectl bound to one kubeconfig and cache directory.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    pub fn new(bin: PathBuf, dir: &Path, kubeconfig: &str) -> Self {
        let kc = dir.join("kubeconfig");
        std::fs::write(&kc, kubeconfig).unwrap();
        Kubectl {
            bin,
            kubeconfig: kc,
            cache: dir.join("kube-cache"),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c
    }

    /// Runs kubectl (off the async runtime's threads), returning (success, stdout, stderr).
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = self.cmd(args);
        let input = stdin.map(String::from);
        tokio::task::spawn_blocking(move || {
            c.stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            let mut child = c.spawn().expect("kubectl runs");
            if let Some(i) = input {
                child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .await
        .unwrap()
    }

    pub async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = self.run(args, stdin).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
}

// --- Playing the kubelet's part: nodes that register, pods that run. ---

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

pub async fn register_node(client: &Client, name: &str, ip: &str) {
    register_node_with(client, name, ip, "True").await
}

/// A node whose Ready condition has `ready` as its status (`True`, `False`, `Unknown`).
pub async fn register_node_with(client: &Client, name: &str, ip: &str, ready: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady", "message": "ok"}],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}

/// What a kubelet does when a pod runs: IP, phase, Ready condition.
pub async fn mark_running(client: &Client, ns: &str, name: &str, ip: &str, ready: bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();
}
