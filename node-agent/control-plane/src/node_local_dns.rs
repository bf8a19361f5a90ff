//! The NodeLocal DNSCache add-on as kubernetes' cluster/addons/dns/nodelocaldns manifest has
//! it: ServiceAccount `node-local-dns`, Service `kube-dns-upstream` (kube-dns's selector, so
//! the caches reach the CoreDNS pods without going through the kube-dns address they may
//! hold themselves), ConfigMap `node-local-dns` with node-cache's Corefile template, its
//! installer pillars filled (`minikind_cluster_dns::nodecache::template`), DaemonSet
//! `node-local-dns` (hostNetwork, `system-node-critical`, one pod per node, running
//! cluster-dns in node-cache mode from minikind's tools image) and the headless `node-local-dns`
//! Service for its metrics.
//!
//! Two modes, as the add-on's docs give them: [`Mode::Iptables`] keeps pods on the kube-dns
//! ClusterIP and the cache binds that address too, answering on the node before kube-proxy's
//! DNAT; [`Mode::Local`] binds only the local address, and the kubelet's cluster DNS must point
//! at it (the agent sets that up from the node's environment).
//!
//! Like [`crate::dns_addon`], objects go through the API; [`install`] creates what is missing
//! and [`remove`] deletes what is there.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, Container, ContainerPort, EnvVar, HTTPGetAction, HostPathVolumeSource,
    PodSpec, PodTemplateSpec, Probe, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use minikind_cluster_dns::nodecache::{self, template};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::dns_addon::{APP_LABEL, NAMESPACE, cluster_dns_ip};

/// The add-on's name: DaemonSet, ConfigMap, ServiceAccount and metrics Service.
pub const NAME: &str = "node-local-dns";
/// The Service in front of the CoreDNS pods that the caches forward cluster names to.
pub const UPSTREAM_SERVICE: &str = "kube-dns-upstream";
/// The label of the cache pods.
pub const APP: (&str, &str) = ("k8s-app", "node-local-dns");
/// The link-local address the add-on's docs use.
pub const DEFAULT_ADDRESS: Ipv4Addr = Ipv4Addr::new(169, 254, 20, 10);
/// node-cache's health port (`health <local>:8080`) and metrics port (`prometheus :9253`).
pub const HEALTH_PORT: i32 = 8080;
pub const METRICS_PORT: i32 = 9253;
/// The image the cache pods run: minikind's tools (pre-loaded on every node), started as
/// `cluster-dns node-cache`.
pub const IMAGE: &str = concat!("minikind/tools:", env!("CARGO_PKG_VERSION"));

/// How pods reach the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Pods keep the kube-dns ClusterIP; the cache holds it too (kube-proxy iptables mode).
    Iptables,
    /// The kubelet's cluster DNS is the local address.
    Local,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Local => "local",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "iptables" => Ok(Mode::Iptables),
            "local" => Ok(Mode::Local),
            other => Err(format!("{other:?} is not iptables or local")),
        }
    }
}

/// What the add-on is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLocalDns {
    pub domain: String,
    pub address: Ipv4Addr,
    pub mode: Mode,
}

impl NodeLocalDns {
    /// The installer's pillars for a service subnet (kube-dns is its 10th address).
    pub fn pillars(&self, service_subnet: Ipv4Net) -> template::InstallPillars {
        template::InstallPillars {
            domain: self.domain.clone(),
            local_ip: IpAddr::V4(self.address),
            dns_server: match self.mode {
                Mode::Iptables => Some(IpAddr::V4(cluster_dns_ip(service_subnet))),
                Mode::Local => None,
            },
        }
    }

    /// The value of the node variable `MINIKIND_NODE_LOCAL_DNS`: `<mode>,<address>`.
    pub fn to_env(&self) -> String {
        format!("{},{}", self.mode.as_str(), self.address)
    }

    /// Reads [`Self::to_env`]'s format back, for a cluster domain.
    pub fn from_env(domain: &str, value: &str) -> Result<Self, String> {
        let (mode, address) = value
            .split_once(',')
            .ok_or_else(|| format!("{value:?} is not <mode>,<address>"))?;
        Ok(NodeLocalDns {
            domain: domain.to_string(),
            address: address
                .parse()
                .map_err(|_| format!("{value:?}: {address:?} is not an IPv4 address"))?,
            mode: Mode::parse(mode).map_err(|e| format!("{value:?}: {e}"))?,
        })
    }

    /// The address pods' resolv.conf names: the local one, or kube-dns's in iptables mode.
    pub fn pod_nameserver(&self, service_subnet: Ipv4Net) -> Ipv4Addr {
        match self.mode {
            Mode::Iptables => cluster_dns_ip(service_subnet),
            Mode::Local => self.address,
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, l: Option<BTreeMap<String, String>>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        labels: l,
        ..Default::default()
    }
}

fn dns_ports() -> Vec<ServicePort> {
    ["UDP", "TCP"]
        .iter()
        .map(|proto| ServicePort {
            name: Some(if *proto == "UDP" { "dns" } else { "dns-tcp" }.into()),
            port: 53,
            protocol: Some((*proto).into()),
            target_port: Some(IntOrString::Int(53)),
            ..Default::default()
        })
        .collect()
}

pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(
            NAME,
            Some(labels(&[("kubernetes.io/cluster-service", "true")])),
        ),
        ..Default::default()
    }
}

/// `kube-dns-upstream`: kube-dns's selector under a second ClusterIP.
pub fn upstream_service() -> Service {
    Service {
        metadata: meta(
            UPSTREAM_SERVICE,
            Some(labels(&[
                APP_LABEL,
                ("kubernetes.io/cluster-service", "true"),
                ("kubernetes.io/name", "KubeDNSUpstream"),
            ])),
        ),
        spec: Some(ServiceSpec {
            selector: Some(labels(&[APP_LABEL])),
            ports: Some(dns_ports()),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The headless Service that lists the caches for metrics scrapers.
pub fn metrics_service() -> Service {
    let mut m = meta(NAME, Some(labels(&[APP])));
    m.annotations = Some(labels(&[
        ("prometheus.io/port", "9253"),
        ("prometheus.io/scrape", "true"),
    ]));
    Service {
        metadata: m,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels(&[APP])),
            ports: Some(vec![ServicePort {
                name: Some("metrics".into()),
                port: METRICS_PORT,
                target_port: Some(IntOrString::Int(METRICS_PORT)),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn config_map(addon: &NodeLocalDns, service_subnet: Ipv4Net) -> ConfigMap {
    ConfigMap {
        metadata: meta(
            NAME,
            Some(labels(&[("addonmanager.kubernetes.io/mode", "Reconcile")])),
        ),
        data: Some(BTreeMap::from([(
            "Corefile".to_string(),
            template::corefile_template(&addon.pillars(service_subnet)),
        )])),
        ..Default::default()
    }
}

/// The DaemonSet. `upstream_ip` is `kube-dns-upstream`'s ClusterIP, given to node-cache as
/// the variable the kubelet would set for that Service (minikind's kubelet sets only the
/// `kubernetes` Service's).
pub fn daemon_set(addon: &NodeLocalDns, service_subnet: Ipv4Net, upstream_ip: IpAddr) -> DaemonSet {
    let app = labels(&[APP]);
    let locals: Vec<String> = addon
        .pillars(service_subnet)
        .local_ips()
        .iter()
        .map(IpAddr::to_string)
        .collect();
    let port = |name: &str, p: i32, proto: &str| ContainerPort {
        name: Some(name.into()),
        container_port: p,
        protocol: Some(proto.into()),
        ..Default::default()
    };
    let mut template_meta = ObjectMeta {
        labels: Some(app.clone()),
        ..Default::default()
    };
    template_meta.annotations = Some(labels(&[
        ("prometheus.io/port", "9253"),
        ("prometheus.io/scrape", "true"),
    ]));
    let toleration = |key: Option<&str>, effect: Option<&str>| Toleration {
        key: key.map(Into::into),
        effect: effect.map(Into::into),
        operator: Some("Exists".into()),
        ..Default::default()
    };
    DaemonSet {
        metadata: meta(
            NAME,
            Some(labels(&[APP, ("kubernetes.io/cluster-service", "true")])),
        ),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(app),
                ..Default::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::String("10%".into())),
                    ..Default::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    priority_class_name: Some("system-node-critical".into()),
                    service_account_name: Some(NAME.into()),
                    host_network: Some(true),
                    // Not the cluster DNS: the cache's `.` forward reads the node's resolv.conf.
                    dns_policy: Some("Default".into()),
                    tolerations: Some(vec![
                        toleration(Some("CriticalAddonsOnly"), None),
                        toleration(None, Some("NoExecute")),
                        toleration(None, Some("NoSchedule")),
                    ]),
                    containers: vec![Container {
                        name: "node-cache".into(),
                        image: Some(IMAGE.into()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        command: Some(vec!["cluster-dns".into(), "node-cache".into()]),
                        args: Some(vec![
                            "-localip".into(),
                            locals.join(","),
                            "-conf".into(),
                            "/etc/Corefile".into(),
                            "-upstreamsvc".into(),
                            UPSTREAM_SERVICE.into(),
                            "-pidfile".into(),
                            "/tmp/node-cache.pid".into(),
                        ]),
                        env: Some(vec![EnvVar {
                            name: nodecache::service_host_env(UPSTREAM_SERVICE),
                            value: Some(upstream_ip.to_string()),
                            ..Default::default()
                        }]),
                        security_context: Some(SecurityContext {
                            capabilities: Some(Capabilities {
                                add: Some(vec!["NET_ADMIN".into()]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ports: Some(vec![
                            port("dns", 53, "UDP"),
                            port("dns-tcp", 53, "TCP"),
                            port("metrics", METRICS_PORT, "TCP"),
                        ]),
                        liveness_probe: Some(Probe {
                            http_get: Some(HTTPGetAction {
                                host: Some(addon.address.to_string()),
                                path: Some("/health".into()),
                                port: IntOrString::Int(HEALTH_PORT),
                                scheme: Some("HTTP".into()),
                                ..Default::default()
                            }),
                            initial_delay_seconds: Some(60),
                            timeout_seconds: Some(5),
                            period_seconds: Some(10),
                            success_threshold: Some(1),
                            failure_threshold: Some(3),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![
                            VolumeMount {
                                name: "xtables-lock".into(),
                                mount_path: "/run/xtables.lock".into(),
                                read_only: Some(false),
                                ..Default::default()
                            },
                            VolumeMount {
                                name: "config-volume".into(),
                                mount_path: "/etc/coredns".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![
                        // Shared with kube-proxy and the agent: one lock for the node's rules.
                        Volume {
                            name: "xtables-lock".into(),
                            host_path: Some(HostPathVolumeSource {
                                path: "/run/xtables.lock".into(),
                                type_: Some("FileOrCreate".into()),
                            }),
                            ..Default::default()
                        },
                        crate::dns_addon::corefile_volume(NAME, "Corefile.base"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn api<K>(client: &kube::Client) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    Api::namespaced(client.clone(), NAMESPACE)
}

fn what<K: kube::Resource>(name: &str) -> String
where
    K::DynamicType: Default,
{
    format!("{} {NAMESPACE}/{name}", K::kind(&K::DynamicType::default()))
}

async fn create_if_absent<K>(client: &kube::Client, obj: &K) -> Result<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    match api::<K>(client).create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", what::<K>(&name))),
    }
}

async fn delete_if_present<K>(client: &kube::Client, name: &str) -> Result<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match api::<K>(client)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e).with_context(|| format!("deleting {}", what::<K>(name))),
    }
}

/// Creates whatever of the add-on is missing; returns how many objects were created. The
/// upstream Service comes first: its ClusterIP goes into the DaemonSet.
pub async fn install(
    client: &kube::Client,
    service_subnet: Ipv4Net,
    addon: &NodeLocalDns,
) -> Result<usize> {
    let mut created = create_if_absent(client, &upstream_service()).await? as usize;
    let upstream = api::<Service>(client)
        .get(UPSTREAM_SERVICE)
        .await
        .with_context(|| format!("reading {}", what::<Service>(UPSTREAM_SERVICE)))?;
    let Some(ip) = upstream
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    else {
        bail!("{} has no ClusterIP", what::<Service>(UPSTREAM_SERVICE));
    };
    created += create_if_absent(client, &service_account()).await? as usize;
    created += create_if_absent(client, &config_map(addon, service_subnet)).await? as usize;
    created += create_if_absent(client, &metrics_service()).await? as usize;
    created += create_if_absent(client, &daemon_set(addon, service_subnet, ip)).await? as usize;
    Ok(created)
}

/// Deletes the add-on's objects (the DaemonSet first, so its pods stop and tear their rules
/// down); returns how many were there.
pub async fn remove(client: &kube::Client) -> Result<usize> {
    let mut n = delete_if_present::<DaemonSet>(client, NAME).await? as usize;
    n += delete_if_present::<ConfigMap>(client, NAME).await? as usize;
    n += delete_if_present::<Service>(client, NAME).await? as usize;
    n += delete_if_present::<Service>(client, UPSTREAM_SERVICE).await? as usize;
    n += delete_if_present::<ServiceAccount>(client, NAME).await? as usize;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Ipv4Net {
        "10.96.0.0/16".parse().unwrap()
    }

    fn addon(mode: Mode) -> NodeLocalDns {
        NodeLocalDns {
            domain: "cluster.local".into(),
            address: DEFAULT_ADDRESS,
            mode,
        }
    }

    #[test]
    fn the_config_map_is_node_caches_template_with_the_installer_pillars() {
        let cm = config_map(&addon(Mode::Iptables), subnet());
        let c = &cm.data.unwrap()["Corefile"];
        for want in [
            "cluster.local:53 {",
            "success 9984 30",
            "denial 9984 5",
            "bind 169.254.20.10 10.96.0.10",
            "forward . __PILLAR__CLUSTER__DNS__ {",
            "force_tcp",
            "in-addr.arpa:53 {",
            "ip6.arpa:53 {",
            "forward . __PILLAR__UPSTREAM__SERVERS__",
            "prometheus :9253",
            "health 169.254.20.10:8080",
        ] {
            assert!(c.contains(want), "missing {want:?} in\n{c}");
        }
        let local = config_map(&addon(Mode::Local), subnet()).data.unwrap()["Corefile"].clone();
        assert!(!local.contains("10.96.0.10"), "{local}");
        assert_eq!(addon(Mode::Local).pod_nameserver(subnet()), DEFAULT_ADDRESS);
        assert_eq!(
            addon(Mode::Iptables).pod_nameserver(subnet()),
            Ipv4Addr::new(10, 96, 0, 10)
        );
    }

    #[test]
    fn the_daemon_set_is_the_add_ons() {
        let ds = daemon_set(
            &addon(Mode::Iptables),
            subnet(),
            "10.96.0.20".parse().unwrap(),
        );
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(
            pod.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        let c = &pod.containers[0];
        let args = c.args.clone().unwrap();
        assert_eq!(
            args[..2],
            ["-localip".to_string(), "169.254.20.10,10.96.0.10".into()]
        );
        let env = &c.env.as_ref().unwrap()[0];
        assert_eq!(env.name, "KUBE_DNS_UPSTREAM_SERVICE_HOST");
        assert_eq!(env.value.as_deref(), Some("10.96.0.20"));
        let probe = c
            .liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.host.as_deref(), Some("169.254.20.10"));
        let up = upstream_service().spec.unwrap();
        assert_eq!(up.selector.unwrap()["k8s-app"], "kube-dns");
        assert_eq!(up.cluster_ip, None, "allocated by the API server");
        assert_eq!(Mode::parse("local"), Ok(Mode::Local));
        let a = addon(Mode::Local);
        assert_eq!(a.to_env(), "local,169.254.20.10");
        assert_eq!(NodeLocalDns::from_env("cluster.local", &a.to_env()), Ok(a));
        assert!(NodeLocalDns::from_env("cluster.local", "local").is_err());
        assert!(
            NodeLocalDns::from_env("cluster.local", "ipvs,1.2.3.4")
                .unwrap_err()
                .contains("ipvs")
        );
        assert!(
            Mode::parse("ipvs")
                .unwrap_err()
                .contains("iptables or local")
        );
    }
}
