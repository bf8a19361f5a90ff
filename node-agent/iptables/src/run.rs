//! Running the iptables programs. All of them go through [`output`] here, so a missing
//! program, a failure and its stderr are reported the same way whoever ran them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::Flavour;

/// The iptables programs a component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commands {
    pub iptables: PathBuf,
    pub save: PathBuf,
    pub restore: PathBuf,
}

impl Default for Commands {
    /// `/usr/sbin/iptables{,-save,-restore}`: on a node they are symlinked at boot to the
    /// flavour KIND's rule picked (see [`crate::select`]).
    fn default() -> Self {
        Self::in_dir(Path::new("/usr/sbin"), None)
    }
}

impl Commands {
    /// The programs looked up on `PATH`: `iptables{,-save,-restore}` for `None` (whatever the
    /// `iptables` alternative points at), `iptables-<flavour>{,-save,-restore}` otherwise.
    pub fn on_path(flavour: Option<Flavour>) -> Self {
        Self::named(PathBuf::new(), flavour)
    }

    /// The programs of a flavour (or the plain names for `None`) in one directory.
    pub fn in_dir(dir: &Path, flavour: Option<Flavour>) -> Self {
        Self::named(dir.to_path_buf(), flavour)
    }

    fn named(dir: PathBuf, flavour: Option<Flavour>) -> Self {
        let infix = flavour.map_or(String::new(), |f| format!("-{f}"));
        Self {
            iptables: dir.join(format!("iptables{infix}")),
            save: dir.join(format!("iptables{infix}-save")),
            restore: dir.join(format!("iptables{infix}-restore")),
        }
    }
}

/// Why an iptables program did not do its job.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The program and its arguments.
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{program} rejected {what} ({status}): {stderr}")]
    Rejected {
        program: String,
        what: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("writing {what} to {program}: {source}")]
    Write {
        program: String,
        what: String,
        source: std::io::Error,
    },
    #[error("{program} printed non-UTF-8 text")]
    NotUtf8 { program: String },
}

/// `iptables-save [args]`: the dump it prints.
pub fn save(program: &Path, args: &[&str]) -> Result<String, RunError> {
    output(program, args)
}

/// `iptables [args]` for a listing (`-S`): what it prints, in save syntax.
pub fn list(program: &Path, args: &[&str]) -> Result<String, RunError> {
    output(program, args)
}

fn output(program: &Path, args: &[&str]) -> Result<String, RunError> {
    let shown = program.display().to_string();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunError::Spawn {
            program: shown.clone(),
            source,
        })?;
    if !out.status.success() {
        let command = std::iter::once(shown.as_str())
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        return Err(RunError::Failed {
            command,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| RunError::NotUtf8 { program: shown })
}

/// The flavour an `iptables` program is, from its `--version` (`iptables v1.8.9 (nf_tables)`
/// is nft); only the text counts, as kube-proxy reads it, not the exit status.
pub fn flavour_of(iptables: &Path) -> Result<Flavour, RunError> {
    let out = Command::new(iptables)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| RunError::Spawn {
            program: format!("{} --version", iptables.display()),
            source,
        })?;
    Ok(
        if String::from_utf8_lossy(&out.stdout).contains("nf_tables") {
            Flavour::Nft
        } else {
            Flavour::Legacy
        },
    )
}

/// `iptables-restore [args]` fed `input`; `what` names the input in errors ("the service
/// rules"). A write error only counts when the program itself succeeded: a program that
/// rejects its input may close stdin early, and its own message says more.
pub fn restore(program: &Path, args: &[&str], input: &str, what: &str) -> Result<(), RunError> {
    let shown = program.display().to_string();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: shown.clone(),
            source,
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = stdin.write_all(input.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|source| RunError::Spawn {
        program: shown.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(RunError::Rejected {
            program: shown,
            what: what.to_string(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    written.map_err(|source| RunError::Write {
        program: shown,
        what: what.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_per_flavour() {
        let nft = Commands::on_path(Some(Flavour::Nft));
        assert_eq!(nft.save, PathBuf::from("iptables-nft-save"));
        assert_eq!(
            Commands::on_path(None).restore,
            PathBuf::from("iptables-restore")
        );
        assert_eq!(
            Commands::default().iptables,
            PathBuf::from("/usr/sbin/iptables")
        );
        assert_eq!(
            Commands::in_dir(Path::new("/usr/sbin"), Some(Flavour::Legacy)).restore,
            PathBuf::from("/usr/sbin/iptables-legacy-restore")
        );
    }
}
