//! A cheap check of kube-proxy's jump rules before running `ensure_jumps`.
//!
//! `ensure_jumps` runs two or three iptables commands per jump (14 jumps); each of them loads
//! the table, which on a node with 10 000 services (170 000 nat rules) costs up to a second
//! apiece. The jumps live in the built-in chains, so listing those once and looking for every
//! jump there tells whether anything needs repair; only then is `ensure_jumps` run.

use std::path::Path;

use crate::service_rules::{JumpRule, jump_rules};

/// The rule lines of the filter and nat tables (as `iptables-save`/`iptables -S` print them).
#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub filter: String,
    pub nat: String,
}

/// The jumps from `jump_rules()` that `listing` lacks.
pub fn missing<'a>(rules: &'a [JumpRule], listing: &Listing) -> Vec<&'a JumpRule> {
    rules
        .iter()
        .filter(|jump| {
            let table = if jump.table == "nat" {
                &listing.nat
            } else {
                &listing.filter
            };
            !present(jump, table)
        })
        .collect()
}

fn present(jump: &JumpRule, listing: &str) -> bool {
    let prefix = format!("-A {} ", jump.from);
    let suffix = format!(" -j {}", jump.to);
    // The comment is the only match argument that tells jumps to the same chain apart
    // (e.g. INPUT → KUBE-NODEPORTS has none of the others' conntrack match); iptables
    // quotes it only when it has spaces.
    let comment = jump
        .args
        .iter()
        .position(|a| *a == "--comment")
        .and_then(|i| jump.args.get(i + 1));
    let conntrack_new = jump.args.contains(&"NEW");
    listing.lines().any(|l| {
        l.starts_with(&prefix)
            && l.ends_with(&suffix)
            && comment.is_none_or(|c| l.contains(c))
            && (!conntrack_new || l.contains("--ctstate NEW"))
    })
}

/// Lists what the jumps need: the whole filter table (small: kube-proxy puts only REJECTs
/// there, and `iptables -S` prints it in save syntax) and the nat table's built-in chains (from `nat_save` when the caller already has
/// an `iptables-save -t nat`; otherwise `iptables -t nat -S <chain>` per chain on nft, which
/// fetches just that chain, and one `iptables-save -t nat` on legacy, which loads the whole
/// table for any command anyway).
pub fn listing(
    iptables: &Path,
    iptables_save: &Path,
    nft: bool,
    nat_save: Option<&str>,
) -> anyhow::Result<Listing> {
    // `iptables -S`, not `iptables-save -t filter`: iptables-nft-save fetches every table
    // (1.3 s next to 170 000 nat rules), `-S` only the one asked for (60 ms).
    let filter = minikind_iptables::list(iptables, &["-w", "-t", "filter", "-S"])?;
    let nat = match nat_save {
        Some(save) => save.to_string(),
        None if nft => {
            let mut nat = String::new();
            for chain in ["PREROUTING", "OUTPUT", "POSTROUTING"] {
                nat.push_str(&minikind_iptables::list(
                    iptables,
                    &["-w", "-t", "nat", "-S", chain],
                )?);
            }
            nat
        }
        None => minikind_iptables::save(iptables_save, &["-t", "nat"])?,
    };
    Ok(Listing { filter, nat })
}

/// The jumps that need repair, from a fresh [`listing`].
pub fn check(
    iptables: &Path,
    iptables_save: &Path,
    nft: bool,
    nat_save: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let rules = jump_rules();
    let listing = listing(iptables, iptables_save, nft, nat_save)?;
    Ok(missing(&rules, &listing)
        .into_iter()
        .map(|j| format!("{} {} → {}", j.table, j.from, j.to))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The jumps as iptables-nft-save prints them on a node (kube-proxy's order and spelling).
    const FILTER: &str = r#"*filter
:INPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
COMMIT
"#;

    const NAT: &str = r#"*nat
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"#;

    #[test]
    fn all_jumps_found_in_a_node_listing() {
        let rules = jump_rules();
        let listing = Listing {
            filter: FILTER.into(),
            nat: NAT.into(),
        };
        let missing: Vec<String> = missing(&rules, &listing)
            .iter()
            .map(|j| format!("{} {} → {}", j.table, j.from, j.to))
            .collect();
        assert!(missing.is_empty(), "{missing:?}");
    }

    #[test]
    fn a_removed_jump_is_reported() {
        let rules = jump_rules();
        let without: String = FILTER
            .lines()
            .filter(|l| !l.starts_with("-A FORWARD -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let listing = Listing {
            filter: without.clone(),
            nat: NAT.into(),
        };
        let gone: Vec<(&str, &str, &str)> = missing(&rules, &listing)
            .iter()
            .map(|j| (j.table, j.from, j.to))
            .collect();
        assert_eq!(gone, vec![("filter", "FORWARD", "KUBE-SERVICES")]);
        // A jump without its conntrack match is not the one kube-proxy wants.
        let loose = without.replace(
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
            "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
             -A FORWARD -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
        );
        let listing = Listing {
            filter: loose,
            nat: NAT.into(),
        };
        assert_eq!(missing(&rules, &listing).len(), 1);
        // The nat table's jump is not satisfied by the filter table's.
        let listing = Listing {
            filter: FILTER.into(),
            nat: NAT.replace(
                "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
                "",
            ),
        };
        let gone: Vec<(&str, &str, &str)> = missing(&rules, &listing)
            .iter()
            .map(|j| (j.table, j.from, j.to))
            .collect();
        assert_eq!(gone, vec![("nat", "OUTPUT", "KUBE-SERVICES")]);
    }
}
