//! Everything a minikind node runs: boot and the network magic, the node tools, and on the
//! control-plane node the Kubernetes API subset with its store and controllers.
//!
//! The agent is started as PID 1 of every node container by the `minikind` binary
//! (`minikind node-agent …`); see `agent.rs`.

pub mod agent;
pub mod builtin_resolver;
pub mod control_plane;
pub mod dns_addon;
pub mod iptables_mode;
pub mod kube_proxy;
pub mod kubelet;
pub mod network_magic;
pub mod overlay;
pub mod pod_dns;
pub mod pod_network;
pub mod resolv_conf;
pub mod service_rules;
pub mod tools;
