//! Small tools the node and its pods need whatever the host has: dig, nslookup, getent.
//!
//! They are minikind's own and use no libc resolver: they read `/etc/resolv.conf` and
//! `/etc/hosts` themselves and talk DNS with hickory-proto over UDP and TCP, so the path they
//! show is exactly the one configured in the files (a pod's, a node's). Each tool has a
//! `cli_main(args) -> exit code` for the `minikind` binary and a `run` taking a [`ToolEnv`]
//! and output streams, which is what the tests call.
//!
//! This crate owns the tools and their resolver client (search-list expansion, the attempt
//! lines `minikind dns trace` reads back, presentation in BIND's and glibc's formats). The
//! resolv.conf parser they read is `minikind-resolv-conf`'s. The tools only read files and
//! send queries: they must not change the node (no rules, no files).

pub mod attempt;
pub mod client;
pub mod dig;
pub mod getent;
pub mod hosts;
pub mod nslookup;
pub mod present;
pub mod search;
pub mod transport;

use std::ffi::OsString;
use std::path::PathBuf;

/// Where a tool finds its configuration.
#[derive(Debug, Clone)]
pub struct ToolEnv {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    /// The port of the resolv.conf nameservers (53; resolv.conf has no way to say another,
    /// so tests against a server on a random loopback port set it here).
    pub dns_port: u16,
}

impl ToolEnv {
    /// The files every resolver reads: `/etc/resolv.conf` and `/etc/hosts`.
    pub fn system() -> Self {
        Self {
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts: PathBuf::from("/etc/hosts"),
            dns_port: 53,
        }
    }
}

/// Turns `cli_main`'s arguments (program name first) into strings, or says which one is not
/// valid UTF-8.
pub(crate) fn string_args(args: Vec<OsString>) -> Result<Vec<String>, String> {
    args.into_iter()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|bad| format!("argument {bad:?} is not valid UTF-8"))
        })
        .collect()
}
