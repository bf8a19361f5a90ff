//! `minikind dns …`: a cluster's DNS path, made visible and switchable for teaching.
//!
//! - `dns magic (status|on|off)`: KIND's network magic on the nodes ([`magic`]).
//! - `dns trace POD NAME`: one lookup from a pod and the path each attempt took ([`trace`]).
//! - `dns test -f CHECKS.yaml`: declarative DNS expectations for CI ([`test`]).
//! - `dns conformance`: the Kubernetes e2e DNS tests, on the same runner and report
//!   ([`conformance`]).

pub mod conformance;
pub mod magic;
pub mod test;
pub mod trace;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum Dns {
    /// KIND's network magic on the nodes: show whether it is in place, or switch it live.
    Magic(magic::MagicArgs),
    /// Run one lookup in a pod and show each search-list attempt's path, hop by hop, as the
    /// cluster's rules and logs show it.
    Trace(trace::TraceArgs),
    /// Check DNS expectations from a file (names, types, answers, rcodes, deadlines; UDP and
    /// TCP) from pods, in parallel with retries; a table, JSON or JUnit XML; each failure with
    /// its trace. Exits non-zero on any failure.
    Test(test::TestArgs),
    /// Run the Kubernetes e2e DNS tests (test/e2e/network/dns.go) against the cluster, each
    /// reported under its upstream name; hermetic by default. Exits non-zero on any failure.
    Conformance(conformance::ConformanceArgs),
}

pub async fn run(cmd: Dns) -> Result<()> {
    match cmd {
        Dns::Magic(args) => magic::run(args).await,
        Dns::Trace(args) => trace::run(args).await,
        Dns::Test(args) => test::run(args).await,
        Dns::Conformance(args) => conformance::run(args).await,
    }
}
