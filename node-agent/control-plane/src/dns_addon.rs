//! The DNS add-on as kubeadm installs it (and so KIND): the `coredns` ServiceAccount the pods
//! run as (bound to kubeadm's `system:coredns` ClusterRole by the API server's default policy,
//! `minikind_apiserver::auth::policy`), the `coredns` ConfigMap with kubeadm's
//! Corefile, the `coredns` Deployment (2 replicas) and the `kube-dns` Service at the 10th
//! service address. The CoreDNS pods run minikind's cluster-dns (the kubelet maps CoreDNS
//! images to it).
//!
//! This is the one implementation: `minikind create` calls [`install`] once every node is
//! Ready (so that the replicas can spread over the nodes), and the standalone `minikind
//! apiserver --dns-addon` calls it through `ControlPlaneConfig::dns_addon`. Both go through the
//! API like kubeadm does, so the objects get the same admission (defaults, ClusterIP claim) as
//! anything a user creates.
//!
//! Objects that already exist are left as they are, so a user's `kubectl scale deployment
//! coredns` or edited Corefile survives a second install (the standalone API server installs
//! at every start, on a store that may hold them already).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, Service, ServiceAccount,
    ServicePort, ServiceSpec, Toleration, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const NAMESPACE: &str = "kube-system";
/// The CoreDNS image kubeadm pins (Kubernetes 1.33); the kubelet runs cluster-dns for any
/// CoreDNS image, so the tag only shows in `kubectl get -o yaml`.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.12.0";
/// kubeadm's replica count.
pub const DEFAULT_REPLICAS: i32 = 2;
/// The Service in front of CoreDNS, by its historical name.
pub const SERVICE: &str = "kube-dns";
/// The label CoreDNS keeps from kube-dns: the Deployment's selector and the Service's.
pub const APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// The taint kubeadm puts on control-plane nodes; CoreDNS tolerates it (as kubeadm's manifest
/// does) so that a cluster of one tainted node still gets DNS.
use minikind_contract::CONTROL_PLANE_TAINT_KEY as CONTROL_PLANE_TAINT;

/// kubeadm's Corefile for a cluster domain.
pub fn corefile(domain: &str) -> String {
    format!(
        r#".:53 {{
    errors
    health {{
       lameduck 5s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    prometheus :9153
    forward . /etc/resolv.conf {{
       max_concurrent 1000
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"#
    )
}

/// The address kube-dns gets: the 10th of the service subnet (10.96.0.10).
pub fn cluster_dns_ip(service_subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(service_subnet.network()) + 10)
}

/// What the add-on looks like. The default is kubeadm's for `cluster.local`; the fields are
/// the knobs a cluster config may turn (replicas, a Corefile override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAddon {
    /// The cluster domain the Corefile's `kubernetes` plugin serves.
    pub domain: String,
    pub replicas: i32,
    /// None = kubeadm's Corefile for `domain`.
    pub corefile: Option<String>,
    /// The image written into the Deployment (a CoreDNS image with no command runs
    /// cluster-dns on minikind nodes).
    pub image: String,
}

impl Default for DnsAddon {
    fn default() -> Self {
        DnsAddon::for_domain("cluster.local")
    }
}

impl DnsAddon {
    /// kubeadm's add-on for a cluster domain.
    pub fn for_domain(domain: &str) -> Self {
        DnsAddon {
            domain: domain.to_string(),
            replicas: DEFAULT_REPLICAS,
            corefile: None,
            image: COREDNS_IMAGE.to_string(),
        }
    }

    /// The Corefile the ConfigMap carries.
    pub fn corefile(&self) -> String {
        self.corefile
            .clone()
            .unwrap_or_else(|| corefile(&self.domain))
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

/// The ServiceAccount the CoreDNS pods run as, and whose token their kubernetes plugin
/// lists Services, EndpointSlices, Pods and Namespaces with.
pub const SERVICE_ACCOUNT: &str = "coredns";

/// ServiceAccount `kube-system/coredns` (kubeadm's, without labels).
pub fn service_account() -> ServiceAccount {
    ServiceAccount {
        metadata: meta(SERVICE_ACCOUNT, None),
        ..Default::default()
    }
}

/// ConfigMap `kube-system/coredns` (kubeadm gives it no labels).
pub fn config_map(addon: &DnsAddon) -> ConfigMap {
    ConfigMap {
        metadata: meta("coredns", None),
        data: Some(BTreeMap::from([("Corefile".to_string(), addon.corefile())])),
        ..Default::default()
    }
}

/// An HTTP probe with the timings spelled out. kubeadm leaves the unset ones to the API
/// server's defaults (period 10 s, timeout 1 s, success 1, failure 3); minikind's API server
/// does not default probes, so they are written here to read the same in `kubectl get`.
fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(1),
        success_threshold: Some(1),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Deployment `kube-system/coredns` as kubeadm's manifest has it (its preferred pod
/// anti-affinity included, which minikind's scheduler honours), minus what minikind has no use
/// for (resources, securityContext, and a `kubernetes.io/os` node selector
/// that would only keep the pods off nodes registered without that label).
pub fn deployment(addon: &DnsAddon) -> Deployment {
    let app = labels(&[APP_LABEL]);
    let port = |name: &str, p: i32, proto: &str| ContainerPort {
        name: Some(name.into()),
        container_port: p,
        protocol: Some(proto.into()),
        ..Default::default()
    };
    // kubeadm's liveness: a minute's grace, then five 5-second misses restart the container.
    let liveness = Probe {
        initial_delay_seconds: Some(60),
        timeout_seconds: Some(5),
        failure_threshold: Some(5),
        ..http_probe("/health", 8080)
    };
    Deployment {
        metadata: meta("coredns", Some(app.clone())),
        spec: Some(DeploymentSpec {
            replicas: Some(addon.replicas),
            // kubeadm's: one replica may be down during a rollout. kubeadm leaves maxSurge to
            // the API server's 25% default, which minikind's admission only applies to a
            // missing strategy as a whole; written out so the stored object is the same.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::String("25%".into())),
                }),
            }),
            selector: LabelSelector {
                match_labels: Some(app.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    // CoreDNS forwards through the node's resolv.conf: the hop the network
                    // magic makes work.
                    dns_policy: Some("Default".into()),
                    service_account_name: Some(SERVICE_ACCOUNT.into()),
                    // Carried for kubectl and tools that look at it; minikind has no
                    // PriorityClass objects and no preemption.
                    priority_class_name: Some("system-cluster-critical".into()),
                    // kubeadm's: replicas prefer different nodes, so one node's restart does
                    // not take every replica with it.
                    affinity: Some(Affinity {
                        pod_anti_affinity: Some(PodAntiAffinity {
                            preferred_during_scheduling_ignored_during_execution: Some(vec![
                                WeightedPodAffinityTerm {
                                    weight: 100,
                                    pod_affinity_term: PodAffinityTerm {
                                        label_selector: Some(LabelSelector {
                                            match_expressions: Some(vec![
                                                LabelSelectorRequirement {
                                                    key: APP_LABEL.0.into(),
                                                    operator: "In".into(),
                                                    values: Some(vec![APP_LABEL.1.into()]),
                                                },
                                            ]),
                                            ..Default::default()
                                        }),
                                        topology_key: "kubernetes.io/hostname".into(),
                                        ..Default::default()
                                    },
                                },
                            ]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    tolerations: Some(vec![
                        Toleration {
                            key: Some("CriticalAddonsOnly".into()),
                            operator: Some("Exists".into()),
                            ..Default::default()
                        },
                        Toleration {
                            key: Some(CONTROL_PLANE_TAINT.into()),
                            effect: Some("NoSchedule".into()),
                            ..Default::default()
                        },
                    ]),
                    containers: vec![Container {
                        name: "coredns".into(),
                        image: Some(addon.image.clone()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        args: Some(vec!["-conf".into(), "/etc/coredns/Corefile".into()]),
                        ports: Some(vec![
                            port("dns", 53, "UDP"),
                            port("dns-tcp", 53, "TCP"),
                            port("metrics", 9153, "TCP"),
                        ]),
                        liveness_probe: Some(liveness),
                        readiness_probe: Some(http_probe("/ready", 8181)),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "config-volume".into(),
                            mount_path: "/etc/coredns".into(),
                            read_only: Some(true),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![corefile_volume("coredns", "Corefile")]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The `config-volume` both DNS add-ons mount: key `Corefile` of ConfigMap `config_map` as
/// the file `path` (kubeadm's CoreDNS reads `Corefile`; node-cache reads `Corefile.base` and
/// writes the filled-in Corefile itself).
pub(crate) fn corefile_volume(config_map: &str, path: &str) -> Volume {
    Volume {
        name: "config-volume".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            items: Some(vec![KeyToPath {
                key: "Corefile".into(),
                path: path.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Service `kube-system/kube-dns` at `ip` (the 10th service address).
pub fn service(ip: Ipv4Addr) -> Service {
    let port = |name: &str, p: i32, proto: &str| ServicePort {
        name: Some(name.into()),
        port: p,
        protocol: Some(proto.into()),
        target_port: Some(IntOrString::Int(p)),
        ..Default::default()
    };
    let mut m = meta(
        SERVICE,
        Some(labels(&[
            APP_LABEL,
            ("kubernetes.io/cluster-service", "true"),
            ("kubernetes.io/name", "CoreDNS"),
        ])),
    );
    m.annotations = Some(labels(&[
        ("prometheus.io/port", "9153"),
        ("prometheus.io/scrape", "true"),
    ]));
    Service {
        metadata: m,
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.to_string()),
            cluster_ips: Some(vec![ip.to_string()]),
            selector: Some(labels(&[APP_LABEL])),
            ports: Some(vec![
                port("dns", 53, "UDP"),
                port("dns-tcp", 53, "TCP"),
                port("metrics", 9153, "TCP"),
            ]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
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
    let api: Api<K> = Api::namespaced(client.clone(), NAMESPACE);
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => Ok(false),
        Err(e) => Err(e).with_context(|| {
            format!(
                "creating {} {}/{}",
                K::kind(&K::DynamicType::default()),
                NAMESPACE,
                obj.meta().name.as_deref().unwrap_or("?")
            )
        }),
    }
}

/// Creates whatever of the add-on is missing, through the API. Returns how many objects were
/// created (0 when everything was already there).
pub async fn install(
    client: &kube::Client,
    service_subnet: Ipv4Net,
    addon: &DnsAddon,
) -> Result<usize> {
    let mut created = 0;
    // The account first: admission refuses pods whose service account does not exist.
    created += create_if_absent(client, &service_account()).await? as usize;
    created += create_if_absent(client, &config_map(addon)).await? as usize;
    created += create_if_absent(client, &service(cluster_dns_ip(service_subnet))).await? as usize;
    created += create_if_absent(client, &deployment(addon)).await? as usize;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_dns_is_the_tenth_address() {
        assert_eq!(
            cluster_dns_ip("10.96.0.0/16".parse().unwrap()),
            Ipv4Addr::new(10, 96, 0, 10)
        );
        assert_eq!(
            cluster_dns_ip("10.100.0.0/24".parse().unwrap()),
            Ipv4Addr::new(10, 100, 0, 10)
        );
        // A subnet written with host bits still counts from its network address.
        assert_eq!(
            cluster_dns_ip("10.96.7.3/16".parse().unwrap()),
            Ipv4Addr::new(10, 96, 0, 10)
        );
    }

    #[test]
    fn the_corefile_is_kubeadms_for_the_domain() {
        let c = corefile("cluster.local");
        for line in [
            "kubernetes cluster.local in-addr.arpa ip6.arpa {",
            "pods insecure",
            "fallthrough in-addr.arpa ip6.arpa",
            "ttl 30",
            "prometheus :9153",
            "forward . /etc/resolv.conf {",
            "max_concurrent 1000",
            "cache 30",
            "loop",
            "reload",
            "loadbalance",
            "lameduck 5s",
        ] {
            assert!(c.contains(line), "missing {line:?} in\n{c}");
        }
        let other = DnsAddon::for_domain("corp.internal").corefile();
        assert!(
            other.contains("kubernetes corp.internal in-addr.arpa ip6.arpa {"),
            "{other}"
        );
        assert!(!other.contains("cluster.local"), "{other}");
    }

    #[test]
    fn a_corefile_override_replaces_kubeadms() {
        let addon = DnsAddon {
            corefile: Some(".:53 {\n    log\n}\n".into()),
            ..DnsAddon::default()
        };
        let cm = config_map(&addon);
        assert_eq!(cm.data.unwrap()["Corefile"], ".:53 {\n    log\n}\n");
    }

    #[test]
    fn objects_carry_coredns_names_ports_and_labels() {
        let svc = service(Ipv4Addr::new(10, 96, 0, 10));
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        let names: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| p.name.unwrap())
            .collect();
        assert_eq!(names, ["dns", "dns-tcp", "metrics"]);
        assert_eq!(
            svc.metadata.labels.unwrap()["kubernetes.io/name"],
            "CoreDNS"
        );
        let d = deployment(&DnsAddon {
            replicas: 3,
            ..DnsAddon::default()
        });
        let ds = d.spec.unwrap();
        assert_eq!(ds.replicas, Some(3));
        let rolling = ds.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        let pod = ds.template.spec.unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert_eq!(pod.service_account_name.as_deref(), Some("coredns"));
        let tolerated: Vec<_> = pod
            .tolerations
            .unwrap()
            .into_iter()
            .map(|t| t.key.unwrap())
            .collect();
        assert_eq!(tolerated, ["CriticalAddonsOnly", CONTROL_PLANE_TAINT]);
        assert_eq!(pod.containers[0].image.as_deref(), Some(COREDNS_IMAGE));
        assert!(config_map(&DnsAddon::default()).metadata.labels.is_none());
    }
}
