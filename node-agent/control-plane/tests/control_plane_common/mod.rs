//! Shared helpers for the control-plane tests: an in-process API server on loopback.
#![allow(dead_code)]

use minikind_control_plane::{ControlPlaneConfig, RunningControlPlane, start};
/// The kubectl the compatibility tests run (one finder for every test crate).
#[allow(unused_imports)]
pub use minikind_test_support::kubectl;

pub async fn server(dir: &std::path::Path) -> RunningControlPlane {
    start(ControlPlaneConfig::loopback(dir.to_path_buf()))
        .await
        .expect("API server starts on loopback")
}

/// The shared wait, under the name these tests use.
#[allow(unused_imports)]
pub use minikind_test_support::eventually_async as eventually;
