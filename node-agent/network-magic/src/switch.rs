//! Switching the magic on a running node (`minikind dns magic on|off`): the same rules and
//! resolv.conf as at boot, or Docker's own back, changed while kube-proxy and the pods keep
//! running. Only Docker's DNS rules are restored (see [`super::inverse::docker_rules_restore`]);
//! the sysctls are left as they are (turning `route_localnet` off would not undo anything the
//! magic needs undone).

use std::fmt;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Context;

use super::inverse::{docker_rules_restore, inverse_transform};
use super::{MagicOptions, detect_host_ip, patch_resolv_conf, restore_transformed, transform};
use minikind_resolv_conf as resolv_conf;

/// Where the node remembers a live switch until its next boot (tmpfs `/run`: a restart goes
/// back to the cluster config). The builtin resolver's supervisor reads it to know whether to
/// re-apply the magic after the resolver restarted and rebuilt Docker's rules.
pub const LIVE_STATE_PATH: &str = "/run/minikind/network-magic";

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchReport {
    pub on: bool,
    /// The host IP the rules now use (switching on only).
    pub host_ip: Option<Ipv4Addr>,
    pub rules_changed: bool,
    pub resolv_conf_changed: bool,
    /// Switching off without a kept `<resolv.conf>.original`: the file was left alone.
    pub no_original: bool,
}

impl fmt::Display for SwitchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.rules_changed && !self.resolv_conf_changed {
            return write!(
                f,
                "network magic already {}{}",
                if self.on { "on" } else { "off" },
                self.host_ip
                    .map_or(String::new(), |ip| format!(" (host IP {ip})"))
            );
        }
        if self.on {
            write!(
                f,
                "network magic on: host IP {}; Docker's DNS rules {}; resolv.conf {}",
                self.host_ip.map_or("?".to_string(), |ip| ip.to_string()),
                if self.rules_changed {
                    "rewritten"
                } else {
                    "already rewritten"
                },
                if self.resolv_conf_changed {
                    "rewritten"
                } else {
                    "unchanged"
                }
            )
        } else {
            write!(
                f,
                "network magic off: Docker's DNS rules {}; resolv.conf {}",
                if self.rules_changed {
                    "restored"
                } else {
                    "already Docker's"
                },
                if self.resolv_conf_changed {
                    "restored from the kept original"
                } else if self.no_original {
                    "left alone (no original kept)"
                } else {
                    "already the original"
                }
            )
        }
    }
}

/// Turns the magic on or off on this node, live. Idempotent: switching to the state a node is
/// in changes nothing (and runs no restore).
pub fn switch(opts: &MagicOptions, on: bool) -> anyhow::Result<SwitchReport> {
    let mut report = SwitchReport {
        on,
        host_ip: None,
        rules_changed: false,
        resolv_conf_changed: false,
        no_original: false,
    };
    if on {
        super::write_sysctl(&opts.proc_sys, "net/ipv4/ip_forward", "1")?;
        super::write_sysctl(&opts.proc_sys, "net/ipv4/conf/all/route_localnet", "1")?;
        let (host_ip, _) = detect_host_ip(opts)?;
        report.host_ip = Some(host_ip);
        let save = minikind_iptables::save(&opts.iptables.save, &["-t", "nat"])?;
        report.rules_changed = restore_docker_rules(opts, &save, &transform(&save, host_ip))?;
        let (changed, _) = patch_resolv_conf(opts, host_ip)?;
        report.resolv_conf_changed = changed;
    } else {
        let save = minikind_iptables::save(&opts.iptables.save, &["-t", "nat"])?;
        report.rules_changed = restore_docker_rules(opts, &save, &inverse_transform(&save))?;
        match restore_resolv_conf(opts)? {
            Some(changed) => report.resolv_conf_changed = changed,
            None => report.no_original = true,
        }
    }
    Ok(report)
}

/// Applies the narrow restore; false when there was nothing to change.
fn restore_docker_rules(opts: &MagicOptions, current: &str, target: &str) -> anyhow::Result<bool> {
    match docker_rules_restore(current, target) {
        Some(input) => {
            restore_transformed(&opts.iptables.restore, &["-w", "--noflush"], &input)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Writes the kept original back in place. `None` when no original was kept (the magic never
/// ran here), `Some(changed)` otherwise.
fn restore_resolv_conf(opts: &MagicOptions) -> anyhow::Result<Option<bool>> {
    let original_path = opts.original_path();
    let original = match std::fs::read_to_string(&original_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("reading {}", original_path.display()));
        }
    };
    let current = std::fs::read_to_string(&opts.resolv_conf_path)
        .with_context(|| format!("reading {}", opts.resolv_conf_path.display()))?;
    if current == original {
        return Ok(Some(false));
    }
    resolv_conf::write_in_place(&opts.resolv_conf_path, &original)?;
    Ok(Some(true))
}

/// The live switch recorded at `path`, if any (`on`/`off`).
pub fn live_state(path: &Path) -> Option<bool> {
    match std::fs::read_to_string(path).ok()?.trim() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// Records a live switch at `path` (creating its directory).
pub fn record_live_state(path: &Path, on: bool) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, if on { "on\n" } else { "off\n" })
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_state_round_trips_and_ignores_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/network-magic");
        assert_eq!(live_state(&path), None);
        record_live_state(&path, false).unwrap();
        assert_eq!(live_state(&path), Some(false));
        record_live_state(&path, true).unwrap();
        assert_eq!(live_state(&path), Some(true));
        std::fs::write(&path, "maybe").unwrap();
        assert_eq!(live_state(&path), None);
    }

    #[test]
    fn reports_say_what_changed() {
        let off = SwitchReport {
            on: false,
            host_ip: None,
            rules_changed: true,
            resolv_conf_changed: true,
            no_original: false,
        };
        assert_eq!(
            off.to_string(),
            "network magic off: Docker's DNS rules restored; resolv.conf restored from the kept original"
        );
        let again = SwitchReport {
            rules_changed: false,
            resolv_conf_changed: false,
            ..off
        };
        assert_eq!(again.to_string(), "network magic already off");
        let on = SwitchReport {
            on: true,
            host_ip: Some(Ipv4Addr::new(172, 18, 0, 1)),
            rules_changed: true,
            resolv_conf_changed: false,
            no_original: false,
        };
        assert_eq!(
            on.to_string(),
            "network magic on: host IP 172.18.0.1; Docker's DNS rules rewritten; resolv.conf unchanged"
        );
    }
}
