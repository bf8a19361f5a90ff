//! The way back: Docker's own DNS rules recomputed from a dump the magic rewrote, and the
//! narrow `iptables-restore --noflush` input that switches a live node between the two.
//!
//! Docker's rules are few and recognisable: the contents of its `DOCKER_OUTPUT` and
//! `DOCKER_POSTROUTING` chains in the nat table, and the jumps to them from `OUTPUT` and
//! `POSTROUTING`. In Docker's form every address they match is the resolver's, 127.0.0.11, and
//! the SNAT goes to `:53`; the magic put the host IP in those places and added a `PREROUTING`
//! jump that Docker never makes. So the inverse needs no memory of the host IP: it puts
//! 127.0.0.11 and `:53` back where Docker had them and drops the PREROUTING jumps. Step (d) of
//! the magic (a `--dport 53` restored on a DNAT that lost it) is kept: that is Docker's rule as
//! Docker wrote it.
//!
//! A live switch must not rewrite anyone else's rules: kube-proxy syncs its chains with
//! `iptables-restore --noflush` at any moment, and a whole-table restore of an older dump would
//! undo its work. [`docker_rules_restore`] therefore only redeclares (flushes and refills)
//! Docker's two chains and deletes or inserts the individual jump rules that differ.

use super::{DOCKER_EMBEDDED_DNS, DOCKER_OUTPUT_CHAIN, jumps_to, split_line_ending};

/// The chain Docker jumps to from nat POSTROUTING for the resolver's replies.
pub(crate) const DOCKER_POSTROUTING_CHAIN: &str = "DOCKER_POSTROUTING";

/// The built-in nat chains that may hold a jump into Docker's chains.
const JUMP_CHAINS: [&str; 3] = ["PREROUTING", "OUTPUT", "POSTROUTING"];

/// What one nat rule is to Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// A rule inside `DOCKER_OUTPUT`/`DOCKER_POSTROUTING`.
    Content,
    /// `OUTPUT … -j DOCKER_OUTPUT` or `POSTROUTING … -j DOCKER_POSTROUTING`, as Docker makes them.
    DockerJump,
    /// `PREROUTING … -j DOCKER_OUTPUT`: the magic's copy, never Docker's.
    MagicJump,
    /// Someone else's rule.
    Other,
}

fn owner(chain: &str, rule: &str) -> Owner {
    match chain {
        DOCKER_OUTPUT_CHAIN | DOCKER_POSTROUTING_CHAIN => Owner::Content,
        "OUTPUT" if jumps_to(rule, DOCKER_OUTPUT_CHAIN) => Owner::DockerJump,
        "POSTROUTING" if jumps_to(rule, DOCKER_POSTROUTING_CHAIN) => Owner::DockerJump,
        "PREROUTING" if jumps_to(rule, DOCKER_OUTPUT_CHAIN) => Owner::MagicJump,
        _ => Owner::Other,
    }
}

/// The chain of an `-A CHAIN …` line.
fn rule_chain(body: &str) -> Option<&str> {
    body.strip_prefix("-A ")?.split(' ').next()
}

/// Undoes [`super::transform`] on an `iptables-save` dump (any tables; only the nat table's
/// Docker rules change). Everything else passes through byte for byte. For a dump of Docker's
/// rules `d` (with their `--dport 53`), `inverse_transform(&transform(d, ip)) == d`, and the
/// result is a fixed point: applying it twice changes nothing more.
pub fn inverse_transform(save: &str) -> String {
    let mut out = String::with_capacity(save.len());
    let mut in_nat = false;
    for line in save.split_inclusive('\n') {
        let (body, ending) = split_line_ending(line);
        if let Some(table) = body.strip_prefix('*') {
            in_nat = table == "nat";
        }
        let Some(chain) = rule_chain(body).filter(|_| in_nat) else {
            out.push_str(line);
            continue;
        };
        match owner(chain, body) {
            Owner::MagicJump => {}
            Owner::Content | Owner::DockerJump => {
                out.push_str(&docker_form(body));
                out.push_str(ending);
            }
            Owner::Other => out.push_str(line),
        }
    }
    out
}

/// One of Docker's rules with the resolver's address and `:53` put back.
fn docker_form(rule: &str) -> String {
    let mut words: Vec<String> = rule.split(' ').map(str::to_string).collect();
    for i in 1..words.len() {
        if words[i - 1] == "-d" {
            // Keep the prefix length as written (`/32`).
            let suffix = words[i]
                .find('/')
                .map_or(String::new(), |p| words[i][p..].to_string());
            words[i] = format!("{DOCKER_EMBEDDED_DNS}{suffix}");
        } else if words[i - 1] == "--to-source" && words[i].ends_with(":53") {
            words[i] = ":53".to_string();
        }
    }
    words.join(" ")
}

/// Docker's rules in a nat dump: the contents of its two chains (in order, per chain) and the
/// jumps into them with their 1-based position in their built-in chain.
#[derive(Debug, Default, PartialEq, Eq)]
struct DockerRules {
    output: Vec<String>,
    postrouting: Vec<String>,
    /// (chain, position in that chain, rule text after `-A CHAIN `)
    jumps: Vec<(String, usize, String)>,
    /// Whether each of Docker's chains is declared.
    declared: (bool, bool),
}

fn docker_rules(nat_save: &str) -> DockerRules {
    let mut rules = DockerRules::default();
    let mut in_nat = false;
    let mut positions: Vec<(String, usize)> = Vec::new();
    for line in nat_save.lines() {
        let body = line.trim_end_matches('\r');
        if let Some(table) = body.strip_prefix('*') {
            in_nat = table == "nat";
            continue;
        }
        if !in_nat {
            continue;
        }
        if body.starts_with(&format!(":{DOCKER_OUTPUT_CHAIN} ")) {
            rules.declared.0 = true;
        } else if body.starts_with(&format!(":{DOCKER_POSTROUTING_CHAIN} ")) {
            rules.declared.1 = true;
        }
        let Some(chain) = rule_chain(body) else {
            continue;
        };
        let position = match positions.iter_mut().find(|(c, _)| c == chain) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                positions.push((chain.to_string(), 1));
                1
            }
        };
        let spec = body[3 + chain.len()..].trim_start().to_string();
        match (owner(chain, body), chain) {
            (Owner::Content, DOCKER_OUTPUT_CHAIN) => rules.output.push(spec),
            (Owner::Content, _) => rules.postrouting.push(spec),
            (Owner::DockerJump | Owner::MagicJump, _) => {
                rules.jumps.push((chain.to_string(), position, spec))
            }
            (Owner::Other, _) => {}
        }
    }
    rules
}

/// The `iptables-restore --noflush` input (nat table only) that turns Docker's DNS rules in
/// `current` into those in `target` — both `iptables-save -t nat` dumps, `target` usually
/// [`super::transform`] or [`inverse_transform`] of `current` — and touches no other rule:
///
/// - a Docker chain whose contents differ is redeclared (which flushes it) and refilled;
/// - a jump that differs is deleted by its rule text, and its replacement inserted at the same
///   position of the same chain, so the order against kube-proxy's jumps stays as it was;
///   a jump with no counterpart is deleted, or appended.
///
/// `None` when the two already agree.
pub fn docker_rules_restore(current: &str, target: &str) -> Option<String> {
    let now = docker_rules(current);
    let want = docker_rules(target);
    if now == want {
        return None;
    }
    let mut out = String::from("*nat\n");
    let chains = [
        (
            DOCKER_OUTPUT_CHAIN,
            &now.output,
            &want.output,
            now.declared.0,
        ),
        (
            DOCKER_POSTROUTING_CHAIN,
            &now.postrouting,
            &want.postrouting,
            now.declared.1,
        ),
    ];
    // Declarations first (each flushes its chain), then the contents: the legacy restore
    // wants every chain declared before the rules of the table.
    let refill: Vec<_> = chains
        .into_iter()
        .filter(|(_, had, wanted, declared)| had != wanted || (!declared && !wanted.is_empty()))
        .collect();
    for (chain, ..) in &refill {
        out.push_str(&format!(":{chain} - [0:0]\n"));
    }
    for (chain, _, wanted, _) in &refill {
        for spec in wanted.iter() {
            out.push_str(&format!("-A {chain} {spec}\n"));
        }
    }
    for chain in JUMP_CHAINS {
        let had: Vec<&(String, usize, String)> =
            now.jumps.iter().filter(|(c, _, _)| c == chain).collect();
        let wanted: Vec<&String> = want
            .jumps
            .iter()
            .filter(|(c, _, _)| c == chain)
            .map(|(_, _, spec)| spec)
            .collect();
        let removed: Vec<&(String, usize, String)> = had
            .iter()
            .copied()
            .filter(|(_, _, spec)| !wanted.contains(&spec))
            .collect();
        let added: Vec<&String> = wanted
            .iter()
            .copied()
            .filter(|spec| !had.iter().any(|(_, _, s)| s == *spec))
            .collect();
        // Replace in place pairwise: delete, then insert at the freed position; positions of
        // later pairs do not move.
        for (old, new) in removed.iter().zip(added.iter()) {
            out.push_str(&format!("-D {chain} {}\n", old.2));
            out.push_str(&format!("-I {chain} {} {new}\n", old.1));
        }
        for old in removed.iter().skip(added.len()) {
            out.push_str(&format!("-D {chain} {}\n", old.2));
        }
        for new in added.iter().skip(removed.len()) {
            out.push_str(&format!("-A {chain} {new}\n"));
        }
    }
    out.push_str("COMMIT\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A OUTPUT -d 172.18.0.1/32 -j ACCEPT
-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:37619
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:58226
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 37619 -j SNAT --to-source :53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 58226 -j SNAT --to-source :53
COMMIT
";

    /// The same table after the magic and a save by the kernel (built-in chains first).
    const MAGIC: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A OUTPUT -d 172.18.0.1/32 -j ACCEPT
-A POSTROUTING -d 172.18.0.1/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 172.18.0.1/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:37619
-A DOCKER_OUTPUT -d 172.18.0.1/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:58226
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 37619 -j SNAT --to-source 172.18.0.1:53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 58226 -j SNAT --to-source 172.18.0.1:53
COMMIT
";

    #[test]
    fn inverse_of_a_resaved_magic_table_is_dockers_and_leaves_others_alone() {
        // The ACCEPT to 172.18.0.1 is not Docker's: it keeps the host IP.
        assert_eq!(inverse_transform(MAGIC), DOCKER);
        assert_eq!(inverse_transform(DOCKER), DOCKER, "a fixed point");
    }

    #[test]
    fn inverse_only_touches_the_nat_table() {
        let filter = "*filter\n:OUTPUT ACCEPT [0:0]\n:DOCKER_OUTPUT - [0:0]\n-A DOCKER_OUTPUT -d 172.18.0.1/32 -j ACCEPT\n-A PREROUTING -d 10.0.0.1/32 -j DOCKER_OUTPUT\nCOMMIT\n";
        assert_eq!(inverse_transform(filter), filter);
        // A last line without its newline stays without one.
        let tail = "*nat\n-A OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT";
        assert_eq!(
            inverse_transform(tail),
            "*nat\n-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT"
        );
    }

    #[test]
    fn switching_off_replaces_jumps_in_place_and_refills_dockers_chains() {
        let input = docker_rules_restore(MAGIC, &inverse_transform(MAGIC)).unwrap();
        assert_eq!(
            input,
            "*nat
:DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:37619
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:58226
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 37619 -j SNAT --to-source :53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 58226 -j SNAT --to-source :53
-D PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT
-D OUTPUT -d 172.18.0.1/32 -j DOCKER_OUTPUT
-I OUTPUT 2 -d 127.0.0.11/32 -j DOCKER_OUTPUT
-D POSTROUTING -d 172.18.0.1/32 -j DOCKER_POSTROUTING
-I POSTROUTING 1 -d 127.0.0.11/32 -j DOCKER_POSTROUTING
COMMIT
"
        );
    }

    #[test]
    fn switching_on_appends_the_prerouting_jump() {
        let ip = "172.18.0.1".parse().unwrap();
        let input = docker_rules_restore(DOCKER, &super::super::transform(DOCKER, ip)).unwrap();
        assert!(
            input.contains("-D OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n-I OUTPUT 2 -d 172.18.0.1/32 -j DOCKER_OUTPUT\n"),
            "{input}"
        );
        assert!(
            input.contains("-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT\n"),
            "{input}"
        );
        assert!(!input.contains("KUBE-SERVICES"), "{input}");
        assert!(!input.contains("ACCEPT"), "{input}");
    }

    #[test]
    fn nothing_to_do_when_the_rules_agree() {
        assert_eq!(docker_rules_restore(DOCKER, DOCKER), None);
        assert_eq!(docker_rules_restore(MAGIC, MAGIC), None);
        // Other rules differing is not our business.
        let other = DOCKER.replace("-j ACCEPT", "-j RETURN");
        assert_eq!(docker_rules_restore(DOCKER, &other), None);
    }

    #[test]
    fn a_missing_docker_chain_is_declared() {
        let bare = "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let input = docker_rules_restore(bare, DOCKER).unwrap();
        assert!(input.starts_with(
            "*nat\n:DOCKER_OUTPUT - [0:0]\n:DOCKER_POSTROUTING - [0:0]\n-A DOCKER_OUTPUT"
        ));
        assert!(input.contains("-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT\n"));
    }
}
