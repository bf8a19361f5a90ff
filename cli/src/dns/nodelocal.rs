//! `minikind dns nodelocal (status|on|off) [--name CLUSTER] [--address IP] [--mode iptables]`:
//! the NodeLocal DNSCache add-on (`minikind_control_plane::node_local_dns`) switched on or off
//! live through the API, and its state per node: the `nodelocaldns` interface's addresses,
//! node-cache's rules found in the node's tables (`minikind_cluster_dns::nodecache::rules`),
//! and the node's cache pod.
//!
//! Live, only the iptables mode can be switched on: pods keep the kube-dns address and the
//! cache answers it on the node. The local mode changes the kubelet's cluster DNS, which a
//! node reads at boot: it is set in the cluster config (`dns.nodeLocalDNS.mode: local`).
//! Rules left behind by a cache that was killed (SIGKILL) show up here as rules with no pod.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::InspectContainerOptions;
use clap::{Args, ValueEnum};
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use minikind_cluster_dns::nodecache::rules::{COMMENT_ALLOW_TRAFFIC, COMMENT_SKIP_CONNTRACK};
use minikind_control_plane::dns_addon::NAMESPACE;
use minikind_control_plane::node_local_dns::{self, Mode, NodeLocalDns};

use crate::cluster::access;
use crate::provider::docker;
use crate::provider::docker::exec::exec_in;
use crate::provider::docker::list;

/// node-cache's interface name (its `-interfacename` default).
const INTERFACE: &str = "nodelocaldns";
/// Rules node-cache installs per local address.
const RULES_PER_ADDRESS: usize = 12;

#[derive(Debug, Args)]
pub struct NodeLocalArgs {
    /// `status`: the add-on and each node's interface, rules and cache pod; `on`/`off`:
    /// install or remove the add-on live.
    #[arg(value_enum)]
    pub action: NodeLocalAction,
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind").
    #[arg(long)]
    pub name: Option<String>,
    /// `on`: the cache's link-local address.
    #[arg(long, default_value_t = node_local_dns::DEFAULT_ADDRESS)]
    pub address: Ipv4Addr,
    /// `on`: how pods reach the cache; only `iptables` can be switched on live.
    #[arg(long, default_value = "iptables")]
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeLocalAction {
    Status,
    On,
    Off,
}

pub async fn run(args: NodeLocalArgs) -> Result<()> {
    let cluster = access::resolve_name(args.name.clone(), None)?;
    let docker = docker::connect().await?;
    let client = access::cluster_client(Some(cluster.clone())).await?;
    match args.action {
        NodeLocalAction::On => {
            let mode = Mode::parse(&args.mode).map_err(|e| anyhow::anyhow!("--mode: {e}"))?;
            if mode == Mode::Local {
                bail!(
                    "--mode local cannot be switched on live: the kubelet reads its cluster DNS \
                     at boot; create the cluster with `dns.nodeLocalDNS: {{mode: local}}`"
                );
            }
            let subnet = service_subnet(&docker, &cluster).await?;
            let addon = NodeLocalDns {
                domain: minikind_agent::CLUSTER_DOMAIN.to_string(),
                address: args.address,
                mode,
            };
            let n = node_local_dns::install(&client, subnet, &addon).await?;
            println!(
                "NodeLocal DNSCache on ({} mode, {}): {n} object(s) created",
                mode.as_str(),
                args.address
            );
            Ok(())
        }
        NodeLocalAction::Off => {
            let n = node_local_dns::remove(&client).await?;
            println!("NodeLocal DNSCache off: {n} object(s) deleted");
            Ok(())
        }
        NodeLocalAction::Status => status(&docker, &client, &cluster).await,
    }
}

/// The cluster's service subnet, as its control-plane node was given it.
async fn service_subnet(docker: &Docker, cluster: &str) -> Result<Ipv4Net> {
    let cp = format!("{cluster}-control-plane");
    let info = docker
        .inspect_container(&cp, None::<InspectContainerOptions>)
        .await
        .with_context(|| format!("inspecting {cp}"))?;
    let key = format!("{}=", minikind_contract::env::SERVICE_SUBNET);
    let env = info.config.and_then(|c| c.env).unwrap_or_default();
    let v = env
        .iter()
        .find_map(|e| e.strip_prefix(&key))
        .with_context(|| format!("{cp} has no {}", minikind_contract::env::SERVICE_SUBNET))?;
    v.parse()
        .with_context(|| format!("{cp}: {key}{v} is not a CIDR"))
}

/// One node's view of the cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeCacheState {
    /// The interface's addresses; None when there is no interface.
    pub interface: Option<Vec<String>>,
    /// node-cache's rules (by their comments) in the raw and filter tables.
    pub rules: usize,
    /// The node's cache pod and its phase.
    pub pod: Option<(String, String)>,
}

/// Counts node-cache's rules in `iptables-save` text by their comments.
pub fn count_cache_rules(save: &str) -> usize {
    save.lines()
        .filter(|l| {
            l.starts_with("-A ")
                && (l.contains(COMMENT_SKIP_CONNTRACK) || l.contains(COMMENT_ALLOW_TRAFFIC))
        })
        .count()
}

/// The node's interface and rules (the pod is filled in by the caller that lists pods).
pub async fn node_state(docker: &Docker, node: &str) -> Result<NodeCacheState> {
    let link = exec_in(
        docker,
        node,
        &["ip", "-o", "addr", "show", "dev", INTERFACE],
    )
    .await?;
    let interface = link.ok().then(|| {
        link.stdout
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                w.find(|t| *t == "inet")?;
                w.next().map(str::to_string)
            })
            .collect()
    });
    let mut rules = 0;
    for table in ["raw", "filter"] {
        let r = exec_in(docker, node, &["iptables-save", "-t", table]).await?;
        if !r.ok() {
            bail!(
                "iptables-save -t {table} on {node} failed: {}",
                r.stderr.trim()
            );
        }
        rules += count_cache_rules(&r.stdout);
    }
    Ok(NodeCacheState {
        interface,
        rules,
        pod: None,
    })
}

async fn status(docker: &Docker, client: &kube::Client, cluster: &str) -> Result<()> {
    let ds = Api::<DaemonSet>::namespaced(client.clone(), NAMESPACE)
        .get_opt(node_local_dns::NAME)
        .await
        .context("reading DaemonSet kube-system/node-local-dns")?;
    let expected = match &ds {
        Some(ds) => {
            let args = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|p| p.containers.first())
                .and_then(|c| c.args.clone())
                .unwrap_or_default();
            let locals = args
                .iter()
                .position(|a| a == "-localip")
                .and_then(|i| args.get(i + 1))
                .cloned()
                .unwrap_or_default();
            let st = ds.status.clone().unwrap_or_default();
            println!(
                "NodeLocal DNSCache: on (addresses {locals}; pods desired {}, ready {})",
                st.desired_number_scheduled, st.number_ready
            );
            Some(locals.split(',').filter(|s| !s.is_empty()).count() * RULES_PER_ADDRESS)
        }
        None => {
            println!("NodeLocal DNSCache: off");
            None
        }
    };
    let pods = cache_pods(client).await?;
    let mut by_node: BTreeMap<String, (String, String)> = BTreeMap::new();
    for p in pods {
        if let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            let phase = p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Pending".into());
            by_node.insert(node, (p.metadata.name.unwrap_or_default(), phase));
        }
    }
    let mut rows = Vec::new();
    for n in list::nodes(docker, Some(cluster)).await? {
        let mut st = node_state(docker, &n.name).await?;
        st.pod = by_node.remove(&n.name);
        rows.push((n.name, st));
    }
    print!("{}", status_table(&rows, expected));
    Ok(())
}

/// The node-local-dns DaemonSet's pods (by its label), on every node.
pub async fn cache_pods(client: &kube::Client) -> Result<Vec<Pod>> {
    Ok(Api::<Pod>::namespaced(client.clone(), NAMESPACE)
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            node_local_dns::APP.0,
            node_local_dns::APP.1
        )))
        .await
        .context("listing the node-local-dns pods")?
        .items)
}

/// One cell for another table (`dns magic status`): `off`, or the interface's addresses and
/// how many of node-cache's rules the node holds.
pub fn summary(s: &NodeCacheState) -> String {
    match (&s.interface, s.rules) {
        (None, 0) => "off".to_string(),
        (None, n) => format!("no interface, {n} rules"),
        (Some(a), n) if a.is_empty() => format!("no address, {n} rules"),
        (Some(a), n) => format!("{} ({n} rules)", a.join(",")),
    }
}

/// The per-node table; `expected` is how many rules the add-on's addresses call for (None: the
/// add-on is off, so any rule found is one left behind).
pub fn status_table(rows: &[(String, NodeCacheState)], expected: Option<usize>) -> String {
    let header = ["NODE", "INTERFACE", "RULES", "POD"];
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|(node, s)| {
            let iface = match &s.interface {
                None => "-".to_string(),
                Some(a) if a.is_empty() => "no address".to_string(),
                Some(a) => a.join(","),
            };
            let mut rules = match expected {
                Some(n) => format!("{}/{n}", s.rules),
                None => s.rules.to_string(),
            };
            if s.pod.is_none() && s.rules > 0 {
                // What a killed cache leaves: queries to its addresses go nowhere.
                rules.push_str(" (left behind)");
            }
            let pod = s
                .pod
                .as_ref()
                .map(|(n, p)| format!("{n} {p}"))
                .unwrap_or_else(|| "-".into());
            [node.clone(), iface, rules, pod]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_string)).chain(cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use minikind_cluster_dns::nodecache::rules::rules;

    #[test]
    fn rules_are_counted_by_node_caches_comments() {
        let all = rules(&["169.254.20.10".parse().unwrap()], 53, 8080);
        let save: String = all
            .iter()
            .map(|r| r.save_line() + "\n")
            .chain(["-A OUTPUT -j KUBE-SERVICES\n".to_string()])
            .collect();
        assert_eq!(count_cache_rules(&save), RULES_PER_ADDRESS);
    }

    #[test]
    fn one_cell_summaries() {
        assert_eq!(summary(&NodeCacheState::default()), "off");
        let on = NodeCacheState {
            interface: Some(vec!["169.254.20.10/32".into()]),
            rules: 12,
            pod: None,
        };
        assert_eq!(summary(&on), "169.254.20.10/32 (12 rules)");
        let rules_only = NodeCacheState {
            interface: None,
            ..on
        };
        assert_eq!(summary(&rules_only), "no interface, 12 rules");
    }

    #[test]
    fn the_table_shows_what_a_killed_cache_leaves() {
        let rows = vec![
            (
                "lab-control-plane".to_string(),
                NodeCacheState {
                    interface: Some(vec!["169.254.20.10/32".into()]),
                    rules: 12,
                    pod: Some(("node-local-dns-abcde".into(), "Running".into())),
                },
            ),
            (
                "lab-worker".to_string(),
                NodeCacheState {
                    interface: Some(vec!["169.254.20.10/32".into()]),
                    rules: 12,
                    pod: None,
                },
            ),
        ];
        let t = status_table(&rows, Some(12));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NODE", "INTERFACE", "RULES", "POD"]
        );
        assert!(
            lines[1].ends_with("12/12                 node-local-dns-abcde Running"),
            "{t}"
        );
        assert!(lines[2].ends_with("12/12 (left behind)   -"), "{t}");
        let off = status_table(&rows[1..], None);
        assert!(off.contains("   12 (left behind)   -"), "{off}");
    }
}
