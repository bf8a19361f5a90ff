//! A CoreDNS-compatible cluster DNS server: Corefile, plugin chain, and a `kubernetes` plugin fed
//! by Kubernetes API watchers. Laid out as CoreDNS is, each module depending only on the ones
//! listed before it (no module circles):
//!
//! - [`util`], [`metrics`], [`pkg`] (helpers the plugins share, as coredns plugin/pkg),
//!   [`corefile`] (the Corefile's syntax), [`dnsmsg`] (the request and a plugin's reply, as
//!   coredns request/): what everything builds on.
//! - [`plugins`]: one folder per plugin with its Corefile parsing and its behaviour, and
//!   CoreDNS's execution order in one list.
//! - [`chain`]: a server block's plugins and the chain that runs them.
//! - [`zones`], [`query`] (the general path), [`fastpath`] (answers already on the wire),
//!   [`packet`] (one or the other), [`udp`] and [`server`] (the listeners): serving DNS.
//! - [`http`] (the plugins' endpoints), [`run`] (a running server and its reloads).
//! - [`nodecache`]: NodeLocal DNSCache's node-cache mode (`cluster-dns node-cache`): a server
//!   from node-cache's Corefile template on addresses of its own interface, and node-cache's
//!   NOTRACK/ACCEPT rules (run through `minikind_iptables`), kept and removed as node-cache does.
//! - [`cli`]: the command line of both modes.
//!
//! The query-log line, rcode/type names and the transport are shared with minikind's other DNS
//! servers and its trace through `minikind_dns_log`.

pub mod chain;
pub mod cli;
pub mod corefile;
pub mod dnsmsg;
pub mod fastpath;
pub mod http;
pub mod metrics;
pub mod nodecache;
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
