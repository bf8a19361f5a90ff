//! The programs that live inside the `minikind` executable besides the CLI. Inside a node they
//! are reached through symlinks (`/usr/local/bin/dig -> minikind`), everywhere as
//! `minikind <program> …`.

use std::ffi::OsString;
use std::path::Path;

type Entry = fn(Vec<OsString>) -> i32;

/// Program name → entry point. Each parses its own flags (CoreDNS's single-dash ones for
/// cluster-dns, dig's `+short` style for dig).
const PROGRAMS: &[(&str, Entry)] = &[
    ("node-agent", minikind_agent::cli_main),
    ("netns", minikind_kubelet::pod_network::netns_cli_main),
    ("kubelet", minikind_kubelet::cli_main),
    ("dig", minikind_pod_tools::dig::cli_main),
    ("nslookup", minikind_pod_tools::nslookup::cli_main),
    ("getent", minikind_pod_tools::getent::cli_main),
    ("cluster-dns", minikind_cluster_dns::cli_main),
    ("apiserver", minikind_control_plane::apiserver_cli_main),
    (
        minikind_contract::KUBELET_CERT_PROGRAM,
        minikind_control_plane::kubelet_cert_cli_main,
    ),
    (
        "lab-upstream",
        minikind_dns_embedded::lab_upstream::cli_main,
    ),
    ("dns-embedded", minikind_dns_embedded::cli_main),
    ("network-magic", minikind_network_magic::cli_main),
    ("lb-proxy", crate::cloud_provider::proxy::cli_main),
    ("cat", crate::coreutils::cat_main),
    ("sleep", crate::coreutils::sleep_main),
];

/// Runs an embedded program if `args` names one, returning its exit code.
pub fn dispatch(args: &[OsString]) -> Option<i32> {
    let argv0 = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("minikind");
    if let Some((_, entry)) = PROGRAMS.iter().find(|(name, _)| *name == argv0) {
        return Some(entry(args.to_vec()));
    }
    let first = args.get(1).and_then(|a| a.to_str())?;
    let (_, entry) = PROGRAMS.iter().find(|(name, _)| *name == first)?;
    // The program sees itself as argv[0], as it would through its symlink.
    Some(entry(args[1..].to_vec()))
}

/// For `minikind --help`.
pub fn names() -> Vec<&'static str> {
    PROGRAMS.iter().map(|(n, _)| *n).collect()
}
