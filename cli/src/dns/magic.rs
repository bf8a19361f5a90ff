//! `minikind dns magic (status|on|off) [--name CLUSTER] [--node NODE]`: KIND's network magic,
//! shown per node or switched live, without restarting anything.
//!
//! Each node does the work itself (`minikind network-magic …` run in it with the engine's
//! exec API): `off` puts Docker's DNS rules and the original resolv.conf back, `on` applies the
//! magic as the node's boot does. Pods keep the resolv.conf they were started with, so a pod
//! made while the magic is off keeps 127.0.0.11 — CoreDNS then finds its loop — until it is
//! made again. A switch lasts until the node restarts, which applies the cluster config again.

use anyhow::{Context, Result, bail};
use bollard::Docker;
use clap::{Args, ValueEnum};
use minikind_contract::MINIKIND_PATH;
use serde::Deserialize;

use crate::dns::nodelocal::NodeCacheState;
use crate::provider::docker;
use crate::provider::docker::exec::exec_in;
use crate::provider::docker::list;

#[derive(Debug, Args)]
pub struct MagicArgs {
    /// `status`: whether the magic is in place on each node; `on`/`off`: switch it live.
    #[arg(value_enum)]
    pub action: MagicAction,
    /// Cluster name (default: $MINIKIND_CLUSTER_NAME, else "minikind").
    #[arg(long)]
    pub name: Option<String>,
    /// Only this node: its container name (`lab-worker2`) or the part after the cluster's
    /// name (`worker2`).
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MagicAction {
    Status,
    On,
    Off,
}

pub async fn run(args: MagicArgs) -> Result<()> {
    let cluster = crate::cluster::access::resolve_name(args.name, None)?;
    let docker = docker::connect().await?;
    let all: Vec<String> = list::nodes(&docker, Some(&cluster))
        .await?
        .into_iter()
        .map(|n| n.name)
        .collect();
    let nodes = select_nodes(&cluster, &all, args.node.as_deref())?;
    match args.action {
        MagicAction::Status => {
            let mut rows = Vec::new();
            for node in nodes {
                let status = node_status(&docker, &node).await?;
                let cache = crate::dns::nodelocal::node_state(&docker, &node).await?;
                rows.push((node, status, cache));
            }
            print!("{}", status_table(&rows));
            Ok(())
        }
        MagicAction::On | MagicAction::Off => {
            let word = if args.action == MagicAction::On {
                "on"
            } else {
                "off"
            };
            let mut failed = Vec::new();
            for node in &nodes {
                match exec_in(&docker, node, &[MINIKIND_PATH, "network-magic", word]).await {
                    Ok(r) if r.ok() => println!("{node}: {}", r.stdout.trim()),
                    Ok(r) => {
                        eprintln!("{node}: {}", r.stderr.trim());
                        failed.push(node.as_str());
                    }
                    Err(e) => {
                        eprintln!("{node}: {e:#}");
                        failed.push(node.as_str());
                    }
                }
            }
            if !failed.is_empty() {
                bail!(
                    "switching the network magic {word} failed on {}",
                    failed.join(", ")
                );
            }
            Ok(())
        }
    }
}

/// The nodes a command acts on: all of them, or the one `--node` names (in full, or by the
/// part after `<cluster>-`).
pub fn select_nodes(cluster: &str, all: &[String], wanted: Option<&str>) -> Result<Vec<String>> {
    if all.is_empty() {
        bail!("cluster {cluster:?} has no nodes (does it exist? see `minikind get clusters`)");
    }
    let Some(wanted) = wanted else {
        return Ok(all.to_vec());
    };
    let full = format!("{cluster}-{wanted}");
    match all.iter().find(|n| *n == wanted || **n == full) {
        Some(node) => Ok(vec![node.clone()]),
        None => bail!(
            "--node {wanted:?}: cluster {cluster:?} has no such node (its nodes: {})",
            all.join(", ")
        ),
    }
}

/// What `minikind network-magic status --json` reports from inside a node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMagic {
    pub in_place: bool,
    pub flavour: Option<String>,
    pub docker_chain: bool,
    pub rules_to_embedded_ip: usize,
    pub prerouting_jumps: Vec<String>,
    pub dnat_targets: Vec<String>,
    pub resolv_conf_nameservers: Vec<String>,
    pub original_kept: bool,
    pub route_localnet: Option<bool>,
    pub embedded: String,
    pub live_switch: Option<String>,
}

impl NodeMagic {
    /// `on`, `off` (Docker's rules and file as Docker made them) or `partial`.
    pub fn state(&self) -> &'static str {
        if self.in_place {
            "on"
        } else if self.prerouting_jumps.is_empty()
            && self
                .resolv_conf_nameservers
                .iter()
                .any(|n| n == "127.0.0.11")
        {
            "off"
        } else {
            "partial"
        }
    }
}

async fn node_status(docker: &Docker, node: &str) -> Result<NodeMagic> {
    let r = exec_in(
        docker,
        node,
        &[MINIKIND_PATH, "network-magic", "status", "--json"],
    )
    .await?;
    // Exit 1 only says "not in place"; 2 (or anything else) means no answer.
    if r.exit_code != 0 && r.exit_code != 1 {
        bail!(
            "reading the network magic's status on {node} failed (exit {}): {}",
            r.exit_code,
            r.stderr.trim()
        );
    }
    serde_json::from_str(r.stdout.trim())
        .with_context(|| format!("{node} answered the status with {:?}", r.stdout.trim()))
}

/// The per-node table `dns magic status` prints, with the node-local cache's state last
/// (`crate::dns::nodelocal`).
pub fn status_table(rows: &[(String, NodeMagic, NodeCacheState)]) -> String {
    let header = [
        "NODE",
        "MAGIC",
        "RESOLVER",
        "RESOLV.CONF",
        "PREROUTING",
        "DNAT TO",
        "NODELOCAL DNS",
    ];
    let none = || "-".to_string();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|(node, m, cache)| {
            let or_none = |v: &[String]| {
                if v.is_empty() { none() } else { v.join(",") }
            };
            let mut state = m.state().to_string();
            if let Some(live) = &m.live_switch {
                state = format!("{state} (switched {live})");
            }
            [
                node.clone(),
                state,
                m.embedded.clone(),
                or_none(&m.resolv_conf_nameservers),
                or_none(&m.prerouting_jumps),
                or_none(&m.dnat_targets),
                crate::dns::nodelocal::summary(cache),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}   "));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Wrapper {
        #[command(flatten)]
        args: MagicArgs,
    }

    #[test]
    fn the_command_line_parses() {
        let w = Wrapper::try_parse_from(["x", "off", "--name", "lab", "--node", "worker"]).unwrap();
        assert_eq!(w.args.action, MagicAction::Off);
        assert_eq!(w.args.name.as_deref(), Some("lab"));
        assert_eq!(w.args.node.as_deref(), Some("worker"));
        assert!(Wrapper::try_parse_from(["x", "status"]).is_ok());
        assert!(Wrapper::try_parse_from(["x", "sideways"]).is_err());
        assert!(Wrapper::try_parse_from(["x"]).is_err());
    }

    #[test]
    fn nodes_are_picked_by_full_or_short_name() {
        let all = vec![
            "lab-control-plane".to_string(),
            "lab-worker".to_string(),
            "lab-worker2".to_string(),
        ];
        assert_eq!(select_nodes("lab", &all, None).unwrap(), all);
        assert_eq!(
            select_nodes("lab", &all, Some("worker2")).unwrap(),
            vec!["lab-worker2"]
        );
        assert_eq!(
            select_nodes("lab", &all, Some("lab-worker")).unwrap(),
            vec!["lab-worker"]
        );
        let e = select_nodes("lab", &all, Some("worker3"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"worker3\"") && e.contains("lab-control-plane, lab-worker, lab-worker2"),
            "{e}"
        );
        let e = select_nodes("gone", &[], None).unwrap_err().to_string();
        assert!(e.contains("\"gone\" has no nodes"), "{e}");
    }

    fn magic(on: bool) -> NodeMagic {
        NodeMagic {
            in_place: on,
            flavour: Some("nft".into()),
            docker_chain: true,
            rules_to_embedded_ip: if on { 0 } else { 4 },
            prerouting_jumps: if on {
                vec!["172.18.0.1/32".into()]
            } else {
                vec![]
            },
            dnat_targets: vec!["127.0.0.11:38405".into(), "127.0.0.11:41553".into()],
            resolv_conf_nameservers: vec![if on { "172.18.0.1" } else { "127.0.0.11" }.into()],
            original_kept: true,
            route_localnet: Some(true),
            embedded: "builtin".into(),
            live_switch: None,
        }
    }

    #[test]
    fn the_status_json_of_a_node_parses() {
        let json = r#"{"inPlace":false,"flavour":"legacy","dockerChain":true,"rulesToEmbeddedIp":4,
            "preroutingJumps":[],"dnatTargets":["127.0.0.11:1"],"resolvConfNameservers":["127.0.0.11"],
            "originalKept":true,"routeLocalnet":true,"embedded":"docker","liveSwitch":"off"}"#;
        let m: NodeMagic = serde_json::from_str(json).unwrap();
        assert_eq!(m.state(), "off");
        assert_eq!(m.live_switch.as_deref(), Some("off"));
    }

    #[test]
    fn states_and_the_table() {
        assert_eq!(magic(true).state(), "on");
        assert_eq!(magic(false).state(), "off");
        let mut half = magic(false);
        half.resolv_conf_nameservers = vec!["172.18.0.1".into()];
        assert_eq!(half.state(), "partial");
        let mut switched = magic(false);
        switched.live_switch = Some("off".into());
        let cache = NodeCacheState {
            interface: Some(vec!["169.254.20.10/32".into()]),
            rules: 12,
            pod: None,
        };
        let table = status_table(&[
            ("lab-control-plane".into(), magic(true), cache),
            ("lab-worker".into(), switched, NodeCacheState::default()),
        ]);
        let want = [
            "NODE                MAGIC                RESOLVER   RESOLV.CONF   PREROUTING      DNAT TO                             NODELOCAL DNS",
            "lab-control-plane   on                   builtin    172.18.0.1    172.18.0.1/32   127.0.0.11:38405,127.0.0.11:41553   169.254.20.10/32 (12 rules)",
            "lab-worker          off (switched off)   builtin    127.0.0.11    -               127.0.0.11:38405,127.0.0.11:41553   off",
        ];
        assert_eq!(table, format!("{}\n", want.join("\n")));
    }
}
