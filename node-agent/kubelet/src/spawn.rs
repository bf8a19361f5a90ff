//! Starting a process of a pod: a container in its own root filesystem, mount and PID
//! namespaces, joined to the pod's network, UTS and IPC namespaces (see `isolation.rs` for what
//! the child does); and `exec`/probe processes entering a running container's namespaces.
//!
//! The pod's network namespace is pinned under `/run/netns`, its UTS (hostname) and IPC
//! namespaces under the pod's directory (`sandbox.rs`), so that every container of the pod
//! joins the same ones, and a restarted kubelet finds them again.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};

use super::image_config::Identity;
use super::isolation::{self, Join, Op, Plan, Privileges};
use super::rootfs::{ContainerRoot, resolve_in_root};

/// The default `PATH` of a container whose image sets none (containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A file or directory of the pod mounted over a path inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// The namespaces and files every container of one pod shares.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    /// The pinned network namespace (`/run/netns/<name>`); None = the node's (hostNetwork).
    pub netns: Option<PathBuf>,
    /// The pinned UTS namespace carrying the pod's hostname; None = the node's (hostNetwork).
    pub uts: Option<PathBuf>,
    /// The pinned IPC namespace of the pod.
    pub ipc: Option<PathBuf>,
    /// The pod's shared PID namespace (`shareProcessNamespace`), held by its pause process;
    /// None = each container gets its own.
    pub pid: Option<PathBuf>,
    /// Mounted in this order, so a later mount may sit inside an earlier one.
    pub mounts: Vec<BindMount>,
}

/// One process to start: its command line (the program is looked up in the container's
/// `PATH` inside its root, as `execvp` does), environment, directory and privileges.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub identity: Identity,
    /// Capability bits (see `image_config::capabilities`).
    pub capabilities: u64,
    pub no_new_privs: bool,
}

/// How a new container's root is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct RootOptions {
    pub read_only: bool,
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .with_context(|| format!("path {} holds a NUL byte", p.display()))
}

fn open_ns(p: &Path, what: &str) -> Result<OwnedFd> {
    Ok(File::open(p)
        .with_context(|| format!("opening the {what} namespace {}", p.display()))?
        .into())
}

/// The highest capability number the kernel knows.
fn last_cap() -> Result<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .context("reading /proc/sys/kernel/cap_last_cap")?;
    text.trim()
        .parse()
        .with_context(|| format!("cap_last_cap {text:?}"))
}

/// Makes the mount point `target` (a path on the node inside the root) for `source`.
fn mount_point(source: &Path, target: &Path) -> Result<()> {
    if target.exists() || target.is_symlink() {
        return Ok(());
    }
    if source.is_dir() {
        return std::fs::create_dir_all(target)
            .with_context(|| format!("creating the mount point {}", target.display()));
    }
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the mount point {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .with_context(|| format!("creating the mount point {}", target.display()))?;
    Ok(())
}

/// The mount steps of a new container: its root made a mount point, the node directories
/// of a tools root, `/proc`, a minimal `/dev`, `/sys` read-only, then the pod's files and
/// volumes; every target resolved inside the root (symlinks leading out refused).
fn root_ops(root: &ContainerRoot, ctx: &PodContext) -> Result<Vec<Op>> {
    let rootfs = &root.rootfs;
    let c = |p: &Path| cstring(p);
    let bind = |source: &Path, target: &Path, recursive, read_only, extra| -> Result<Op> {
        Ok(Op::Bind {
            source: c(source)?,
            target: c(target)?,
            recursive,
            read_only,
            extra,
            optional: false,
        })
    };
    let fs = |fstype: &str, target: &Path, flags, data: &str| -> Result<Op> {
        Ok(Op::Fs {
            fstype: CString::new(fstype)?,
            target: c(target)?,
            flags,
            data: CString::new(data)?,
        })
    };
    let (nosuid, nodev, noexec) = (libc::MS_NOSUID, libc::MS_NODEV, libc::MS_NOEXEC);
    let mut ops = vec![bind(rootfs, rootfs, true, false, 0)?];
    for b in &root.node_binds {
        let target = resolve_in_root(rootfs, &b.target)?;
        mount_point(&b.source, &target)?;
        ops.push(bind(&b.source, &target, true, b.read_only, nosuid | nodev)?);
    }
    let proc_dir = resolve_in_root(rootfs, Path::new("/proc"))?;
    let dev = resolve_in_root(rootfs, Path::new("/dev"))?;
    let sys = resolve_in_root(rootfs, Path::new("/sys"))?;
    for d in [&proc_dir, &dev, &sys] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    ops.push(fs("proc", &proc_dir, nosuid | nodev | noexec, "")?);
    // The kernel-wide parts of /proc read-only, as containerd's default `readonlyPaths`
    // (`oci/spec.go`): a root process must not change the node's sysctls or trigger SysRq.
    for p in ["fs", "irq", "sys", "sysrq-trigger"] {
        let path = proc_dir.join(p);
        ops.push(Op::Bind {
            source: c(&path)?,
            target: c(&path)?,
            recursive: true,
            read_only: true,
            extra: nosuid | nodev | noexec,
            optional: true,
        });
    }
    // /dev as runc makes it: a small tmpfs with the node's harmless devices bound in.
    ops.push(fs("tmpfs", &dev, nosuid, "mode=755,size=65536k")?);
    for d in ["null", "zero", "full", "random", "urandom", "tty"] {
        let node = Path::new("/dev").join(d);
        ops.push(Op::Touch(c(&dev.join(d))?));
        ops.push(bind(&node, &dev.join(d), false, false, 0)?);
    }
    ops.push(Op::Mkdir(c(&dev.join("pts"))?));
    ops.push(fs(
        "devpts",
        &dev.join("pts"),
        nosuid | noexec,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?);
    ops.push(Op::Symlink {
        target: CString::new("pts/ptmx")?,
        link: c(&dev.join("ptmx"))?,
    });
    ops.push(Op::Mkdir(c(&dev.join("shm"))?));
    // Docker's and containerd's default /dev/shm size is 64 MiB.
    ops.push(fs(
        "tmpfs",
        &dev.join("shm"),
        nosuid | nodev | noexec,
        "mode=1777,size=65536k",
    )?);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink {
            target: CString::new(target)?,
            link: c(&dev.join(link))?,
        });
    }
    ops.push(bind(
        Path::new("/sys"),
        &sys,
        false,
        true,
        nosuid | nodev | noexec,
    )?);
    for m in &ctx.mounts {
        let target = resolve_in_root(rootfs, &m.target)
            .with_context(|| format!("mount point {}", m.target.display()))?;
        mount_point(&m.source, &target)?;
        ops.push(bind(&m.source, &target, true, m.read_only, 0)?);
    }
    Ok(ops)
}

/// A command ready to spawn, with the pipes the child reports on.
pub struct Prepared {
    pub cmd: tokio::process::Command,
    steps_r: OwnedFd,
    pid_r: OwnedFd,
    steps: Vec<String>,
    program: String,
}

/// A started process: the kubelet's child (the relay) and the process that runs the program.
pub struct Spawned {
    pub child: tokio::process::Child,
    /// The program's PID as the node sees it (the namespaces to enter for exec).
    pub pid: i32,
}

fn read_available(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

impl Prepared {
    /// Spawns the command; an error names the step that failed, as runc's messages do.
    pub fn spawn(mut self) -> Result<Spawned> {
        let result = self.cmd.spawn();
        let steps = read_available(&self.steps_r);
        let last = steps
            .chunks_exact(2)
            .last()
            .map(|b| u16::from_ne_bytes([b[0], b[1]]));
        let child = match result {
            Ok(c) => c,
            Err(e) => {
                let program = &self.program;
                let what = match last {
                    Some(isolation::STEP_EXEC) if e.kind() == std::io::ErrorKind::NotFound => {
                        if program.contains('/') {
                            format!("exec: {program:?}: stat {program}: no such file or directory")
                        } else {
                            format!("exec: {program:?}: executable file not found in $PATH")
                        }
                    }
                    Some(isolation::STEP_EXEC) => format!("exec: {program:?}: {e}"),
                    Some(n) => format!(
                        "{}: {e}",
                        self.steps
                            .get(n as usize)
                            .cloned()
                            .unwrap_or_else(|| isolation::describe(n, &[]))
                    ),
                    None => e.to_string(),
                };
                bail!("unable to start container process: {what}");
            }
        };
        let pid_bytes = read_available(&self.pid_r);
        let pid = pid_bytes
            .get(..4)
            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| anyhow!("the container's relay did not report its PID"))?;
        Ok(Spawned { child, pid })
    }
}

fn prepare(
    join: Join,
    root: Option<(CString, Vec<Op>)>,
    opts: RootOptions,
    spec: &ProcessSpec,
    terminal: Option<OwnedFd>,
) -> Result<Prepared> {
    prepare_plan(join, root, opts, spec, terminal, false)
}

fn prepare_plan(
    join: Join,
    root: Option<(CString, Vec<Op>)>,
    opts: RootOptions,
    spec: &ProcessSpec,
    terminal: Option<OwnedFd>,
    pause: bool,
) -> Result<Prepared> {
    let Some(program) = spec.argv.first().filter(|p| !p.is_empty()).cloned() else {
        bail!("no command specified");
    };
    let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
    let (steps_r, steps_w) = nix::unistd::pipe2(flags).context("making a report pipe")?;
    let (pid_r, pid_w) = nix::unistd::pipe2(flags).context("making a report pipe")?;
    let steps = root
        .as_ref()
        .map(|(_, ops)| {
            (0..ops.len())
                .map(|i| isolation::describe(i as u16, ops))
                .collect()
        })
        .unwrap_or_default();
    let plan = Plan {
        join,
        root,
        read_only_root: opts.read_only,
        pause,
        privileges: Privileges {
            identity: spec.identity.clone(),
            capabilities: spec.capabilities,
            last_cap: last_cap()?,
            no_new_privs: spec.no_new_privs,
            working_dir: cstring(&spec.working_dir)?,
        },
        steps_w,
        pid_w,
    };
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    let on_terminal = terminal.is_some();
    match terminal {
        Some(slave) => {
            let dup = |fd: &OwnedFd| {
                fd.try_clone()
                    .context("duplicating the terminal descriptor")
            };
            cmd.stdin(Stdio::from(dup(&slave)?))
                .stdout(Stdio::from(dup(&slave)?))
                .stderr(Stdio::from(slave));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    // The relay leads a process group of its own; the program is in it too, or (on a
    // terminal) leads a session of its own.
    cmd.process_group(0);
    // SAFETY: `apply` and `make_controlling_terminal` only make system calls on values
    // prepared above.
    unsafe {
        cmd.pre_exec(move || {
            plan.apply()?;
            if on_terminal {
                super::pty::make_controlling_terminal()?;
            }
            plan.exec_next();
            Ok(())
        });
    }
    Ok(Prepared {
        cmd,
        steps_r,
        pid_r,
        steps,
        program,
    })
}

/// The pod's pinned network, UTS and IPC namespaces to join (the PID and mount namespaces are
/// the caller's to add).
fn pod_namespaces(ctx: &PodContext) -> Result<Join> {
    Ok(Join {
        net: ctx
            .netns
            .as_deref()
            .map(|p| open_ns(p, "network"))
            .transpose()?,
        uts: ctx.uts.as_deref().map(|p| open_ns(p, "UTS")).transpose()?,
        ipc: ctx.ipc.as_deref().map(|p| open_ns(p, "IPC")).transpose()?,
        pid: None,
        mnt: None,
    })
}

/// A command that starts a new container from `root` in the pod described by `ctx`, in a
/// process group of its own (so the whole container can be signalled).
pub fn container_command(
    ctx: &PodContext,
    root: &ContainerRoot,
    opts: RootOptions,
    spec: &ProcessSpec,
) -> Result<Prepared> {
    let join = Join {
        pid: ctx.pid.as_deref().map(|p| open_ns(p, "PID")).transpose()?,
        ..pod_namespaces(ctx)?
    };
    let ops = root_ops(root, ctx)?;
    prepare(join, Some((cstring(&root.rootfs)?, ops)), opts, spec, None)
}

/// Starts the pause process of a pod whose containers share one PID namespace
/// (`shareProcessNamespace`): PID 1 of that namespace, in the pod's network, UTS and IPC
/// namespaces, as the pause container of a real pod. It is a fork of the kubelet that never
/// execs (no image holds a pause program here), so the program name below is never run.
pub fn start_pause(ctx: &PodContext) -> Result<Spawned> {
    let join = pod_namespaces(ctx)?;
    let spec = ProcessSpec {
        argv: vec!["pause".into()],
        env: vec![],
        working_dir: PathBuf::from("/"),
        identity: Identity {
            uid: 0,
            gid: 0,
            groups: vec![],
        },
        capabilities: 0,
        no_new_privs: true,
    };
    let mut prepared = prepare_plan(join, None, RootOptions::default(), &spec, None, true)?;
    prepared.cmd.stdout(Stdio::null()).stderr(Stdio::null());
    prepared.spawn().context("starting the pod's pause process")
}

/// The namespaces of the running container process `pid`, to enter.
fn join_container(pid: i32) -> Result<Join> {
    let ns = |n: &str| open_ns(&PathBuf::from(format!("/proc/{pid}/ns/{n}")), n);
    Ok(Join {
        net: Some(ns("net")?),
        uts: Some(ns("uts")?),
        ipc: Some(ns("ipc")?),
        pid: Some(ns("pid")?),
        mnt: Some(ns("mnt")?),
    })
}

/// A command that runs `spec` inside the running container whose process is `pid` (its
/// mount, PID, UTS, IPC and network namespaces), in a process group of its own.
pub fn enter_command(pid: i32, spec: &ProcessSpec) -> Result<Prepared> {
    prepare(
        join_container(pid)?,
        None,
        RootOptions::default(),
        spec,
        None,
    )
}

/// Like [`enter_command`], with the terminal `slave` as standard streams and controlling
/// terminal of a new session.
pub fn enter_command_on_terminal(pid: i32, spec: &ProcessSpec, slave: OwnedFd) -> Result<Prepared> {
    prepare(
        join_container(pid)?,
        None,
        RootOptions::default(),
        spec,
        Some(slave),
    )
}
