//! cluster-dns as NodeLocal DNSCache's `node-cache` (kubernetes/dns cmd/node-cache): the
//! server runs from node-cache's Corefile template, on addresses held by an interface of its
//! own, behind NOTRACK and ACCEPT rules for each address.
//!
//! The lifecycle is node-cache's (`CacheApp`): fill the template ([`template`]) into the
//! Corefile, make the interface ([`iface`]), start the server, then install the rules
//! ([`rules`]) — node-cache does it as soon as its pidfile exists, that is once the server
//! runs — and re-check the rules and the interface every `-syncinterval`, putting back what is
//! missing. The base Corefile is re-read every 10 s and the filled one rewritten when it
//! changed (the `reload` plugin picks that up). SIGTERM or SIGINT: the server stops, then the
//! rules and the interface are removed (unless `-skipteardown`). SIGKILL leaves them behind,
//! so the addresses keep swallowing queries until a new instance answers them — the real
//! add-on's failure mode, kept on purpose.

pub mod flags;
pub mod iface;
pub mod rules;
pub mod template;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use minikind_iptables::Commands;

pub use flags::NodeCacheFlags;
use rules::{Rule, Table};

use crate::run::{Instance, Options};
use crate::util::log;

/// How often node-cache re-reads its base Corefile (`DefaultConfigSyncPeriod`).
const CONFIG_SYNC: Duration = Duration::from_secs(10);

/// The environment variable the kubelet sets to a Service's ClusterIP (node-cache's
/// `toSvcEnv`): `kube-dns-upstream` → `KUBE_DNS_UPSTREAM_SERVICE_HOST`.
pub fn service_host_env(service: &str) -> String {
    format!("{}_SERVICE_HOST", service.replace('-', "_").to_uppercase())
}

/// Which tables the rules live in, in the order they are checked.
const TABLES: [Table; 2] = [Table::Raw, Table::Filter];

/// Inserts the rules missing from the kernel's tables; returns the ones added.
pub fn ensure_rules(cmds: &Commands, all: &[Rule]) -> Result<Vec<Rule>, String> {
    let mut added = Vec::new();
    for table in TABLES {
        let save = minikind_iptables::save(&cmds.save, &["-t", table.as_str()])
            .map_err(|e| e.to_string())?;
        let missing: Vec<&Rule> = all
            .iter()
            .filter(|r| r.table == table && rules::count_in(&save, r) == 0)
            .collect();
        if missing.is_empty() {
            continue;
        }
        minikind_iptables::restore(
            &cmds.restore,
            &["--noflush"],
            &rules::insert_input(table, &missing),
            "node-cache's rules",
        )
        .map_err(|e| e.to_string())?;
        added.extend(missing.into_iter().cloned());
    }
    Ok(added)
}

/// Deletes every copy of the rules (node-cache deletes until none is left).
pub fn remove_rules(cmds: &Commands, all: &[Rule]) -> Result<(), String> {
    for table in TABLES {
        let save = minikind_iptables::save(&cmds.save, &["-t", table.as_str()])
            .map_err(|e| e.to_string())?;
        if let Some(input) = rules::delete_input(table, &save, all) {
            minikind_iptables::restore(&cmds.restore, &["--noflush"], &input, "node-cache's rules")
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// One round of node-cache's `setupNetworking`: the rules, then the interface, each logged
/// as node-cache logs it. Errors are logged and the next round tries again.
pub fn setup_networking(f: &NodeCacheFlags, cmds: &Commands, all: &[Rule]) {
    if f.setup_iptables {
        match ensure_rules(cmds, all) {
            Ok(added) => {
                for r in added {
                    log(
                        "INFO",
                        "",
                        format!(
                            "Added back nodelocaldns rule - {} {} {}",
                            r.table.as_str(),
                            r.chain,
                            r.args().join(" ")
                        ),
                    );
                }
            }
            Err(e) => log(
                "ERROR",
                "",
                format!("Error checking/adding iptables rules: {e}"),
            ),
        }
    }
    if f.setup_interface {
        match iface::ensure(&f.interface_name, &f.local_ips) {
            Ok(true) => log(
                "INFO",
                "",
                format!("Added interface - {}", f.interface_name),
            ),
            Ok(false) => {}
            Err(e) => log(
                "ERROR",
                "",
                format!("Error checking interface {} - {e}", f.interface_name),
            ),
        }
    }
}

/// node-cache's `TeardownNetworking`.
pub fn teardown_networking(f: &NodeCacheFlags, cmds: &Commands, all: &[Rule]) {
    log("INFO", "", "Tearing down");
    if f.setup_iptables
        && let Err(e) = remove_rules(cmds, all)
    {
        log("ERROR", "", format!("Failed deleting iptables rules: {e}"));
    }
    if f.setup_interface
        && let Err(e) = iface::remove(&f.interface_name)
    {
        log(
            "ERROR",
            "",
            format!("Failed removing interface {}: {e}", f.interface_name),
        );
    }
}

/// Fills the base Corefile into the one the server reads; returns whether it changed.
fn write_corefile(f: &NodeCacheFlags, cluster_dns: Option<IpAddr>) -> Result<bool, String> {
    let base = std::fs::read_to_string(&f.base_corefile).map_err(|e| {
        format!(
            "reading node-cache's base Corefile {}: {e}",
            f.base_corefile.display()
        )
    })?;
    let filled = template::fill(&base, cluster_dns, &f.local_ips)
        .map_err(|e| format!("{}: {e}", f.base_corefile.display()))?;
    if std::fs::read_to_string(&f.conf).ok().as_deref() == Some(filled.as_str()) {
        return Ok(false);
    }
    write_atomically(&f.conf, &filled)?;
    Ok(true)
}

fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| format!("renaming {} to {}: {e}", tmp.display(), path.display()))
}

/// Runs node-cache until `stop` (given the running server) returns — the binary's SIGTERM or
/// SIGINT; the process's exit code.
pub async fn run<S, Fut>(f: NodeCacheFlags, cmds: Commands, stop: S) -> i32
where
    S: FnOnce(Arc<Instance>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let env = service_host_env(&f.upstream_svc);
    let cluster_dns = std::env::var(&env)
        .ok()
        .and_then(|v| v.parse::<IpAddr>().ok());
    if cluster_dns.is_none() {
        log(
            "WARNING",
            "",
            format!(
                "Unable to lookup IP address of Upstream service {}, env {env}",
                f.upstream_svc
            ),
        );
    }
    if let Err(e) = write_corefile(&f, cluster_dns) {
        log("FATAL", "", e);
        return 1;
    }
    let all = rules::rules(&f.local_ips, f.dns_port, f.health_port);
    // The interface first, the rules once the server runs (node-cache's Init, then its
    // pidfile wait).
    let only_iface = NodeCacheFlags {
        setup_iptables: false,
        ..f.clone()
    };
    setup_networking(&only_iface, &cmds, &all);
    let opts = Options {
        dns_port: f.dns_port,
        banner: !f.quiet,
        ..Default::default()
    };
    let inst = match Instance::start_file(f.conf.clone(), opts).await {
        Ok(i) => i,
        Err(e) => {
            log("FATAL", "", format!("{e:#}"));
            return 1;
        }
    };
    if let Some(p) = &f.pidfile
        && let Err(e) = std::fs::write(p, format!("{}\n", std::process::id()))
    {
        log(
            "ERROR",
            "",
            format!("writing pid file {}: {e}", p.display()),
        );
    }
    let shared = Arc::new((f.clone(), cmds.clone(), all.clone()));
    {
        let s = shared.clone();
        tokio::task::spawn_blocking(move || setup_networking(&s.0, &s.1, &s.2))
            .await
            .ok();
    }
    let periodic = {
        let s = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(s.0.sync_interval);
            tick.tick().await;
            loop {
                tick.tick().await;
                let s = s.clone();
                let _ =
                    tokio::task::spawn_blocking(move || setup_networking(&s.0, &s.1, &s.2)).await;
            }
        })
    };
    let config_sync = {
        let f = f.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CONFIG_SYNC).await;
                match write_corefile(&f, cluster_dns) {
                    Ok(true) => log(
                        "INFO",
                        "",
                        format!("Updated Corefile from {}", f.base_corefile.display()),
                    ),
                    Ok(false) => {}
                    Err(e) => log("ERROR", "", e),
                }
            }
        })
    };
    stop(inst.clone()).await;
    periodic.abort();
    config_sync.abort();
    inst.shutdown().await;
    if !f.skip_teardown {
        let _ = tokio::task::spawn_blocking(move || {
            teardown_networking(&shared.0, &shared.1, &shared.2)
        })
        .await;
    }
    0
}
