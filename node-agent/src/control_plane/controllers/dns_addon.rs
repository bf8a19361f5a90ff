//! The cluster DNS add-on as kubeadm installs it (and so KIND): ConfigMap `kube-system/coredns`
//! with the kubeadm Corefile, Deployment `coredns` (label `k8s-app: kube-dns`, two replicas,
//! `dnsPolicy: Default`), Service `kube-dns` at the tenth service address. Created once;
//! existing objects (a user's edited Corefile, a scaled Deployment) are left alone.

use crate::control_plane::apiserver::{ApiState, objects};
use crate::control_plane::errors::ApiError;
use crate::control_plane::resources::idx;
use serde_json::{Value, json};

/// The Corefile kubeadm writes.
pub const KUBEADM_COREFILE: &str = ".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
";

/// What the add-on looks like.
#[derive(Debug, Clone)]
pub struct DnsAddon {
    pub replicas: u32,
    /// None = the kubeadm Corefile.
    pub corefile: Option<String>,
    /// The image name written into the Deployment (a CoreDNS image with no command runs
    /// `cluster-dns` on minikind nodes).
    pub image: String,
}

impl Default for DnsAddon {
    fn default() -> Self {
        DnsAddon {
            replicas: 2,
            corefile: None,
            image: "registry.k8s.io/coredns/coredns:v1.12.0".into(),
        }
    }
}

async fn ensure(st: &ApiState, res: usize, v: Value) -> Result<(), ApiError> {
    match objects::create_internal(st, res, v, "kubeadm").await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the add-on's objects that do not exist yet.
pub async fn install(st: &ApiState, addon: &DnsAddon) -> Result<(), ApiError> {
    let corefile = addon.corefile.as_deref().unwrap_or(KUBEADM_COREFILE);
    ensure(
        st,
        idx::configmaps(),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        }),
    )
    .await?;
    let labels = json!({"k8s-app": "kube-dns"});
    ensure(
        st,
        idx::deployments(),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "replicas": addon.replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "dnsPolicy": "Default",
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                        ],
                        "containers": [{
                            "name": "coredns",
                            "image": addon.image,
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true}],
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                                              "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
                        }],
                        "volumes": [{"name": "config-volume",
                                     "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                    },
                },
            },
        }),
    )
    .await?;
    let ip = st.admission.services.nth(10).to_string();
    ensure(
        st,
        idx::services(),
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "CoreDNS"},
                         "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
            "spec": {
                "clusterIP": ip,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
    )
    .await?;
    Ok(())
}
