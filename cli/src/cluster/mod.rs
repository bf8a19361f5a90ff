//! Cluster lifecycle: create (its steps reach the engine through [`crate::provider`]), the
//! user's kubeconfig, and the checks made through the cluster's API.

pub mod access;
pub mod create;
pub mod dns_check;
pub mod embedded_dns;
pub mod kubeconfig;
