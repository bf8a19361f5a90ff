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
