//! Reading the evidence off the running cluster: the pod and its resolv.conf, the lookup run in
//! the pod (through the API server's exec, as `minikind exec`), each node's `iptables-save`
//! (docker exec), the cluster-dns replicas' query logs and Corefile (through the kubelet, as
//! `minikind logs`), the nodes' and the lab upstream's logs (`docker logs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, LogParams};
use minikind_pod_tools::attempt::Attempt;
use minikind_resolv_conf::ResolvConf;

use super::conntrack;
use super::model::{EmbeddedMode, PodRef};
use super::nodelocal::{self, NodeCacheEvidence};
use super::path::{Evidence, NodeInfo, Replica, UpstreamInfo};
use super::querylog;
use super::rules::Ruleset;
use crate::provider::docker;
use crate::provider::docker::exec::exec_in;
use crate::provider::docker::nodes;

/// What a command run in a pod printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `argv` in a pod's container through the API server and collects its output.
pub async fn exec_capture(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<&str>,
    argv: &[String],
) -> Result<Captured> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = crate::pod_commands::exec_to(pods, pod, container, argv, &mut stdout, &mut stderr)
        .await
        .with_context(|| format!("running `{}` in pod {pod}", argv.join(" ")))?;
    Ok(Captured {
        code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// The pod as the trace needs it; an error that says what is wrong when it can't be traced.
pub async fn client_pod(pods: &Api<Pod>, namespace: &str, name: &str) -> Result<PodRef> {
    let pod = pods
        .get_opt(name)
        .await
        .with_context(|| format!("reading pod {namespace}/{name}"))?
        .with_context(|| format!("pod {namespace}/{name} not found"))?;
    let status = pod.status.unwrap_or_default();
    let phase = status.phase.unwrap_or_else(|| "Unknown".into());
    if phase != "Running" {
        bail!("pod {namespace}/{name} is {phase}, not Running: nothing to run the lookup in");
    }
    Ok(PodRef {
        namespace: namespace.to_string(),
        name: name.to_string(),
        ip: status.pod_ip.and_then(|ip| ip.parse().ok()),
        node: pod.spec.and_then(|s| s.node_name),
    })
}

/// A node container's address on the cluster network and the embedded resolver it runs
/// (the agent serves 127.0.0.11 itself when started with `MINIKIND_DNS_EMBEDDED=builtin`).
async fn inspect_node(
    docker: &Docker,
    node: &str,
    network: &str,
) -> (Option<IpAddr>, EmbeddedMode) {
    let Ok(info) = docker
        .inspect_container(node, None::<InspectContainerOptions>)
        .await
    else {
        return (None, EmbeddedMode::Docker);
    };
    let ip = info
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|mut n| n.remove(network))
        .and_then(|e| e.ip_address)
        .and_then(|ip| ip.parse().ok());
    let builtin = info
        .config
        .and_then(|c| c.env)
        .unwrap_or_default()
        .iter()
        .any(|e| e == &format!("{}=builtin", minikind_contract::env::DNS_EMBEDDED));
    let mode = if builtin {
        EmbeddedMode::Builtin
    } else {
        EmbeddedMode::Docker
    };
    (ip, mode)
}

/// A container's log since `since` with the engine's timestamps.
async fn docker_log(docker: &Docker, container: &str, since: SystemTime) -> Result<String> {
    let secs = since
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .saturating_sub(1);
    let opts = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(i32::try_from(secs).unwrap_or(i32::MAX))
        .build();
    let mut stream = docker.logs(container, Some(opts));
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading the log of {container}"))?;
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    Ok(text)
}

/// A pod container's log since `since`, with the kubelet's timestamps.
async fn pod_log(
    pods: &Api<Pod>,
    pod: &str,
    container: Option<String>,
    since: SystemTime,
) -> Result<String> {
    let ago = SystemTime::now()
        .duration_since(since)
        .unwrap_or_default()
        .as_secs()
        + 2;
    let params = LogParams {
        container,
        timestamps: true,
        since_seconds: Some(i64::try_from(ago).unwrap_or(i64::MAX)),
        ..Default::default()
    };
    pods.logs(pod, &params)
        .await
        .with_context(|| format!("reading the log of pod {pod}"))
}

/// The `-conf` file a CoreDNS container is started with (its default is `Corefile` in its
/// working directory; kubeadm's deployment passes `/etc/coredns/Corefile`).
fn corefile_path(pod: &Pod) -> String {
    let args = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.args.clone())
        .unwrap_or_default();
    args.iter()
        .position(|a| a == "-conf")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "/etc/coredns/Corefile".to_string())
}

/// What a Corefile says for the trace: whether the root zone logs queries, and where it
/// forwards (`None` for a resolv.conf-style file to read).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CorefileFacts {
    pub logs: bool,
    /// The zones the `kubernetes` plugin answers (its arguments, else the block's zones).
    pub kubernetes_zones: Vec<String>,
    pub forward_ips: Vec<IpAddr>,
    pub forward_file: Option<String>,
}

/// Reads the server block(s) for the root zone of a Corefile.
pub fn corefile_facts(text: &str) -> Result<CorefileFacts> {
    let parsed = minikind_cluster_dns::corefile::parse_str(text, "Corefile", None, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut facts = CorefileFacts::default();
    for block in &parsed.blocks {
        let zones: Vec<String> = block
            .keys
            .iter()
            .map(|k| {
                let zone = k.text.trim_start_matches("dns://");
                let zone = zone.split(':').next().unwrap_or(zone);
                if zone.ends_with('.') {
                    zone.to_string()
                } else {
                    format!("{zone}.")
                }
            })
            .collect();
        if !zones.iter().any(|z| z == ".") {
            continue;
        }
        for d in &block.directives {
            match d.name.text.as_str() {
                "log" => facts.logs = true,
                "kubernetes" => {
                    let args = d.arg_strs();
                    if args.is_empty() {
                        facts.kubernetes_zones.extend(zones.iter().cloned());
                    }
                    for z in args {
                        facts.kubernetes_zones.push(if z.ends_with('.') {
                            z.to_string()
                        } else {
                            format!("{z}.")
                        });
                    }
                }
                "forward" => {
                    for to in d.arg_strs().iter().skip(1) {
                        let to = to.trim_start_matches("dns://");
                        if to.starts_with('/') {
                            facts.forward_file = Some(to.to_string());
                        } else if let Ok(ip) = to.parse::<IpAddr>() {
                            facts.forward_ips.push(ip);
                        } else if let Ok(addr) = to.parse::<SocketAddr>() {
                            facts.forward_ips.push(addr.ip());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(facts)
}

/// Reads everything the trace needs. `attempts` decide which service chains (and so which
/// replicas) matter; `notes` collects what could not be read.
#[allow(clippy::too_many_arguments)]
pub async fn evidence(
    docker: &Docker,
    client: &kube::Client,
    cluster: &str,
    pod: &PodRef,
    attempts: &[Attempt],
    window: (SystemTime, SystemTime),
    mut node_cache: Option<NodeCacheEvidence>,
    notes: &mut Vec<String>,
) -> Result<Evidence> {
    let network = nodes::network_name(cluster);
    // Nodes: address, embedded resolver, rules.
    let mut nodes = BTreeMap::new();
    let containers = docker::containers(docker, docker::cluster_filter(cluster)).await?;
    let upstream_name = nodes::upstream_name(cluster);
    for c in containers.iter().filter(|c| c.name != upstream_name) {
        let (ip, embedded) = inspect_node(docker, &c.name, &network).await;
        let rules = match exec_in(docker, &c.name, &["iptables-save"]).await {
            Ok(r) if r.ok() => Some(Ruleset::parse(&r.stdout)),
            Ok(r) => {
                notes.push(format!("iptables-save on {}: {}", c.name, r.stderr.trim()));
                None
            }
            Err(e) => {
                notes.push(format!("iptables-save on {}: {e:#}", c.name));
                None
            }
        };
        // Every node's table: the client's node DNATs its queries to an endpoint, a
        // replica's node DNATs the replica's forwards to the embedded resolver. Read right
        // after the lookup (UDP flows live 30 s).
        let conntrack = match exec_in(docker, &c.name, &["cat", conntrack::PROC_PATH]).await {
            Ok(r) if r.ok() => conntrack::parse(&r.stdout),
            Ok(r) => {
                notes.push(format!(
                    "{} on {}: {}",
                    conntrack::PROC_PATH,
                    c.name,
                    r.stderr.trim()
                ));
                Vec::new()
            }
            Err(e) => {
                notes.push(format!("{} on {}: {e:#}", conntrack::PROC_PATH, c.name));
                Vec::new()
            }
        };
        nodes.insert(
            c.name.clone(),
            NodeInfo {
                ip,
                rules,
                embedded,
                queries: Vec::new(),
                conntrack,
            },
        );
    }
    let node_name = pod.node.clone().unwrap_or_default();
    if !nodes.contains_key(&node_name) {
        bail!(
            "pod {} runs on node {node_name:?}, which is not a container of cluster {cluster}",
            pod.display()
        );
    }

    // The endpoints the client's node could send each attempt to.
    let mut endpoint_ips = BTreeSet::new();
    if let Some(rules) = nodes.get(&node_name).and_then(|n| n.rules.as_ref()) {
        for a in attempts {
            if let Some(svc) = rules.service_rule(a.server, a.transport.as_proto()) {
                for ep in rules.endpoints(svc.target().unwrap_or_default()) {
                    if let Some(to) = ep.to() {
                        endpoint_ips.insert(to.ip());
                    }
                }
            }
        }
    }

    // The node-local cache: what the lookup added to its counters, and the endpoints of the
    // Service it forwards cluster names to (their replicas' logs show its TCP forwards).
    if let Some(cache) = node_cache.as_mut() {
        node_cache_after(client, cache).await;
        if let (Some(up), Some(rules)) = (
            cache.upstream_service,
            nodes.get(&node_name).and_then(|n| n.rules.as_ref()),
        ) && let Some(svc) = rules.service_rule(up, "tcp")
        {
            for ep in rules.endpoints(svc.target().unwrap_or_default()) {
                if let Some(to) = ep.to() {
                    endpoint_ips.insert(to.ip());
                }
            }
        }
    }
    // How many queries the cache forwarded to that Service during the lookup: their lines
    // are waited for below like the service attempts'.
    let cache_forwards = node_cache
        .as_ref()
        .and_then(|c| {
            Some(
                *c.delta
                    .as_ref()?
                    .forwards
                    .get(&c.upstream_service?.to_string())?,
            )
        })
        .unwrap_or(0);
    let node_ip = nodes.get(&node_name).and_then(|n| n.ip);
    // The addresses the replicas see those forwards come from (kube-proxy's masquerade).
    let cache_clients = match (
        node_ip,
        node_cache.as_ref().and_then(|c| c.upstream_service),
    ) {
        (Some(ip), Some(up)) => nodelocal::seen_as(&nodes[&node_name].conntrack, ip, up),
        _ => Vec::new(),
    };

    // The replicas behind them: their Corefile, where they forward, their query log.
    let all_pods: Api<Pod> = Api::all(client.clone());
    let listed = all_pods
        .list(&ListParams::default())
        .await
        .context("listing pods")?;
    let mut replicas = Vec::new();
    let mut corefile_logs = None;
    for p in listed.items {
        let ip: Option<IpAddr> = p
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let Some(ip) = ip.filter(|ip| endpoint_ips.contains(ip)) else {
            continue;
        };
        if p.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            continue;
        }
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let container = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone());
        let mut replica = Replica {
            name: format!("{ns}/{name}"),
            ip: Some(ip),
            node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
            ..Default::default()
        };
        let cat = |path: String| {
            let api = api.clone();
            let name = name.clone();
            let container = container.clone();
            async move {
                exec_capture(
                    &api,
                    &name,
                    container.as_deref(),
                    &["cat".to_string(), path],
                )
                .await
            }
        };
        match cat(corefile_path(&p)).await {
            Ok(out) if out.code == 0 => match corefile_facts(&out.stdout) {
                Ok(facts) => {
                    corefile_logs = Some(corefile_logs.unwrap_or(false) || facts.logs);
                    replica.forward_to = facts.forward_ips.clone();
                    replica.zones = facts.kubernetes_zones.clone();
                    if let Some(file) = facts.forward_file {
                        match cat(file.clone()).await {
                            Ok(out) if out.code == 0 => replica
                                .forward_to
                                .extend(ResolvConf::parse(&out.stdout).nameservers()),
                            Ok(out) => notes.push(format!(
                                "{}: cannot read {file}: {}",
                                replica.name,
                                out.stderr.trim()
                            )),
                            Err(e) => notes.push(format!("{}: {e:#}", replica.name)),
                        }
                    }
                }
                Err(e) => notes.push(format!(
                    "{}: its Corefile does not parse: {e:#}",
                    replica.name
                )),
            },
            Ok(out) => notes.push(format!(
                "{}: cannot read its Corefile: {}",
                replica.name,
                out.stderr.trim()
            )),
            Err(e) => notes.push(format!("{}: {e:#}", replica.name)),
        }
        replicas.push((api, name, container, replica));
    }

    // The replicas' lines reach their log file a moment after the reply: wait (boundedly)
    // until every exchange that got a reply from a service is in some replica's log.
    let wanted: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.rcode().is_some())
        .filter(|a| {
            nodes
                .get(&node_name)
                .and_then(|n| n.rules.as_ref())
                .is_some_and(|r| r.service_rule(a.server, a.transport.as_proto()).is_some())
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        for (api, name, container, replica) in &mut replicas {
            match pod_log(api, name, container.clone(), window.0).await {
                Ok(text) => {
                    replica.queries = querylog::parse_all(&text);
                    replica.errors = querylog::parse_errors(&text);
                    replica.log_error = None;
                }
                Err(e) => replica.log_error = Some(format!("{e:#}")),
            }
        }
        let all_seen = wanted.iter().all(|a| {
            replicas.iter().any(|(_, _, _, r)| {
                r.queries
                    .iter()
                    .any(|q| Some(q.client) == a.local && q.id == a.id && q.asks(&a.name, &a.rtype))
            })
        });
        let forwards_seen = replicas
            .iter()
            .flat_map(|(_, _, _, r)| r.queries.iter())
            .filter(|q| {
                (Some(q.client.ip()) == node_ip || cache_clients.contains(&q.client))
                    && q.proto.as_str() == "tcp"
                    && q.time
                        .is_none_or(|t| t + Duration::from_secs(1) >= window.0)
            })
            .count() as u64;
        let all_seen = all_seen && forwards_seen >= cache_forwards;
        if all_seen || corefile_logs == Some(false) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let replicas: Vec<Replica> = replicas.into_iter().map(|(_, _, _, r)| r).collect();

    // The builtin embedded resolvers' and the upstream's logs.
    for (name, info) in nodes.iter_mut() {
        if info.embedded == EmbeddedMode::Builtin {
            match docker_log(docker, name, window.0).await {
                Ok(text) => info.queries = querylog::parse_all(&text),
                Err(e) => notes.push(format!("{e:#}")),
            }
        }
    }
    let upstream = if containers.iter().any(|c| c.name == upstream_name) {
        let ip = nodes::container_ip(docker, &upstream_name, &network)
            .await
            .ok()
            .and_then(|ip| ip.parse().ok());
        let queries = match docker_log(docker, &upstream_name, window.0).await {
            Ok(text) => querylog::parse_all(&text),
            Err(e) => {
                notes.push(format!("{e:#}"));
                Vec::new()
            }
        };
        Some(UpstreamInfo {
            container: upstream_name,
            ip,
            queries,
        })
    } else {
        None
    };

    Ok(Evidence {
        client: pod.clone(),
        nodes,
        replicas,
        corefile_logs,
        upstream,
        node_cache,
        attempts: attempts.to_vec(),
        window,
    })
}

/// The cache pod on `node` and its counters, read just before a lookup; `None` when no cache
/// runs there (or the pods cannot be listed: the trace then shows the rule alone).
pub async fn node_cache_before(client: &kube::Client, node: &str) -> Option<NodeCacheEvidence> {
    let pod = nodelocal::cache_pod(client, node).await.ok()??;
    let mut ev = NodeCacheEvidence {
        pod: format!("{}/{pod}", minikind_control_plane::dns_addon::NAMESPACE),
        name: pod.clone(),
        ..Default::default()
    };
    match nodelocal::scrape(client, &pod).await {
        Ok(c) => ev.before = Some(c),
        Err(e) => ev.error = Some(format!("{e:#}")),
    }
    Some(ev)
}

/// The counters after the lookup, and the upstream Service's address.
async fn node_cache_after(client: &kube::Client, cache: &mut NodeCacheEvidence) {
    match nodelocal::upstream_service(client).await {
        Ok(up) => cache.upstream_service = up,
        Err(e) => cache.error = Some(format!("{e:#}")),
    }
    let Some(before) = cache.before.as_ref() else {
        return;
    };
    match nodelocal::scrape(client, &cache.name).await {
        Ok(after) => cache.delta = Some(after.since(before)),
        Err(e) => cache.error = Some(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corefile_facts_of_kubeadm_and_logging_corefiles() {
        let kubeadm = minikind_control_plane::dns_addon::corefile("cluster.local");
        assert_eq!(
            corefile_facts(&kubeadm).unwrap(),
            CorefileFacts {
                logs: false,
                kubernetes_zones: ["cluster.local.", "in-addr.arpa.", "ip6.arpa."]
                    .map(String::from)
                    .to_vec(),
                forward_ips: vec![],
                forward_file: Some("/etc/resolv.conf".into()),
            }
        );
        let logging = kubeadm.replacen("    errors\n", "    log\n    errors\n", 1);
        assert!(corefile_facts(&logging).unwrap().logs);
        let direct = ".:53 {\n    forward . 192.0.2.53 dns://192.0.2.54:53\n}\n\
                      example.org {\n    log\n}\n";
        assert_eq!(
            corefile_facts(direct).unwrap(),
            CorefileFacts {
                logs: false,
                kubernetes_zones: vec![],
                forward_ips: vec!["192.0.2.53".parse().unwrap(), "192.0.2.54".parse().unwrap()],
                forward_file: None,
            }
        );
        assert!(corefile_facts("}{").is_err());
    }
}
