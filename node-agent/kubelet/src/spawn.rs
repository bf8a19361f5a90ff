//! Starting a process inside a pod: the pod's network namespace is entered with `setns` on the
//! forked child, and the child gets its own UTS namespace carrying the pod's hostname and its
//! own mount namespace where the pod's files (`/etc/resolv.conf`, `/etc/hosts`, volumes) are
//! bind-mounted over the node's filesystem, which is the containers' root filesystem.
//!
//! A real runtime keeps the UTS and mount namespaces in a pause container that every
//! container joins. minikind makes them afresh, identically, for every process of a pod
//! (container, exec, probe): the hostname and the mounted files are the same, and only the
//! network namespace has to outlive the processes (it is pinned under `/run/netns`), so a
//! restarted kubelet finds everything it needs there.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::Signal;

/// The default `PATH` of a container whose spec sets none (the one container images carry).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A file or directory of the pod mounted over a path of the node's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The namespaces and files every process of one pod shares.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    /// The pinned network namespace (`/run/netns/<name>`); None = the node's (hostNetwork).
    pub netns: Option<PathBuf>,
    /// The pod's hostname; None = the node's UTS namespace (hostNetwork).
    pub hostname: Option<String>,
    /// Mounted in this order, so a later mount may sit inside an earlier one.
    pub mounts: Vec<BindMount>,
}

/// One process to start in a pod.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// An absolute path (see [`look_path`]).
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
}

/// Finds `program` the way `execvp` would in the container: as given when it holds a `/`,
/// else in each directory of `path`. Returns None when nothing executable is there.
pub fn look_path(program: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// Makes sure each mount target exists on the node (an empty file for a file source, a
/// directory otherwise), as a runtime creates mount points in a container's root filesystem;
/// here that filesystem is the node's, so the empty mount points stay behind, unused.
pub fn ensure_mount_points(mounts: &[BindMount]) -> Result<()> {
    for m in mounts {
        if m.target.exists() || m.target.is_symlink() {
            continue;
        }
        let source_is_dir = m.source.is_dir();
        let dir = if source_is_dir {
            m.target.as_path()
        } else {
            m.target.parent().unwrap_or(Path::new("/"))
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the mount point {}", dir.display()))?;
        if !source_is_dir {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&m.target)
                .with_context(|| format!("creating the mount point {}", m.target.display()))?;
        }
    }
    Ok(())
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("path {} holds a NUL byte", p.display()))
}

/// Everything the forked child needs, prepared before the fork: between `fork` and `exec`
/// of a multi-threaded process only system calls are safe, no allocation.
struct ChildSetup {
    netns: Option<File>,
    hostname: Option<OsString>,
    mounts: Vec<(CString, CString, bool)>,
    working_dir: Option<CString>,
}

impl ChildSetup {
    /// Runs in the child after `fork`.
    fn apply(&self) -> std::io::Result<()> {
        // Die with the kubelet rather than linger unsupervised.
        nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
        if let Some(fd) = &self.netns {
            setns(fd, CloneFlags::CLONE_NEWNET)?;
        }
        let mut flags = CloneFlags::CLONE_NEWNS;
        if self.hostname.is_some() {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        unshare(flags)?;
        if let Some(h) = &self.hostname {
            nix::unistd::sethostname(h)?;
        }
        // Our mounts must not propagate back to the node.
        mount(
            None::<&CStr>,
            c"/",
            None::<&CStr>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&CStr>,
        )?;
        for (source, target, read_only) in &self.mounts {
            mount(
                Some(source.as_c_str()),
                target.as_c_str(),
                None::<&CStr>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&CStr>,
            )?;
            if *read_only {
                mount(
                    None::<&CStr>,
                    target.as_c_str(),
                    None::<&CStr>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&CStr>,
                )?;
            }
        }
        if let Some(dir) = &self.working_dir {
            nix::unistd::chdir(dir.as_c_str())?;
        }
        Ok(())
    }
}

use std::ffi::CStr;

/// A command that starts `spec` inside the pod described by `ctx`, in a process group of its
/// own (so the whole container can be signalled). Standard streams are the caller's to set.
pub fn command(ctx: &PodContext, spec: &ProcessSpec) -> Result<tokio::process::Command> {
    build(ctx, spec, None)
}

/// Like [`command`], with the terminal `slave` as standard streams and controlling terminal
/// of a new session (whose process group is the process's ID, so it can be signalled too).
pub fn command_on_terminal(
    ctx: &PodContext,
    spec: &ProcessSpec,
    slave: std::os::fd::OwnedFd,
) -> Result<tokio::process::Command> {
    build(ctx, spec, Some(slave))
}

fn build(
    ctx: &PodContext,
    spec: &ProcessSpec,
    terminal: Option<std::os::fd::OwnedFd>,
) -> Result<tokio::process::Command> {
    let netns = match &ctx.netns {
        Some(p) => Some(
            File::open(p)
                .with_context(|| format!("opening the pod's network namespace {}", p.display()))?,
        ),
        None => None,
    };
    let mut mounts = Vec::with_capacity(ctx.mounts.len());
    for m in &ctx.mounts {
        mounts.push((cstring(&m.source)?, cstring(&m.target)?, m.read_only));
    }
    let working_dir = spec.working_dir.as_deref().map(cstring).transpose()?;
    if let Some(h) = &ctx.hostname
        && (h.is_empty() || h.len() > 64)
    {
        bail!("pod hostname {h:?} must be 1 to 64 characters");
    }
    let setup = ChildSetup {
        netns,
        hostname: ctx.hostname.clone().map(OsString::from),
        mounts,
        working_dir,
    };
    let mut cmd = tokio::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    let on_terminal = terminal.is_some();
    match terminal {
        Some(slave) => {
            let dup = |fd: &std::os::fd::OwnedFd| {
                fd.try_clone()
                    .context("duplicating the terminal descriptor")
            };
            cmd.stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
        }
        None => {
            cmd.stdin(Stdio::null()).process_group(0);
        }
    }
    // SAFETY: `apply` and `make_controlling_terminal` only make system calls on values
    // prepared above.
    unsafe {
        cmd.pre_exec(move || {
            setup.apply()?;
            if on_terminal {
                super::pty::make_controlling_terminal()?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_searches_like_execvp() {
        let sh = look_path("sh", DEFAULT_PATH).expect("sh is on the default PATH");
        assert!(sh.is_absolute());
        assert_eq!(look_path(sh.to_str().unwrap(), ""), Some(sh));
        assert_eq!(look_path("no-such-program-here", DEFAULT_PATH), None);
        assert_eq!(look_path("", DEFAULT_PATH), None);
        // A directory is not a program.
        assert_eq!(look_path("/tmp", DEFAULT_PATH), None);
    }

    #[test]
    fn mount_points_are_made_for_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let src_file = dir.path().join("hosts");
        std::fs::write(&src_file, "x").unwrap();
        let src_dir = dir.path().join("vol");
        std::fs::create_dir(&src_dir).unwrap();
        let mounts = vec![
            BindMount {
                source: src_file,
                target: dir.path().join("a/b/hosts"),
                read_only: false,
            },
            BindMount {
                source: src_dir,
                target: dir.path().join("c/d"),
                read_only: true,
            },
        ];
        ensure_mount_points(&mounts).unwrap();
        assert!(dir.path().join("a/b/hosts").is_file());
        assert!(dir.path().join("c/d").is_dir());
    }
}
