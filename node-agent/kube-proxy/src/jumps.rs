//! A cheap check of kube-proxy's jump rules before running `ensure_jumps`.
//!
//! `ensure_jumps` runs two or three iptables commands per jump (14 jumps); each of them loads
//! the table, which on a node with 10 000 services (170 000 nat rules) costs up to a second
//! apiece. The jumps live in the built-in chains, so listing those once and looking for every
//! jump there tells whether anything needs repair. The repair itself is one
//! `iptables-restore --noflush` ([`repair_input`]) when the listing shows which chains exist —
//! always at a node's first sync, where all 14 jumps are missing and `ensure_jumps`' ~40
//! iptables commands took ~1 s with iptables-nft before the node's kubelet could start — and
//! `ensure_jumps` otherwise.

use std::path::Path;

use crate::service_rules::{JumpRule, jump_rules};

/// The rule lines of the filter and nat tables (as `iptables-save`/`iptables -S` print them).
#[derive(Debug, Default, Clone)]
pub struct Listing {
    pub filter: String,
    pub nat: String,
    /// `nat` is the whole table (every chain declared), not only its built-in chains.
    pub nat_whole: bool,
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
    let (nat, nat_whole) = match nat_save {
        Some(save) => (save.to_string(), true),
        None if nft => {
            let mut nat = String::new();
            for chain in ["PREROUTING", "OUTPUT", "POSTROUTING"] {
                nat.push_str(&minikind_iptables::list(
                    iptables,
                    &["-w", "-t", "nat", "-S", chain],
                )?);
            }
            (nat, false)
        }
        None => (
            minikind_iptables::save(iptables_save, &["-t", "nat"])?,
            true,
        ),
    };
    Ok(Listing {
        filter,
        nat,
        nat_whole,
    })
}

/// Whether a listing (`iptables -S`: `-N NAME`, or `iptables-save`: `:NAME …`) declares the
/// chain.
fn declares(listing: &str, chain: &str) -> bool {
    listing.lines().any(|l| {
        l.strip_prefix("-N ")
            .or_else(|| l.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next())
            == Some(chain)
    })
}

/// One argument as an iptables-restore line spells it (quoted when it has spaces).
fn restore_word(arg: &str) -> String {
    if arg.contains(' ') {
        format!("\"{arg}\"")
    } else {
        arg.to_string()
    }
}

/// The `iptables-restore --noflush` input that does what `ensure_jumps` does for the `missing`
/// jumps: each target chain the listing lacks is created (`-N`: a `:CHAIN` line would flush
/// an existing chain), then each jump inserted at the top of its chain (`-I`, in
/// `jump_rules()` order, so they end up in the order `ensure_jumps` leaves them). None when
/// the listing cannot tell which nat chains exist.
pub fn repair_input(missing: &[&JumpRule], listing: &Listing) -> Option<String> {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let jumps: Vec<&&JumpRule> = missing.iter().filter(|j| j.table == table).collect();
        if jumps.is_empty() {
            continue;
        }
        let declared = if table == "nat" {
            if !listing.nat_whole {
                return None;
            }
            &listing.nat
        } else {
            &listing.filter
        };
        out.push_str(&format!("*{table}\n"));
        let mut created: Vec<&str> = Vec::new();
        for j in &jumps {
            if !declares(declared, j.to) && !created.contains(&j.to) {
                out.push_str(&format!("-N {}\n", j.to));
                created.push(j.to);
            }
        }
        for j in &jumps {
            let mut words = vec!["-I".to_string(), j.from.to_string()];
            words.extend(j.args.iter().map(|a| restore_word(a)));
            words.extend(["-j".to_string(), j.to.to_string()]);
            out.push_str(&words.join(" "));
            out.push('\n');
        }
        out.push_str("COMMIT\n");
    }
    Some(out)
}

/// What [`check`] found: the missing jumps (described), and the restore input that adds them
/// when the listing allows one.
#[derive(Debug, Default)]
pub struct Repair {
    pub missing: Vec<String>,
    pub restore_input: Option<String>,
}

/// The jumps that need repair, from a fresh [`listing`].
pub fn check(
    iptables: &Path,
    iptables_save: &Path,
    nft: bool,
    nat_save: Option<&str>,
) -> anyhow::Result<Repair> {
    let rules = jump_rules();
    let listing = listing(iptables, iptables_save, nft, nat_save)?;
    let missing = missing(&rules, &listing);
    Ok(Repair {
        missing: missing
            .iter()
            .map(|j| format!("{} {} → {}", j.table, j.from, j.to))
            .collect(),
        restore_input: (!missing.is_empty())
            .then(|| repair_input(&missing, &listing))
            .flatten(),
    })
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
            nat_whole: true,
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
            nat_whole: true,
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
            nat_whole: true,
        };
        assert_eq!(missing(&rules, &listing).len(), 1);
        // The nat table's jump is not satisfied by the filter table's.
        let listing = Listing {
            filter: FILTER.into(),
            nat: NAT.replace(
                "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
                "",
            ),
            nat_whole: true,
        };
        let gone: Vec<(&str, &str, &str)> = missing(&rules, &listing)
            .iter()
            .map(|j| (j.table, j.from, j.to))
            .collect();
        assert_eq!(gone, vec![("nat", "OUTPUT", "KUBE-SERVICES")]);
    }

    #[test]
    fn a_fresh_node_gets_every_jump_and_chain_in_one_restore() {
        let rules = jump_rules();
        // A node before kube-proxy's first sync: the kubelet's KUBE-FIREWALL is there, Docker's
        // DNS chain too, none of kube-proxy's.
        let listing = Listing {
            filter: "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N KUBE-FIREWALL\n"
                .into(),
            nat: "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER_OUTPUT - [0:0]\n-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT\nCOMMIT\n"
                .into(),
            nat_whole: true,
        };
        let gone = missing(&rules, &listing);
        assert_eq!(gone.len(), rules.len());
        let input = repair_input(&gone, &listing).unwrap();
        let lines: Vec<&str> = input.lines().collect();
        // Each missing chain created once, before the jumps; existing ones left alone.
        let created: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("-N ")).collect();
        assert_eq!(
            created,
            [
                "KUBE-EXTERNAL-SERVICES",
                "KUBE-NODEPORTS",
                "KUBE-SERVICES",
                "KUBE-FORWARD",
                "KUBE-PROXY-FIREWALL",
                "KUBE-SERVICES",
                "KUBE-POSTROUTING"
            ]
        );
        assert!(!input.contains("-N KUBE-FIREWALL"), "{input}");
        assert!(
            !input.contains(":KUBE"),
            "a chain line would flush: {input}"
        );
        // Every jump inserted, comments quoted as iptables-save prints them, one table each.
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("-I ")).count(),
            rules.len()
        );
        assert!(lines.contains(
            &"-I INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES"
        ));
        assert!(lines.contains(&"-I INPUT -j KUBE-FIREWALL"), "{input}");
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with('*') || **l == "COMMIT")
                .collect::<Vec<_>>(),
            [&"*filter", &"COMMIT", &"*nat", &"COMMIT"]
        );
        // A jump to put back into an existing chain only inserts it.
        let listing = Listing {
            filter: FILTER.into(),
            nat: NAT.replace(
                "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
                ":KUBE-SERVICES - [0:0]\n",
            ),
            nat_whole: true,
        };
        let gone = missing(&rules, &listing);
        assert_eq!(
            repair_input(&gone, &listing).unwrap(),
            "*nat\n-I OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n"
        );
        // Built-in nat chains only: which nat chains exist is unknown, no restore.
        let listing = Listing {
            nat_whole: false,
            ..listing
        };
        assert_eq!(repair_input(&gone, &listing), None);
    }
}
