//! kube-proxy's partial syncs (`MinimizeIPTablesRestore`): between full syncs, a service's
//! chains are only written again when their content changed; the top-level chains
//! (`KUBE-SERVICES` & co.) are always written, and stale chains are always deleted.
//!
//! kube-proxy decides per changed *service*; this works per *chain* on the renderer's full
//! text, which gives the same restore input without a second rendering path: a chain whose
//! rules are byte-identical to what was last restored is left out (its declaration and its
//! rules), so a 10 000-service node restores a few lines plus `KUBE-SERVICES` instead of
//! everything.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The per-service chains are the ones partial syncs may skip.
pub use crate::service_rules::is_service_chain;

/// Content hashes of the service chains as last restored.
pub type ChainHashes = HashMap<String, u64>;

/// What to restore, and what will be true after it succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The restore input.
    pub text: String,
    /// The service chains that exist after the restore, with their content hashes.
    pub chains: ChainHashes,
    /// Service chains written (declared and filled) by `text`.
    pub written: usize,
    /// Service chains left out because they are unchanged.
    pub skipped: usize,
    /// Stale chains deleted by `text`.
    pub removed: usize,
    /// Rule lines (`-A`) in `text`.
    pub rules: usize,
}

/// Plans the restore for the renderer's full text. `previous` is what the last successful
/// restore left (None = write everything, as a full sync does).
pub fn plan(full_text: &str, previous: Option<&ChainHashes>) -> Plan {
    let (chains, removed, _) = hash_chains(full_text);
    let skip: HashSet<&str> = match previous {
        Some(prev) => chains
            .iter()
            .filter(|(name, hash)| prev.get(*name) == Some(*hash))
            .map(|(name, _)| name.as_str())
            .collect(),
        None => HashSet::new(),
    };

    // Second pass: copy everything but the unchanged chains.
    let mut text = String::with_capacity(if skip.is_empty() {
        full_text.len()
    } else {
        full_text.len() / 4
    });
    let mut rules = 0;
    let mut table = "";
    for line in full_text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
        } else if table == "nat" {
            let chain = line
                .strip_prefix(':')
                .or_else(|| line.strip_prefix("-A "))
                .and_then(|r| r.split(' ').next());
            if chain.is_some_and(|c| skip.contains(c)) {
                continue;
            }
        }
        if line.starts_with("-A ") {
            rules += 1;
        }
        text.push_str(line);
        text.push('\n');
    }
    Plan {
        text,
        written: chains.len() - skip.len(),
        skipped: skip.len(),
        removed,
        chains,
        rules,
    }
}

/// The plan of a full sync, whose restore input is `full_text` itself (left out of the
/// plan's `text`, so that the restore can start before this is computed).
pub fn plan_full(full_text: &str) -> Plan {
    let (chains, removed, rules) = hash_chains(full_text);
    Plan {
        text: String::new(),
        written: chains.len(),
        skipped: 0,
        removed,
        chains,
        rules,
    }
}

/// Hashes every service chain's rules in order; returns the chains that remain, how many
/// are deleted (`-X`) and the number of rule lines in all tables.
fn hash_chains(full_text: &str) -> (ChainHashes, usize, usize) {
    let mut hashers: HashMap<&str, DefaultHasher> = HashMap::new();
    let mut removed: HashSet<&str> = HashSet::new();
    let mut rules = 0;
    let mut table = "";
    for line in full_text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t;
            continue;
        }
        if line.starts_with("-A ") {
            rules += 1;
        }
        if table != "nat" {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split(' ').next().unwrap_or_default();
            if is_service_chain(name) {
                hashers.entry(name).or_default();
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if is_service_chain(name) {
                line.hash(hashers.entry(name).or_default());
            }
        } else if let Some(rest) = line.strip_prefix("-X ") {
            removed.insert(rest.trim());
        }
    }
    let chains: ChainHashes = hashers
        .into_iter()
        .filter(|(name, _)| !removed.contains(name))
        .map(|(name, h)| (name.to_string(), h.finish()))
        .collect();
    (chains, removed.len(), rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j REJECT\nCOMMIT\n\
        *nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-AAA - [0:0]\n:KUBE-SEP-A1 - [0:0]\n\
        :KUBE-SVC-BBB - [0:0]\n:KUBE-SEP-B1 - [0:0]\n\
        -A KUBE-SERVICES -d 10.96.0.1 -j KUBE-SVC-AAA\n-A KUBE-SVC-AAA -j KUBE-SEP-A1\n\
        -A KUBE-SEP-A1 -j DNAT --to-destination 10.244.0.1:80\n\
        -A KUBE-SERVICES -d 10.96.0.2 -j KUBE-SVC-BBB\n-A KUBE-SVC-BBB -j KUBE-SEP-B1\n\
        -A KUBE-SEP-B1 -j DNAT --to-destination 10.244.0.2:80\nCOMMIT\n";

    #[test]
    fn full_plan_writes_everything() {
        let p = plan(FIRST, None);
        assert_eq!(p.text, FIRST);
        assert_eq!((p.written, p.skipped, p.removed, p.rules), (4, 0, 0, 7));
        assert_eq!(p.chains.len(), 4);
        // The full-sync shortcut agrees, without a copy of the text.
        let f = plan_full(FIRST);
        assert_eq!(f.text, "");
        assert_eq!(
            (f.written, f.skipped, f.removed, f.rules, f.chains),
            (p.written, p.skipped, p.removed, p.rules, p.chains)
        );
    }

    #[test]
    fn unchanged_service_chains_are_left_out() {
        let first = plan(FIRST, None);
        // BBB gets a second endpoint; AAA is unchanged.
        let second_full = FIRST
            .replace(
                ":KUBE-SEP-B1 - [0:0]\n",
                ":KUBE-SEP-B1 - [0:0]\n:KUBE-SEP-B2 - [0:0]\n",
            )
            .replace(
                "-A KUBE-SVC-BBB -j KUBE-SEP-B1\n",
                "-A KUBE-SVC-BBB -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-B1\n-A KUBE-SVC-BBB -j KUBE-SEP-B2\n-A KUBE-SEP-B2 -j DNAT --to-destination 10.244.0.3:80\n",
            );
        let p = plan(&second_full, Some(&first.chains));
        assert!(!p.text.contains("KUBE-SVC-AAA - [0:0]"));
        assert!(!p.text.contains("-A KUBE-SVC-AAA"));
        assert!(!p.text.contains("-A KUBE-SEP-A1"));
        // KUBE-SERVICES is rewritten whole, including its jump to the skipped chain.
        assert!(
            p.text
                .contains("-A KUBE-SERVICES -d 10.96.0.1 -j KUBE-SVC-AAA\n")
        );
        assert!(p.text.contains(":KUBE-SVC-BBB - [0:0]\n"));
        assert!(p.text.contains("-A KUBE-SEP-B2 -j DNAT"));
        // B1's rules did not change: it is skipped too.
        assert!(!p.text.contains(":KUBE-SEP-B1"));
        assert_eq!((p.written, p.skipped), (2, 3));
        assert_eq!(p.chains.len(), 5);
        // The filter table is always written.
        assert!(
            p.text
                .contains("*filter\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j REJECT\n")
        );
    }

    #[test]
    fn stale_chains_are_deleted_and_forgotten() {
        let first = plan(FIRST, None);
        let without_b = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-AAA - [0:0]\n:KUBE-SEP-A1 - [0:0]\n\
            :KUBE-SVC-BBB - [0:0]\n:KUBE-SEP-B1 - [0:0]\n\
            -A KUBE-SERVICES -d 10.96.0.1 -j KUBE-SVC-AAA\n-A KUBE-SVC-AAA -j KUBE-SEP-A1\n\
            -A KUBE-SEP-A1 -j DNAT --to-destination 10.244.0.1:80\n\
            -X KUBE-SVC-BBB\n-X KUBE-SEP-B1\nCOMMIT\n";
        let p = plan(without_b, Some(&first.chains));
        assert_eq!(p.removed, 2);
        // A stale chain's declaration (which flushes it before -X) is always kept.
        assert!(p.text.contains(":KUBE-SVC-BBB - [0:0]\n"));
        assert!(p.text.contains("-X KUBE-SVC-BBB\n"));
        assert!(!p.chains.contains_key("KUBE-SVC-BBB"));
        assert_eq!(p.skipped, 2);
    }
}
