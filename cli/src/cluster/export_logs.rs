//! `minikind export logs [DIR] [--name C] [--archive]`, as KIND's `kind export logs`
//! (`pkg/cluster/internal/providers/docker/provider.go`: `CollectLogs`): everything a failed CI
//! run needs to be understood afterwards, gathered into one folder (or one tar):
//!
//! ```text
//! DIR/docker-info.json                      the engine's `info`
//! DIR/<container>/inspect.json              `docker inspect` of every node and the lab upstream
//! DIR/<container>/container.log             its output (the node agent's log), timestamped
//! DIR/<node>/iptables-legacy.txt            iptables-legacy-save + ip6tables-legacy-save
//! DIR/<node>/iptables-nft.txt               iptables-nft-save + ip6tables-nft-save
//! DIR/<node>/resolv.conf                    after the network magic
//! DIR/<node>/resolv.conf.original           before it (the magic's saved copy)
//! DIR/<node>/network.txt                    `ip -d addr`, `ip route`, `ip neigh`
//! DIR/objects/<group>.<resource>.yaml       every listable API object but Secrets
//! DIR/pods/<ns>_<pod>/<container>.log       each container's log (and `.previous.log`)
//! DIR/coredns/Corefile                      the cluster DNS's Corefile
//! DIR/errors.txt                            what could not be collected, and why
//! ```
//!
//! A part that cannot be read is named in `errors.txt` and the rest is still collected: a
//! broken cluster is exactly when the logs are wanted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use kube::discovery::{Discovery, verbs};

use crate::cluster::access::{client_for, control_plane_admin};
use crate::provider::docker::{self, exec::exec_in, files::read_node_file, nodes};

/// The commands whose output is saved per node, and the file each goes to.
const NODE_COMMANDS: &[(&str, &[&[&str]])] = &[
    (
        "iptables-legacy.txt",
        &[&["iptables-legacy-save"], &["ip6tables-legacy-save"]],
    ),
    (
        "iptables-nft.txt",
        &[&["iptables-nft-save"], &["ip6tables-nft-save"]],
    ),
    (
        "network.txt",
        &[&["ip", "-d", "addr"], &["ip", "route"], &["ip", "neigh"]],
    ),
];

/// Resources never written out: they hold credentials.
const SKIPPED_RESOURCES: &[&str] = &["secrets"];

/// What went wrong while collecting, written to `errors.txt`.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn note(&mut self, what: &str, e: impl std::fmt::Display) {
        self.0.push(format!("{what}: {e:#}"));
    }
}

/// Where the logs go when no DIR is given: a new folder under the temporary directory, as
/// KIND's default.
pub fn default_dir(cluster: &str) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("minikind-logs-{cluster}-{stamp}"))
}

/// Collects into `dir` (which must be new or empty: nothing of the user's is overwritten) and,
/// with `archive`, packs it into `<dir>.tar` and removes the folder. Returns what was written
/// and how many parts could not be collected.
pub async fn export(
    docker: &Docker,
    cluster: &str,
    dir: &Path,
    archive: bool,
) -> Result<(PathBuf, usize)> {
    let containers = docker::containers(docker, docker::cluster_filter(cluster)).await?;
    if containers.is_empty() {
        bail!("cluster {cluster:?} has no containers (see `minikind get clusters`)");
    }
    prepare_dir(dir)?;
    let tar_path = tar_path(dir);
    if archive && tar_path.exists() {
        bail!("{} already exists: not overwriting it", tar_path.display());
    }
    let mut failures = Failures::default();

    match docker.info().await {
        Ok(info) => write_json(&dir.join("docker-info.json"), &info)?,
        Err(e) => failures.note("docker info", e),
    }
    let per_container = containers.iter().map(|c| {
        let is_node = c.role == "control-plane" || c.role == "worker";
        collect_container(docker, &c.name, is_node, dir)
    });
    for notes in futures::future::join_all(per_container).await {
        failures.0.extend(notes?);
    }
    if let Err(e) = collect_api(docker, cluster, dir, &mut failures).await {
        failures.note("the API server", e);
    }

    let count = failures.0.len();
    if count > 0 {
        std::fs::write(dir.join("errors.txt"), failures.0.join("\n") + "\n")
            .context("writing errors.txt")?;
    }
    if !archive {
        return Ok((dir.to_path_buf(), count));
    }
    pack(dir, &tar_path)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    Ok((tar_path, count))
}

fn tar_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".tar");
    PathBuf::from(name)
}

fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty: give a new or empty folder for the logs",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// One container's files; returns what could not be read. Only a failure to write here is
/// an error.
async fn collect_container(
    docker: &Docker,
    name: &str,
    is_node: bool,
    dir: &Path,
) -> Result<Vec<String>> {
    let mut failures = Failures::default();
    let out = dir.join(name);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    match docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
    {
        Ok(info) => write_json(&out.join("inspect.json"), &info)?,
        Err(e) => failures.note(&format!("{name}: docker inspect"), e),
    }
    match container_log(docker, name).await {
        Ok(text) => std::fs::write(out.join("container.log"), text)
            .with_context(|| format!("writing the log of {name}"))?,
        Err(e) => failures.note(&format!("{name}: its log"), e),
    }
    if !is_node {
        return Ok(failures.0);
    }
    for (file, commands) in NODE_COMMANDS {
        let mut text = String::new();
        for argv in *commands {
            text.push_str(&format!("# {}\n", argv.join(" ")));
            match exec_in(docker, name, argv).await {
                Ok(r) if r.ok() => text.push_str(&r.stdout),
                Ok(r) => {
                    let why = format!("exit {}: {}", r.exit_code, r.stderr.trim());
                    text.push_str(&format!("# failed: {why}\n"));
                    failures.note(&format!("{name}: {}", argv.join(" ")), why);
                }
                Err(e) => failures.note(&format!("{name}: {}", argv.join(" ")), e),
            }
        }
        std::fs::write(out.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    // The node's paths as the magic itself names them.
    let magic = minikind_network_magic::MagicOptions::default();
    for (path, file) in [
        (magic.resolv_conf_path.clone(), "resolv.conf"),
        (magic.original_path(), "resolv.conf.original"),
    ] {
        let path = path.to_string_lossy();
        match read_node_file(docker, name, &path).await {
            Ok(text) => {
                std::fs::write(out.join(file), text).with_context(|| format!("writing {file}"))?
            }
            Err(e) => failures.note(&format!("{name}: {path}"), e),
        }
    }
    Ok(failures.0)
}

async fn container_log(docker: &Docker, name: &str) -> Result<String> {
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .build();
    let mut stream = docker.logs(name, Some(opts));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        match chunk.context("reading the container's log")? {
            LogOutput::StdOut { message }
            | LogOutput::StdErr { message }
            | LogOutput::Console { message } => text.push_str(&String::from_utf8_lossy(&message)),
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(text)
}

/// The API objects, the pods' logs and the Corefile, through the admin credential.
async fn collect_api(
    docker: &Docker,
    cluster: &str,
    dir: &Path,
    failures: &mut Failures,
) -> Result<()> {
    let (cp, admin) = control_plane_admin(docker, cluster).await?;
    let server = nodes::api_server_url(docker, cluster, &cp).await?;
    let client = client_for(&admin, &server).await?;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .context("API discovery")?;
    let objects = dir.join("objects");
    std::fs::create_dir_all(&objects).context("creating objects/")?;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST)
                || SKIPPED_RESOURCES.contains(&ar.plural.as_str())
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let what = if ar.group.is_empty() {
                ar.plural.clone()
            } else {
                format!("{}.{}", ar.group, ar.plural)
            };
            match api.list(&ListParams::default()).await {
                Ok(list) => {
                    let text = serde_yaml::to_string(&list.items).context("encoding YAML")?;
                    std::fs::write(objects.join(format!("{what}.yaml")), text)
                        .with_context(|| format!("writing objects/{what}.yaml"))?;
                }
                Err(e) => failures.note(&format!("listing {what}"), e),
            }
        }
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default())
        .await
        .context("listing pods")?;
    for pod in list.items {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let out = dir.join("pods").join(format!("{ns}_{name}"));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for (container, restarted) in containers_of(&pod) {
            for previous in [false, true] {
                if previous && !restarted {
                    continue;
                }
                let params = LogParams {
                    container: Some(container.clone()),
                    previous,
                    ..LogParams::default()
                };
                let file = if previous {
                    format!("{container}.previous.log")
                } else {
                    format!("{container}.log")
                };
                match api.logs(&name, &params).await {
                    Ok(text) => std::fs::write(out.join(&file), text)
                        .with_context(|| format!("writing {file}"))?,
                    Err(e) => failures.note(&format!("{ns}/{name} {file}"), e),
                }
            }
        }
    }
    let cms: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    match cms.get("coredns").await {
        Ok(cm) => {
            let corefile = cm
                .data
                .and_then(|d| d.get("Corefile").cloned())
                .unwrap_or_default();
            std::fs::create_dir_all(dir.join("coredns")).context("creating coredns/")?;
            std::fs::write(dir.join("coredns/Corefile"), corefile)
                .context("writing the Corefile")?;
        }
        Err(e) => failures.note("kube-system/coredns ConfigMap", e),
    }
    Ok(())
}

/// Each container of the pod (init and app) and whether it has restarted (so a previous log
/// may exist).
fn containers_of(pod: &Pod) -> Vec<(String, bool)> {
    let status = pod.status.as_ref();
    let statuses = status
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(
            status
                .and_then(|s| s.init_container_statuses.clone())
                .unwrap_or_default(),
        );
    let restarted: std::collections::HashMap<String, bool> =
        statuses.map(|s| (s.name, s.restart_count > 0)).collect();
    let spec = pod.spec.as_ref();
    spec.map(|s| s.init_containers.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .chain(spec.map(|s| s.containers.clone()).unwrap_or_default())
        .map(|c| {
            let r = restarted.get(&c.name).copied().unwrap_or(false);
            (c.name, r)
        })
        .collect()
}

fn pack(dir: &Path, tar_path: &Path) -> Result<()> {
    let file = std::fs::File::create_new(tar_path)
        .with_context(|| format!("creating {}", tar_path.display()))?;
    let mut builder = tar::Builder::new(file);
    let top = dir
        .file_name()
        .context("the logs folder has no name")?
        .to_owned();
    builder
        .append_dir_all(&top, dir)
        .with_context(|| format!("packing {}", dir.display()))?;
    builder
        .into_inner()
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", tar_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_the_users_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mine.txt"), "keep").unwrap();
        let err = prepare_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("mine.txt")).unwrap(),
            "keep"
        );
        let fresh = dir.path().join("new/logs");
        prepare_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        assert_eq!(tar_path(&fresh), dir.path().join("new/logs.tar"));
    }

    #[test]
    fn previous_logs_are_asked_for_restarted_containers_only() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "init"}],
                "containers": [{"name": "a"}, {"name": "b"}],
            },
            "status": {
                "initContainerStatuses": [{"name": "init", "restartCount": 0, "ready": true, "image": "", "imageID": ""}],
                "containerStatuses": [
                    {"name": "a", "restartCount": 2, "ready": true, "image": "", "imageID": ""},
                    {"name": "b", "restartCount": 0, "ready": true, "image": "", "imageID": ""},
                ],
            },
        }))
        .unwrap();
        assert_eq!(
            containers_of(&pod),
            vec![
                ("init".to_string(), false),
                ("a".to_string(), true),
                ("b".to_string(), false)
            ]
        );
    }
}
