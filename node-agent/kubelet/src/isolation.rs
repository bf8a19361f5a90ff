//! The part of starting a container process that runs in the forked child, between `fork`
//! and `exec`: joining the pod's namespaces, a new mount and PID namespace, the mounts of the
//! container's root and `pivot_root` into it, then the user, capabilities and
//! `no_new_privs`.
//!
//! The kubelet is multi-threaded, so the child may only make system calls (no allocation, no
//! locks): everything is prepared as C strings and numbers before the fork ([`Plan`]), and the
//! raw calls go through `libc`. Which step failed is reported through a pipe (the step's
//! number before each step), so the kubelet can say "mounting proc on …: EPERM" rather than
//! only the error number the standard library carries back.
//!
//! A new PID namespace takes effect for the children of the process that made it, so the
//! child forks once more: the grandchild is PID 1 of the new namespace and execs the
//! container's program; the child stays outside, ignores the signals the kubelet sends to the
//! container's process group, waits for the grandchild and exits as it did (so the kubelet's
//! `wait` sees the container's exit status). `exec` and probes take the same path with
//! `setns` into the container's namespaces instead of new ones.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::CloneFlags;

use super::image_config::Identity;

/// One mount-namespace step, in order, with paths on the node (inside the new root) until
/// the pivot.
#[derive(Debug)]
pub enum Op {
    /// `mount --bind` (recursive or not), then, when `read_only`, a read-only remount with
    /// `extra` flags (nosuid, nodev, noexec).
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
        read_only: bool,
        extra: libc::c_ulong,
        /// Skipped when the source does not exist (a `/proc` file some kernels lack).
        optional: bool,
    },
    /// A fresh filesystem (`proc`, `tmpfs`, `devpts`).
    Fs {
        fstype: CString,
        target: CString,
        flags: libc::c_ulong,
        data: CString,
    },
    Mkdir(CString),
    /// An empty file to bind a device node onto.
    Touch(CString),
    Symlink {
        target: CString,
        link: CString,
    },
}

/// The process's identity and privileges, applied last.
#[derive(Debug, Clone)]
pub struct Privileges {
    pub identity: Identity,
    /// The capability bits the process keeps (bounding set; effective and permitted for
    /// root; a non-root user keeps none effective, as with containerd).
    pub capabilities: u64,
    pub last_cap: u32,
    pub no_new_privs: bool,
    pub working_dir: CString,
}

/// Namespaces to join (`setns`), as open namespace files.
#[derive(Debug, Default)]
pub struct Join {
    pub net: Option<OwnedFd>,
    pub uts: Option<OwnedFd>,
    pub ipc: Option<OwnedFd>,
    pub pid: Option<OwnedFd>,
    /// Only for entering a running container.
    pub mnt: Option<OwnedFd>,
}

/// Everything the child does, prepared before the fork.
#[derive(Debug)]
pub struct Plan {
    pub join: Join,
    /// For a new container: the root to pivot into and the steps before the pivot; None when
    /// entering a running container (its mount namespace is joined).
    pub root: Option<(CString, Vec<Op>)>,
    pub read_only_root: bool,
    /// The pod's pause process: PID 1 of a new PID namespace the pod's containers join
    /// (`shareProcessNamespace`); it reaps orphans and never execs.
    pub pause: bool,
    pub privileges: Privileges,
    /// The write ends of the step and PID report pipes.
    pub steps_w: OwnedFd,
    pub pid_w: OwnedFd,
}

/// The fixed steps, numbered after the mount steps (see [`describe`]).
const STEP_JOIN: u16 = 60000;
const STEP_UNSHARE: u16 = 60001;
const STEP_FORK: u16 = 60002;
const STEP_PRIVATE: u16 = 60003;
const STEP_PIVOT: u16 = 60004;
const STEP_RO_ROOT: u16 = 60005;
const STEP_CAPS: u16 = 60006;
const STEP_USER: u16 = 60007;
const STEP_NNP: u16 = 60008;
const STEP_CHDIR: u16 = 60009;
/// Written last: an error after it is the `exec` of the program.
pub const STEP_EXEC: u16 = 60010;

/// What step `n` of `ops` was, for an error message.
pub fn describe(n: u16, ops: &[Op]) -> String {
    match n {
        STEP_JOIN => "joining the pod's namespaces".into(),
        STEP_UNSHARE => "making the container's mount and PID namespaces".into(),
        STEP_FORK => "forking the container's first process".into(),
        STEP_PRIVATE => "making the mounts private".into(),
        STEP_PIVOT => "pivot_root into the container's root".into(),
        STEP_RO_ROOT => "making the root filesystem read-only".into(),
        STEP_CAPS => "setting the capabilities".into(),
        STEP_USER => "switching to the container's user".into(),
        STEP_NNP => "setting no_new_privs".into(),
        STEP_CHDIR => "changing to the working directory".into(),
        STEP_EXEC => "starting the program".into(),
        i => match ops.get(i as usize) {
            Some(Op::Bind { source, target, .. }) => {
                format!("bind-mounting {source:?} on {target:?}")
            }
            Some(Op::Fs { fstype, target, .. }) => format!("mounting {fstype:?} on {target:?}"),
            Some(Op::Mkdir(p)) => format!("creating the directory {p:?}"),
            Some(Op::Touch(p)) => format!("creating the file {p:?}"),
            Some(Op::Symlink { link, .. }) => format!("creating the symlink {link:?}"),
            None => format!("step {i}"),
        },
    }
}

fn check(r: libc::c_int) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn mount(
    source: *const libc::c_char,
    target: *const libc::c_char,
    fstype: *const libc::c_char,
    flags: libc::c_ulong,
    data: *const libc::c_void,
) -> std::io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated string prepared before the fork, or null.
    check(unsafe { libc::mount(source, target, fstype, flags, data) })
}

impl Plan {
    fn step(&self, n: u16) {
        let b = n.to_ne_bytes();
        // SAFETY: writing two bytes from the stack to our pipe.
        unsafe { libc::write(self.steps_w.as_raw_fd(), b.as_ptr().cast(), 2) };
    }

    /// Marks that what follows is the `exec` of the program.
    pub fn exec_next(&self) {
        self.step(STEP_EXEC);
    }

    /// Runs in the forked child; returns (in the grandchild) when the program can be
    /// exec'd. The intermediate process never returns.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: prctl with constant arguments.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
        self.step(STEP_JOIN);
        let join = |fd: &Option<OwnedFd>, flag: CloneFlags| -> std::io::Result<()> {
            if let Some(fd) = fd {
                nix::sched::setns(fd, flag)?;
            }
            Ok(())
        };
        join(&self.join.net, CloneFlags::CLONE_NEWNET)?;
        join(&self.join.uts, CloneFlags::CLONE_NEWUTS)?;
        join(&self.join.ipc, CloneFlags::CLONE_NEWIPC)?;
        join(&self.join.pid, CloneFlags::CLONE_NEWPID)?;
        join(&self.join.mnt, CloneFlags::CLONE_NEWNS)?;
        if self.root.is_some() || self.pause {
            self.step(STEP_UNSHARE);
            let mut flags = CloneFlags::CLONE_NEWNS;
            if self.join.pid.is_none() {
                flags |= CloneFlags::CLONE_NEWPID;
            }
            nix::sched::unshare(flags)?;
        }
        self.step(STEP_FORK);
        // SAFETY: fork in a single-threaded child; the grandchild only makes system calls.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            relay(pid, &self.pid_w);
        }
        // SAFETY: prctl with constant arguments; the parent is now the relay.
        check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
        if self.pause {
            pause();
        }
        if let Some((rootfs, ops)) = &self.root {
            self.new_root(rootfs, ops)?;
        }
        self.privileges()
    }

    fn new_root(&self, rootfs: &CString, ops: &[Op]) -> std::io::Result<()> {
        let null = std::ptr::null();
        self.step(STEP_PRIVATE);
        // Nothing mounted here propagates to the node, nor the node's mounts in here.
        mount(
            null,
            c"/".as_ptr(),
            null,
            libc::MS_REC | libc::MS_PRIVATE,
            null.cast(),
        )?;
        for (i, op) in ops.iter().enumerate() {
            self.step(i as u16);
            match op {
                Op::Bind {
                    source,
                    target,
                    recursive,
                    read_only,
                    extra,
                    optional,
                } => {
                    let rec = if *recursive { libc::MS_REC } else { 0 };
                    match mount(
                        source.as_ptr(),
                        target.as_ptr(),
                        null,
                        libc::MS_BIND | rec,
                        null.cast(),
                    ) {
                        Err(e) if *optional && e.raw_os_error() == Some(libc::ENOENT) => continue,
                        r => r?,
                    }
                    if *read_only {
                        mount(
                            null,
                            target.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | extra,
                            null.cast(),
                        )?;
                    }
                }
                Op::Fs {
                    fstype,
                    target,
                    flags,
                    data,
                } => mount(
                    fstype.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    *flags,
                    data.as_ptr().cast(),
                )?,
                // SAFETY: mkdir/open/symlink on prepared strings.
                Op::Mkdir(p) => {
                    let r = unsafe { libc::mkdir(p.as_ptr(), 0o755) };
                    if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Op::Touch(p) => {
                    let fd = unsafe {
                        libc::open(
                            p.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o644,
                        )
                    };
                    check(fd)?;
                    unsafe { libc::close(fd) };
                }
                Op::Symlink { target, link } => {
                    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })?
                }
            }
        }
        self.step(STEP_PIVOT);
        // pivot_root(".", "."), then detach the old root stacked under the new one: no
        // directory for the old root is needed in the image (runc does the same).
        check(unsafe { libc::chdir(rootfs.as_ptr()) })?;
        check(unsafe {
            libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int
        })?;
        check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
        check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        if self.read_only_root {
            self.step(STEP_RO_ROOT);
            mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                null.cast(),
            )?;
        }
        Ok(())
    }

    fn privileges(&self) -> std::io::Result<()> {
        let p = &self.privileges;
        self.step(STEP_CAPS);
        for cap in 0..=p.last_cap {
            if p.capabilities & (1u64 << cap) == 0 {
                // SAFETY: prctl with numbers.
                check(unsafe {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0)
                })?;
            }
        }
        self.step(STEP_USER);
        let id = &p.identity;
        // SAFETY: setgroups reads `groups.len()` gids from the prepared vector.
        check(unsafe { libc::setgroups(id.groups.len(), id.groups.as_ptr()) })?;
        check(unsafe { libc::setgid(id.gid) })?;
        check(unsafe { libc::setuid(id.uid) })?;
        self.step(STEP_CAPS);
        if id.uid == 0 {
            // capset (version 3: two 32-bit words per set); no inheritable capabilities, as
            // Docker and containerd give none since CVE-2022-24769.
            #[repr(C)]
            struct Header {
                version: u32,
                pid: libc::c_int,
            }
            #[repr(C)]
            #[derive(Clone, Copy)]
            struct Data {
                effective: u32,
                permitted: u32,
                inheritable: u32,
            }
            let header = Header {
                version: 0x2008_0522,
                pid: 0,
            };
            let word = |i: u32| (p.capabilities >> (32 * i)) as u32;
            let data = [
                Data {
                    effective: word(0),
                    permitted: word(0),
                    inheritable: 0,
                },
                Data {
                    effective: word(1),
                    permitted: word(1),
                    inheritable: 0,
                },
            ];
            // SAFETY: the kernel reads the header and two data structs from the stack.
            check(unsafe {
                libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int
            })?;
        }
        if p.no_new_privs {
            self.step(STEP_NNP);
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        self.step(STEP_CHDIR);
        check(unsafe { libc::chdir(p.working_dir.as_ptr()) })?;
        Ok(())
    }
}

extern "C" fn wake(_: libc::c_int) {}

/// PID 1 of a pod's shared PID namespace: reaps what the containers leave behind, until it
/// is killed (only SIGKILL reaches an init without handlers from outside its namespace).
fn pause() -> ! {
    // SAFETY: only async-signal-safe calls.
    unsafe {
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        // A handler (not SIG_IGN) so that SIGCHLD interrupts `pause` and orphans are reaped.
        libc::signal(libc::SIGCHLD, wake as *const () as libc::sighandler_t);
        loop {
            let mut status = 0;
            if libc::waitpid(-1, &mut status, libc::WNOHANG) <= 0 {
                libc::pause();
            }
        }
    }
}

/// The intermediate process: reports the container's PID, keeps out of the way of the
/// signals meant for the container, and exits as the container did.
fn relay(child: libc::pid_t, pid_w: &OwnedFd) -> ! {
    // SAFETY: only async-signal-safe calls on values we own.
    unsafe {
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP && sig != libc::SIGCHLD {
                libc::signal(sig, libc::SIG_IGN);
            }
        }
        let b = child.to_ne_bytes();
        libc::write(pid_w.as_raw_fd(), b.as_ptr().cast(), b.len());
        // Close everything: the kubelet's pipes must end with the container, not with us.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            let r = libc::waitpid(child, &mut status, 0);
            if r == child {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(255);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(255)
    }
}
