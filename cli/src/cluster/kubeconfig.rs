//! The cluster's kubeconfig on the host: fetched from the control-plane node, pointed at an
//! address this host reaches, and merged into `$KUBECONFIG` / `~/.kube/config` as
//! `minikind-<cluster>` — never touching any other entry; `delete` removes exactly those.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use minikind_apiserver::kubeconfig as kc;

/// The file `create` merges into and `delete` cleans: the first path of `$KUBECONFIG`, else
/// `~/.kube/config`.
pub fn user_kubeconfig_path() -> Result<PathBuf> {
    kc::default_path().context("neither $KUBECONFIG nor $HOME is set: cannot place the kubeconfig")
}

/// Merges the cluster's entries (renamed `minikind-<cluster>`, server rewritten) into the
/// user's kubeconfig and makes its context current. Returns the file written.
pub fn export(cluster: &str, admin_conf: &str, server: &str) -> Result<PathBuf> {
    export_to(None, cluster, admin_conf, server)
}

/// [`export`] into `file` when given (`export kubeconfig --kubeconfig FILE`).
pub fn export_to(
    file: Option<PathBuf>,
    cluster: &str,
    admin_conf: &str,
    server: &str,
) -> Result<PathBuf> {
    let name = kc::entry_name(cluster);
    let doc = kc::rewrite_server(&kc::rename(admin_conf, &name)?, server)?;
    let path = match file {
        Some(f) => f,
        None => user_kubeconfig_path()?,
    };
    edit_locked(&path, |existing| kc::merge(existing, &doc, &name, true))?;
    Ok(path)
}

/// Removes the cluster's entries from the user's kubeconfig (nothing else); a missing file or
/// missing entries are fine.
pub fn unexport(cluster: &str) -> Result<()> {
    let path = user_kubeconfig_path()?;
    if !path.exists() {
        return Ok(());
    }
    let name = kc::entry_name(cluster);
    edit_locked(&path, |existing| {
        if existing.contains(&name) {
            kc::remove(existing, &name)
        } else {
            Ok(existing.to_string())
        }
    })
}

/// The cluster's kubeconfig as `create` exported it, for `get kubeconfig`.
pub fn entries_for(cluster: &str, admin_conf: &str, server: &str) -> Result<String> {
    let name = kc::entry_name(cluster);
    kc::rewrite_server(&kc::rename(admin_conf, &name)?, server)
}

/// Read-modify-write under `<path>.lock` (the lock file kubectl and client-go use), writing
/// through a temporary file so a crash never leaves a half-written kubeconfig.
fn edit_locked(path: &Path, edit: impl FnOnce(&str) -> Result<String>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let lock = path.with_extension(match path.extension() {
        Some(e) => format!("{}.lock", e.to_string_lossy()),
        None => "lock".to_string(),
    });
    let started = Instant::now();
    loop {
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if started.elapsed() > Duration::from_secs(10) {
                    bail!(
                        "{} is locked by {} for over 10s; if no kubectl or minikind is running, remove the lock file",
                        path.display(),
                        lock.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }
    let result = (|| {
        let existing = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let updated = edit(&existing).with_context(|| format!("updating {}", path.display()))?;
        let tmp = path.with_extension("minikind-tmp");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode_0600()
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(updated.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    })();
    let _ = std::fs::remove_file(&lock);
    result
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    /// Kubeconfigs hold credentials: readable by their owner only, as kubectl writes them.
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_locked_and_keep_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: https://other:6443}\nusers: []\ncontexts: []\ncurrent-context: ''\n").unwrap();
        let admin = kc::build("minikind", "https://lab-control-plane:6443", "CA", "tok");
        let name = kc::entry_name("lab");
        let doc = kc::rewrite_server(
            &kc::rename(&admin, &name).unwrap(),
            "https://127.0.0.1:4444",
        )
        .unwrap();
        edit_locked(&path, |e| kc::merge(e, &doc, &name, true)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("name: other") && text.contains("minikind-lab"),
            "{text}"
        );
        assert!(text.contains("https://127.0.0.1:4444"), "{text}");
        assert!(!path.with_extension("lock").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        edit_locked(&path, |e| kc::remove(e, &name)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("name: other") && !text.contains("minikind-lab"),
            "{text}"
        );
    }

    #[test]
    fn a_held_lock_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let lock = dir.path().join("config.lock");
        std::fs::write(&lock, "").unwrap();
        let l2 = lock.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            std::fs::remove_file(l2).unwrap();
        });
        edit_locked(&path, |_| Ok("x: 1\n".into())).unwrap();
        t.join().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x: 1\n");
    }
}
