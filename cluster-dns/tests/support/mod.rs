//! Shared test support: a fake Kubernetes API and DNS helpers, all on loopback.
pub mod dns;
pub mod fake_api;
pub mod tls;
