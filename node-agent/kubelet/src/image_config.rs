//! What a container runs, as the kubelet and containerd's CRI plugin decide it from the pod
//! spec and the image's OCI configuration: the command line (`command` replaces the image's
//! `Entrypoint` and drops its `Cmd`, `args` replaces `Cmd`; kubernetes
//! `pkg/kubelet/kuberuntime/kuberuntime_container.go` and containerd's CRI `getProcessArgs`),
//! the environment (the default `PATH`, then the image's `Env`, then the kubelet's), the
//! working directory, the user (`runAsUser`/`runAsGroup` over the image's `User`, names looked
//! up in the root's `/etc/passwd` and `/etc/group`), the `runAsNonRoot` check with the
//! kubelet's messages (`verifyRunAsNonRoot`), and the capabilities.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};
use oci_spec::image::ImageConfiguration;

use super::env::{Env, expand};
use super::spawn::DEFAULT_PATH;

/// The user a container's processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the user's groups in the root's `/etc/group`, then
    /// `supplementalGroups` of the pod.
    pub groups: Vec<u32>,
}

/// Linux capability numbers by name (`include/uapi/linux/capability.h`).
const CAPABILITIES: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// The capabilities a container gets unless its `securityContext.capabilities` says
/// otherwise: containerd's `oci.WithDefaultUnixCapabilities` (`oci/spec_opts.go`,
/// `defaultUnixCaps`), the same fourteen as Docker's `oci/caps/defaults.go`.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

fn capability_bit(name: &str) -> Result<u64> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    CAPABILITIES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(bare))
        .map(|(_, b)| 1u64 << b)
        .with_context(|| format!("unknown capability {name:?}"))
}

/// The capability set of a container: the defaults, minus `drop`, plus `add` (`ALL` in
/// either means every capability), as containerd's CRI plugin applies them (drop first, then
/// add, so `drop: [ALL], add: [NET_BIND_SERVICE]` leaves that one).
pub fn capabilities(sc: Option<&SecurityContext>) -> Result<u64> {
    let all: u64 = CAPABILITIES.iter().fold(0, |m, (_, b)| m | 1u64 << b);
    let mut set = 0u64;
    for c in DEFAULT_CAPABILITIES {
        set |= capability_bit(c)?;
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    if sc.and_then(|s| s.privileged) == Some(true) {
        bail!("privileged containers are not supported by minikind's runtime");
    }
    for d in caps.iter().flat_map(|c| c.drop.iter().flatten()) {
        set &= !if d.eq_ignore_ascii_case("ALL") {
            all
        } else {
            capability_bit(d)?
        };
    }
    for a in caps.iter().flat_map(|c| c.add.iter().flatten()) {
        set |= if a.eq_ignore_ascii_case("ALL") {
            all
        } else {
            capability_bit(a)?
        };
    }
    Ok(set)
}

/// The program and its arguments, per Kubernetes' rules, with `$(VAR)` expanded in `command`
/// and `args` from the kubelet's environment.
pub fn command_line(
    container: &Container,
    image: &ImageConfiguration,
    env: &Env,
) -> Result<Vec<String>> {
    let vars = env.map();
    let command: Vec<String> = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &vars))
        .collect();
    let mut args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, &vars))
        .collect();
    let cfg = image.config().as_ref();
    let mut words = command;
    if words.is_empty() {
        if args.is_empty() {
            args = cfg.and_then(|c| c.cmd().clone()).unwrap_or_default();
        }
        // An `Entrypoint` of one empty string means "none" (Docker's `--entrypoint ""`).
        let entrypoint = cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
        if !(entrypoint.len() == 1 && entrypoint[0].is_empty()) {
            words = entrypoint;
        }
    }
    words.extend(args);
    if words.is_empty() {
        bail!("no command specified");
    }
    Ok(words)
}

/// The whole environment: the default `PATH`, the image's `Env`, then the kubelet's variables
/// (a later definition replaces an earlier one).
pub fn environment(image: &ImageConfiguration, kubelet_env: &Env) -> Env {
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH.to_string());
    for kv in image
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default()
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        env.set(k, v.to_string());
    }
    for (k, v) in kubelet_env.as_slice() {
        env.set(k, v.clone());
    }
    env
}

/// The working directory: the container's `workingDir`, else the image's, else `/`.
pub fn working_dir(container: &Container, image: &ImageConfiguration) -> PathBuf {
    container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| {
            image
                .config()
                .as_ref()
                .and_then(|c| c.working_dir().clone())
                .filter(|w| !w.is_empty())
        })
        .map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The effective security context: the container's fields over the pod's
/// (`securitycontext.DetermineEffectiveSecurityContext`).
pub fn effective_security(pod: Option<&PodSecurityContext>, c: &Container) -> SecurityContext {
    let mut sc = c.security_context.clone().unwrap_or_default();
    if let Some(p) = pod {
        sc.run_as_user = sc.run_as_user.or(p.run_as_user);
        sc.run_as_group = sc.run_as_group.or(p.run_as_group);
        sc.run_as_non_root = sc.run_as_non_root.or(p.run_as_non_root);
    }
    sc
}

/// `name_namespace(uid)`, as the kubelet's `format.Pod` writes a pod in messages.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// The kubelet's `runAsNonRoot` check: Err holds its message (shown with
/// `CreateContainerConfigError`). The image's user counts as containerd reports it: a
/// numeric first part is a UID, anything else a name that cannot be verified.
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    sc: &SecurityContext,
    image: &ImageConfiguration,
) -> Result<(), String> {
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let who = format_pod(pod);
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {who:?}, container: {})",
                c.name
            ));
        }
        return Ok(());
    }
    let user = image_user(image);
    let first = user.split(':').next().unwrap_or_default();
    match first.parse::<u32>() {
        _ if first.is_empty() => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        )),
        Ok(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {who:?}, container: {})",
            c.name
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({first}), cannot verify user is non-root (pod: {who:?}, container: {})",
            c.name
        )),
    }
}

fn image_user(image: &ImageConfiguration) -> String {
    image
        .config()
        .as_ref()
        .and_then(|c| c.user().clone())
        .unwrap_or_default()
}

/// One line of `/etc/passwd` or `/etc/group`: name, id, gid (passwd) or members (group).
fn db_lines(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

/// The identity of the container's processes, looked up in the files of `root` (the
/// container's root filesystem), as runc's `user.GetExecUser` does: `runAsUser` and
/// `runAsGroup` override the image's `User` (`uid`, `name`, `uid:gid`, `name:group`); a user
/// without a group gets its primary group from `/etc/passwd` (0 when it is not listed).
pub fn identity(
    sc: &SecurityContext,
    pod_sc: Option<&PodSecurityContext>,
    image: &ImageConfiguration,
    root: &Path,
) -> Result<Identity> {
    let passwd = db_lines(&root.join("etc/passwd"));
    let group = db_lines(&root.join("etc/group"));
    let image_user = image_user(image);
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (image_user.clone(), None),
    };
    let (uid, passwd_entry) = match sc.run_as_user {
        Some(u) => {
            let uid = u32::try_from(u).with_context(|| format!("runAsUser {u} is out of range"))?;
            let entry = passwd.iter().find(|f| f[2] == uid.to_string()).cloned();
            (uid, entry)
        }
        None if user_part.is_empty() => (0, passwd.iter().find(|f| f[2] == "0").cloned()),
        None => match user_part.parse::<u32>() {
            Ok(uid) => (uid, passwd.iter().find(|f| f[2] == user_part).cloned()),
            Err(_) => {
                let Some(entry) = passwd.iter().find(|f| f[0] == user_part) else {
                    bail!("unable to find user {user_part}: no matching entries in passwd file");
                };
                let uid = entry[2]
                    .parse()
                    .with_context(|| format!("user {user_part}'s UID {:?}", entry[2]))?;
                (uid, Some(entry.clone()))
            }
        },
    };
    let gid = match (
        sc.run_as_group,
        group_part.filter(|_| sc.run_as_user.is_none()),
    ) {
        (Some(g), _) => {
            u32::try_from(g).with_context(|| format!("runAsGroup {g} is out of range"))?
        }
        (None, Some(g)) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let Some(entry) = group.iter().find(|f| f[0] == g) else {
                    bail!("unable to find group {g}: no matching entries in group file");
                };
                entry[2]
                    .parse()
                    .with_context(|| format!("group {g}'s GID {:?}", entry[2]))?
            }
        },
        (None, None) => passwd_entry
            .as_ref()
            .and_then(|e| e[3].parse().ok())
            .unwrap_or(0),
    };
    let mut groups: Vec<u32> = match &passwd_entry {
        Some(e) => group
            .iter()
            .filter(|g| g[3].split(',').any(|m| m == e[0]))
            .filter_map(|g| g[2].parse().ok())
            .collect(),
        None => Vec::new(),
    };
    for g in pod_sc
        .and_then(|p| p.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        groups.push(u32::try_from(*g).with_context(|| format!("supplementalGroup {g}"))?);
    }
    groups.retain(|g| *g != gid);
    groups.sort_unstable();
    groups.dedup();
    Ok(Identity { uid, gid, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(config: serde_json::Value) -> ImageConfiguration {
        serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": config
        }))
        .expect("image configuration")
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(json!({"Entrypoint": ["/ep", "x"], "Cmd": ["--cmd"]}));
        let env = Env::default();
        let run = |c: serde_json::Value| command_line(&container(c), &img, &env).unwrap();
        // Neither: Entrypoint + Cmd.
        assert_eq!(run(json!({"name": "c"})), ["/ep", "x", "--cmd"]);
        // args only: Entrypoint + args (Cmd replaced).
        assert_eq!(run(json!({"name": "c", "args": ["a"]})), ["/ep", "x", "a"]);
        // command only: command (Entrypoint replaced, Cmd dropped).
        assert_eq!(run(json!({"name": "c", "command": ["sh"]})), ["sh"]);
        // Both: command + args.
        assert_eq!(
            run(json!({"name": "c", "command": ["sh"], "args": ["-c", "true"]})),
            ["sh", "-c", "true"]
        );
        // An image with only Cmd runs it; `Entrypoint: [""]` means none.
        let img = image(json!({"Entrypoint": [""], "Cmd": ["sh"]}));
        assert_eq!(
            command_line(&container(json!({"name": "c"})), &img, &env).unwrap(),
            ["sh"]
        );
        let empty = image(json!({}));
        let e = command_line(&container(json!({"name": "c"})), &empty, &env).unwrap_err();
        assert_eq!(e.to_string(), "no command specified");
    }

    #[test]
    fn references_are_expanded_from_the_kubelet_environment() {
        let mut env = Env::default();
        env.set("N", "3".into());
        let c = container(json!({"name": "c", "command": ["sleep"], "args": ["$(N)", "$(IMG)"]}));
        let img = image(json!({"Env": ["IMG=1"]}));
        // Image variables are not in the expansion map (the kubelet does not know them).
        assert_eq!(
            command_line(&c, &img, &env).unwrap(),
            ["sleep", "3", "$(IMG)"]
        );
    }

    #[test]
    fn environment_layers_default_path_image_then_kubelet() {
        let img = image(json!({"Env": ["PATH=/opt/bin:/bin", "LANG=C.UTF-8", "MODE=image"]}));
        let mut k = Env::default();
        k.set("MODE", "pod".into());
        k.set("HOSTNAME", "p".into());
        let env = environment(&img, &k);
        assert_eq!(env.get("PATH"), Some("/opt/bin:/bin"));
        assert_eq!(env.get("LANG"), Some("C.UTF-8"));
        assert_eq!(env.get("MODE"), Some("pod"));
        assert_eq!(
            environment(&image(json!({})), &k).get("PATH"),
            Some(DEFAULT_PATH)
        );
    }

    #[test]
    fn working_dir_from_container_then_image_then_root() {
        let img = image(json!({"WorkingDir": "/app"}));
        assert_eq!(
            working_dir(&container(json!({"name": "c"})), &img),
            Path::new("/app")
        );
        assert_eq!(
            working_dir(&container(json!({"name": "c", "workingDir": "/w"})), &img),
            Path::new("/w")
        );
        assert_eq!(
            working_dir(&container(json!({"name": "c"})), &image(json!({}))),
            Path::new("/")
        );
    }

    fn root_with_users() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,root\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn users_from_the_image_and_the_security_context() {
        let root = root_with_users();
        let sc = SecurityContext::default();
        let id = |user: &str, sc: &SecurityContext| {
            identity(sc, None, &image(json!({"User": user})), root.path())
        };
        assert_eq!(
            id("", &sc).unwrap(),
            Identity {
                uid: 0,
                gid: 0,
                groups: vec![10]
            }
        );
        assert_eq!(
            id("nobody", &sc).unwrap(),
            Identity {
                uid: 65534,
                gid: 65534,
                groups: vec![]
            }
        );
        assert_eq!(
            id("app", &sc).unwrap(),
            Identity {
                uid: 1000,
                gid: 1000,
                groups: vec![10]
            }
        );
        assert_eq!(id("1000:wheel", &sc).unwrap().gid, 10);
        assert_eq!(
            id("4242", &sc).unwrap(),
            Identity {
                uid: 4242,
                gid: 0,
                groups: vec![]
            }
        );
        assert!(
            id("ghost", &sc)
                .unwrap_err()
                .to_string()
                .contains("unable to find user ghost")
        );
        // runAsUser replaces the image's user (and its group); runAsGroup the group.
        let sc = SecurityContext {
            run_as_user: Some(1000),
            ..Default::default()
        };
        assert_eq!(id("nobody:nogroup", &sc).unwrap().uid, 1000);
        assert_eq!(id("nobody:nogroup", &sc).unwrap().gid, 1000);
        let sc = SecurityContext {
            run_as_user: Some(7),
            run_as_group: Some(8),
            ..Default::default()
        };
        assert_eq!(
            id("nobody", &sc).unwrap(),
            Identity {
                uid: 7,
                gid: 8,
                groups: vec![]
            }
        );
        let pod_sc = PodSecurityContext {
            supplemental_groups: Some(vec![3000]),
            ..Default::default()
        };
        assert_eq!(
            identity(&sc, Some(&pod_sc), &image(json!({})), root.path())
                .unwrap()
                .groups,
            vec![3000]
        );
    }

    #[test]
    fn run_as_non_root_refuses_root_and_names_with_the_kubelets_messages() {
        let c = container(json!({"name": "c"}));
        let sc = |non_root: bool, user: Option<i64>| SecurityContext {
            run_as_non_root: Some(non_root),
            run_as_user: user,
            ..Default::default()
        };
        let check = |sc: &SecurityContext, user: &str| {
            verify_run_as_non_root(&pod(), &c, sc, &image(json!({"User": user})))
        };
        assert_eq!(
            check(&sc(true, None), "").unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)"
        );
        assert_eq!(
            check(&sc(true, None), "0:0").unwrap_err(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u-1)\", container: c)"
        );
        assert_eq!(
            check(&sc(true, None), "nobody").unwrap_err(),
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"p_ns(u-1)\", container: c)"
        );
        assert_eq!(
            check(&sc(true, Some(0)), "1000").unwrap_err(),
            "container's runAsUser breaks non-root policy (pod: \"p_ns(u-1)\", container: c)"
        );
        assert!(check(&sc(true, None), "1000").is_ok());
        assert!(check(&sc(true, Some(1000)), "").is_ok());
        assert!(check(&sc(false, None), "").is_ok());
        // The pod's setting applies when the container has none.
        let pod_sc = PodSecurityContext {
            run_as_non_root: Some(true),
            ..Default::default()
        };
        let eff = effective_security(Some(&pod_sc), &c);
        assert!(check(&eff, "").is_err());
    }

    #[test]
    fn capabilities_default_drop_and_add() {
        let default = capabilities(None).unwrap();
        assert_eq!(default.count_ones(), 14);
        assert_ne!(default & (1 << 13), 0, "NET_RAW is a default");
        assert_eq!(default & (1 << 21), 0, "SYS_ADMIN is not");
        let sc: SecurityContext = serde_json::from_value(json!({
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "CAP_NET_ADMIN"]}
        }))
        .unwrap();
        assert_eq!(capabilities(Some(&sc)).unwrap(), (1 << 10) | (1 << 12));
        let sc: SecurityContext =
            serde_json::from_value(json!({"capabilities": {"drop": ["NET_RAW"]}})).unwrap();
        assert_eq!(capabilities(Some(&sc)).unwrap(), default & !(1 << 13));
        let sc: SecurityContext =
            serde_json::from_value(json!({"capabilities": {"add": ["BOGUS"]}})).unwrap();
        assert!(
            capabilities(Some(&sc))
                .unwrap_err()
                .to_string()
                .contains("BOGUS")
        );
    }
}
