//! `minikind network-magic (status [--json] | on | off)`: the node's side of
//! `minikind dns magic …`, run inside a node with `docker exec`. It reads the node's own
//! settings from the container's environment (the CLI put them there) and refuses to run
//! anywhere else: on a host it would rewrite the host's rules and resolv.conf.

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

use super::switch::{LIVE_STATE_PATH, live_state, record_live_state, switch};
use super::{MagicOptions, MagicStatus, dnat_targets, status};
use minikind_contract::env;

#[derive(Parser, Debug)]
#[command(
    name = "network-magic",
    about = "KIND's network magic on this node: show it, or switch it live (run inside a node; \
             from the host use `minikind dns magic`)"
)]
struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Whether the magic is in place (exit 0), not (exit 1), or unknown (exit 2).
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite Docker's DNS rules and resolv.conf for pods (as at boot).
    On,
    /// Put Docker's DNS rules and the original resolv.conf back.
    Off,
}

/// Entry point; returns the exit code.
pub fn cli_main(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if std::env::var_os(env::CLUSTER).is_none() {
        eprintln!(
            "network-magic: {} is not set: this is not a minikind node (from the host, use \
             `minikind dns magic`)",
            env::CLUSTER
        );
        return 2;
    }
    let opts = MagicOptions {
        dns_search: std::env::var(env::DNS_SEARCH)
            .ok()
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
        ..MagicOptions::default()
    };
    match args.action {
        Action::Status { json } => match status(&opts) {
            Ok(st) => {
                if json {
                    let targets = minikind_iptables::save(&opts.iptables.save, &["-t", "nat"])
                        .map(|save| dnat_targets(&save))
                        .unwrap_or_default();
                    println!("{}", status_json(&st, &targets, Path::new(LIVE_STATE_PATH)));
                } else {
                    println!("{st}");
                }
                if st.in_place() { 0 } else { 1 }
            }
            Err(e) => {
                eprintln!("network-magic status: {e:#}");
                2
            }
        },
        Action::On | Action::Off => {
            let on = matches!(args.action, Action::On);
            let result = switch(&opts, on).and_then(|report| {
                record_live_state(Path::new(LIVE_STATE_PATH), on).map(|_| report)
            });
            match result {
                Ok(report) => {
                    println!("{report}");
                    0
                }
                Err(e) => {
                    eprintln!("network-magic {}: {e:#}", if on { "on" } else { "off" });
                    1
                }
            }
        }
    }
}

/// The status as the host CLI reads it.
fn status_json(st: &MagicStatus, dnat_targets: &[String], live: &Path) -> serde_json::Value {
    serde_json::json!({
        "inPlace": st.in_place(),
        "flavour": st.flavour.map(|f| f.as_str()),
        "dockerChain": st.docker_chain,
        "rulesToEmbeddedIp": st.rules_to_embedded_ip,
        "preroutingJumps": st.prerouting_jumps,
        "dnatTargets": dnat_targets,
        "resolvConfNameservers": st.resolv_conf_nameservers,
        "originalKept": st.original_kept,
        "routeLocalnet": st.route_localnet,
        "embedded": std::env::var(env::DNS_EMBEDDED).unwrap_or_else(|_| "docker".to_string()),
        "liveSwitch": live_state(live).map(|on| if on { "on" } else { "off" }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        let run = |v: &[&str]| cli_main(v.iter().map(OsString::from).collect());
        assert_eq!(run(&["network-magic"]), 2, "an action is required");
        assert_eq!(run(&["network-magic", "sideways"]), 2);
        assert_eq!(run(&["network-magic", "status", "--yaml"]), 2);
    }

    #[test]
    fn status_json_has_the_fields_the_host_reads() {
        let st = MagicStatus {
            flavour: Some(minikind_iptables::Flavour::Nft),
            rules_to_embedded_ip: 0,
            prerouting_jumps: vec!["172.18.0.1/32".into()],
            docker_chain: true,
            resolv_conf_nameservers: vec!["172.18.0.1".into()],
            original_kept: true,
            route_localnet: Some(true),
        };
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("state");
        let v = status_json(&st, &["127.0.0.11:40000".into()], &live);
        assert_eq!(v["inPlace"], true);
        assert_eq!(v["flavour"], "nft");
        assert_eq!(v["preroutingJumps"][0], "172.18.0.1/32");
        assert_eq!(v["dnatTargets"][0], "127.0.0.11:40000");
        assert_eq!(v["liveSwitch"], serde_json::Value::Null);
        record_live_state(&live, false).unwrap();
        assert_eq!(status_json(&st, &[], &live)["liveSwitch"], "off");
    }
}
