//! Pod traffic between nodes, as kindnet does it: a route to every other node's pod CIDR via
//! that node's InternalIP, and masquerade for pod traffic that leaves the cluster's pod
//! subnet.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::pod_network::ip;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio_util::sync::CancellationToken;

/// Our routes carry this protocol number, so they can be listed and removed without
/// touching anyone else's (a number no routing daemon in iproute2's table claims).
pub const ROUTE_PROTO: &str = "77";

/// The nat chain holding the masquerade rules.
pub const MASQ_CHAIN: &str = "MINIKIND-MASQ";

/// Pod CIDR → node IP for every node but `me` that has both.
pub fn desired_routes(nodes: &[Node], me: &str) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for n in nodes {
        if n.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let cidr = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse::<Ipv4Net>().ok());
        let ip = n
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .find(|a| a.type_ == "InternalIP")
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        if let (Some(cidr), Some(ip)) = (cidr, ip) {
            out.insert(cidr.trunc(), ip);
        }
    }
    out
}

/// This node's bridge address (the first host of its pod CIDR), once it has a CIDR.
pub fn own_gateway(nodes: &[Node], me: &str) -> Option<Ipv4Addr> {
    nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(me))
        .and_then(|n| {
            n.spec
                .as_ref()?
                .pod_cidr
                .as_deref()?
                .parse::<Ipv4Net>()
                .ok()
        })
        .map(super::ipam::gateway_of)
}

/// Our routes as the kernel holds them: destination → gateway.
pub fn installed_routes() -> Result<BTreeMap<Ipv4Net, Ipv4Addr>> {
    let text = ip(&["-4", "route", "show", "proto", ROUTE_PROTO])?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let dst = w.first()?.parse::<Ipv4Net>().ok()?;
            let via = w.iter().position(|x| *x == "via")?;
            Some((dst, w.get(via + 1)?.parse().ok()?))
        })
        .collect())
}

/// Makes our routes exactly `want`: adds or replaces what differs, removes what is stale.
pub fn sync_routes(want: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<()> {
    let have = installed_routes()?;
    let mut errors = Vec::new();
    for (dst, via) in want {
        if have.get(dst) == Some(via) {
            continue;
        }
        let (dst, via) = (dst.to_string(), via.to_string());
        if let Err(e) = ip(&["route", "replace", &dst, "via", &via, "proto", ROUTE_PROTO]) {
            errors.push(format!("{e:#}"));
        }
    }
    for dst in have.keys().filter(|d| !want.contains_key(d)) {
        if let Err(e) = ip(&["route", "del", &dst.to_string(), "proto", ROUTE_PROTO]) {
            errors.push(format!("{e:#}"));
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// The masquerade rules in `iptables-restore --noflush` form: declaring the chain flushes
/// only it, so re-applying never duplicates and never touches other rules.
pub fn masquerade_rules(cluster_cidr: Ipv4Net) -> String {
    format!(
        "*nat\n:{MASQ_CHAIN} - [0:0]\n\
         -A {MASQ_CHAIN} -d {cluster_cidr} -m comment --comment \"minikind: pod-to-pod traffic is not masqueraded\" -j RETURN\n\
         -A {MASQ_CHAIN} -m comment --comment \"minikind: pod traffic leaving the pod subnet\" -j MASQUERADE\n\
         COMMIT\n"
    )
}

/// Installs the chain and the POSTROUTING jump for traffic from this node's pods (idempotent).
pub fn ensure_masquerade(
    iptables: &str,
    node_pod_cidr: Ipv4Net,
    cluster_cidr: Ipv4Net,
) -> Result<()> {
    let restore = format!("{iptables}-restore");
    minikind_iptables::restore(
        std::path::Path::new(&restore),
        &["--noflush"],
        &masquerade_rules(cluster_cidr),
        "the masquerade rules",
    )?;
    let src = node_pod_cidr.trunc().to_string();
    let rule = [
        "POSTROUTING",
        "-s",
        &src,
        "-m",
        "comment",
        "--comment",
        "minikind: masquerade pod traffic leaving the pod subnet",
        "-j",
        MASQ_CHAIN,
    ];
    let present = Command::new(iptables)
        .args(["-t", "nat", "-C"])
        .args(rule)
        .output()
        .with_context(|| format!("running {iptables} -C"))?
        .status
        .success();
    if !present {
        let out = Command::new(iptables)
            .args(["-t", "nat", "-A"])
            .args(rule)
            .output()
            .with_context(|| format!("running {iptables} -A"))?;
        if !out.status.success() {
            bail!(
                "{iptables} -t nat -A POSTROUTING: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Watches the Nodes and keeps the routes to their pod CIDRs in sync until `shutdown`; with
/// `tunnels` through VXLAN links instead, admitted from the peers only (see `overlay.rs`).
pub async fn watch_nodes(
    client: kube::Client,
    me: String,
    tunnels: Option<crate::overlay::Tunnels>,
    shutdown: CancellationToken,
) {
    let api: Api<Node> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    futures::pin_mut!(stream);
    let mut last: Option<(BTreeMap<Ipv4Net, Ipv4Addr>, Option<Ipv4Addr>)> = None;
    let mut retry = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            ev = stream.next() => {
                match ev {
                    // The store holds the initial list only once it is complete (InitDone):
                    // syncing on each object of that list would see an empty store, and with
                    // no Node changing afterwards the routes would wait for the retry tick —
                    // ten seconds without a path to the other nodes' pods.
                    Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => continue,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => { tracing::debug!("watching nodes: {e}"); continue; }
                    None => return,
                }
            }
            _ = retry.tick() => { last = None; }
            _ = shutdown.cancelled() => return,
        }
        let nodes: Vec<Node> = reader.state().iter().map(|n| (**n).clone()).collect();
        let want = (desired_routes(&nodes, &me), own_gateway(&nodes, &me));
        if last.as_ref() == Some(&want) {
            continue;
        }
        let (w, gw) = want.clone();
        let tunnels = tunnels.clone();
        let sync = move || match tunnels {
            Some(t) => t.sync(&w, gw, ROUTE_PROTO),
            None => sync_routes(&w),
        };
        match tokio::task::spawn_blocking(sync).await {
            Ok(Ok(())) => last = Some(want),
            Ok(Err(e)) => tracing::warn!("syncing pod routes: {e:#}"),
            Err(e) => tracing::warn!("pod route task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let mut v = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": []}});
        if let Some(c) = cidr {
            v["spec"]["podCIDR"] = json!(c);
        }
        if let Some(ip) = ip {
            v["status"]["addresses"] = json!([{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn ip_ok(args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    }

    /// A node that joins after all the others sees no Node change for a while (the others'
    /// heartbeats are ten seconds apart): its routes must come from the initial list alone.
    #[test]
    fn routes_follow_the_initial_list_without_waiting_for_a_change() {
        use kube::api::{Patch, PatchParams, PostParams};
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            ip_ok(&["link", "set", "lo", "up"]);
            ip_ok(&["link", "add", "nodenet", "type", "bridge"]);
            ip_ok(&["addr", "add", "172.18.0.2/16", "dev", "nodenet"]);
            ip_ok(&["link", "set", "nodenet", "up"]);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let cp = minikind_control_plane::start(
                    minikind_control_plane::ControlPlaneConfig::loopback(dir.path().join("api")),
                )
                .await
                .unwrap();
                let client = cp.client().await.unwrap();
                let nodes: Api<Node> = Api::all(client.clone());
                for (name, ip) in [
                    ("me", "172.18.0.2"),
                    ("peer-1", "172.18.0.3"),
                    ("peer-2", "172.18.0.4"),
                ] {
                    let n: Node =
                        serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
                    nodes.create(&PostParams::default(), &n).await.unwrap();
                    let status =
                        json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}});
                    nodes
                        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                        .unwrap();
                }
                // The IPAM controller gives every node its CIDR; then nothing changes.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                loop {
                    let list = nodes.list(&Default::default()).await.unwrap();
                    if desired_routes(&list.items, "me").len() == 2 {
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no pod CIDRs assigned"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                let stop = CancellationToken::new();
                let task = tokio::spawn(watch_nodes(client, "me".into(), None, stop.clone()));
                // Well inside the ten-second retry tick.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
                loop {
                    let out = Command::new("ip")
                        .args(["-4", "route", "show", "proto", ROUTE_PROTO])
                        .output()
                        .unwrap();
                    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
                    if routes.lines().count() == 2 {
                        assert!(routes.contains("via 172.18.0.3 dev nodenet"), "{routes}");
                        assert!(routes.contains("via 172.18.0.4 dev nodenet"), "{routes}");
                        break;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no routes from the initial list within 3 s: {routes:?}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                stop.cancel();
                task.await.unwrap();
            });
        })
        .join()
        .expect("the test thread");
    }

    #[test]
    fn own_gateway_is_the_first_host_of_our_cidr() {
        let nodes = [
            node("a", Some("10.244.1.0/24"), Some("172.18.0.2")),
            node("b", None, Some("172.18.0.3")),
        ];
        assert_eq!(own_gateway(&nodes, "a"), Some(Ipv4Addr::new(10, 244, 1, 1)));
        assert_eq!(own_gateway(&nodes, "b"), None);
        assert_eq!(own_gateway(&nodes, "c"), None);
    }

    #[test]
    fn routes_to_every_other_node_with_a_cidr_and_an_address() {
        let nodes = vec![
            node("cp", Some("10.244.0.0/24"), Some("172.18.0.2")),
            node("w1", Some("10.244.1.0/24"), Some("172.18.0.3")),
            node("w2", None, Some("172.18.0.4")),
            node("w3", Some("10.244.3.0/24"), None),
        ];
        let r = desired_routes(&nodes, "cp");
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[&"10.244.1.0/24".parse().unwrap()],
            Ipv4Addr::new(172, 18, 0, 3)
        );
    }

    #[test]
    fn masquerade_rules_return_inside_the_pod_subnet() {
        let r = masquerade_rules("10.244.0.0/16".parse().unwrap());
        assert!(r.starts_with("*nat\n:MINIKIND-MASQ - [0:0]\n"));
        assert!(r.contains("-A MINIKIND-MASQ -d 10.244.0.0/16 "));
        assert!(r.contains("-j MASQUERADE\nCOMMIT\n"));
    }
}
