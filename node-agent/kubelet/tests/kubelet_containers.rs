//! Containers in roots of their own: a root filesystem made from Debian's `busybox-static`
//! (the test's stand-in for an image store), and what a container sees of it — only its own
//! root and files, only its own processes with its program as PID 1, the pod's hostname, the
//! user of `runAsUser`, a read-only root, a clean root after a restart — and `exec` entering
//! the same root and namespaces. Each test runs in namespaces of its own.

mod kubelet_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use kubelet_common::*;
use minikind_kubelet::rootfs::{ContainerRoot, RootProvider, RootRequest, run_root_dir};
use oci_spec::image::ImageConfiguration;
use serde_json::json;

/// Roots made of `/bin/busybox` and its applets, fresh for every run. An image named
/// `…nobody…` runs as `User: nobody`, any other as root.
#[derive(Debug)]
struct BusyboxRoots;

impl RootProvider for BusyboxRoots {
    fn prepare(&self, req: &RootRequest<'_>) -> Result<ContainerRoot> {
        let rootfs = run_root_dir(req);
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)?;
        }
        busybox_root(&rootfs)?;
        let user = if req.image.contains("nobody") {
            "nobody"
        } else {
            ""
        };
        let config: ImageConfiguration = serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "User": user}
        }))?;
        Ok(ContainerRoot {
            rootfs,
            config,
            node_binds: vec![],
            image_ref: req.image.to_string(),
            image_id: String::new(),
            image_size: None,
        })
    }

    fn release(&self, _req: &RootRequest<'_>, root: &ContainerRoot) -> Result<()> {
        std::fs::remove_dir_all(&root.rootfs)?;
        Ok(())
    }
}

async fn busybox_lab() -> Lab {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install -y busybox-static"
    );
    Lab::start_with(|cfg| cfg.roots = Arc::new(BusyboxRoots)).await
}

async fn sh(lab: &Lab, pod: &str, script: &str) -> ExecOutput {
    let ep = lab.endpoint().await;
    exec(ep, pod, &["sh", "-c", script], None, "v5.channel.k8s.io").await
}

fn waiting(p: &k8s_openapi::api::core::v1::Pod) -> Option<(String, String)> {
    let st = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let w = st.state.as_ref()?.waiting.as_ref()?;
    Some((w.reason.clone()?, w.message.clone().unwrap_or_default()))
}

fn restarts(p: &k8s_openapi::api::core::v1::Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count)
}

/// The CRI log lines of one run of the pod's container `main`.
fn run_log(lab: &Lab, pod: &str, run: i32) -> String {
    let logs: PathBuf = lab.root().join("logs");
    let dir = std::fs::read_dir(&logs)
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("default_{pod}_"))
        })
        .expect("the pod's log directory")
        .path();
    std::fs::read_to_string(dir.join("main").join(format!("{run}.log"))).unwrap_or_default()
}

#[test]
fn a_container_sees_only_its_root_its_processes_and_its_hostname() {
    isolated(|| async {
        let lab = busybox_lab().await;
        // A file of the node in /tmp: no container sees it.
        let node_file = std::env::temp_dir().join(format!("minikind-node-{}", std::process::id()));
        std::fs::write(&node_file, "node").unwrap();

        let a = pod(
            "iso-a",
            &["sh", "-c", "echo from-a > /tmp/a; exec sleep 3600"],
        );
        lab.create(a).await;
        lab.create(pod("iso-b", &["sleep", "3600"])).await;
        lab.wait_running("iso-a").await;
        lab.wait_running("iso-b").await;

        // Only the container's root: busybox's directories, not the node's.
        let ls = sh(&lab, "iso-a", "ls /").await;
        assert_eq!(ls.status["status"], "Success", "{ls:?}");
        let entries: Vec<&str> = ls.stdout.split_whitespace().collect();
        assert!(
            entries.contains(&"bin") && entries.contains(&"proc"),
            "{entries:?}"
        );
        // (`var` holds the service-account files' mount point.)
        assert!(
            !entries.contains(&"usr") && !entries.contains(&"lib"),
            "{entries:?}"
        );
        // Its own /tmp: what the container wrote, not the node's file; exec sees the same root.
        assert_eq!(sh(&lab, "iso-a", "ls /tmp").await.stdout, "a\n");
        assert_eq!(sh(&lab, "iso-a", "cat /tmp/a").await.stdout, "from-a\n");
        assert_eq!(sh(&lab, "iso-b", "ls /tmp").await.stdout, "");
        let seen = sh(&lab, "iso-b", "cat /tmp/a").await;
        assert_ne!(seen.status["status"], "Success", "{seen:?}");

        // Only the pod's processes: its program is PID 1, the exec'd `ps` the only other.
        let ps = sh(&lab, "iso-a", "ps -o pid,args").await;
        let lines: Vec<&str> = ps.stdout.lines().skip(1).map(str::trim).collect();
        // (busybox's sh execs its last command: the exec is one process.)
        assert_eq!(lines.len(), 2, "PID 1 and the exec'd ps: {lines:?}");
        assert_eq!(lines[0], "1 sleep 3600", "{lines:?}");
        assert_eq!(
            sh(&lab, "iso-b", "cat /proc/1/cmdline | tr '\\0' ' '")
                .await
                .stdout,
            "sleep 3600 "
        );

        // The pod's hostname and the kubelet's files.
        assert_eq!(sh(&lab, "iso-a", "hostname").await.stdout, "iso-a\n");
        assert_eq!(
            sh(&lab, "iso-a", "cat /etc/hostname").await.stdout,
            "iso-a\n"
        );
        let hosts = sh(&lab, "iso-a", "cat /etc/hosts").await.stdout;
        assert!(
            hosts.starts_with("# Kubernetes-managed hosts file."),
            "{hosts}"
        );
        assert!(hosts.contains("\tiso-a\n"), "{hosts}");
        // Root with containerd's default capabilities (CAP_CHOWN … CAP_SETFCAP: 0xa80425fb).
        let caps = sh(&lab, "iso-a", "grep CapEff /proc/self/status")
            .await
            .stdout;
        assert_eq!(caps.trim(), "CapEff:\t00000000a80425fb");
        // A minimal /dev.
        let dev = sh(&lab, "iso-a", "ls /dev").await.stdout;
        let dev: Vec<&str> = dev.split_whitespace().collect();
        for d in [
            "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
        ] {
            assert!(dev.contains(&d), "/dev has {d}: {dev:?}");
        }
        assert!(!dev.contains(&"sda") && !dev.contains(&"kmsg"), "{dev:?}");
        let sys = sh(&lab, "iso-a", "touch /sys/x").await;
        assert!(sys.stderr.contains("Read-only file system"), "{sys:?}");
        // The node's sysctls stay out of reach of the container's root.
        let sysctl = sh(&lab, "iso-a", "grep ' /proc/sys ' /proc/mounts").await;
        assert!(sysctl.stdout.contains(" ro,"), "{sysctl:?}");
        std::fs::remove_file(&node_file).unwrap();
        lab.shutdown().await;
    });
}

#[test]
fn users_non_root_refusals_and_a_read_only_root() {
    isolated(|| async {
        let lab = busybox_lab().await;
        let mut user = pod("as-user", &["sleep", "3600"]);
        user["spec"]["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 1000});
        user["spec"]["containers"][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false});
        lab.create(user).await;
        let mut ro = pod("read-only", &["sleep", "3600"]);
        ro["spec"]["containers"][0]["securityContext"] = json!({"readOnlyRootFilesystem": true});
        lab.create(ro).await;
        let mut named = pod("named-user", &["sleep", "3600"]);
        named["spec"]["containers"][0]["image"] = json!("example/busybox-nobody:1");
        named["spec"]["securityContext"] = json!({"runAsNonRoot": true});
        lab.create(named).await;
        let mut root = pod("root-user", &["sleep", "3600"]);
        root["spec"]["securityContext"] = json!({"runAsNonRoot": true});
        lab.create(root).await;
        let mut nobody = pod("image-user", &["sleep", "3600"]);
        nobody["spec"]["containers"][0]["image"] = json!("example/busybox-nobody:1");
        lab.create(nobody).await;

        lab.wait_running("as-user").await;
        assert_eq!(
            sh(&lab, "as-user", "id -u; id -g").await.stdout,
            "1000\n1000\n"
        );
        let st = sh(
            &lab,
            "as-user",
            "grep -E 'CapEff|NoNewPrivs' /proc/self/status",
        )
        .await;
        assert_eq!(st.stdout, "CapEff:\t0000000000000000\nNoNewPrivs:\t1\n");
        // The image's `User: nobody`, resolved in the root's /etc/passwd.
        lab.wait_running("image-user").await;
        assert_eq!(sh(&lab, "image-user", "id -u").await.stdout, "65534\n");

        let p = lab
            .wait_pod("named-user", 20, "CreateContainerConfigError", |p| {
                waiting(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
            })
            .await;
        let (_, msg) = waiting(&p).unwrap();
        assert!(
            msg.starts_with("container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: \"named-user_default("),
            "{msg}"
        );
        let p = lab
            .wait_pod("root-user", 20, "CreateContainerConfigError", |p| {
                waiting(p).is_some_and(|(r, _)| r == "CreateContainerConfigError")
            })
            .await;
        let (_, msg) = waiting(&p).unwrap();
        assert!(
            msg.starts_with("container has runAsNonRoot and image will run as root"),
            "{msg}"
        );
        assert_eq!(phase(&p), "Pending");

        lab.wait_running("read-only").await;
        let w = sh(&lab, "read-only", "echo x > /tmp/x").await;
        assert!(w.stderr.contains("Read-only file system"), "{w:?}");
        assert_ne!(w.status["status"], "Success");
        // The kubelet's files stay writable mounts of their own.
        let w = sh(&lab, "read-only", "echo '# more' >> /etc/hosts && echo ok").await;
        assert_eq!(w.stdout, "ok\n", "{w:?}");
        lab.shutdown().await;
    });
}

#[test]
fn a_restarted_container_starts_from_a_clean_root() {
    isolated(|| async {
        let lab = busybox_lab().await;
        let script = "if [ -e /tmp/mark ]; then echo dirty; else echo clean; fi; touch /tmp/mark; sleep 1; exit 3";
        lab.create(pod("crashy", &["sh", "-c", script])).await;
        lab.wait_pod("crashy", 30, "a restart", |p| restarts(p) >= 1)
            .await;
        let logs = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let l = run_log(&lab, "crashy", 1);
                if !l.is_empty() {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the second run's log");
        assert!(run_log(&lab, "crashy", 0).contains("stdout F clean"));
        assert!(logs.contains("stdout F clean"), "{logs}");
        assert!(!logs.contains("dirty"), "{logs}");
        lab.shutdown().await;
    });
}

#[test]
fn containers_share_the_pods_pid_namespace_only_when_asked() {
    isolated(|| async {
        let lab = busybox_lab().await;
        let two = |name: &str, share: bool| {
            let mut p = pod(name, &["sleep", "3600"]);
            p["spec"]["shareProcessNamespace"] = json!(share);
            p["spec"]["containers"].as_array_mut().unwrap().push(
                json!({"name": "side", "image": "busybox:1.36", "command": ["sleep", "3601"]}),
            );
            p
        };
        lab.create(two("shared", true)).await;
        lab.create(two("separate", false)).await;
        lab.wait_running("shared").await;
        lab.wait_running("separate").await;
        let ps = sh(&lab, "shared", "ps -o pid,args").await.stdout;
        assert!(
            ps.contains("sleep 3600") && ps.contains("sleep 3601"),
            "{ps}"
        );
        // PID 1 is the pod's pause process, not a container's program.
        let first = ps.lines().nth(1).unwrap_or_default().trim().to_string();
        assert!(first.starts_with("1 ") && !first.contains("sleep"), "{ps}");
        let ps = sh(&lab, "separate", "ps -o pid,args").await.stdout;
        assert!(
            ps.contains("1 sleep 3600") && !ps.contains("sleep 3601"),
            "{ps}"
        );
        lab.shutdown().await;
    });
}
