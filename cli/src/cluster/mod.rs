//! Cluster lifecycle on the local Docker engine: create, delete, list.

pub mod create;
pub mod delete;
pub mod dns_check;
pub mod embedded_dns;
pub mod exec;
pub mod kubeconfig;
pub mod list;
pub mod nodes;
pub mod wait;
