//! One sync of the node's service rules: render, plan (full or partial), ensure the jumps,
//! restore with `iptables-restore --noflush`. Blocking (it runs the iptables commands); the
//! watch loop calls it on a blocking thread.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;

use minikind_iptables::Commands;

use super::jumps;
use super::partial_sync::{self, ChainHashes};
use crate::service_rules::{self, ChainOrder, ProxyConfig, Rendered, ServicePort};

/// What one sync did, for the log line and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub full: bool,
    /// False when the rules were already as rendered (nothing was run).
    pub restored: bool,
    pub service_ports: usize,
    pub endpoints: usize,
    /// Rule counts of the complete rule set (as a full sync writes it).
    pub filter_rules: usize,
    pub nat_rules: usize,
    pub nat_chains: usize,
    /// Rule lines actually sent to iptables-restore.
    pub rules_written: usize,
    pub chains_written: usize,
    pub chains_skipped: usize,
    pub chains_removed: usize,
    pub bytes_written: usize,
    /// Reading the existing chains and checking the jumps.
    pub setup_time: Duration,
    pub render_time: Duration,
    /// Choosing the chains to write (partial syncs) and hashing them.
    pub plan_time: Duration,
    pub apply_time: Duration,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sync: {} service ports, {} endpoints, {} filter + {} nat rules in {} nat chains",
            if self.full { "full" } else { "partial" },
            self.service_ports,
            self.endpoints,
            self.filter_rules,
            self.nat_rules,
            self.nat_chains,
        )?;
        if self.restored {
            write!(
                f,
                "; restored {} rules ({} service chains written, {} unchanged, {} removed)",
                self.rules_written, self.chains_written, self.chains_skipped, self.chains_removed
            )?;
        } else {
            f.write_str("; unchanged, nothing restored")?;
        }
        write!(
            f,
            "; setup {:.1} ms, render {:.1} ms, plan {:.1} ms, apply {:.1} ms",
            self.setup_time.as_secs_f64() * 1e3,
            self.render_time.as_secs_f64() * 1e3,
            self.plan_time.as_secs_f64() * 1e3,
            self.apply_time.as_secs_f64() * 1e3
        )
    }
}

/// Above this many service chains in one restore, iptables-nft gets the cache hint (see
/// [`with_nft_cache_hint`]); below it the hint's full listing costs more than it saves.
const NFT_CACHE_HINT_CHAINS: usize = 1000;

/// The state kept between syncs.
pub struct Syncer {
    commands: Commands,
    rules: ProxyConfig,
    /// Whether the commands are iptables-nft (from `iptables --version`); None until known.
    nft: Option<bool>,
    /// Read the existing chains from `iptables-save` at the next full sync: at start (chains
    /// left by an earlier run) and after a failure; otherwise the record of what this syncer
    /// wrote is used (it is the only writer of service chains on the node).
    read_existing: bool,
    /// Service chains (and their content) left by the last successful restore; None until
    /// the first one, and after a failure (the next sync is then full).
    chains: Option<ChainHashes>,
    /// Hash of the full rendered text last restored (skip identical partial syncs).
    last_full_text: Option<u64>,
}

impl Syncer {
    pub fn new(commands: Commands, rules: ProxyConfig) -> Self {
        Syncer {
            commands,
            rules,
            nft: None,
            read_existing: true,
            chains: None,
            last_full_text: None,
        }
    }

    /// Brings the kernel's rules to `ports`. A full sync (also forced when the last one
    /// failed) re-checks the jump rules and writes every chain; a partial one writes what
    /// changed since the last restore. Stale service chains are deleted in both: those this
    /// syncer wrote, and at the first sync (or after a failure) those `iptables-save` shows.
    pub fn sync(&mut self, ports: &[ServicePort], full: bool) -> anyhow::Result<SyncReport> {
        let full = full || self.chains.is_none();
        let started = Instant::now();
        let nft = match self.nft {
            Some(nft) => nft,
            None => {
                let nft = is_nft(&self.commands.iptables)?;
                self.nft = Some(nft);
                nft
            }
        };
        let nat_save = if self.chains.is_none() || self.read_existing {
            Some(self.nat_save()?)
        } else {
            None
        };
        let existing: Vec<String> = match (&self.chains, &nat_save) {
            (_, Some(save)) => minikind_iptables::dump::chains(save),
            (Some(chains), None) => chains.keys().cloned().collect(),
            (None, None) => Vec::new(),
        };
        if full {
            // kube-proxy re-ensures its jumps on full syncs only: they live in chains owned by
            // others (PREROUTING, OUTPUT, …) that a restore must not replace. A listing of
            // the built-in chains is much cheaper than ensure_jumps' command per jump.
            let repair = jumps::check(
                &self.commands.iptables,
                &self.commands.save,
                nft,
                nat_save.as_deref(),
            )
            .context("listing kube-proxy's jump rules")?;
            if !repair.missing.is_empty() {
                tracing::info!(
                    "kube-proxy: adding jump rules: {}",
                    repair.missing.join(", ")
                );
                match &repair.restore_input {
                    Some(input) => minikind_iptables::restore(
                        &self.commands.restore,
                        &["-w", "--noflush"],
                        input,
                        "kube-proxy's jump rules",
                    )
                    .context("adding kube-proxy's jump rules")?,
                    None => service_rules::ensure_jumps(&self.commands.iptables)
                        .context("ensuring kube-proxy's jump rules")?,
                }
            }
        }
        let setup_time = started.elapsed();
        let render_started = Instant::now();
        let order = if nft {
            ChainOrder::AsRendered
        } else {
            ChainOrder::Descending
        };
        let rendered = service_rules::render_ordered(ports, &self.rules, &existing, order);
        let text_hash = hash_text(&rendered.text);
        let render_time = render_started.elapsed();
        let mut report = SyncReport {
            full,
            restored: false,
            service_ports: ports.len(),
            endpoints: ports.iter().map(|p| p.endpoints.len()).sum(),
            filter_rules: rendered.filter_rules,
            nat_rules: rendered.nat_rules,
            nat_chains: rendered.nat_chains,
            setup_time,
            render_time,
            ..SyncReport::default()
        };
        if !full && self.last_full_text == Some(text_hash) {
            return Ok(report);
        }
        // Until this restore is known to have worked, the next sync must be a full one that
        // looks at the kernel's chains again.
        let previous = self.chains.take();
        self.last_full_text = None;
        self.read_existing = true;
        let with_text = |text: String| Rendered {
            text,
            filter_rules: rendered.filter_rules,
            nat_rules: rendered.nat_rules,
            nat_chains: rendered.nat_chains,
        };
        let (plan, bytes_written, apply_started) = if full {
            // The restore input is the whole text: start it at once and hash the chains (for
            // the next partial sync) while iptables-restore works.
            let hinted = (nft && rendered.nat_chains > NFT_CACHE_HINT_CHAINS)
                .then(|| with_text(with_nft_cache_hint(&rendered.text)));
            let to_restore = hinted.as_ref().unwrap_or(&rendered);
            let apply_started = Instant::now();
            let restore = &self.commands.restore;
            let (plan, restored) = std::thread::scope(|s| {
                let restoring = s.spawn(|| service_rules::restore(restore, to_restore));
                let plan_started = Instant::now();
                let plan = partial_sync::plan_full(&rendered.text);
                report.plan_time = plan_started.elapsed();
                let restored = restoring
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the restore thread panicked")));
                (plan, restored)
            });
            restored?;
            (plan, to_restore.text.len(), apply_started)
        } else {
            let plan_started = Instant::now();
            let mut plan = partial_sync::plan(&rendered.text, previous.as_ref());
            report.plan_time = plan_started.elapsed();
            let apply_started = Instant::now();
            let text = std::mem::take(&mut plan.text);
            let text = if nft && plan.written + plan.removed > NFT_CACHE_HINT_CHAINS {
                with_nft_cache_hint(&text)
            } else {
                text
            };
            let to_restore = with_text(text);
            service_rules::restore(&self.commands.restore, &to_restore)?;
            (plan, to_restore.text.len(), apply_started)
        };
        report.chains_skipped = plan.skipped;
        report.apply_time = apply_started.elapsed();
        report.restored = true;
        report.rules_written = plan.rules;
        report.chains_written = plan.written;
        report.chains_removed = plan.removed;
        report.bytes_written = bytes_written;
        self.chains = Some(plan.chains);
        self.last_full_text = Some(text_hash);
        self.read_existing = false;
        Ok(report)
    }

    /// The chains of the nat table, from `iptables-save -t nat`.
    fn nat_save(&self) -> anyhow::Result<String> {
        Ok(minikind_iptables::save(
            &self.commands.save,
            &["-t", "nat"],
        )?)
    }
}

/// Whether `iptables` is the nf_tables flavour (`iptables v1.8.9 (nf_tables)`).
fn is_nft(iptables: &std::path::Path) -> anyhow::Result<bool> {
    Ok(minikind_iptables::flavour_of(iptables)? == minikind_iptables::Flavour::Nft)
}

/// Puts a chain-less `-S` first in the nat section of a restore input.
///
/// iptables-nft-restore (1.8.x) with `--noflush` records every chain a command names in a
/// sorted linked list, so a restore that names n chains costs O(n²) string compares: 2 000
/// services × 5 endpoints (12 000 chains) take ~10 s, 10 000 services hours. A command without
/// a chain switches that bookkeeping to "all chains" for the rest of the table. `-S` is such a
/// command and is read-only (it lists the table to stdout, which the restore discards); the
/// price is one fetch of the table's rules, linear in its size.
pub fn with_nft_cache_hint(text: &str) -> String {
    text.replacen("*nat\n", "*nat\n-S\n", 1)
}

fn hash_text(text: &str) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hint_goes_first_in_the_nat_table_only() {
        let text = "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\n:KUBE-SVC-A - [0:0]\n-A KUBE-SVC-A -j RETURN\nCOMMIT\n";
        assert_eq!(
            with_nft_cache_hint(text),
            "*filter\n:KUBE-SERVICES - [0:0]\nCOMMIT\n*nat\n-S\n:KUBE-SVC-A - [0:0]\n-A KUBE-SVC-A -j RETURN\nCOMMIT\n"
        );
    }
}
