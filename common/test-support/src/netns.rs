//! Private namespaces for tests that change network state (links, routes, iptables rules):
//! whatever they make goes away with the namespace, and the host's own stays untouched.

use nix::sched::{CloneFlags, unshare};

/// Moves the calling thread into a new network namespace (plus any `extra` namespaces, e.g.
/// mount and UTS) and brings its `lo` up. Threads started afterwards (a tokio runtime's)
/// share it. The tests run as root; anything else fails here, naming why.
pub fn enter_private_network(extra: CloneFlags) {
    unshare(CloneFlags::CLONE_NEWNET | extra)
        .expect("unsharing the network namespace (the suite runs as root)");
    let st = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("running ip (iproute2)");
    assert!(st.success(), "ip link set lo up failed");
}
