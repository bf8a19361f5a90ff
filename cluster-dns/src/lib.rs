//! A CoreDNS-compatible cluster DNS server: Corefile, plugin chain, and a `kubernetes` plugin fed
//! by Kubernetes API watchers.

pub mod chain;
pub mod cli;
pub mod corefile;
pub mod dnsmsg;
pub mod fastpath;
pub mod http;
pub mod metrics;
pub mod packet;
pub mod pkg;
pub mod plugins;
pub mod query;
pub mod run;
pub mod server;
pub mod udp;
pub mod util;
pub mod zones;

pub use cli::cli_main;
pub use run::{Instance, Options};
