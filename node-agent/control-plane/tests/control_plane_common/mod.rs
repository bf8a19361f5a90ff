//! Shared helpers for the control-plane tests: an in-process API server on loopback.
#![allow(dead_code)]

use minikind_control_plane::{ControlPlaneConfig, RunningControlPlane, start};
/// The kubectl the compatibility tests run (one finder for every test crate).
#[allow(unused_imports)]
pub use minikind_e2e::kubectl;
use std::future::Future;
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
