//! A pod's sandbox: its network namespace on the node bridge with an address from the node's
//! pod CIDR, and the files its processes see — `/etc/resolv.conf` per `dnsPolicy`, the
//! kubelet-managed `/etc/hosts`, `/etc/hostname`, volumes (configMap, secret, emptyDir,
//! hostPath, projected, service-account tokens included) and the service-account files (a token bound
//! to the pod from [`crate::token_manager`], never the kubelet's credential) — all kept under `<root>/pods/<uid>/`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret, ServiceAccount, Volume};
use kube::Api;

use super::Kubelet;
use super::spawn::{BindMount, PodContext};
use crate::hostports;
use crate::pod_dns::{self, NodeDns};
use crate::pod_network::{self, NetnsSpec};
use crate::token_manager;
use minikind_resolv_conf::ResolvConf;

/// Where Kubernetes mounts a pod's service-account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where a pod's UTS and IPC namespaces are pinned, under its directory.
const NS_DIR: &str = "ns";

/// Whether `file` has a namespace mounted on it (its device is not its directory's).
fn is_pinned(file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(file),
        file.parent().map(std::fs::metadata),
    ) {
        (Ok(f), Some(Ok(d))) => f.dev() != d.dev(),
        _ => false,
    }
}

/// Makes the pod's IPC namespace, and its UTS namespace with `hostname` when it has its own,
/// and pins them by bind-mounting them on files under the pod's directory (as `ip netns`
/// pins network namespaces), so every container of the pod joins the same ones. Pinned ones
/// a previous kubelet made are kept.
fn pin_namespaces(pod_dir: &Path, hostname: Option<&str>) -> Result<()> {
    let dir = pod_dir.join(NS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut wanted = vec![("ipc", nix::sched::CloneFlags::CLONE_NEWIPC)];
    if hostname.is_some() {
        wanted.push(("uts", nix::sched::CloneFlags::CLONE_NEWUTS));
    }
    wanted.retain(|(n, _)| !is_pinned(&dir.join(n)));
    if wanted.is_empty() {
        return Ok(());
    }
    let hostname = hostname.map(str::to_string);
    // A thread of its own: unsharing UTS and IPC changes only the calling thread, which ends
    // right after, leaving the namespaces held by the mounts.
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<()> {
                let flags = wanted
                    .iter()
                    .fold(nix::sched::CloneFlags::empty(), |f, (_, w)| f | *w);
                nix::sched::unshare(flags).context("making the pod's UTS and IPC namespaces")?;
                if let Some(h) = &hostname {
                    nix::unistd::sethostname(h).context("setting the pod's hostname")?;
                }
                for (name, _) in &wanted {
                    let target = dir.join(name);
                    std::fs::write(&target, b"")
                        .with_context(|| format!("creating {}", target.display()))?;
                    nix::mount::mount(
                        Some(&PathBuf::from(format!("/proc/thread-self/ns/{name}"))),
                        &target,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .with_context(|| {
                        format!("pinning the pod's {name} namespace on {}", target.display())
                    })?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| anyhow!("the namespace thread panicked"))?
    })
}

/// Unpins what [`pin_namespaces`] pinned.
fn unpin_namespaces(pod_dir: &Path) {
    for name in ["uts", "ipc"] {
        let f = pod_dir.join(NS_DIR).join(name);
        if is_pinned(&f) {
            let _ = nix::mount::umount2(&f, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The network namespace of the pod with `uid` (`mk-<uid>`, as `ip netns list` shows it).
pub fn netns_name(uid: &str) -> String {
    format!("mk-{uid}")
}

/// The directory of a pod's files.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// A prepared sandbox.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// None for hostNetwork pods.
    pub netns: Option<String>,
    /// The pod IP (the node's for hostNetwork pods).
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    /// None for hostNetwork pods, which keep the node's.
    pub hostname: Option<String>,
    /// Mounted for every container: hosts, resolv.conf, hostname.
    pub pod_mounts: Vec<BindMount>,
    /// Volume name → its directory (or file) on the node.
    pub volumes: BTreeMap<String, PathBuf>,
    /// The service-account directory, when the pod gets one automatically.
    pub service_account: Option<PathBuf>,
    /// Warnings forming the resolv.conf produced (`DNSConfigForming`), for events.
    pub dns_warnings: Vec<pod_dns::DnsWarning>,
    /// The pause process holding the pod's shared PID namespace (`shareProcessNamespace`).
    pub pause: Option<Arc<Pause>>,
}

/// A pod's pause process (see `spawn::start_pause`), killed when the sandbox goes.
#[derive(Debug)]
pub struct Pause {
    /// Its PID on the node (PID 1 of the pod's namespace).
    pub pid: i32,
    /// The relay's process group, which holds the pause too.
    group: i32,
    _child: tokio::process::Child,
}

impl Drop for Pause {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.group),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl Sandbox {
    /// The namespaces and mounts of `container` (its volumeMounts after the pod's files).
    pub fn context(&self, container: &k8s_openapi::api::core::v1::Container) -> Result<PodContext> {
        let mut mounts = self.pod_mounts.clone();
        let mut has_sa = false;
        for vm in container.volume_mounts.iter().flatten() {
            let Some(source) = self.volumes.get(&vm.name) else {
                bail!(
                    "container {}: volumeMount {:?} names no volume of the pod",
                    container.name,
                    vm.name
                );
            };
            let source = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) if sub.split('/').any(|c| c == "..") || sub.starts_with('/') => {
                    bail!(
                        "container {}: subPath {sub:?} must be a relative path inside the volume",
                        container.name
                    )
                }
                // A symlink inside the volume must not lead the mount out of it.
                Some(sub) => crate::rootfs::resolve_in_root(source, Path::new(sub))
                    .with_context(|| format!("container {}: subPath {sub:?}", container.name))?,
                None => source.clone(),
            };
            has_sa |= Path::new(&vm.mount_path) == Path::new(SERVICE_ACCOUNT_DIR);
            mounts.push(BindMount {
                source,
                target: PathBuf::from(&vm.mount_path),
                read_only: vm.read_only == Some(true),
            });
        }
        if let (Some(sa), false) = (&self.service_account, has_sa) {
            mounts.push(BindMount {
                source: sa.clone(),
                target: PathBuf::from(SERVICE_ACCOUNT_DIR),
                read_only: true,
            });
        }
        let ns = self.dir.join(NS_DIR);
        Ok(PodContext {
            netns: self.netns.as_ref().map(|n| Path::new("/run/netns").join(n)),
            uts: self.hostname.as_ref().map(|_| ns.join("uts")),
            ipc: Some(ns.join("ipc")),
            pid: self
                .pause
                .as_ref()
                .map(|p| PathBuf::from(format!("/proc/{}/ns/pid", p.pid))),
            mounts,
        })
    }
}

fn write_file(path: &Path, text: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Replace atomically: processes holding the old file (bind-mounted directories) see either
    // the old or the new content.
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// Writes `data` (ConfigMap text or Secret bytes) into a volume directory, with `items`
/// selecting and renaming keys, and removes files of keys that are gone. Files get `mode`,
/// else 0644 (`defaultMode`'s default for both volume types in the API). A key an item names
/// that `data` lacks is an error unless `optional` (the kubelet's rule in its configmap and
/// secret volume plugins). Returns whether anything changed.
pub fn write_key_files<V: AsRef<[u8]>>(
    dir: &Path,
    data: &BTreeMap<String, V>,
    items: Option<&[KeyToPath]>,
    mode: Option<i32>,
    optional: bool,
) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mut wanted: BTreeMap<PathBuf, (&[u8], Option<i32>)> = BTreeMap::new();
    match items {
        Some(items) if !items.is_empty() => {
            for it in items {
                let Some(v) = data.get(&it.key) else {
                    if optional {
                        continue;
                    }
                    bail!("key {:?} not found", it.key);
                };
                if it.path.starts_with('/') || it.path.split('/').any(|c| c == "..") {
                    bail!(
                        "item path {:?} must be relative and stay inside the volume",
                        it.path
                    );
                }
                wanted.insert(PathBuf::from(&it.path), (v.as_ref(), it.mode.or(mode)));
            }
        }
        _ => {
            for (k, v) in data {
                wanted.insert(PathBuf::from(k), (v.as_ref(), mode));
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut changed = false;
    for (rel, (value, mode)) in &wanted {
        let path = dir.join(rel);
        if std::fs::read(&path).ok().as_deref() != Some(*value) {
            write_file(&path, value)?;
            changed = true;
        }
        let mode = mode.unwrap_or(0o644) as u32 & 0o777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    // Top-level files of keys no longer present go away.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = PathBuf::from(e.file_name());
            let top_wanted = wanted
                .keys()
                .any(|w| w.components().next() == name.components().next());
            if !top_wanted && !name.to_string_lossy().starts_with('.') {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// A ConfigMap's data, None if it does not exist.
pub async fn fetch_config_map(
    k: &Kubelet,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let api: Api<ConfigMap> = Api::namespaced(k.client.clone(), namespace);
    let cm = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading configmap {namespace}/{name}"))?;
    Ok(cm.map(|cm| cm.data.unwrap_or_default()))
}

/// A Secret's data (bytes, decoded from the API's base64), None if it does not exist.
pub async fn fetch_secret(
    k: &Kubelet,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>> {
    let api: Api<Secret> = Api::namespaced(k.client.clone(), namespace);
    let s = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading secret {namespace}/{name}"))?;
    Ok(s.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }))
}

/// Writes (or refreshes) the files of the pod's ConfigMap, Secret and projected volumes. Run at
/// sandbox creation and then periodically, as the kubelet's volume manager does, so that
/// `reload` in cluster-dns sees an edited Corefile.
pub async fn sync_volumes(k: &Kubelet, pod: &Pod, dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = BTreeMap::new();
    let volumes: &[Volume] = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or(&[]);
    for v in volumes {
        let vdir = dir.join("volumes").join(&v.name);
        let path = if let Some(cm) = &v.config_map {
            match fetch_config_map(k, ns, &cm.name).await? {
                Some(data) => {
                    let optional = cm.optional == Some(true);
                    write_key_files(&vdir, &data, cm.items.as_deref(), cm.default_mode, optional)
                        .with_context(|| format!("volume {:?} (configmap {:?})", v.name, cm.name))?;
                }
                None if cm.optional == Some(true) => {
                    std::fs::create_dir_all(&vdir)
                        .with_context(|| format!("creating {}", vdir.display()))?;
                }
                None => bail!("volume {:?}: configmap {:?} not found", v.name, cm.name),
            }
            vdir
        } else if let Some(sv) = &v.secret {
            // Files on the pod's directory like ConfigMap volumes (no tmpfs: the node's /var
            // holds them), refreshed by the same periodic sync.
            let name = sv.secret_name.as_deref().unwrap_or_default();
            let optional = sv.optional == Some(true);
            match fetch_secret(k, ns, name).await? {
                Some(data) => {
                    write_key_files(&vdir, &data, sv.items.as_deref(), sv.default_mode, optional)
                        .with_context(|| format!("volume {:?} (secret {name:?})", v.name))?;
                }
                None if optional => {
                    std::fs::create_dir_all(&vdir)
                        .with_context(|| format!("creating {}", vdir.display()))?;
                }
                None => bail!("volume {:?}: secret {name:?} not found", v.name),
            }
            vdir
        } else if v.empty_dir.is_some() {
            std::fs::create_dir_all(&vdir)
                .with_context(|| format!("creating {}", vdir.display()))?;
            vdir
        } else if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            match hp.type_.as_deref().unwrap_or("") {
                "DirectoryOrCreate" => std::fs::create_dir_all(&p)
                    .with_context(|| format!("creating hostPath {}", p.display()))?,
                // An empty file, its folder made first (e.g. `/run/xtables.lock`, shared by
                // everything that runs iptables on the node).
                "FileOrCreate" if !p.exists() => {
                    if let Some(dir) = p.parent() {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("creating {}", dir.display()))?;
                    }
                    std::fs::File::create(&p)
                        .with_context(|| format!("creating hostPath {}", p.display()))?;
                }
                "" => {}
                _ if p.exists() => {}
                t => bail!(
                    "volume {:?}: hostPath {} ({t}) does not exist",
                    v.name,
                    p.display()
                ),
            }
            p
        } else if let Some(pr) = &v.projected {
            for src in pr.sources.iter().flatten() {
                if let Some(t) = &src.service_account_token {
                    let token = pod_token(
                        k,
                        pod,
                        t.audience.as_deref(),
                        t.expiration_seconds
                            .unwrap_or(token_manager::DEFAULT_EXPIRATION_SECS),
                    )
                    .await
                    .with_context(|| format!("volume {:?}", v.name))?;
                    write_key_files_merge(&vdir, &t.path, &token)?;
                }
                if let Some(cm) = &src.config_map {
                    let data = match fetch_config_map(k, ns, &cm.name).await? {
                        Some(d) => d,
                        // The root CA ConfigMap every namespace has in a real cluster.
                        None if cm.name == "kube-root-ca.crt" => k
                            .cfg
                            .credentials
                            .as_ref()
                            .map(|c| BTreeMap::from([("ca.crt".to_string(), c.ca_crt.clone())]))
                            .unwrap_or_default(),
                        None if cm.optional == Some(true) => BTreeMap::new(),
                        None => bail!("volume {:?}: configmap {:?} not found", v.name, cm.name),
                    };
                    for it in cm.items.iter().flatten() {
                        if let Some(val) = data.get(&it.key) {
                            write_key_files_merge(&vdir, &it.path, val)?;
                        }
                    }
                    if cm.items.as_ref().is_none_or(|i| i.is_empty()) {
                        for (key, val) in &data {
                            write_key_files_merge(&vdir, key, val)?;
                        }
                    }
                }
                if let Some(d) = &src.downward_api {
                    for it in d.items.iter().flatten() {
                        if let Some(f) = &it.field_ref {
                            let val =
                                super::env::field_value(pod, &f.field_path, None, k.cfg.node_ip)?;
                            write_key_files_merge(&vdir, &it.path, &val)?;
                        }
                    }
                }
                if let Some(sp) = &src.secret {
                    let data = match fetch_secret(k, ns, &sp.name).await? {
                        Some(d) => d,
                        None if sp.optional == Some(true) => BTreeMap::new(),
                        None => bail!("volume {:?}: secret {:?} not found", v.name, sp.name),
                    };
                    let mut any_item = false;
                    for it in sp.items.iter().flatten() {
                        any_item = true;
                        match data.get(&it.key) {
                            Some(val) => write_key_bytes_merge(&vdir, &it.path, val)?,
                            None if sp.optional == Some(true) => {}
                            None => bail!(
                                "volume {:?}: key {:?} of secret {:?} not found",
                                v.name,
                                it.key,
                                sp.name
                            ),
                        }
                    }
                    if !any_item {
                        for (key, val) in &data {
                            write_key_bytes_merge(&vdir, key, val)?;
                        }
                    }
                }
            }
            std::fs::create_dir_all(&vdir)
                .with_context(|| format!("creating {}", vdir.display()))?;
            vdir
        } else {
            bail!(
                "volume {:?}: this volume type is not supported (configMap, secret, emptyDir, hostPath and projected are)",
                v.name
            );
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

fn write_key_files_merge(dir: &Path, rel: &str, value: &str) -> Result<()> {
    write_key_bytes_merge(dir, rel, value.as_bytes())
}

fn write_key_bytes_merge(dir: &Path, rel: &str, value: &[u8]) -> Result<()> {
    if rel.starts_with('/') || rel.split('/').any(|c| c == "..") {
        bail!("projected path {rel:?} must be relative and stay inside the volume");
    }
    let path = dir.join(rel);
    if std::fs::read(&path).ok().as_deref() != Some(value) {
        write_file(&path, value)?;
    }
    Ok(())
}

/// The pod's service account (`spec.serviceAccountName`, which admission defaults).
fn service_account_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.service_account_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// A token of the pod's service account bound to the pod, from the token manager.
async fn pod_token(
    k: &Kubelet,
    pod: &Pod,
    audience: Option<&str>,
    expiration_secs: i64,
) -> Result<String> {
    let pod_ref = token_manager::PodRef {
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        service_account: service_account_name(pod),
        name: pod.metadata.name.as_deref().unwrap_or_default(),
        uid: pod.metadata.uid.as_deref().unwrap_or_default(),
    };
    k.tokens
        .token(&k.client, &pod_ref, audience, expiration_secs)
        .await
}

/// Whether the pod gets the service-account volume: its own
/// `automountServiceAccountToken`, else its service account's, else yes (kube-apiserver's
/// ServiceAccount admission decides the same way).
async fn automounts(k: &Kubelet, pod: &Pod) -> Result<bool> {
    if let Some(b) = pod
        .spec
        .as_ref()
        .and_then(|s| s.automount_service_account_token)
    {
        return Ok(b);
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = service_account_name(pod);
    let api: Api<ServiceAccount> = Api::namespaced(k.client.clone(), ns);
    let sa = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading service account {ns}/{name}"))?
        .with_context(|| format!("service account {ns}/{name} not found"))?;
    Ok(sa.automount_service_account_token != Some(false))
}

/// Writes (or refreshes) the files kube-apiserver's admission projects into every pod at
/// [`SERVICE_ACCOUNT_DIR`] (`kube-api-access-*`): `token`, a token of the pod's service
/// account bound to the pod (3607 s, renewed by the token manager), `ca.crt`, the cluster CA,
/// and `namespace`. None when the pod does not automount, or without cluster credentials.
pub async fn sync_service_account(k: &Kubelet, pod: &Pod, dir: &Path) -> Result<Option<PathBuf>> {
    let Some(creds) = &k.cfg.credentials else {
        return Ok(None);
    };
    if !automounts(k, pod).await? {
        return Ok(None);
    }
    let sa = dir.join("serviceaccount");
    write_key_files_merge(&sa, "ca.crt", &creds.ca_crt)?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    write_key_files_merge(&sa, "namespace", ns)?;
    refresh_service_account_token(k, pod, &sa).await?;
    Ok(Some(sa))
}

/// Rewrites `token` in a pod's service-account directory `sa_dir` when the token manager
/// renewed it (run with the periodic volume refresh).
pub async fn refresh_service_account_token(k: &Kubelet, pod: &Pod, sa_dir: &Path) -> Result<()> {
    let token = pod_token(k, pod, None, token_manager::DEFAULT_EXPIRATION_SECS).await?;
    write_key_files_merge(sa_dir, "token", &token)
}

/// The node's resolver settings for pod_dns.
fn node_dns(k: &Kubelet) -> NodeDns {
    NodeDns {
        cluster_dns: vec![IpAddr::V4(k.cfg.cluster_dns)],
        cluster_domain: k.cfg.cluster_domain.clone(),
        node_resolv_conf: ResolvConf::read(&k.cfg.node_resolv_conf).ok(),
        node_ips: vec![IpAddr::V4(k.cfg.node_ip)],
    }
}

/// Makes (or, after a kubelet restart, finds again) the sandbox of `pod`.
pub async fn prepare(k: &Kubelet, pod: &Pod) -> Result<Sandbox> {
    let uid = pod
        .metadata
        .uid
        .as_deref()
        .ok_or_else(|| anyhow!("pod has no uid"))?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| anyhow!("pod has no spec"))?;
    let host_network = spec.host_network == Some(true);
    let dir = pod_dir(&k.cfg.root, uid);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Files first (they may fail on a missing ConfigMap; nothing on the network is made yet).
    let volumes = sync_volumes(k, pod, &dir).await?;
    let dns_input = pod_dns::input_from_pod(pod).map_err(|e| anyhow!("{e}"))?;
    let dns = pod_dns::pod_dns(&dns_input, &node_dns(k));
    write_file(
        &dir.join("resolv.conf"),
        dns.resolv_conf().render().as_bytes(),
    )?;
    let hostname = pod_dns::pod_hostname(name, spec.hostname.as_deref());

    let (netns, ip) = if host_network {
        (None, k.cfg.node_ip)
    } else {
        let ip = k
            .ipam
            .lock()
            .map_err(|_| anyhow!("the IP allocator's lock is poisoned"))?
            .allocate(uid, &format!("{ns}/{name}"))?;
        let netns = netns_name(uid);
        ensure_netns(k, &netns, ip).await?;
        forward_host_ports(k, pod, uid, ip).await?;
        (Some(netns), ip)
    };

    let aliases = pod_dns::host_aliases_from_pod(pod);
    let hosts = if host_network {
        let node_hosts = std::fs::read_to_string(&k.cfg.node_hosts).unwrap_or_default();
        pod_dns::host_network_hosts_file(&node_hosts, &aliases)
    } else {
        pod_dns::managed_hosts_file(
            &[IpAddr::V4(ip)],
            &hostname,
            spec.subdomain.as_deref(),
            ns,
            &k.cfg.cluster_domain,
            &aliases,
        )
    };
    write_file(&dir.join("etc-hosts"), hosts.as_bytes())?;
    let mut pod_mounts = vec![
        BindMount {
            source: dir.join("etc-hosts"),
            target: PathBuf::from("/etc/hosts"),
            read_only: false,
        },
        BindMount {
            source: dir.join("resolv.conf"),
            target: PathBuf::from("/etc/resolv.conf"),
            read_only: false,
        },
    ];
    {
        let (dir, h) = (dir.clone(), (!host_network).then(|| hostname.clone()));
        tokio::task::spawn_blocking(move || pin_namespaces(&dir, h.as_deref()))
            .await
            .context("namespace task")??;
    }
    if !host_network {
        write_file(&dir.join("hostname"), format!("{hostname}\n").as_bytes())?;
        pod_mounts.push(BindMount {
            source: dir.join("hostname"),
            target: PathBuf::from("/etc/hostname"),
            read_only: false,
        });
    }

    let service_account = sync_service_account(k, pod, &dir).await?;

    let pause = if spec.share_process_namespace == Some(true) {
        let ctx = PodContext {
            netns: netns.as_ref().map(|n| Path::new("/run/netns").join(n)),
            uts: (!host_network).then(|| dir.join(NS_DIR).join("uts")),
            ipc: Some(dir.join(NS_DIR).join("ipc")),
            pid: None,
            mounts: vec![],
        };
        let spawned = crate::spawn::start_pause(&ctx)?;
        let group = spawned
            .child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| anyhow!("the pause process has no PID"))?;
        Some(Arc::new(Pause {
            pid: spawned.pid,
            group,
            _child: spawned.child,
        }))
    } else {
        None
    };

    Ok(Sandbox {
        pause,
        netns,
        ip,
        dir,
        hostname: (!host_network).then_some(hostname),
        pod_mounts,
        volumes,
        service_account,
        dns_warnings: dns.warnings,
    })
}

/// Makes the pod's network namespace, or keeps the one a previous kubelet made when it has
/// the pod's address.
async fn ensure_netns(k: &Kubelet, netns: &str, ip: Ipv4Addr) -> Result<()> {
    let address = Ipv4Net::new(ip, k.pod_cidr.prefix_len()).context("pod address prefix")?;
    let spec = NetnsSpec {
        name: netns.to_string(),
        address,
        gateway: k.gateway,
        bridge: k.cfg.bridge.clone(),
        resolv_conf: None,
    };
    tokio::task::spawn_blocking(move || {
        if pod_network::exists(&spec.name) {
            match pod_network::address_of(&spec.name) {
                Ok(Some(have)) if have == spec.address => return Ok(()),
                found => {
                    tracing::warn!(
                        "network namespace {} holds {found:?}, not {}: making it again",
                        spec.name,
                        spec.address
                    );
                    pod_network::delete(&spec.name)?;
                }
            }
        }
        pod_network::add(&spec)
    })
    .await
    .context("network namespace task")?
}

/// Programs the pod's `hostPort`s on the node ([`hostports`]), as the CNI `portmap` plugin does
/// when a KIND node's sandbox is made. Only where the kubelet manages the node's network.
async fn forward_host_ports(k: &Kubelet, pod: &Pod, uid: &str, ip: Ipv4Addr) -> Result<()> {
    let ports = hostports::from_pod(pod)?;
    if ports.is_empty() || !k.cfg.manage_network {
        return Ok(());
    }
    let net = Ipv4Net::new(ip, k.pod_cidr.prefix_len()).context("pod address prefix")?;
    let (ipt, bridge, uid) = (
        k.cfg.iptables.clone(),
        k.cfg.bridge.clone(),
        uid.to_string(),
    );
    tokio::task::spawn_blocking(move || hostports::forward(&ipt, &bridge, &uid, net, &ports))
        .await
        .context("hostPort task")?
        .context("programming the pod's hostPorts")
}

/// Removes everything of the pod with `uid`: its hostPort rules, its network namespace (the
/// veth pair goes with it), its files and logs, and its IP.
pub async fn teardown(k: &Kubelet, uid: &str, log_dir: Option<PathBuf>) -> Result<()> {
    if k.cfg.manage_network {
        let (ipt, id) = (k.cfg.iptables.clone(), uid.to_string());
        tokio::task::spawn_blocking(move || hostports::unforward(&ipt, &id))
            .await
            .context("hostPort task")??;
    }
    let netns = netns_name(uid);
    tokio::task::spawn_blocking(move || pod_network::delete(&netns))
        .await
        .context("network namespace task")??;
    k.tokens.forget_pod(uid);
    let dir = pod_dir(&k.cfg.root, uid);
    unpin_namespaces(&dir);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    if let Some(logs) = log_dir.filter(|d| d.exists()) {
        std::fs::remove_dir_all(&logs).with_context(|| format!("removing {}", logs.display()))?;
    }
    k.ipam
        .lock()
        .map_err(|_| anyhow!("the IP allocator's lock is poisoned"))?
        .release(uid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, path: &str) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode: None,
        }
    }

    #[test]
    fn key_files_with_items_modes_and_removal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("config-volume");
        let mut data = BTreeMap::from([
            (
                "Corefile".to_string(),
                ".:53 {\n    errors\n}\n".to_string(),
            ),
            ("other".to_string(), "x".to_string()),
        ]);
        assert!(
            write_key_files(
                &vol,
                &data,
                Some(&[item("Corefile", "Corefile")]),
                Some(0o420),
                false
            )
            .unwrap()
        );
        assert_eq!(
            std::fs::read_to_string(vol.join("Corefile")).unwrap(),
            ".:53 {\n    errors\n}\n"
        );
        assert!(!vol.join("other").exists());
        let mode = std::fs::metadata(vol.join("Corefile"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o420 & 0o777);
        // Unchanged data: nothing written.
        assert!(
            !write_key_files(
                &vol,
                &data,
                Some(&[item("Corefile", "Corefile")]),
                Some(0o420),
                false
            )
            .unwrap()
        );
        // All keys, then one removed.
        assert!(write_key_files(&vol, &data, None, None, false).unwrap());
        data.remove("other");
        assert!(write_key_files(&vol, &data, None, None, false).unwrap());
        assert!(!vol.join("other").exists());
        let e =
            write_key_files(&vol, &data, Some(&[item("missing", "m")]), None, false).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = write_key_files(
            &vol,
            &data,
            Some(&[item("Corefile", "../escape")]),
            None,
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("inside the volume"), "{e}");
    }

    #[test]
    fn secret_bytes_default_mode_and_optional_items() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("tls");
        let data = BTreeMap::from([("tls.key".to_string(), vec![0u8, 0xff, b'k'])]);
        assert!(write_key_files(&vol, &data, None, None, false).unwrap());
        assert_eq!(
            std::fs::read(vol.join("tls.key")).unwrap(),
            vec![0u8, 0xff, b'k']
        );
        let mode = std::fs::metadata(vol.join("tls.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        // An optional source's missing key is skipped, a required one's is an error.
        let items = [item("tls.key", "key.pem"), item("ca.crt", "ca.pem")];
        assert!(write_key_files(&vol, &data, Some(&items), Some(0o400), true).unwrap());
        assert!(vol.join("key.pem").exists() && !vol.join("ca.pem").exists());
        let e = write_key_files(&vol, &data, Some(&items), None, false).unwrap_err();
        assert!(e.to_string().contains("\"ca.crt\" not found"), "{e}");
    }

    #[test]
    fn container_context_maps_volume_mounts() {
        let sb = Sandbox {
            netns: Some("mk-u1".into()),
            ip: Ipv4Addr::new(10, 244, 0, 2),
            dir: PathBuf::from("/var/lib/minikind/kubelet/pods/u1"),
            hostname: Some("p".into()),
            pod_mounts: vec![],
            volumes: BTreeMap::from([("cfg".to_string(), PathBuf::from("/v/cfg"))]),
            service_account: Some(PathBuf::from("/v/sa")),
            dns_warnings: vec![],
            pause: None,
        };
        let c: k8s_openapi::api::core::v1::Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/coredns", "readOnly": true},
                             {"name": "cfg", "mountPath": "/etc/one", "subPath": "Corefile"}]
        }))
        .unwrap();
        let ctx = sb.context(&c).unwrap();
        assert_eq!(ctx.netns, Some(PathBuf::from("/run/netns/mk-u1")));
        assert_eq!(ctx.mounts.len(), 3);
        assert_eq!(ctx.mounts[0].target, PathBuf::from("/etc/coredns"));
        assert!(ctx.mounts[0].read_only);
        assert_eq!(ctx.mounts[1].source, PathBuf::from("/v/cfg/Corefile"));
        assert_eq!(ctx.mounts[2].target, PathBuf::from(SERVICE_ACCOUNT_DIR));
        let bad: k8s_openapi::api::core::v1::Container =
            serde_json::from_value(serde_json::json!({
                "name": "c", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]
            }))
            .unwrap();
        assert!(
            sb.context(&bad)
                .unwrap_err()
                .to_string()
                .contains("\"nope\"")
        );
    }
}
