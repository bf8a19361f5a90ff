//! The objects the conformance tests make, as the upstream tests make them: a service with one
//! named port (`http`, 80/TCP) that is either headless or has a ClusterIP
//! (e2eservice.CreateServiceSpec), an ExternalName service, the querier pod (createDNSPod: one
//! container per prober image, hostname `dns-querier-1`, subdomain `dns-test-service`), and the
//! test DNS server with its Corefile (generateCoreDNSConfigmap / generateCoreDNSServerPod).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use serde_json::{Value, json};

/// The querier pod's hostname and subdomain in the upstream tests (dns.go's
/// `dnsTestPodHostName`, `dnsTestServiceName`).
pub const QUERIER_HOSTNAME: &str = "dns-querier-1";
pub const TEST_SERVICE: &str = "dns-test-service";

/// The label a test's service selects its pods by, as upstream's `testServiceSelector`.
pub const SELECTOR: (&str, &str) = ("dns-test", "true");

/// A service with the upstream tests' one port, `http` 80/TCP: headless (`clusterIP: None`)
/// or with a ClusterIP, selecting `selector`.
pub fn service(name: &str, headless: bool, selector: &BTreeMap<String, String>) -> Result<Service> {
    let mut spec = json!({
        "selector": selector,
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
    });
    if headless {
        spec["clusterIP"] = json!("None");
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .with_context(|| format!("building service {name}"))
}

/// An ExternalName service answering with a CNAME to `target`.
pub fn external_name_service(name: &str, target: &str) -> Result<Service> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "ExternalName", "externalName": target},
    }))
    .with_context(|| format!("building service {name}"))
}

/// The container names for the prober images: the image's repository's last part (`tools`,
/// `glibc`, `musl`), made unique and DNS-label-safe.
pub fn container_names(images: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let without_digest = image.split('@').next().unwrap_or(image);
        let repo = without_digest
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(without_digest, |(repo, _)| repo);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        let mut name: String = last
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        name = name.trim_matches('-').chars().take(50).collect();
        if name.is_empty() || names.contains(&name) {
            name = format!("{}{i}", if name.is_empty() { "probe-" } else { &name });
        }
        names.push(name);
    }
    names
}

/// How a querier pod differs from upstream's default one.
#[derive(Debug, Clone, Default)]
pub struct Querier {
    /// `spec.hostname` (default [`QUERIER_HOSTNAME`]).
    pub hostname: Option<String>,
    /// `spec.subdomain` (default [`TEST_SERVICE`]).
    pub subdomain: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub host_network: bool,
    pub dns_policy: Option<&'static str>,
    /// `spec.dnsConfig`, as the Pod API spells it.
    pub dns_config: Option<Value>,
}

/// The querier pod: one idle container per prober image (each `sleep`s for `lifetime`, so a
/// pod left behind by a killed run ends by itself).
pub fn querier(q: &Querier, images: &[String], lifetime: Duration) -> Result<Pod> {
    let containers: Vec<Value> = images
        .iter()
        .zip(container_names(images))
        .map(|(image, name)| {
            json!({
                "name": name,
                "image": image,
                "command": ["sleep", lifetime.as_secs().max(1).to_string()],
            })
        })
        .collect();
    let mut spec = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 0,
        "hostname": q.hostname.as_deref().unwrap_or(QUERIER_HOSTNAME),
        "subdomain": q.subdomain.as_deref().unwrap_or(TEST_SERVICE),
        "containers": containers,
    });
    if q.host_network {
        spec["hostNetwork"] = json!(true);
    }
    if let Some(policy) = q.dns_policy {
        spec["dnsPolicy"] = json!(policy);
    }
    if let Some(conf) = &q.dns_config {
        spec["dnsConfig"] = conf.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "dns-test-", "labels": q.labels},
        "spec": spec,
    }))
    .context("building the querier pod")
}

/// The ConfigMap with the test DNS server's Corefile: `name` → `address` from its `hosts`
/// plugin, nothing forwarded (so nothing leaves the cluster).
pub fn coredns_config(name: &str, address: &str) -> Result<ConfigMap> {
    let corefile =
        format!(".:53 {{\n    errors\n    hosts {{\n        {address} {name}\n    }}\n}}\n");
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "e2e-coredns-configmap"},
        "data": {"Corefile": corefile},
    }))
    .context("building the test DNS server's ConfigMap")
}

/// The test DNS server: `image` (CoreDNS's, which minikind nodes run as cluster-dns) with the
/// ConfigMap's Corefile.
pub fn coredns_server(image: &str, config_map: &str) -> Result<Pod> {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "e2e-configmap-dns-server-"},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "dnsPolicy": "Default",
            "containers": [{
                "name": "coredns",
                "image": image,
                "args": ["-conf", "/etc/coredns/Corefile"],
                // CoreDNS's image runs as a non-root user: port 53 needs this capability, as
                // kubeadm's CoreDNS Deployment grants it.
                "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}},
                "volumeMounts": [{"name": "coredns-config", "mountPath": "/etc/coredns", "readOnly": true}],
            }],
            "volumes": [{"name": "coredns-config", "configMap": {"name": config_map}}],
        },
    }))
    .context("building the test DNS server pod")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_the_upstream_port() {
        let sel = BTreeMap::from([("dns-test".to_string(), "true".to_string())]);
        let h = service("dns-test-service", true, &sel)
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(h.cluster_ip.as_deref(), Some("None"));
        let port = &h.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("http"), 80));
        let r = service("test-service-2", false, &sel)
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(r.cluster_ip, None);
        assert_eq!(r.selector.unwrap()["dns-test"], "true");
        let e = external_name_service("dns-test-service-3", "www.example.test")
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(
            (e.type_.as_deref(), e.external_name.as_deref()),
            (Some("ExternalName"), Some("www.example.test"))
        );
    }

    #[test]
    fn the_querier_has_one_container_per_image_and_upstreams_names() {
        let images = [
            "minikind/tools:0.1.0".to_string(),
            "localhost:5000/dns/glibc:1".to_string(),
            "example/glibc@sha256:00".to_string(),
        ];
        assert_eq!(container_names(&images), ["tools", "glibc", "glibc2"]);
        let q = Querier {
            host_network: true,
            dns_policy: Some("ClusterFirstWithHostNet"),
            dns_config: Some(json!({"searches": ["a.test"]})),
            ..Default::default()
        };
        let p = querier(&q, &images, Duration::from_secs(600)).unwrap();
        let s = p.spec.unwrap();
        assert_eq!(s.hostname.as_deref(), Some(QUERIER_HOSTNAME));
        assert_eq!(s.subdomain.as_deref(), Some(TEST_SERVICE));
        assert_eq!(s.host_network, Some(true));
        assert_eq!(s.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        assert_eq!(s.dns_config.unwrap().searches.unwrap(), ["a.test"]);
        assert_eq!(s.containers.len(), 3);
        assert_eq!(
            s.containers[1].command.as_deref().unwrap(),
            ["sleep", "600"]
        );
    }

    #[test]
    fn the_test_dns_server_serves_its_one_name() {
        let cm = coredns_config("notexistname.resolv.conf.local", "192.0.2.123").unwrap();
        let corefile = &cm.data.unwrap()["Corefile"];
        assert!(
            corefile.contains("192.0.2.123 notexistname.resolv.conf.local"),
            "{corefile}"
        );
        assert!(!corefile.contains("forward"), "{corefile}");
        let p = coredns_server("registry.k8s.io/coredns/coredns:v1.12.0", "cm")
            .unwrap()
            .spec
            .unwrap();
        assert_eq!(
            p.containers[0].args.as_deref().unwrap(),
            ["-conf", "/etc/coredns/Corefile"]
        );
        assert_eq!(
            p.volumes.unwrap()[0].config_map.as_ref().unwrap().name,
            "cm"
        );
    }
}
