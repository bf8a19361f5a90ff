//! The DNS add-on as kubeadm installs it (and so KIND): the `coredns` ConfigMap with kubeadm's
//! Corefile, the `coredns` Deployment (2 replicas) and the `kube-dns` Service at the 10th
//! service address. The CoreDNS pods run minikind's cluster-dns (the kubelet maps CoreDNS
//! images to it).
//!
//! Installed once by the control-plane node; objects that already exist are left as they are,
//! so a user's `kubectl scale deployment coredns` or edited Corefile survives a node restart.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, KeyToPath, PodSpec,
    PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const NAMESPACE: &str = "kube-system";
/// The image name kubeadm uses; the kubelet runs cluster-dns for it.
pub const COREDNS_IMAGE: &str = "registry.k8s.io/coredns/coredns:v1.11.3";

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

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, l: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        labels: Some(l),
        ..Default::default()
    }
}

pub fn config_map(domain: &str) -> ConfigMap {
    ConfigMap {
        metadata: meta("coredns", BTreeMap::new()),
        data: Some(BTreeMap::from([("Corefile".to_string(), corefile(domain))])),
        ..Default::default()
    }
}

fn http_probe(path: &str, port: i32, initial: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(if initial > 0 { 5 } else { 3 }),
        success_threshold: Some(1),
        ..Default::default()
    }
}

pub fn deployment(replicas: i32) -> Deployment {
    let app = labels(&[("k8s-app", "kube-dns")]);
    let port = |name: &str, p: i32, proto: &str| ContainerPort {
        name: Some(name.into()),
        container_port: p,
        protocol: Some(proto.into()),
        ..Default::default()
    };
    Deployment {
        metadata: meta("coredns", app.clone()),
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            // kubeadm's: one replica may be down during a rollout (maxSurge stays 25%).
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..Default::default()
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
                    priority_class_name: Some("system-cluster-critical".into()),
                    containers: vec![Container {
                        name: "coredns".into(),
                        image: Some(COREDNS_IMAGE.into()),
                        image_pull_policy: Some("IfNotPresent".into()),
                        args: Some(vec!["-conf".into(), "/etc/coredns/Corefile".into()]),
                        ports: Some(vec![
                            port("dns", 53, "UDP"),
                            port("dns-tcp", 53, "TCP"),
                            port("metrics", 9153, "TCP"),
                        ]),
                        liveness_probe: Some(http_probe("/health", 8080, 60)),
                        readiness_probe: Some(http_probe("/ready", 8181, 0)),
                        volume_mounts: Some(vec![VolumeMount {
                            name: "config-volume".into(),
                            mount_path: "/etc/coredns".into(),
                            read_only: Some(true),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }],
                    volumes: Some(vec![Volume {
                        name: "config-volume".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "coredns".into(),
                            items: Some(vec![KeyToPath {
                                key: "Corefile".into(),
                                path: "Corefile".into(),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn service(ip: Ipv4Addr) -> Service {
    let port = |name: &str, p: i32, proto: &str| ServicePort {
        name: Some(name.into()),
        port: p,
        protocol: Some(proto.into()),
        target_port: Some(IntOrString::Int(p)),
        ..Default::default()
    };
    let mut m = meta(
        "kube-dns",
        labels(&[
            ("k8s-app", "kube-dns"),
            ("kubernetes.io/cluster-service", "true"),
            ("kubernetes.io/name", "CoreDNS"),
        ]),
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
            selector: Some(labels(&[("k8s-app", "kube-dns")])),
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

/// Creates whatever of the add-on is missing. Returns how many objects were created.
pub async fn install(
    client: &kube::Client,
    service_subnet: Ipv4Net,
    domain: &str,
) -> Result<usize> {
    let mut created = 0;
    created += create_if_absent(client, &config_map(domain)).await? as usize;
    created += create_if_absent(client, &service(cluster_dns_ip(service_subnet))).await? as usize;
    created += create_if_absent(client, &deployment(2)).await? as usize;
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
    }

    #[test]
    fn the_corefile_is_kubeadms() {
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
        let d = deployment(2);
        let ds = d.spec.unwrap();
        assert_eq!(ds.replicas, Some(2));
        let rolling = ds.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
        let pod = ds.template.spec.unwrap();
        assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
        assert!(
            pod.containers[0]
                .image
                .as_deref()
                .unwrap()
                .contains("coredns")
        );
    }
}
