//! Cluster lifecycle: create (its steps reach the engine through [`crate::provider`]), the
//! user's kubeconfig, the checks made through the cluster's API, and `export logs`.

pub mod access;
pub mod create;
pub mod dns_check;
pub mod embedded_dns;
pub mod export_logs;
pub mod kubeconfig;
